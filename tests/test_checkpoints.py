"""Checkpoints (msgpass.training.checkpoints): parameters, optimizer state and BatchNorm's running
statistics round-trip; saves are atomic; another network's, another optimizer's or a corrupt
checkpoint is refused before anything changes."""

import os
import signal
import subprocess
import sys
import time

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


NOT_A_CHECKPOINT = {                        # file contents → what the error says they look like
    b"hello, this is garbage\n" * 10: r"not a msgpass checkpoint: not an \.npz \(zip\) file, "
                                      r"it begins with b'hello, this is garba'",
    b"PK\x03\x04" + b"garbage" * 20: r"not a readable msgpass checkpoint: a damaged \.npz "
                                      r"\(zip\) file",
    b"": r"not a msgpass checkpoint: an empty file",
    b"<!DOCTYPE html><html></html>": r"not a msgpass checkpoint: .*looks like an HTML page",
}


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("content", list(NOT_A_CHECKPOINT), ids=["text", "zip-magic", "empty",
                                                                 "html"])
def test_a_garbage_checkpoint_is_a_data_error_naming_the_file_and_leaks_no_file(tmp_path,
                                                                                 content):
    """Issue 22: garbage gave numpy's advice about ``allow_pickle=`` and left a ResourceWarning
    about an unclosed file (numpy's NpzFile does not close a file that is not a zip)."""
    import gc
    import warnings
    path = tmp_path / "c.npz"
    path.write_bytes(content)
    net = mp.build_network("4-3-relu-2-sce", seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(DataError, match=f"^{path}: " + NOT_A_CHECKPOINT[content]) as err:
            mp.load_checkpoint(path, net)
        del err
        gc.collect()
    assert "allow_pickle" not in str(caught) and "pickle.load" not in str(caught)
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], caught


def test_a_checkpoint_holding_python_objects_is_refused_unread(tmp_path):
    """Loading never unpickles: an .npz whose array holds objects (numpy would unpickle it) is
    refused, naming the array; so are an .npy and a pickle file given as a checkpoint."""
    import pickle
    net = mp.build_network("4-3-relu-2-sce", seed=0)
    arrays = {f"param/{k}": v for k, v in net.params.items()}
    arrays["meta/labels"] = np.array(net.labels)
    arrays["param/1.b"] = np.array([object()] * 3, dtype=object)
    with open(tmp_path / "objects.npz", "wb") as stream:
        np.savez(stream, **arrays)                   # numpy pickles the object array
    with pytest.raises(DataError, match=r"objects.npz: its array param/1.b holds Python objects "
                                        r"\(a pickle\); msgpass never unpickles"):
        mp.load_checkpoint(tmp_path / "objects.npz", net)
    np.save(tmp_path / "array.npy", np.zeros(3))
    with pytest.raises(DataError, match=r"array.npy: not a msgpass checkpoint: a single \.npy "
                                        r"array"):
        mp.load_checkpoint(tmp_path / "array.npy", net)
    (tmp_path / "p.pkl").write_bytes(pickle.dumps({"W": np.zeros(3)}))
    with pytest.raises(DataError, match=r"p.pkl: not a msgpass checkpoint: a Python pickle, "
                                        r"which msgpass never loads"):
        mp.load_checkpoint(tmp_path / "p.pkl", net)


def rewrite(path, change) -> None:
    """Rewrite the .npz at ``path`` as a valid zip (good CRCs) after ``change(arrays)``."""
    with np.load(path, allow_pickle=False) as stored:
        arrays = {key: stored[key] for key in stored.files}
    change(arrays)
    with open(path, "wb") as stream:
        np.savez(stream, **arrays)


def test_a_checkpoint_records_a_checksum_that_catches_a_change_that_parses(tmp_path):
    net = mp.build_network("4-3-relu-2-sce", seed=0)
    path = mp.save_checkpoint(tmp_path / "c.npz", net, optim.Adam(net.params, lr=1e-3))
    with np.load(path, allow_pickle=False) as stored:
        assert int(stored["meta/format"]) == 2 and len(str(stored["meta/sha256"])) == 64

    def nudge(arrays):
        arrays["param/1.W"][0, 0] = np.nextafter(arrays["param/1.W"][0, 0], 1)
    rewrite(path, nudge)
    fresh = mp.build_network("4-3-relu-2-sce", seed=1)
    before = {k: v.copy() for k, v in fresh.params.items()}
    with pytest.raises(DataError, match=r"c.npz: corrupt: its arrays do not match the sha256 "
                                        r"recorded when it was saved"):
        mp.load_checkpoint(path, fresh)
    for key in before:
        np.testing.assert_array_equal(fresh.params[key], before[key])   # nothing changed
    rewrite(path, lambda arrays: arrays.pop("optim/steps"))             # an array lost
    with pytest.raises(DataError, match="c.npz: corrupt: its arrays do not match the sha256"):
        mp.load_checkpoint(path, fresh)
    rewrite(path, lambda arrays: arrays.__setitem__("meta/format", np.array(3)))
    with pytest.raises(DataError, match=r"c.npz: a checkpoint of format 3, written by a newer "
                                        r"msgpass; this one reads formats 1 and 2"):
        mp.load_checkpoint(path, fresh)


