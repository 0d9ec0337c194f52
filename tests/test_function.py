"""Custom function layers: complex-step partials, the fallback, and checking a user Jacobian."""

import re
import warnings

import numpy as np
import pytest

import msgpass as mp
from msgpass.errors import DtypeError, ShapeError

rng = np.random.default_rng(5)


def smooth(x, W):
    """y0 = sin(x0)·e^{x1}, y1 = x0·x1² + W0·tanh(x2), y2 = W1·x0·x2 (analytic everywhere)."""
    return np.stack([np.sin(x[:, 0]) * np.exp(x[:, 1]),
                     x[:, 0] * x[:, 1] ** 2 + W[0] * np.tanh(x[:, 2]),
                     W[1] * x[:, 0] * x[:, 2]], axis=1)


def smooth_jacobian(x, W):
    """Written out by hand: J[b, n, n'] = ∂y_{n'}/∂x_n."""
    J = np.zeros((x.shape[0], 3, 3))
    J[:, 0, 0] = np.cos(x[:, 0]) * np.exp(x[:, 1])
    J[:, 1, 0] = np.sin(x[:, 0]) * np.exp(x[:, 1])
    J[:, 0, 1] = x[:, 1] ** 2
    J[:, 1, 1] = 2 * x[:, 0] * x[:, 1]
    J[:, 2, 1] = W[0] * (1 - np.tanh(x[:, 2]) ** 2)
    J[:, 0, 2] = W[1] * x[:, 2]
    J[:, 2, 2] = W[1] * x[:, 0]
    return J


W0 = np.array([1.5, -0.7])


@pytest.mark.claim("C5.4")
def test_complex_step_partials_match_the_analytic_jacobian_to_round_off():
    fn = mp.Function(smooth, 3, 3, params={"W": W0})
    x = rng.standard_normal((6, 3))
    _, saved = fn.forward(x)
    assert fn.method == "complex step"
    exact = smooth_jacobian(x, W0)
    rel = np.abs(saved.jac - exact).max() / np.abs(exact).max()
    assert rel <= 1e-13, rel       # the bound; measured ~2e-16
    # the parameter partials too: ∂y1/∂W0 = tanh(x2), ∂y2/∂W1 = x0·x2
    K = saved.param_jacs["W"]
    np.testing.assert_allclose(K[:, 0, 1], np.tanh(x[:, 2]), rtol=1e-13)
    np.testing.assert_allclose(K[:, 1, 2], x[:, 0] * x[:, 2], rtol=1e-13)
    assert np.all(K[:, 0, [0, 2]] == 0) and np.all(K[:, 1, [0, 1]] == 0)


@pytest.mark.claim("C5.5")
def test_a_wrong_user_jacobian_is_caught_and_its_entries_named():
    def wrong(x, W):
        J = smooth_jacobian(x, W)
        J[:, 1, 0] *= 1.001        # ∂y0/∂x1 off by 0.1 %
        J[:, 2, 1] = 0.0           # ∂y1/∂x2 forgotten
        return J
    fn = mp.Function(smooth, 3, 3, params={"W": W0}, jacobian=wrong)
    x = rng.standard_normal((4, 3))
    check = fn.check(x)
    assert not check.ok
    assert {(n, m) for _, n, m, _, _ in check.wrong} == {(1, 0), (2, 1)}
    assert "(1, 0), (2, 1)" in str(check)
    right = mp.Function(smooth, 3, 3, params={"W": W0}, jacobian=smooth_jacobian)
    assert right.check(x).ok
    # verify runs the check on the batch and names the wrong entries
    net = mp.Sequential([mp.Affine(2, 3, seed=0), fn, mp.MSELoss()])
    report = mp.verify(net, rng.standard_normal((5, 2)), np.zeros((5, 3)))
    assert not report.ok
    bad = report.first_failure
    assert bad.witness == "complex-step" and bad.t == 2 and "(1, 0), (2, 1)" in bad.note


def test_a_network_with_a_custom_function_verifies_against_independent_witnesses():
    fn = mp.Function(smooth, 3, 3, params={"W": W0})
    net = mp.Sequential([mp.Affine(4, 3, seed=1), fn, mp.Tanh(), mp.Affine(3, 2, seed=2),
                         mp.SoftmaxCrossEntropy()])
    report = mp.verify(net, rng.standard_normal((5, 4)), np.array([0, 1, 1, 0, 1]))
    assert report.ok, str(report)
    assert any(c.layer == "2.W" and c.witness == "numeric" for c in report.checks)


def test_no_complex_input_falls_back_to_central_differences_with_a_warning():
    def real_only(x):
        return np.array([[float(v) ** 2 for v in row] for row in x])   # casts to float
    fn = mp.Function(real_only, 2, 2)
    x = np.array([[1.5, -2.0]])
    with pytest.warns(mp.DerivativeWarning, match="does not take complex input"):
        _, saved = fn.forward(x)
    assert fn.method == "central differences"
    np.testing.assert_allclose(saved.jac[0], np.diag(2 * x[0]), rtol=1e-9)


