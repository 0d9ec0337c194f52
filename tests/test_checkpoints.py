"""Checkpoints (msgpass.training.checkpoints): parameters, optimizer state and BatchNorm's running
statistics round-trip; saves are atomic; another network's, another optimizer's or a corrupt
checkpoint is refused before anything changes."""

import os

import numpy as np
import pytest

import msgpass as mp
from msgpass import optim
from msgpass.errors import DataError
from msgpass.training.data import Dataset, Standardizer, load_digits, split


def digits_split():
    train_set, val = split(load_digits(), 0.2, seed=0)
    scale = Standardizer.fit(train_set.x)
    return (Dataset(scale(train_set.x), train_set.y, "train"),
            Dataset(scale(val.x), val.y, "val"))


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


def test_a_refused_checkpoint_changes_nothing(tmp_path):
    """This once failed because an optimizer mismatch was found only after the parameters had
    been loaded, and a truncated file escaped as a zipfile or KeyError, not a DataError."""
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
