"""Claims of theory/ that no other test checks directly."""

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
    for key, grad in trace.grads.items():
        np.testing.assert_allclose(grad, np.mean([s.grads[key] for s in per_sample], axis=0),
                                   rtol=1e-12, atol=1e-16)
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
    _, saved = mp.Softmax().forward(logits)
    soft = mp.Softmax().local_partials(saved).inputs.dense()[0]
    _, saved = mp.LogSoftmax().forward(logits)
    log_soft = mp.LogSoftmax().local_partials(saved).inputs.dense()[0]
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
