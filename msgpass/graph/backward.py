"""Message passing on a graph (the DAG view; msgpass.graph.layered has the layered one).

Every edge u → v (u the i-th input of v) carries the block

    δ_{u→v}[n, n'] = J_{v,i}[n, n'] · S_v[n'],      shape (B, N_u, N_v),

where S_v is what has arrived at v: the sum of the messages from all of v's consumers (the
seed, at the output). Nodes are visited in reverse topological order, so a node with several
consumers has heard from all of them before it sends on. A node of batch 1 used by a batch of
B (a scalar input, a constant) is shared by every sample: it sums over the samples too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import NonFiniteError, StateError
from ..messages import MessageBlock
from ..validate import first_nonfinite, graph_seed
from .layered import LayeredView, layered_view
from .node import Node
from .ops import OpPartials

__all__ = ["GraphTrace", "GraphEdge", "GraphIncoming", "graph_backward"]


@dataclass(frozen=True)
class GraphEdge:
    """The messages on one edge: ``source`` is the ``slot``-th input of ``destination``."""

    source: str
    destination: str
    slot: int
    block: MessageBlock

    def dense(self) -> np.ndarray:
        """(B, N_source, N_destination)."""
        return self.block.dense()


class GraphIncoming(dict):
    """S_v by node name: a dict, and callable as ``incoming(node)`` with a node or its name
    (a KeyError naming the output for a node that does not reach it)."""

    def __init__(self, values, trace_output: str, graph) -> None:
        super().__init__(values)
        self._output, self._graph = trace_output, graph

    def __call__(self, node: Node | str) -> np.ndarray:
        if isinstance(node, Node) and node.graph is not self._graph:
            raise StateError(f"node {node.name!r} belongs to another graph")
        name = node.name if isinstance(node, Node) else node
        if name not in self:
            raise KeyError(f"node {name!r} does not reach the output {self._output!r}")
        return self[name]


@dataclass(frozen=True)
class GraphTrace:
    """A finished message pass on a graph.

    Attributes
    ----------
    output : str
    order : list of str
        The nodes that reach the output, in topological order.
    values : dict of str to ndarray
        Forward values, (B, N) each.
    partials : dict of str to OpPartials
    edge_list : list of GraphEdge
        Every edge with its message block; ``edges`` gives (source, destination, dense block
        (B, N_source, N_destination)).
    incoming : GraphIncoming (dict of str to ndarray)
        ``incoming(v)`` = S_v, everything that arrived at v, (B, N_v), equal to ∂F/∂v.
    grads : dict of str to ndarray
        Parameter gradients keyed ``"node.name"`` (e.g. ``"affine1.W"``).
    seed : ndarray
        What arrived at the output from above.
    """

    graph: object
    output: str
    order: list[str]
    values: dict[str, np.ndarray]
    partials: dict[str, OpPartials]
    edge_list: list[GraphEdge]
    incoming: GraphIncoming
    grads: dict[str, np.ndarray]
    seed: np.ndarray
    nondifferentiable: dict[str, np.ndarray] = field(default_factory=dict)
    _layered: list = field(default_factory=list)

    @property
    def sums(self) -> GraphIncoming:
        """The name of ``incoming`` before 0.9."""
        return self.incoming

    @property
    def edges(self) -> list[tuple[str, str, np.ndarray]]:
        """(source name, destination name, dense message block) for every edge."""
        return [(e.source, e.destination, e.dense()) for e in self.edge_list]

    def _name(self, node: Node | str) -> str:
        self.incoming(node)          # refuses another graph's node, and one not reaching f
        return node.name if isinstance(node, Node) else node

    def _natural(self, name: str, array: np.ndarray) -> np.ndarray:
        """An array of a node shaped the way the user thinks of it."""
        return array.reshape(self.graph.natural_shape(self.order, array, name))

    def value(self, node: Node | str) -> np.ndarray:
        """Forward value of any node (inputs in the shape they were given)."""
        name = self._name(node)
        return self._natural(name, self.values[name])

    def grad(self, node: Node | str) -> np.ndarray:
        """∂F/∂(node), F = Σ seed · output; shaped like the input for an input. An input
        that does not reach the output has gradient zero."""
        name = node.name if isinstance(node, Node) else node
        if (name not in self.values and name in self.graph.nodes
                and self.graph.nodes[name].kind == "input" and name in self.graph._shapes):
            return np.zeros(self.graph.input_shape(name))
        name = self._name(node)
        return self._natural(name, self.incoming[name])

    def message(self, source: str, destination: str, slot: int | None = None) -> np.ndarray:
        """The dense block on the edge source → destination."""
        found = [e for e in self.edge_list if e.source == source and e.destination == destination
                 and (slot is None or e.slot == slot)]
        if not found:
            raise KeyError(f"no edge {source!r} → {destination!r}")
        if len(found) > 1:
            raise KeyError(f"{source!r} enters {destination!r} {len(found)} times; give slot=")
        return found[0].dense()

    @property
    def layered(self) -> LayeredView:
        """The layered view of the same pass (computed on first use)."""
        if not self._layered:
            self._layered.append(layered_view(self))
        return self._layered[0]


def graph_backward(graph, output: Node | str, seed=None, keep: str = "all") -> GraphTrace:
    """The DAG-view message pass (see the module docstring) on a Graph.

    keep : "all" (default) keeps every edge's block; "sums" only the sums and gradients.
    """
    if keep not in ("all", "sums"):
        raise ValueError(f"keep must be 'all' or 'sums' for a graph, got {keep!r}")
    if isinstance(output, Node) and output.graph is not graph:
        raise StateError(f"node {output.name!r} belongs to another graph")
    out = output.name if isinstance(output, Node) else output
    run = graph.evaluate(out)
    with np.errstate(all="ignore"):  # a NaN or Inf is caught below, with the node's name
        partials = {name: graph.nodes[name].op.local_partials(run.saved[name])
                    for name in run.order if graph.nodes[name].op is not None}
    # exact or mp anywhere: every sum starts as an object 0, so a float node's sum does not
    # turn the Fractions that arrive at it into floats (0.0 + Fraction is a float)
    exact = any(v.dtype == object for v in run.values.values())
    incoming = {name: np.zeros(run.values[name].shape,
                               dtype=object if exact else run.values[name].dtype)
                for name in run.order}
    incoming[out] = graph_seed(seed, run.values[out], out,
                               graph.natural_shape(run.order, run.values[out], out))
    edges: list[GraphEdge] = []
    grads: dict[str, np.ndarray] = {}
    for name in reversed(run.order):
        node = graph.nodes[name]
        if node.op is None:
            continue
        S = incoming[name]  # S_v: every consumer of v has sent already
        where = first_nonfinite(S)
        if where is not None:
            raise NonFiniteError(f"node {name!r}: the sum arriving at entry {where[1]} of "
                                 f"sample {where[0]} is {S[where]}")
        for slot, source in enumerate(node.inputs):
            J = partials[name].inputs[slot]
            with np.errstate(all="ignore"):
                message = J.send(S, J.whole(len(S)))          # δ_{u→v} = J_{v,u} · S_v
            summed = J.receive(message)                      # Σ over v's nodes, at u's
            if incoming[source].shape[0] == 1 < summed.shape[0]:  # shared by every sample
                summed = summed.sum(axis=0, keepdims=True)
            incoming[source] = incoming[source] + summed
            if keep == "all":
                message.flags.writeable = False
                edges.append(GraphEdge(source, name, slot, MessageBlock(0, J, message)))
        for pname, K in partials[name].params.items():
            grads[f"{name}.{pname}"] = _finite(K.gradient(S),
                                               f"the gradient of parameter {pname} of {name!r}")
    for name in run.order:
        if graph.nodes[name].op is None:
            _finite(incoming[name], f"the sum arriving at input {name!r}")
    kinks = {}
    for name in run.order:
        op = graph.nodes[name].op
        mask = None if op is None else op.nondifferentiable(run.saved[name])
        if mask is not None and np.any(mask):
            kinks[name] = mask
    for table in (run.values, incoming, grads):
        for array in table.values():
            array.flags.writeable = False  # a trace is a record of this pass
    return GraphTrace(graph=graph, output=out, order=run.order, values=run.values,
                      partials=partials, edge_list=edges,
                      incoming=GraphIncoming(incoming, out, graph), grads=grads,
                      seed=incoming[out], nondifferentiable=kinks)


def _finite(array: np.ndarray, what: str) -> np.ndarray:
    where = first_nonfinite(array)
    if where is not None:
        raise NonFiniteError(f"{what} is {array[where]} at index {where}: a local partial is "
                             f"infinite or undefined there")
    return array
