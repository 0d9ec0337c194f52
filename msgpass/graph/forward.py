"""Forward-mode and second-order messages on a graph.

Reverse and forward accumulation are two factorings of one sum over paths: ∂F/∂x_n is the sum,
over every path from x_n to the output, of the product of the partials J[n, n'] along it.
The reverse pass (msgpass.graph.backward) sums it from the output down, one message per edge
``δ = J[n, n']·S_{n'}``. The forward pass sums it from the inputs up: every edge sends the
*tangent message*

    τ_{u→v}[n, n'] = J_{v,u}[n, n'] · ṫ_u[n]            (ṫ_u: the tangent arriving at u)

and every node sums what arrives, ṫ_v[n'] = Σ_n τ[n, n']; the inputs start from the chosen
direction. The output's tangent is the directional derivative of f.

Second order, forward over reverse: the tangent, along a direction v of the inputs, of each
reverse message is ``δ̇ = J̇·S + J·Ṡ``, where J̇ is how the local partial moves (each op's
``tangent_partials``) and Ṡ the tangents of the sums. Summed at the inputs, Ṡ is H·v, the
Hessian of F = Σ seed·f times v.

Every pass reads the local partials a forward run kept (``GraphForward``), with each kind's
own send and receive: no dense N×N block is made for a diagonal edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import numbers
from ..errors import MsgpassError, ShapeError, StateError
from ..validate import as_array
from .backward import graph_backward
from .node import Node

__all__ = ["TangentTrace", "TangentEdge", "tangents_of", "jvp", "hvp", "jacobian"]


@dataclass(frozen=True)
class TangentEdge:
    """The tangent messages on one edge: ``source`` is the ``slot``-th input of
    ``destination``; ``messages`` in the edge's partials' layout for forward messages
    (``InputPartials.push``: (B, N) for a diagonal edge, (B, N_source, N_destination) for a
    dense one)."""

    source: str
    destination: str
    slot: int
    messages: np.ndarray
    partials: object = field(repr=False)

    def dense(self) -> np.ndarray:
        """(B, N_source, N_destination)."""
        return self.partials.push_dense(self.messages)

    def __iter__(self):
        return iter((self.source, self.destination, self.messages))


@dataclass(frozen=True)
class TangentTrace:
    """A finished forward-mode pass (``Graph.jvp``).

    Attributes
    ----------
    output : ndarray
        The directional derivative of f along the tangents, in f's shape.
    edges : list of TangentEdge
        Every edge's tangent messages, in the order they were sent.
    tangents : dict of str to ndarray
        What arrived at every node, (B, N) each (``tangent(node)`` in the node's shape).
    """

    graph: object
    output_name: str
    order: list
    values: dict
    tangents: dict
    edges: list
    shapes: dict
    given: dict

    def tangent(self, node: Node | str) -> np.ndarray:
        """The tangent arriving at ``node``: its directional derivative, in its shape."""
        name = node.name if isinstance(node, Node) else node
        if name not in self.tangents:
            raise KeyError(f"node {name!r} is not on the way to the output "
                           f"{self.output_name!r}")
        return self._natural(name, self.tangents[name])

    def _natural(self, name, array):
        shape = self.graph.natural_shape(self.order, self.values[name], name,
                                         self.shapes.get(name), self.given)
        return np.asarray(array).reshape(shape)

    @property
    def output(self) -> np.ndarray:
        return self.tangent(self.output_name)

    def message_count(self) -> int:
        """How many tangent messages were sent (one per edge and sample)."""
        return sum(e.partials.message_count(len(self.values[e.destination]))
                   for e in self.edges)


def _name(graph, node) -> str:
    if isinstance(node, Node):
        if node.graph is not graph:
            raise StateError(f"node {node.name!r} belongs to another graph")
        return node.name
    graph[node]       # noqa: B018 - a clear KeyError for an unknown name
    return node


def _directions(graph, forward, given: dict, what: str) -> dict[str, np.ndarray]:
    """The user's dict {input: array of the input's shape} as flat (B, N) arrays in each
    input's arithmetic; an input left out has tangent 0."""
    if not isinstance(given, dict):
        raise TypeError(f"{what} is a dict from input names (or nodes) to arrays of the "
                        f"inputs' shapes, got {type(given).__name__}")
    out = {}
    for key, array in given.items():
        name = _name(graph, key)
        if graph.nodes[name].kind != "input":
            raise StateError(f"{what} names {name!r}, which is not an input of the graph "
                             f"(its inputs are {graph.inputs()})")
        if name not in forward.values:
            continue                    # an input that does not reach the output
        value = forward.values[name]
        a = as_array(array, f"the {what} of {name!r}")
        if a.size != value.size:
            raise ShapeError(f"the {what} of {name!r} has shape {a.shape}; the input's value "
                             f"has shape {forward.given.get(name, value.shape)}")
        a = a.reshape(value.shape)
        reference = arithmetic_of(forward)
        out[name] = a.astype(np.float64) if reference is None else \
            numbers.convert_like(reference, a, f"the {what} of {name!r}")
    return out


