"""Message passing on a graph, in two views.

DAG view: every edge u → v (u the i-th input of v) carries the block

    δ_{u→v}[n, n'] = J_{v,i}[n, n'] · S_v[n'],      shape (B, N_u, N_v),

where S_v is what has arrived at v: the sum of the messages from all of v's consumers (the
seed, at the output). Nodes are visited in reverse topological order, so a node with several
consumers has heard from all of them before it sends on. A node of batch 1 used by a batch of
B (a scalar input, a constant) is shared by every sample: it sums over the samples too.

Layered view: nodes are grouped into levels by their longest distance from the inputs; a node
needed beyond the next level is carried up by identity pass-throughs, so that every level reads
only the level below. Each level is then one layer z^{ℓ-1} → z^ℓ with a dense (B, N_{ℓ-1}, N_ℓ)
block of local partials, and the chain recursion of seed 004 (msgpass.messages) runs unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import numbers
from ..checks import first_nonfinite
from ..errors import NonFiniteError, ShapeError, StateError
from ..messages import MessageBlock, pass_messages, sum_incoming
from ..partials import Dense, LocalPartials
from .graph import Evaluation, Graph, Node
from .ops import OpPartials

__all__ = ["GraphTrace", "GraphEdge", "LayeredView", "graph_backward", "layered_view"]


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


@dataclass(frozen=True)
class LayeredView:
    """The same graph as a chain of levels.

    Attributes
    ----------
    levels : list of list of (str, bool)
        ``levels[ℓ]``: the nodes making up z^ℓ in order, each with True if it is only a
        pass-through copy of a node from a lower level. Level 0 holds the inputs.
    offsets : list of dict
        ``offsets[ℓ][name] = (start, stop)``: where the node sits in z^ℓ.
    blocks : dict of int to MessageBlock
        The message block of level ℓ ≥ 1, dense (B, N_{ℓ-1}, N_ℓ).
    sums : dict of int to ndarray
        ``sums[ℓ]``: what arrives at the nodes of level ℓ−1, (B, N_{ℓ-1}); sums[L+1] = seed.
    """

    levels: list[list[tuple[str, bool]]]
    offsets: list[dict[str, tuple[int, int]]]
    blocks: dict[int, MessageBlock]
    sums: dict[int, np.ndarray]

    @property
    def depth(self) -> int:
        return len(self.levels) - 1

    def message(self, level: int) -> np.ndarray:
        return self.blocks[level].dense()

    shared: frozenset = frozenset()  # nodes of batch 1 in a batch of B (summed over samples)

    def node_sum(self, name: str) -> np.ndarray:
        """What arrives at ``name`` at its own level (B, N): ∂F/∂(name)."""
        for level, offsets in enumerate(self.offsets):
            if name in offsets and not dict(self.levels[level])[name]:
                start, stop = offsets[name]
                block = self.sums[level + 1][:, start:stop]
                return block.sum(axis=0, keepdims=True) if name in self.shared else block
        raise KeyError(f"no node {name!r} in the layered view")


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
    edges : list of (source, destination, block)
        Every edge with its dense message block (B, N_source, N_destination).
    sums : dict of str to ndarray
        ``sums[v]`` = S_v, everything that arrived at v, (B, N_v) — equal to ∂F/∂v.
    grads : dict of str to ndarray
        Parameter gradients keyed ``"node.name"`` (e.g. ``"affine1.W"``).
    """

    graph: Graph
    output: str
    order: list[str]
    values: dict[str, np.ndarray]
    partials: dict[str, OpPartials]
    edge_list: list[GraphEdge]
    sums: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]
    seed: np.ndarray
    nondifferentiable: dict[str, np.ndarray] = field(default_factory=dict)
    _layered: list = field(default_factory=list)

    @property
    def edges(self) -> list[tuple[str, str, np.ndarray]]:
        """(source name, destination name, dense message block) for every edge."""
        return [(e.source, e.destination, e.dense()) for e in self.edge_list]

    def _name(self, node: Node | str) -> str:
        if isinstance(node, Node) and node.graph is not self.graph:
            raise StateError(f"node {node.name!r} belongs to another graph")
        name = node.name if isinstance(node, Node) else node
        if name not in self.values:
            raise KeyError(f"node {name!r} does not reach the output {self.output!r}")
        return name

    def _natural(self, name: str, array: np.ndarray) -> np.ndarray:
        """An array of a node shaped the way the user thinks of it."""
        return array.reshape(natural_shape(self.graph, self.order, array, name))

    def value(self, node: Node | str) -> np.ndarray:
        """Forward value of any node (inputs in the shape they were given)."""
        name = self._name(node)
        return self._natural(name, self.values[name])

    def incoming(self, node: Node | str) -> np.ndarray:
        """S_v: what arrived at the node, summed: ∂F/∂v, (B, N_v)."""
        return self.sums[self._name(node)]

    def grad(self, node: Node | str) -> np.ndarray:
        """∂F/∂(node), F = Σ seed · output; shaped like the input for an input. An input
        that does not reach the output has gradient zero."""
        name = node.name if isinstance(node, Node) else node
        if (name not in self.values and name in self.graph.nodes
                and self.graph.nodes[name].kind == "input" and name in self.graph._shapes):
            return np.zeros(self.graph.input_shape(name))
        name = self._name(node)
        return self._natural(name, self.sums[name])

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


