"""Claims of theory/ that no other test checks directly."""

from pathlib import Path

import numpy as np
import pytest

import msgpass as mp
from msgpass.testing import random_batch
from msgpass.witnesses.graph import graph_backprop
from msgpass.witnesses.pathsum import count_paths, path_sum

rng = np.random.default_rng(11)


def small_trace(spec="3-4-tanh-5-relu-2-sce", batch=3):
    net = mp.build_network(spec, seed=2)
    x, target = random_batch(net, batch, np.random.default_rng(2))
    net.forward(x, target)
    return net, x, target, net.backward()


def partials_of(layer, *inputs):
    """The local partials a layer computes from its forward pass on ``inputs``."""
    _, saved = layer.forward(*inputs)
    return layer.local_partials(saved)


def softmax_by_hand(x):
    """Row-wise softmax in plain numpy, max-shifted: an independent reference for p."""
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.claim("C1.1")
def test_chain_rule_is_the_product_of_local_derivatives():
    g = mp.Graph()
    x = g.input("x", 0.7)
    f = mp.tanh(mp.sigmoid(x)).named("f")
    s = 1 / (1 + np.exp(-0.7))
    assert float(g.backward(f).grad("x")) == pytest.approx((1 - np.tanh(s) ** 2) * s * (1 - s),
                                                            rel=1e-14)


@pytest.mark.claim("C1.2")
def test_add_passes_the_gradient_through():
    g = mp.Graph()
    x, y = g.input("x", [1.0, -2.0]), g.input("y", [3.0, 5.0])
    trace = g.backward((x + y).named("z"), seed=[0.3, -7.0])
    np.testing.assert_array_equal(trace.grad("x"), [0.3, -7.0])
    np.testing.assert_array_equal(trace.grad("y"), [0.3, -7.0])


@pytest.mark.claim("C1.3")
def test_multiply_swaps_its_inputs():
    g = mp.Graph()
    x, y = g.input("x", 0.01), g.input("y", 400.0)
    trace = g.backward((x * y).named("z"), seed=2.0)
    assert float(trace.grad("x")) == 2.0 * 400.0    # the small input gets the large gradient
    assert float(trace.grad("y")) == 2.0 * 0.01


@pytest.mark.claim("C2.2")
def test_every_stored_message_follows_the_recursion():
    net, _, _, trace = small_trace()
    for t in range(1, net.T + 1):
        jac = trace.partials[t - 1].inputs.dense()
        np.testing.assert_array_equal(trace.message(t), jac * trace.incoming(t + 1)[:, None, :])


@pytest.mark.claim("C2.6")
def test_a_batch_gradient_is_the_mean_of_per_sample_gradients():
    net, x, target, trace = small_trace(batch=5)
    per_sample = []
    for b in range(5):
        net.forward(x[b:b + 1], target[b:b + 1])
        per_sample.append(net.backward())
    # float64: the batch sums 5 samples' products in another order than the mean of 5 sums,
    # a few ulps (measured ≤ 3e-17 on entries up to 0.3); atol for entries that cancel to ~0
    for key, grad in trace.grads.items():
        np.testing.assert_allclose(grad, np.mean([s.grads[key] for s in per_sample], axis=0),
                                   rtol=1e-12, atol=1e-16)
    # the messages: the batch's S^{T+1} = 1/5 against a sample's 1 then /5, a few roundings
    # apart (measured ≤ 1.4e-17 on entries up to 0.12)
    for t in range(1, net.T + 1):
        stacked = np.concatenate([s.message(t) for s in per_sample]) / 5
        np.testing.assert_allclose(trace.message(t), stacked, rtol=1e-12, atol=1e-17)


@pytest.mark.claim("C3.2")
def test_paths_of_a_dense_chain_are_the_product_of_the_widths():
    g = mp.Graph()
    z = g.input("x", rng.standard_normal(3))
    z = mp.tanh(mp.Affine(3, 4, seed=0)(z))
    z = mp.tanh(mp.Affine(4, 5, seed=1)(z))
    out = mp.Affine(5, 2, seed=2)(z)
    counts = count_paths(g.backward(out))
    assert list(counts["x"]) == [4 * 5 * 2] * 3


@pytest.mark.claim("C3.4")
def test_one_message_per_edge_per_sample():
    net, _, _, trace = small_trace(batch=3)
    computed = sum(trace.block(t).values.size for t in range(1, net.T + 1))
    edges = sum(int(trace.partials[t - 1].inputs.edges().sum()) for t in range(1, net.T + 1))
    assert computed == 3 * edges
    # 3-4-tanh-5-relu-2-sce: 12 + 4 + 20 + 5 + 10 + 2 edges
    assert edges == 3 * 4 + 4 + 4 * 5 + 5 + 5 * 2 + 2


