"""Traces in the scientific Python stack: labelled arrays (xarray) and chunked, compressed
storage (zarr). An optional extra: ``pip install "msgpass[scale]"``; without it these
functions say what to install.

One Dataset holds a whole trace. xarray gives a dimension one size per Dataset, so each layer
t has its own node dimensions ``src{t}`` (its N_{t-1} receiving nodes, layer t−1) and
``dst{t}`` (its N_t sending nodes); ``sample`` is shared. Variables:

* ``message{t}`` (sample, src{t}, dst{t}): every kept message δ^t_{n←n'}; for an elementwise
  layer only its diagonal, (sample, src{t}), with ``attrs["stored"] == "diagonal"``
  (``dense(ds, t)`` or ``ds.msgpass.dense(t)`` expands it);
* ``incoming{t}`` (sample, src{t}): the node sums S^t, for t = 1..T;
* ``value0`` (sample, src1) and ``value{t}`` (sample, dst{t}): the forward values;
* ``grad{t}_{name}``: the parameter gradients ("W": (src{t}, dst{t}), "b": (dst{t},)).

Attributes name each layer (``label{t}``) and its kind of local partials (``kind{t}``).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from .errors import DataError, MsgpassError

__all__ = ["to_xarray", "save_trace", "load_trace", "append_trace", "dense", "require"]

EXTRA = 'pip install "msgpass[scale]"'


def require(module: str):
    """Import an optional dependency or say what to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MsgpassError(f"this needs {module}, part of the optional extra: {EXTRA}") from None


def to_xarray(trace):
    """The trace as an ``xarray.Dataset`` (see the module docstring)."""
    xr = require("xarray")
    trace = trace.as_floats()
    T, batch = trace.T, trace.batch
    data, coords = {}, {"sample": np.arange(batch)}
    for t in range(1, T + 1):
        layout = trace.partials[t - 1].inputs
        coords[f"src{t}"] = np.arange(layout.n_in)
        coords[f"dst{t}"] = np.arange(layout.n_out)
        data[f"incoming{t}"] = (("sample", f"src{t}"), trace.incoming(t))
        data[f"value{t}"] = (("sample", f"dst{t}"), trace.value(t))
        if t in trace.blocks:
            block = trace.blocks[t]
            if block.samples is not None:
                raise DataError(f"layer {t}'s messages were kept for samples "
                                f"{block.samples.tolist()} only; save a trace that kept every "
                                f"sample")
            if block.kind == "coupled":
                raise DataError(f"layer {t} ({trace.labels[t - 1]}) couples the samples; its "
                                f"(N, B, B) block has no (sample, src, dst) form to save yet")
            if block.kind == "diagonal":
                data[f"message{t}"] = (("sample", f"src{t}"), block.values,
                                       {"stored": "diagonal"})
            else:
                data[f"message{t}"] = (("sample", f"src{t}", f"dst{t}"), block.values,
                                       {"stored": "dense"})
    data["value0"] = (("sample", "src1"), trace.value(0))
    for key, grad in trace.grads.items():
        t, name = key.split(".", 1)
        dims = (f"src{t}", f"dst{t}") if grad.ndim == 2 else (f"dst{t}",)
        data[f"grad{t}_{name}"] = (dims, grad)
    attrs = {"T": T, "batch": batch, "loss": float(trace.loss),
             **{f"label{t}": trace.labels[t - 1] for t in range(1, T + 1)},
             **{f"kind{t}": trace.partials[t - 1].inputs.kind for t in range(1, T + 1)}}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def dense(ds, t: int):
    """Layer t's message block of a Dataset as the full (sample, src, dst) DataArray."""
    xr = require("xarray")
    name = f"message{t}"
    if name not in ds:
        raise DataError(f"the dataset holds no messages of layer {t} (kept: "
                        f"{sorted(int(v[7:]) for v in ds.data_vars if v.startswith('message'))})")
    var = ds[name]
    if var.attrs.get("stored") != "diagonal":
        return var
    values = np.asarray(var.values)          # read on request: (sample, node)
    size = values.shape[1]
    full = np.zeros((values.shape[0], size, size), dtype=values.dtype)   # exact +0.0 off
    full[:, np.arange(size), np.arange(size)] = values                    # the diagonal
    return xr.DataArray(full, dims=("sample", f"src{t}", f"dst{t}"),
                        coords={"sample": ds["sample"], f"src{t}": ds[f"src{t}"],
                                f"dst{t}": np.arange(size)}, attrs={"stored": "dense"})


def _register_accessor():
    try:
        xr = importlib.import_module("xarray")
    except ImportError:
        return

    @xr.register_dataset_accessor("msgpass")
    class MsgpassAccessor:
        def __init__(self, ds):
            self._ds = ds

        def dense(self, t: int):
            return dense(self._ds, t)


def save_trace(trace, path, chunk_samples: int = 256) -> Path:
    """Write the trace as a zarr store at ``path`` (a new directory), chunked over samples
    (``chunk_samples`` per chunk) and compressed with zarr's default codec. Round trips are
    exact (bitwise for floats)."""
    require("zarr")
    ds = to_xarray(trace)
    path = Path(path)
    if path.exists():
        raise DataError(f"{path} exists; msgpass does not overwrite a saved trace")
    chunks = {name: _chunks(ds[name], chunk_samples) for name in ds.data_vars}
    # consolidated metadata is not part of zarr format 3: off, so no store depends on it
    ds.to_zarr(path, mode="w-", encoding={name: {"chunks": c} for name, c in chunks.items()},
               consolidated=False)
    return path


