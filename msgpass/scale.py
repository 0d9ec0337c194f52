"""Traces in the scientific Python stack: labelled arrays (xarray) and chunked, compressed
storage (zarr). An optional extra: ``pip install "msgpass[scale]"``; without it these
functions say what to install.

One Dataset holds a whole trace. xarray gives a dimension one size per Dataset, so each layer
t has its own node dimensions ``src{t}`` (its N_{t-1} receiving nodes, layer t−1) and
``dst{t}`` (its N_t sending nodes); ``sample`` is shared. Variables:

* ``message{t}`` (sample, src{t}, dst{t}): every kept message δ^t_{n←n'}; for an elementwise
  layer only its diagonal, (sample, node{t}) (node n sends only to node n, so src and dst
  are one dimension there), with ``attrs["stored"] == "diagonal"``
  (``dense(ds, t)`` or ``ds.msgpass.dense(t)`` expands it);
* ``incoming{t}`` (sample, src{t}): the node sums S^t, for t = 1..T;
* ``value0`` (sample, src1) and ``value{t}`` (sample, dst{t}): the forward values;
* ``grad{t}_{name}``: the parameter gradients ("W": (src{t}, dst{t}), "b": (dst{t},));
* ``loss``: the batch-mean loss L;
* with ``keep_samples``, the kept blocks' rows are the dimension ``kept`` (its coordinate
  the batch indices of the kept samples) instead of ``sample``;
* with ``per_sample=True``: ``param_message{t}_{name}`` (sample or kept, then the
  parameter's dims), each sample's message to each parameter;
* with statistics (``backward(stats=...)``): ``mean{t}`` and ``absmax{t}`` per edge, with the
  dims of the layer's messages less ``sample``, and ``histogram{t}`` (exponent): how many
  messages have 2^e ≤ |δ| < 2^(e+1), the lowest bin holding those below the smallest normal.

Attributes name each layer (``label{t}``) and its kind of local partials (``kind{t}``).
"""

from __future__ import annotations

import importlib
import shutil
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from .errors import DataError, InputValueError, MsgpassError

__all__ = ["to_xarray", "save_trace", "load_trace", "append_trace", "dense", "require"]

EXTRA = 'pip install "msgpass[scale]"'
# A store's attribute that is true only once everything in it was written: set last, so a
# store whose writer died half-way is refused rather than read (zarr reads an unwritten chunk
# as the fill value, silently).
COMPLETE = "msgpass_complete"
# Beside it, once complete: every array's shape and chunk count, so that a lost array or chunk
# is found on load.
MANIFEST = "msgpass_manifest"
# While an append runs: the step being appended and how many steps were whole before it (both
# None once it has finished).
APPENDING = "msgpass_appending"
WHOLE = "msgpass_whole_steps"


def require(module: str):
    """Import an optional dependency or say what to install."""
    try:
        imported = importlib.import_module(module)
    except ImportError:
        raise MsgpassError(f"this needs {module}, part of the optional extra: {EXTRA} (from "
                           f"a clone: pip install \".[scale]\"; Python >= 3.11)") from None
    if module == "zarr" and int(imported.__version__.split(".")[0]) < 3:
        raise MsgpassError(f"msgpass writes zarr format 3, which needs zarr >= 3 (found "
                           f"{imported.__version__}): pip install -U \"msgpass[scale]\"")
    return imported


