"""The training loop (mp.train): training with messages and with standard backprop follow the
same trajectory (with dropout and with BatchNorm), it learns the digits, it shuffles, applies
schedules, never hands BatchNorm a batch of one, and Ctrl-C keeps the last checkpoint."""

import numpy as np
import pytest

import msgpass as mp
from msgpass import optim
from msgpass.training.data import Dataset, Standardizer, load_digits, minibatches, split


def digits_split():
    train_set, val = split(load_digits(), 0.2, seed=0)
    scale = Standardizer.fit(train_set.x)
    return (Dataset(scale(train_set.x), train_set.y, "train"),
            Dataset(scale(val.x), val.y, "val"))


@pytest.mark.parametrize("name", ["sgd", "adam", "nesterov"])
def test_messages_and_backprop_follow_the_same_trajectory(name):
    """100 steps, float64, with dropout: the parameters agree to 1e-9 relative."""
    train_set, _ = digits_split()
    results = []
    for backward in ("messages", "backprop"):
        net = mp.build_network("64-32-relu-dropout0.2-10-sce", seed=0, init="he_normal")
        opt = optim.OPTIMIZERS[name](net.params, lr=0.05 if name != "adam" else 1e-3)
        mp.train(net, opt, train_set, epochs=5, batch_size=32, backward=backward, steps=100,
                 seed=0)
        results.append({k: v.copy() for k, v in net.params.items()})
    for key in results[0]:
        a, b = results[0][key], results[1][key]
        assert np.max(np.abs(a - b)) <= 1e-9 * np.max(np.abs(b)), key
    assert not np.allclose(results[0]["1.W"], mp.build_network(
        "64-32-relu-dropout0.2-10-sce", seed=0, init="he_normal").params["1.W"])   # it moved


def test_training_with_batchnorm_messages_equals_backprop_and_learns():
    train_set, val = digits_split()
    finals = []
    for backward in ("messages", "backprop"):
        net = mp.build_network("64-32-batchnorm-relu-10-sce", seed=0, init="he_normal")
        history = mp.train(net, optim.Adam(net.params, lr=1e-2), train_set, epochs=4,
                           batch_size=32, backward=backward, validation=val, steps=100)
        finals.append(({k: v.copy() for k, v in net.params.items()},
                       net.layers[1].running_var.copy(), history.last["val_accuracy"]))
    (a, var_a, acc), (b, var_b, _) = finals
    # relative to the largest parameter: the bias that feeds BatchNorm has gradient exactly 0
    # (the normalisation removes any shift), so its values are round-off (~1e-11) that Adam
    # moves around; measured per array it is noise against noise
    scale = max(np.max(np.abs(v)) for v in b.values())
    for key in a:
        assert np.max(np.abs(a[key] - b[key])) <= 1e-9 * scale, key
    assert np.max(np.abs(b["1.b"])) < 1e-9           # and that bias did stay at ~0
    np.testing.assert_allclose(var_a, var_b, rtol=1e-9)
    assert acc >= 0.95          # measured 0.975 after 100 steps


def test_training_on_digits_learns():
    train_set, val = digits_split()
    net = mp.build_network("64-64-relu-10-sce", seed=0, init="he_normal")
    history = mp.train(net, optim.Adam(net.params, lr=1e-3), train_set, epochs=10,
                       batch_size=32, validation=val)
    assert history.last["val_accuracy"] >= 0.95
    assert history.column("loss")[-1] < history.column("loss")[0] / 5


def test_minibatches_are_shuffled_and_schedules_are_applied():
    """Review found mutations that survived the tests; minibatches left in order, or a
    schedule the loop never applied, would have: this checks both."""
    order = np.concatenate(list(minibatches(50, 10, np.random.default_rng(0))))
    assert sorted(order) == list(range(50)) and list(order) != list(range(50))
    train_set, _ = digits_split()
    net = mp.build_network("64-8-relu-10-sce", seed=0)
    history = mp.train(net, optim.SGD(net.params, lr=0.2), train_set, epochs=3, batch_size=256,
                       schedule=optim.StepLR(1, 0.5))
    assert history.column("lr") == [0.2, 0.1, 0.05]


def test_a_last_batch_of_one_joins_the_one_before_when_batchnorm_needs_two():
    """This once failed because an epoch could end in a batch of one sample, which BatchNorm
    in training mode refuses (the variance of one sample is 0)."""
    batches = list(minibatches(33, 16, np.random.default_rng(0), smallest=2))
    assert [len(b) for b in batches] == [16, 17]
    assert [len(b) for b in minibatches(33, 16, np.random.default_rng(0))] == [16, 16, 1]
    train_set, _ = digits_split()
    net = mp.build_network("64-8-batchnorm-relu-10-sce", seed=0)
    mp.train(net, optim.SGD(net.params, lr=0.1), train_set.subset(np.arange(33)),
             batch_size=16, epochs=2)                      # would fail on a batch of one


def test_ctrl_c_keeps_the_last_checkpoint(tmp_path):
    train_set, _ = digits_split()
    net = mp.build_network("64-16-relu-10-sce", seed=0)
    opt = optim.SGD(net.params, lr=0.1)
    calls = {"n": 0}

    def interrupt(epoch, step, per_epoch, loss):
        calls["n"] += 1
        if epoch == 1 and step == 3:
            raise KeyboardInterrupt
    history = mp.train(net, opt, train_set, epochs=3, batch_size=64, progress=interrupt,
                       checkpoint=tmp_path / "c.npz")
    assert history.interrupted and len(history.rows) == 1
    with np.load(tmp_path / "c.npz", allow_pickle=False) as stored:
        assert list(stored["history/epoch"]) == [1.0]


def test_training_data_must_be_labelled():
    """This once failed with numpy's "operands could not be broadcast" after the first epoch:
    a Dataset whose y were regression targets (N, K) trained, then evaluate compared argmax
    with them (found by tests/test_every_error_is_ours.py)."""
    net = mp.Sequential([mp.Affine(2, 2, seed=0), mp.MSELoss()])
    targets = Dataset(np.ones((3, 2)), np.zeros((3, 2)), "targets", 2)
    with pytest.raises(mp.DataError, match=r"the training data must hold .* integer labels y "
                                           r"of shape \(N,\), got x \(3, 2\) and y \(3, 2\)"):
        mp.train(net, optim.SGD(net.params, lr=0.1), targets)
    labels = Dataset(np.ones((3, 2)), np.array([0, 1, 1]), "labels", 2)
    fractions = Dataset(np.ones((3, 2)), np.array([0.5, 1, 1]), "fractions", 2)
    with pytest.raises(mp.DataError, match=r"the validation data: labels y must be integers"):
        mp.train(net, optim.SGD(net.params, lr=0.1), labels, validation=fractions)
    with pytest.raises(mp.DataError, match=r"the data to evaluate must hold"):
        mp.evaluate(net, targets)
