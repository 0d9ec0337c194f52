"""Each layer on its own: known values, its dense partials against a finite-difference Jacobian
of its forward, its classic backward against dout·Jᵀ, and the conventions at kinks."""

import numpy as np
import pytest

import msgpass as mp

rng = np.random.default_rng(0)
# A layer's partials against a float64 central difference of its own forward at h = 1e-6:
# error ≈ h²·f'''/6 + u/h ≈ 1e-10 for these smooth, O(1) functions.
TOL_LAYER_FD = 1e-7

HIDDEN = [mp.ReLU(), mp.Sigmoid(), mp.Tanh(), mp.Softmax(), mp.LogSoftmax(),
          mp.Affine(5, 3, seed=4)]


def finite_difference_jacobian(layer, x, target=None, h=1e-6):
    """(B, N_in, N_out) by central differences of layer.forward, one input at a time."""
    def f(z):
        return (layer.forward(z, target) if layer.is_loss else layer.forward(z))[0]
    out = f(x)
    jac = np.zeros((x.shape[0], x.shape[1], out.shape[1]))
    for n in range(x.shape[1]):
        up, down = x.copy(), x.copy()
        up[:, n] += h
        down[:, n] -= h
        jac[:, n, :] = (f(up) - f(down)) / (2 * h)
    return jac


@pytest.mark.parametrize("layer", HIDDEN, ids=lambda layer: layer.describe())
@pytest.mark.claim("C4.1")
@pytest.mark.claim("C4.3")
@pytest.mark.claim("C4.4")
@pytest.mark.claim("C4.5")
def test_partials_match_finite_differences_of_the_forward(layer):
    x = rng.standard_normal((4, 5)) + 0.1  # away from ReLU's kink
    _, saved = layer.forward(x)
    dense = layer.local_partials(saved).inputs.dense()
    jac = finite_difference_jacobian(layer, x)
    np.testing.assert_allclose(np.broadcast_to(dense, jac.shape), jac, atol=TOL_LAYER_FD)


@pytest.mark.parametrize("loss, target", [
    (mp.SoftmaxCrossEntropy(), np.array([0, 2, 4, 1])),
    (mp.NLLLoss(), np.array([3, 2, 0, 1])),
    (mp.MSELoss(), rng.standard_normal((4, 5))),
], ids=["sce", "nll", "mse"])
@pytest.mark.claim("C4.6")
@pytest.mark.claim("C4.8")
def test_loss_partials_match_finite_differences(loss, target):
    x = rng.standard_normal((4, 5))
    if isinstance(loss, mp.NLLLoss):
        x = mp.LogSoftmax().forward(x)[0]
    _, saved = loss.forward(x, target)
    dense = loss.local_partials(saved).inputs.dense()
    np.testing.assert_allclose(dense, finite_difference_jacobian(loss, x, target),
                               atol=TOL_LAYER_FD)


@pytest.mark.parametrize("layer", HIDDEN, ids=lambda layer: layer.describe())
def test_classic_backward_is_dout_times_partials_transposed(layer):
    x = rng.standard_normal((3, 5)) + 0.1
    out, saved = layer.forward(x)
    dout = rng.standard_normal(out.shape)
    dx, _ = layer.backward(saved, dout)
    dense = np.broadcast_to(layer.local_partials(saved).inputs.dense(), (3, 5, out.shape[1]))
    np.testing.assert_allclose(dx, np.einsum("bno,bo->bn", dense, dout), rtol=1e-12, atol=1e-15)


def test_known_values():
    x = np.array([[-2.0, 0.0, 3.0]])
    assert np.array_equal(mp.ReLU().forward(x)[0], [[0.0, 0.0, 3.0]])
    np.testing.assert_allclose(mp.Sigmoid().forward(x)[0], 1 / (1 + np.exp(-x)), rtol=1e-15)
    assert mp.Sigmoid().forward(np.array([[0.0]]))[0][0, 0] == 0.5
    np.testing.assert_allclose(mp.Softmax().forward(x)[0].sum(), 1.0, rtol=1e-15)
    affine = mp.Affine(3, 2, seed=1)
    affine.params["b"][:] = [1.0, -1.0]
    np.testing.assert_array_equal(affine.forward(x)[0], x @ affine.W + affine.b)


def test_sigmoid_saturates_without_overflow():
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        y, saved = mp.Sigmoid().forward(np.array([[-1000.0, 1000.0]]))
    assert y[0, 0] == 0.0 and y[0, 1] == 1.0
    assert np.all(np.isfinite(mp.Sigmoid().local_partials(saved).inputs.dense()))


def test_sigmoid_of_integers_is_a_float():
    """This once failed because Sigmoid cast its output back to the input's dtype, so
    integer input came out as integers."""
    y, _ = mp.Sigmoid().forward(np.array([[0, 1, 3]]))
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-np.array([[0.0, 1.0, 3.0]]))), rtol=1e-15)


