"""Traces in zarr stores: chunked over samples, compressed, exact, and safe to read back.

A store is written completely or not at all: a first write that fails leaves nothing; every
chunk is written, even all-zero ones; completion is marked last, with a manifest of every
array's shape and chunk count, so that ``load_trace`` refuses a store whose writer stopped
half-way or that lost an array or a chunk since. ``append_trace`` adds traces along a
``step`` dimension, refusing any trace kept another way before a byte is written, and rolls
back an append that fails or is interrupted (``roll_back`` for one whose process was killed).

Every chunk is compressed with zstd and its content checksum, so that a chunk damaged after it
was written (garbage, a cut, one flipped bit) is a DataError naming the store, the array and
the chunk when it is read. (Stores written before msgpass wrote the checksum still load; a
flipped bit in one of their chunks is found only if zstd cannot decode it.)
"""

from __future__ import annotations

import shutil
import uuid
import warnings
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..validate import positive_int
from .labels import graph_label, register_accessor, to_xarray
from .optional import require

__all__ = ["save_trace", "load_trace", "append_trace", "roll_back", "write_new", "mark",
           "compressors", "COMPLETE", "MANIFEST", "APPENDING", "WHOLE"]

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


def compressors() -> tuple:
    """The codecs of every chunk msgpass writes: zstd (zarr's default, level 0) with its
    content checksum, which zarr's default leaves off: without it most flipped bits in a
    chunk decode, silently, to other numbers."""
    zarr = require("zarr")
    return (zarr.codecs.ZstdCodec(level=0, checksum=True),)


def save_trace(trace, path, chunk_samples: int = 256) -> Path:
    """Write the trace as a zarr store at ``path`` (a new directory), chunked over samples
    (``chunk_samples`` per chunk) and compressed with zarr's default codec. Round trips are
    exact (bitwise for floats). A trace of the dask backend is written chunk by chunk."""
    require("zarr")
    positive_int(chunk_samples, "chunk_samples")
    path = Path(path)
    if path.exists():
        raise DataError(f"{path} exists; msgpass does not overwrite a store: remove it or "
                        f"choose another path")
    write_new(to_xarray(trace), path, chunk_samples)
    return path


def _chunked(ds, chunk_samples: int):
    """The Dataset as dask arrays of ``chunk_samples`` samples (one step) per chunk, so that
    each written zarr chunk is one dask chunk, whatever chunks the trace's blocks had."""
    require("dask")
    sizes = {"sample": chunk_samples} if "sample" in ds.dims else {}
    if "step" in ds.dims:
        sizes["step"] = 1
    return ds.chunk(sizes)


def write_new(ds, path: Path, chunk_samples: int) -> None:
    """Write a new store; on failure remove what was written, so a retry finds no debris."""
    ds = _chunked(ds, chunk_samples)
    ds.attrs[COMPLETE] = False
    encoding = {name: {"compressors": compressors()}
                | ({"chunks": tuple(c[0] for c in ds[name].chunks)} if ds[name].chunks else {})
                for name in ds.variables}
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
    mark(path, True)


