"""Training: data loading and its errors, optimizers against their formulas, initialisation,
dropout, the training loop (messages and backprop alike), checkpoints, and `msgpass train`."""

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest

import msgpass as mp
from msgpass import optim
from msgpass.errors import DataError
from msgpass.train.data import (
    IDX_IMAGES,
    IDX_LABELS,
    Dataset,
    Standardizer,
    load_digits,
    load_mnist,
    minibatches,
    read_idx,
    split,
)

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
needs_mnist = pytest.mark.skipif(not (MNIST / "t10k-images-idx3-ubyte.gz").exists(),
                                 reason=f"MNIST files not found in {MNIST}")


def idx_bytes(magic, dims, payload: bytes) -> bytes:
    head = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    return head + payload


def write_gz(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data))
    return path


# -- data ---------------------------------------------------------------------------------

def test_digits_are_built_in():
    d = load_digits()
    assert d.x.shape == (1797, 64) and d.x.min() == 0 and d.x.max() == 16
    assert list(np.bincount(d.y)) == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


@needs_mnist
def test_mnist_loads_with_the_published_counts():
    test = load_mnist("test", MNIST)
    assert test.x.shape == (10000, 784) and 0 <= test.x.min() and test.x.max() == 1.0
    assert list(np.bincount(test.y)) == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_idx_files_are_checked(tmp_path):
    good = idx_bytes(IDX_IMAGES, [2, 28, 28], bytes(2 * 784))
    np.testing.assert_array_equal(read_idx(write_gz(tmp_path / "ok.gz", good), IDX_IMAGES),
                                  np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError, match=r"truncated: the header promises 2 × 28 × 28 = 1,568"):
        read_idx(write_gz(tmp_path / "short.gz", good[:-100]), IDX_IMAGES)
    with pytest.raises(DataError, match="magic number 2049, expected 2051.*labels file"):
        read_idx(write_gz(tmp_path / "labels.gz", idx_bytes(IDX_LABELS, [3], bytes(3))),
                 IDX_IMAGES)
    corrupt = gzip.compress(good)
    (tmp_path / "corrupt.gz").write_bytes(corrupt[:len(corrupt) // 2])
    with pytest.raises(DataError, match="not a readable gzip file"):
        read_idx(tmp_path / "corrupt.gz", IDX_IMAGES)
    with pytest.raises(DataError, match="no such file"):
        read_idx(tmp_path / "nothing.gz", IDX_IMAGES)


def test_mnist_directory_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("MSGPASS_MNIST", raising=False)
    with pytest.raises(DataError, match="no MNIST directory given.*MSGPASS_MNIST"):
        load_mnist("test")
    with pytest.raises(DataError, match="not a directory"):
        load_mnist("test", tmp_path / "missing")
    write_gz(tmp_path / "t10k-images-idx3-ubyte.gz",
             idx_bytes(IDX_IMAGES, [10000, 28, 28], bytes(10000 * 784)))
    labels = bytearray(10000)
    labels[42] = 11
    write_gz(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(IDX_LABELS, [10000],
                                                                bytes(labels)))
    with pytest.raises(DataError, match="label 11 at index 42; labels must be 0..9"):
        load_mnist("test", tmp_path)
    write_gz(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(IDX_LABELS, [9999],
                                                                bytes(9999)))
    with pytest.raises(DataError, match="10,000 images but 9,999 labels"):
        load_mnist("test", tmp_path)
    monkeypatch.setenv("MSGPASS_MNIST", str(tmp_path / "elsewhere"))
    with pytest.raises(DataError, match="elsewhere: not a directory"):
        load_mnist("test")


def test_standardizer_split_and_minibatches():
    d = load_digits()
    train_set, val = split(d, 0.2, seed=3)
    assert len(train_set) + len(val) == len(d) and len(val) == 359
    assert list(np.bincount(train_set.y) + np.bincount(val.y)) == list(np.bincount(d.y))
    again, _ = split(d, 0.2, seed=3)
    np.testing.assert_array_equal(again.y, train_set.y)       # seeded
    scale = Standardizer.fit(train_set.x)
    z = scale(train_set.x)
    live = train_set.x.std(axis=0) > 0.1     # where eps = 1e-7 is negligible
    np.testing.assert_allclose(z[:, live].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(z[:, live].std(axis=0), 1, rtol=1e-6)
    assert np.all(np.isfinite(scale(val.x)))                    # constant pixels: eps, no NaN
    batches = list(minibatches(10, 4, np.random.default_rng(0)))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(np.concatenate(batches)) == list(range(10))


# -- optimizers ---------------------------------------------------------------------------

def run_optimizer(cls, grads, **kw):
    theta = {"w": np.array([[1.0, -2.0]])}
    opt = cls(theta, **kw)
    for g in grads:
        opt.step({"w": np.array([g])})
    return theta["w"][0]


G = [[0.5, -1.0], [0.25, 2.0], [-1.0, 0.5]]


def test_optimizers_follow_their_formulas():
    g = np.array(G)
    w0 = np.array([1.0, -2.0])
    np.testing.assert_allclose(run_optimizer(optim.SGD, G, lr=0.1), w0 - 0.1 * g.sum(0))
    # momentum 0.9: v1 = −lr g1, v2 = 0.9 v1 − lr g2, v3 = 0.9 v2 − lr g3
    v1 = -0.1 * g[0]
    v2 = 0.9 * v1 - 0.1 * g[1]
    v3 = 0.9 * v2 - 0.1 * g[2]
    np.testing.assert_allclose(run_optimizer(optim.Momentum, G, lr=0.1), w0 + v1 + v2 + v3)
    # Nesterov: θ += μ·v_new − lr·g
    nes = w0 + (0.9 * v1 - 0.1 * g[0]) + (0.9 * v2 - 0.1 * g[1]) + (0.9 * v3 - 0.1 * g[2])
    np.testing.assert_allclose(run_optimizer(optim.Nesterov, G, lr=0.1), nes)
    h = np.cumsum(g * g, axis=0)
    np.testing.assert_allclose(run_optimizer(optim.AdaGrad, G, lr=0.1),
                               w0 - (0.1 * g / (np.sqrt(h) + 1e-7)).sum(0))
    h, step = np.zeros(2), np.zeros(2)
    for gi in g:
        h = 0.99 * h + 0.01 * gi * gi
        step += 0.01 * gi / (np.sqrt(h) + 1e-7)
    np.testing.assert_allclose(run_optimizer(optim.RMSProp, G, lr=0.01), w0 - step)
    h, s, w = np.zeros(2), np.zeros(2), w0.copy()
    for gi in g:
        h = 0.95 * h + 0.05 * gi * gi
        d = np.sqrt(s + 1e-6) / np.sqrt(h + 1e-6) * gi
        s = 0.95 * s + 0.05 * d * d
        w = w - d
    np.testing.assert_allclose(run_optimizer(optim.AdaDelta, G), w)
    m, v, w = np.zeros(2), np.zeros(2), w0.copy()
    for t, gi in enumerate(g, 1):
        m = 0.9 * m + 0.1 * gi
        v = 0.999 * v + 0.001 * gi * gi
        w = w - 0.01 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    np.testing.assert_allclose(run_optimizer(optim.Adam, G, lr=0.01), w)


def test_weight_decay_applies_to_weights_not_biases():
    params = {"W": np.array([[2.0]]), "b": np.array([2.0])}
    opt = optim.SGD(params, lr=0.1, weight_decay=0.5, l1=0.25)
    opt.step({"W": np.array([[0.0]]), "b": np.array([0.0])})
    assert params["W"][0, 0] == pytest.approx(2.0 - 0.1 * (0.5 * 2.0 + 0.25))
    assert params["b"][0] == 2.0
    with pytest.raises(ValueError, match="lr must be"):
        optim.SGD(params, lr=-1)


def test_schedules():
    assert [optim.StepLR(2, 0.5)(e) for e in range(5)] == [1, 1, 0.5, 0.5, 0.25]
    assert optim.ExponentialLR(0.9)(3) == pytest.approx(0.729)
    cosine = optim.CosineLR(10, floor=0.1)
    assert cosine(0) == 1 and cosine(10) == pytest.approx(0.1) and cosine(5) == pytest.approx(0.55)


@pytest.mark.parametrize("name, std", [("he_normal", np.sqrt(2 / 400)),
                                       ("xavier_normal", np.sqrt(2 / 700)),
                                       ("he_uniform", np.sqrt(6 / 400) / np.sqrt(3)),
                                       ("xavier_uniform", np.sqrt(6 / 700) / np.sqrt(3))])
def test_initialisations(name, std):
    w = mp.Affine(400, 300, seed=1, init=name).W
    assert w.std() == pytest.approx(std, rel=0.01)   # 120,000 draws: ~0.2 % sampling error
    np.testing.assert_array_equal(w, mp.Affine(400, 300, seed=1, init=name).W)   # seeded


# -- dropout --------------------------------------------------------------------------------

def test_dropout_masks_step_and_evaluate():
    layer = mp.Dropout(0.4, seed=2)
    x = np.ones((50, 40))
    first, _ = layer.forward(x)
    again, _ = layer.forward(x)
    np.testing.assert_array_equal(first, again)           # one mask per step
    assert set(np.unique(first)) == {0.0, 1 / 0.6}
    assert abs((first == 0).mean() - 0.4) < 0.03          # 2,000 draws
    layer.step += 1
    assert not np.array_equal(layer.forward(x)[0], first)
    layer.training = False
    np.testing.assert_array_equal(layer.forward(x)[0], x)


@pytest.mark.claim("C4.9")
def test_dropout_messages_are_the_mask_and_verify():
    net = mp.build_network("5-8-relu-dropout0.5-3-sce", seed=0)
    x, y = np.random.default_rng(0).standard_normal((4, 5)), np.array([0, 1, 2, 1])
    net.forward(x, y)
    trace = net.backward()
    keep = trace.partials[2].inputs.values
    np.testing.assert_array_equal(trace.block(3).values, keep * trace.incoming(4))
    assert np.all(trace.incoming(3)[keep == 0] == 0)      # a dropped node hears nothing
    assert mp.verify(net, x, y).ok


# -- the loop -------------------------------------------------------------------------------

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


def test_training_on_digits_learns():
    train_set, val = digits_split()
    net = mp.build_network("64-64-relu-10-sce", seed=0, init="he_normal")
    history = mp.train(net, optim.Adam(net.params, lr=1e-3), train_set, epochs=10,
                       batch_size=32, validation=val)
    assert history.last["val_accuracy"] >= 0.95
    assert history.column("loss")[-1] < history.column("loss")[0] / 5


# -- checkpoints ----------------------------------------------------------------------------

def test_checkpoints_round_trip_and_refuse_another_network(tmp_path):
    net = mp.build_network("64-16-relu-10-sce", seed=0)
    opt = optim.Adam(net.params, lr=1e-3)
    train_set, _ = digits_split()
    mp.train(net, opt, train_set, steps=5, batch_size=16)
    path = mp.save_checkpoint(tmp_path / "c.npz", net, opt)
    other = mp.build_network("64-16-relu-10-sce", seed=9)
    opt2 = optim.Adam(other.params, lr=1e-3)
    mp.load_checkpoint(path, other, opt2)
    for key in net.params:
        np.testing.assert_array_equal(other.params[key], net.params[key])
    assert opt2.steps == 5 and np.array_equal(opt2.state["1.W"]["m"], opt.state["1.W"]["m"])
    wrong = mp.build_network("64-17-relu-10-sce", seed=0)
    before = {k: v.copy() for k, v in wrong.params.items()}
    with pytest.raises(DataError, match=r"Affine\(64→16\).*not of this network.*"
                                        r"Affine\(64→17\)"):
        mp.load_checkpoint(path, wrong)
    for key in before:
        np.testing.assert_array_equal(wrong.params[key], before[key])   # nothing changed
    with np.load(path, allow_pickle=False) as stored:                   # no pickle inside
        assert "param/1.W" in stored.files


def test_an_interrupted_save_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    net = mp.build_network("4-3-relu-2-sce", seed=0)
    path = mp.save_checkpoint(tmp_path / "c.npz", net)
    old = path.read_bytes()

    def broken(stream, **arrays):
        stream.write(b"half a file")
        raise KeyboardInterrupt
    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(KeyboardInterrupt):
        mp.save_checkpoint(path, net)
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["c.npz"]               # no temporary left behind


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


# -- the command ----------------------------------------------------------------------------

def test_msgpass_train_with_no_arguments_reaches_95_percent(tmp_path, capsys, monkeypatch):
    from msgpass.cli import main
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "epoch  15" in out
    summary = json.loads((tmp_path / "msgpass-run" / "history.json").read_text())
    assert summary["epochs"][-1]["val_accuracy"] >= 0.95
    assert (tmp_path / "msgpass-run" / "curves.png").stat().st_size > 0


def test_msgpass_train_errors_are_one_line_and_overwrite_nothing(tmp_path, capsys):
    from msgpass.cli import main
    out = tmp_path / "run"
    assert main(["train", "--quiet", "--epochs", "1", "--out", str(out)]) == 0
    saved = (out / "checkpoint.npz").read_bytes()
    capsys.readouterr()
    for argv, message in [
        (["--data", "mnist", "--mnist", str(tmp_path / "nope")], "not a directory"),
        (["--resume", str(out / "checkpoint.npz"), "--arch", "64-20-relu-10-sce"],
         "not of this network"),
        (["--arch", "784-10-sce"], "64 features"),
    ]:
        assert main(["train", "--quiet", "--out", str(out), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
        assert (out / "checkpoint.npz").read_bytes() == saved


# -- batch normalisation ----------------------------------------------------------------------

def bn_case(batch=6, seed=0):
    net = mp.build_network("5-7-batchnorm-relu-6-tanh-batchnorm-3-sce", seed=seed)
    rng = np.random.default_rng(seed)
    return net, rng.standard_normal((batch, 5)) * 2 + 1, rng.integers(0, 3, batch)


@pytest.mark.claim("C4.10")
def test_batchnorm_messages_run_between_samples():
    net, x, y = bn_case()
    net.forward(x, y)
    trace = net.backward()
    block = trace.block(2)                                  # BatchNorm(7), training mode
    assert block.kind == "coupled" and trace.message(2).shape == (7, 6, 6)
    J = trace.partials[1].inputs.values                     # (N, B, B)
    arriving = trace.incoming(3)                            # (B, N)
    np.testing.assert_array_equal(trace.message(2), J * arriving.T[:, None, :])
    np.testing.assert_allclose(trace.incoming(2), trace.message(2).sum(axis=2).T, rtol=1e-15)
    # off-diagonal sample pairs really talk: J_j[b, b'] = (γ/σ)(δ − 1/B − x̂_b x̂_b'/B)
    assert np.all(np.abs(J[:, 0, 1]) > 0)
    with pytest.raises(mp.StateError, match="couples the samples"):
        trace.sample_messages(2, 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.claim("C4.10")
def test_batchnorm_verifies_against_backprop_and_numerical_differentiation(seed):
    net, x, y = bn_case(batch=4 + seed, seed=seed)
    report = mp.verify(net, x, y)
    assert report.ok, str(report)
    assert any(c.witness == "numeric" and c.t == 2 and not c.result.inconclusive
               for c in report.checks)


def test_batchnorm_streams_under_a_budget_and_evaluates_elementwise():
    net, x, y = bn_case(batch=8)
    net.forward(x, y)
    full = net.backward()
    for budget in (8 * 8 * 8, 3 * 8 * 8 * 8):               # one feature, three features
        streamed = net.backward(keep="sums", budget_bytes=budget)
        for t in range(1, net.T + 2):
            np.testing.assert_array_equal(streamed.incoming(t), full.incoming(t))
    layer = net.layers[1]
    before = layer.running_mean.copy()
    mp.verify(net, x, y)                                    # many forwards: stats unchanged
    np.testing.assert_array_equal(layer.running_mean, before)
    net.next_step()                                         # the trainer's end of step
    np.testing.assert_allclose(layer.running_mean, 0.1 * (x @ net.params["1.W"]
                                                          + net.params["1.b"]).mean(axis=0))
    net.eval()
    net.forward(x, y)
    assert net.backward().block(2).kind == "diagonal"       # eval mode: elementwise
    assert mp.verify(net, x, y).ok


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


def test_checkpoints_keep_batchnorm_running_statistics(tmp_path):
    train_set, _ = digits_split()
    net = mp.build_network("64-16-batchnorm-relu-10-sce", seed=0)
    mp.train(net, optim.SGD(net.params, lr=0.1), train_set, steps=20, batch_size=32)
    path = mp.save_checkpoint(tmp_path / "c.npz", net)
    fresh = mp.build_network("64-16-batchnorm-relu-10-sce", seed=5)
    mp.load_checkpoint(path, fresh)
    np.testing.assert_array_equal(fresh.layers[1].running_mean, net.layers[1].running_mean)
    np.testing.assert_array_equal(fresh.layers[1].running_var, net.layers[1].running_var)
    assert mp.evaluate(fresh, train_set) == mp.evaluate(net, train_set)


# -- what a review found ----------------------------------------------------------------------

def test_a_last_batch_of_one_joins_the_one_before_when_batchnorm_needs_two():
    batches = list(minibatches(33, 16, np.random.default_rng(0), smallest=2))
    assert [len(b) for b in batches] == [16, 17]
    assert [len(b) for b in minibatches(33, 16, np.random.default_rng(0))] == [16, 16, 1]
    train_set, _ = digits_split()
    net = mp.build_network("64-8-batchnorm-relu-10-sce", seed=0)
    mp.train(net, optim.SGD(net.params, lr=0.1), train_set.subset(np.arange(33)),
             batch_size=16, epochs=2)                      # would fail on a batch of one


def test_minibatches_are_shuffled_and_schedules_are_applied():
    order = np.concatenate(list(minibatches(50, 10, np.random.default_rng(0))))
    assert sorted(order) == list(range(50)) and list(order) != list(range(50))
    train_set, _ = digits_split()
    net = mp.build_network("64-8-relu-10-sce", seed=0)
    history = mp.train(net, optim.SGD(net.params, lr=0.2), train_set, epochs=3, batch_size=256,
                       schedule=optim.StepLR(1, 0.5))
    assert history.column("lr") == [0.2, 0.1, 0.05]


def test_per_sample_gradients_are_refused_below_batchnorm():
    net = mp.build_network("3-4-batchnorm-relu-2-sce", seed=0)
    net.forward(np.random.default_rng(0).standard_normal((5, 3)), np.array([0, 1, 0, 1, 1]))
    trace = net.backward(per_sample=True)
    with pytest.raises(mp.StateError, match=r"layer 2 \(BatchNorm\(4\)\) couples.*1\.W"):
        trace.per_sample_grads()


def test_coupled_messages_are_oriented_receiver_first():
    from msgpass.partials import Coupled
    values = np.random.default_rng(1).standard_normal((3, 4, 4))   # not symmetric in b, b'
    incoming = np.random.default_rng(2).standard_normal((4, 3))    # (B, N)
    J = Coupled(values)
    message = J.send(incoming, J.whole(4))
    for j in range(3):
        for b in range(4):
            for b2 in range(4):
                assert message[j, b, b2] == values[j, b, b2] * incoming[b2, j]
    np.testing.assert_allclose(J.receive(message),
                               np.einsum("jab,bj->aj", values, incoming), rtol=1e-14)


def test_batchnorm_running_variance_and_mp_verify():
    net, x, y = bn_case(batch=8)
    net.forward(x, y)
    net.next_step()
    z = x @ net.params["1.W"] + net.params["1.b"]
    np.testing.assert_allclose(net.layers[1].running_var, 0.9 + 0.1 * z.var(axis=0))
    pytest.importorskip("mpmath")
    net, x, y = bn_case(batch=3)
    assert mp.verify(net.astype("mp:30"), x, y).ok


def test_dropouts_built_without_a_seed_draw_different_masks_by_their_position():
    """Unseeded Dropouts once took their seeds from a class counter, so a network's masks
    depended on how many Dropouts the process had built before; now the seed is the
    position, the same in every run and different for each Dropout of a network."""
    def masks():
        net = mp.Sequential([mp.Dropout(0.5), mp.Affine(30, 30, seed=0), mp.Dropout(0.5),
                             mp.MSELoss()])
        net.forward(np.ones((20, 30)), np.zeros((20, 30)))
        return [net.record.saved[t - 1].keep for t in (1, 3)]
    first, third = masks()
    assert not np.array_equal(first, third)
    mp.Dropout(0.5)                       # building another Dropout changes nothing
    again = masks()
    assert np.array_equal(again[0], first) and np.array_equal(again[1], third)
    dropped = np.mean(first == 0)
    assert 0.4 < dropped < 0.6


def test_a_refused_checkpoint_changes_nothing(tmp_path):
    net = mp.build_network("64-16-relu-10-sce", seed=0)
    path = mp.save_checkpoint(tmp_path / "c.npz", net, optim.Adam(net.params, lr=1e-3))
    other = mp.build_network("64-16-relu-10-sce", seed=3)
    before = {k: v.copy() for k, v in other.params.items()}
    with pytest.raises(mp.StateError, match="optimizer state of Adam, not SGD"):
        mp.load_checkpoint(path, other, optim.SGD(other.params, lr=0.1))
    for key in before:
        np.testing.assert_array_equal(other.params[key], before[key])
    (tmp_path / "bad.npz").write_bytes(path.read_bytes()[:3000])
    with pytest.raises(DataError, match="not a readable msgpass checkpoint"):
        mp.load_checkpoint(tmp_path / "bad.npz", other)


@pytest.mark.parametrize("argv, message", [
    (["--lr", "-1"], "--lr must be finite and > 0"),
    (["--lr", "nan"], "--lr must be finite"),
    (["--weight-decay", "-1"], "--weight-decay must be finite and ≥ 0"),
    (["--batch", "0"], "--batch must be a positive integer"),
    (["--steps", "0"], "--steps must be a positive integer"),
    (["--validation", "1.5"], "--validation must be a fraction"),
])
def test_msgpass_train_refuses_bad_numbers(argv, message, tmp_path, capsys):
    from msgpass.cli import main
    assert main(["train", "--quiet", "--out", str(tmp_path / "r"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "r").exists()


def test_msgpass_train_will_not_overwrite_another_networks_checkpoint(tmp_path, capsys):
    from msgpass.cli import main
    out = tmp_path / "run"
    assert main(["train", "--quiet", "--epochs", "1", "--out", str(out)]) == 0
    saved = (out / "checkpoint.npz").read_bytes()
    assert main(["train", "--quiet", "--epochs", "1", "--arch", "64-32-relu-10-sce",
                 "--out", str(out)]) == 2
    assert "not of this network; choose another --out" in capsys.readouterr().err
    assert (out / "checkpoint.npz").read_bytes() == saved
    (tmp_path / "bad.npz").write_bytes(saved[:3000])
    assert main(["train", "--quiet", "--resume", str(tmp_path / "bad.npz"), "--out",
                 str(tmp_path / "other")]) == 2
    assert "not a readable msgpass checkpoint" in capsys.readouterr().err


def test_the_cli_fits_its_standardiser_on_the_training_split_only():
    from types import SimpleNamespace

    from msgpass.cli.train import _data
    args = SimpleNamespace(data="digits", mnist=None, validation=0.1, seed=3)
    train_set, val, test = _data(args)
    raw_train, raw_val = split(load_digits(), 0.1, seed=3)
    scale = Standardizer.fit(raw_train.x, eps=1.6)           # the training rows only
    np.testing.assert_array_equal(train_set.x, scale(raw_train.x))
    np.testing.assert_array_equal(val.x, scale(raw_val.x))
    leaky = Standardizer.fit(load_digits().x, eps=1.6)       # what a leak would give
    assert not np.array_equal(val.x, leaky(raw_val.x)) and test is None
