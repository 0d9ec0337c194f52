"""Sequential (msgpass/network.py): construction and its errors, input widths, dtypes and
astype, the parameters (ParamDict), the order of forward and backward, the forward record
(net.record, net.restore) that verify leaves alone, traces as records, and the modes and steps
(train, eval, next_step) of Dropout and BatchNorm."""

import numpy as np
import pytest

import msgpass as mp
from msgpass.network import ForwardRecord
from msgpass.partials import LocalPartials


def net():
    return mp.Sequential([mp.Affine(4, 5, seed=0), mp.ReLU(), mp.Affine(5, 3, seed=1),
                          mp.SoftmaxCrossEntropy()])


def small_net(dtype=np.float64):
    return mp.Sequential([
        mp.Affine(5, 7, seed=0, dtype=dtype), mp.Tanh(), mp.Affine(7, 6, seed=1, dtype=dtype),
        mp.Softmax(), mp.Affine(6, 4, seed=2, dtype=dtype), mp.SoftmaxCrossEntropy()])


# -- construction, widths, dtypes -------------------------------------------------------------

@pytest.mark.parametrize("layers, pattern", [
    ([], r"at least one layer"),
    ([mp.Affine(4, 3), mp.ReLU()], r"the last layer must be a loss layer .* got layer 2 \(ReLU\)"),
    ([mp.MSELoss(), mp.Affine(4, 3), mp.MSELoss()], r"layer 1 \(MSELoss\) is a loss layer"),
    ([mp.Affine(4, 3), mp.Affine(4, 3), mp.MSELoss()], r"layer 2 \(Affine\(4→3\)\) expects 4 inputs but receives 3"),
])
def test_bad_construction(layers, pattern):
    with pytest.raises(mp.ShapeError, match=pattern):
        mp.Sequential(layers)


def test_mixed_dtypes_and_bad_layer_sizes():
    with pytest.raises(mp.DtypeError, match="mix dtypes"):
        mp.Sequential([mp.Affine(4, 3, dtype=np.float32), mp.Affine(3, 2), mp.MSELoss()])
    with pytest.raises(mp.DtypeError, match="parameters are float32"):
        mp.Sequential([mp.Affine(4, 3, dtype=np.float32), mp.MSELoss()], dtype="float64")
    with pytest.raises(mp.ShapeError, match="n_out must be a positive integer, got 0"):
        mp.Affine(4, 0)
    with pytest.raises(TypeError, match="layer 1 is 'relu', not a msgpass layer"):
        mp.Sequential(["relu", mp.MSELoss()])


def test_declared_input_width_is_checked():
    net = mp.Sequential([mp.Tanh(), mp.MSELoss()], input_width=3)
    with pytest.raises(mp.ShapeError, match=r"input x must have shape \(B, 3\) for Tanh \(layer 1\), got \(2, 4\)"):
        net.forward(np.zeros((2, 4)), np.zeros((2, 4)))
    with pytest.raises(mp.ShapeError, match="expects 4 inputs but receives 3"):
        mp.Sequential([mp.Affine(4, 2), mp.MSELoss()], input_width=3)
    assert mp.Sequential([mp.ReLU(), mp.Affine(4, 2), mp.MSELoss()]).input_width == 4


def test_a_function_first_fixes_the_input_width():
    """This once failed because the input width was taken from the first Affine: a network
    starting with Function(f, 3, 4) refused inputs of width 3."""
    def f(x):
        return np.stack([np.sin(x[:, 0]), x[:, 1] * x[:, 2], np.exp(x[:, 0]), x.sum(axis=1)],
                        axis=1)
    net = mp.Sequential([mp.Function(f, 3, 4), mp.Affine(4, 2, seed=0), mp.MSELoss()])
    assert net.input_width == 3
    x, target = np.random.default_rng(0).standard_normal((5, 3)), np.zeros((5, 2))
    assert np.isfinite(net.forward(x, target))
    assert net.record.values[1].shape == (5, 4) and net.record.values[2].shape == (5, 2)
    report = mp.verify(net, x, target)
    assert report.ok, str(report)
    with pytest.raises(mp.ShapeError, match=r"input x must have shape \(B, 3\) for "
                                            r"Function\(f: 3→4\) \(layer 1\), got \(5, 4\)"):
        net.forward(np.zeros((5, 4)), target)


