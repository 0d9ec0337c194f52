"""The graph's numerical witness at scale (issue 19, "verify that scales"): every sample of a
node moved at once where samples are independent, a node shared by the batch and a coupling
op entry by entry, sampled entries counted in the notes, progress of long runs. Nothing here
is timed (benchmarks/bench_verify_graph.py measures time)."""

from __future__ import annotations

import io

import numpy as np
import pytest

import msgpass as mp
import msgpass.witnesses.graph as witness_graph
from msgpass.witnesses.graph import graph_backprop, graph_numeric
from msgpass.witnesses.progress import PROGRESS_AFTER, PROGRESS_EVERY, Progress

STEP = 2.0**-13
# Two five-point estimates of one derivative, differenced from totals of other sizes (one
# sample's, all samples'): they differ by their round-off, ≈ 32·u·|F|/h ≈ 3e-11 here.
RTOL_SAME, ATOL_SAME = 1e-7, 1e-9


def reference(g, f, seed=None) -> dict[str, np.ndarray]:
    """dF/dv for every node v, F = Σ seed·f: the five-point stencil on one entry of one node
    at a time, the whole graph evaluated again, F read as a whole. Written here, apart from
    the witness: no tails, no samples moved together. An entry whose stencil raises is NaN."""
    name = f.name
    run = g.evaluate(name)
    weights = np.ones_like(run.values[name]) if seed is None else np.asarray(seed)
    out = {}
    for n in run.order:
        value = run.values[n]
        est = np.full(value.shape, np.nan)
        for index in np.ndindex(value.shape):
            totals = []
            for k in (-2, -1, 1, 2):
                moved = np.array(value)
                moved[index] += k * STEP
                try:
                    again = g.evaluate(name, overrides={
                        n: moved.reshape((len(moved), *run.shapes[n]))})
                except mp.MsgpassError:
                    break
                totals.append(float(np.sum(weights * again.values[name])))
            else:
                est[index] = (totals[0] - 8 * totals[1] + 8 * totals[2] - totals[3]) / (12 * STEP)
        out[n] = est
    return out


def expression(shape, rng=None):
    """f = log(1 + exp(x·y)) / (x² + y² + 1) + tanh(x)·y, the issue's composite function."""
    rng = rng or np.random.default_rng(0)
    g = mp.Graph()
    x, y = g.input("x", rng.normal(size=shape)), g.input("y", rng.normal(size=shape))
    return g, mp.log(1 + mp.exp(x * y)) / (x ** 2 + y ** 2 + 1) + mp.tanh(x) * y


def numeric_checks(report):
    return [c for c in report.checks if c.witness == "numeric"]


def test_all_samples_at_once_equal_one_entry_at_a_time():
    """Each sample's derivative read from its own total, with a seed that differs by sample
    and entry, equals the whole-F estimate of one entry at a time, at every node."""
    rng = np.random.default_rng(1)
    g, f = expression((5, 3), rng)
    seed = rng.normal(size=(5, 3))
    num = graph_numeric(g, f, seed=seed)
    ref = reference(g, f, seed)
    assert "14 node(s) moved in all 5 samples at once" in num.notes[0]
    assert "entry by entry" not in num.notes[0]
    for v, expected in ref.items():
        assert not num.straddles[v].any() and num.evaluated[v].all(), v
        np.testing.assert_allclose(num.nodes[v], expected, rtol=RTOL_SAME, atol=ATOL_SAME,
                                   err_msg=v)
    # and both are the derivative: standard backprop's, to the stencil's accuracy
    exact = graph_backprop(g, f, seed=seed)
    np.testing.assert_allclose(num.nodes["x"], exact.nodes["x"], rtol=1e-8, atol=1e-9)


def test_each_sample_is_judged_against_its_own_round_off():
    """The round-off allowance of an entry is its sample's, not the whole batch's: at
    B = 2,000 the whole F's would be 2,000 times larger, and its noise level (atol / rtol)
    would reach 1e-2, hiding small derivatives from the comparison."""
    g, f = expression((2000, 1))
    report = mp.verify(g, f)
    assert report.ok, report
    for check in numeric_checks(report):
        assert check.result.compared == 2000 and not check.result.inconclusive, check.layer
        assert check.tol.largest_atol < 1e-9, check.layer
    num = graph_numeric(g, f)
    sizes = np.abs(g.evaluate(f.name).values[f.name][:, 0])
    np.testing.assert_allclose(num.roundoffs["x"][:, 0],
                               32 * 2.0**-53 * np.maximum(1.0, sizes) / STEP, rtol=1e-12)


