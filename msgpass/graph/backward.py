"""Message passing on a graph (the DAG view; msgpass.graph.layered has the layered one).

Every edge u → v (u the i-th input of v) carries the block

    δ_{u→v}[n, n'] = J_{v,i}[n, n'] · S_v[n'],      shape (B, N_u, N_v),

where S_v is what has arrived at v: the sum of the messages from all of v's consumers (the
seed, at the output). Nodes are visited in reverse topological order, so a node with several
consumers has heard from all of them before it sends on. A node of batch 1 used by a batch of
B (a scalar input, a constant) is shared by every sample: it sums over the samples too.

The pass is the chain's (msgpass.engine): every edge streamed under the byte budget, with
every option of ``Sequential.backward``. Blocks stay structured: an elementwise edge keeps its
(B, N) diagonal, and its dense view is made only when asked for.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..engine import run
from ..errors import StateError
from ..messages import Edge, MessageBlock, Step
from ..naming import internal_keys, shown_all
from ..stats import Statistics
from ..streaming import DEFAULT_BUDGET_BYTES, DEFAULT_CHUNK_BYTES
from ..trace import EXTENSIONS
from ..validate import graph_seed
from .layered import LayeredView, layered_view
from .node import Node
from .ops import OpPartials

__all__ = ["GraphTrace", "GraphEdge", "GraphIncoming", "graph_backward", "block_variable"]


@dataclass(frozen=True)
class GraphEdge:
    """The messages on one edge: ``source`` is the ``slot``-th input of ``destination``.

    Unpacks as ``source, destination, block``: the block is structured (a diagonal edge keeps
    its (B, N) diagonal); ``dense()`` or ``np.asarray(block)`` gives (B, N_source,
    N_destination).
    """

    source: str
    destination: str
    slot: int
    block: MessageBlock

    def dense(self) -> np.ndarray:
        """(B, N_source, N_destination)."""
        return self.block.dense()

    def __iter__(self):
        return iter((self.source, self.destination, self.block))

    def __getitem__(self, index):
        return (self.source, self.destination, self.block)[index]

    def __len__(self) -> int:
        return 3


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
        Forward values, (B, N) each (N in C order for a node of another per-sample shape,
        ``shapes``; ``value(node)`` gives it in that shape).
    partials : dict of str to OpPartials
    blocks : dict of (str, int) to MessageBlock
        The kept message blocks, by (destination, slot): the edge from the slot-th input of
        the destination. Structured; ``edges`` lists them as GraphEdge (source, destination,
        block), each with a lazy dense view (B, N_source, N_destination).
    incoming : GraphIncoming (dict of str to ndarray)
        ``incoming(v)`` = S_v, everything that arrived at v, (B, N_v), equal to ∂F/∂v.
    grads : dict of str to ndarray
        Parameter gradients keyed ``"node.name"`` (e.g. ``"affine1.W"``).
    seed : ndarray
        What arrived at the output from above.
    nondifferentiable : dict of str to bool ndarray
        Nodes computed at a point without a derivative, with the mask of those entries.
    shapes : dict of str to tuple
        Each node's per-sample shape ((C, H, W) for an image).
    given : dict of str to tuple
        The shape each input was given in, for this pass (a later ``set`` or ``forward``
        does not change how this trace shows its arrays).
    param_messages, stats, kept_samples
        As a chain trace's (``backward(per_sample=True)``: by "node.name"; ``stats``: by
        (destination, slot)).
    """

    graph: object
    output: str
    order: list[str]
    values: dict[str, np.ndarray]
    partials: dict[str, OpPartials]
    blocks: dict[tuple[str, int], MessageBlock]
    incoming: GraphIncoming
    grads: dict[str, np.ndarray]
    seed: np.ndarray
    nondifferentiable: dict[str, np.ndarray] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    given: dict[str, tuple[int, ...]] = field(default_factory=dict)
    param_messages: dict[str, np.ndarray] = field(default_factory=dict)
    stats: dict = field(default_factory=Statistics)
    kept_samples: np.ndarray | None = None
    _layered: list = field(default_factory=list)

    def __post_init__(self):
        object.__setattr__(self, "stats", Statistics(self.stats))

    @property
    def sums(self) -> GraphIncoming:
        """The name of ``incoming`` before 0.9."""
        return self.incoming

    @property
    def batch(self) -> int:
        return max(v.shape[0] for v in self.values.values())

    @property
    def edge_list(self) -> list[GraphEdge]:
        """Every kept edge with its block, in the order the messages were sent."""
        return [GraphEdge(self.graph.nodes[v].inputs[slot], v, slot, block)
                for (v, slot), block in self.blocks.items()]

    @property
    def edges(self) -> list[GraphEdge]:
        """Every kept edge, unpacking as (source name, destination name, structured block)."""
        return self.edge_list

    def to_xarray(self):
        """This trace as an ``xarray.Dataset`` (optional extra ``msgpass[scale]``)."""
        return EXTENSIONS["to_xarray"](self)

    def save(self, path, chunk_samples: int = 256):
        """Write this trace as a zarr store (optional extra ``msgpass[scale]``); read it back
        with ``mp.load_trace``."""
        return EXTENSIONS["save"](self, path, chunk_samples)

    # -- seeing it (msgpass.view plugs these in; no matplotlib until a diagram is drawn) -----
    def to_html(self, path, **options):
        """Write an interactive, self-contained HTML explorer of this trace to ``path`` (no
        network access): step through the backward pass, click an edge for δ = J · S, a node
        for its incoming messages and their sum. Options: msgpass.view.html.write_html."""
        return EXTENSIONS["to_html"](self, path, **options)

    def to_dot(self, **options) -> str:
        """This trace as Graphviz DOT text: messages as edge labels, sums at the nodes (no
        Graphviz needed; rendering it is up to you). Options: msgpass.view.dot.to_dot."""
        return EXTENSIONS["to_dot"](self, **options)

    def _repr_html_(self) -> str:
        """Jupyter's display: a summary and the diagram."""
        return EXTENSIONS["trace_html"](self)

    def as_floats(self) -> GraphTrace:
        """The same trace with exact or mp numbers rounded to float64."""
        if all(v.dtype != object for v in self.values.values()):
            return self

        def f(a):
            return np.asarray(a, dtype=object).astype(np.float64)
        return GraphTrace(
            graph=self.graph, output=self.output, order=self.order,
            values={k: f(v) for k, v in self.values.items()}, partials=self.partials,
            blocks={k: MessageBlock(b.t, b.partials, f(b.values), b.samples)
                    for k, b in self.blocks.items()},
            incoming=GraphIncoming({k: f(v) for k, v in self.incoming.items()}, self.output,
                                   self.graph),
            grads={k: f(g) for k, g in self.grads.items()}, seed=f(self.seed),
            nondifferentiable=self.nondifferentiable, shapes=self.shapes, given=self.given,
            param_messages={k: f(m) for k, m in self.param_messages.items()},
            stats=self.stats, kept_samples=self.kept_samples)

    def per_sample_grads(self) -> dict[str, np.ndarray]:
        """Each sample's message to each parameter ("node.name" -> (B, *parameter shape);
        with ``keep_samples``, the rows are those samples): with the default seed (ones),
        ∂F_b/∂θ for every sample b (with ``seed="mean"``, 1/B of it). Needs
        ``backward(per_sample=True)``."""
        if not self.param_messages and self.grads:
            raise StateError("this trace has no per-sample parameter messages; call "
                             "g.backward(..., per_sample=True)")
        graph, batch = self.graph, self.batch
        inside = internal_keys(getattr(graph, "param_names", None))

        def holder(key: str) -> str:       # the node a parameter key (as shown) belongs to
            return inside.get(key, key).rsplit(".", 1)[0]
        shared = sorted(key for key in self.param_messages
                        if self.values[holder(key)].shape[0] < batch)
        if shared:
            raise StateError(f"{', '.join(shared)} belong to a node shared by every sample "
                             f"(batch 1): its messages to them are summed over the samples "
                             f"already, not per-sample gradients")
        for name in self.order:   # a node coupling the samples mixes them for all below it
            partials = self.partials.get(name)
            if partials is None or all(J.samples_independent for J in partials.inputs):
                continue
            above = set(graph.order(name)) - {name}      # its own parameters are per sample
            below = sorted(key for key in self.param_messages if holder(key) in above)
            if below:
                raise StateError(f"node {name!r} couples the samples, so what reaches the "
                                 f"parameters below it ({', '.join(below)}) mixes every "
                                 f"sample's output: their per-sample messages are not "
                                 f"per-sample gradients")
        return dict(self.param_messages)

    def _name(self, node: Node | str) -> str:
        self.incoming(node)          # refuses another graph's node, and one not reaching f
        return node.name if isinstance(node, Node) else node

    def _natural(self, name: str, array: np.ndarray) -> np.ndarray:
        """An array of a node shaped the way the user thinks of it."""
        return array.reshape(self.graph.natural_shape(self.order, array, name,
                                                      self.shapes.get(name), self.given))

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
        """The dense block on the edge source → destination (made now, from the stored
        one)."""
        found = [e for e in self.edge_list if e.source == source and e.destination == destination
                 and (slot is None or e.slot == slot)]
        if not found:
            node = self.graph.nodes.get(destination)
            if node is not None and source in node.inputs and destination in self.order:
                kept = sorted({w for w, _ in self.blocks}) or "none"
                raise StateError(f"the messages of {source!r} → {destination!r} were computed "
                                 f"but not kept (kept: the edges into {kept}); call "
                                 f"g.backward(output, keep='all') or keep=[{destination!r}]")
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


