"""The fault campaign (benchmarks/fault_campaign.py, issue 22): planted faults in local partials
and classic backwards are caught by verify at the step they were planted in, and every miss
has a measured reason. The quick campaign runs as a user runs it, as a script."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fault_campaign.py"


def load_campaign():
    spec = importlib.util.spec_from_file_location("fault_campaign", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module     # its dataclasses look their module up while defined
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("campaign") / "quick.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--quiet", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| float64 |" in proc.stdout and "| float32 |" in proc.stdout
    return json.loads(out.read_text())["outcomes"]


def test_float64_faults_from_1e_9_up_are_caught_at_the_planted_step(quick):
    rows = [r for r in quick if r["dtype"] == "float64" and not r["skipped"] and r["live"]
            and (r["cls"] != "scale" or r["eps"] >= 1e-9)]
    assert len(rows) > 150
    missed = [(r["subject"], r["site"], r["fault"], r["first"]) for r in rows
              if not (r["caught"] and r["right_step"])]
    assert not missed


def test_every_fault_well_above_its_tolerance_is_caught_at_its_step(quick):
    """In either dtype: an effect over 10x the check's tolerance never escapes."""
    for dtype in ("float64", "float32"):
        rows = [r for r in quick if r["dtype"] == dtype and r["live"] and r["ratio"] > 10]
        assert rows
        assert all(r["caught"] and r["right_step"] for r in rows), dtype


def test_every_miss_is_explained_by_data(quick):
    misses = [r for r in quick if not r["skipped"] and not r["caught"]]
    assert misses   # zero entries, symmetric blocks, float32 resolution: there are some
    for r in misses:
        assert r["reason"] and not r["reason"].startswith("UNEXPLAINED"), r
        if r["live"]:    # a real change that escaped: it was within the check's tolerance
            assert r["ratio"] <= 1.01, r
        else:
            assert r["reason"].startswith("no-op"), r


def test_the_campaigns_effect_measure_agrees_with_verify(quick):
    """The planted change, computed by the campaign from the partials alone, in units of the
    check's tolerance, is what verify's backprop check measured there (test the tester)."""
    rows = [r for r in quick if r["live"] and r["ratio"] > 1e-2 and r["measured"] > 0]
    assert len(rows) > 100
    ratio = np.array([r["ratio"] for r in rows])
    measured = np.array([r["measured"] for r in rows])
    assert np.all(np.abs(ratio - measured) <= 0.01 * measured)


def test_blame_never_points_at_the_code_that_is_right(quick):
    for r in quick:
        if r["caught"] and r["right_step"]:
            wrong = "backward" if r["target"] == "partials" else "partials"
            assert r["blame"] != wrong, r


def test_every_class_of_fault_was_planted(quick):
    planted = {(r["cls"], r["target"]) for r in quick if not r["skipped"] and r["live"]}
    for cls in ("scale", "sign", "drop", "swap", "transpose", "stale"):
        assert (cls, "partials") in planted and (cls, "backward") in planted, cls


def test_a_planted_fault_is_removed_afterwards():
    """The wrapper sits on the instance only inside the block; the library is untouched."""
    campaign = load_campaign()
    subject = next(campaign.chain_subjects("float64", ["ReLU"]))
    site = subject.sites[0]
    with subject.planted(site, campaign.Fault("sign", None, "largest")) as record:
        report = subject.verify()
    assert record.calls and not report.ok and report.first_failure.t == 2
    assert "local_partials" not in vars(subject.owner)
    assert subject.verify().ok
