"""The path-sum witness (seed 002, eqs. 3.15–3.18).

A derivative ∂F/∂x_n is the sum, over every path from the entry (x, n) to an entry of the
output, of the product of the local partials along the path's edges (times the seed at the
path's end). The paths run over *entries*: an edge (u, n) → (v, n') exists where the local
partial J_{v,u}[n, n'] is structurally non-zero (msgpass.partials ``row(n)``: a diagonal edge
has one, never an N×N mask).

The number of paths grows exponentially with depth, which is exactly why the dynamic programme
— messages, or backprop — exists. So this witness first counts the paths (cheaply, by dynamic
programming over the same graph) and refuses, with the count, above ``limit``; below it, it
enumerates every path explicitly, one at a time, with an explicit stack (no recursion).
It reads the local partials as data; it never calls the message code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MsgpassError
from ..naming import shown_all

__all__ = ["path_sum", "count_paths", "PathSum", "PathSumTooLarge", "PathSumRefused",
           "DEFAULT_PATH_LIMIT"]

DEFAULT_PATH_LIMIT = 200_000  # paths enumerated one by one: about a second of Python per 1e5


class PathSumRefused(MsgpassError):
    """The path sum cannot be enumerated here; the message says why."""


class PathSumTooLarge(PathSumRefused):
    """The number of paths exceeds the limit; ``count`` says how many there are."""

    def __init__(self, message: str, count: int) -> None:
        super().__init__(message)
        self.count = count


@dataclass(frozen=True)
class PathSum:
    """Gradients by path enumeration.

    Attributes
    ----------
    nodes : dict of str to ndarray
        ∂F/∂v (B, N_v) for each node asked for.
    params : dict of str to ndarray
        Parameter gradients keyed ``"node.name"``.
    paths : dict of str to int
        How many paths were summed for each node.
    """

    nodes: dict[str, np.ndarray]
    params: dict[str, np.ndarray]
    paths: dict[str, int]


def _structure(trace):
    """For each node: the list of (consumer, its partials J on the edge, whether the consumer
    has more samples than the node: it is shared by every sample)."""
    consumers = {name: [] for name in trace.order}
    for name in trace.order:
        node = trace.graph.nodes[name]
        for slot, source in enumerate(node.inputs):
            consumers[source].append((name, trace.partials[name].inputs[slot]))
    return consumers


def _refuse_coupled(trace) -> None:
    for name, partials in trace.partials.items():
        for J in partials.inputs:
            if not J.samples_independent:
                raise PathSumRefused(f"node {name!r} couples the samples: its paths leave the "
                                     f"sample they start in, which this witness (one "
                                     f"sample's paths at a time) does not follow")


def count_paths(trace) -> dict[str, np.ndarray]:
    """Number of entry-level paths from each entry of each node to the output: (N_v,) ints
    (Python ints, exact), by dynamic programming from the output down."""
    _refuse_coupled(trace)
    consumers = _structure(trace)
    counts: dict[str, np.ndarray] = {}
    for name in reversed(trace.order):
        width = trace.values[name].shape[1]
        if name == trace.output:
            counts[name] = np.ones(width, dtype=object)
            continue
        total = np.zeros(width, dtype=object)
        for consumer, J in consumers[name]:
            total = total + J.edge_counts(counts[consumer])
        counts[name] = total
    return counts


def path_sum(trace, nodes: list[str] | None = None, *, limit: int = DEFAULT_PATH_LIMIT) -> PathSum:
    """Enumerate every path from each entry of ``nodes`` (default: the inputs, and the nodes
    holding parameters) to the output, and sum the products of local partials.

    Raises PathSumTooLarge (with the count) if more than ``limit`` paths would be enumerated.
    """
    graph = trace.graph
    holders = [n for n in trace.order if trace.partials.get(n) and trace.partials[n].params]
    if nodes is None:
        nodes = [n for n in trace.order if graph.nodes[n].kind == "input"] + holders
    counts = count_paths(trace)
    needed = {n: int(sum(counts[n])) for n in nodes}
    total = sum(needed.values())
    if total > limit:
        raise PathSumTooLarge(
            f"the path sum would enumerate {total:,} paths (limit {limit:,}); that is the "
            f"exponential cost messages avoid", total)
    consumers = _structure(trace)
    seed = trace.seed
    results: dict[str, np.ndarray] = {}
    batch = seed.shape[0]
    for start in nodes:
        width = trace.values[start].shape[1]
        grad = np.zeros((batch, width), dtype=seed.dtype)   # object for exact graphs
        for n in range(width):
            # Explicit stack of (node, entry, product so far (B,)): one path prefix each.
            stack = [(start, n, np.ones(batch, dtype=seed.dtype))]
            while stack:
                here, entry, product = stack.pop()
                if here == trace.output:
                    grad[:, n] += product * seed[:, entry]
                    continue
                for consumer, J in consumers[here]:
                    columns, partials = J.row(entry)    # J[:, entry, n'] on its edges
                    for k, entry_next in enumerate(columns):
                        stack.append((consumer, int(entry_next), product * partials[:, k]))
        if trace.values[start].shape[0] == 1 < batch:  # a node shared by every sample
            grad = grad.sum(axis=0, keepdims=True)
        results[start] = grad
    params = {}
    for holder in holders:
        if holder not in results:
            continue
        for pname, partial in trace.partials[holder].params.items():
            params[f"{holder}.{pname}"] = partial.gradient(results[holder])
    return PathSum(nodes=results, params=shown_all(getattr(trace.graph, "param_names", None),
                                                   params), paths=needed)