def to_xarray(trace):
    """The trace as an ``xarray.Dataset`` (see the module docstring)."""
    xr = require("xarray")
    if trace.values[0].dtype == object:
        warnings.warn("an exact or mp trace is labelled and stored as float64: the numbers are "
                      "rounded (keep the trace itself for exact comparisons)",
                      stacklevel=_outside_msgpass())
    trace = trace.as_floats()
    T, batch = trace.T, trace.batch
    data, coords = {}, {"sample": np.arange(batch)}
    for t in range(1, T + 1):
        layout = trace.partials[t - 1].inputs
        coords[f"src{t}"] = np.arange(layout.n_in)
        if layout.diagonal:
            coords[f"node{t}"] = np.arange(layout.n_in)
        coords[f"dst{t}"] = np.arange(layout.n_out)
        data[f"incoming{t}"] = (("sample", f"src{t}"), trace.incoming(t))
        data[f"value{t}"] = (("sample", f"dst{t}"), trace.value(t))
        if t in trace.blocks:
            block = trace.blocks[t]
            if block.kind == "coupled":
                raise DataError(f"layer {t} ({trace.labels[t - 1]}) couples the samples; its "
                                f"(N, B, B) block has no (sample, src, dst) form to save yet")
            rows = _rows(block.samples, coords)      # "sample", or "kept" for keep_samples
            if block.kind == "diagonal":
                data[f"message{t}"] = ((rows, f"node{t}"), block.values,
                                       {"stored": "diagonal"})
            else:
                data[f"message{t}"] = ((rows, f"src{t}", f"dst{t}"), block.values,
                                       {"stored": "dense"})
    data["value0"] = (("sample", "src1"), trace.value(0))
    for t, stats in trace.stats.items():
        edges = (f"node{t}",) if len(stats.edges) == 1 else (f"src{t}", f"dst{t}")
        if stats.total is not None:
            data[f"mean{t}"] = (edges, stats.mean, {"samples": stats.samples})
        if stats.absmax is not None:
            data[f"absmax{t}"] = (edges, stats.absmax, {"samples": stats.samples})
        if stats.counts is not None:
            coords["exponent"] = np.arange(stats.counts.size) - stats.bias
            data[f"histogram{t}"] = (("exponent",), stats.counts, {
                "samples": stats.samples,
                "bins": "count of messages with 2**e <= |message| < 2**(e+1); the lowest bin "
                        "counts every message below the smallest normal number (zeros)"})
    for key, grad in trace.grads.items():
        t, name = key.split(".", 1)
        layout = trace.partials[int(t) - 1].inputs
        if grad.shape == (layout.n_in, layout.n_out):        # a weight matrix
            dims = (f"src{t}", f"dst{t}")
        elif grad.shape == (layout.n_out,):                  # a bias
            dims = (f"dst{t}",)
        else:                # any other shape (a Function's own parameters): its own dims
            dims = tuple(f"grad{t}_{name}_{axis}" for axis in range(grad.ndim))
        data[f"grad{t}_{name}"] = (dims, np.asarray(grad))
        if key in trace.param_messages:   # backward(per_sample=True): each sample's share
            messages = trace.param_messages[key]
            data[f"param_message{t}_{name}"] = ((_param_rows(trace, coords),) + dims,
                                                messages)
    # the loss as a variable, not an attribute: appended by step, each step keeps its own
    data["loss"] = ((), float(trace.loss))
    attrs = {"T": T, "batch": batch,
             **{f"label{t}": trace.labels[t - 1] for t in range(1, T + 1)},
             **{f"kind{t}": trace.partials[t - 1].inputs.kind for t in range(1, T + 1)}}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _outside_msgpass() -> int:
    """The stacklevel of the first caller outside msgpass, so a warning names user code."""
    package = str(Path(__file__).resolve().parent)
    frame, level = sys._getframe(1), 1
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def _rows(samples, coords) -> str:
    """The row dimension of a block: "sample", or "kept" (its coordinate the batch indices)
    when only some samples were kept (every kept block of a pass keeps the same ones)."""
    if samples is None:
        return "sample"
    coords["kept"] = np.asarray(samples)
    return "kept"


def _param_rows(trace, coords) -> str:
    """The row dimension of per-sample parameter messages: like the kept blocks', "kept"
    with keep_samples, else "sample"."""
    return _rows(trace.kept_samples, coords)