def test_astype_copies_and_converts():
    net = small_net()
    low = net.astype("float32")
    assert low.dtype == np.float32 and net.dtype == np.float64
    low.params["1.W"][...] = 0.0
    assert not np.all(net.params["1.W"] == 0.0)
    with pytest.raises(mp.DtypeError, match="float64 or float32"):
        net.astype("int32")


# -- parameters -------------------------------------------------------------------------------

def test_params_are_the_weights_not_copies():
    net = small_net()
    x = np.random.default_rng(1).standard_normal((2, 5))
    before = net.forward(x, [0, 1])
    net.params["1.W"][0, 0] += 1.0                    # in place
    after_inplace = net.forward(x, [0, 1])
    assert after_inplace != before
    net.params["1.W"] = np.zeros((5, 7))              # assignment copies into the same array
    assert np.all(net.layers[0].W == 0.0)
    assert net.forward(x, [0, 1]) != after_inplace
    with pytest.raises(mp.ShapeError, match=r"1\.W has shape \(5, 7\)"):
        net.params["1.W"] = np.zeros((7, 5))
    with pytest.raises(KeyError, match="no parameter '9.W'"):
        net.params["9.W"]
    assert list(net.params) == ["1.W", "1.b", "3.W", "3.b", "5.W", "5.b"]


def test_params_copy_is_a_snapshot():
    """This once failed because ParamDict had no copy(): there was no way to keep the
    parameters as they were that later training would not change."""
    net = mp.Sequential([mp.Affine(4, 3, seed=0), mp.SoftmaxCrossEntropy()])
    snap = net.params.copy()
    net.params["1.W"][...] = 0.0
    assert isinstance(snap, dict) and not np.all(snap["1.W"] == 0.0)


# -- forward, backward and the record between them ----------------------------------------------

def test_backward_before_forward():
    with pytest.raises(mp.StateError, match=r"backward\(\) was called before net\.forward"):
        net().backward()


def test_a_failed_forward_leaves_nothing_for_backward():
    """This once failed because a forward that raised left the previous batch's record behind,
    so the next backward silently ran on that batch."""
    rng = np.random.default_rng(9)
    net = mp.Sequential([mp.Affine(4, 3, seed=0), mp.SoftmaxCrossEntropy()])
    net.forward(rng.standard_normal((2, 4)), [0, 1])
    with pytest.raises(mp.InputValueError):
        net.forward(rng.standard_normal((2, 4)), [0, 7])
    with pytest.raises(mp.StateError, match="before net.forward"):
        net.backward()


def test_the_record_is_what_the_last_forward_left_and_is_read_only():
    net = mp.Sequential([mp.ReLU(), mp.Affine(3, 4, seed=0), mp.SoftmaxCrossEntropy()])
    assert net.record is None
    x = np.array([[0.0, 1.0, -2.0], [0.5, 0.0, 0.0]])
    loss = net.forward(x, [1, 2])
    record = net.record
    assert isinstance(record, ForwardRecord)
    assert len(record.values) == net.T + 1
    assert len(record.partials) == len(record.saved) == net.T
    W, b = net.params["2.W"], net.params["2.b"]
    relu = np.maximum(x, 0.0)
    logits = relu @ W + b
    np.testing.assert_array_equal(record.values[0], x)
    np.testing.assert_array_equal(record.values[1], relu)
    np.testing.assert_array_equal(record.values[2], logits)
    shifted = logits - logits.max(axis=1, keepdims=True)
    per_sample = np.log(np.exp(shifted).sum(axis=1)) - shifted[[0, 1], [1, 2]]
    np.testing.assert_allclose(record.values[3][:, 0], per_sample, rtol=1e-14)
    assert record.loss == loss and loss == pytest.approx(per_sample.mean(), rel=1e-14)
    # J^t and K^t: ReLU's diagonal is the indicator of x > 0, Affine's J is W, K has x below
    assert all(isinstance(p, LocalPartials) for p in record.partials)
    np.testing.assert_array_equal(record.partials[0].inputs.values, (x > 0).astype(float))
    np.testing.assert_array_equal(record.partials[1].inputs.matrix, W)
    assert set(record.partials[1].params) == {"W", "b"}
    # what each forward saved for its backward, e.g. the input of ReLU and of Affine
    np.testing.assert_array_equal(record.saved[0].x, x)
    np.testing.assert_array_equal(record.saved[1].x, relu)
    # only ReLU has kinks: its inputs exactly at 0
    assert set(record.kinks) == {1}
    np.testing.assert_array_equal(record.kinks[1], x == 0)
    with pytest.raises(AttributeError):
        net.record = None
    with pytest.raises(AttributeError):
        record.loss = 0.0                       # the record itself is frozen too
    assert net.record is record


