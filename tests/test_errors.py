"""Bad input to a network's forward, bad specs and bad layer input get a clear error naming the
layer and the expected vs given value. (Errors in building a Sequential are in test_network.py.)"""

import numpy as np
import pytest

import msgpass as mp


def net():
    return mp.Sequential([mp.Affine(4, 5, seed=0), mp.ReLU(), mp.Affine(5, 3, seed=1),
                          mp.SoftmaxCrossEntropy()])


X = np.random.default_rng(0).standard_normal((2, 4))


@pytest.mark.parametrize("x, error, pattern", [
    (np.zeros((2, 3)), mp.ShapeError, r"input x must have shape \(B, 4\) for Affine\(4→5\) \(layer 1\), got \(2, 3\)"),
    (np.zeros((2, 4, 1)), mp.ShapeError, r"input x must have shape \(B, N\) or \(N,\), got \(2, 4, 1\)"),
    (np.zeros((0, 4)), mp.ShapeError, r"input x is empty"),
    (np.array([[1.0, np.nan, 0, 0]]), mp.InputValueError, r"input x contains nan at sample 0, feature 1"),
    (np.array([[1.0, 0, 0, np.inf]]), mp.InputValueError, r"contains inf at sample 0, feature 3"),
    (np.array([["a", "b", "c", "d"]]), mp.DtypeError, r"must hold real numbers.*got dtype <U1"),
    (np.array([[1 + 1j, 0, 0, 0]]), mp.DtypeError, r"got dtype complex128"),
    (np.array([[True, False, True, False]]), mp.DtypeError, r"got dtype bool"),
])
def test_bad_input(x, error, pattern):
    with pytest.raises(error, match=pattern):
        net().forward(x, [0] * len(x))


@pytest.mark.parametrize("target, error, pattern", [
    ([0, 3], mp.InputValueError, r"layer 4 \(SoftmaxCrossEntropy\): label of sample 1 is 3; expected 0\.\.2"),
    ([0, -1], mp.InputValueError, r"label of sample 1 is -1"),
    ([0, 1, 2], mp.ShapeError, r"layer 4 \(SoftmaxCrossEntropy\): target must be labels of shape \(2,\) or one-hot rows of shape \(2, 3\), got \(3,\)"),
    (np.zeros((2, 4)), mp.ShapeError, r"got \(2, 4\)"),
    ([0.5, 1.0], mp.InputValueError, r"label of sample 0 is 0\.5; labels must be integers"),
    ([[1, 0, 0], [0.5, -0.2, 0.2]], mp.InputValueError, r"must be non-negative .* sample 1, class 1 is -0\.2"),
    (["a", "b"], mp.DtypeError, r"target must be integer labels"),
    ([True, False], mp.DtypeError, r"got dtype bool"),
    (None, mp.ShapeError, r"needs a target for the loss layer \(layer 4, SoftmaxCrossEntropy\)"),
])
def test_bad_target(target, error, pattern):
    with pytest.raises(error, match=pattern):
        net().forward(X, target)


@pytest.mark.parametrize("x, target, pattern", [
    ([[1.0, 2.0, 3.0, 4.0], [1.0]], [0, 1], r"input x is not a rectangular array"),
    (np.zeros((2, 4)), [[1, 0, 0], [1]], r"target is not a rectangular array"),
    (np.zeros((2, 4)), [0, 1e20], r"label of sample 1 is 1e\+20; expected 0\.\.2"),
    (np.zeros((2, 4)), np.array([0, 2**63], dtype=np.uint64), r"label of sample 1 is 9223372036854775808"),
])
def test_bad_input_that_once_escaped_as_numpy_errors(x, target, pattern):
    """This once failed because ragged input and labels too large for an integer escaped as
    numpy's own errors (or wrapped around) instead of a msgpass error naming them."""
    net = mp.Sequential([mp.Affine(4, 3, seed=0), mp.SoftmaxCrossEntropy()])
    with pytest.raises(mp.MsgpassError, match=pattern):
        net.forward(x, target)


def test_bad_mse_target():
    mse = mp.Sequential([mp.Affine(4, 2, seed=0), mp.MSELoss()])
    with pytest.raises(mp.ShapeError, match=r"layer 2 \(MSELoss\): target must have the shape of the input \(2, 2\), got \(2, 3\)"):
        mse.forward(X, np.zeros((2, 3)))
    with pytest.raises(mp.InputValueError, match=r"target contains NaN or Inf at sample 1, node 0"):
        mse.forward(X, np.array([[0.0, 0.0], [np.nan, 0.0]]))


def test_nonfinite_output_names_the_layer_and_the_cause():
    bad = net()
    bad.params["3.W"][0, 0] = np.nan
    with pytest.raises(mp.NonFiniteError, match=r"layer 3 \(Affine\(5→3\)\) produced nan .* parameter\(s\) W hold NaN"):
        bad.forward(np.ones((2, 4)), [0, 1])
    huge = mp.Sequential([mp.Affine(4, 3, seed=0, scale=1e308), mp.SoftmaxCrossEntropy()])
    with pytest.raises(mp.NonFiniteError, match=r"layer 1 .* overflowed"):
        huge.forward(np.full((1, 4), 1e10), [0])


@pytest.mark.parametrize("spec, pattern", [
    ("4-xx-sce", r"token 2 \('xx'\) is not a width or a layer"),
    ("4-3-relu", r"must end in a loss"),
    ("relu-3-sce", r"must start with the input width"),
    ("4-sce-3-sce", r"the loss 'sce' must be the last token"),
    ("4", r"too short"),
    ("4--3-sce", r"empty token"),
    ("4-3-nll", r"put logsoftmax right before it"),
])
def test_bad_spec(spec, pattern):
    with pytest.raises(mp.SpecError, match=pattern):
        mp.build_network(spec)


def test_errors_are_catchable_as_builtin_kinds():
    with pytest.raises(ValueError):
        net().forward(np.zeros((2, 3)), [0, 1])
    with pytest.raises(TypeError):
        net().forward(np.array([["a"] * 4]), [0])
    with pytest.raises(RuntimeError):
        net().backward()


def test_a_layer_checks_its_own_input_width_too():
    """Inside a network whose layers were changed after construction, Affine still says so."""
    with pytest.raises(mp.ShapeError, match=r"expected input of shape \(B, 4\), got \(2, 3\)"):
        mp.Affine(4, 5).forward(np.zeros((2, 3)))


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_an_input_too_large_for_float32_is_named_not_called_inf():
    """This once failed with numpy's RuntimeWarning "overflow encountered in cast", then said
    the input "contains inf" although the user gave 1e300 (found by
    tests/test_every_error_is_ours.py)."""
    net32 = net().astype(np.float32)
    with pytest.raises(mp.InputValueError, match=r"input x holds 1e\+300 at sample 0, feature 1, "
                                                 r"too large for float32 \(at most 3\.403e\+38\)"):
        net32.forward(np.array([[1.0, 1e300, 0, 0]]), [0])