@pytest.mark.claim("C4.7")
def test_log_softmax_does_not_vanish_where_softmax_does():
    logits = np.array([[8.0, 0.0, -8.0]])
    soft = partials_of(mp.Softmax(), logits).inputs.dense()[0]
    log_soft = partials_of(mp.LogSoftmax(), logits).inputs.dense()[0]
    p_least = np.exp(-8.0) / (np.exp(8.0) + 1 + np.exp(-8.0))   # ≈ 1.1e-7, written out by hand
    assert np.abs(soft).max() < 3.4e-4 and np.abs(soft[:, 2]).max() < 1.2e-7
    assert np.abs(log_soft).max() == pytest.approx(1 - p_least, rel=1e-12)
    # The gradient at the target logit (class 3): through softmax + squares it vanishes,
    # through log-softmax + NLL it is −(1 − p).
    target_grad = {}
    for name, layers, target in [("mse", [mp.Softmax(), mp.MSELoss()], np.array([[0., 0., 1.]])),
                                 ("nll", [mp.LogSoftmax(), mp.NLLLoss()], np.array([2]))]:
        net = mp.Sequential(layers)
        net.forward(logits, target)
        target_grad[name] = net.backward().incoming(1)[0, 2]
    assert abs(target_grad["mse"]) < 2.3e-7
    assert target_grad["nll"] == pytest.approx(-(1 - p_least), rel=1e-12)


@pytest.mark.claim("C3.1")
def test_path_sums_give_the_parameter_gradients_of_a_graph_with_affine_nodes():
    g = mp.Graph()
    z = g.input("x", rng.standard_normal((2, 3)))
    hidden = mp.tanh(mp.Affine(3, 4, seed=0)(z))
    out = mp.Affine(4, 2, seed=1)(hidden + mp.sigmoid(hidden))   # two routes per hidden node
    seed = rng.standard_normal((2, 2))
    trace = g.backward(out, seed=seed)
    paths = path_sum(trace)
    reference = graph_backprop(g, out, seed=seed)
    assert set(paths.params) == set(trace.grads) == {"affine1.W", "affine1.b",
                                                      "affine2.W", "affine2.b"}
    for key in trace.grads:   # float64 sums of a few dozen terms: round-off ≪ 1e-12
        np.testing.assert_allclose(paths.params[key], reference.params[key], rtol=1e-12,
                                   atol=1e-14)
        np.testing.assert_allclose(trace.grads[key], reference.params[key], rtol=1e-12,
                                   atol=1e-14)
    np.testing.assert_allclose(paths.nodes["x"], reference.nodes["x"], rtol=1e-12, atol=1e-14)


@pytest.mark.claim("C4.1")
def test_affine_parameter_partials_give_the_outer_product():
    net = mp.build_network("3-4-tanh-2-mse", seed=5)
    x, target = random_batch(net, 4, np.random.default_rng(5))
    net.forward(x, target)
    trace = net.backward()
    for t in (1, 3):        # the Affine layers: y = x W + c
        below, arriving = trace.value(t - 1), trace.incoming(t + 1)
        np.testing.assert_allclose(trace.grads[f"{t}.W"], below.T @ arriving, rtol=1e-13)
        np.testing.assert_allclose(trace.grads[f"{t}.b"], arriving.sum(axis=0), rtol=1e-13)
        # K[(i, m), n'] = x_i [m = n']: per sample, the gradient of W is the outer product.
        per_sample = trace.partials[t - 1].params["W"].per_sample(arriving)
        np.testing.assert_array_equal(per_sample, below[:, :, None] * arriving[:, None, :])
    # and K itself: nudging W_{i m} moves output m by x_i and no other output
    layer = net.layers[0]
    h = 1e-6
    W = layer.params["W"]
    base, _ = layer.forward(x)
    for i, m in [(0, 0), (2, 3)]:
        saved = W[i, m]
        W[i, m] = saved + h
        moved, _ = layer.forward(x)
        W[i, m] = saved
        expected = np.zeros_like(base)
        expected[:, m] = x[:, i]
        # the layer is linear in W, so a one-sided step is exact up to round-off:
        # |y| ~ 1, u ~ 1e-16, so the error is ~ 1e-16 / 1e-6 = 1e-10 ≪ 1e-8
        np.testing.assert_allclose((moved - base) / h, expected, atol=1e-8)


def test_the_softmax_precision_numbers_document_4_states():
    """theory/04, "Floating point": the numbers the text gives for a max-shifted softmax, from
    msgpass's own layer (mpmath at 50 digits is the reference)."""
    import mpmath
    mpmath.mp.dps = 50
    # float32: e^(−d) rounds to 0 past 150·ln 2 ≈ 103.97
    assert np.exp(np.float32(-103.9)) > 0 and np.exp(np.float32(-104.0)) == 0
    assert 150 * np.log(2) == pytest.approx(103.97, abs=0.005)
    softmax = mp.Softmax()

    def probabilities(d):
        y, _ = softmax.forward(np.array([[0.0, -d]]))
        return y[0]
    # p_min keeps its relative precision until the subnormal range
    for d, stated in ((700, 9e-18), (720, 3e-12), (740, 3e-3)):
        exact = 1 / (1 + mpmath.exp(d))
        error = float(abs(mpmath.mpf(float(probabilities(d)[1])) - exact) / exact)
        assert error == pytest.approx(stated, rel=0.15), d
    # 1 − p_max as y − y·y: 1e-3 relative at d = 30, exactly 0 from d ≈ 37
    y = probabilities(30)[0]
    exact = mpmath.exp(-30) / (1 + mpmath.exp(-30)) ** 2
    assert float(abs(mpmath.mpf(float(y - y * y)) - exact) / exact) == pytest.approx(1e-3, rel=0.1)
    y = probabilities(37)[0]
    assert y - y * y == 0
    # the log-softmax partials are bounded by 1, not of order one
    p, _ = softmax.forward(np.array([[8.0, 0.0, -8.0]]))
    assert 1 - p[0, 0] == pytest.approx(3.4e-4, rel=0.02)
    assert -p[0, 2] == pytest.approx(-1.1e-7, rel=0.03)