def dense(ds, t: int):
    """Layer t's message block of a Dataset as the full (sample, src{t}, dst{t}) DataArray
    (with ``step`` first for a store of appended traces). A diagonal block is expanded with
    exact zeros off the diagonal: lazily, chunk by chunk, when the Dataset is lazy (a loaded
    store), at once when it is in memory."""
    xr = require("xarray")
    name = f"message{t}"
    if name not in ds:
        raise DataError(f"the dataset holds no messages of layer {t} (kept: "
                        f"{sorted(int(v[7:]) for v in ds.data_vars if v.startswith('message'))})")
    var = ds[name]
    if var.attrs.get("stored") != "diagonal":
        return var
    size = var.shape[-1]
    if var.chunks is not None:           # lazy: each chunk of samples expands on its own
        values = var.data.rechunk({var.ndim - 1: -1})
        full = values.map_blocks(_expand_diagonal, new_axis=[var.ndim],
                                 chunks=values.chunks + ((size,),), dtype=values.dtype)
    else:
        full = _expand_diagonal(np.asarray(var.values))
    outer = var.dims[:-1]
    coords = {dim: ds[dim] for dim in outer if dim in ds.coords}
    coords |= {f"src{t}": np.arange(size), f"dst{t}": np.arange(size)}
    return xr.DataArray(full, dims=outer + (f"src{t}", f"dst{t}"), coords=coords,
                        attrs={"stored": "dense"})


def _expand_diagonal(values: np.ndarray) -> np.ndarray:
    """(..., N) diagonals → (..., N, N) blocks, exact +0.0 off the diagonal."""
    size = values.shape[-1]
    full = np.zeros(values.shape + (size,), dtype=values.dtype)
    full[..., np.arange(size), np.arange(size)] = values
    return full


def _register_accessor():
    try:
        xr = importlib.import_module("xarray")
    except ImportError:
        return

    @xr.register_dataset_accessor("msgpass")
    class MsgpassAccessor:
        """``ds.msgpass``: msgpass's view of a trace Dataset."""

        def __init__(self, ds):
            self._ds = ds

        def dense(self, t: int):
            """Layer t's messages as (sample, src{t}, dst{t}), diagonal blocks expanded
            (lazily for a loaded store); see msgpass.scale.dense."""
            return dense(self._ds, t)


def save_trace(trace, path, chunk_samples: int = 256) -> Path:
    """Write the trace as a zarr store at ``path`` (a new directory), chunked over samples
    (``chunk_samples`` per chunk) and compressed with zarr's default codec. Round trips are
    exact (bitwise for floats). A trace of the dask backend is written chunk by chunk."""
    require("zarr")
    _check_chunk_samples(chunk_samples)
    path = Path(path)
    if path.exists():
        raise DataError(f"{path} exists; msgpass does not overwrite a store: remove it or "
                        f"choose another path")
    _write_new(to_xarray(trace), path, chunk_samples)
    return path


def _chunked(ds, chunk_samples: int):
    """The Dataset as dask arrays of ``chunk_samples`` samples (one step) per chunk, so that
    each written zarr chunk is one dask chunk, whatever chunks the trace's blocks had."""
    require("dask")
    sizes = {"sample": chunk_samples} if "sample" in ds.dims else {}
    if "step" in ds.dims:
        sizes["step"] = 1
    return ds.chunk(sizes)


def _write_new(ds, path: Path, chunk_samples: int) -> None:
    """Write a new store; on failure remove what was written, so a retry finds no debris."""
    ds = _chunked(ds, chunk_samples)
    ds.attrs[COMPLETE] = False
    encoding = {name: {"chunks": tuple(c[0] for c in ds[name].chunks)} if ds[name].chunks
                else {} for name in ds.data_vars}
    try:
        # every chunk is written, even all-zero ones, so a missing one means truncation;
        # consolidated metadata is not part of zarr format 3: off, so no store depends on it
        ds.to_zarr(path, mode="w-", encoding=encoding, consolidated=False,
                   write_empty_chunks=True)
    except OSError as err:       # a path under a file, no permission, a full disk
        shutil.rmtree(path, ignore_errors=True)
        raise DataError(f"cannot write a trace store at {path}: {err}") from None
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    _mark(path, True)


