"""The one backward engine: the message pass over steps (a chain's layers, a graph's nodes)
with backward's options, on a backend.

A chain is the graph whose nodes are z^0 … z^T and whose edges are its layers
(msgpass.messages.chain_steps); a graph gives its nodes in topological order. Both hand their
steps to ``run``, which sends every edge's messages through the chosen backend: "memory"
streams them under a byte budget (msgpass.streaming), "dask" (msgpass.scale, an optional
extra) as dask tasks chunked over samples. Options mean the same for both (Sequential.backward
documents them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from .messages import MessagePass, Step, pass_messages
from .streaming import StreamingSender

__all__ = ["BACKENDS", "run"]


def _memory_backward(steps: Sequence[Step], seed: np.ndarray, where: Mapping,
                     **options) -> MessagePass:
    """The in-memory backend: every edge's messages streamed under the byte budget."""
    if options.pop("store", None) is not None:
        raise ValueError("store= streams messages into zarr through the dask backend: "
                         "call backward(backend='dask', store=path, ...)")
    for name in ("chunk_samples", "numbers", "trace_of", "store_names"):   # other backends'
        options.pop(name, None)
    output = options.pop("output", None)
    sender = StreamingSender(steps, len(seed), where, **options)
    return pass_messages(steps, seed, sender, output)


# The backends of ``backward(backend=...)``: each takes the steps, the seed (what arrives at
# the output), a description of every edge and node by key, and backward's options, and returns
# a MessagePass. Optional extras add theirs (msgpass.scale adds "dask" when msgpass is
# imported).
BACKENDS: dict[str, Callable[..., MessagePass]] = {"memory": _memory_backward}


def run(backend: str, steps: Sequence[Step], seed: np.ndarray, where: Mapping,
        **options) -> MessagePass:
    """The pass on ``backend`` (a clear error for an unknown one)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {sorted(BACKENDS)}, got {backend!r}"
                         + ("; 'dask' comes with the optional extra msgpass[scale]"
                            if backend == "dask" else ""))
    return BACKENDS[backend](steps, seed, where, **options)
