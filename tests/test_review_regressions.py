"""Cases a review found: each failed (or misled) before its fix."""

import numpy as np
import pytest

import msgpass as mp
from msgpass.testing import random_batch, random_network

rng = np.random.default_rng(9)


def test_close_logits_of_magnitude_1e4_verify():
    """A relative stencil step (h ≈ 1 at |z| = 1e4) once blurred softmax here: rel 3.5e-2."""
    net = mp.Sequential([mp.SoftmaxCrossEntropy()], input_width=3)
    report = mp.verify(net, np.array([[1e4, 1e4 + 0.5, -1e4], [2e4, 2e4 - 1, 0.0]]), [0, 1])
    assert report.ok, str(report)


@pytest.mark.parametrize("shift", [100.0, 1000.0, 3000.0])
def test_a_common_shift_of_the_logits_verifies(shift):
    net = mp.Sequential([mp.Affine(3, 3, seed=0), mp.SoftmaxCrossEntropy()])
    net.params["1.b"][:] = shift
    assert mp.verify(net, rng.standard_normal((4, 3)), [0, 1, 2, 0]).ok


def test_float32_saturated_sigmoids_verify_from_the_cli():
    from msgpass.cli import main
    assert main(["verify", "--arch", "10-32-sigmoid-32-sigmoid-4-mse", "--batch", "16",
                 "--dtype", "float32", "--seed", "15"]) == 0


@pytest.mark.parametrize("seed", [176, 179, 223, 372])
def test_float32_networks_that_once_failed_verify(seed):
    """1 − y² and y(1 − y) round at the size of their terms, not of the result."""
    r = np.random.default_rng(seed)
    net = random_network(r, max_width=12, dtype=np.float32)
    x, target = random_batch(net, int(r.integers(1, 9)), r)
    report = mp.verify(net, x, target)
    assert report.ok, str(report)


class ScaledSigmoid(mp.Sigmoid):
    def local_partials(self, saved):
        values = super().local_partials(saved).inputs.values
        return mp.LocalPartials(mp.Diagonal(values * 1.001))


def test_float32_planted_fault_is_caught_and_not_blamed_on_backprop():
    net = mp.Sequential([mp.Affine(5, 6, seed=1, dtype=np.float32), ScaledSigmoid(),
                         mp.Affine(6, 3, seed=2, dtype=np.float32), mp.SoftmaxCrossEntropy()])
    report = mp.verify(net, rng.standard_normal((4, 5)), [0, 1, 2, 0])
    assert not report.ok
    assert (report.first_failure.t, report.first_failure.witness) == (2, "backprop")
    assert "classic backward" not in report.verdict()
    assert "cannot tell which is wrong" in report.verdict()


def test_the_trace_does_not_follow_later_changes_to_x():
    net = mp.Sequential([mp.Affine(4, 3, seed=0), mp.SoftmaxCrossEntropy()])
    x = rng.standard_normal((2, 4))
    net.forward(x, [0, 1])
    trace = net.backward()
    grad = trace.grads["1.W"].copy()
    x += 1.0
    np.testing.assert_array_equal(net.backward().grads["1.W"], grad)
    assert not np.shares_memory(trace.values[0], x)


def test_a_failed_forward_leaves_nothing_for_backward():
    net = mp.Sequential([mp.Affine(4, 3, seed=0), mp.SoftmaxCrossEntropy()])
    net.forward(rng.standard_normal((2, 4)), [0, 1])
    with pytest.raises(mp.InputValueError):
        net.forward(rng.standard_normal((2, 4)), [0, 7])
    with pytest.raises(mp.StateError, match="before net.forward"):
        net.backward()


def test_verify_leaves_the_networks_last_batch_alone():
    net = mp.Sequential([mp.Affine(4, 3, seed=0), mp.SoftmaxCrossEntropy()])
    x = rng.standard_normal((2, 4))
    net.forward(x, [0, 1])
    before = net.backward().grads["1.W"]
    mp.verify(net, rng.standard_normal((5, 4)), [0, 1, 2, 0, 1])
    np.testing.assert_array_equal(net.backward().grads["1.W"], before)


@pytest.mark.parametrize("x, target, pattern", [
    ([[1.0, 2.0, 3.0, 4.0], [1.0]], [0, 1], r"input x is not a rectangular array"),
    (np.zeros((2, 4)), [[1, 0, 0], [1]], r"target is not a rectangular array"),
    (np.zeros((2, 4)), [0, 1e20], r"label of sample 1 is 1e\+20; expected 0\.\.2"),
    (np.zeros((2, 4)), np.array([0, 2**63], dtype=np.uint64), r"label of sample 1 is 9223372036854775808"),
])
def test_bad_input_that_once_escaped_as_numpy_errors(x, target, pattern):
    net = mp.Sequential([mp.Affine(4, 3, seed=0), mp.SoftmaxCrossEntropy()])
    with pytest.raises(mp.MsgpassError, match=pattern):
        net.forward(x, target)


@pytest.mark.parametrize("keep", [5, None, "most", [1.5], [True]])
def test_bad_keep_values(keep):
    net = mp.Sequential([mp.Affine(4, 3, seed=0), mp.SoftmaxCrossEntropy()])
    net.forward(np.zeros((1, 4)), [0])
    with pytest.raises(ValueError, match="keep must be 'all', 'sums' or a list of layer indices"):
        net.backward(keep=keep)


def test_bad_numeric_entries():
    net = mp.Sequential([mp.Affine(4, 3, seed=0), mp.SoftmaxCrossEntropy()])
    with pytest.raises(ValueError, match="numeric_entries must be a positive integer"):
        mp.verify(net, np.zeros((1, 4)), [0], numeric_entries=-1)


def test_sigmoid_of_integers_is_a_float():
    y, _ = mp.Sigmoid().forward(np.array([[0, 1, 3]]))
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-np.array([[0.0, 1.0, 3.0]]))), rtol=1e-15)


def test_params_copy_is_a_snapshot():
    net = mp.Sequential([mp.Affine(4, 3, seed=0), mp.SoftmaxCrossEntropy()])
    snap = net.params.copy()
    net.params["1.W"][...] = 0.0
    assert isinstance(snap, dict) and not np.all(snap["1.W"] == 0.0)