def test_a_checkpoint_of_the_older_format_without_a_checksum_still_loads(tmp_path):
    net = mp.build_network("4-3-relu-2-sce", seed=0)
    path = mp.save_checkpoint(tmp_path / "c.npz", net)

    def older(arrays):                     # as msgpass wrote checkpoints before the checksum
        del arrays["meta/format"], arrays["meta/sha256"]
    rewrite(path, older)
    fresh = mp.build_network("4-3-relu-2-sce", seed=1)
    mp.load_checkpoint(path, fresh)
    for key in net.params:
        np.testing.assert_array_equal(fresh.params[key], net.params[key])


def test_every_cut_and_bit_flip_of_a_checkpoint_is_caught_or_harmless(tmp_path):
    """A truncated checkpoint, or one with a flipped bit (seeded sample of bits), is a DataError
    naming the file, or loads exactly what was saved (a flip in a zip timestamp)."""
    net = mp.build_network("4-3-relu-2-sce", seed=0)
    path = mp.save_checkpoint(tmp_path / "c.npz", net, optim.Adam(net.params, lr=1e-3))
    raw = path.read_bytes()
    target = tmp_path / "bad.npz"
    rng = np.random.default_rng(22)
    for cut in sorted(rng.choice(len(raw), 60, replace=False).tolist()):
        target.write_bytes(raw[:cut])
        with pytest.raises(DataError, match=f"^{target}: "):
            mp.load_checkpoint(target, mp.build_network("4-3-relu-2-sce", seed=1))
    caught = 0
    for bit in rng.choice(8 * len(raw), 400, replace=False).tolist():
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 1 << (bit % 8)
        target.write_bytes(bytes(flipped))
        fresh = mp.build_network("4-3-relu-2-sce", seed=1)
        try:
            mp.load_checkpoint(target, fresh, optim.Adam(fresh.params, lr=1e-3))
        except DataError as err:
            assert str(err).startswith(f"{target}: "), err
            caught += 1
            continue
        for key in net.params:
            assert np.array_equal(fresh.params[key], net.params[key]), f"bit {bit}: silent"
    assert caught > 300


CHILD = """
import sys
import msgpass as mp
net = mp.build_network("512-512-relu-10-sce", seed=0)     # a 2 MB checkpoint
for k in range(1, 10**6):
    for value in net.params.values():
        value[...] = k
    mp.save_checkpoint(sys.argv[1], net)
    print(k, flush=True)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_a_checkpoint_write_killed_at_any_moment_leaves_the_old_or_the_new(tmp_path):
    """A child saves checkpoints in a loop (every parameter = k in save k) and reports each
    finished save; it is killed with SIGKILL at 12 seeded random moments: half at a delay of
    0..0.4 s, half 0..1 ms after a save's temporary file appears (so some kills surely land
    inside a save). The checkpoint on disk must load (its sha256 checks out) and hold save k or
    k + 1, where k is the last save the child reported."""
    path = tmp_path / "c.npz"
    rng = np.random.default_rng(2022)
    mid_write = 0
    for i, delay in enumerate(rng.uniform(0, 0.4, size=12)):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)],
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip().isdigit()     # one save finished
            if i % 2:
                deadline = time.monotonic() + 30
                while not any(p.suffix == ".tmp" for p in tmp_path.iterdir()):
                    assert time.monotonic() < deadline           # wait for a save to begin
                delay /= 400
            time.sleep(delay)
        finally:
            child.send_signal(signal.SIGKILL)
            rest = child.communicate()[0]
        done = int(rest.split()[-1]) if rest.split() else 1
        fresh = mp.build_network("512-512-relu-10-sce", seed=1)
        mp.load_checkpoint(path, fresh)
        values = {float(v) for array in fresh.params.values() for v in np.unique(array)}
        assert len(values) == 1 and values.pop() in (done, done + 1), (delay, done, values)
        leftovers = [p for p in tmp_path.iterdir() if p.name != "c.npz"]
        mid_write += bool(leftovers)
        for leftover in leftovers:                    # a killed save's temporary file
            assert leftover.name.startswith(".c.npz.") and leftover.suffix == ".tmp"
            leftover.unlink()
    assert mid_write >= 3                             # kills did land inside saves
