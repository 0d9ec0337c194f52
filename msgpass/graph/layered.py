"""The layered view of a graph: the same message pass as a chain of levels.

Nodes are grouped into levels by their longest distance from the inputs; a node needed beyond
the next level is carried up by identity pass-throughs, so that every level reads only the
level below. Each level is then one layer z^{ℓ-1} → z^ℓ with a dense (B, N_{ℓ-1}, N_ℓ) block of
local partials, and the chain recursion of seed 004 (msgpass.messages) runs unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..messages import MessageBlock, pass_messages
from ..partials import Dense, LocalPartials
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
        The message block of level ℓ ≥ 1, dense (B, N_{ℓ-1}, N_ℓ).
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
    run the chain message recursion level by level (msgpass.messages.pass_messages)."""
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
    seed = np.broadcast_to(trace.seed, (batch, trace.seed.shape[1]))
    if top == 0:  # the output is an input: nothing to pass
        return LayeredView(levels=levels, offsets=offsets, blocks={}, incoming={1: seed},
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
    result = pass_messages(chain, seed, StreamingSender(chain, batch))
    return LayeredView(levels=levels, offsets=offsets, blocks=result.blocks,
                       incoming=result.incoming, shared=shared)
