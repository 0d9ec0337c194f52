"""Exact (Fraction) and arbitrary-precision (mpmath) arithmetic: messages equal backprop
exactly, or up to round-off that shrinks with the working precision."""

from fractions import Fraction

import numpy as np
import pytest

import msgpass as mp
from msgpass.errors import DtypeError, InputValueError
from msgpass.testing import random_batch
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


def test_document_5_quotes_the_refusals_as_msgpass_words_them():
    """theory/05 (both editions) quotes two refusals; each quote must be part of the real one."""
    import re
    from pathlib import Path
    with pytest.raises(DtypeError) as layer_refusal:
        mp.build_network("3-4-sigmoid-2-mse", seed=0).astype("exact")
    g = mp.Graph()
    x = g.input("x", np.array([Fraction(1, 2)], dtype=object))
    with pytest.raises(DtypeError) as node_refusal:
        g.backward(mp.exp(x))
    theory_dir = Path(__file__).resolve().parents[1] / "theory"
    for doc in [theory_dir / "05-numbers-and-composites.md",
                theory_dir / "ja" / "05-numbers-and-composites.md"]:
        text = " ".join(doc.read_text(encoding="utf-8").split())
        quoted = re.findall(r'["「](these compute[^"」]*|node \'exp1\'[^"」]*)["」]', text)
        assert len(quoted) == 2, (doc, quoted)
        assert quoted[0] in str(layer_refusal.value), (doc, quoted[0])
        assert quoted[1] in str(node_refusal.value), (doc, quoted[1])


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


# -- what a review found ------------------------------------------------------------------

def test_mp_layers_compute_at_full_precision():
    """Each transcendental layer's mp output against mpmath applied directly, entry by entry
    (an independent computation): a float64 shortcut anywhere would show as ~1e-16."""
    mpmath = pytest.importorskip("mpmath")
    ctx = mpmath.MPContext()
    ctx.dps = 50
    x = mp.as_numbers([[0.3, -1.7, 2.2], [-0.4, 0.9, 5.0]], "mp:50")

    def direct(fn):
        return [[fn(ctx.mpf(float(v)) if False else v, row) for v in row] for row in x]
    sig = [[1 / (1 + ctx.exp(-v)) for v in row] for row in x]
    tanh = [[ctx.tanh(v) for v in row] for row in x]
    soft = [[ctx.exp(v) / sum(ctx.exp(u) for u in row) for v in row] for row in x]
    logsoft = [[v - ctx.log(sum(ctx.exp(u) for u in row)) for v in row] for row in x]
    for layer, expected in [(mp.Sigmoid(), sig), (mp.Tanh(), tanh), (mp.Softmax(), soft),
                            (mp.LogSoftmax(), logsoft)]:
        out, _ = layer.forward(x)
        worst = max(abs(a - b) for a, b in zip(out.reshape(-1), np.array(expected).reshape(-1),
                                               strict=True))
        assert worst < ctx.mpf(10) ** -48, (layer.describe(), worst)
    loss, _ = mp.SoftmaxCrossEntropy().forward(x, [2, 0])
    expected = [-logsoft[0][2], -logsoft[1][0]]
    assert max(abs(a - b) for a, b in zip(loss.reshape(-1), expected, strict=True)) < 1e-48
    g = mp.Graph()
    node = g.input("x", x)
    values = g.evaluate(mp.log(mp.exp(node) + 1)).values
    out = values[list(values)[-1]]
    expected = [[ctx.log(ctx.exp(v) + 1) for v in row] for row in x]
    assert max(abs(a - b) for a, b in zip(out.reshape(-1), np.array(expected).reshape(-1),
                                          strict=True)) < 1e-48


def test_an_mp_network_whose_relu_outputs_are_all_zero_stays_mp():
    pytest.importorskip("mpmath")
    net = mp.Sequential([mp.ReLU(), mp.Tanh(), mp.MSELoss()]).astype("mp:30")
    net.forward(-np.ones((1, 2)), np.zeros((1, 2)))
    assert type(net.backward().value(1)[0, 0]).__name__ == "mpf"


