"""The backward pass as message passing (DESIGN.md §1), in one short loop.

Node n' of layer t sends to node n of layer t−1 the message

    δ^t_{n←n'} = J^t[n, n'] · S^{t+1}_{n'},      S^{t+1}_{n'} = Σ_{n''} δ^{t+1}_{n'←n''},

its local partial times the sum of what arrived at it from above. Above the loss layer sits
the batch mean L = (1/B) Σ_b ℓ_b, so S^{T+1} = 1/B for every sample (the base case). Each node
sums its incoming messages; parameter gradients are the parameter partials K^t times the sums
arriving at the layer's output nodes.

The same loop serves chains and graphs: it visits the nodes that send in reverse topological
order, and a node with several consumers sums what all of them sent before it sends on (a
chain is the graph whose nodes are z^0 … z^T and whose edges are its layers: ``chain_steps``).

This module knows only structured partials (msgpass.partials) and a sender: how an edge's
messages are cut, kept and summarised is msgpass.streaming's business.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import numpy as np

from .errors import StateError
from .partials import InputPartials, LocalPartials, ParamPartials

__all__ = ["MessageBlock", "MessagePass", "Sender", "Edge", "Step", "chain_steps",
           "pass_messages"]


def available_memory() -> int:
    """Bytes of memory available now (MemAvailable on Linux; the physical memory elsewhere, or
    no limit where neither is known)."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


class Edge(NamedTuple):
    """One edge of the pass: the messages from a node's outputs back to one of its inputs.

    key : hashable
        How the pass names the edge's block: layer index t in a chain, (destination, slot)
        in a graph.
    source : hashable
        The node that receives the messages (the edge's input, in forward terms).
    partials : InputPartials
        J on the edge, (B, N_source, N_node).
    shared : bool
        The source has batch 1 in a batch of B (a scalar input, a constant): shared by
        every sample, it sums what it receives over the samples too.
    """

    key: Hashable
    source: Hashable
    partials: InputPartials
    shared: bool = False


class Step(NamedTuple):
    """A node that sends: its key, its input edges, and K for each of its parameters."""

    node: Hashable
    edges: tuple[Edge, ...]
    params: Mapping[str, ParamPartials]


def chain_steps(partials: Sequence[LocalPartials]) -> list[Step]:
    """A chain as the graph it is: node t is z^t, and layer t is the one edge z^{t-1} → z^t,
    keyed t."""
    return [Step(t, (Edge(t, t - 1, local.inputs),), local.params)
            for t, local in enumerate(partials, 1)]


def pass_messages(steps: Sequence[Step], seed: np.ndarray, send: Sender,
                  output: Hashable | None = None) -> MessagePass:
    """Run the recursion from the output down to the inputs.

    ``steps`` are the nodes that send, in a topological order (a node after its inputs), the
    output last; ``seed`` is what arrives at the output from above (S^{T+1} = 1/B per sample
    over a chain's loss layer); ``send`` sends each edge's messages and says what was kept
    (a Sender, below). Visiting the nodes in reverse, every node has heard from all its
    consumers before it sends on. ``output`` names the output when no node sends (a graph
    whose output is an input).
    """
    incoming = {steps[-1].node if steps else output: seed}     # S at the output
    grads: dict[tuple[Hashable, str], np.ndarray] = {}
    for step in reversed(steps):                               # from the output down
        S = incoming[step.node]                                # Σ of every message to it
        for name, K in step.params.items():
            grads[(step.node, name)] = K.gradient(S)           # ∂L/∂θ = Σ_{n'} K · S
            send.parameter(step.node, name, K, S, grads[(step.node, name)])
        for edge in step.edges:
            summed = send(edge, S)                             # δ = J · S; Σ_{n'} δ
            if edge.shared:                                    # one node for every sample
                summed = summed.sum(axis=0, keepdims=True)
            heard = incoming.get(edge.source)
            incoming[edge.source] = summed if heard is None else heard + summed
    return send.finish(incoming, grads)


class Sender(Protocol):
    """What ``pass_messages`` asks of the code that sends (msgpass.streaming.StreamingSender
    under a byte budget; the dask backend sends its own way)."""

    def __call__(self, edge: Edge, incoming: np.ndarray) -> np.ndarray:
        """Send the edge's messages δ = J · S (``incoming``, S at the edge's node, (B, N))
        and let every receiver sum them; return the sums, (B, N_source)."""

    def parameter(self, node: Hashable, name: str, K: ParamPartials, incoming: np.ndarray,
                  grad: np.ndarray) -> None:
        """See the gradient ``grad`` = K · S of parameter ``name`` of ``node``."""

    def finish(self, incoming: dict[Hashable, np.ndarray],
               grads: dict[tuple[Hashable, str], np.ndarray]) -> MessagePass:
        """The pass's result: the sums at every node, the gradients, and what was kept."""


