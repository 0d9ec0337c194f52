"""Traces as labelled arrays (xarray).

One Dataset holds a whole trace. xarray gives a dimension one size per Dataset, so each layer
t has its own node dimensions ``src{t}`` (its N_{t-1} receiving nodes, layer t−1) and
``dst{t}`` (its N_t sending nodes); ``sample`` is shared. Variables:

* ``message{t}`` (sample, src{t}, dst{t}): every kept message δ^t_{n←n'}; for an elementwise
  layer only its diagonal, (sample, node{t}) (node n sends only to node n, so src and dst
  are one dimension there), with ``attrs["stored"] == "diagonal"``
  (``dense(ds, t)`` or ``ds.msgpass.dense(t)`` expands it); a coupled layer's block
  (BatchNorm in training) has no sample axis: (feature{t}, sample_in{t}, sample_out{t});
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

Image layers (convolutions, pools): the nodes stay numbered flat in C order, and
``src{t}``/``dst{t}`` carry the coordinates ``src{t}_channel``, ``src{t}_row``,
``src{t}_col`` (and ``dst{t}_…``) that say which (c, i, j) each node is
(``ds.incoming1.set_index(src1=["src1_channel", "src1_row", "src1_col"]).unstack("src1")``
gives (sample, channel, row, col)). A window block (a convolution's or an average pool's)
keeps its own axes, ``(sample, out_channel{t}, out_row{t}, out_col{t}, in_channel{t},
tap_row{t}, tap_col{t})`` (depthwise: ``channel{t}`` and no in_channel), as does a max pool's
one-hot route block; ``dense(ds, t)`` expands either to (sample, src{t}, dst{t}).

Attributes name each layer (``label{t}``) and its kind of local partials (``kind{t}``).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..graph.backward import GraphTrace
from ..graph.backward import block_variable as graph_block_variable
from ..partials import STORAGES
from .optional import require

__all__ = ["to_xarray", "graph_to_xarray", "dense", "block_dims", "register_accessor",
           "graph_label"]


def to_xarray(trace):
    """The trace as an ``xarray.Dataset`` (see the module docstring; a graph trace's layout is
    ``graph_to_xarray``'s)."""
    xr = require("xarray")
    register_accessor()
    if isinstance(trace, GraphTrace):
        return graph_to_xarray(trace)
    if trace.values[0].dtype == object:
        warnings.warn("an exact or mp trace is labelled and stored as float64: the numbers are "
                      "rounded (keep the trace itself for exact comparisons)",
                      stacklevel=_outside_msgpass())
    trace = trace.as_floats()
    T, batch = trace.T, trace.batch
    data, coords = {}, {"sample": np.arange(batch)}
    for t in range(1, T + 1):
        J = trace.partials[t - 1].inputs
        coords[f"src{t}"] = np.arange(J.n_in)
        coords[f"dst{t}"] = np.arange(J.n_out)
        for dim, shape in ((f"src{t}", _shape(trace, t - 1)), (f"dst{t}", _shape(trace, t))):
            if len(shape) == 3:    # an image's nodes, labelled: src1_channel, src1_row, ...
                for axis, index in zip(("channel", "row", "col"), np.indices(shape),
                                       strict=True):
                    coords[f"{dim}_{axis}"] = (dim, index.reshape(-1))
        data[f"incoming{t}"] = (("sample", f"src{t}"), trace.incoming[t])
        data[f"value{t}"] = (("sample", f"dst{t}"), trace.values[t])
        if t in trace.blocks:
            block = trace.blocks[t]
            if not J.samples_independent:   # no sample axis: every axis is the kind's own
                dims = tuple(f"{name}{t}" for name in J.block_dims)
                _sized(coords, dims, block.values.shape)
                data[f"message{t}"] = (dims, block.values, J.storage_attrs())
                continue
            rows = _rows(block.samples, coords)      # "sample", or "kept" for keep_samples
            data[f"message{t}"] = ((rows,) + block_dims(J, t, coords), block.values,
                                   J.storage_attrs())
    data["value0"] = (("sample", "src1"), trace.values[0])
    for t, stats in trace.stats.items():
        _statistics(data, coords, stats, block_dims(trace.partials[t - 1].inputs, t, coords),
                    f"{t}")
    for key, grad in trace.grads.items():
        t, name = key.split(".", 1)
        J = trace.partials[int(t) - 1].inputs
        if grad.shape == (J.n_in, J.n_out):        # a weight matrix
            dims = (f"src{t}", f"dst{t}")
        elif grad.shape == (J.n_out,):             # a bias
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


def _shape(trace, t: int) -> tuple[int, ...]:
    """The per-sample shape of z^t ((C, H, W) for an image), () when the trace has none."""
    shapes = getattr(trace, "shapes", ())
    return tuple(shapes[t]) if len(shapes) > t else ()


def graph_to_xarray(trace):
    """A GraphTrace as one Dataset. Each node v has its dimension ``n:{v}`` (its N entries,
    C order) and its rows ``sample`` (``one`` for a node of batch 1 shared by a batch of B;
    ``kept`` for blocks kept for some samples). Variables:

    * ``value:{v}`` and ``incoming:{v}`` (rows, n:{v}): forward values and the sums S_v
      (attribute ``shape``: the node's per-sample shape);
    * ``message:{w}:{i}``: the kept block of the edge from the i-th input of w, stored as its
      kind stores it (a diagonal one (rows, n:{w}); ``dense(ds, "w:i")`` expands it; a
      coupled one (feature:w:i, sample_in:w:i, sample_out:w:i)), with attributes ``source``,
      ``destination``, ``slot``;
    * ``grad:{node}.{name}``, ``param_message:{node}.{name}``: gradients and per-sample
      parameter messages;
    * ``mean:{w}:{i}``, ``absmax:{w}:{i}``, ``histogram:{w}:{i}``: statistics per edge;
    * ``seed``: what arrived at the output from above.

    Attributes: ``kind`` = "graph", ``output``, ``order``, ``batch``, and per node
    ``label:{v}`` (its op) and ``inputs:{v}``.
    """
    xr = require("xarray")
    if any(v.dtype == object for v in trace.values.values()):
        warnings.warn("an exact or mp trace is labelled and stored as float64: the numbers are "
                      "rounded (keep the trace itself for exact comparisons)",
                      stacklevel=_outside_msgpass())
    trace = trace.as_floats()
    graph, batch = trace.graph, trace.batch
    coords: dict = {"sample": np.arange(batch)}
    data: dict = {}

    def rows(count: int) -> str:
        if count == batch:
            return "sample"
        coords["one"] = np.arange(1)
        return "one"
    for v in trace.order:
        value = trace.values[v]
        coords[f"n:{v}"] = np.arange(value.shape[1])
        shape = {"shape": list(trace.shapes.get(v, (value.shape[1],)))}
        data[f"value:{v}"] = ((rows(len(value)), f"n:{v}"), value, shape)
        data[f"incoming:{v}"] = ((rows(len(value)), f"n:{v}"), trace.incoming[v], shape)
    for (w, slot), block in trace.blocks.items():
        J, source = block.partials, graph.nodes[w].inputs[slot]
        name, dims = graph_block_variable((w, slot), J, source)
        attrs = J.storage_attrs() | {"source": source, "destination": w, "slot": slot}
        if not J.samples_independent:   # no sample axis: every axis is the kind's own
            dims = tuple(f"{d}:{w}:{slot}" for d in J.block_dims)
            _sized(coords, dims, block.values.shape)
            data[name] = (dims, block.values, attrs)
            continue
        _sized(coords, dims, J.block_shape(1)[1:])
        where = _rows(block.samples, coords) if block.samples is not None else \
            rows(block.values.shape[0])
        data[name] = ((where,) + dims, block.values, attrs)
    for (w, slot), stats in trace.stats.items():
        J = trace.partials[w].inputs[slot]
        _, dims = graph_block_variable((w, slot), J, graph.nodes[w].inputs[slot])
        _sized(coords, dims, J.edge_shape)
        _statistics(data, coords, stats, dims, f":{w}:{slot}")
    for key, grad in trace.grads.items():
        dims = tuple(f"grad:{key}:{axis}" for axis in range(np.ndim(grad)))
        data[f"grad:{key}"] = (dims, np.asarray(grad))
        if key in trace.param_messages:
            messages = trace.param_messages[key]
            data[f"param_message:{key}"] = ((_param_rows(trace, coords)
                                             if trace.kept_samples is not None
                                             else rows(len(messages)),) + dims, messages)
    out = trace.output
    data["seed"] = ((rows(len(trace.seed)), f"n:{out}"), trace.seed)
    attrs = {"kind": "graph", "output": out, "order": list(trace.order), "batch": batch,
             **{f"label:{v}": graph_label(graph, v) for v in trace.order},
             **{f"inputs:{v}": list(graph.nodes[v].inputs) for v in trace.order}}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def graph_label(graph, name: str) -> str:
    """A node's op as stored with a graph trace ("input", "constant", "Affine(4→8)")."""
    node = graph.nodes[name]
    return node.op.describe() if node.op is not None else node.kind


def _statistics(data: dict, coords: dict, stats, dims: tuple[str, ...], suffix: str) -> None:
    """An edge's (a layer's) statistics as ``mean{suffix}``, ``absmax{suffix}`` (per edge,
    ``dims``) and ``histogram{suffix}`` (over the shared ``exponent`` coordinate)."""
    if stats.total is not None:
        data[f"mean{suffix}"] = (dims, stats.mean, {"samples": stats.samples})
    if stats.absmax is not None:
        data[f"absmax{suffix}"] = (dims, stats.absmax, {"samples": stats.samples})
    if stats.counts is not None:
        coords["exponent"] = np.arange(stats.counts.size) - stats.bias
        data[f"histogram{suffix}"] = (("exponent",), stats.counts, {
            "samples": stats.samples,
            "bins": "count of messages with 2**e <= |message| < 2**(e+1); the lowest bin "
                    "counts every message below the smallest normal number (zeros)"})


def _sized(coords: dict, dims: tuple[str, ...], shape: tuple[int, ...]) -> None:
    """Coordinates 0..n-1 for dimensions named here for the first time."""
    for dim, size in zip(dims, shape, strict=True):
        coords.setdefault(dim, np.arange(size))


def _outside_msgpass() -> int:
    """The stacklevel of the first caller outside msgpass, so a warning names user code."""
    package = str(Path(__file__).resolve().parents[1])   # msgpass/
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


def block_dims(J, t: int, coords: dict) -> tuple[str, ...]:
    """The dimensions of layer t's stored block after its rows (src{t}, dst{t}, or node{t}
    for a diagonal block: the kind's ``block_dims`` numbered by t), with their coordinates."""
    dims = tuple(f"{name}{t}" for name in J.block_dims)
    for dim, size in zip(dims, J.block_shape(1)[1:], strict=True):
        coords.setdefault(dim, np.arange(size))
    return dims


def dense(ds, t):
    """Layer t's message block of a Dataset as the full (sample, src{t}, dst{t}) DataArray
    (with ``step`` first for a store of appended traces); for a graph trace's Dataset ``t``
    names an edge, ``"node:slot"``, (node, slot), or a node with one input, and the result is
    (sample, n:{source}, n:{node}). A block stored in another layout
    (``attrs["stored"]``: a diagonal one) is expanded by the kind that stored it
    (msgpass.partials.STORAGES), with exact zeros on the non-edges: lazily, chunk by chunk,
    when the Dataset is lazy (a loaded store), at once when it is in memory."""
    if ds.attrs.get("kind") == "graph":
        return _graph_dense(ds, t)
    name = f"message{t}"
    if name not in ds:
        raise DataError(f"the dataset holds no messages of layer {t} (kept: "
                        f"{sorted(int(v[7:]) for v in ds.data_vars if v.startswith('message'))})")
    return _expanded(ds, ds[name], (f"src{t}", f"dst{t}"), f"layer {t}")


def _expanded(ds, var, dims: tuple[str, str], what: str):
    """A stored block ``var`` with its last two axes ``dims`` (receivers, senders): as it is
    when stored densely (a coupled block is its own dense layout), else expanded by the kind
    that stored it."""
    xr = require("xarray")
    stored = var.attrs.get("stored")
    if var.dims[-2:] == dims or stored == "dense":
        return var
    if stored not in STORAGES:
        raise DataError(f"{what}'s messages are stored as {stored!r}, a layout no kind of "
                        f"partials here knows (known: {sorted(STORAGES)})")
    full = STORAGES[stored].expand_stored(var.data if var.chunks is not None
                                          else np.asarray(var.values), dict(var.attrs))
    outer = var.dims[:full.ndim - 2]     # the rows (sample or kept), after step if any
    coords = {dim: ds[dim] for dim in outer if dim in ds.coords}
    coords |= {dims[0]: np.arange(full.shape[-2]), dims[1]: np.arange(full.shape[-1])}
    return xr.DataArray(full, dims=outer + dims, coords=coords, attrs={"stored": "dense"})


def _graph_dense(ds, edge):
    """A graph trace's block of edge ``"w:i"`` (or (w, i)): (rows, n:{source}, n:{w})."""
    order = list(ds.attrs.get("order", []))
    if isinstance(edge, str) and edge in order:        # a node: its edge from its one input
        inputs = list(ds.attrs.get(f"inputs:{edge}", []))
        if len(inputs) != 1:
            raise DataError(f"node {edge!r} has {len(inputs)} inputs {inputs}: name the edge "
                            f"as '{edge}:slot' (slot 0..{max(len(inputs) - 1, 0)})")
        edge = (edge, 0)
    elif isinstance(edge, str) and ":" in edge:
        edge = tuple(edge.rsplit(":", 1))
    if not (isinstance(edge, tuple) and len(edge) == 2):
        raise DataError(f"a graph trace's messages are named by edge: 'node:slot' (the edge from "
                        f"the slot-th input of node), (node, slot), or a node with one input; "
                        f"got {edge!r}")
    w, slot = edge
    name = f"message:{w}:{slot}"
    if name not in ds:
        kept = sorted(v[len("message:"):] for v in ds.data_vars if v.startswith("message:"))
        raise DataError(f"the dataset holds no messages of the edge {w}:{slot} (kept: {kept})")
    var = ds[name]
    return _expanded(ds, var, (f"n:{var.attrs['source']}", f"n:{var.attrs['destination']}"),
                     f"the edge {w}:{slot}")


def register_accessor() -> None:
    """``ds.msgpass`` on xarray Datasets (once, when msgpass first makes or loads one: xarray
    is not imported before it is needed)."""
    xr = require("xarray")
    if hasattr(xr.Dataset, "msgpass"):
        return

    @xr.register_dataset_accessor("msgpass")
    class MsgpassAccessor:
        """``ds.msgpass``: msgpass's view of a trace Dataset."""

        def __init__(self, ds):
            self._ds = ds

        def dense(self, t):
            """Layer t's messages as (sample, src{t}, dst{t}), diagonal blocks expanded
            (lazily for a loaded store); for a graph trace, the edge ``"node:slot"`` (or
            a node with one input) as (sample, n:{source}, n:{node}). See
            msgpass.scale.dense."""
            return dense(self._ds, t)