def arithmetic_of(forward) -> np.ndarray | None:
    """A value in the graph's exact or mp arithmetic, or None for a float graph. A float input
    or constant joins an exact graph as floats, but its tangents (and zeros) must be in the
    graph's arithmetic: a float 0.0 would turn every Fraction it meets into a float."""
    return next((v for v in forward.values.values() if v.dtype == object), None)


def _zeros_like(value: np.ndarray, reference: np.ndarray | None) -> np.ndarray:
    """Zeros shaped like ``value`` in the arithmetic of ``reference`` (``arithmetic_of``)."""
    if reference is None:
        return np.zeros_like(value, dtype=np.float64)
    return np.zeros(value.shape, dtype=object)      # Python int 0: exact in every arithmetic


def tangents_of(graph, forward, start: dict[str, np.ndarray], keep_edges: bool = True):
    """Push tangents from ``start`` (node name → (B, N)) up to the output of ``forward``;
    returns (tangent at every node, the edges' tangent messages)."""
    tangent: dict[str, np.ndarray] = {}
    edges: list[TangentEdge] = []
    reference = arithmetic_of(forward)
    for name in forward.order:
        node = graph.nodes[name]
        value = forward.values[name]
        if name in start:
            tangent[name] = start[name]
            continue
        if node.op is None:
            tangent[name] = _zeros_like(value, reference)
            continue
        arrived = _zeros_like(value, reference)
        for slot, source in enumerate(node.inputs):
            J = forward.partials[name].inputs[slot]
            messages = J.push(tangent[source])          # τ = J[n, n'] · ṫ_source[n]
            if keep_edges:
                edges.append(TangentEdge(source, name, slot, messages, J))
            arrived = arrived + J.push_receive(messages)  # ṫ_v = Σ_n τ
        tangent[name] = np.broadcast_to(arrived, value.shape).copy() \
            if arrived.shape != value.shape else arrived
    return tangent, edges


def _forward(graph, output):
    name = _name(graph, output)
    record = graph.record
    return record if record is not None and record.output == name else \
        graph.run_forward(name)


def jvp(graph, output, tangents: dict) -> TangentTrace:
    """Forward-mode messages (``Graph.jvp``): the directional derivative of ``output`` along
    ``tangents`` (dict from input names to arrays of the inputs' shapes)."""
    forward = _forward(graph, output)
    start = _directions(graph, forward, tangents, "tangent")
    tangent, edges = tangents_of(graph, forward, start)
    return TangentTrace(graph=graph, output_name=forward.output, order=forward.order,
                        values=forward.values, tangents=tangent, edges=edges,
                        shapes=forward.shapes, given=forward.given)


def _send_and_sum(J, incoming: np.ndarray) -> np.ndarray:
    """Σ_{n'} J[n, n']·incoming[n'] at every receiver, with the kind's own send and receive."""
    piece = J.whole(len(incoming))
    messages = J.send(incoming, piece)
    sums = np.zeros((J.receiver_rows(len(incoming)), J.n_in), dtype=messages.dtype)
    J.receive_piece(messages, piece, sums, 0)
    return sums


