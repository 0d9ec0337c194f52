"""The dask backend: ``net.backward(backend="dask", chunk_samples=...)``.

The message pass with the batch split into chunks of ``chunk_samples`` samples, each chunk of
each edge one dask task (a chain's edges are its layers). Edge by edge from the output down,
every chunk's messages are sent piece by piece (msgpass.streaming.send_layer, within
``budget_bytes``, as in the in-memory pass) and summed by their receivers; the tasks run in
parallel on dask's threaded scheduler, or on a ``dask.distributed`` cluster when a ``Client``
is active. Each task returns its rows of the sums and, with ``stats``, the statistics of its
messages, merged pairwise up a tree. (A graph node shared by every sample, batch 1, sends one
task.)

With ``store`` each task also writes its samples' messages of every kept edge into a zarr
store, a store chunk at a time: a store chunk holds as many whole samples as fit in
``budget_bytes`` (a divisor of ``chunk_samples``, so that no two tasks write one chunk).
Without it, kept blocks are lazy dask arrays, chunked over ``chunk_samples`` samples, that
send a chunk's messages again, whole, each time it is read: choose ``chunk_samples`` so that
chunk_samples·N_{t-1}·N_t numbers fit in memory.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import DataError, InputValueError, MsgpassError
from ..messages import MessageBlock, MessagePass, pass_messages
from ..stats import MessageStats
from ..streaming import (
    DEFAULT_BUDGET_BYTES,
    DEFAULT_CHUNK_BYTES,
    all_edges,
    check_gradient,
    check_memory_options,
    check_statistics,
    check_sums,
    piece_bytes,
    send_layer,
    wanted_edges,
)
from ..validate import positive_int
from .labels import to_xarray
from .optional import require
from .store import COMPLETE, compressors, mark

__all__ = ["dask_backward", "finish_store"]


def dask_backward(steps, seed: np.ndarray, where, *, keep="sums", stats=False, store=None,
                  budget_bytes: int | None = None, chunk_bytes: int | None = None,
                  chunk_samples: int = 256, keep_samples=None, per_sample: bool = False,
                  numbers=None, trace_of=None, store_names=None, output=None) -> MessagePass:
    """The "dask" backend of ``backward`` (see the module docstring): the steps of the pass,
    the seed, a description of every edge and node by key, and backward's options; returns a
    MessagePass whose kept blocks are lazy dask arrays, or read from ``store`` (its arrays
    described by ``store_names``: edge key -> (name, dims after the rows, number of rows, the
    rows' dim); ``trace_of`` makes the trace of the finished pass, written beside them)."""
    require("dask.array")
    if keep_samples is not None or per_sample:
        raise ValueError("keep_samples and per_sample are options of the in-memory "
                         "backend; the dask backend keeps whole blocks (lazily, or in a "
                         "store=)")
    if numbers is not None or seed.dtype == object:
        raise MsgpassError("the dask backend runs float networks; exact and mp networks use "
                           "the in-memory backend")
    positive_int(chunk_samples, "chunk_samples")
    budget_bytes = DEFAULT_BUDGET_BYTES if budget_bytes is None else budget_bytes
    chunk_bytes = DEFAULT_CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    batch = len(seed)
    edges = all_edges(steps)
    wanted = wanted_edges(edges, keep)
    for edge in edges:
        if not edge.partials.samples_independent:
            raise InputValueError(f"{where[edge.key]} couples the samples: the dask backend "
                                  f"streams samples independently; run BatchNorm in eval "
                                  f"mode, or use the in-memory backend")
    check_memory_options(edges, batch, budget_bytes, chunk_bytes, where)
    names = check_statistics(edges, stats, where)
    target = None
    if store is not None:
        target = _start_store(store, [e for e in edges if e.key in wanted], store_names, batch,
                              chunk_samples, budget_bytes)
    sender = DaskSender(batch, where, wanted, names, target, store_names or {}, chunk_samples,
                        budget_bytes, chunk_bytes)
    try:
        result = pass_messages(steps, seed, sender, output)
        if target is not None:
            da = require("dask.array")
            finish_store(result, trace_of, target)
            result = replace(result, blocks={
                e.key: MessageBlock(e.key, e.partials,
                                    da.from_zarr(target, component=store_names[e.key][0]))
                for e in edges if e.key in wanted})
        return result
    except BaseException:          # a failed pass leaves no half-written store behind
        if target is not None:
            shutil.rmtree(target, ignore_errors=True)
        raise


class DaskSender:
    """Sends each edge's messages as dask tasks over chunks of samples (a msgpass.messages
    Sender); see the module docstring."""

    def __init__(self, batch, where, wanted, names, target, store_names, chunk_samples,
                 budget_bytes, chunk_bytes) -> None:
        self.batch, self.where, self.wanted, self.names = batch, where, wanted, names
        self.target, self.store_names = target, store_names
        self.chunk_samples, self.budget_bytes = chunk_samples, budget_bytes
        self.chunk_bytes = chunk_bytes
        self.rows = [slice(start, min(start + chunk_samples, batch))
                     for start in range(0, batch, chunk_samples)]
        self.blocks, self.gathered = {}, {}

    def parameter(self, node, name, K, incoming, grad) -> None:
        check_gradient(self.where[node], name, grad)

    def __call__(self, edge, S):
        dask = require("dask")
        da = require("dask.array")
        J, label, key = edge.partials, self.where[edge.key], edge.key
        # one graph node each for the partials and the sums arriving, shared by every task
        # (a distributed cluster receives them once)
        shared = dask.delayed(J, traverse=False), dask.delayed(S, traverse=False)
        written = None
        if self.target is not None and key in self.wanted:
            written = (self.target, self.store_names[key][0],
                       _store_chunk(J, len(S), self.chunk_samples, self.budget_bytes))
        size = piece_bytes(J, len(S), self.budget_bytes, self.chunk_bytes, bool(self.names))
        rows = self.rows if len(S) == self.batch else [slice(0, len(S))]
        tasks = [dask.delayed(_send_chunk, nout=2, pure=True)(
            key, label, *shared, chunk, size, self.names, written) for chunk in rows]
        merged = _tree([task[1] for task in tasks], MessageStats.merge) if self.names else None
        pieces, merged = dask.compute([task[0] for task in tasks], merged)
        summed = np.concatenate(pieces)
        check_sums(label, summed)
        summed.flags.writeable = False
        if merged is not None:
            self.gathered[key] = merged.finished()
        if key in self.wanted and self.target is None:
            self.blocks[key] = MessageBlock(key, J, _lazy_block(da, J, S, len(S),
                                                                self.chunk_samples))
        return summed

    def finish(self, incoming, grads) -> MessagePass:
        for S in incoming.values():
            S.flags.writeable = False
        return MessagePass(blocks=self.blocks, incoming=incoming, grads=grads,
                           stats=self.gathered)


def _store_chunk(J, batch: int, chunk_samples: int, budget_bytes: int) -> int:
    """Samples per store chunk of a layer's messages: as many whole samples as fit in the
    budget (at least one, however large one sample is), and a divisor of chunk_samples, so
    every task writes whole chunks of its own (a prime chunk_samples leaves only 1: choose
    one with small factors, such as a power of two)."""
    per_sample = int(np.prod(J.block_shape(1))) * np.dtype(J.dtype).itemsize
    fit = max(1, budget_bytes // per_sample)
    if chunk_samples >= batch:         # one task writes everything: no divisor needed
        return min(fit, batch)
    return max(d for d in range(1, min(fit, chunk_samples) + 1) if chunk_samples % d == 0)


def _send_chunk(t, label, J, incoming, chunk, size, names, written):
    """One task: layer t's messages for the samples ``chunk``, sent piece by piece. Returns
    their sums (chunk, N_{t-1}) and their statistics (or None). With ``written`` = (store
    path, array name, samples per store chunk) it also writes the messages there, one store
    chunk of whole samples at a time (within the budget)."""
    stats = MessageStats.start(t, label, J, names) if names else None
    step = written[2] if written is not None else chunk.stop - chunk.start
    parts = []                          # S^t of the chunk's samples, a store chunk at a time
    for first in range(chunk.start, chunk.stop, step):
        rows = slice(first, min(first + step, chunk.stop))
        S, block, _ = send_layer(J, incoming, piece_bytes=size, rows=rows,
                                 keep=written is not None, stats=stats)
        parts.append(S)
        if written is not None:
            zarr = require("zarr")
            zarr.open_array(written[0], path=written[1], mode="r+")[rows] = block
    # the task's result travels: no scratch buffers with it
    return np.concatenate(parts), None if stats is None else stats.finished()


def _tree(items, combine):
    """Combine delayed items pairwise, level by level: a balanced tree, so partial results
    are released as soon as their pair is merged and the depth is log2 of their number."""
    dask = require("dask")
    while len(items) > 1:
        pairs = [dask.delayed(combine, pure=True)(items[i], items[i + 1])
                 for i in range(0, len(items) - 1, 2)]
        items = pairs + ([items[-1]] if len(items) % 2 else [])
    return items[0]


def _lazy_block(da, J, incoming, batch, chunk_samples):
    """Layer t's messages as a lazy dask array chunked over samples (sent again on access)."""
    index = da.arange(batch, chunks=chunk_samples)

    def send(rows_index, J=J, incoming=incoming):
        rows = slice(int(rows_index[0]), int(rows_index[-1]) + 1)
        return J.send(incoming, J.whole(batch)._replace(rows=rows))
    shape = J.block_shape(1)[1:]
    return index.map_blocks(send, chunks=(index.chunks[0],) + tuple((n,) for n in shape),
                            new_axis=list(range(1, 1 + len(shape))), dtype=J.dtype)


def _start_store(store, edges, store_names, batch, chunk_samples, budget_bytes) -> str:
    """Create the store's message arrays before the pass (each chunk NaN until a task writes
    it; every chunk is written before the store is marked complete); returns its absolute
    path, which worker processes elsewhere can open too."""
    zarr = require("zarr")
    require("xarray")
    path = Path(store).resolve()
    if path.exists():
        raise DataError(f"{path} exists; msgpass does not overwrite a store: remove it or "
                        f"choose another path")
    try:
        group = zarr.open_group(str(path), mode="w-", zarr_format=3)
    except OSError as err:
        raise DataError(f"cannot write a trace store at {path}: {err}") from None
    group.attrs.update({COMPLETE: False})
    for edge in edges:
        J, (name, dims, rows, row_dim) = edge.partials, store_names[edge.key]
        shape = J.block_shape(rows)     # the pass's batch, or 1 for a shared node's edge
        group.create_array(name, shape=shape, dtype=J.dtype,
                           chunks=(_store_chunk(J, rows, chunk_samples, budget_bytes),)
                           + shape[1:], fill_value=np.nan, compressors=compressors(),
                           dimension_names=(row_dim,) + dims,
                           config={"write_empty_chunks": True},
                           attributes=J.storage_attrs())
    return str(path)


def finish_store(result: MessagePass, trace_of, target: str) -> None:
    """Write the sums, values, gradients and statistics beside the streamed messages; mark
    the store complete last, so a run that died half-way leaves a store load_trace refuses."""
    rest = to_xarray(trace_of(replace(result, blocks={})))
    rest.attrs[COMPLETE] = False       # xarray rewrites the attributes: still incomplete
    rest.to_zarr(target, mode="a", consolidated=False, write_empty_chunks=True,
                 encoding={name: {"compressors": compressors()} for name in rest.variables})
    mark(Path(target), True, rest.attrs)