@pytest.mark.claim("C4.2")
def test_relu_kink_convention_is_the_same_in_partials_and_backward():
    x = np.array([[0.0, -1.0, 2.0]])
    relu = mp.ReLU()
    _, saved = relu.forward(x)
    partial = relu.local_partials(saved).inputs.values
    dx, _ = relu.backward(saved, np.ones((1, 3)))
    assert partial[0, 0] == 0.0 and dx[0, 0] == 0.0   # ReLU'(0) = 0 in both
    np.testing.assert_array_equal(partial, dx)
    np.testing.assert_array_equal(relu.nondifferentiable(saved), [[True, False, False]])


def test_logits_of_magnitude_1e4_stay_finite_and_exact():
    logits = np.array([[1e4, 0.0, -1e4]])
    np.testing.assert_array_equal(mp.Softmax().forward(logits)[0], [[1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(mp.LogSoftmax().forward(logits)[0], [[0.0, -1e4, -2e4]])
    sce = mp.SoftmaxCrossEntropy()
    loss, saved = sce.forward(logits, [1])
    assert loss[0, 0] == 1e4                        # −log softmax = 1e4 − 0
    dx, _ = sce.backward(saved)
    np.testing.assert_array_equal(dx, [[1.0, -1.0, 0.0]])   # y − t
    for layer in (mp.Softmax(), mp.LogSoftmax()):
        _, s = layer.forward(logits)
        assert np.all(np.isfinite(layer.local_partials(s).inputs.dense()))


@pytest.mark.parametrize("head", [
    [mp.SoftmaxCrossEntropy()], [mp.LogSoftmax(), mp.NLLLoss()], [mp.Softmax(), mp.MSELoss()],
], ids=["sce", "logsoftmax-nll", "softmax-mse"])
def test_logits_1e4_through_a_network_verify(head):
    net = mp.Sequential([mp.Affine(3, 4, seed=0, scale=1e4), *head])
    x = rng.standard_normal((4, 3))
    assert np.abs(net.layers[0].forward(x)[0]).max() > 1e3   # the logits really are huge
    target = rng.standard_normal((4, 4)) if isinstance(head[-1], mp.MSELoss) else [0, 1, 2, 3]
    report = mp.verify(net, x, target)
    assert report.ok, str(report)


def test_classification_targets_as_labels_or_one_hot_agree():
    x = rng.standard_normal((3, 4))
    labels = np.array([0, 3, 1])
    for loss in (mp.SoftmaxCrossEntropy(), mp.NLLLoss()):
        a, _ = loss.forward(x, labels)
        b, _ = loss.forward(x, np.eye(4)[labels])
        np.testing.assert_array_equal(a, b)


def test_affine_initialisation_is_seeded():
    np.testing.assert_array_equal(mp.Affine(4, 3, seed=7).W, mp.Affine(4, 3, seed=7).W)
    assert not np.array_equal(mp.Affine(4, 3, seed=7).W, mp.Affine(4, 3, seed=8).W)
    np.testing.assert_array_equal(mp.Affine(4, 3).W, mp.Affine(4, 3, seed=0).W)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.claim("C4.6")
def test_soft_labels_with_any_row_sum_are_differentiated_correctly(dtype):
    """p·Σt − t, not p − t: rows that do not sum to exactly 1 still verify."""
    net = mp.Sequential([mp.Affine(4, 3, seed=0, dtype=dtype), mp.SoftmaxCrossEntropy()])
    x = rng.standard_normal((2, 4))
    soft = np.array([[0.3, 0.3, 0.4 + 9e-7], [0.2, 0.5, 1.3]])
    report = mp.verify(net, x, soft)
    assert report.ok, str(report)


def _batchnorm(training: bool) -> mp.BatchNorm:
    layer = mp.BatchNorm(5)
    layer.params["gamma"][:] = rng.uniform(0.5, 2.0, 5)
    layer.params["beta"][:] = rng.standard_normal(5)
    layer.load_state({"running_mean": rng.standard_normal(5),
                      "running_var": rng.uniform(0.5, 2.0, 5)})
    layer.training = training
    return layer


@pytest.mark.claim("C4.9")
def test_dropout_partials_match_finite_differences_of_the_forward():
    """theory/04's row: m_n / (1 − q) on the diagonal, against the forward of the same step."""
    layer = mp.Dropout(0.4, seed=3)
    x = rng.standard_normal((6, 5))
    _, saved = layer.forward(x)
    dense = layer.local_partials(saved).inputs.dense()
    jac = finite_difference_jacobian(layer, x)        # the same step: the same mask
    np.testing.assert_allclose(dense, jac, atol=TOL_LAYER_FD)
    assert set(np.unique(np.einsum("bnn->bn", dense))) == {0.0, 1 / 0.6}


@pytest.mark.claim("C4.10")
@pytest.mark.parametrize("training", [True, False], ids=["training", "evaluation"])
def test_batchnorm_partials_match_finite_differences_of_the_forward(training):
    """Both BatchNorm rows. In training mode every output depends on every sample of its
    feature, so the Jacobian is taken over the whole batch: (B·N) × (B·N), compared with the
    coupled J_j[b, b'] (zero between features); in evaluation mode γ/σ on the diagonal."""
    layer = _batchnorm(training)
    x = rng.standard_normal((4, 5)) * 2 + 1
    _, saved = layer.forward(x)
    partials = layer.local_partials(saved)
    h = 1e-6
    B, N = x.shape
    jac = np.zeros((B, N, B, N))                      # [b, n, b', n'] = ∂y_{b'n'}/∂x_{bn}
    for b in range(B):
        for n in range(N):
            up, down = x.copy(), x.copy()
            up[b, n] += h
            down[b, n] -= h
            jac[b, n] = (layer.forward(up)[0] - layer.forward(down)[0]) / (2 * h)
    if training:
        coupled = partials.inputs.values                      # (N, B, B): J_j[b, b']
        expected = np.zeros_like(jac)
        for j in range(N):
            expected[:, j, :, j] = coupled[j]
        var = x.var(axis=0)                                   # the biased batch variance
        sigma = np.sqrt(var + layer.eps)
        xhat = (x - x.mean(axis=0)) / sigma
        gamma = layer.params["gamma"]
        by_hand = (gamma / sigma)[:, None, None] * (np.eye(B)[None] - 1 / B
                                                     - xhat.T[:, :, None] * xhat.T[:, None, :] / B)
        np.testing.assert_allclose(coupled, by_hand, rtol=1e-12, atol=1e-15)
    else:
        expected = np.zeros_like(jac)
        diagonal = partials.inputs.values                     # (B, N)
        for b in range(B):
            expected[b, :, b, :] = np.diag(diagonal[b])
        sigma = np.sqrt(layer.running_var + layer.eps)
        np.testing.assert_allclose(diagonal[0], layer.params["gamma"] / sigma, rtol=1e-14)
    np.testing.assert_allclose(jac, expected, atol=TOL_LAYER_FD)


@pytest.mark.claim("C4.10")
@pytest.mark.parametrize("training", [True, False], ids=["training", "evaluation"])
def test_batchnorm_parameter_partials_match_finite_differences(training):
    """K: ∂y_{bj}/∂γ_j = x̂_{bj} and ∂y_{bj}/∂β_j = 1, against the forward."""
    layer = _batchnorm(training)
    x = rng.standard_normal((4, 5)) * 2 + 1
    y, saved = layer.forward(x)
    S = rng.standard_normal(y.shape)
    K = layer.local_partials(saved).params
    h = 1e-6
    for name in ("gamma", "beta"):
        fd = np.zeros(5)
        theta = layer.params[name]
        for j in range(5):
            keep = theta[j]
            theta[j] = keep + h
            up = (layer.forward(x)[0] * S).sum()
            theta[j] = keep - h
            down = (layer.forward(x)[0] * S).sum()
            theta[j] = keep
            fd[j] = (up - down) / (2 * h)
        grad = K[name].per_sample(S).sum(axis=0)
        np.testing.assert_allclose(grad, fd, atol=TOL_LAYER_FD)
    np.testing.assert_allclose(K["gamma"].per_sample(S).sum(axis=0), (saved.xhat * S).sum(0),
                               rtol=1e-13)
    np.testing.assert_allclose(K["beta"].per_sample(S).sum(axis=0), S.sum(0), rtol=1e-13)


def test_log_softmax_keeps_the_top_class_log_probability_to_full_relative_precision():
    """The top class's log-probability is −log(1 + Σ_{k≠top} e^{x_k − x_top}); taken as log1p
    of the other terms it keeps its relative precision when tiny, where log of the sum would
    round to 0 (from a gap of about 37 in float64). The reference is the same closed form at
    50 digits; the loss of a confident sample is then that tiny number, not 0."""
    import mpmath
    mpmath.mp.dps = 50
    for gap in (1.0, 20.0, 40.0, 300.0):
        x = np.array([[0.0, -gap, -gap - 1.5]])
        y, _ = mp.LogSoftmax().forward(x)
        exact = -mpmath.log1p(mpmath.exp(-gap) + mpmath.exp(-gap - 1.5))
        assert abs(float((mpmath.mpf(float(y[0, 0])) - exact) / exact)) < 4e-16, gap
        loss = mp.SoftmaxCrossEntropy()
        value, _ = loss.forward(x, np.array([0]))
        assert abs(float((mpmath.mpf(float(np.ravel(value)[0])) + exact) / exact)) < 4e-16, gap
    tied, _ = mp.LogSoftmax().forward(np.array([[2.0, 2.0, 2.0]]))  # ties: one term is the top
    np.testing.assert_allclose(tied, -np.log(3), rtol=1e-15)