def _seed_array(seed, value: np.ndarray, output: str, natural: tuple[int, ...]) -> np.ndarray:
    """The seed as a (B, N) array: given in the output's own shape (B, N), or in the shape
    its value is shown in (``natural``); anything else is an error, never a silent reshape."""
    if seed is None and value.dtype == object:   # 1 in the graph's arithmetic (int 1 / 2 is
        return numbers.convert_like(value, np.ones(value.shape), "seed")   # a float)
    if seed is None:
        return np.ones_like(value)
    if value.dtype == object:   # exact or mp: the seed in the same arithmetic
        s = numbers.convert_like(value, np.asarray(seed), "seed")
        if s.shape == value.shape:
            return s
        if s.shape == natural:
            return s.reshape(value.shape)
        raise ShapeError(f"seed for the output {output!r} must have its shape "
                         f"{natural or value.shape}, got {s.shape}")
    s = np.asarray(seed, dtype=float)
    if s.shape == value.shape:
        return s.copy()
    if s.shape == natural:
        return s.reshape(value.shape)
    raise ShapeError(f"seed for the output {output!r} must have its shape {natural or value.shape}"
                     f" (or {value.shape}), got shape {s.shape}")


def natural_shape(graph: Graph, order: list[str], value: np.ndarray,
                  name: str) -> tuple[int, ...]:
    """How a node's (B, N) array is shown: an input in the shape it was given; in a graph
    whose inputs are all scalars or vectors (no batch), () for width 1, (N,) otherwise."""
    if graph.nodes[name].op is None and name in graph._shapes:
        return graph.input_shape(name)
    unbatched = all(len(graph.input_shape(n)) < 2 for n in order
                    if graph.nodes[n].op is None and n in graph._shapes)
    if value.shape[0] == 1 and unbatched:
        return () if value.shape[1] == 1 else (value.shape[1],)
    return value.shape


def graph_backward(graph: Graph, output: Node | str, seed=None, keep: str = "all") -> GraphTrace:
    """The DAG-view message pass (see the module docstring).

    keep : "all" (default) keeps every edge's block; "sums" only the sums and gradients.
    """
    if keep not in ("all", "sums"):
        raise ValueError(f"keep must be 'all' or 'sums' for a graph, got {keep!r}")
    if isinstance(output, Node) and output.graph is not graph:
        raise StateError(f"node {output.name!r} belongs to another graph")
    out = output.name if isinstance(output, Node) else output
    run: Evaluation = graph.evaluate(out)
    with np.errstate(all="ignore"):  # a NaN or Inf is caught below, with the node's name
        partials = {name: graph.nodes[name].op.local_partials(run.saved[name])
                    for name in run.order if graph.nodes[name].op is not None}
    # exact or mp anywhere: every sum starts as an object 0, so a float node's sum does not
    # turn the Fractions that arrive at it into floats (0.0 + Fraction is a float)
    exact = any(v.dtype == object for v in run.values.values())
    arriving = {name: np.zeros(run.values[name].shape,
                               dtype=object if exact else run.values[name].dtype)
                for name in run.order}
    arriving[out] = _seed_array(seed, run.values[out], out,
                                natural_shape(graph, run.order, run.values[out], out))
    edges: list[GraphEdge] = []
    grads: dict[str, np.ndarray] = {}
    whole = slice(None)
    for name in reversed(run.order):
        node = graph.nodes[name]
        if node.op is None:
            continue
        here = arriving[name]  # S_v: every consumer of v has sent already
        where = first_nonfinite(here)
        if where is not None:
            raise NonFiniteError(f"node {name!r}: the sum arriving at entry {where[1]} of "
                                 f"sample {where[0]} is {here[where]}")
        for slot, source in enumerate(node.inputs):
            layout = partials[name].inputs[slot]
            with np.errstate(all="ignore"):
                message = layout.send(here, whole)
            received = sum_incoming(message, layout)
            if arriving[source].shape[0] == 1 < received.shape[0]:  # shared by every sample
                received = received.sum(axis=0, keepdims=True)
            arriving[source] = arriving[source] + received
            if keep == "all":
                message.flags.writeable = False
                edges.append(GraphEdge(source, name, slot, MessageBlock(0, layout, message)))
        for pname, param_partials in partials[name].params.items():
            grads[f"{name}.{pname}"] = _finite(param_partials.gradient(here),
                                               f"the gradient of parameter {pname} of {name!r}")
    for name in run.order:
        if graph.nodes[name].op is None:
            _finite(arriving[name], f"the sum arriving at input {name!r}")
    kinks = {}
    for name in run.order:
        op = graph.nodes[name].op
        mask = None if op is None else op.nondifferentiable(run.saved[name])
        if mask is not None and np.any(mask):
            kinks[name] = mask
    for table in (run.values, arriving, grads):
        for array in table.values():
            array.flags.writeable = False  # a trace is a record of this pass
    return GraphTrace(graph=graph, output=out, order=run.order, values=run.values,
                      partials=partials, edge_list=edges, sums=arriving, grads=grads,
                      seed=arriving[out], nondifferentiable=kinks)