@dataclass(frozen=True)
class MessageBlock:
    """Every message of layer t: ``δ^t_{n←n'}`` for all samples b, receivers n, senders n'.

    Attributes
    ----------
    t : int, or (str, int) for a graph
        Layer index, 1..T; a graph's edge key, (destination, slot).
    partials : InputPartials
        J^t, the structured partials the block was sent from; says which (n, n') are edges.
    values : ndarray (a dask array for the dask backend's kept blocks)
        The stored messages, of shape ``partials.block_shape(B)``: (B, N_{t-1}, N_t), or
        (B, N) for a diagonal layer whose off-diagonal entries are non-edges carrying exact
        zeros. When only some samples were kept, B is their number and ``samples`` says
        which they are.
    samples : ndarray of int, or None
        The batch indices of the kept rows, in order; None when every sample was kept.
    """

    t: int
    partials: InputPartials
    values: np.ndarray
    samples: np.ndarray | None = None

    @property
    def layout(self) -> InputPartials:
        """The name of ``partials`` before 0.9."""
        return self.partials

    @property
    def kind(self) -> str:
        return self.partials.kind

    @property
    def receivers(self) -> int:
        """N_{t-1}: the nodes n of layer t−1 that receive."""
        return self.partials.n_in

    @property
    def senders(self) -> int:
        """N_t: the nodes n' of layer t that send."""
        return self.partials.n_out

    def dense(self) -> np.ndarray:
        """The block as a dense array of shape (B, N_{t-1}, N_t) (B: the kept samples).
        Refused (StateError, naming its size) when it is larger than the memory available
        now: the structured ``values`` hold the same messages."""
        rows = self.values.shape[0] if self.partials.samples_independent else 1
        size = rows * self.partials.n_in * self.partials.n_out * np.dtype(
            self.partials.dtype).itemsize
        if isinstance(self.values, np.ndarray) and size > available_memory():
            which = f"layer {self.t}" if isinstance(self.t, int) else f"the edge {self.t}"
            raise StateError(
                f"the dense view of {which}'s messages, ({rows}, {self.partials.n_in}, "
                f"{self.partials.n_out}), would take {size:,} bytes, more than the "
                f"{available_memory():,} available; its block holds every message as stored, "
                f"{tuple(self.values.shape)} ({self.values.nbytes:,} bytes): use "
                f"trace.block(t).values (its axes: {', '.join(self.partials.block_dims)})")
        return self.partials.dense_messages(self.values)

    def received(self) -> np.ndarray:
        """What each receiver gets from this block: Σ over its senders, (B, N_{t-1}), summed
        from the block as stored (a diagonal one is never expanded)."""
        return self.partials.receive(np.asarray(self.values))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """``np.asarray(block)``: the dense view, made now (a diagonal block is stored as its
        (B, N) diagonal)."""
        dense = np.asarray(self.dense())
        return dense if dtype is None else dense.astype(dtype)

    def row(self, sample: int) -> int:
        """Where batch sample ``sample`` (negative counts from the end) sits among the kept
        rows. IndexError outside the batch, StateError if the sample was not kept."""
        if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)):
            raise IndexError(f"a sample index must be an integer, got {sample!r}")
        which = f"layer {self.t}" if isinstance(self.t, int) else f"the edge {self.t}"
        if self.samples is None:
            batch = self.values.shape[0]
            if not -batch <= sample < batch:
                raise IndexError(f"sample {sample} is outside the batch of {batch} "
                                 f"(0..{batch - 1}, or negative from the end)")
            return int(sample) % batch
        where = np.flatnonzero(self.samples == sample)
        if where.size == 0:
            raise StateError(f"sample {sample} of {which}'s messages was not kept "
                             f"(kept: {self.samples.tolist()})")
        return int(where[0])


@dataclass(frozen=True)
class MessagePass:
    """What the message pass computed.

    Attributes
    ----------
    blocks : dict of edge key to MessageBlock
        The kept message blocks, by edge key (a chain's layer index t).
    incoming : dict of node key to ndarray
        What arrived at each node, (B, N): a chain's node t−1 hears S^t (node T is given
        the seed S^{T+1} = 1/B, shape (B, 1)).
    grads : dict of (node key, str) to ndarray
        Parameter gradients by (node, parameter name): (t, name) in a chain.
    param_messages : dict of (node key, str) to ndarray
        With ``per_sample=True``: each sample's messages to each parameter, shape
        (B, *parameter shape), summing over b to ``grads``. Empty otherwise.
    stats : dict of int to MessageStats
        With ``stats``: the statistics of every layer's messages (msgpass.stats).
    kept_samples : ndarray of int, or None
        With ``keep_samples``: the batch indices whose blocks and parameter messages were
        kept, in order.
    """

    blocks: dict[int, MessageBlock]
    incoming: dict[int, np.ndarray]
    grads: dict[tuple[int, str], np.ndarray]
    param_messages: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    kept_samples: np.ndarray | None = None
