"""Graphs: the textbook examples, fan-out, nodes of batch 1 shared by every sample, seeds, the
layered view, errors that name the node, traces as read-only records, graphs equal to chains,
and the example in msgpass.graph.graph's docstring."""

import doctest

import numpy as np
import pytest

import msgpass as mp
from msgpass.demos import DEMOS
from msgpass.errors import InputValueError
from msgpass.graph import Identity
from msgpass.witnesses.pathsum import PathSumTooLarge, count_paths, path_sum

# Known values are products of a few float64 numbers: a few ulps, held to 1e-12 relative.
TOL_KNOWN = 1e-12


def grads(name):
    graph, output = DEMOS[name].build()
    trace = graph.backward(output)
    return trace, {n: float(trace.grad(n)) for n in graph.inputs()}


def test_apple():
    trace, g = grads("apple")
    assert float(trace.value("price")) == pytest.approx(220, rel=TOL_KNOWN)
    assert g == pytest.approx({"apple": 2.2, "apple_num": 110, "tax": 200}, rel=TOL_KNOWN)


def test_apples_and_oranges():
    trace, g = grads("apple-orange")
    assert float(trace.value("price")) == pytest.approx(715, rel=TOL_KNOWN)
    assert g == pytest.approx({"apple": 2.2, "apple_num": 110, "orange": 3.3,
                               "orange_num": 165, "tax": 650}, rel=TOL_KNOWN)


@pytest.mark.claim("C1.6")
def test_sigmoid_neuron():
    trace, g = grads("sigmoid-neuron")
    s = 1 / (1 + np.exp(-1.0))          # σ(2·(−1) + (−3)·(−2) − 3) = σ(1)
    ds = s * (1 - s)
    assert float(trace.value("f")) == pytest.approx(s, rel=TOL_KNOWN)
    assert g == pytest.approx({"w0": -1 * ds, "x0": 2 * ds, "w1": -2 * ds, "x1": -3 * ds,
                               "w2": ds}, rel=TOL_KNOWN)


@pytest.mark.claim("C1.7")
def test_staged_computation_against_the_quotient_rule():
    trace, g = grads("staged")
    x, y = 3.0, -4.0
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    num, den = x + sig(y), sig(x) + (x + y) ** 2
    dnum_dx, dnum_dy = 1.0, sig(y) * (1 - sig(y))
    dden_dx, dden_dy = sig(x) * (1 - sig(x)) + 2 * (x + y), 2 * (x + y)
    assert float(trace.value("f")) == pytest.approx(num / den, rel=TOL_KNOWN)
    assert g["x"] == pytest.approx((dnum_dx * den - num * dden_dx) / den**2, rel=TOL_KNOWN)
    assert g["y"] == pytest.approx((dnum_dy * den - num * dden_dy) / den**2, rel=TOL_KNOWN)
    # x branches three ways and y two: their sums collect every branch
    assert len([e for e in trace.edges if e[0] == "x"]) == 3
    assert len([e for e in trace.edges if e[0] == "y"]) == 2


@pytest.mark.parametrize("name", list(DEMOS))
@pytest.mark.claim("C3.1")
def test_every_demo_verifies_with_all_witnesses(name):
    graph, output = DEMOS[name].build()
    report = mp.verify(graph, output)
    assert report.ok, str(report)
    witnesses = {c.witness for c in report.checks}
    assert witnesses == {"partials", "backprop", "layered", "numeric", "pathsum", "forward"}
    assert "the path sums" in report.verdict()


def test_demo_command_prints_values_and_every_message(capsys):
    from msgpass.cli import main
    assert main(["demo", "apple"]) == 0
    out = capsys.readouterr().out
    assert "price → apple_price" in out and "δ = 1.1" in out
    assert "∂price/∂tax" in out and "= 200" in out
    assert main(["demo", "staged", "--verify"]) == 0
    assert "VERIFIED" in capsys.readouterr().out
    assert main(["demo"]) == 0
    assert "sigmoid-neuron" in capsys.readouterr().out


@pytest.mark.claim("C1.5")
def test_fan_out_sums_the_messages_from_every_consumer():
    g = mp.Graph()
    x = g.input("x", 2.0)
    f = (x * x + 3 * x + mp.exp(x)).named("f")
    trace = g.backward(f)
    arriving = [m for source, _, m in trace.edges if source == "x"]
    assert len(arriving) == 4                       # x·x twice, 3x, e^x
    assert float(trace.grad("x")) == sum(float(m.dense().sum()) for m in arriving)
    assert float(trace.grad("x")) == pytest.approx(2 * 2.0 + 3 + np.exp(2.0), rel=TOL_KNOWN)


