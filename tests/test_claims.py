"""Claims of theory/ that no other test checks directly."""

import numpy as np
import pytest

import msgpass as mp
from msgpass.sampling import random_batch
from msgpass.witnesses.pathsum import count_paths

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
    assert np.abs(soft).max() < 3.4e-4 and np.abs(soft[:, 2]).max() < 1.2e-7
    assert np.abs(log_soft).max() == pytest.approx(1.0, abs=1e-3)
    assert np.abs(log_soft[:, 2]).max() == pytest.approx(1.0, abs=1e-6)