def _mark(path: Path, complete: bool, attrs: dict | None = None) -> None:
    """Set the completion mark (and ``attrs``). Marking complete also records a manifest:
    every array's shape and number of chunks, which load_trace checks."""
    zarr = require("zarr")
    group = zarr.open_group(str(path), mode="r+")
    update = dict(attrs or {})
    if complete:
        update[MANIFEST] = {name: {"shape": list(array.shape), "chunks": int(array.nchunks)}
                            for name, array in group.arrays()}
    update[COMPLETE] = complete
    group.attrs.update(update)


def load_trace(path, network=None):
    """A saved trace (or a store of traces appended by step) as a lazy xarray Dataset: the
    arrays are dask arrays read chunk by chunk on demand. A store that is incomplete or has
    arrays or chunks missing is refused; with ``network``, so is one of another
    architecture. (A chunk that is present but corrupt is found when it is read.)"""
    xr = require("xarray")
    require("zarr")
    require("dask")
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such trace store")
    _check_complete(path)
    try:
        ds = xr.open_zarr(path, consolidated=False)
    except Exception as err:   # zarr and xarray raise many kinds for a broken store
        raise DataError(f"{path}: not a readable msgpass trace store ({err})") from None
    for key in (COMPLETE, MANIFEST, APPENDING, WHOLE):
        ds.attrs.pop(key, None)
    if network is not None:
        _check_network(ds, network, path)
    return ds


def _check_complete(path: Path) -> None:
    """Refuse a store whose writer did not finish, or that lost arrays or chunks since (a
    partial copy, a deleted file): zarr would read a missing chunk as its fill value, and
    xarray would simply not show a missing array."""
    zarr = require("zarr")
    try:
        group = zarr.open_group(str(path), mode="r")
        attrs = dict(group.attrs)
    except Exception as err:
        raise DataError(f"{path}: not a readable msgpass trace store ({err})") from None
    if COMPLETE not in attrs:
        raise DataError(f"{path}: no msgpass completion mark: a zarr store that msgpass "
                        f"0.8 or later did not write, or whose writer stopped at once")
    if attrs.get(APPENDING) is not None:
        raise DataError(f"{path}: the append of step {attrs[APPENDING]} did not finish; "
                        f"msgpass.scale.roll_back(path) restores the {attrs.get(WHOLE)} "
                        f"whole steps before it")
    if attrs[COMPLETE] is True and MANIFEST not in attrs:
        raise DataError(f"{path}: written by a development build of msgpass without a "
                        f"manifest of its arrays; xarray.open_zarr(path, consolidated=False) "
                        f"reads it unchecked")
    if attrs[COMPLETE] is not True:
        raise DataError(f"{path}: an incomplete trace store (its writer stopped before "
                        f"finishing); remove it and write it again")
    with warnings.catch_warnings():   # zarr warns of a directory that lost its metadata;
        warnings.simplefilter("ignore")  # the manifest check below names what is missing
        arrays = dict(group.arrays())
    for name, expected in attrs[MANIFEST].items():
        array = arrays.get(name)
        if array is None:
            raise DataError(f"{path}: a truncated trace store: its array {name} is missing; "
                            f"copy or write it again")
        if list(array.shape) != expected["shape"]:
            raise DataError(f"{path}: {name} has shape {list(array.shape)}, but the store was "
                            f"written with {expected['shape']}")
        if array.nchunks_initialized < expected["chunks"]:
            raise DataError(f"{path}: a truncated trace store: {name} has "
                            f"{array.nchunks_initialized} of its {expected['chunks']} chunks; "
                            f"copy or write it again")