def _chunks(var, chunk_samples: int) -> tuple[int, ...]:
    return tuple(min(chunk_samples, n) if dim in ("sample", "step") else n
                 for dim, n in zip(var.dims, var.shape, strict=True))


def load_trace(path):
    """A saved trace (or a store of traces appended by step) as a lazy xarray Dataset: the
    arrays are dask arrays read chunk by chunk on demand."""
    xr = require("xarray")
    require("zarr")
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such trace store")
    try:
        ds = xr.open_zarr(path, consolidated=False)
    except Exception as err:   # zarr and xarray raise many kinds for a broken store
        raise DataError(f"{path}: not a readable msgpass trace store ({err})") from None
    if "T" not in ds.attrs:
        raise DataError(f"{path}: a zarr store, but not one msgpass wrote (no layer attributes)")
    return ds


def append_trace(trace, path, step: int, chunk_samples: int = 256) -> Path:
    """Append ``trace`` to the store at ``path`` along a ``step`` dimension (creating it on
    the first call), e.g. every k training steps. A trace of another architecture or batch
    size is refused before anything is written."""
    require("zarr")
    ds = to_xarray(trace).expand_dims(step=[step])
    path = Path(path)
    if not path.exists():
        chunks = {name: _chunks(ds[name], chunk_samples) for name in ds.data_vars}
        ds.to_zarr(path, mode="w-", encoding={n: {"chunks": c} for n, c in chunks.items()},
                   consolidated=False)
        return path
    stored = load_trace(path)
    mine = {k: v for k, v in ds.attrs.items() if k.startswith(("label", "kind", "T", "batch"))}
    theirs = {k: v for k, v in stored.attrs.items() if k in mine}
    if mine != theirs or dict(stored.sizes) | {"step": 0} != dict(ds.sizes) | {"step": 0}:
        raise DataError(f"{path} holds traces of {_describe(theirs)}, not of "
                        f"{_describe(mine)}; append to a store of the same network and batch")
    if step in stored["step"].values:
        raise DataError(f"{path} already holds step {step}")
    ds.to_zarr(path, mode="a", append_dim="step", consolidated=False)
    return path


def _describe(attrs: dict) -> str:
    labels = [attrs[k] for k in sorted((k for k in attrs if k.startswith("label")),
                                       key=lambda k: int(k[5:]))]
    return f"{' → '.join(labels)} at batch {attrs.get('batch')}"


_register_accessor()


# -- the dask backend ---------------------------------------------------------------------

def dask_backward(net, chunk_samples: int = 256, keep="sums"):
    """The message pass with every layer's messages as a dask array chunked over samples.

    Layer by layer from the loss down, the block δ^t is a lazy array whose chunks are sent
    by the layer's structured partials for ``chunk_samples`` samples at a time; the node sums
    S^t are its reduction over senders (computed, since layer t−1 needs them), and the
    parameter gradients come from S^{t+1} as in the in-memory pass. Nothing larger than a
    few chunks is held at once. With ``keep="all"`` (or a list of layers) the trace keeps the
    lazy blocks: ``trace.block(t).values`` is a dask array, recomputed chunk by chunk on
    access. Runs on dask's threaded scheduler, or on a ``dask.distributed`` cluster when a
    ``Client`` is active.
    """
    da = require("dask.array")
    from .messages import MessageBlock, _wanted
    from .trace import Trace
    if net._record is None:
        raise MsgpassError("net.backward(backend='dask') was called before net.forward")
    if isinstance(chunk_samples, bool) or not isinstance(chunk_samples, (int, np.integer)) \
            or chunk_samples < 1:
        raise ValueError(f"chunk_samples must be a positive integer, got {chunk_samples!r}")
    record = net._record
    batch, T = record.values[0].shape[0], net.T
    wanted = _wanted(keep, T)
    if any(p.inputs.coupled for p in record.partials):
        raise MsgpassError("the dask backend streams samples independently; a layer that "
                           "couples the samples (BatchNorm in training mode) needs them all")
    arriving = np.full((batch, 1), 1.0 / batch, dtype=net.dtype)
    sums, blocks, grads = {T + 1: arriving}, {}, {}
    index = da.arange(batch, chunks=chunk_samples)
    for t in range(T, 0, -1):
        local = record.partials[t - 1]
        layout = local.inputs
        for name, partial in local.params.items():
            grads[f"{t}.{name}"] = partial.gradient(arriving)

        def send(rows_index, layout=layout, arriving=arriving):
            rows = slice(int(rows_index[0]), int(rows_index[-1]) + 1)
            return layout.send(arriving[rows], rows)
        if layout.diagonal:
            messages = index.map_blocks(send, chunks=(index.chunks[0], (layout.n_in,)),
                                        new_axis=[1], dtype=layout.dtype)
            total = messages
        else:
            messages = index.map_blocks(
                send, chunks=(index.chunks[0], (layout.n_in,), (layout.n_out,)),
                new_axis=[1, 2], dtype=layout.dtype)
            total = messages.sum(axis=2)
        arriving = np.asarray(total.compute())
        arriving.flags.writeable = False
        sums[t] = arriving
        if t in wanted:
            blocks[t] = MessageBlock(t, layout, messages)
    ordered = {f"{t}.{name}": grads[f"{t}.{name}"]
               for t, layer in enumerate(net.layers, 1) for name in layer.params}
    return Trace(labels=net.labels, values=record.values, partials=record.partials,
                 blocks=blocks, sums=sums, grads=ordered, loss=record.loss,
                 nondifferentiable=record.kinks)