def test_the_smoothness_test_uses_the_sample_s_own_round_off():
    """x³ at x = 0: the five-point estimate is 0, the three-point one h² ≈ 1.5e-8, a gap
    the sample's own round-off (≈ 3e-11) cannot explain, so that entry is left out as not
    smooth at the step's scale. The whole batch's allowance (2,000 samples of x³ = 27:
    ≈ 1.6e-6) would have let it through; the other samples are kept."""
    x0 = np.full((2000, 1), 3.0)
    x0[7] = 0.0
    g = mp.Graph()
    x = g.input("x", x0)
    f = x * x * x
    num = graph_numeric(g, f)
    assert num.straddles["x"][7, 0] and num.straddles["x"].sum() == 1
    np.testing.assert_allclose(np.delete(num.nodes["x"][:, 0], 7), 27.0, rtol=1e-9)


def test_a_kink_in_one_sample_leaves_out_only_that_sample_s_entry():
    """Sample 1's x[1, 0] sits 1e-5 from ReLU's kink, inside the stencil: that one estimate
    is left out; the same sample's other entry and the other samples' are kept."""
    rng = np.random.default_rng(2)
    x0 = rng.uniform(0.5, 1.5, size=(4, 2)) * rng.choice([-1, 1], size=(4, 2))
    x0[1, 0] = 1e-5
    g = mp.Graph()
    x, y = g.input("x", x0), g.input("y", rng.normal(size=(4, 2)))
    f = mp.maximum(x, 0.0) * y + mp.tanh(x)
    num = graph_numeric(g, f)
    expected = np.zeros((4, 2), dtype=bool)
    expected[1, 0] = True
    np.testing.assert_array_equal(num.straddles["x"], expected)
    ref = reference(g, f)
    keep = ~expected
    np.testing.assert_allclose(num.nodes["x"][keep], ref["x"][keep], rtol=RTOL_SAME,
                               atol=ATOL_SAME)
    report = mp.verify(g, f)
    assert report.ok
    assert [c.note for c in numeric_checks(report) if c.layer == "x"][0].startswith(
        "1 left out")


def test_a_domain_error_in_one_sample_leaves_out_only_that_sample():
    """log(x) at x[2, 1] = 1e-4: the stencil's x - 2h is negative, so the evaluation that
    moves every sample raises. The witness splits the samples until it finds sample 2, and
    keeps every other sample's estimate of that entry."""
    rng = np.random.default_rng(3)
    x0 = rng.uniform(0.5, 2.0, size=(8, 2))
    x0[2, 1] = 1e-4
    g = mp.Graph()
    x, y = g.input("x", x0), g.input("y", rng.normal(size=(8, 2)))
    f = mp.log(x) * y
    seen = []
    num = graph_numeric(g, f, progress=lambda done, total: seen.append((done, total)))
    expected = np.zeros((8, 2), dtype=bool)
    expected[2, 1] = True
    np.testing.assert_array_equal(num.straddles["x"], expected)
    ref = reference(g, f)
    assert np.isnan(ref["x"][2, 1])              # the reference cannot estimate it either
    np.testing.assert_allclose(num.nodes["x"][~expected], ref["x"][~expected],
                               rtol=RTOL_SAME, atol=ATOL_SAME)
    # the split cost more stencils than the plan of one per column, and the count says so
    assert seen[-1][0] == seen[-1][1] > 4 * (2 + 2 + 2 + 2)
    assert not any("did not resolve" in note for note in num.notes)


def test_domain_splits_that_run_out_leave_the_rest_out(monkeypatch):
    """With no split allowed, the column whose stencil raises is left out for every sample
    (never guessed) and the notes count it; the other column is unharmed."""
    monkeypatch.setattr(witness_graph, "DOMAIN_SPLITS", 1)
    rng = np.random.default_rng(3)
    x0 = rng.uniform(0.5, 2.0, size=(8, 2))
    x0[2, 1] = 1e-4
    g = mp.Graph()
    x = g.input("x", x0)
    f = mp.log(x) * 2.0
    num = graph_numeric(g, f)
    assert num.straddles["x"][:, 1].all() and not num.straddles["x"][:, 0].any()
    np.testing.assert_allclose(num.nodes["x"][:, 0], 2.0 / x0[:, 0], rtol=1e-9)
    assert any("8 estimate(s) left out" in note and "did not resolve" in note
               for note in num.notes)