def _check_network(ds, network, path: Path) -> None:
    labels = [ds.attrs.get(f"label{t}") for t in range(1, int(ds.attrs["T"]) + 1)]
    if labels != list(network.labels):
        raise DataError(f"{path} holds traces of {' → '.join(map(str, labels))}, not of this "
                        f"network ({' → '.join(network.labels)})")


def append_trace(trace, path, step: int, chunk_samples: int = 256) -> Path:
    """Append ``trace`` to the store at ``path`` along a ``step`` dimension (creating it on
    the first call, chunked by ``chunk_samples``; later appends keep the store's chunks),
    e.g. every k training steps. Every trace of one store must be of the same network and
    batch size and kept the same way (the same blocks, samples and statistics, the same
    dtype), and its step must come after the last; anything else is refused, naming the
    difference, before a byte is written. An append that fails is rolled back."""
    require("zarr")
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        raise ValueError(f"step must be an integer (a training step), got {step!r}")
    _check_chunk_samples(chunk_samples)
    ds = to_xarray(trace).expand_dims(step=[int(step)])
    path = Path(path)
    if not path.exists():
        _write_new(ds, path, chunk_samples)
        return path
    stored = load_trace(path)
    if "step" not in stored.dims:
        raise DataError(f"{path} holds one trace (written by trace.save or backward(store=)), "
                        f"not traces by step; append to a store that append_trace created")
    _check_same_kind(stored, ds, path)
    last = int(stored["step"].values[-1])
    if int(step) <= last:
        raise DataError(f"{path} holds steps up to {last}; append a later step than "
                        f"{int(step)}")
    samples = next((var.encoding["chunks"][var.dims.index("sample")]
                    for var in stored.data_vars.values() if "sample" in var.dims), 1)
    ds = _chunked(ds, samples)
    # xarray rewrites the group's attributes as it appends: these say, until the append has
    # finished, that it is under way and how many steps are whole
    whole = int(stored.sizes["step"])
    marks = {APPENDING: int(step), WHOLE: whole}
    ds.attrs |= {COMPLETE: False, **marks}
    _mark(path, False, marks)
    try:
        ds.to_zarr(path, mode="a", append_dim="step", consolidated=False,
                   write_empty_chunks=True)
    except BaseException:          # Ctrl-C included: put the store back as it was
        roll_back(path)
        raise
    _mark(path, True, {APPENDING: None, WHOLE: None})
    return path


def roll_back(path) -> Path:
    """Undo an append that did not finish (a killed process leaves one; append_trace undoes
    its own on an exception): cut every array back to the steps that were whole before it,
    and mark the store complete again."""
    zarr = require("zarr")
    path = Path(path)
    group = zarr.open_group(str(path), mode="r+")
    whole = group.attrs.get(WHOLE)
    if group.attrs.get(APPENDING) is None or whole is None:
        raise DataError(f"{path}: no unfinished append to roll back")
    for _, array in group.arrays():
        names = list(array.metadata.dimension_names or ())
        if "step" in names and array.shape[names.index("step")] != whole:
            shape = list(array.shape)
            shape[names.index("step")] = whole
            array.resize(tuple(shape))
    _mark(path, True, {APPENDING: None, WHOLE: None})
    return path