@pytest.mark.claim("C1.5")
def test_explicit_copy_is_a_y_splitter():
    g = mp.Graph()
    x = g.input("x", [1.0, 2.0])
    a, b, c = mp.copy(x, 3)
    f = (a * b * c).named("f")
    trace = g.backward(f)
    assert [e[1] for e in trace.edges if e[0] == "x"] == ["x.copy3", "x.copy2", "x.copy1"]
    assert isinstance(g["x.copy1"].op, Identity)
    assert [n.name for n in mp.copy(x, 2)] == ["x.copy4", "x.copy5"]   # a second split
    np.testing.assert_allclose(trace.grad("x"), 3 * np.array([1.0, 2.0]) ** 2, rtol=TOL_KNOWN)


@pytest.mark.claim("C1.4")
def test_max_routes_the_gradient_and_reports_ties():
    g = mp.Graph()
    a, b = g.input("a", [1.0, 5.0, 3.0]), g.input("b", [2.0, 4.0, 3.0])
    f = mp.maximum(a, b).named("f")
    trace = g.backward(f)
    np.testing.assert_array_equal(trace.grad("a"), [0.0, 1.0, 0.5])   # tie: half each
    np.testing.assert_array_equal(trace.grad("b"), [1.0, 0.0, 0.5])
    report = mp.verify(g, f)
    assert report.ok, str(report)
    assert [(k.layer, k.points) for k in report.kinks] == [("f", [(0, 2)])]
    assert "half the gradient" in report.kinks[0].convention


