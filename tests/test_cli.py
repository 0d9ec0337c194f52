"""The msgpass command, verify and train: exit 0 when every step holds (and training reaches
its accuracy), one line and exit 2 on bad usage, and train never overwrites what it should not."""

import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from msgpass.cli import main
from msgpass.training.data import Standardizer, load_digits, split


def test_verify_default_passes(capsys):
    assert main(["verify"]) == 0
    out = capsys.readouterr().out
    assert "VERIFIED" in out and "step t=1" in out and "base t=10" in out


def test_verify_options(capsys):
    assert main(["verify", "--arch", "3-5-sigmoid-2-mse", "--batch", "3", "--seed", "4",
                 "--dtype", "float32"]) == 0
    out = capsys.readouterr().out
    assert "float32" in out and "batch 3" in out


def test_verify_json(capsys):
    assert main(["verify", "--arch", "4-6-logsoftmax-nll", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True and data["arch"] == "4-6-logsoftmax-nll"
    assert data["network"] == ["Affine(4→6)", "LogSoftmax", "NLLLoss"]


def test_verify_without_numeric(capsys):
    assert main(["verify", "--no-numeric"]) == 0
    assert "(numeric)" not in capsys.readouterr().out


@pytest.mark.parametrize("argv, pattern", [
    (["verify", "--arch", "4-xx-sce"], "token 2 ('xx') is not a width or a layer"),
    (["verify", "--batch", "0"], "argument --batch: expected a positive integer, got '0'"),
    (["verify", "--batch", "-1"], "argument --batch"),
    (["verify", "--dtype", "float16"], "argument --dtype: 'float16': use float64, float32"),
    (["verify", "--bogus"], "unrecognized arguments: --bogus"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_bad_usage_is_one_line_and_exit_2(argv, pattern):
    proc = subprocess.run([sys.executable, "-m", "msgpass", *argv], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("msgpass: error:") and pattern in lines[0]
    assert "Traceback" not in proc.stderr


def test_the_cli_package_runs_as_a_module_too():
    """``python -m msgpass.cli`` once ran (the old cli.py had a main guard); the cli package
    needs its own __main__."""
    proc = subprocess.run([sys.executable, "-m", "msgpass.cli", "verify", "--arch", "3-2-sce",
                           "--no-numeric"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "VERIFIED" in proc.stdout


def test_no_command_is_one_line_and_exit_2(capsys):
    assert main([]) == 2
    assert capsys.readouterr().err.strip() == (
        "msgpass: error: choose a command: verify, train, demo or figures (see msgpass --help)")


@pytest.mark.parametrize("spec", ["3-sce", "4-relu-sce", "3-tanh-mse", "5-logsoftmax-nll"])
def test_specs_without_an_affine_know_their_input_width(spec, capsys):
    assert main(["verify", "--arch", spec, "--batch", "2"]) == 0


@pytest.mark.parametrize("argv", [
    ["--arch", "99999999999-3-sce"],
    ["--arch", "4-99999999999999999999-sce"],
    ["--batch", "100000000000"],
])
def test_more_than_the_machine_holds_is_one_line_and_exit_2(argv):
    proc = subprocess.run([sys.executable, "-m", "msgpass", "verify", *argv],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "GiB of messages, more than this machine's" in proc.stderr


def test_float32_saturated_sigmoids_verify_from_the_cli():
    """This once failed because 1 − y² and y(1 − y) were judged at the size of the result,
    not of their terms: float32 verify failed correct networks of saturated sigmoids."""
    assert main(["verify", "--arch", "10-32-sigmoid-32-sigmoid-4-mse", "--batch", "16",
                 "--dtype", "float32", "--seed", "15"]) == 0


# -- msgpass train ----------------------------------------------------------------------------

def test_msgpass_train_with_no_arguments_reaches_95_percent(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "epoch  15" in out
    summary = json.loads((tmp_path / "msgpass-run" / "history.json").read_text())
    assert summary["epochs"][-1]["val_accuracy"] >= 0.95
    assert (tmp_path / "msgpass-run" / "curves.png").stat().st_size > 0


def test_msgpass_train_errors_are_one_line_and_overwrite_nothing(tmp_path, capsys):
    """This once failed because training into an --out that held another network's checkpoint
    overwrote it; now that is refused in one line like every error here, and nothing changes."""
    out = tmp_path / "run"
    assert main(["train", "--quiet", "--epochs", "1", "--out", str(out)]) == 0
    saved = (out / "checkpoint.npz").read_bytes()
    capsys.readouterr()
    for argv, message in [
        (["--data", "mnist", "--mnist", str(tmp_path / "nope")], "not a directory"),
        (["--resume", str(out / "checkpoint.npz"), "--arch", "64-20-relu-10-sce"],
         "not of this network"),
        (["--arch", "784-10-sce"], "64 features"),
        (["--epochs", "1", "--arch", "64-32-relu-10-sce"],
         "not of this network; choose another --out"),
    ]:
        assert main(["train", "--quiet", "--out", str(out), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
        assert (out / "checkpoint.npz").read_bytes() == saved
    (tmp_path / "bad.npz").write_bytes(saved[:3000])
    assert main(["train", "--quiet", "--resume", str(tmp_path / "bad.npz"), "--out",
                 str(tmp_path / "other")]) == 2
    assert "not a readable msgpass checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--lr", "-1"], "--lr must be finite and > 0"),
    (["--lr", "nan"], "--lr must be finite"),
    (["--weight-decay", "-1"], "--weight-decay must be finite and ≥ 0"),
    (["--batch", "0"], "--batch must be a positive integer"),
    (["--steps", "0"], "--steps must be a positive integer"),
    (["--validation", "1.5"], "--validation must be a fraction"),
])
def test_msgpass_train_refuses_bad_numbers(argv, message, tmp_path, capsys):
    """This once failed because --batch 0 silently fell back to the default, and a negative or
    NaN rate, --steps 0 or a validation fraction outside (0, 1) were accepted."""
    assert main(["train", "--quiet", "--out", str(tmp_path / "r"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "r").exists()


def test_the_cli_fits_its_standardiser_on_the_training_split_only():
    """A mutation that fitted the standardiser on the training and validation rows together
    once survived the tests."""
    from msgpass.cli.train import _data
    args = SimpleNamespace(data="digits", mnist=None, validation=0.1, seed=3)
    train_set, val, test = _data(args)
    raw_train, raw_val = split(load_digits(), 0.1, seed=3)
    scale = Standardizer.fit(raw_train.x, eps=1.6)           # the training rows only
    np.testing.assert_array_equal(train_set.x, scale(raw_train.x))
    np.testing.assert_array_equal(val.x, scale(raw_val.x))
    leaky = Standardizer.fit(load_digits().x, eps=1.6)       # what a leak would give
    assert not np.array_equal(val.x, leaky(raw_val.x)) and test is None
