"""A finished trace, chain or graph, as what its viewers draw: groups of nodes, the links
between them (one message block each), the order in which the links send, and for one view
(a batch sample or the batch mean) the strongest messages of every link with the J and S
they are the product of. ``html.py`` and ``dot.py`` both read this and nothing else of a
trace.

A **group** is a column of nodes with one sum each: z^t of a chain (N_t nodes, flat in C
order for an image), or one node of a graph (its N_v entries). A **link** is one message
block: layer t of a chain, from the N_t senders of z^t to the N_{t-1} receivers of z^{t-1};
the edge u → v of a graph, from v's entries to u's. Its **edges** are the (n, n') pairs its
partials say are edges (``partials.edges()``); a non-edge carries an exact zero and is never
shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import StateError

__all__ = ["Group", "Link", "Extract", "EdgeView", "extract", "check_view", "check_top_k",
           "entry_name"]

MEAN = "mean"


@dataclass(frozen=True)
class Group:
    """A column of nodes that each receive one sum.

    key : str
        Unique name: ``"z{t}"`` in a chain, the node's name in a graph.
    label : str
        What computes it: the layer's label, or a graph op's description ("input" for z^0).
    shape : tuple of int
        Per-sample shape of its value ((C, H, W) for an image); its N nodes are numbered in
        C order.
    column : int
        Where it stands from left (inputs) to right (the output).
    values : ndarray, shape (B_g, N)
        Forward values, B_g = B, or 1 for a graph node shared by every sample.
    sums : ndarray, shape (B_g, N), or None
        S at each node: Σ of its incoming messages (the seed at the output), = ∂L/∂node.
    shared : bool
        Batch 1 in a batch of B > 1 (a graph's scalar input or constant): one node for every
        sample, its sum taken over them.
    """

    key: str
    label: str
    shape: tuple
    column: int
    values: np.ndarray
    sums: np.ndarray | None
    shared: bool = False

    @property
    def size(self) -> int:
        return int(self.values.shape[1])



@dataclass(frozen=True)
class Link:
    """One message block: the senders of ``destination`` send to the receivers of ``source``.

    step : int
        When it sends: 0 for the first block of the backward pass (the loss layer's).
    block : MessageBlock or None
        None when the pass did not keep it.
    arriving : ndarray, shape (B, N_destination)
        S at the senders: what the block's messages are J · S of.
    note : str
        Why its messages cannot be shown per sample ("" when they can).
    """

    key: str
    source: str
    destination: str
    title: str
    label: str
    step: int
    block: object
    arriving: np.ndarray
    note: str = ""


@dataclass(frozen=True)
class EdgeView:
    """The k strongest edges of a link in one view, strongest first (by |δ|, ties by the
    edge's place in C order, so the choice is deterministic).

    source, destination : int ndarray, shape (k,)
        Receiver n (in the source group) and sender n' (in the destination group).
    message, partial, arriving : float ndarray, shape (k,)
        δ, J and S of each edge: δ = J · S for a sample; for the batch mean, each is the mean
        over the samples (and δ̄ is then the mean of the products, not J̄ · S̄).
    total : int
        How many edges the link has.
    in_degree : int ndarray, shape (N_source,)
        How many of the link's edges end at each receiver.
    """

    source: np.ndarray
    destination: np.ndarray
    message: np.ndarray
    partial: np.ndarray | None
    arriving: np.ndarray
    total: int
    in_degree: np.ndarray


@dataclass(frozen=True)
class Extract:
    """A trace as groups and links (see the module docstring).

    kind : "chain" or "graph"
    samples : int ndarray
        The batch indices whose messages the trace kept (every sample unless
        ``keep_samples``); a view is one of them, or ``"mean"``.
    mean : bool
        Whether the batch mean can be shown (every sample kept).
    steps : list of str
        What step s of the backward pass does (s = 0 first); ``links[i].step`` indexes it.
    """

    kind: str
    title: str
    batch: int
    samples: np.ndarray
    mean: bool
    groups: list[Group]
    links: list[Link]
    steps: list[str]
    _edges: dict = field(default_factory=dict, repr=False)

    def group(self, key: str) -> Group:
        for g in self.groups:
            if g.key == key:
                return g
        raise KeyError(f"no group {key!r}; the groups are {[g.key for g in self.groups]}")

    @property
    def output(self) -> str:
        """The group the seed arrives at: it receives a sum but sends to no block."""
        sources = {link.source for link in self.links}
        return [g.key for g in self.groups if g.key not in sources][-1]

    def row(self, group: Group, view: int | str, which: str = "sums") -> np.ndarray | None:
        """A group's sums (or ``which="values"``) in a view: shape (N,); the mean over the
        batch for ``"mean"``; a shared group's one row in every view."""
        data = group.sums if which == "sums" else group.values
        if data is None:
            return None
        if group.shared:
            return data[0]
        if view == MEAN:
            return data.mean(axis=0)
        return data[view]

    def strongest(self, link: Link, views: Sequence[int | str], top_k: int | None
                  ) -> dict:
        """``{view: EdgeView}`` for each of ``views`` (batch sample indices among ``samples``,
        or ``"mean"``): the ``top_k`` edges of largest |δ| (all for None). Empty when the link
        has no per-sample messages (``link.note`` says why). One pass over the block's
        samples, one dense (N_source, N_destination) sample at a time: beside the stored
        block and J's block of the same layout, memory holds one sample's dense messages and
        (views, edges) numbers, never the dense (B, N_source, N_destination)."""
        if link.note:
            return {}
        partials = link.block.partials
        flat, total, in_degree = self.edge_index(link)
        n_out = partials.n_out
        try:            # J on the edges: the messages the partials send when S ≡ 1 (δ is linear
            ones = np.ones(link.arriving.shape, dtype=np.float64)   # in S), kept per sample
            J_block = partials.send(ones, partials.whole(len(ones)))
        except (ValueError, TypeError, NotImplementedError):
            J_block = None
        wanted = {v for v in views if v != MEAN}
        found: dict = {}
        mean_delta = mean_J = None
        rows = self._block_samples(link)
        for row, sample in enumerate(rows):
            # a block of one row in a batch of B (a graph edge between nodes shared by every
            # sample) serves every view
            serves = wanted if sample < 0 else wanted & {int(sample)}
            if not serves and MEAN not in views:
                continue
            delta = _on_edges(partials.sample_view(link.block.values, row), flat)
            J = None if J_block is None else _on_edges(
                partials.sample_view(J_block, max(int(sample), 0) if len(J_block) > 1 else 0),
                flat)
            if MEAN in views:
                mean_delta = delta.copy() if mean_delta is None else mean_delta + delta
                if J is not None:
                    mean_J = J.copy() if mean_J is None else mean_J + J
            for view in serves:
                S = _pick(link.arriving, view)[flat % n_out]
                found[view] = _top(delta, J, S, flat, n_out, top_k, total, in_degree)
        if MEAN in views:
            S = link.arriving.mean(axis=0)[flat % n_out]
            found[MEAN] = _top(mean_delta / len(rows),
                               None if mean_J is None else mean_J / len(rows),
                               S, flat, n_out, top_k, total, in_degree)
        return {v: found[v] for v in views}

    def edge_count(self, link: Link) -> int:
        """How many edges the link has (0 when its messages cannot be shown)."""
        return 0 if link.note else self.edge_index(link)[1]

    def edge_index(self, link: Link):
        """The link's edges as flat indices into (N_source, N_destination), their number and
        each receiver's in-degree (computed once per link)."""
        if link.key not in self._edges:
            edges = np.asarray(link.block.partials.edges(), dtype=bool)
            flat = np.flatnonzero(edges)
            self._edges[link.key] = (flat, len(flat), edges.sum(axis=1).astype(np.int64))
        return self._edges[link.key]

    def _block_samples(self, link: Link) -> np.ndarray:
        """The batch index of each row of a link's block; -1 for the one row of a block
        shared by every sample."""
        samples = link.block.samples
        if samples is not None:
            return np.asarray(samples)
        rows = link.block.values.shape[0]
        return np.full(1, -1) if rows == 1 < self.batch else np.arange(rows)


def _pick(array: np.ndarray, sample) -> np.ndarray:
    """Row ``sample`` of a (B, N) array, its mean for "mean", its one row if shared."""
    if len(array) == 1:
        return array[0]
    return array.mean(axis=0) if sample == MEAN else array[sample]


def _on_edges(dense: np.ndarray, flat: np.ndarray) -> np.ndarray:
    """A sample's dense (N_source, N_destination) block read at the edges, as floats."""
    return np.asarray(np.asarray(dense).reshape(-1)[flat], dtype=np.float64)


def _top(delta, J, S, flat, n_out, top_k, total, in_degree) -> EdgeView:
    """The ``top_k`` edges of largest |δ| (a stable sort: ties keep C order)."""
    order = np.argsort(-np.abs(delta), kind="stable")
    if top_k is not None:
        order = order[:top_k]
    chosen = flat[order]
    return EdgeView(source=chosen // n_out, destination=chosen % n_out, message=delta[order],
                    partial=None if J is None else J[order], arriving=S[order], total=total,
                    in_degree=in_degree)


def check_view(view, ex: Extract) -> int | str:
    """``view`` as a batch index among the kept samples, or ``"mean"``; None is the first
    kept sample (0 unless the trace kept only some); a clear error for anything else."""
    if view is None:
        return int(ex.samples[0])
    if isinstance(view, str):
        if view != MEAN:
            raise ValueError(f"sample must be a batch index or 'mean', got {view!r}")
        if not ex.mean:
            raise StateError(f"the batch mean needs every sample's messages, but the trace "
                             f"kept only samples {ex.samples.tolist()}")
        return view
    if isinstance(view, (bool, np.bool_)) or not isinstance(view, (int, np.integer)):
        raise TypeError(f"sample must be a batch index (int) or 'mean', got {view!r}")
    if int(view) not in set(ex.samples.tolist()):
        kept = (f"0..{ex.batch - 1}" if len(ex.samples) == ex.batch
                else str(ex.samples.tolist()))
        raise IndexError(f"sample {view} is not in the trace: its samples are {kept}")
    return int(view)


def check_top_k(top_k) -> int | None:
    """``top_k`` as a positive int, or None for every edge."""
    if top_k is None:
        return None
    if isinstance(top_k, (bool, np.bool_)) or not isinstance(top_k, (int, np.integer)) \
            or top_k < 1:
        raise ValueError(f"top_k must be a positive int (edges per layer) or None for all, "
                         f"got {top_k!r}")
    return int(top_k)


def entry_name(group: Group, n: int, graph: bool) -> str:
    """How node n of a group is written: ``z1[5]``, ``z1[0,2,3]`` for an image, a graph node
    of one entry by its name alone."""
    if graph and group.size == 1:
        return group.key
    if len(group.shape) > 1:
        return f"{group.key}[{','.join(str(int(i)) for i in np.unravel_index(n, group.shape))}]"
    return f"{group.key}[{n}]"


def extract(trace) -> Extract:
    """The groups and links of a Trace or a GraphTrace (exact and mp numbers as floats).

    Raises
    ------
    TypeError
        For anything else.
    """
    # told apart by what they hold, not by importing their classes: msgpass.trace and
    # msgpass.graph call into this package (to_html, to_dot), so importing them back here
    # would make a cycle
    if all(hasattr(trace, a) for a in ("graph", "order", "blocks", "incoming", "as_floats")):
        return _graph(trace.as_floats())
    if all(hasattr(trace, a) for a in ("labels", "partials", "blocks", "incoming",
                                       "as_floats")):
        return _chain(trace.as_floats())
    raise TypeError(f"expected a msgpass Trace (net.backward()) or GraphTrace "
                    f"(graph.backward(output)), got {type(trace).__name__}")


def _note(block, what: str) -> str:
    """Why a block's messages cannot be shown per sample, or ""."""
    if block is None:
        return f"the messages of {what} were not kept (backward(keep='all') keeps them)"
    if not block.partials.samples_independent:
        return (f"{what} couples the samples: its messages run between (sample, node) pairs, "
                f"so none is shown per sample")
    return ""


def _sup(t: int) -> str:
    """t as superscript digits (a label prints δ³, never a raw δ^3)."""
    return str(t).translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))


def _floats(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _samples(trace) -> tuple[np.ndarray, bool]:
    if trace.kept_samples is not None:
        return np.asarray(trace.kept_samples, dtype=np.int64), False
    return np.arange(trace.batch), True


def _chain(trace) -> Extract:
    T = trace.T
    shapes = list(trace.shapes) or [(v.shape[1],) for v in trace.values]
    groups = []
    for t in range(T + 1):
        label = "input" if t == 0 else trace.labels[t - 1]
        sums = trace.incoming.get(t + 1)
        groups.append(Group(f"z{t}", label, tuple(shapes[t]), t,
                            _floats(trace.values[t]).reshape(trace.batch, -1),
                            None if sums is None else _floats(sums)))
    links = []
    for t in range(T, 0, -1):
        block = trace.blocks.get(t)
        what = f"layer {t} ({trace.labels[t - 1]})"
        links.append(Link(f"layer{t}", f"z{t - 1}", f"z{t}", f"layer {t}", trace.labels[t - 1],
                          T - t, block, _floats(trace.incoming[t + 1]), _note(block, what)))
    steps = [f"layer {t} ({trace.labels[t - 1]}) sends δ{_sup(t)} = J{_sup(t)} · "
             f"S{_sup(t + 1)} to z{t - 1}" for t in range(T, 0, -1)]
    samples, mean = _samples(trace)
    spec = " → ".join(trace.labels)
    return Extract("chain", spec, trace.batch, samples, mean, groups, links, steps)


def _graph(trace) -> Extract:
    graph, order = trace.graph, trace.order
    column: dict[str, int] = {}
    for name in order:                  # longest path from an input: inputs left, output right
        inputs = [u for u in graph.nodes[name].inputs if u in column]
        column[name] = 1 + max((column[u] for u in inputs), default=-1)
    groups = []
    for name in order:
        node = graph.nodes[name]
        value = _floats(trace.values[name])
        sums = trace.incoming.get(name)
        groups.append(Group(name, node.op.describe() if node.op is not None else node.kind,
                            tuple(trace.shapes.get(name) or (value.shape[1],)), column[name],
                            value.reshape(value.shape[0], -1),
                            None if sums is None else _floats(sums).reshape(len(sums), -1),
                            shared=value.shape[0] == 1 < trace.batch))
    senders = [name for name in order if graph.nodes[name].op is not None
               and graph.nodes[name].inputs]
    steps, links = [], []
    for step, name in enumerate(reversed(senders)):
        node = graph.nodes[name]
        steps.append(f"{name} ({node.op.describe()}) sends to {', '.join(node.inputs)}")
        for slot, source in enumerate(node.inputs):
            block = trace.blocks.get((name, slot))
            what = f"the edge {source} → {name}"
            arriving = trace.incoming[name]
            links.append(Link(f"{name}:{slot}", source, name, f"{name} → {source}",
                              node.op.describe(), step, block,
                              _floats(arriving).reshape(len(arriving), -1),
                              _note(block, what)))
    samples, mean = _samples(trace)
    return Extract("graph", f"graph → {trace.output}", trace.batch, samples, mean, groups,
                   links, steps)