def test_the_record_cannot_be_changed_in_place():
    net = small_net()
    net.forward(np.ones((2, 5)), [0, 1])
    record = net.record
    with pytest.raises(AttributeError):
        record.values.append(np.zeros(3))       # a tuple
    with pytest.raises(ValueError, match="read-only"):
        record.values[1][0, 0] = 7.0
    with pytest.raises(TypeError):
        record.kinks[1] = np.zeros((2, 5), dtype=bool)


def test_restore_puts_back_an_earlier_record():
    net = small_net()
    rng = np.random.default_rng(3)
    x1, x2 = rng.standard_normal((3, 5)), rng.standard_normal((4, 5))
    net.forward(x1, [0, 3, 1])
    first = net.record
    before = net.backward()
    net.forward(x2, [2, 2, 0, 1])
    assert net.record is not first
    assert not np.array_equal(net.backward().grads["1.W"], before.grads["1.W"])
    net.restore(first)
    assert net.record is first
    again = net.backward()
    assert again.loss == before.loss
    for t in range(1, net.T + 1):
        np.testing.assert_array_equal(again.message(t), before.message(t))
    for t in range(1, net.T + 2):
        np.testing.assert_array_equal(again.incoming(t), before.incoming(t))
    for key in before.grads:
        np.testing.assert_array_equal(again.grads[key], before.grads[key])
    net.restore(None)
    assert net.record is None
    with pytest.raises(mp.StateError, match=r"backward\(\) was called before net\.forward"):
        net.backward()
    other = mp.build_network("5-3-sce", seed=0)          # two layers, not six
    other.forward(x1, [0, 1, 2])
    # same depth, other widths: this once passed, and backward gave the other net's gradients
    twin = mp.Sequential([mp.Affine(5, 8, seed=5), mp.Tanh(), mp.Affine(8, 2, seed=6),
                          mp.Softmax(), mp.Affine(2, 4, seed=7), mp.SoftmaxCrossEntropy()])
    twin.forward(x1, [0, 3, 1])
    for bad in (other.record, twin.record, before, "record",
                first.values):
        with pytest.raises(mp.StateError, match="restore takes a record of this network's "
                                                "own forward pass"):
            net.restore(bad)
        assert net.record is None                        # refused: nothing changed
    net.forward(x1, [0, 3, 1])
    with pytest.raises(mp.StateError, match="got a record of another network"):
        net.astype("float64").restore(net.record)     # a copy is another network


def test_verify_leaves_the_record_as_it_was():
    net = small_net()
    rng = np.random.default_rng(4)
    x, labels = rng.standard_normal((3, 5)), [0, 3, 1]
    assert mp.verify(net, x, labels).ok
    assert net.record is None                            # no forward before: still none
    net.forward(x, labels)
    record = net.record
    assert mp.verify(net, rng.standard_normal((5, 5)), [1, 1, 0, 2, 3]).ok
    assert net.record is record                          # the same object, not a copy
    with pytest.raises(mp.InputValueError):
        mp.verify(net, x, [0, 3, 9])                     # fails after its own forward
    assert net.record is record


def test_a_trace_is_a_record_later_changes_to_x_or_the_weights_do_not_change_it():
    """This once failed because forward kept a view of the caller's x, so changing x after
    the forward changed the trace and the next backward."""
    net = small_net()
    x = np.random.default_rng(1).standard_normal((2, 5))
    net.forward(x, [0, 1])
    trace = net.backward()
    grad, message = trace.grads["1.W"].copy(), trace.message(1).copy()
    x += 1.0
    np.testing.assert_array_equal(net.backward().grads["1.W"], grad)
    assert not np.shares_memory(trace.values[0], x)
    net.params["1.W"][...] = 0.0
    np.testing.assert_array_equal(trace.message(1), message)