def _check_same_kind(stored, ds, path: Path) -> None:
    mine = {k: v for k, v in ds.attrs.items() if k.startswith(("label", "kind", "T", "batch"))}
    theirs = {k: v for k, v in stored.attrs.items() if k in mine}
    if mine != theirs:
        raise DataError(f"{path} holds traces of {_describe(theirs)}, not of "
                        f"{_describe(mine)}; append to a store of the same network and batch")
    missing, extra = set(stored.data_vars) - set(ds.data_vars), \
        set(ds.data_vars) - set(stored.data_vars)
    if missing or extra:
        raise DataError(f"{path} holds traces kept another way: the store has "
                        f"{sorted(missing) or 'nothing'} that this trace lacks and this trace "
                        f"has {sorted(extra) or 'nothing'} that the store lacks; keep the same "
                        f"blocks, samples and statistics at every step")
    for name, coord in ds.coords.items():   # coordinates without a step are shared by all
        if "step" not in coord.dims and not np.array_equal(coord.values, stored[name].values):
            raise DataError(f"{path} holds traces whose {name} is {stored[name].values.tolist()}"
                            f", this trace's is {coord.values.tolist()}; keep the same samples "
                            f"at every step")
    for name, var in ds.data_vars.items():
        if var.dtype != stored[name].dtype:
            raise DataError(f"{path} holds {name} as {stored[name].dtype}, this trace has "
                            f"{var.dtype}; append traces of one dtype")
        theirs = dict(stored[name].sizes) | {"step": 0}
        if dict(var.sizes) | {"step": 0} != theirs:
            raise DataError(f"{path} holds {name} with sizes {theirs}, this trace has "
                            f"{dict(var.sizes)}; keep the same samples at every step")


def _describe(attrs: dict) -> str:
    labels = [attrs[k] for k in sorted((k for k in attrs if k.startswith("label")),
                                       key=lambda k: int(k[5:]))]
    return f"{' → '.join(labels)} at batch {attrs.get('batch')}"


_register_accessor()


# -- the dask backend ---------------------------------------------------------------------

def dask_backward(net, chunk_samples: int = 256, keep="sums", stats=False, store=None,
                  budget_bytes: int | None = None, chunk_bytes: int | None = None):
    """The message pass with the batch split into chunks of ``chunk_samples`` samples, each
    chunk of each layer one dask task.

    Layer by layer from the loss down, every chunk's messages δ^t are sent piece by piece
    (within ``budget_bytes``, as in the in-memory pass) and summed by their receivers; the
    tasks run in parallel on dask's threaded scheduler, or on a ``dask.distributed`` cluster
    when a ``Client`` is active. Each task returns its rows of S^t and, with ``stats``, the
    statistics of its messages, merged pairwise up a tree.

    With ``store`` each task also writes its samples' messages of every kept layer into a
    zarr store, a store chunk at a time: a store chunk holds as many whole samples as fit in
    ``budget_bytes`` (a divisor of ``chunk_samples``, so that no two tasks write one chunk).
    Without it, kept blocks are lazy dask arrays, chunked over ``chunk_samples`` samples,
    that send a chunk's messages again, whole, each time it is read: choose
    ``chunk_samples`` so that chunk_samples·N_{t-1}·N_t numbers fit in memory.
    """
    require("dask.array")
    from .messages import (
        DEFAULT_BUDGET_BYTES,
        DEFAULT_CHUNK_BYTES,
        _wanted,
        check_memory_options,
        check_statistics,
    )
    if net._record is None:
        raise MsgpassError("net.backward(backend='dask') was called before net.forward")
    if net.numbers is not None:
        raise MsgpassError("the dask backend runs float networks; exact and mp networks use "
                           "the in-memory backend")
    _check_chunk_samples(chunk_samples)
    budget_bytes = DEFAULT_BUDGET_BYTES if budget_bytes is None else budget_bytes
    chunk_bytes = DEFAULT_CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    record = net._record
    batch, T = record.values[0].shape[0], net.T
    wanted = _wanted(keep, T)
    for t, local in enumerate(record.partials, 1):
        if local.inputs.coupled:
            raise InputValueError(f"layer {t} ({net.labels[t - 1]}) couples the samples: the "
                                  f"dask backend streams samples independently; run BatchNorm "
                                  f"in eval mode, or use the in-memory backend")
    check_memory_options(record.partials, batch, budget_bytes, chunk_bytes, net.labels)
    names = check_statistics(record.partials, stats, net.labels)
    target = None
    if store is not None:
        target = _start_store(store, net, record, wanted, chunk_samples, budget_bytes)
    try:
        return _dask_pass(net, record, wanted, names, target, chunk_samples, budget_bytes,
                          chunk_bytes)
    except BaseException:          # a failed pass leaves no half-written store behind
        if target is not None:
            shutil.rmtree(target, ignore_errors=True)
        raise


