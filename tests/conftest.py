"""Shared test settings: hypothesis is derandomised, so every run checks the same examples."""

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "msgpass", derandomize=True, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow])
# MSGPASS_HYPOTHESIS=long: 20× the default's examples for a test that scales with the profile
# (settings.default.max_examples; test_every_error_is_ours.py runs 2× it: 200, or 4,000 long)
settings.register_profile(
    "long", parent=settings.get_profile("msgpass"), max_examples=2000)
settings.load_profile(os.environ.get("MSGPASS_HYPOTHESIS", "msgpass"))


@pytest.fixture
def same_statistics():
    """Assert that two traces gathered the same message statistics over layers 1..T (two
    backends, or the same pass in other chunks): counts, |max| and histograms exactly, and the
    per-edge means within 1e-12 of the largest (chunk sums are added in another order)."""
    def check(memory, other, T):
        for t in range(1, T + 1):
            a, b = memory.stats[t], other.stats[t]
            assert a.samples == b.samples
            assert np.array_equal(a.absmax, b.absmax) and np.array_equal(a.counts, b.counts)
            assert np.max(np.abs(a.mean - b.mean)) <= 1e-12 * max(np.max(np.abs(a.mean)), 1e-300)
    return check


@pytest.fixture
def theory_script():
    """Import one of theory/'s research scripts by name (they are scripts, not a package)."""
    def load(name):
        path = Path(__file__).resolve().parents[1] / "theory" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load
