"""The layered view of a graph: the same message pass as a chain of levels.

Nodes are grouped into levels by their longest distance from the inputs; a node needed beyond
the next level is carried up by identity pass-throughs, so that every level reads only the
level below. Each level is then one layer z^{ℓ-1} → z^ℓ whose local partials are the nodes'
own, placed as blocks (msgpass.partials.Blocks: a diagonal stays a diagonal), and the chain
recursion of seed 004 (msgpass.messages) runs unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import StateError
from ..messages import MessageBlock, chain_steps, pass_messages
from ..partials import Blocks, Contracted, Diagonal, LocalPartials, Part
from ..streaming import StreamingSender

__all__ = ["LayeredView", "layered_view", "levels_of"]


def levels_of(graph, order: list[str]) -> dict[str, int]:
    """Longest distance of each node from a source (inputs and constants are level 0)."""
    level: dict[str, int] = {}
    for name in order:
        inputs = graph.nodes[name].inputs
        level[name] = 1 + max(level[i] for i in inputs) if inputs else 0
    return level


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
        The message block of level ℓ ≥ 1, structured; ``message(ℓ)`` is its dense
        (B, N_{ℓ-1}, N_ℓ) view.
    incoming : dict of int to ndarray
        ``incoming[ℓ]``: S^ℓ, what arrives at the nodes of level ℓ−1, (B, N_{ℓ-1});
        incoming[L+1] = the seed.
    shared : frozenset of str
        Nodes of batch 1 in a batch of B (what they receive is summed over the samples).
    """

    levels: list[list[tuple[str, bool]]]
    offsets: list[dict[str, tuple[int, int]]]
    blocks: dict[int, MessageBlock]
    incoming: dict[int, np.ndarray]
    shared: frozenset = frozenset()

    @property
    def depth(self) -> int:
        return len(self.levels) - 1

    def message(self, level: int) -> np.ndarray:
        return self.blocks[level].dense()

    def node_sum(self, name: str) -> np.ndarray:
        """What arrives at ``name`` at its own level (B, N): ∂F/∂(name)."""
        for level, offsets in enumerate(self.offsets):
            if name in offsets and not dict(self.levels[level])[name]:
                start, stop = offsets[name]
                block = self.incoming[level + 1][:, start:stop]
                return block.sum(axis=0, keepdims=True) if name in self.shared else block
        raise KeyError(f"no node {name!r} in the layered view")


def layered_view(trace) -> LayeredView:
    """Group the nodes of a GraphTrace into levels, carry skip edges up with identities, and
    run the chain message recursion level by level (msgpass.messages.pass_messages). Each
    level's partials are the nodes' own structured partials placed as blocks (a carried node
    an identity diagonal): nothing is expanded to a dense N×N block."""
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
    # a plain a @ b's right factor: its rows feed every sample of the product (Contracted
    # partials), so it is neither per-sample nor shared, whatever its number of rows (a 1-row
    # b must not pass for a node shared by the batch)
    contracted = sorted(n for n, p in trace.partials.items() if p is not None and any(
        isinstance(J, Contracted) for J in p.inputs))
    if contracted:
        raise StateError(f"the layered view puts every node of a level side by side, sample "
                         f"by sample; node(s) {contracted} contract over the samples of a "
                         f"factor (a plain a @ b)")
    odd = sorted(n for n, v in trace.values.items() if v.shape[0] not in (1, batch))
    if odd:
        raise StateError(f"the layered view puts every node of a level side by side, sample "
                         f"by sample; node(s) {odd} hold another number of samples than the "
                         f"batch of {batch} (or 1)")
    shared = frozenset(n for n, v in trace.values.items() if v.shape[0] < batch)
    seed = np.broadcast_to(trace.seed, (batch, trace.seed.shape[1]))
    if top == 0:  # the output is an input: nothing to pass
        return LayeredView(levels=levels, offsets=offsets, blocks={}, incoming={1: seed},
                           shared=shared)
    chain = []
    for lv in range(1, top + 1):
        below, here = offsets[lv - 1], offsets[lv]
        parts = []
        for name, carried in levels[lv]:
            c0, _ = here[name]
            if carried:  # an identity from its own entries one level down
                width = trace.values[name].shape[1]
                ones = np.ones((batch, width), dtype=trace.seed.dtype)   # object when exact
                parts.append(Part(below[name][0], c0, Diagonal(ones)))
                continue
            for slot, source in enumerate(graph.nodes[name].inputs):
                J = trace.partials[name].inputs[slot]
                if trace.values[name].shape[0] < batch:    # a shared node: every sample's
                    J = J.repeated(batch)
                parts.append(Part(below[source][0], c0, J))
        chain.append(LocalPartials(Blocks(tuple(parts), list(below.values())[-1][1],
                                          list(here.values())[-1][1])))
    steps = chain_steps(chain)
    result = pass_messages(steps, seed, StreamingSender(steps, batch))
    return LayeredView(levels=levels, offsets=offsets, blocks=result.blocks,
                       incoming={t + 1: S for t, S in result.incoming.items()}, shared=shared)