def hvp(graph, output, vectors: dict, seed=None) -> dict[str, np.ndarray]:
    """H·v by forward-over-reverse messages (``Graph.hvp``)."""
    forward = _forward(graph, output)
    out = forward.output
    start = _directions(graph, forward, vectors, "vector")
    tangent, _ = tangents_of(graph, forward, start, keep_edges=False)
    reverse = graph_backward(graph, out, seed=seed, keep="sums", record=forward)
    S = reverse.incoming
    reference = arithmetic_of(forward)
    # the seed is fixed: nothing moves at the output
    Sdot: dict[str, np.ndarray] = {out: _zeros_like(forward.values[out], reference)}
    for name in reversed(forward.order):
        node = graph.nodes[name]
        if node.op is None:
            continue
        here = Sdot.get(name, _zeros_like(forward.values[name], reference))
        try:
            moved = node.op.tangent_partials(forward.saved[name],
                                             [tangent[s] for s in node.inputs])
        except MsgpassError as err:
            raise type(err)(f"node {name!r}: {err}") from None
        for slot, source in enumerate(node.inputs):
            J = forward.partials[name].inputs[slot]
            part = _send_and_sum(J, here)                         # J · Ṡ
            if moved[slot] is not None:
                part = part + _send_and_sum(moved[slot], S[name])  # J̇ · S
            if len(forward.values[source]) == 1 < len(forward.values[name]):
                part = part.sum(axis=0, keepdims=True)            # a node shared by all
            Sdot[source] = part if source not in Sdot else Sdot[source] + part
    result = {}
    for name in graph.inputs():     # an input that does not reach the output: H·v is 0 there
        if name not in forward.values:
            result[name] = _zeros_like(np.empty(graph.input_shape(name)), reference)
            continue
        value = Sdot.get(name, _zeros_like(forward.values[name], reference))
        shape = graph.natural_shape(forward.order, forward.values[name], name,
                                    forward.shapes.get(name), forward.given)
        result[name] = np.asarray(value).reshape(shape)
    return result


def jacobian(graph, output, wrt=None, mode: str = "auto"):
    """∂f/∂x (``Graph.jacobian``): shape f's shape + x's shape, from reverse passes (one per
    entry of f) or forward passes (one per entry of the inputs), whichever are fewer."""
    if mode not in ("auto", "reverse", "forward"):
        raise ValueError(f"mode must be 'auto', 'reverse' or 'forward', got {mode!r}")
    forward = _forward(graph, output)
    out = forward.output
    single = wrt is not None and isinstance(wrt, (str, Node))
    names = [n for n in forward.order if graph.nodes[n].kind == "input"] if wrt is None else \
        [_name(graph, w) for w in ([wrt] if single else wrt)]
    for name in names:
        if graph.nodes[name].kind != "input":
            raise StateError(f"jacobian is taken with respect to inputs; {name!r} is not one "
                             f"(the inputs are {graph.inputs()})")

    def natural(name, array=None):
        value = forward.values[name]
        return graph.natural_shape(forward.order, value, name, forward.shapes.get(name),
                                   forward.given)

    out_shape = natural(out)
    n_out = int(np.prod(out_shape, dtype=np.int64))
    reached = [n for n in names if n in forward.values]
    n_in = sum(forward.values[n].size for n in reached)
    if mode == "auto":
        mode = "reverse" if n_out <= n_in else "forward"
    value = forward.values[out]
    exact = value.dtype == object
    result = {}
    for name in names:
        in_shape = natural(name) if name in forward.values else graph.input_shape(name)
        result[name] = np.zeros(tuple(out_shape) + tuple(in_shape),
                                dtype=object if exact else np.float64)
        if exact:
            result[name][...] = 0
    if mode == "reverse":
        for e in range(n_out):
            seed = np.zeros(n_out)
            seed[e] = 1
            if exact:
                seed = numbers.convert_like(value, seed, "seed")
            trace = graph_backward(graph, out, seed=seed.reshape(out_shape), keep="sums",
                                   record=forward)
            for name in reached:
                rows = result[name].reshape(n_out, -1)
                rows[e] = np.asarray(trace.incoming[name]).reshape(-1)
    else:
        for name in reached:
            size = forward.values[name].size
            columns = result[name].reshape(n_out, size)
            for i in range(size):
                direction = np.zeros(size)
                direction[i] = 1
                start = _directions(graph, forward, {name: direction}, "tangent")
                tangent, _ = tangents_of(graph, forward, start, keep_edges=False)
                columns[:, i] = np.asarray(tangent[out]).reshape(-1)
    return result[names[0]] if single else result
