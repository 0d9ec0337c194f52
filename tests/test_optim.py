"""Optimizers (msgpass.training.optim) against their formulas written out by hand, weight decay
and L1 on weights but not biases, and the learning-rate schedules."""

import numpy as np
import pytest

from msgpass import optim


def run_optimizer(cls, grads, **kw):
    theta = {"w": np.array([[1.0, -2.0]])}
    opt = cls(theta, **kw)
    for g in grads:
        opt.step({"w": np.array([g])})
    return theta["w"][0]


G = [[0.5, -1.0], [0.25, 2.0], [-1.0, 0.5]]


def test_optimizers_follow_their_formulas():
    g = np.array(G)
    w0 = np.array([1.0, -2.0])
    np.testing.assert_allclose(run_optimizer(optim.SGD, G, lr=0.1), w0 - 0.1 * g.sum(0))
    # momentum 0.9: v1 = −lr g1, v2 = 0.9 v1 − lr g2, v3 = 0.9 v2 − lr g3
    v1 = -0.1 * g[0]
    v2 = 0.9 * v1 - 0.1 * g[1]
    v3 = 0.9 * v2 - 0.1 * g[2]
    np.testing.assert_allclose(run_optimizer(optim.Momentum, G, lr=0.1), w0 + v1 + v2 + v3)
    # Nesterov: θ += μ·v_new − lr·g
    nes = w0 + (0.9 * v1 - 0.1 * g[0]) + (0.9 * v2 - 0.1 * g[1]) + (0.9 * v3 - 0.1 * g[2])
    np.testing.assert_allclose(run_optimizer(optim.Nesterov, G, lr=0.1), nes)
    h = np.cumsum(g * g, axis=0)
    np.testing.assert_allclose(run_optimizer(optim.AdaGrad, G, lr=0.1),
                               w0 - (0.1 * g / (np.sqrt(h) + 1e-7)).sum(0))
    h, step = np.zeros(2), np.zeros(2)
    for gi in g:
        h = 0.99 * h + 0.01 * gi * gi
        step += 0.01 * gi / (np.sqrt(h) + 1e-7)
    np.testing.assert_allclose(run_optimizer(optim.RMSProp, G, lr=0.01), w0 - step)
    h, s, w = np.zeros(2), np.zeros(2), w0.copy()
    for gi in g:
        h = 0.95 * h + 0.05 * gi * gi
        d = np.sqrt(s + 1e-6) / np.sqrt(h + 1e-6) * gi
        s = 0.95 * s + 0.05 * d * d
        w = w - d
    np.testing.assert_allclose(run_optimizer(optim.AdaDelta, G), w)
    m, v, w = np.zeros(2), np.zeros(2), w0.copy()
    for t, gi in enumerate(g, 1):
        m = 0.9 * m + 0.1 * gi
        v = 0.999 * v + 0.001 * gi * gi
        w = w - 0.01 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    np.testing.assert_allclose(run_optimizer(optim.Adam, G, lr=0.01), w)


def test_weight_decay_applies_to_weights_not_biases():
    params = {"W": np.array([[2.0]]), "b": np.array([2.0])}
    opt = optim.SGD(params, lr=0.1, weight_decay=0.5, l1=0.25)
    opt.step({"W": np.array([[0.0]]), "b": np.array([0.0])})
    assert params["W"][0, 0] == pytest.approx(2.0 - 0.1 * (0.5 * 2.0 + 0.25))
    assert params["b"][0] == 2.0
    with pytest.raises(ValueError, match="lr must be"):
        optim.SGD(params, lr=-1)


def test_schedules():
    assert [optim.StepLR(2, 0.5)(e) for e in range(5)] == [1, 1, 0.5, 0.5, 0.25]
    assert optim.ExponentialLR(0.9)(3) == pytest.approx(0.729)
    cosine = optim.CosineLR(10, floor=0.1)
    assert cosine(0) == 1 and cosine(10) == pytest.approx(0.1) and cosine(5) == pytest.approx(0.55)
