"""The dask backend: ``net.backward(backend="dask", chunk_samples=...)``.

The message pass with the batch split into chunks of ``chunk_samples`` samples, each chunk of
each layer one dask task. Layer by layer from the loss down, every chunk's messages δ^t are
sent piece by piece (msgpass.streaming.send_layer, within ``budget_bytes``, as in the
in-memory pass) and summed by their receivers; the tasks run in parallel on dask's threaded
scheduler, or on a ``dask.distributed`` cluster when a ``Client`` is active. Each task returns
its rows of S^t and, with ``stats``, the statistics of its messages, merged pairwise up a tree.

With ``store`` each task also writes its samples' messages of every kept layer into a zarr
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
from ..messages import MessageBlock, MessagePass
from ..stats import MessageStats
from ..streaming import (
    DEFAULT_BUDGET_BYTES,
    DEFAULT_CHUNK_BYTES,
    check_gradient,
    check_memory_options,
    check_statistics,
    check_sums,
    piece_bytes,
    send_layer,
    wanted_layers,
)
from ..trace import Trace
from ..validate import positive_int
from .labels import to_xarray
from .optional import require
from .store import COMPLETE, mark

__all__ = ["dask_backward", "finish_store"]


def dask_backward(record, seed: np.ndarray, labels: list[str], *, keep="sums", stats=False,
                  store=None, budget_bytes: int | None = None, chunk_bytes: int | None = None,
                  chunk_samples: int = 256, keep_samples=None, per_sample: bool = False,
                  numbers=None) -> MessagePass:
    """The backend of ``Sequential.backward(backend="dask")`` (see the module docstring): the
    forward ``record``, the seed S^{T+1}, the layers' labels and backward's options; returns
    a MessagePass whose kept blocks are lazy dask arrays, or read from ``store``."""
    require("dask.array")
    if keep_samples is not None or per_sample:
        raise ValueError("keep_samples and per_sample are options of the in-memory "
                         "backend; the dask backend keeps whole blocks (lazily, or in a "
                         "store=)")
    if numbers is not None:
        raise MsgpassError("the dask backend runs float networks; exact and mp networks use "
                           "the in-memory backend")
    positive_int(chunk_samples, "chunk_samples")
    budget_bytes = DEFAULT_BUDGET_BYTES if budget_bytes is None else budget_bytes
    chunk_bytes = DEFAULT_CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    batch, T = record.values[0].shape[0], len(record.partials)
    wanted = wanted_layers(keep, T)
    for t, local in enumerate(record.partials, 1):
        if not local.inputs.samples_independent:
            raise InputValueError(f"layer {t} ({labels[t - 1]}) couples the samples: the "
                                  f"dask backend streams samples independently; run BatchNorm "
                                  f"in eval mode, or use the in-memory backend")
    check_memory_options(record.partials, batch, budget_bytes, chunk_bytes, labels)
    names = check_statistics(record.partials, stats, labels)
    target = None
    if store is not None:
        target = _start_store(store, record, wanted, chunk_samples, budget_bytes)
    try:
        result = _dask_pass(record, seed, labels, wanted, names, target, chunk_samples,
                            budget_bytes, chunk_bytes)
        if target is not None:
            da = require("dask.array")
            result = replace(result, blocks={
                t: MessageBlock(t, record.partials[t - 1].inputs,
                                da.from_zarr(target, component=f"message{t}"))
                for t in sorted(wanted)})
        return result
    except BaseException:          # a failed pass leaves no half-written store behind
        if target is not None:
            shutil.rmtree(target, ignore_errors=True)
        raise


def _dask_pass(record, seed, labels, wanted, names, target, chunk_samples, budget_bytes,
               chunk_bytes) -> MessagePass:
    """The pass itself, once dask_backward has checked its options (see there)."""
    dask = require("dask")
    da = require("dask.array")
    batch, T = record.values[0].shape[0], len(record.partials)
    rows = [slice(start, min(start + chunk_samples, batch))
            for start in range(0, batch, chunk_samples)]
    incoming, blocks, grads, gathered = {T + 1: seed}, {}, {}, {}
    for t in range(T, 0, -1):
        local, label, S = record.partials[t - 1], labels[t - 1], incoming[t + 1]
        J = local.inputs
        for name, K in local.params.items():
            grads[(t, name)] = K.gradient(S)
            check_gradient(t, label, name, grads[(t, name)])
        # one graph node each for the partials and the sums arriving, shared by every task
        # (a distributed cluster receives them once)
        shared = dask.delayed(J, traverse=False), dask.delayed(S, traverse=False)
        written = None
        if target is not None and t in wanted:
            written = (target, f"message{t}", _store_chunk(J, batch, chunk_samples,
                                                          budget_bytes))
        size = piece_bytes(J, batch, budget_bytes, chunk_bytes, bool(names))
        tasks = [dask.delayed(_send_chunk, nout=2, pure=True)(
            t, label, *shared, chunk, size, names, written) for chunk in rows]
        merged = _tree([task[1] for task in tasks], MessageStats.merge) if names else None
        pieces, merged = dask.compute([task[0] for task in tasks], merged)
        incoming[t] = np.concatenate(pieces)
        check_sums(t, label, incoming[t])
        incoming[t].flags.writeable = False
        if merged is not None:
            gathered[t] = merged.finished()
        if t in wanted and target is None:
            blocks[t] = MessageBlock(t, J, _lazy_block(da, J, S, batch, chunk_samples))
    result = MessagePass(blocks=blocks, incoming=incoming, grads=grads, stats=gathered)
    if target is not None:
        finish_store(result, record, labels, target)
    return result


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


def _start_store(store, record, wanted, chunk_samples, budget_bytes) -> str:
    """Create the store's message arrays before the pass (NaN-filled until written); returns
    its absolute path, which worker processes elsewhere can open too."""
    zarr = require("zarr")
    require("xarray")
    path = Path(store).resolve()
    if path.exists():
        raise DataError(f"{path} exists; msgpass does not overwrite a store: remove it or "
                        f"choose another path")
    batch = record.values[0].shape[0]
    try:
        group = zarr.open_group(str(path), mode="w-", zarr_format=3)
    except OSError as err:
        raise DataError(f"cannot write a trace store at {path}: {err}") from None
    group.attrs.update({COMPLETE: False})
    for t in sorted(wanted):
        J = record.partials[t - 1].inputs
        shape = J.block_shape(batch)
        dims = ("sample",) + tuple(f"{name}{t}" for name in J.block_dims)
        group.create_array(f"message{t}", shape=shape, dtype=J.dtype,
                           chunks=(_store_chunk(J, batch, chunk_samples, budget_bytes),)
                           + shape[1:], fill_value=np.nan, dimension_names=dims,
                           config={"write_empty_chunks": True},
                           attributes=J.storage_attrs())
    return str(path)


def finish_store(result: MessagePass, record, labels, target: str) -> None:
    """Write the sums, values, gradients and statistics beside the streamed messages; mark
    the store complete last, so a run that died half-way leaves a store load_trace refuses."""
    grads = {f"{t}.{name}": result.grads[(t, name)]
             for t, local in enumerate(record.partials, 1) for name in local.params}
    rest = to_xarray(Trace(labels=labels, values=record.values, partials=record.partials,
                           blocks={}, incoming=result.incoming, grads=grads, loss=record.loss,
                           nondifferentiable=record.kinks, stats=result.stats))
    rest.attrs[COMPLETE] = False       # xarray rewrites the attributes: still incomplete
    rest.to_zarr(target, mode="a", consolidated=False, write_empty_chunks=True)
    mark(Path(target), True, rest.attrs)