def block_variable(key: tuple[str, int], J, source: str) -> tuple[str, tuple[str, ...]]:
    """The name of edge ``key``'s message block in a labelled trace or store, and the names
    of its axes after the rows: a node's entries are the dimension ``n:{node}``, so that a
    dense block is (n:{source}, n:{destination}) and a diagonal one (n:{destination})."""
    destination, slot = key
    by_role = {"src": f"n:{source}", "dst": f"n:{destination}", "node": f"n:{destination}"}
    return (f"message:{destination}:{slot}",
            tuple(by_role.get(d, f"{d}:{destination}:{slot}") for d in J.block_dims))


def _wanted(keep, graph, order: list[str]) -> str | set:
    """``keep`` as the engine takes it: "all", "sums", or the keys of the edges whose
    messages the named nodes send (every edge from a node back to its inputs)."""
    if isinstance(keep, str) and keep in ("all", "sums"):
        return keep
    if isinstance(keep, (str, bytes, Node)) or not isinstance(keep, Iterable):
        raise ValueError(f"keep must be 'all', 'sums' or a list of nodes (or node names), got "
                         f"{keep!r}")
    names = []
    for item in keep:
        if isinstance(item, Node) and item.graph is not graph:
            raise StateError(f"node {item.name!r} belongs to another graph")
        name = item.name if isinstance(item, Node) else item
        if not isinstance(name, str) or name not in order:
            raise ValueError(f"keep names {item!r}, which is not a node reaching the output; "
                             f"the nodes are {order}")
        if not graph.nodes[name].inputs:
            raise ValueError(f"keep names {name!r}, a node without inputs: it sends no "
                             f"messages (it receives them); name the nodes that read it")
        names.append(name)
    return {(name, slot) for name in names for slot in range(len(graph.nodes[name].inputs))}