@pytest.mark.claim("C1.4")
def test_the_kink_conventions_are_pytorchs_and_the_text_says_which_seed_each_follows():
    """theory/01 after C1.4: a tie of max splits evenly as torch.maximum does (seed 000 would
    give all of it to X₂); ReLU'(0) = 0 as torch.relu and seed 001 (seed 000's table gives 1);
    mp.maximum(x, 0) at x = 0 is a tie and sends ½, mp.relu sends 0 — in the local partials
    and in the classic backward (the standard-backprop witness) alike."""
    torch = pytest.importorskip("torch")
    a = torch.tensor([3.0, 0.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([3.0, 0.0], dtype=torch.float64, requires_grad=True)
    torch.maximum(a, b).sum().backward()
    assert a.grad.tolist() == b.grad.tolist() == [0.5, 0.5]
    z = torch.tensor([0.0], dtype=torch.float64, requires_grad=True)
    torch.relu(z).sum().backward()
    assert z.grad.tolist() == [0.0]
    g = mp.Graph()
    x = g.input("x", [0.0, 2.0, -1.0])
    as_max = mp.maximum(x, g.input("zero", [0.0, 0.0, 0.0])).named("as_max")
    as_relu = mp.relu(x).named("as_relu")
    np.testing.assert_array_equal(g.backward(as_max).grad("x"), [0.5, 1.0, 0.0])
    np.testing.assert_array_equal(g.backward(as_relu).grad("x"), [0.0, 1.0, 0.0])
    for f in (as_max, as_relu):                      # the classic backward agrees step by step
        assert mp.verify(g, f, witnesses=("backprop",)).ok
    layer = mp.ReLU()                                # the layer, in both of its backwards
    _, saved = layer.forward(np.array([[0.0, 2.0]]))
    np.testing.assert_array_equal(layer.local_partials(saved).inputs.values, [[0.0, 1.0]])
    dx = layer.backward(saved, np.array([[1.0, 1.0]]))
    np.testing.assert_array_equal(dx[0] if isinstance(dx, tuple) else dx, [[0.0, 1.0]])


def test_vectors_broadcast_a_width_one_node_to_all_entries():
    g = mp.Graph()
    v, s = g.input("v", [1.0, 2.0, 3.0]), g.input("s", 2.0)
    f = (v * s).named("f")
    trace = g.backward(f)
    assert trace.message("s", "f").shape == (1, 1, 3)   # one node sending to three
    assert float(trace.grad("s")) == 6.0
    np.testing.assert_array_equal(trace.grad("v"), [2.0, 2.0, 2.0])
    assert trace.grad("v").shape == (3,) and np.ndim(trace.grad("s")) == 0
    assert mp.verify(g, f).ok


def test_a_vector_output_takes_a_seed():
    g = mp.Graph()
    x = g.input("x", [1.0, 2.0])
    f = (x * x).named("f")
    np.testing.assert_array_equal(g.backward(f).grad("x"), [2.0, 4.0])          # Σ f
    np.testing.assert_array_equal(g.backward(f, seed=[1.0, 0.0]).grad("x"), [2.0, 0.0])
    with pytest.raises(mp.ShapeError, match=r"seed for the output 'f' must have its shape \(2,\)"):
        g.backward(f, seed=[1.0, 2.0, 3.0])


def test_the_layered_view_carries_skip_edges_and_agrees():
    graph, output = DEMOS["staged"].build()
    trace = graph.backward(output)
    view = trace.layered
    assert [n for n, _ in view.levels[0]] == ["x", "y"]
    carried = {n for level in view.levels for n, c in level if c}
    assert "x" in carried                            # x skips to the level of num
    for name in trace.order:
        np.testing.assert_allclose(view.node_sum(name), trace.incoming(name), rtol=1e-12)
    for level in range(1, view.depth + 1):
        block = view.message(level)
        assert block.shape[1:] == (sum(trace.values[n].shape[1] for n, _ in view.levels[level - 1]),
                                   sum(trace.values[n].shape[1] for n, _ in view.levels[level]))


def test_a_graph_of_layers_equals_the_chain():
    """The same Affine-ReLU-Affine-SoftmaxCrossEntropy as a Sequential and as a graph."""
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((5, 4)), np.array([0, 2, 1, 1, 0])
    layers = [mp.Affine(4, 6, seed=1), mp.ReLU(), mp.Affine(6, 3, seed=2), mp.SoftmaxCrossEntropy()]
    net = mp.Sequential(layers)
    net.forward(x, labels)
    chain = net.backward()
    g = mp.Graph()
    z = g.input("x", x)
    loss = layers[3](layers[2](layers[1](layers[0](z))), target=labels).named("loss")
    trace = g.backward(loss, seed=np.full((5, 1), 1 / 5))    # the batch mean's weights
    np.testing.assert_allclose(trace.grad("x"), chain.incoming(1), rtol=1e-12, atol=1e-15)
    for t, name in ((1, "affine1"), (3, "affine2")):
        for p in ("W", "b"):
            np.testing.assert_allclose(trace.grads[f"{name}.{p}"], chain.grads[f"{t}.{p}"],
                                       rtol=1e-12, atol=1e-15)
    report = mp.verify(g, loss, np.full((5, 1), 1 / 5))
    assert report.ok, str(report)


@pytest.mark.claim("C3.3")
def test_path_counts_and_the_refusal_above_the_limit():
    g = mp.Graph()
    z = x = g.input("x", 0.5)
    for _ in range(20):                    # each stage doubles the paths: a + b of the same z
        z = (mp.tanh(z) + mp.sigmoid(z))
    trace = g.backward(z)
    assert count_paths(trace)["x"][0] == 2**20
    with pytest.raises(PathSumTooLarge, match="1,048,576 paths") as err:
        path_sum(trace)
    assert err.value.count == 2**20
    small = path_sum(trace, ["tanh19"])       # from near the top: 2 paths
    assert small.paths == {"tanh19": 2}
    report = mp.verify(g, z)
    assert report.ok, str(report)
    assert any("not enumerated" in note and "1,048,576" in note for note in report.notes)
    del x


@pytest.mark.parametrize("build, error, pattern", [
    (lambda g: g.node(mp.graph.Add(), "a", "b", name="b") if g.input("a", 1.0) else None,
     mp.GraphError, r"cycle: b → b"),
    (lambda g: (g.input("x") * 2).named("f"), mp.StateError, r"input 'x' has no value"),
    (lambda g: (g.input("x", [1.0, 2.0, 3.0]) + g.input("y", [1.0, 2.0])).named("f"),
     mp.ShapeError, r"node 'f' \(add\): add needs inputs of one width"),
    (lambda g: mp.log(g.input("x", [1.0, -2.0])).named("f"), mp.InputValueError,
     r"node 'f' \(log\): log needs positive input, got -2 at sample 0, entry 1"),
    (lambda g: (g.input("x", 1.0) / g.input("y", 0.0)).named("f"), mp.InputValueError,
     r"node 'f' \(div\): division by zero"),
    (lambda g: g.node(mp.graph.Exp(), "nowhere", name="f"), mp.GraphError,
     r"node 'f' takes input 'nowhere', but no node is named 'nowhere'"),
])
def test_bad_graphs_name_the_node(build, error, pattern):
    g = mp.Graph()
    output = build(g)
    with pytest.raises(error, match=pattern):
        g.backward(output if output is not None else "b")


def test_a_longer_cycle_is_named():
    g = mp.Graph()
    g.node(mp.graph.Exp(), "c", name="a")
    g.node(mp.graph.Exp(), "a", name="b")
    g.node(mp.graph.Exp(), "b", name="c")
    with pytest.raises(mp.GraphError, match=r"cycle: (a → b → c → a|b → c → a → b|c → a → b → c)"):
        g.backward("c")


def test_duplicate_names_and_foreign_nodes():
    g = mp.Graph()
    g.input("x", 1.0)
    with pytest.raises(mp.GraphError, match="a node named 'x' already exists"):
        g.input("x", 2.0)
    other = mp.Graph().input("y", 1.0)
    with pytest.raises(mp.StateError, match="belongs to another graph"):
        g["x"] + other


def test_a_deep_graph_does_not_hit_the_recursion_limit():
    g = mp.Graph()
    z = g.input("x", 0.1)
    for _ in range(3000):
        z = z * 1.0001
    trace = g.backward(z)
    assert float(trace.grad("x")) == pytest.approx(1.0001**3000, rel=1e-9)


def test_layers_on_arrays_point_to_forward():
    with pytest.raises(TypeError, match="use .forward"):
        mp.ReLU()(np.zeros(3))
    g = mp.Graph()
    loss = mp.MSELoss()(g.input("y", [[1.0], [2.0]]))      # its target may come later
    with pytest.raises(mp.StateError, match=r"node 'mseloss1' \(MSELoss\): no target: give it "
                                            r"with g.forward\(inputs, target=y\)"):
        g.backward(loss)
    assert g.forward(target=[[1.0], [1.0]]) == pytest.approx(0.25)


def test_constants_on_either_side_of_every_operator():
    g = mp.Graph()
    x = g.input("x", [1.5, -2.0])
    v = np.array([1.5, -2.0])
    cases = {
        "x+2": (x + 2, v + 2, 1.0), "2+x": (2 + x, 2 + v, 1.0),
        "x-2": (x - 2, v - 2, 1.0), "2-x": (2 - x, 2 - v, -1.0),
        "x*3": (x * 3, v * 3, 3.0), "3*x": (3 * x, 3 * v, 3.0),
        "x/4": (x / 4, v / 4, 0.25), "4/x": (4 / x, 4 / v, -4 / v**2),
        "-x": (-x, -v, -1.0), "x**3": (x**3, v**3, 3 * v**2),
        "arr+x": (np.array([1.0, 2.0]) + x, v + [1.0, 2.0], 1.0),
        "max(x,0)": (mp.maximum(x, 0.0), np.maximum(v, 0), (v > 0) * 1.0),
        "max(0,x)": (mp.maximum(0.0, x), np.maximum(v, 0), (v > 0) * 1.0),
    }
    for label, (node, value, slope) in cases.items():
        trace = g.backward(node)
        np.testing.assert_array_equal(trace.value(node), value, err_msg=label)
        np.testing.assert_allclose(trace.grad("x"), np.broadcast_to(slope, (2,)),
                                   rtol=TOL_KNOWN, err_msg=label)
    # a node exponent (issue 19) needs a positive base: x holds −2
    with pytest.raises(InputValueError, match="a > 0, got -2.0"):
        g.backward(x ** g.input("p", 2.0))


def test_a_shared_batch_one_node_sums_over_the_samples():
    """This once failed because a node of batch 1 (a scalar input) did not combine with a
    batch of B: mp.maximum(x, 0.0) and x * w did not work on batches, nor did w's gradient
    sum over the samples."""
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
    """This once failed because a constant that did not fit its node reached numpy's
    arithmetic and failed there, with numpy's message instead of the node's."""
    g = mp.Graph()
    f = make(g.input("x", [1.0, 2.0]))
    with pytest.raises(mp.ShapeError, match=r"node '\w+' \([^)]*\)+: its constant of shape \(3,\) "
                                            r"does not fit the input's 2 entries per sample"):
        g.backward(f)


def test_an_output_that_is_an_input():
    """This once failed because an output that is itself an input broke the layered view,
    which had no level to pass from, and had no base-case check in verify."""
    g = mp.Graph()
    x = g.input("x", [1.0, 2.0])
    trace = g.backward(x)
    np.testing.assert_array_equal(trace.grad("x"), [1.0, 1.0])
    np.testing.assert_array_equal(trace.layered.node_sum("x"), [[1.0, 1.0]])
    assert mp.verify(g, x).ok


def test_a_seed_of_the_wrong_shape_is_refused_not_reshaped():
    """This once failed because a seed with as many entries as the output but another shape
    was silently reshaped to fit."""
    g = mp.Graph()
    x = g.input("x", np.arange(6.0).reshape(2, 3))
    with pytest.raises(mp.ShapeError, match=r"must have its shape \(2, 3\)"):
        g.backward(x * 1.0, np.arange(6.0).reshape(3, 2))


def test_the_witnesses_read_the_seed_with_the_message_pass_s_parser():
    """This once failed because the graph witnesses had a seed parser of their own that
    reshaped a wrong seed silently while the message pass refused it: verify compared two
    different functions. There is one parser now (msgpass.validate.graph_seed)."""
    from msgpass.witnesses.graph import graph_backprop, graph_numeric
    g = mp.Graph()
    x = g.input("x", np.arange(6.0).reshape(2, 3))
    f = (x * x).named("f")
    wrong, right = np.arange(6.0).reshape(3, 2), np.arange(6.0).reshape(2, 3)
    for witness in (graph_backprop, graph_numeric):
        with pytest.raises(mp.ShapeError, match=r"seed for the output 'f' must have its shape"):
            witness(g, f, seed=wrong)
    np.testing.assert_allclose(graph_backprop(g, f, seed=right).nodes["x"],
                               2 * right * np.arange(6.0).reshape(2, 3), rtol=1e-15)
    with pytest.raises(mp.ShapeError, match=r"must have its shape"):
        mp.verify(g, f, seed=wrong)


def test_an_infinite_derivative_is_an_error_naming_the_input():
    """This once failed because an infinite derivative at an input (√x at 0) came back as an
    inf gradient instead of an error."""
    g = mp.Graph()
    x = g.input("x", [0.0, 1.0])
    with pytest.raises(mp.NonFiniteError, match="→ input 'x' sent non-finite messages: .* is inf"):
        g.backward(x**0.5)


def test_nodes_of_another_graph_are_refused_even_with_a_shared_name():
    """This once failed because nodes were looked up by name, so another graph's node named
    like one of this graph's was silently taken for it."""
    g, h = mp.Graph(), mp.Graph()
    (g.input("x", 1.0) * 2.0).named("f")
    f2 = (h.input("x", 3.0) * 2.0).named("f")
    with pytest.raises(mp.StateError, match="belongs to another graph"):
        g.backward(f2)
    trace = g.backward("f")
    with pytest.raises(mp.StateError, match="belongs to another graph"):
        trace.grad(f2)


def test_trace_values_are_read_only_and_do_not_alias_the_inputs():
    """This once failed because a graph trace's arrays were writable: writing into a value
    changed what the graph computed next."""
    g = mp.Graph()
    x = g.input("x", [1.0, 2.0])
    f = (x * x).named("f")
    trace = g.backward(f)
    with pytest.raises(ValueError, match="read-only"):
        trace.value("x")[0] = 99.0
    assert float(np.sum(g.backward(f).value(f))) == 5.0


def test_an_unused_input_has_gradient_zero_and_bad_keep_is_refused():
    """This once failed because an input that does not reach the output had no gradient at
    all, and a graph took any keep= without complaint."""
    g = mp.Graph()
    x, unused = g.input("x", 2.0), g.input("u", [1.0, 1.0, 1.0])
    f = (x * 3.0).named("f")
    np.testing.assert_array_equal(g.backward(f).grad("u"), [0.0, 0.0, 0.0])
    del unused
    with pytest.raises(ValueError, match="keep must be 'all', 'sums' or a list of nodes"):
        g.backward(f, keep="bogus")


def test_the_graph_module_docstring_example_runs():
    """This once failed because the example printed 1.54563, where the graph gives 1.54564."""
    import msgpass.graph.graph as module
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("value", ["abc", np.array([1 + 1j]), np.array([1.0, np.nan]),
                                   np.zeros((0, 3)), np.ones((1, 3)).astype(object)])
def test_a_refused_value_leaves_no_node_behind(value):
    """This once failed because g.input and g.constant added the node before checking its
    value: after the error the graph held a node with no value, and the name was taken. And
    an object array of floats was refused without naming the node (found by
    tests/test_every_error_is_ours.py)."""
    g = mp.Graph()
    with pytest.raises(mp.MsgpassError, match="value of 'x'"):
        g.input("x", value)
    with pytest.raises(mp.MsgpassError, match="value of 'c'"):
        g.constant(value, name="c")
    assert g.nodes == {}
    assert g.input("x", 1.0).name == "x"