def _dask_pass(net, record, wanted, names, target, chunk_samples, budget_bytes, chunk_bytes):
    """The pass itself, once dask_backward has checked its options (see there)."""
    dask = require("dask")
    da = require("dask.array")
    from .messages import MessageBlock, check_gradient, check_sums
    from .stats import MessageStats
    from .trace import Trace
    batch, T = record.values[0].shape[0], net.T
    rows = [(start, min(start + chunk_samples, batch)) for start in range(0, batch, chunk_samples)]
    arriving = np.full((batch, 1), 1.0 / batch, dtype=net.dtype)
    sums, blocks, grads, gathered = {T + 1: arriving}, {}, {}, {}
    for t in range(T, 0, -1):
        local = record.partials[t - 1]
        layout, label = local.inputs, net.labels[t - 1]
        for name, partial in local.params.items():
            grad = partial.gradient(arriving)
            check_gradient(t, label, name, grad)
            grads[f"{t}.{name}"] = grad
        # one graph node each for the partials and the sums arriving, shared by every task
        # (a distributed cluster receives them once)
        shared = dask.delayed(layout, traverse=False), dask.delayed(arriving, traverse=False)
        written = None
        if target is not None and t in wanted:
            written = (target, f"message{t}", _store_chunk(layout, batch, chunk_samples,
                                                          budget_bytes))
        tasks = [dask.delayed(_send_chunk, nout=2, pure=True)(
            t, label, *shared, start, stop, budget_bytes, chunk_bytes, names, written)
            for start, stop in rows]
        merged = _tree([task[1] for task in tasks], MessageStats.merge) if names else None
        pieces, merged = dask.compute([task[0] for task in tasks], merged)
        arriving = np.concatenate(pieces)
        check_sums(t, label, arriving)
        arriving.flags.writeable = False
        sums[t] = arriving
        if merged is not None:
            gathered[t] = merged.finished()
        if t in wanted and target is None:
            blocks[t] = MessageBlock(t, layout, _lazy_block(da, layout, sums[t + 1], batch,
                                                            chunk_samples))
    ordered = {f"{t}.{name}": grads[f"{t}.{name}"]
               for t, layer in enumerate(net.layers, 1) for name in layer.params}
    trace = Trace(labels=net.labels, values=record.values, partials=record.partials,
                  blocks=blocks, sums=sums, grads=ordered, loss=record.loss,
                  nondifferentiable=record.kinks, stats=gathered)
    if target is None:
        return trace
    _finish_store(trace, target)
    on_disk = {t: MessageBlock(t, record.partials[t - 1].inputs,
                               da.from_zarr(target, component=f"message{t}"))
               for t in sorted(wanted)}
    return replace(trace, blocks=on_disk)


def _check_chunk_samples(chunk_samples) -> None:
    if isinstance(chunk_samples, bool) or not isinstance(chunk_samples, (int, np.integer)) \
            or chunk_samples < 1:
        raise ValueError(f"chunk_samples must be a positive integer, got {chunk_samples!r}")