def graph_backward(graph, output: Node | str, seed=None, keep="all", *, record=None,
                   budget_bytes: int = DEFAULT_BUDGET_BYTES, keep_samples=None,
                   per_sample: bool = False, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                   backend: str = "memory", chunk_samples: int = 256, stats=False,
                   store=None) -> GraphTrace:
    """The DAG-view message pass (see the module docstring) on a Graph; the options are
    Sequential.backward's (Graph.backward documents them). ``record`` is a forward of this
    output kept by ``Graph.forward`` (its values and partials); without it the graph is
    evaluated now."""
    if isinstance(output, Node) and output.graph is not graph:
        raise StateError(f"node {output.name!r} belongs to another graph")
    if seed is None:       # an imported model's loss: the batch mean's gradient, as torch's
        seed = getattr(graph, "default_seed", None)
    out = output.name if isinstance(output, Node) else output
    forward = record if record is not None else graph.run_forward(out)
    order, values = forward.order, forward.values
    value = values[out]
    seed = graph_seed(seed, value, out, graph.natural_shape(order, value, out,
                                                            forward.shapes.get(out),
                                                            forward.given))
    where: dict = {}
    steps = []
    for name in order:
        op = graph.nodes[name].op
        if op is None:
            continue
        where[name] = f"node {name!r} ({op.describe()})"
        edges = []
        for slot, source in enumerate(graph.nodes[name].inputs):
            where[(name, slot)] = f"node {name!r} ({op.describe()}) → input {source!r}"
            edges.append(Edge((name, slot), source, forward.partials[name].inputs[slot],
                              shared=values[source].shape[0] == 1 < values[name].shape[0]))
        steps.append(Step(name, tuple(edges), forward.partials[name].params))
    wanted = _wanted(keep, graph, order)

    def trace_of(result):
        return _trace(graph, out, forward, seed, result)
    batch = max(v.shape[0] for v in values.values())
    stored = {}   # how a store names each edge's block: only when there is a store
    for step in steps if store is not None else ():
        rows = values[step.node].shape[0]    # 1 for a node shared by every sample
        for e in step.edges:
            stored[e.key] = (*block_variable(e.key, e.partials, e.source), rows,
                             "sample" if rows == batch else "one")
    result = run(backend, steps, seed, where, keep=wanted, budget_bytes=budget_bytes,
                 chunk_bytes=chunk_bytes, keep_samples=keep_samples, per_sample=per_sample,
                 stats=stats, store=store, chunk_samples=chunk_samples, numbers=None,
                 trace_of=trace_of, store_names=stored, output=out)
    return trace_of(result)


def _trace(graph, out: str, forward, seed: np.ndarray, result) -> GraphTrace:
    """The GraphTrace of a finished pass."""
    names = getattr(graph, "param_names", None)      # an imported model's (naming)
    grads = shown_all(names, {f"{node}.{name}": g for (node, name), g in result.grads.items()})
    for array in (*forward.values.values(), *grads.values()):  # (the senders mark the sums)
        array.flags.writeable = False  # a trace is a record of this pass
    return GraphTrace(
        graph=graph, output=out, order=forward.order, values=forward.values,
        partials=forward.partials, blocks=dict(result.blocks),
        incoming=GraphIncoming(result.incoming, out, graph), grads=grads, seed=seed,
        nondifferentiable=forward.kinks, shapes=forward.shapes, given=forward.given,
        param_messages=shown_all(names, {f"{node}.{name}": m for (node, name), m
                                         in result.param_messages.items()}),
        stats=result.stats, kept_samples=result.kept_samples)