# -- issue 21: each claim checked as the text states it -------------------------------------

THEORY = Path(__file__).resolve().parents[1] / "theory"



@pytest.mark.claim("C1.6")
def test_the_sigmoid_partial_is_computed_from_the_forward_value_alone():
    """The layer keeps only its output, and its partial is y(1 − y) of whatever output it is
    given; for a real forward that equals e^(−x)/(1 + e^(−x))², written out by hand."""
    from msgpass.layers.elementwise import OutputSaved
    layer = mp.Sigmoid()
    x = np.array([[-3.0, -0.5, 0.0, 0.7, 4.0]])
    y, saved = layer.forward(x)
    assert set(vars(saved)) == {"out"}                       # x itself is not kept
    np.testing.assert_array_equal(layer.local_partials(saved).inputs.values, y * (1 - y))
    np.testing.assert_allclose(layer.local_partials(saved).inputs.values,
                               np.exp(-x) / (1 + np.exp(-x)) ** 2, rtol=1e-14)
    made_up = OutputSaved(out=np.array([[0.25]]))             # no x ever existed for this y
    assert layer.local_partials(made_up).inputs.values[0, 0] == 0.25 * 0.75


@pytest.mark.claim("C1.7")
def test_the_staged_computation_sends_the_three_messages_the_text_states():
    g = mp.Graph()
    x, y = g.input("x", 3.0), g.input("y", -4.0)
    f = ((x + mp.sigmoid(y)) / (mp.sigmoid(x) + (x + y) ** 2)).named("f")
    trace = g.backward(f)
    assert round(float(trace.value(f)), 6) == 1.545645
    assert round(float(trace.grad("x")), 6) == 2.05957
    assert round(float(trace.grad("y")), 6) == 1.592233
    messages = {}
    for source, target, m in trace.edges:
        if source == "x":
            messages[target] = float(m.dense().sum())
    assert len(messages) == 3                                  # x feeds three nodes
    by_value = sorted(round(v, 6) for v in messages.values())
    assert by_value == [-0.035762, 0.512144, 1.583187]
    # each from the node the text names: σ(x), the numerator x + σ(y), and x + y
    s = 1 / (1 + np.exp(-3.0))
    sy = 1 / (1 + np.exp(4.0))
    num, den = 3.0 + sy, s + 1.0
    expected = {"sigmoid": -num / den**2 * s * (1 - s), "numerator": 1 / den,
                "x + y": -num / den**2 * 2 * (3.0 - 4.0)}
    assert sorted(round(v, 6) for v in expected.values()) == by_value
    assert sum(messages.values()) == pytest.approx(float(trace.grad("x")), rel=1e-15)


@pytest.mark.claim("C2.7")
@pytest.mark.parametrize("layer", [mp.ReLU(), mp.Sigmoid(), mp.Tanh(), mp.Dropout(0.5, seed=1)],
                         ids=lambda layer: layer.describe())
def test_an_elementwise_layers_messages_are_zero_off_the_diagonal_by_its_forward(layer):
    """Not by construction of the view: moving input n leaves every other output bit for bit
    unchanged, so the true Jacobian (and hence every message δ = J·S) is zero off the
    diagonal; the stored diagonal messages are the layer's partial times the arriving sum."""
    net = mp.Sequential([mp.Affine(4, 6, seed=0), layer, mp.Affine(6, 3, seed=1),
                         mp.SoftmaxCrossEntropy()])
    x = np.random.default_rng(3).standard_normal((5, 4))
    net.forward(x, np.array([0, 1, 2, 0, 1]))
    trace = net.backward()
    z1 = trace.value(1)
    base, _ = net.layers[1].forward(z1)
    for n in range(6):
        moved = z1.copy()
        moved[:, n] += 0.37
        out, _ = net.layers[1].forward(moved)
        others = np.arange(6) != n
        np.testing.assert_array_equal(out[:, others], base[:, others])
    dense = trace.message(2)
    assert np.all(dense[:, ~np.eye(6, dtype=bool)] == 0)
    ref = mp.backprop(net, x, np.array([0, 1, 2, 0, 1]))
    np.testing.assert_allclose(np.einsum("bnn->bn", dense),
                               trace.partials[1].inputs.values * ref.incoming(3), rtol=1e-13)


@pytest.mark.claim("C2.7")
def test_an_affine_block_is_w_scaled_by_backprops_arriving_sums():
    """W from the network's parameters, S from standard backprop (not from the trace)."""
    net, x, target, trace = small_trace(batch=4)
    ref = mp.backprop(net, x, target)
    for t in (1, 3, 5):
        W = net.params[f"{t}.W"]
        np.testing.assert_allclose(trace.message(t), W[None] * ref.incoming(t + 1)[:, None, :],
                                   rtol=1e-13, atol=1e-300)