def _store_chunk(layout, batch: int, chunk_samples: int, budget_bytes: int) -> int:
    """Samples per store chunk of a layer's messages: as many whole samples as fit in the
    budget (at least one, however large one sample is), and a divisor of chunk_samples, so
    every task writes whole chunks of its own (a prime chunk_samples leaves only 1: choose
    one with small factors, such as a power of two)."""
    per_sample = int(np.prod(layout.message_shape(1))) * np.dtype(layout.dtype).itemsize
    fit = max(1, budget_bytes // per_sample)
    if chunk_samples >= batch:         # one task writes everything: no divisor needed
        return min(fit, batch)
    return max(d for d in range(1, min(fit, chunk_samples) + 1) if chunk_samples % d == 0)


def _send_chunk(t, label, layout, arriving, start, stop, budget_bytes, chunk_bytes, names,
                written):
    """One task: layer t's messages for samples start..stop−1, sent piece by piece. Returns
    their sums (stop − start, N_{t-1}) and their statistics (or None). With ``written`` =
    (store path, array name, samples per store chunk) it also writes the messages there, one
    store chunk of whole samples at a time (within the budget)."""
    from .messages import _send_layer
    from .stats import MessageStats
    stats = MessageStats.start(t, label, layout, names) if names else None
    labels = [label] * t          # only labels[t - 1] is read, for error messages
    step = written[2] if written is not None else stop - start
    sums = []
    for first in range(start, stop, step):
        last = min(first + step, stop)
        blocks = {}
        sums.append(_send_layer(t, layout, arriving[first:last], last - first, budget_bytes,
                                chunk_bytes, labels, keep=written is not None, chosen=None,
                                blocks=blocks, stats=stats, offset=first))
        if written is not None:
            zarr = require("zarr")
            zarr.open_array(written[0], path=written[1], mode="r+")[first:last] = \
                blocks[t].values
    if stats is not None:
        stats._scratch.clear()        # the task's result travels: no scratch with it
    return np.concatenate(sums), stats


def _tree(items, combine):
    """Combine delayed items pairwise, level by level: a balanced tree, so partial results
    are released as soon as their pair is merged and the depth is log2 of their number."""
    dask = require("dask")
    while len(items) > 1:
        pairs = [dask.delayed(combine, pure=True)(items[i], items[i + 1])
                 for i in range(0, len(items) - 1, 2)]
        items = pairs + ([items[-1]] if len(items) % 2 else [])
    return items[0]


def _lazy_block(da, layout, arriving, batch, chunk_samples):
    """Layer t's messages as a lazy dask array chunked over samples (sent again on access)."""
    index = da.arange(batch, chunks=chunk_samples)

    def send(rows_index, layout=layout, arriving=arriving):
        rows = slice(int(rows_index[0]), int(rows_index[-1]) + 1)
        return layout.send(arriving[rows], rows)
    if layout.diagonal:
        return index.map_blocks(send, chunks=(index.chunks[0], (layout.n_in,)), new_axis=[1],
                                dtype=layout.dtype)
    return index.map_blocks(send, chunks=(index.chunks[0], (layout.n_in,), (layout.n_out,)),
                            new_axis=[1, 2], dtype=layout.dtype)


def _start_store(store, net, record, wanted, chunk_samples, budget_bytes) -> str:
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
        layout = record.partials[t - 1].inputs
        shape = layout.message_shape(batch)
        dims = ("sample", f"node{t}") if layout.diagonal else ("sample", f"src{t}", f"dst{t}")
        group.create_array(f"message{t}", shape=shape, dtype=layout.dtype,
                           chunks=(_store_chunk(layout, batch, chunk_samples, budget_bytes),)
                           + shape[1:], fill_value=np.nan, dimension_names=dims,
                           config={"write_empty_chunks": True},
                           attributes={"stored": "diagonal" if layout.diagonal else "dense"})
    return str(path)


def _finish_store(trace, target: str) -> None:
    """Write the sums, values, gradients and statistics beside the streamed messages; mark
    the store complete last, so a run that died half-way leaves a store load_trace refuses."""
    rest = to_xarray(_without_blocks(trace))
    rest.attrs[COMPLETE] = False       # xarray rewrites the attributes: still incomplete
    rest.to_zarr(target, mode="a", consolidated=False, write_empty_chunks=True)
    _mark(Path(target), True, rest.attrs)


def _without_blocks(trace):
    return replace(trace, blocks={})
