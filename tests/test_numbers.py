"""Exact (Fraction) and arbitrary-precision (mpmath) arithmetic: messages equal backprop
exactly, or up to round-off that shrinks with the working precision."""

from fractions import Fraction

import numpy as np
import pytest

import msgpass as mp
from msgpass.errors import DtypeError, InputValueError
from msgpass.sampling import random_batch
from msgpass.witnesses.pathsum import path_sum

EXACT_SPEC = "3-5-relu-4-relu-6-relu-2-mse"   # depth 8: Affine, ReLU, MSELoss


def exact_case(batch=4, seed=3):
    net = mp.build_network(EXACT_SPEC, seed=seed)
    x, target = random_batch(net, batch, np.random.default_rng(seed))
    return net.astype("exact"), x, target


def all_fractions(a) -> bool:
    return all(isinstance(v, Fraction) for v in np.asarray(a).reshape(-1))


@pytest.mark.claim("C5.1")
def test_exact_network_messages_sum_to_backprop_exactly():
    exact, x, target = exact_case()
    loss = exact.forward(x, target)
    assert isinstance(loss, Fraction)
    trace = exact.backward()
    ref = mp.backprop(exact, x, target)
    assert loss == ref.loss
    for t in range(1, exact.T + 1):
        assert all_fractions(trace.block(t).values)                       # every message
        assert all_fractions(trace.incoming(t))
        assert np.array_equal(trace.incoming(t), ref.incoming(t))          # == entry by entry
        assert np.array_equal(trace.message(t).sum(axis=2), trace.incoming(t))
    for key, grad in trace.grads.items():
        assert all_fractions(grad)
        assert np.array_equal(grad, ref.grads[key])


def test_floats_convert_exactly():
    net = mp.build_network(EXACT_SPEC, seed=0)
    exact = net.astype("exact")
    for key, value in net.params.items():
        converted = exact.params[key]
        assert all_fractions(converted)
        assert all(Fraction(float(v)) == c for v, c in zip(value.reshape(-1),
                                                           converted.reshape(-1), strict=True))
    assert net.params["1.W"].dtype == np.float64     # the original is untouched


@pytest.mark.claim("C5.1")
def test_verify_in_exact_mode_says_exact_and_compares_with_equality():
    exact, x, target = exact_case()
    report = mp.verify(exact, x, target)
    assert report.ok, str(report)
    assert report.dtype == "exact"
    assert report.verdict().startswith("VERIFIED EXACTLY")
    assert all(c.tol.rtol == 0 and c.result.max_abs == 0 for c in report.checks)


@pytest.mark.claim("C5.2")
def test_a_planted_error_is_caught_exactly(monkeypatch):
    """A partial off by one part in 10^30 is invisible to floats and fatal in exact mode."""
    exact, x, target = exact_case()
    original = mp.ReLU.local_partials

    def off(self, saved):
        local = original(self, saved)
        values = local.inputs.values * (1 + Fraction(1, 10**30))
        return type(local)(type(local.inputs)(values))
    monkeypatch.setattr(mp.ReLU, "local_partials", off)
    report = mp.verify(exact, x, target)
    assert not report.ok
    assert report.first_failure.witness == "backprop"


@pytest.mark.claim("C5.1")
def test_exact_graph_with_max_copy_and_every_rational_op():
    g = mp.Graph()
    x = g.input("x", np.array([[Fraction(1, 3), Fraction(-2, 5), Fraction(7, 4)],
                               [Fraction(2), Fraction(0), Fraction(-1, 7)]], dtype=object))
    h = mp.relu(mp.Affine(3, 4, seed=0)(x))
    k = mp.Affine(3, 4, seed=1)(x)
    m = mp.maximum(h, k)                      # max, with its ties split by exact halves
    m1, m2 = mp.copy(m)                       # copy: two branches that sum
    y = mp.Affine(4, 2, seed=2)(m1 + h / 2 - m2 * k / (h * h + 1))
    target = np.array([[Fraction(1), Fraction(0)], [Fraction(0), Fraction(1)]], dtype=object)
    loss = mp.MSELoss()(y, target=target)
    report = mp.verify(g, loss)
    assert report.ok, str(report)
    assert report.verdict().startswith("VERIFIED EXACTLY")
    assert {c.witness for c in report.checks} >= {"partials", "backprop", "layered", "pathsum"}
    trace = g.backward(loss)
    paths = path_sum(trace)
    assert np.array_equal(trace.grad("x"), paths.nodes["x"])
    assert all_fractions(trace.grad("x"))
    assert all(all_fractions(grad) for grad in trace.grads.values())


def test_a_tie_in_max_splits_by_exact_halves():
    g = mp.Graph()
    a, b = g.input("a", Fraction(3, 7)), g.input("b", Fraction(3, 7))
    trace = g.backward(mp.maximum(a, b))
    assert trace.grad("a")[()] == Fraction(1, 2) == trace.grad("b")[()]


