"""The message blocks: their structure, what is kept (and bad keep= values refused),
repeatability, float32 end to end, read-only stored messages and sums, and that nothing the
user passes in is ever modified."""

import numpy as np
import pytest

import msgpass as mp

rng = np.random.default_rng(1)


def small_net(dtype=np.float64):
    return mp.Sequential([
        mp.Affine(5, 7, seed=0, dtype=dtype), mp.Tanh(), mp.Affine(7, 6, seed=1, dtype=dtype),
        mp.Softmax(), mp.Affine(6, 4, seed=2, dtype=dtype), mp.SoftmaxCrossEntropy()])


@pytest.fixture
def run():
    net = small_net()
    x = rng.standard_normal((3, 5))
    labels = np.array([0, 3, 1])
    net.forward(x, labels)
    return net, x, labels, net.backward()


@pytest.mark.claim("C2.5")
def test_shapes(run):
    net, x, _, trace = run
    widths = [5, 7, 7, 6, 6, 4, 1]
    for t in range(1, net.T + 1):
        assert trace.message(t).shape == (3, widths[t - 1], widths[t])
        assert trace.incoming(t).shape == (3, widths[t - 1])
    assert trace.incoming(net.T + 1).shape == (3, 1)
    assert {k: v.shape for k, v in trace.grads.items()} == {k: v.shape for k, v in net.params.items()}


@pytest.mark.claim("C2.7")
@pytest.mark.claim("C2.8")
def test_elementwise_block_is_zero_off_the_diagonal_and_stores_only_edges(run):
    _, _, _, trace = run
    block = trace.block(2)              # Tanh
    assert block.kind == "diagonal" and block.values.shape == (3, 7)
    dense = trace.message(2)
    off = ~np.eye(7, dtype=bool)
    assert np.all(dense[:, off] == 0.0)
    np.testing.assert_array_equal(np.einsum("bnn->bn", dense), block.values)
    np.testing.assert_array_equal(block.partials.edges(), np.eye(7, dtype=bool))


@pytest.mark.claim("C2.7")
def test_affine_block_is_w_with_column_n_prime_scaled_by_its_arriving_sum(run):
    net, _, _, trace = run
    for t in (1, 3, 5):
        W = net.params[f"{t}.W"]
        arriving = trace.incoming(t + 1)
        for b in range(3):
            np.testing.assert_array_equal(trace.message(t)[b], W * arriving[b][None, :])


def test_dense_block_is_the_jacobian_with_columns_scaled(run):
    _, _, _, trace = run
    jac = trace.partials[3].inputs.dense()            # Softmax, (B, 6, 6)
    np.testing.assert_array_equal(trace.message(4), jac * trace.incoming(5)[:, None, :])


@pytest.mark.claim("C2.1")
def test_base_case_is_the_loss_partials_over_b(run):
    net, _, _, trace = run
    T = net.T
    np.testing.assert_array_equal(trace.incoming(T + 1), np.full((3, 1), 1 / 3))
    np.testing.assert_array_equal(trace.message(T), trace.partials[T - 1].inputs.dense() * (1 / 3))


def test_each_node_sums_what_arrives(run):
    net, _, _, trace = run
    for t in range(1, net.T + 1):
        np.testing.assert_array_equal(trace.incoming(t), trace.message(t).sum(axis=2))


def test_backward_twice_gives_identical_results_and_fresh_arrays(run):
    net, _, _, first = run
    second = net.backward()
    for t in range(1, net.T + 1):
        np.testing.assert_array_equal(first.message(t), second.message(t))
        np.testing.assert_array_equal(first.incoming(t), second.incoming(t))
        assert not np.shares_memory(first.block(t).values, second.block(t).values)
    for k in first.grads:
        np.testing.assert_array_equal(first.grads[k], second.grads[k])