def mark(path: Path, complete: bool, attrs: dict | None = None) -> None:
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
    architecture. A chunk that is present but corrupt is found when it is read: a DataError
    naming the store, the array and the chunk."""
    xr = require("xarray")
    require("zarr")
    require("dask")
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such trace store")
    _check_complete(path)
    try:                       # not yet dask arrays: _checked makes them, chunk by chunk
        ds = xr.open_zarr(path, consolidated=False, chunks=None)
    except Exception as err:   # zarr and xarray raise many kinds for a broken store
        raise DataError(f"{path}: not a readable msgpass trace store ({err})") from None
    checked = {name: _checked(var, path, name, ds) for name, var in ds.variables.items()
               if name not in ds.indexes}
    ds = ds.assign_coords({k: v for k, v in checked.items() if k in ds.coords}) \
        .assign({k: v for k, v in checked.items() if k not in ds.coords})
    for key in (COMPLETE, MANIFEST, APPENDING, WHOLE):
        ds.attrs.pop(key, None)
    register_accessor()
    if network is not None:
        _check_network(ds, network, path)
    return ds


class _CheckedReads:
    """One stored array read a chunk at a time (dask asks for a chunk's slices): a chunk that
    cannot be decoded (garbage, a cut, a checksum that does not match) is a DataError naming
    the store, the array and the chunk, not zarr's bare RuntimeError from inside dask."""

    def __init__(self, variable, path: Path, name: str, chunks: tuple[int, ...], steps):
        self.variable, self.path, self.name, self.chunks = variable, path, name, chunks
        self.steps = steps                       # the step coordinate's values, or None
        self.shape, self.dtype, self.ndim = variable.shape, variable.dtype, variable.ndim

    def __getitem__(self, key) -> np.ndarray:
        try:
            return np.asarray(self.variable[key].values)
        except Exception as err:
            raise DataError(f"{self.path}: array {self.name}, chunk {self._where(key)} is "
                            f"corrupt ({type(err).__name__}: {err}); it was damaged after it "
                            f"was written: write it again (the other chunks still read)") \
                from None

    def _where(self, key) -> str:
        key = key if isinstance(key, tuple) else (key,)
        index, parts = [], []
        for dim, size, chunk, part in zip(self.variable.dims, self.shape, self.chunks, key,
                                           strict=False):
            start = (part.start or 0) if isinstance(part, slice) else int(part)
            stop = part.stop if isinstance(part, slice) and part.stop is not None else size
            index.append(start // chunk)
            if dim == "step" and self.steps is not None and stop - start == 1:
                parts.append(f"step {self.steps[start]}")
            elif chunk < size:
                parts.append(f"{dim} {start}:{stop}")
        return str(tuple(index)) + (f" ({', '.join(parts)})" if parts else "")


def _checked(var, path: Path, name: str, ds):
    """The variable ``var`` (lazy, read through xarray's decoding) on a dask array of the
    store's chunks whose reads name the store, the array and the chunk when one is corrupt."""
    da = require("dask.array")
    chunks = tuple(var.encoding.get("chunks") or var.shape)
    steps = ds["step"].values.tolist() if "step" in ds.indexes else None
    reads = _CheckedReads(var, path, name, chunks, steps)
    data = da.from_array(reads, chunks=chunks, name=f"msgpass-load-{name}-{uuid.uuid4().hex}",
                         meta=np.empty((0,) * var.ndim, var.dtype), lock=False)
    return var.copy(data=data)


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
    if ds.attrs.get("kind") == "graph":
        order = list(ds.attrs["order"])
        mine = [graph_label(network, v) if v in network.nodes else None for v in order]
        if [ds.attrs.get(f"label:{v}") for v in order] != mine:
            raise DataError(f"{path} holds traces of {_describe(ds.attrs)}, not of this graph")
        return
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
    positive_int(chunk_samples, "chunk_samples")
    ds = to_xarray(trace).expand_dims(step=[int(step)])
    path = Path(path)
    if not path.exists():
        write_new(ds, path, chunk_samples)
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
    mark(path, False, marks)
    try:
        ds.to_zarr(path, mode="a", append_dim="step", consolidated=False,
                   write_empty_chunks=True)
    except BaseException:          # Ctrl-C included: put the store back as it was
        roll_back(path)
        raise
    mark(path, True, {APPENDING: None, WHOLE: None})
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
    mark(path, True, {APPENDING: None, WHOLE: None})
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
    if attrs.get("kind") == "graph":
        nodes = [k[len("label:"):] for k in attrs if k.startswith("label:")]
        return f"the graph of nodes {nodes} at batch {attrs.get('batch')}"
    labels = [attrs[k] for k in sorted((k for k in attrs if k.startswith("label")),
                                       key=lambda k: int(k[5:]))]
    return f"{' → '.join(labels)} at batch {attrs.get('batch')}"