@pytest.mark.claim("C3.4")
def test_the_message_pass_computes_one_message_per_edge_per_sample(monkeypatch):
    """Count what the pass computes: every send of every kind of partial is recorded while
    net.backward() runs, and the number of messages sent is B times the number of edges."""
    from msgpass.partials.base import InputPartials
    sent = []

    def kinds(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from kinds(sub)
    for cls in {InputPartials, *kinds(InputPartials)}:
        if "send" in vars(cls):
            original = vars(cls)["send"]

            def counting(self, *args, _original=original, **kwargs):
                out = _original(self, *args, **kwargs)
                sent.append(np.asarray(out).size)
                return out
            monkeypatch.setattr(cls, "send", counting)
    net = mp.build_network("3-4-tanh-5-relu-2-sce", seed=2)
    x, target = random_batch(net, 3, np.random.default_rng(2))
    net.forward(x, target)
    trace = net.backward()
    edges = 3 * 4 + 4 + 4 * 5 + 5 + 5 * 2 + 2          # Σ N_{t-1} N_t over Affine, N elsewhere
    assert sum(sent) == 3 * edges
    # the paths from one input to the loss: 4 · 5 · 2 (C3.2), each through two more layers;
    # the pass does not grow with them: the same count for any weights
    assert trace.incoming(1).shape == (3, 3)


@pytest.mark.claim("C4.7")
def test_the_softmax_into_squares_gradient_is_pinned():
    """−2.25e-7, not merely small: the closed form Σ_{n'} J[n, n'](p_{n'} − t_{n'}) at 50 digits."""
    import mpmath
    mpmath.mp.dps = 50
    logits = [mpmath.mpf(8), mpmath.mpf(0), mpmath.mpf(-8)]
    e = [mpmath.exp(v) for v in logits]
    p = [v / sum(e) for v in e]
    t = [0, 0, 1]
    exact = sum(p[k] * ((1 if k == 2 else 0) - p[2]) * (p[k] - t[k]) for k in range(3))
    net = mp.Sequential([mp.Softmax(), mp.MSELoss()])
    net.forward(np.array([[8.0, 0.0, -8.0]]), np.array([[0.0, 0.0, 1.0]]))
    grad = net.backward().incoming(1)[0, 2]
    assert grad == pytest.approx(float(exact), rel=1e-12)
    assert round(grad, 9) == -2.25e-7


def test_softmax_partials_keep_their_relative_precision_when_one_class_dominates():
    """theory/04: msgpass computes the diagonal as y_n Σ_{k≠n} y_k (log-softmax: Σ_{k≠n} p_k),
    relative error below 2e-15 at d = 30, 37, 100, 700, where y − y·y is off by 1e-3 or 0."""
    import mpmath
    mpmath.mp.dps = 50
    for d in (30, 37, 100, 700):
        x = np.array([[0.0, -float(d)]])
        soft = partials_of(mp.Softmax(), x).inputs.dense()[0, 0, 0]
        log_soft = partials_of(mp.LogSoftmax(), x).inputs.dense()[0, 0, 0]
        e = mpmath.exp(-d)
        for value, exact in ((soft, e / (1 + e) ** 2), (log_soft, e / (1 + e))):
            assert float(abs(mpmath.mpf(float(value)) - exact) / exact) < 2e-15, d


def test_log_softmax_of_two_classes_is_s_minus_softplus():
    """theory/04, seed 000's view: log softmax(s, 0)₁ = s − softplus(s), derivative 1 − σ(s)."""
    s = np.array([-30.0, -3.0, 0.0, 2.0, 30.0])
    x = np.stack([s, np.zeros_like(s)], axis=1)
    y, saved = mp.LogSoftmax().forward(x)
    # s − softplus(s) = −softplus(−s); the second form does not cancel at large s
    # (to round-off of the largest term: at s = 30 the value −9.4e-14 is the small
    # difference log Σ e^x − x_max, good to ~1e-16 absolute, not relative)
    np.testing.assert_allclose(y[:, 0], -np.logaddexp(0, -s), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(y[:3, 0], s[:3] - np.logaddexp(0, s[:3]), rtol=1e-14)
    J = mp.LogSoftmax().local_partials(saved).inputs.dense()
    np.testing.assert_allclose(J[:, 0, 0], 1 / (1 + np.exp(s)), rtol=1e-14)


@pytest.mark.claim("C5.2")
def test_a_planted_error_fails_at_the_first_step_that_uses_it_and_float64_misses_it(
        monkeypatch):
    """One part in 10^30 on the partials of layer 4 (the upper ReLU): exact mode fails at step
    t = 4, the first step (from the top) that uses them; in float64 the same change is no
    change at all, and verify passes."""
    from fractions import Fraction
    net = mp.build_network("2-3-relu-3-relu-2-mse", seed=0)
    x, target = [[Fraction(1, 2), Fraction(-3, 4)]], [[1, 0]]
    original = mp.ReLU.local_partials
    planted = []

    def off(self, saved):
        local = original(self, saved)
        if self is net.layers[3] or self is exact.layers[3]:
            planted.append(True)
            if local.inputs.values.dtype == object:
                values = local.inputs.values * (1 + Fraction(1, 10**30))
            else:
                values = local.inputs.values * (1 + 1e-30)      # 1 + 1e-30 == 1.0 in float64
            return type(local)(type(local.inputs)(values))
        return local
    exact = net.astype("exact")
    monkeypatch.setattr(mp.ReLU, "local_partials", off)
    report = mp.verify(exact, x, target)
    assert not report.ok and planted
    failure = report.first_failure
    assert failure.part == "step" and failure.t == 4, failure.where
    assert all(c.ok for c in report.checks if c.t is not None and c.t > 4)
    floats = mp.verify(net, np.array([[0.5, -0.75]]), np.array([[1.0, 0.0]]))
    assert floats.ok


@pytest.mark.claim("C5.3")
def test_the_documented_precision_study_falls_by_more_than_1e15_from_20_to_40_digits(theory_script):
    """On the network the text names, 4-8-tanh-8-sigmoid-6-tanh-5-logsoftmax-nll (batch 4,
    seed 0, reference at 120 digits), not on another one."""
    pytest.importorskip("mpmath")
    study = theory_script("precision_study")
    rows = {name: (gap, err) for name, gap, err in study.measure(digits=(20, 40))}
    assert study.SPEC == "4-8-tanh-8-sigmoid-6-tanh-5-logsoftmax-nll"
    assert (study.BATCH, study.SEED, study.REFERENCE_DIGITS) == (4, 0, 120)
    for i in (0, 1):
        assert 0 < rows["mp:40"][i] < rows["mp:20"][i] * 1e-15
    # every row of the document's table as printed (two significant digits), measured now
    table = {}
    for line in (THEORY / "05-numbers-and-composites.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 3 and (cells[0] == "float64" or cells[0].startswith("mp:")):
            table[cells[0]] = (cells[1], cells[2])
    assert len(table) == 7
    measured = {name: (f"{gap:.1e}", f"{err:.1e}") for name, gap, err in
                study.measure(digits=[int(name[3:]) for name in table if name != "float64"])}
    assert table == {name: measured[name] for name in table}


def test_mp_verify_worst_is_below_the_stated_bound():
    """theory/05: on the four networks of tests/test_numbers.py the worst relative error of
    an mp verify is below 10^(−0.5−D) at D = 20 and 50."""
    pytest.importorskip("mpmath")
    for digits in (20, 50):
        worst = 0.0
        for seed, spec in enumerate(["4-6-sigmoid-5-tanh-3-sce", "3-4-tanh-4-relu-2-mse",
                                     "5-3-softmax-3-mse",
                                     "2-6-sigmoid-6-sigmoid-4-logsoftmax-nll"]):
            net = mp.build_network(spec, seed=seed)
            x, target = random_batch(net, 3, np.random.default_rng(seed))
            report = mp.verify(net.astype(f"mp:{digits}"), x, target)
            worst = max(worst, max(float(c.result.max_rel) for c in report.checks))
        assert 0 < worst < 10.0 ** (-0.5 - digits), digits


@pytest.mark.claim("C5.7")
def test_the_tanh_and_relu_stacks_measure_what_the_text_says(theory_script):
    study = theory_script("vanishing_gradients")
    for name, stated in (("tanh", 13), ("relu", 2.0)):
        m = study.measure(name)["mean |δ|"]
        assert len(m) == 30
        assert max(m) / min(m) == pytest.approx(stated, abs=0.5 if stated > 10 else 0.05)


@pytest.mark.claim("C6.3")
def test_the_full_training_run_gives_the_numbers_the_claim_states(tmp_path, theory_script):
    """The 600-step run of theory/message_magnitudes.py, steps 0 and 600 recorded (the
    statistics at a step do not depend on which other steps are recorded)."""
    pytest.importorskip("zarr")
    pytest.importorskip("xarray")
    study = theory_script("message_magnitudes")
    assert (study.SPEC, study.STEPS, study.LR, study.BATCH) == ("64-64-relu-64-relu-10-sce",
                                                                600, 0.1, 32)
    study.run(tmp_path / "run.zarr", steps=600, every=600)
    ds = mp.load_trace(tmp_path / "run.zarr")
    assert list(ds["step"].values) == [0, 600]
    loss = ds["loss"].values
    assert (round(float(loss[0]), 3), round(float(loss[-1]), 3)) == (2.353, 0.052)
    rows = study.summarise(ds)
    median = {t: (int(rows[t]["median"][0]), int(rows[t]["median"][-1])) for t in rows}
    assert median[5] == (-15, -27)                                 # the top Affine layer
    falls = [median[t][0] - median[t][1] for t in (1, 2, 3, 4)]
    assert min(falls) == 6 and max(falls) == 8                     # the layers below
    assert median[6][0] - median[6][1] == 11                       # what leaves the loss
    zero = rows[4]["zero"]
    assert (round(float(zero[0]), 3), round(float(zero[-1]), 3)) == (0.496, 0.380)


def test_the_message_count_of_document_6s_example():
    """theory/06: 4,096 samples through 2048-2048-relu-10-sce send 17,272,184,832 messages,
    128.7 GiB in float64, counted from the network's own edges."""
    net = mp.build_network("2048-2048-relu-10-sce", seed=0)
    x, target = random_batch(net, 1, np.random.default_rng(0))
    net.forward(x, target)
    trace = net.backward(keep="sums")
    edges = sum(int(trace.partials[t - 1].inputs.edges().sum()) for t in range(1, net.T + 1))
    assert 4096 * edges == 17_272_184_832
    assert round(4096 * edges * 8 / 2**30, 1) == 128.7


@pytest.mark.claim("C5.4")
def test_complex_step_partials_are_at_round_off_as_measured():
    """'measured about 2e-16': the complex-step Jacobian of a smooth function against the one
    written out by hand, relative to the largest entry, within a few ulps (< 1e-15)."""
    def f(x):
        return np.stack([x[:, 0] * np.sin(x[:, 1]), np.exp(x[:, 2]) * x[:, 0],
                         np.tanh(x[:, 1] * x[:, 2])], axis=1)
    x = np.random.default_rng(8).standard_normal((6, 3))
    fn = mp.Function(f, 3, 3)
    _, saved = fn.forward(x)
    assert fn.method == "complex step"
    exact = np.zeros((6, 3, 3))                              # [b, n, n'] = ∂f_{n'}/∂x_n
    exact[:, 0, 0], exact[:, 1, 0] = np.sin(x[:, 1]), x[:, 0] * np.cos(x[:, 1])
    exact[:, 0, 1], exact[:, 2, 1] = np.exp(x[:, 2]), np.exp(x[:, 2]) * x[:, 0]
    sech2 = 1 - np.tanh(x[:, 1] * x[:, 2]) ** 2
    exact[:, 1, 2], exact[:, 2, 2] = sech2 * x[:, 2], sech2 * x[:, 1]
    rel = np.abs(saved.jac - exact).max() / np.abs(exact).max()
    assert rel < 1e-15, rel


# -- the remaining claims, checked as stated against independent references --------------


@pytest.mark.claim("C2.1")
@pytest.mark.parametrize("batch", [1, 3, 5])
def test_the_base_messages_are_the_loss_partials_written_out_by_hand_over_b(batch):
    """δ^T[b, n, 1] = J^T[n, 1] · S^{T+1} with S^{T+1} = 1/B: for softmax + cross-entropy
    J^T[n, 1] = p_n − t_n, computed here from the logits with plain numpy (not from msgpass's
    partials); for MSELoss it is y_n − t_n."""
    net = mp.build_network("3-4-tanh-4-sce", seed=1)
    x, labels = random_batch(net, batch, np.random.default_rng(batch))
    net.forward(x, labels)
    trace = net.backward()
    p = softmax_by_hand(trace.value(net.T - 1))
    expected = (p - np.eye(4)[labels]) / batch
    # softmax by hand vs msgpass's log-softmax-based partials: a few ulps of O(1) numbers
    np.testing.assert_allclose(trace.message(net.T)[:, :, 0], expected, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(trace.incoming(net.T + 1), np.full((batch, 1), 1 / batch))
    net = mp.build_network("3-4-tanh-2-mse", seed=1)
    x, target = random_batch(net, batch, np.random.default_rng(batch))
    net.forward(x, target)
    trace = net.backward()
    # y − t is one subtraction, then one division by B: exact up to 1 ulp
    np.testing.assert_allclose(trace.message(net.T)[:, :, 0],
                               (trace.value(net.T - 1) - target) / batch, rtol=1e-15, atol=0)


@pytest.mark.claim("C2.2")
def test_every_message_is_its_partial_times_what_its_messages_from_above_sum_to():
    """S^{t+1} taken as the sum of the stored messages of layer t+1 (not the stored sums),
    S^{T+1} = 1/B, on a chain with every kind of block (shared, diagonal, dense)."""
    net = mp.Sequential([mp.Affine(5, 7, seed=0), mp.Tanh(), mp.Affine(7, 6, seed=1),
                         mp.Softmax(), mp.Affine(6, 4, seed=2), mp.ReLU(), mp.Affine(4, 3, seed=3),
                         mp.SoftmaxCrossEntropy()])
    x = np.random.default_rng(4).standard_normal((3, 5))
    net.forward(x, np.array([0, 2, 1]))
    trace = net.backward()
    arrived = np.full((3, 1), 1 / 3)
    for t in range(net.T, 0, -1):
        jac = np.broadcast_to(trace.partials[t - 1].inputs.dense(), trace.message(t).shape)
        # δ = J·S is one multiplication: the stored message must be that product, bit for bit
        np.testing.assert_array_equal(trace.message(t), jac * arrived[:, None, :])
        arrived = trace.message(t).sum(axis=2)


@pytest.mark.claim("C2.8")
@pytest.mark.parametrize("layer", [mp.ReLU(), mp.Sigmoid(), mp.Tanh(), mp.Dropout(0.5, seed=2)],
                         ids=lambda layer: layer.describe())
def test_a_diagonal_layer_stores_b_times_n_messages_not_b_times_n_squared(layer):
    net = mp.Sequential([mp.Affine(3, 6, seed=0), layer, mp.Affine(6, 2, seed=1),
                         mp.SoftmaxCrossEntropy()])
    x = np.random.default_rng(0).standard_normal((4, 3))
    net.forward(x, np.array([0, 1, 1, 0]))
    trace = net.backward()
    assert trace.block(2).values.size == 4 * 6              # B·N stored
    dense = trace.message(2)
    assert dense.shape == (4, 6, 6)                          # the full view: B·N²
    off = dense[:, ~np.eye(6, dtype=bool)]
    assert off.size == 4 * 6 * 5 and np.all(off == 0.0)      # B·N(N−1) exact zeros
    np.testing.assert_array_equal(np.einsum("bnn->bn", dense), trace.block(2).values)


@pytest.mark.claim("C3.2")
def test_the_path_count_depends_on_the_wiring_only():
    """Another chain (2 → 3 → 2 → 4 → 3, sigmoid, ReLU, tanh between): 3·2·4·3 paths from each
    input, counted by dynamic programming and by enumeration, whatever the weights (zero ones
    too), the inputs (every ReLU off) or the output seed (zeros too)."""
    def chain(zero_weights, x, seeds):
        g = mp.Graph()
        z = g.input("x", x)
        for (a, b), act, s in zip([(2, 3), (3, 2), (2, 4), (4, 3)],
                                  [mp.sigmoid, mp.relu, mp.tanh, None], seeds, strict=True):
            affine = mp.Affine(a, b, seed=s)
            if zero_weights:
                affine.params["W"][:] = 0.0
            z = affine(z)
            z = act(z) if act else z
        return g, z
    for zero, x, seeds, out_seed in [(False, np.array([0.3, -0.2]), (0, 1, 2, 3), None),
                                     (True, np.array([1.0, 2.0]), (4, 5, 6, 7), np.zeros(3)),
                                     (False, np.array([-50.0, -50.0]), (8, 9, 10, 11),
                                      np.array([0.0, 1.0, 0.0]))]:
        g, out = chain(zero, x, seeds)
        trace = g.backward(out, seed=out_seed)
        assert list(count_paths(trace)["x"]) == [3 * 2 * 4 * 3] * 2
        assert path_sum(trace, ["x"]).paths["x"] == 2 * (3 * 2 * 4 * 3)   # both inputs


@pytest.mark.claim("C3.3")
def test_the_tanh_plus_sigmoid_stages_double_the_paths():
    """2^k for every k up to 12, 1,024 at k = 10 by enumeration too, and the enumerated sum is
    the gradient: d/dz (tanh z + σ z) multiplied along the stages, written out by hand."""
    for k in range(1, 13):
        g = mp.Graph()
        z = g.input("x", 0.5)
        for _ in range(k):
            z = mp.tanh(z) + mp.sigmoid(z)
        trace = g.backward(z)
        assert count_paths(trace)["x"][0] == 2**k
        if k == 10:
            assert count_paths(trace)["x"][0] == 1024
            paths = path_sum(trace, ["x"])
            assert paths.paths["x"] == 1024
            v, grad = 0.5, 1.0
            for _ in range(k):
                s = 1 / (1 + np.exp(-v))
                grad *= (1 - np.tanh(v) ** 2) + s * (1 - s)
                v = np.tanh(v) + s
            # 1,024 products of ten factors each, summed in another order: ~1e-14 relative
            assert paths.nodes["x"][0, 0] == pytest.approx(grad, rel=1e-12)
            assert float(trace.grad("x")) == pytest.approx(grad, rel=1e-12)


@pytest.mark.claim("C4.2")
def test_relu_partial_is_one_above_zero_and_zero_at_and_below_it():
    x = np.array([[-2.0, -1e-300, 0.0, -0.0, 1e-300, 3.0]])
    relu = mp.ReLU()
    _, saved = relu.forward(x)
    expected = [[0.0, 0.0, 0.0, 0.0, 1.0, 1.0]]
    np.testing.assert_array_equal(relu.local_partials(saved).inputs.values, expected)
    dout = np.array([[2.0, -3.0, 5.0, 7.0, -11.0, 13.0]])
    dx, _ = relu.backward(saved, dout)
    np.testing.assert_array_equal(dx, dout * np.array(expected))


@pytest.mark.claim("C4.3")
def test_tanh_partial_is_computed_from_the_forward_output_alone():
    """As C1.6 for the sigmoid: the layer keeps only y and its partial is 1 − y² of whatever
    y it is given; for a real forward that is sech² x, written out by hand."""
    from msgpass.layers.elementwise import OutputSaved
    x = np.array([[-3.0, -0.5, 0.0, 0.7, 4.0]])
    for layer, from_y, by_hand in [
            (mp.Tanh(), lambda y: 1 - y * y, 1 / np.cosh(x) ** 2),
            (mp.Sigmoid(), lambda y: y * (1 - y), np.exp(-x) / (1 + np.exp(-x)) ** 2)]:
        y, saved = layer.forward(x)
        assert set(vars(saved)) == {"out"}
        values = layer.local_partials(saved).inputs.values
        # the layer's own y and 1 − y² (or y(1 − y)) vs sech² x: a few ulps of O(1) numbers
        np.testing.assert_allclose(values, by_hand, rtol=1e-13)
        made_up = OutputSaved(out=np.array([[0.25]]))        # no x ever existed for this y
        assert layer.local_partials(made_up).inputs.values[0, 0] == from_y(0.25)


@pytest.mark.claim("C4.4")
def test_softmax_partials_are_the_closed_form():
    x = np.random.default_rng(6).standard_normal((3, 4))
    p = softmax_by_hand(x)
    J = partials_of(mp.Softmax(), x).inputs.dense()
    expected = p[:, None, :] * (np.eye(4)[None] - p[:, :, None])   # [b, n, n'] = p_n'(δ − p_n)
    # numpy's softmax vs msgpass's (sums of the other p on the diagonal): a few ulps
    np.testing.assert_allclose(J, expected, rtol=1e-13, atol=1e-16)


@pytest.mark.claim("C4.5")
def test_log_softmax_partials_are_the_closed_form_and_not_symmetric():
    x = np.random.default_rng(7).standard_normal((3, 4))
    p = softmax_by_hand(x)
    J = partials_of(mp.LogSoftmax(), x).inputs.dense()
    expected = np.eye(4)[None] - p[:, :, None]                 # row n holds −p_n off the diagonal
    # as above: a few ulps of numbers of size ≤ 1
    np.testing.assert_allclose(J, expected, rtol=1e-13, atol=1e-16)
    assert not np.allclose(J, np.swapaxes(J, 1, 2), rtol=1e-3)


@pytest.mark.claim("C4.6")
def test_softmax_cross_entropy_partial_is_p_sum_t_minus_t():
    """p − t for labels and for soft targets that sum to 1, p·Σt − t for any targets; p by hand."""
    x = np.random.default_rng(8).standard_normal((3, 4))
    p = softmax_by_hand(x)
    soft = np.array([[0.1, 0.2, 0.3, 0.4], [0.0, 0.5, 0.5, 0.0], [0.7, 0.2, 0.9, 0.3]])
    labels = np.array([2, 0, 3])
    for target, t in [(labels, np.eye(4)[labels]), (soft, soft)]:
        J = partials_of(mp.SoftmaxCrossEntropy(), x, target).inputs.dense()[:, :, 0]
        # numpy's softmax vs msgpass's log-softmax route: a few ulps of O(1) numbers
        np.testing.assert_allclose(J, p * t.sum(axis=1, keepdims=True) - t, rtol=0, atol=1e-15)
        if target is labels:
            np.testing.assert_allclose(J[:2], p[:2] - t[:2], rtol=0, atol=1e-15)
    # the third soft row sums to 2.1, so p − t would be wrong there by 1.1·p
    assert np.abs((p * 2.1 - soft)[2] - (p - soft)[2]).min() > 0.01


@pytest.mark.claim("C4.8")
def test_mse_partial_is_y_minus_t():
    y = np.random.default_rng(9).standard_normal((3, 4))
    t = np.random.default_rng(10).standard_normal((3, 4))
    loss = mp.MSELoss()
    value, saved = loss.forward(y, t)
    # ½ Σ (y − t)², a sum over n (not a mean): a few ulps of a sum of four squares
    np.testing.assert_allclose(value[:, 0], 0.5 * ((y - t) ** 2).sum(axis=1), rtol=1e-14)
    J = loss.local_partials(saved).inputs.dense()[:, :, 0]
    np.testing.assert_array_equal(J, y - t)                   # one subtraction: exact


@pytest.mark.claim("C5.1")
def test_exact_graph_node_sums_parameter_gradients_and_path_sums_equal_backprop_exactly():
    """The graph of tests/test_numbers.py (Affine, ReLU, max, copy, add, sub, mul, div),
    against the separate graph backprop: == entry by entry, every node and every parameter,
    and every verify error exactly 0."""
    from fractions import Fraction

    from test_numbers import all_fractions
    g = mp.Graph()
    x = g.input("x", np.array([[Fraction(1, 3), Fraction(-2, 5), Fraction(7, 4)],
                               [Fraction(2), Fraction(0), Fraction(-1, 7)]], dtype=object))
    h = mp.relu(mp.Affine(3, 4, seed=0)(x))
    k = mp.Affine(3, 4, seed=1)(x)
    m1, m2 = mp.copy(mp.maximum(h, k))
    y = mp.Affine(4, 2, seed=2)(m1 + h / 2 - m2 * k / (h * h + 1))
    target = np.array([[Fraction(1), Fraction(0)], [Fraction(0), Fraction(1)]], dtype=object)
    loss = mp.MSELoss()(y, target=target)
    trace = g.backward(loss)
    ref = graph_backprop(g, loss)
    ops = {type(g[n].op).__name__ for n in trace.order if g[n].op is not None}
    assert {"Add", "Sub", "Mul", "Div", "Max", "Identity"} <= ops, ops
    for name in trace.order:
        assert all_fractions(trace.incoming(name)), name
        assert np.array_equal(trace.incoming(name), ref.nodes[name]), name
    paths = path_sum(trace)
    assert set(trace.grads) == set(ref.params) == set(paths.params)
    for key, grad in trace.grads.items():
        assert all_fractions(grad)
        assert np.array_equal(grad, ref.params[key]), key
        assert np.array_equal(paths.params[key], grad), key
    assert np.array_equal(paths.nodes["x"], trace.grad("x"))
    report = mp.verify(g, loss)
    assert report.verdict().startswith("VERIFIED EXACTLY")
    assert all(c.result.max_abs == 0 for c in report.checks if c.result is not None)


@pytest.mark.claim("C5.5")
@pytest.mark.parametrize("plant, pairs", [("off", {(1, 0)}), ("forgotten", {(2, 1)}),
                                          ("both", {(1, 0), (2, 1)})])
def test_each_kind_of_wrong_jacobian_entry_is_named_alone_and_together(plant, pairs):
    """Each planted error on its own is caught too (one cannot hide behind the other), and
    both check and verify name exactly the planted pairs, no others."""
    import re

    from test_function import W0, smooth, smooth_jacobian

    def wrong(x, W):
        J = smooth_jacobian(x, W)
        if plant in ("off", "both"):
            J[:, 1, 0] *= 1.001        # ∂y0/∂x1 off by 0.1 %
        if plant in ("forgotten", "both"):
            J[:, 2, 1] = 0.0           # ∂y1/∂x2 forgotten
        return J
    rng_local = np.random.default_rng(12)
    fn = mp.Function(smooth, 3, 3, params={"W": W0}, jacobian=wrong)
    check = fn.check(rng_local.standard_normal((4, 3)))
    assert not check.ok
    assert {(n, m) for _, n, m, _, _ in check.wrong} == pairs
    net = mp.Sequential([mp.Affine(2, 3, seed=0), fn, mp.MSELoss()])
    report = mp.verify(net, rng_local.standard_normal((5, 2)), np.zeros((5, 3)))
    bad = report.first_failure
    assert not report.ok and bad.t == 2 and bad.witness == "complex-step"
    named = {(int(a), int(b)) for a, b in re.findall(r"\((\d+), (\d+)\)", bad.note)}
    assert named == pairs, bad.note