# -- modes and steps ----------------------------------------------------------------------------

def test_train_and_eval_work_on_a_network_without_dropout_or_batchnorm():
    net = mp.Sequential([mp.Function(np.sin, 4, 4), mp.Affine(4, 5, seed=0), mp.ReLU(),
                         mp.Sigmoid(), mp.Tanh(), mp.Softmax(), mp.MSELoss()])
    x, target = np.random.default_rng(5).standard_normal((3, 4)), np.zeros((3, 5))
    assert all(layer.training for layer in net.layers)             # training by default
    loss = net.forward(x, target)
    assert net.eval() is net
    assert not any(layer.training for layer in net.layers)
    assert net.forward(x, target) == loss                           # nothing depends on it
    assert net.train() is net
    assert all(layer.training for layer in net.layers)
    assert net.forward(x, target) == loss
    net.next_step()                                                 # nothing to do, no error


def test_next_step_gives_dropout_fresh_masks_and_one_mask_within_a_step():
    net = mp.Sequential([mp.Affine(6, 40, seed=0), mp.Dropout(0.5), mp.Affine(40, 2, seed=1),
                         mp.MSELoss()])
    x, target = np.random.default_rng(6).standard_normal((10, 6)), np.zeros((10, 2))

    def mask():
        net.forward(x, target)
        return net.record.saved[1].keep
    first = mask()
    np.testing.assert_array_equal(mask(), first)          # two forwards, one step: one mask
    assert 0.3 < np.mean(first == 0) < 0.7                # it does drop (400 draws)
    net.next_step()
    second = mask()
    assert not np.array_equal(second, first)              # a new step: a new mask
    np.testing.assert_array_equal(mask(), second)
    net.eval()
    np.testing.assert_array_equal(mask(), np.ones((10, 40)))   # evaluation: no dropout


def test_next_step_folds_batchnorms_batch_statistics_into_its_running_ones():
    net = mp.Sequential([mp.Affine(3, 4, seed=0), mp.BatchNorm(4, momentum=0.8), mp.ReLU(),
                         mp.Affine(4, 2, seed=1), mp.SoftmaxCrossEntropy()])
    bn = net.layers[1]
    rng = np.random.default_rng(7)
    x1, x2 = rng.standard_normal((6, 3)) * 2 + 1, rng.standard_normal((5, 3)) - 3

    def batch_statistics(x):                    # by hand: the mean and the biased variance
        z = x @ net.params["1.W"] + net.params["1.b"]
        mean = z.sum(axis=0) / len(z)
        return mean, ((z - mean) ** 2).sum(axis=0) / len(z)
    mean, var = np.zeros(4), np.ones(4)         # where the running statistics start
    np.testing.assert_array_equal(bn.running_mean, mean)
    np.testing.assert_array_equal(bn.running_var, var)
    net.forward(x1, [0, 1, 0, 1, 1, 0])
    np.testing.assert_array_equal(bn.running_mean, mean)   # a forward alone folds nothing
    net.next_step()                             # the last forward's batch: x1
    m1, v1 = batch_statistics(x1)
    mean, var = 0.8 * mean + 0.2 * m1, 0.8 * var + 0.2 * v1
    np.testing.assert_allclose(bn.running_mean, mean, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, var, rtol=1e-12)
    result = mp.backprop(net, x2, [1, 0, 0, 1, 1])         # a step by standard backprop
    net.next_step(result.saved)                 # its batch, x2, not the record's x1
    m2, v2 = batch_statistics(x2)
    mean, var = 0.8 * mean + 0.2 * m2, 0.8 * var + 0.2 * v2
    np.testing.assert_allclose(bn.running_mean, mean, rtol=1e-12)
    np.testing.assert_allclose(bn.running_var, var, rtol=1e-12)
    running = bn.running_mean.copy(), bn.running_var.copy()
    net.eval()
    net.forward(x1, [0, 1, 0, 1, 1, 0])
    net.next_step()                             # an evaluation-mode forward folds nothing
    net.next_step(mp.backprop(net, x2, [1, 0, 0, 1, 1]).saved)
    np.testing.assert_array_equal(bn.running_mean, running[0])
    np.testing.assert_array_equal(bn.running_var, running[1])