def _finite(array: np.ndarray, what: str) -> np.ndarray:
    where = first_nonfinite(array)
    if where is not None:
        raise NonFiniteError(f"{what} is {array[where]} at index {where}: a local partial is "
                             f"infinite or undefined there")
    return array


def levels_of(graph: Graph, order: list[str]) -> dict[str, int]:
    """Longest distance of each node from a source (inputs and constants are level 0)."""
    level: dict[str, int] = {}
    for name in order:
        inputs = graph.nodes[name].inputs
        level[name] = 1 + max(level[i] for i in inputs) if inputs else 0
    return level


def layered_view(trace: GraphTrace) -> LayeredView:
    """Group the nodes into levels, carry skip edges up with identities, and run the chain
    message recursion level by level (msgpass.messages.pass_messages)."""
    graph, order = trace.graph, trace.order
    level = levels_of(graph, order)
    top = level[trace.output]
    last_use = {name: level[name] for name in order}
    for name in order:
        for source in graph.nodes[name].inputs:
            last_use[source] = max(last_use[source], level[name])
    levels: list[list[tuple[str, bool]]] = []
    offsets: list[dict[str, tuple[int, int]]] = []
    for lv in range(top + 1):
        members = [(n, False) for n in order if level[n] == lv]
        members += [(n, True) for n in order if level[n] < lv and last_use[n] > lv]
        spans, start = {}, 0
        for name, _ in members:
            width = trace.values[name].shape[1]
            spans[name] = (start, start + width)
            start += width
        levels.append(members)
        offsets.append(spans)
    batch = max(v.shape[0] for v in trace.values.values())
    shared = frozenset(n for n, v in trace.values.items() if v.shape[0] < batch)
    if top == 0:  # the output is an input: nothing to pass
        return LayeredView(levels=levels, offsets=offsets, blocks={},
                           sums={1: np.broadcast_to(trace.seed, (batch, trace.seed.shape[1]))},
                           shared=shared)
    chain = []
    for lv in range(1, top + 1):
        below, here = offsets[lv - 1], offsets[lv]
        jac = np.zeros((batch, list(below.values())[-1][1], list(here.values())[-1][1]),
                       dtype=trace.seed.dtype)   # object for exact or mp graphs
        for name, carried in levels[lv]:
            c0, c1 = here[name]
            if carried:  # identity from its own entry one level down
                r0, r1 = below[name]
                jac[:, np.arange(r0, r1), np.arange(c0, c1)] = 1   # int: exact stays exact
                continue
            for slot, source in enumerate(graph.nodes[name].inputs):
                r0, r1 = below[source]
                jac[:, r0:r1, c0:c1] += trace.partials[name].inputs[slot].dense()
        chain.append(LocalPartials(Dense(jac)))
    seed = np.broadcast_to(trace.seed, (batch, trace.seed.shape[1]))
    result = pass_messages(chain, batch=batch, seed=seed)
    return LayeredView(levels=levels, offsets=offsets, blocks=result.blocks,
                       sums=result.incoming, shared=shared)