def test_a_non_analytic_function_is_detected():
    fn = mp.Function(lambda x: np.abs(x) * x, 2, 2, name="abs_times")
    with pytest.warns(mp.DerivativeWarning, match="is f analytic"):
        _, saved = fn.forward(np.array([[1.5, -2.0]]))
    np.testing.assert_allclose(saved.jac[0], np.diag([3.0, 4.0]), rtol=1e-9)


def test_function_errors_name_the_function():
    with pytest.raises(ShapeError, match=r"Function\(bad: 2→3\): f returned shape \(1, 2\)"):
        mp.Function(lambda x: x, 2, 3, name="bad").forward(np.ones((1, 2)))
    with pytest.raises(ShapeError, match="jacobian returned shape"):
        mp.Function(smooth, 3, 3, params={"W": W0}, jacobian=lambda x, W: np.ones((3, 3))
                    ).forward(np.ones((2, 3)))
    with pytest.raises(ShapeError, match="n_out must be a positive integer"):
        mp.Function(smooth, 3, 0)
    with pytest.raises(DtypeError, match="floating point"):
        net = mp.Sequential([mp.Function(smooth, 3, 3, params={"W": W0}), mp.MSELoss()])
        net.astype("mp:30").forward(np.ones((1, 3)), np.zeros((1, 3)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mp.Function(smooth, 3, 3, params={"W": W0}).forward(np.ones((2, 3)))   # no warning


def test_a_wrong_user_jacobian_in_a_graph_is_named_by_verify():
    def wrong(x, W):
        J = smooth_jacobian(x, W)
        J[:, 0, 2] += 1.0
        return J
    g = mp.Graph()
    y = mp.Function(smooth, 3, 3, params={"W": W0}, jacobian=wrong)(g.input("x", rng.standard_normal((2, 3))))
    report = mp.verify(g, y)
    assert not report.ok
    bad = [c for c in report.checks if c.witness == "complex-step"]
    assert bad and not bad[0].ok and "(0, 2)" in bad[0].note


def test_non_analytic_in_a_parameter_is_detected():
    fn = mp.Function(lambda x, W: x * np.abs(W), 2, 2, params={"W": np.array([-1.5, 2.0])})
    with pytest.warns(mp.DerivativeWarning, match="analytic"):
        _, saved = fn.forward(np.array([[1.0, 2.0]]))
    np.testing.assert_allclose(saved.param_jacs["W"][0], [[-1.0, 0.0], [0.0, 2.0]], rtol=1e-8)


def test_a_small_scale_non_analytic_function_is_detected_too():
    fn = mp.Function(lambda x: 1e-6 * np.abs(x) * x, 2, 2)
    with pytest.warns(mp.DerivativeWarning):
        fn.forward(np.array([[1.5, -2.0]]))
    assert fn.method == "central differences"


def test_a_user_jacobian_for_an_f_without_complex_input_is_reported_not_crashed():
    def real_only(x, W):
        return np.array([[float(v) * W[0] for v in row] for row in x])

    def jac(x, W):
        return np.broadcast_to(np.eye(2) * W[0], (x.shape[0], 2, 2)).copy()
    net = mp.Sequential([mp.Function(real_only, 2, 2, params={"W": np.array([2.0])},
                                     jacobian=jac, name="real_only"), mp.MSELoss()])
    with pytest.warns(mp.DerivativeWarning):
        report = mp.verify(net, np.ones((2, 2)), np.zeros((2, 2)))
    assert report.ok, str(report)         # the parameter partials fell back, and hold
    assert any("user Jacobian was not checked" in n for n in report.notes)


def test_a_float32_jacobian_is_judged_at_its_precision_and_a_wrong_one_prints_distinct_digits():
    # a right Jacobian given in float32 was "wrong ... given 0.608787, complex step 0.608787":
    # its rounding alone (≈ 3e-8) exceeded the float64 tolerance, and six digits hid the gap
    x = np.array([[0.3, 0.9, 2.2], [-1.0, 0.5, 0.1]])

    def diagonal(values):
        return np.stack([np.diag(v) for v in values])
    right32 = mp.Function(np.sin, 3, 3, jacobian=lambda x: diagonal(np.cos(x)).astype(np.float32))
    check = right32.check(x)
    assert check.ok and check.precision == "float32" and check.rtol == pytest.approx(16 * 2**-23)
    assert "given in float32" in str(check)
    slightly_off = mp.Function(np.sin, 3, 3, jacobian=lambda x: diagonal(np.cos(x)) * (1 + 3e-8))
    check = slightly_off.check(x)
    assert not check.ok and check.precision == "float64"
    for part in str(check).split(": ", 2)[2].split("; "):
        given, reference = re.search(r"given (\S+), complex step (\S+)", part).groups()
        assert given != reference, part     # printed with the digits that tell them apart
    wrong32 = mp.Function(np.sin, 3, 3, jacobian=lambda x: diagonal(-np.cos(x)).astype(np.float32))
    assert not wrong32.check(x).ok                     # a wrong formula still fails in float32