def test_exact_graphs_see_changed_parameters():
    layer = mp.Affine(2, 1, seed=0)
    g = mp.Graph()
    y = layer(g.input("x", np.array([[Fraction(1, 2), Fraction(1, 3)]], dtype=object)))
    assert g.backward(y).values[y.name][0, 0] != 0
    layer.params["W"][:] = 0
    layer.params["b"][:] = 0
    assert g.backward(y).values[y.name][0, 0] == 0


def test_float_constants_and_inputs_join_an_exact_graph_exactly():
    g = mp.Graph()
    x = g.input("x", np.array([Fraction(1, 3), Fraction(-2, 3)], dtype=object))
    y = g.input("y", np.array([0.5, 0.25]))                      # floats: converted exactly
    f = (mp.maximum(x, 0) + x * g.constant(0.5) + x * Fraction(1, 10) + y * x).named("f")
    report = mp.verify(g, f)
    assert report.ok and report.verdict().startswith("VERIFIED EXACTLY"), str(report)
    trace = g.backward(f)
    assert all_fractions(trace.value(f)) and all_fractions(trace.grad("x"))
    # ∂f/∂x = [x > 0] + 1/2 + 1/10 + y, exactly
    assert list(trace.grad("x")) == [1 + Fraction(1, 2) + Fraction(1, 10) + Fraction(1, 2),
                                     Fraction(1, 2) + Fraction(1, 10) + Fraction(1, 4)]


def test_class_targets_may_be_fractions():
    net = mp.build_network("3-4-relu-3-logsoftmax-nll", seed=0)
    with pytest.raises(DtypeError):
        net.astype("exact")                       # log-softmax is not rational
    exact = mp.build_network("3-4-relu-3-mse", seed=0).astype("exact")
    exact.forward([[1, 2, 3]], [[Fraction(1, 3), Fraction(1, 3), Fraction(1, 3)]])
    nll = mp.Sequential([mp.Affine(3, 3, seed=0), mp.NLLLoss()]).astype("exact")
    soft = np.array([[Fraction(1, 4), Fraction(3, 4), Fraction(0)]], dtype=object)
    assert isinstance(nll.forward([[1, 2, 3]], soft), Fraction)
    assert isinstance(nll.forward([[1, 2, 3]], np.array([Fraction(2)], dtype=object)), Fraction)
    with pytest.raises(InputValueError, match="labels must be integers"):
        nll.forward([[1, 2, 3]], np.array([Fraction(5, 2)], dtype=object))


def test_exact_means_fractions_not_merely_equal_numbers():
    from msgpass.verification.compare import TOL_EXACT, compare_numbers
    a = np.array([Fraction(1, 2)], dtype=object)
    assert compare_numbers(a, a.copy(), TOL_EXACT).ok
    assert not compare_numbers(a, np.array([0.5], dtype=object), TOL_EXACT).ok


def test_exact_traces_can_be_drawn():
    from msgpass.draw import draw_message_panels, draw_network
    exact, x, target = exact_case()
    exact.forward(x, target)
    trace = exact.backward()
    draw_network(trace)
    draw_message_panels(trace)
    floats = trace.as_floats()
    # an independent reference: the same network and batch computed in float64 throughout
    net = mp.build_network(EXACT_SPEC, seed=3)
    net.forward(x, target)
    reference = net.backward()
    assert isinstance(floats.loss, float) and floats.loss == pytest.approx(reference.loss,
                                                                           rel=1e-12)
    for t in range(1, exact.T + 2):
        assert floats.incoming(t).dtype == np.float64
        np.testing.assert_allclose(floats.incoming(t), reference.incoming(t), rtol=1e-12)
    for t in range(1, exact.T + 1):
        assert floats.block(t).values.dtype == np.float64
        np.testing.assert_allclose(floats.message(t), reference.message(t), rtol=1e-12)
    assert floats.grads.keys() == reference.grads.keys()
    for key, grad in reference.grads.items():
        assert floats.grads[key].dtype == np.float64
        np.testing.assert_allclose(floats.grads[key], grad, rtol=1e-12)