def test_a_batch_1_input_shared_by_the_batch_is_estimated_as_a_whole():
    """w (1, 3) and a scalar s are shared by the 4 samples: moving one of their entries moves
    every sample, so its derivative is of F as a whole, the sum over the samples."""
    rng = np.random.default_rng(4)
    g = mp.Graph()
    x = g.input("x", rng.normal(size=(4, 3)))
    w = g.input("w", np.array([[0.5, -1.0, 2.0]]))
    s = g.input("s", 1.5)
    c = g.constant(np.array([0.25, 0.5, 0.75]))
    f = mp.tanh(x * w) * s + w * w + mp.exp(c * x)
    num = graph_numeric(g, f)
    ref = reference(g, f)
    exact = graph_backprop(g, f)
    for v in ("w", "s", c.name):
        assert num.nodes[v].shape[0] == 1, v
        np.testing.assert_allclose(num.nodes[v], ref[v], rtol=RTOL_SAME, atol=ATOL_SAME)
        np.testing.assert_allclose(num.nodes[v], exact.nodes[v], rtol=1e-8)
    assert "w (shared by the batch of 4)" in num.notes[0]
    assert "s (shared by the batch of 4)" in num.notes[0]
    assert mp.verify(g, f).ok


def test_a_one_dimensional_input_is_one_sample():
    """A 1-D array of N points is one sample of width N: its entries are moved one at a
    time, and sampled as entries of that sample."""
    points = np.linspace(0.1, 2.0, 7)
    g = mp.Graph()
    x = g.input("x", points)
    f = mp.sin(x) * x
    num = graph_numeric(g, f)
    assert num.nodes["x"].shape == (1, 7)
    np.testing.assert_allclose(num.nodes["x"][0], np.cos(points) * points + np.sin(points),
                               rtol=1e-9)
    assert num.notes == ["numerical witness: 84 forward evaluations"]   # 3 nodes · 7 · 4
    sampled = graph_numeric(g, f, max_entries=3)
    assert sampled.evaluated["x"].sum() == 3
    assert "x 3 of 7, " in sampled.notes[1]


def batchnorm_graph():
    rng = np.random.default_rng(5)
    g = mp.Graph()
    x, y = g.input("x", rng.normal(size=(6, 3))), g.input("y", rng.normal(size=(6, 3)))
    bn = mp.BatchNorm(3)(x * y)
    return g, mp.tanh(bn) * y, bn


def test_batchnorm_in_training_couples_the_samples_and_still_verifies():
    """Above BatchNorm (training) sample b's output depends on every sample, so x and y are
    moved one entry at a time and read from F; BatchNorm's own output and what is
    downstream of it keep samples apart and are moved all at once."""
    g, f, bn = batchnorm_graph()
    num = graph_numeric(g, f)
    ref = reference(g, f)
    for v in ("x", "y", bn.name):
        np.testing.assert_allclose(num.nodes[v], ref[v], rtol=RTOL_SAME, atol=ATOL_SAME,
                                   err_msg=v)
    assert f"x (BatchNorm(3) at {bn.name!r} couples the samples downstream)" in num.notes[0]
    assert "3 node(s) moved in all 6 samples at once" in num.notes[0]
    report = mp.verify(g, f)
    assert report.ok, report
    assert {c.layer for c in numeric_checks(report)} >= {"x", "y", f"{bn.name}.gamma"}


def test_moving_all_samples_at_once_through_batchnorm_would_be_caught(monkeypatch):
    """The tester tested: if the witness read x's samples apart through BatchNorm (which
    couples them), its estimates would miss what reaches the other samples, and verify
    would say so, naming the node."""
    monkeypatch.setattr(witness_graph, "_samples_apart", lambda *args: None)
    g, f, _ = batchnorm_graph()
    report = mp.verify(g, f)
    assert not report.ok
    failed = {c.layer for c in numeric_checks(report) if not c.ok}
    assert "x" in failed


