"""Graph cases a review found: each failed, crashed or misled before its fix."""

import doctest

import numpy as np
import pytest

import msgpass as mp
from msgpass.graph import ops


def test_a_shared_batch_one_node_sums_over_the_samples():
    g = mp.Graph()
    x = g.input("x", np.arange(6.0).reshape(2, 3) - 2)
    w = g.input("w", 2.0)                       # one scalar shared by both samples
    f = (mp.maximum(x, 0.0) * w).named("f")
    trace = g.backward(f)
    assert float(trace.grad("w")) == float(np.maximum(np.arange(6.0) - 2, 0).sum())
    np.testing.assert_array_equal(trace.grad("x"), 2.0 * (np.arange(6.0).reshape(2, 3) > 2)
                                  + 1.0 * (np.arange(6.0).reshape(2, 3) == 2))  # tie at 0: ½·2
    report = mp.verify(g, f)
    assert report.ok, str(report)


@pytest.mark.parametrize("make", [
    lambda x: x + np.array([1.0, 2.0, 3.0]),
    lambda x: x * np.array([1.0, 2.0, 3.0]),
    lambda x: np.array([1.0, 2.0, 3.0]) / x,
])
def test_a_constant_that_does_not_fit_the_node_is_named(make):
    g = mp.Graph()
    f = make(g.input("x", [1.0, 2.0]))
    with pytest.raises(mp.ShapeError, match=r"constant of shape \(3,\) does not fit the input's "
                                            r"value of shape \(1, 2\)"):
        g.backward(f)


def test_verify_takes_the_graph_seed_by_keyword_or_position():
    g = mp.Graph()
    x = g.input("x", [1.0, 2.0])
    f = (x * x).named("f")
    assert mp.verify(g, f, seed=np.array([1.0, 0.0])).loss == 1.0
    assert mp.verify(g, f, np.array([1.0, 0.0])).loss == 1.0
    with pytest.raises(ValueError, match="upstream gradient of a graph"):
        mp.verify(mp.build_network("3-sce"), np.zeros((1, 3)), [0], seed=np.ones(1))


def test_an_output_that_is_an_input():
    g = mp.Graph()
    x = g.input("x", [1.0, 2.0])
    trace = g.backward(x)
    np.testing.assert_array_equal(trace.grad("x"), [1.0, 1.0])
    np.testing.assert_array_equal(trace.layered.node_sum("x"), [[1.0, 1.0]])
    assert mp.verify(g, x).ok


@pytest.mark.parametrize("build", [
    lambda g: mp.log(g.input("x", 1e-4)),             # the stencil would reach log(-0.0001)
    lambda g: g.input("x", 1e-4) ** 0.5,              # ... and sqrt of a negative
    lambda g: g.input("x", 1e-4) / (g.input("y", 1e-4) * 1.0 - 2e-4 + 1e-5),  # a pole nearby
    lambda g: mp.exp(g.input("x", 709.5)),            # the stencil overflows
])
def test_the_numerical_witness_leaves_out_what_it_cannot_estimate(build):
    g = mp.Graph()
    f = build(g)
    report = mp.verify(g, f)
    assert report.ok, str(report)
    numeric = [c for c in report.checks if c.witness == "numeric"]
    assert any(c.result.excluded for c in numeric)
    assert any("left out" in c.note for c in numeric)


class WrongDivBackward(ops.Div):
    def backward(self, saved, dout):
        dxs, grads = super().backward(saved, dout)
        return [dxs[0] * 1.001, dxs[1]], grads


class WrongMulPartial(ops.Mul):
    def local_partials(self, saved):
        right = super().local_partials(saved)
        first = right.inputs[0]
        return ops.OpPartials([mp.Diagonal(first.values * 1.001), right.inputs[1]])


def test_a_graph_diagnosis_names_the_classic_backward():
    g = mp.Graph()
    x, y = g.input("x", 1.5), g.input("y", 2.5)
    f = g.node(WrongDivBackward(), x * 2.0, y, name="div1")
    report = mp.verify(g, f)
    assert not report.ok
    assert "classic backward" in report.verdict()


def test_a_graph_diagnosis_names_the_op_with_the_wrong_partial():
    g = mp.Graph()
    x, y = g.input("x", 1.5), g.input("y", 2.5)
    f = g.node(WrongMulPartial(), x, y, name="mul1")
    report = mp.verify(g, f)
    assert not report.ok
    assert report.first_failure.layer == "x"
    assert "the local partials of mul1" in report.verdict()


def test_a_seed_of_the_wrong_shape_is_refused_not_reshaped():
    g = mp.Graph()
    x = g.input("x", np.arange(6.0).reshape(2, 3))
    with pytest.raises(mp.ShapeError, match=r"must have its shape \(2, 3\)"):
        g.backward(x * 1.0, np.arange(6.0).reshape(3, 2))


def test_an_infinite_derivative_is_an_error_naming_the_input():
    g = mp.Graph()
    x = g.input("x", [0.0, 1.0])
    with pytest.raises(mp.NonFiniteError, match="the sum arriving at input 'x' is inf"):
        g.backward(x**0.5)


def test_nodes_of_another_graph_are_refused_even_with_a_shared_name():
    g, h = mp.Graph(), mp.Graph()
    (g.input("x", 1.0) * 2.0).named("f")
    f2 = (h.input("x", 3.0) * 2.0).named("f")
    with pytest.raises(mp.StateError, match="belongs to another graph"):
        g.backward(f2)
    trace = g.backward("f")
    with pytest.raises(mp.StateError, match="belongs to another graph"):
        trace.grad(f2)


def test_trace_values_are_read_only_and_do_not_alias_the_inputs():
    g = mp.Graph()
    x = g.input("x", [1.0, 2.0])
    f = (x * x).named("f")
    trace = g.backward(f)
    with pytest.raises(ValueError, match="read-only"):
        trace.value("x")[0] = 99.0
    assert float(np.sum(g.backward(f).value(f))) == 5.0


def test_an_unused_input_has_gradient_zero_and_bad_keep_is_refused():
    g = mp.Graph()
    x, unused = g.input("x", 2.0), g.input("u", [1.0, 1.0, 1.0])
    f = (x * 3.0).named("f")
    np.testing.assert_array_equal(g.backward(f).grad("u"), [0.0, 0.0, 0.0])
    del unused
    with pytest.raises(ValueError, match="keep must be 'all' or 'sums'"):
        g.backward(f, keep="bogus")


def test_the_graph_module_docstring_example_runs():
    import msgpass.graph.graph as module
    assert doctest.testmod(module).failed == 0