def test_exact_mode_refuses_what_leaves_the_rationals_by_name():
    net = mp.build_network("3-4-sigmoid-5-tanh-3-logsoftmax-nll", seed=0)
    with pytest.raises(DtypeError, match=r"layer 2 \(Sigmoid\), layer 4 \(Tanh\), layer 6 "
                                         r"\(LogSoftmax\).*mp:50"):
        net.astype("exact")
    g = mp.Graph()
    x = g.input("x", np.array([Fraction(1, 2)], dtype=object))
    with pytest.raises(DtypeError, match=r"node 'exp1' \(exp\): exp leaves the rational"):
        g.backward(mp.exp(x))
    with pytest.raises(DtypeError, match=r"leaves the rational numbers"):
        g.backward(x ** 0.5)


@pytest.mark.parametrize("bad, error, match", [
    (np.array([[np.nan, 1.0, 2.0]]), InputValueError, "must be finite"),
    (np.array([["a", "b", "c"]]), DtypeError, "numbers"),
    (np.array([[1j, 1, 2]], dtype=object), DtypeError, "exact mode takes"),
])
def test_bad_input_in_exact_mode(bad, error, match):
    exact, _, target = exact_case(batch=1)
    with pytest.raises(error, match=match):
        exact.forward(bad, target)


@pytest.mark.parametrize("spec", ["mp:abc", "mp:5", "fraction", "mp:"])
def test_unknown_number_modes_are_refused(spec):
    with pytest.raises(DtypeError):
        mp.build_network("3-4-relu-2-mse", seed=0).astype(spec)


# -- arbitrary precision -----------------------------------------------------------------

MP_SPEC = "3-5-sigmoid-4-tanh-3-logsoftmax-nll"


def mp_gap(digits: int, truth=None):
    """(max relative gap messages vs backprop, max relative error vs ``truth`` sums)."""
    net = mp.build_network(MP_SPEC, seed=1).astype(f"mp:{digits}")
    x, target = random_batch(mp.build_network(MP_SPEC, seed=1), 3, np.random.default_rng(1))
    net.forward(x, target)
    trace, ref = net.backward(), mp.backprop(net, x, target)
    gap = err = 0.0
    for t in range(1, net.T + 1):
        mine, theirs = trace.incoming(t).reshape(-1), ref.incoming(t).reshape(-1)
        scale = max(abs(v) for v in theirs)
        gap = max(gap, float(max(abs(a - b) for a, b in zip(mine, theirs, strict=True)) / scale))
        if truth is not None:
            true = truth[t].reshape(-1)
            err = max(err, float(max(abs(a - b) for a, b in zip(mine, true, strict=True)) / scale))
    return gap, err, {t: trace.incoming(t) for t in range(1, net.T + 1)}


@pytest.mark.claim("C5.3")
def test_the_gap_is_round_off_and_falls_with_the_digits():
    pytest.importorskip("mpmath")
    _, _, truth = mp_gap(120)
    gap20, err20, _ = mp_gap(20, truth)
    gap40, err40, _ = mp_gap(40, truth)
    # at d digits each operation rounds to ~10^-d: both the gap between the two sides and the
    # error against a 120-digit reference fall by about 10^20 from 20 to 40 digits
    assert 0 < gap40 < gap20 * 1e-15 and gap20 < 1e-17
    assert 0 < err40 < err20 * 1e-15 and err20 < 1e-17


@pytest.mark.parametrize("digits", [20, 50])
def test_mp_verify_holds_within_its_tolerance_on_random_networks(digits):
    pytest.importorskip("mpmath")
    worst = 0.0
    for seed in range(4):
        spec = ["4-6-sigmoid-5-tanh-3-sce", "3-4-tanh-4-relu-2-mse",
                "5-3-softmax-3-mse", "2-6-sigmoid-6-sigmoid-4-logsoftmax-nll"][seed]
        net = mp.build_network(spec, seed=seed)
        x, target = random_batch(net, 3, np.random.default_rng(seed))
        report = mp.verify(net.astype(f"mp:{digits}"), x, target)
        assert report.ok, str(report)
        worst = max(worst, max(c.result.max_rel for c in report.checks))
    assert worst <= 10.0 ** (2 - digits)   # the tolerance is 10^(3 − digits): 10x margin


def test_the_cli_verifies_exactly_and_refuses_in_one_line(capsys):
    from msgpass.cli import main
    assert main(["verify", "--arch", "3-4-relu-3-relu-2-mse", "--dtype", "exact"]) == 0
    assert "VERIFIED EXACTLY" in capsys.readouterr().out
    assert main(["verify", "--dtype", "exact"]) == 2          # the default has sigmoid, tanh
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "layer 6 (Sigmoid)" in err
    with pytest.raises(SystemExit) as stop:
        main(["verify", "--dtype", "mp:x"])
    assert stop.value.code == 2
