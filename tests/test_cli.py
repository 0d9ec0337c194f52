"""The msgpass command: exit 0 when every step holds, one line and exit 2 on bad usage."""

import json
import subprocess
import sys

import pytest

from msgpass.cli import main


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