@pytest.mark.parametrize("keep", ["sums", [1], [2, 5], []])
def test_keep_options_compute_the_same_sums(run, keep):
    net, _, _, full = run
    part = net.backward(keep=keep)
    kept = [] if keep == "sums" else keep
    assert sorted(part.blocks) == sorted(kept)
    for t in range(1, net.T + 1):
        np.testing.assert_array_equal(part.incoming(t), full.incoming(t))
        if t in kept:
            np.testing.assert_array_equal(part.message(t), full.message(t))
        else:
            with pytest.raises(mp.StateError, match=f"layer {t}.*not kept"):
                part.message(t)
    for k in full.grads:
        np.testing.assert_array_equal(part.grads[k], full.grads[k])


KEEP_ERROR = "keep must be 'all', 'sums' or a list of layer indices"


@pytest.mark.parametrize("keep, pattern", [
    ([7], r"layers are 1\.\.6"), ("some", KEEP_ERROR), (5, KEEP_ERROR), (None, KEEP_ERROR),
    ("most", KEEP_ERROR), ([1.5], KEEP_ERROR), ([True], KEEP_ERROR),
], ids=["list-7", "some", "int-5", "None", "most", "list-1.5", "list-True"])
def test_bad_keep_is_a_clear_error(run, keep, pattern):
    """This once failed because keep=5 or None raised a bare TypeError and keep=[1.5] or
    [True] were silently taken as layer 1."""
    with pytest.raises(ValueError, match=pattern):
        run[0].backward(keep=keep)


@pytest.mark.parametrize("chunk_bytes", [1, 500, 1 << 12, 1 << 40])
def test_chunking_does_not_change_a_bit(run, chunk_bytes):
    net, _, _, full = run
    other = net.backward(chunk_bytes=chunk_bytes)
    for t in range(1, net.T + 1):
        np.testing.assert_array_equal(other.message(t), full.message(t))
        np.testing.assert_array_equal(other.incoming(t), full.incoming(t))


def test_nothing_passed_in_is_modified():
    net = small_net()
    x = rng.standard_normal((3, 5))
    labels = np.array([0, 3, 1])
    onehot = np.eye(4)[labels]
    params_before = {k: v.copy() for k, v in net.params.items()}
    for target in (labels, onehot):
        x_before, target_before = x.copy(), target.copy()
        net.forward(x, target)
        net.backward()
        mp.backprop(net, x, target)
        mp.numeric_gradients(net, x, target)
        mp.verify(net, x, target)
        np.testing.assert_array_equal(x, x_before)
        np.testing.assert_array_equal(target, target_before)
    for k, v in net.params.items():
        np.testing.assert_array_equal(v, params_before[k])


@pytest.mark.parametrize("layer", [mp.ReLU(), mp.Sigmoid(), mp.Tanh(), mp.Softmax(),
                                   mp.LogSoftmax(), mp.Affine(4, 4, seed=3)],
                         ids=lambda layer: layer.describe())
def test_classic_backward_leaves_dout_alone(layer):
    x = rng.standard_normal((2, 4))
    out, saved = layer.forward(x)
    dout = rng.standard_normal(out.shape)
    before = dout.copy()
    first = layer.backward(saved, dout)[0]
    second = layer.backward(saved, dout)[0]
    np.testing.assert_array_equal(dout, before)
    np.testing.assert_array_equal(first, second)


def test_float32_end_to_end():
    net = small_net(np.float32)
    x = rng.standard_normal((3, 5))
    net.forward(x, [0, 1, 2])
    trace = net.backward()
    assert all(trace.message(t).dtype == np.float32 for t in range(1, net.T + 1))
    assert all(g.dtype == np.float32 for g in trace.grads.values())
    assert mp.verify(net, x, [0, 1, 2]).ok


def test_stored_messages_and_sums_are_read_only(run):
    _, _, _, trace = run
    for t in (1, 2, 4):
        with pytest.raises(ValueError, match="read-only"):
            trace.block(t).values[0, 0] = 1.0
        with pytest.raises(ValueError, match="read-only"):
            trace.incoming(t)[0, 0] = 1.0