def sampled_graph():
    rng = np.random.default_rng(6)
    g = mp.Graph()
    x = g.input("x", rng.normal(size=(5, 40)))
    w = g.input("w", rng.normal(size=(1, 40)))
    return g, mp.Affine(40, 3, seed=0)(mp.tanh(x * w))


def test_sampling_caps_the_entries_and_the_report_counts_them():
    g, f = sampled_graph()
    report = mp.verify(g, f, numeric_entries=10, numeric_seed=3)
    assert report.ok, report
    note = next(n for n in report.notes if "numeric_entries" in n)
    for part in ("at most 10 entries", "numeric_seed=3", "x 10 of 40 entries in every sample",
                 "w 10 of 40", "affine1.W 10 of 120"):
        assert part in note, part
    checks = {c.layer: c for c in numeric_checks(report)}
    assert checks["x"].result.compared == 50 and checks["x"].note == "sampled 50 of 200"
    assert checks["w"].result.compared == 10 and checks["affine1.W"].result.compared == 10
    assert checks["affine1.b"].result.compared == 3 and checks["affine1.b"].note == ""
    # not sampled is not left out: the NaN entries are not straddles
    num = graph_numeric(g, f, max_entries=10, sample_seed=3)
    assert np.isnan(num.nodes["x"]).sum() == 150 and not num.straddles["x"].any()
    columns = num.evaluated["x"].all(axis=0)
    assert columns.sum() == 10 and (num.evaluated["x"] == columns).all()
    np.testing.assert_allclose(num.nodes["x"][:, columns],
                               graph_backprop(g, f).nodes["x"][:, columns], rtol=1e-8)


def test_the_sample_is_seeded():
    g, f = sampled_graph()
    first = graph_numeric(g, f, max_entries=10, sample_seed=3).evaluated
    again = graph_numeric(g, f, max_entries=10, sample_seed=3).evaluated
    other = graph_numeric(g, f, max_entries=10, sample_seed=4).evaluated
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["x"], other["x"])
    everything = graph_numeric(g, f, max_entries=None)
    assert all(m.all() for m in everything.evaluated.values())
    assert len(everything.notes) == 1         # nothing sampled, nothing to count


def test_graph_verify_refuses_a_bad_numeric_entries():
    g, f = expression((3, 1))
    with pytest.raises(ValueError, match="numeric_entries must be a positive integer"):
        mp.verify(g, f, numeric_entries=0)


def test_verify_at_a_larger_batch_is_verified_with_every_sample_compared():
    g, f = expression((3000, 1))
    report = mp.verify(g, f)
    assert report.ok, report
    assert all(c.result.compared == 3000 for c in numeric_checks(report))
    assert any("56 forward evaluations" in note for note in report.notes)   # 14 nodes × 4


def test_progress_counts_every_forward_evaluation(capsys):
    g, f = expression((50, 1))
    seen = []
    report = mp.verify(g, f, progress=lambda done, total: seen.append((done, total)))
    assert report.ok
    assert [d for d, _ in seen] == list(range(1, 57)) and {t for _, t in seen} == {56}
    mp.verify(g, f)                       # a short run, by default: nothing printed
    assert capsys.readouterr().err == ""
    with pytest.raises(TypeError, match="progress must be"):
        mp.verify(g, f, progress="yes")


class Clock:
    """A clock that moves by ``tick`` seconds whenever it is read."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def test_progress_prints_only_when_the_run_is_long():
    def lines(report, tick, total=1000):
        stream = io.StringIO()
        meter = Progress(total, report, clock=Clock(tick), stream=stream)
        for _ in range(total):
            meter.step(1, "x")
        meter.finish()
        return stream.getvalue().splitlines()

    assert lines(None, 0.001) == []                    # 1 s in all: quiet
    long = lines(None, 0.1)                            # 100 s in all
    assert long[0].startswith("verify: numerical witness: ")
    assert "of 1,000 forward evaluations" in long[0] and "s left" in long[0]
    assert long[-1].startswith("verify: numerical witness: 1,000 forward evaluations done in")
    # one line per PROGRESS_EVERY seconds after the first, about
    assert len(long) - 2 <= (100 - PROGRESS_AFTER) / PROGRESS_EVERY + 1
    assert len(lines(True, 0.001)) == 2                # asked for: a first and a last line
    assert lines(False, 0.1) == []
