"""Random DAGs: random node types, fan-out up to 4, skip edges, inputs broadcast in width or
shared across the batch. The DAG view, the layered view
and standard backprop give the same gradients (≤ 1e-12, float64, relative to each entry's path
magnitude); on smaller ones, verify's numerical and path-sum witnesses agree too."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import msgpass as mp
from msgpass.verification.compare import TOL_F64_BACKPROP, compare
from msgpass.verification.roundoff import graph_path_magnitudes
from msgpass.witnesses.graph import graph_backprop

MAX_FAN_OUT = 4
# Each builder makes one node (or a small safe composite) from its operands.
UNARY = {
    "sigmoid": mp.sigmoid, "tanh": mp.tanh, "relu": mp.relu,
    "exp": lambda a: mp.exp(mp.tanh(a)),              # bounded, so never overflows
    "log": lambda a: mp.log(a * a + 1.0),             # argument ≥ 1
    "pow": lambda a: a**2, "neg": lambda a: -a, "scale": lambda a: 0.5 * a + 1,
    "copy": lambda a: mp.copy(a, 2)[0],
}
BINARY = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "max": mp.maximum, "div": lambda a, b: a / (b * b + 1.0),
}


@st.composite
def dags(draw, max_nodes=20):
    g = mp.Graph()
    width, batch = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    # Inputs of the full shape, or of width 1 / batch 1 (broadcast, shared by every sample).
    shapes = [(batch, width)] + [(draw(st.sampled_from([1, batch])),
                                  draw(st.sampled_from([1, width])))
                                 for _ in range(draw(st.integers(0, 2)))]
    nodes = [g.input(f"x{i}", rng.standard_normal(shape)) for i, shape in enumerate(shapes)]
    uses = [0] * len(nodes)

    def pick():
        free = [i for i, u in enumerate(uses) if u < MAX_FAN_OUT]
        i = free[draw(st.integers(0, len(free) - 1))]
        uses[i] += 1
        return nodes[i]

    for _ in range(draw(st.integers(1, max_nodes))):
        if draw(st.booleans()):
            node = UNARY[draw(st.sampled_from(sorted(UNARY)))](pick())
        else:
            node = BINARY[draw(st.sampled_from(sorted(BINARY)))](pick(), pick())
        nodes.append(node)
        uses.append(0)
    return g, nodes[-1]


@given(dags())
@settings(max_examples=150)
def test_dag_view_layered_view_and_backprop_agree(case):
    g, output = case
    trace = g.backward(output)
    ref = graph_backprop(g, output)
    layered = trace.layered
    sums_m, grads_m = graph_path_magnitudes(trace)
    for name in trace.order:
        for other, label in ((ref.nodes[name], "backprop"), (layered.node_sum(name), "layered")):
            res = compare(trace.incoming(name), other, TOL_F64_BACKPROP, magnitude=sums_m[name])
            assert res.ok, f"{label} at {name}: {res}"


@given(dags(max_nodes=6))
@settings(max_examples=30)
@pytest.mark.claim("C3.1")
def test_verify_holds_on_random_dags(case):
    g, output = case
    report = mp.verify(g, output)
    assert report.ok, str(report)
