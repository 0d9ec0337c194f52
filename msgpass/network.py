"""Sequential: runs layers forward, keeps their local partials, and hands them to the
message pass. It knows nothing of drawing, verification or training."""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from .engine import BACKENDS, run
from .errors import DtypeError, ShapeError, StateError
from .layers.base import Layer, run_layer
from .messages import chain_steps
from .naming import internal_keys, shown_all
from .numbers import FLOAT_DTYPES, NumberMode, arithmetic, is_number_mode, mode_of
from .partials import LocalPartials
from .streaming import DEFAULT_BUDGET_BYTES, DEFAULT_CHUNK_BYTES, wanted_layers
from .trace import Trace, block_variable
from .validate import as_batch, positive_int

__all__ = ["Sequential", "ParamDict", "ForwardRecord", "BACKENDS"]


class ParamDict(MutableMapping):
    """The network's parameters as ``"t.name" -> ndarray``, t the 1-based layer index (a
    graph's as ``"node.name"``: built from a mapping of key to array).

    The arrays are the layers' own: writing into them changes the network. A key may also be
    given as a pair, ``params[1, "W"]`` (``params["affine1", "W"]`` in a graph). Assigning a
    key (``params["1.W"] = new``) copies ``new`` into the existing array after checking its
    shape, so the network changes then too. An imported model shows its parameters under
    their names there, in their shapes (``names``: msgpass.naming): the arrays are then views
    of the layers' own (a transposed weight too), and writing into them changes the network.
    """

    def __init__(self, layers: Sequence[Layer] | Mapping[str, np.ndarray],
                 names: Mapping | None = None) -> None:
        arrays = dict(layers) if isinstance(layers, Mapping) else {
            f"{t}.{name}": arr for t, layer in enumerate(layers, 1)
            for name, arr in layer.params.items()}
        self._arrays = shown_all(names, arrays)

    def __getitem__(self, key: str) -> np.ndarray:
        if isinstance(key, tuple) and len(key) == 2:   # (t or node, name): "t.name"
            key = f"{key[0]}.{key[1]}"
        try:
            return self._arrays[key]
        except KeyError:
            raise KeyError(
                f"no parameter {key!r}; the parameters are {list(self._arrays)}") from None

    def __setitem__(self, key: str, value) -> None:
        target = self[key]
        value = np.asarray(value)
        if value.shape != target.shape:
            raise ShapeError(f"parameter {key} has shape {target.shape}, got {value.shape}")
        if value.dtype.kind not in "iuf":
            raise DtypeError(f"parameter {key} must be real numbers, got dtype {value.dtype}")
        np.copyto(target, value, casting="unsafe")

    def __delitem__(self, key: str) -> None:
        raise TypeError("parameters cannot be deleted from a network")

    def copy(self) -> dict[str, np.ndarray]:
        """A plain dict of copies of the arrays: a snapshot that later training won't change."""
        return {k: v.copy() for k, v in self._arrays.items()}

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k!r}: {v.shape}" for k, v in self._arrays.items())
        return f"ParamDict({{{shapes}}})"


@dataclass(frozen=True)
class ForwardRecord:
    """Everything one forward pass leaves for the backward (``net.record``): kept until the
    next forward, and read-only (tuples, read-only arrays, a read-only mapping).

    Attributes
    ----------
    values : tuple of ndarray
        z^0 … z^T.
    partials : tuple of LocalPartials
        J^t and K^t for t = 1..T.
    saved : tuple
        What each layer's forward returned for its backward (``saved[t-1]`` for layer t);
        ``net.next_step()`` hands it back to the layers (BatchNorm folds the batch's
        statistics in).
    kinks : dict of int to bool ndarray
        t -> (B, N_{t-1}): the inputs that sat exactly on a non-differentiable point.
    loss : float
        The batch-mean loss L (a Fraction or an mpf for exact and mp networks).
    shapes : tuple of tuple of int
        The per-sample shape of each z^t ((C, H, W) for an image; ``values`` are kept flat,
        (B, N_t), in C order).
    owner : object
        The network that made it (its identity token): ``restore`` takes back only its own.
    weights : dict of str to tuple
        A fingerprint (shape, dtype, CRC-32 of the bytes) of every parameter as this pass
        saw it: ``Sequential.changed_since_forward`` compares today's weights with it.
    """

    values: tuple[np.ndarray, ...]
    partials: tuple[LocalPartials, ...]
    saved: tuple[Any, ...]
    kinks: Mapping[int, np.ndarray]
    loss: float
    owner: object = field(default=None, repr=False, compare=False)
    shapes: tuple = ()
    weights: Mapping[str, tuple] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        for name in ("values", "partials", "saved", "shapes"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for array in (*self.values, *self.kinks.values()):
            array.flags.writeable = False   # a record of this pass: nothing changes it
        object.__setattr__(self, "kinks", MappingProxyType(dict(self.kinks)))


def _fingerprints(params) -> dict[str, tuple]:
    """(shape, dtype, checksum) of every parameter: a forward's record of the weights it saw
    (O(parameters), against the forward's O(batch × parameters))."""
    out = {}
    for key, array in params.items():
        a = np.ascontiguousarray(array)
        if a.dtype == object:     # exact or mp numbers: their values, not their addresses
            check = hash(tuple(a.ravel().tolist()))
        else:
            check = zlib.crc32(a.view(np.uint8).ravel())
        out[key] = (a.shape, a.dtype.str, check)
    return out


def _first_width(layers: Sequence[Layer]) -> int | None:
    """The input width the first layers fix: that of the first layer that requires one,
    unless a layer before it changes the width in a way not known before it runs (an image
    layer), when nothing is known."""
    for layer in layers:
        if layer.input_width is not None:
            return layer.input_width
        if layer.takes_images or layer.output_width(None) is not None:
            return None
    return None


class Sequential:
    """A chain of layers g^T ∘ … ∘ g^1 ending in a loss layer.

    Parameters
    ----------
    layers : sequence of Layer
        The last must be a loss layer (SoftmaxCrossEntropy, NLLLoss, MSELoss) and no other
        may be. Widths must agree where they are known (an Affine fixes them).
    dtype : float64 or float32, optional
        The precision of every computation. By default that of the parameters (float64 for
        a network without any); given, it must agree with them.
    input_width : int, optional
        N_0. By default the first width a layer fixes (an Affine's n_in; None if no layer
        fixes one before a layer that may change it); given, the layers must agree with it
        and every input is checked against it.
    input_shape : tuple of int, optional
        The per-sample shape of an image input, (C, H, W): the layers' shapes are checked
        now, and inputs may come as (B, C, H, W) or as flat rows (B, C·H·W). Without it a
        network that starts with an image layer takes (B, C, H, W) batches as they are.

    Examples
    --------
    >>> import msgpass as mp, numpy as np
    >>> net = mp.Sequential([mp.Affine(4, 8, seed=0), mp.ReLU(), mp.Affine(8, 3, seed=1),
    ...                      mp.SoftmaxCrossEntropy()])
    >>> x = np.random.default_rng(0).standard_normal((5, 4))
    >>> loss = net.forward(x, [0, 1, 2, 0, 1])
    >>> trace = net.backward()
    >>> trace.message(1).shape
    (5, 4, 8)
    """

    def __init__(self, layers: Sequence[Layer], dtype=None, input_width: int | None = None,
                 input_shape: Sequence[int] | None = None) -> None:
        self._identity = object()   # what this network's forward records carry as their owner
        layers = list(layers)
        if not layers:
            raise ShapeError("a Sequential needs at least one layer (a loss layer)")
        for t, layer in enumerate(layers, 1):
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {t} is {layer!r}, not a msgpass layer")
            if layer.is_loss and t != len(layers):
                raise ShapeError(f"layer {t} ({layer.describe()}) is a loss layer; only the last "
                                 f"layer (layer {len(layers)}) may be one")
        if not layers[-1].is_loss:
            raise ShapeError(f"the last layer must be a loss layer (SoftmaxCrossEntropy, NLLLoss "
                             f"or MSELoss), got layer {len(layers)} ({layers[-1].describe()})")
        if input_shape is not None:
            input_shape = tuple(positive_int(n, "input_shape", ShapeError) for n in input_shape)
            size = int(np.prod(input_shape))
            if input_width is not None and input_width != size:
                raise ShapeError(f"input_width={input_width} disagrees with input_shape="
                                 f"{input_shape} ({size} entries)")
            input_width = size
            shape = input_shape
            for t, layer in enumerate(layers, 1):
                try:
                    shape = layer.output_shape(shape)
                except ShapeError as err:
                    raise ShapeError(f"layer {t} ({layer.describe()}): {err}") from None
        if input_width is not None:
            input_width = positive_int(input_width, "input_width", ShapeError)
        width = input_width
        for t, layer in enumerate(layers, 1):
            try:
                width = layer.output_width(width)
            except ShapeError as err:
                raise ShapeError(f"layer {t} ({layer.describe()}) {err}") from None
        if input_width is None:
            input_width = _first_width(layers)
        self.input_width = input_width
        self.input_shape = input_shape
        self.numbers: NumberMode | None = None   # exact or mp arithmetic (astype)
        dtypes = {arr.dtype for layer in layers for arr in layer.params.values()}
        if dtypes == {np.dtype(object)} or is_number_mode(dtype):
            self._adopt_numbers(layers, None if dtype is None else arithmetic(dtype))
            return
        if len(dtypes) > 1:
            raise DtypeError(f"the layers' parameters mix dtypes {sorted(map(str, dtypes))}; "
                             f"build them with one dtype or use net.astype(dtype)")
        inferred = dtypes.pop() if dtypes else np.dtype(np.float64)
        self.dtype = inferred if dtype is None else arithmetic(dtype)
        if self.dtype not in FLOAT_DTYPES:
            raise DtypeError(f"a network computes in float64 or float32, got {self.dtype}")
        has_params = any(layer.params for layer in layers)
        if has_params and inferred != self.dtype:
            raise DtypeError(f"dtype={self.dtype} was asked for, but the parameters are "
                             f"{inferred}; build them with that dtype or use net.astype")
        self.layers = layers
        # msgpass key "t.name" → (the name shown, transposed): an imported model's (naming)
        self.param_names: dict = {}
        self.input_name = "x"          # what trace.grad calls ∂L/∂x
        self.spec: str | None = None   # set by build_network: the spec and seed it came from
        self.seed: int | None = None
        self._record: ForwardRecord | None = None

    @property
    def record(self) -> ForwardRecord | None:
        """What the last successful ``forward`` left for the backward (read-only), or None.
        Keep it to put it back later with ``restore``."""
        return self._record

    def restore(self, record: ForwardRecord | None) -> None:
        """Put back a record taken from ``net.record`` (of this network), e.g. after running
        other batches, so that ``backward`` and ``next_step`` see that forward again."""
        if record is not None and (not isinstance(record, ForwardRecord)
                                   or record.owner is not self._identity):
            what = ("a record of another network" if isinstance(record, ForwardRecord)
                    else repr(record))
            raise StateError(f"restore takes a record of this network's own forward pass "
                             f"(net.record) or None, got {what}")
        self._record = record

    def _adopt_numbers(self, layers: list[Layer], mode: NumberMode | None) -> None:
        """A network on exact Fractions or mpmath numbers (made by ``astype``)."""
        found = {mode_of(arr) for layer in layers for arr in layer.params.values()}
        mode = mode if isinstance(mode, NumberMode) else (found.pop() if len(found) == 1
                                                          else None)
        if mode is None or found - {mode}:
            raise DtypeError("the layers' parameters mix number kinds; use net.astype(...)")
        if mode.exact:
            refused = [f"layer {t} ({layer.describe()})" for t, layer in enumerate(layers, 1)
                       if not layer.rational]
            if refused:
                raise DtypeError(f"exact mode needs layers that keep rational numbers rational "
                                 f"(Affine, Conv2d, the pools, Flatten, ReLU, MSELoss, "
                                 f"NLLLoss); these compute exp, log, tanh or a square root: "
                                 f"{', '.join(refused)}. Use an arbitrary-precision mode such "
                                 f"as 'mp:50' for them")
        self.numbers = mode
        self.dtype = np.dtype(object)
        self.layers = layers
        self.param_names, self.input_name = {}, "x"
        self.spec = None
        self.seed = None
        self._record = None

    # -- description ----------------------------------------------------------------------
    @property
    def T(self) -> int:
        """Number of layers; layer T is the loss."""
        return len(self.layers)

    @property
    def labels(self) -> list[str]:
        """``labels[t-1]`` names layer t, e.g. ``"Affine(4→8)"``."""
        return [layer.describe() for layer in self.layers]

    @property
    def params(self) -> ParamDict:
        """Parameters ``"t.name" -> ndarray`` (the layers' own arrays, not copies); for an
        imported model, under their names there (``param_names``)."""
        return ParamDict(self.layers, self.param_names)

    def param_layer(self, key: str) -> int:
        """The layer t a parameter key (as ``params`` shows it) belongs to."""
        return int(internal_keys(self.param_names).get(key, key).split(".", 1)[0])

    def __repr__(self) -> str:
        made = f"  # build_network({self.spec!r}, seed={self.seed})" if self.spec else ""
        return f"Sequential([{', '.join(self.labels)}]){made}"

    def astype(self, dtype) -> Sequential:
        """A copy of the network with parameters in ``dtype``: float64 or float32, or a
        number mode — ``"exact"`` (Fractions; floats convert exactly) or ``"mp:N"`` (mpmath
        at N significant digits, an optional extra)."""
        target = arithmetic(dtype)
        clone = Sequential([layer.astype(target) for layer in self.layers], dtype=target,
                           input_width=self.input_width, input_shape=self.input_shape)
        clone.param_names, clone.input_name = dict(self.param_names), self.input_name
        return clone

    # -- modes --------------------------------------------------------------------------------
    def train(self) -> Sequential:
        """Training mode (the default): Dropout drops, BatchNorm uses the batch's statistics.
        Returns the network."""
        for layer in self.layers:
            layer.train()
        return self

    def eval(self) -> Sequential:
        """Evaluation mode: Dropout is the identity, BatchNorm uses its running statistics.
        Returns the network."""
        for layer in self.layers:
            layer.eval()
        return self

    def next_step(self, saved: Sequence[Any] | None = None) -> None:
        """End a training step: every layer sees what its forward saved for this step's batch
        (``saved``, one entry per layer, by default the last forward's, ``net.record.saved``):
        Dropout moves on to fresh masks, BatchNorm folds the batch's statistics into its
        running ones. A step whose gradients came from ``mp.backprop`` passes its result's
        ``saved``."""
        if saved is None:
            saved = self._record.saved if self._record is not None else [None] * self.T
        for layer, kept in zip(self.layers, saved, strict=True):
            layer.next_step(kept)

    # -- running --------------------------------------------------------------------------
    def forward(self, x, target=None) -> float:
        """Run the layers on a batch, keep z^t and the local partials, return the loss.

        Parameters
        ----------
        x : array_like, shape (B, N_0) or (N_0,); (B, C, H, W) for an image input
            Converted to the network's dtype; never modified.
        target : array_like
            What the loss layer expects: labels (B,) or probability rows (B, K) for the
            classification losses, values (B, N) for MSELoss.

        Returns
        -------
        float
            The batch-mean loss L.
        """
        self._record = None  # a forward that fails must not leave the last batch to backward
        if target is None:
            raise ShapeError(f"net.forward(x, target) needs a target for the loss layer "
                             f"(layer {self.T}, {self.layers[-1].describe()})")
        z = self._input(x)
        batch = len(z)
        # each z^t as the layers compute it (an image (B, C, H, W)), kept flat (B, N_t)
        values, saved, shapes = [z.reshape(batch, -1)], [], [z.shape[1:]]
        for t, layer in enumerate(self.layers, 1):
            z, s = run_layer(layer, t, z, target)
            values.append(z.reshape(batch, -1))
            shapes.append(z.shape[1:])
            saved.append(s)
        partials = [layer.local_partials(s) for layer, s in zip(self.layers, saved, strict=True)]
        kinks = {t: mask.reshape(batch, -1)
                 for t, (layer, s) in enumerate(zip(self.layers, saved, strict=True), 1)
                 if (mask := layer.nondifferentiable(s)) is not None}
        # exact and mp networks keep their loss exact (a Fraction or an mpf)
        loss = float(np.mean(values[-1])) if self.numbers is None else \
            self.numbers.mean(values[-1])
        self._record = ForwardRecord(values=values, partials=partials, saved=saved, kinks=kinks,
                                     loss=loss, owner=self._identity, shapes=shapes,
                                     weights=_fingerprints(self.params))
        return loss

    def changed_since_forward(self) -> list[str]:
        """The parameters (keys as ``params`` shows them) whose values differ from those the
        last forward pass saw, [] when none did or there was no forward. A trace is the
        backward of that pass, at its weights; ``mp.backprop``, ``mp.numeric_gradients`` and
        ``mp.verify`` compute at today's weights, and say so when this is not empty."""
        record = self._record
        if record is None or not record.weights:
            return []
        now = _fingerprints(self.params)
        return [k for k in now if record.weights.get(k) != now[k]]

    def prepare_input(self, x, dtype=None, copy: bool = True) -> np.ndarray:
        """``x`` checked and converted as ``forward`` takes it: (B, N_0), or (B, C, H, W) for
        an image input; in the network's dtype (or ``dtype``: the numerical witness computes
        in float64), a copy unless ``copy=False``."""
        return self._input(x, dtype, copy)

    def _input(self, x, dtype=None, copy: bool = True) -> np.ndarray:
        numbers = self.numbers if dtype is None else None
        z = as_batch(x, self.dtype if dtype is None else dtype, numbers=numbers, copy=copy,
                     shape=self.input_shape,
                     images=any(layer.takes_images for layer in self.layers))
        if self.input_width is not None and z.ndim == 2 and z.shape[1] != self.input_width:
            raise ShapeError(f"input x must have shape (B, {self.input_width}) for "
                             f"{self.labels[0]} (layer 1), got {z.shape}")
        return z

    def predict(self, x) -> np.ndarray:
        """The output of layer T−1 (the input to the loss), shape (B, N_{T-1}) (an image
        output keeps its shape)."""
        z = self._input(x)
        for t, layer in enumerate(self.layers[:-1], 1):
            z, _ = run_layer(layer, t, z)
        return z

    def backward(self, keep="all", *, budget_bytes: int = DEFAULT_BUDGET_BYTES,
                 keep_samples=None, per_sample: bool = False,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES, backend: str = "memory",
                 chunk_samples: int = 256, stats=False, store=None) -> Trace:
        """Message passing from the loss down to the input, using the partials kept by the
        last ``forward``. Every message is computed, whatever is kept; calling it again gives
        the same result.

        Parameters
        ----------
        keep : "all" (default), "sums", or a list of layer indices
            Which message blocks to keep in the trace: every one; none ("sums": only node
            sums and gradients, so memory does not grow with the batch); or those layers'.
        budget_bytes : int
            Bound on the messages in flight (default 64 MiB): messages are written and
            summed a piece of at most this many bytes at a time — a few samples, or for a
            block wider than the budget a band of one sample's receivers. What the pass
            returns comes on top: kept blocks, the node sums (B·ΣN numbers), the gradients
            (the parameters' size) and per-sample parameter messages if asked for; so does
            what the forward pass keeps (dense layers' Jacobians, B·N² each).
        keep_samples : list of int, optional
            Keep the kept layers' blocks, and the per-sample parameter messages, only for
            these samples (batch indices); ``trace.block(t).samples`` says which rows are
            which.
        per_sample : bool
            Also keep the message from each output node to each parameter for every (kept)
            sample (for Affine, x_b[i] · S_b[n']): ``trace.param_messages``, whose sum over
            all samples is ``trace.grads``, and ``trace.per_sample_grads()``.
        chunk_bytes : int
            Piece size used within the budget for speed (default 4 MiB, measured); rarely
            worth changing.
        backend : "memory" (default) or "dask"
            "dask" builds each layer's messages as a dask array chunked over samples
            (``chunk_samples`` per chunk; msgpass.scale.dask_backward, optional extra
            msgpass[scale]); it runs on a dask.distributed cluster when a Client is active.
        stats : bool or list of str
            Gather statistics of every layer's messages while they are sent, without keeping
            them: "mean" and "absmax" per edge over the samples, "histogram" of magnitudes
            per layer (True: all three); ``trace.stats[t]`` (msgpass.stats.MessageStats).
        store : path, optional
            With ``backend="dask"``: write the kept layers' messages into a new zarr store
            at this path as they are sent (a store chunk of whole samples at a time, as many
            as fit in ``budget_bytes``, at least one), then the sums, values, gradients and
            statistics,
            so that ``mp.load_trace(store)`` reads it like a saved trace. The returned
            trace's blocks are dask arrays that read from the store.

        Returns
        -------
        Trace
        """
        if self._record is None:
            raise StateError("net.backward() was called before net.forward(x, target): there "
                             "are no local partials to send messages from yet")
        record = self._record
        batch = record.values[0].shape[0]
        # S^{T+1} = ∂L/∂ℓ_b = 1/B, as a Fraction or an mpf for exact and mp networks
        one_over = 1.0 / batch if self.numbers is None else self.numbers.one_over(batch)
        seed = np.full((batch, 1), one_over, dtype=self.dtype)
        wanted = wanted_layers(keep, self.T)
        where = {t: f"layer {t} ({label})" for t, label in enumerate(self.labels, 1)}

        def trace_of(result):
            return self._trace(record, result)
        result = run(backend, chain_steps(record.partials), seed, where, keep=wanted,
                     budget_bytes=budget_bytes, chunk_bytes=chunk_bytes,
                     keep_samples=keep_samples, per_sample=per_sample, stats=stats,
                     store=store, chunk_samples=chunk_samples, numbers=self.numbers,
                     trace_of=trace_of, store_names=None if store is None else {
                         t: (*block_variable(t, record.partials[t - 1].inputs), batch, "sample")
                         for t in wanted})
        return self._trace(record, result)

    def _trace(self, record: ForwardRecord, result) -> Trace:
        """The Trace of a finished pass (node t of the chain is z^t: S^t arrives at node
        t−1)."""
        grads = shown_all(self.param_names, {
            f"{t}.{name}": result.grads[(t, name)]
            for t, layer in enumerate(self.layers, 1) for name in layer.params})
        param_messages = shown_all(self.param_names, {
            f"{t}.{name}": m for (t, name), m in result.param_messages.items()})
        return Trace(labels=self.labels, values=record.values, partials=record.partials,
                     shapes=record.shapes,
                     blocks=result.blocks,
                     incoming={t + 1: S for t, S in sorted(result.incoming.items())},
                     grads=grads,
                     loss=record.loss, nondifferentiable=record.kinks,
                     param_messages=param_messages, stats=result.stats,
                     kept_samples=result.kept_samples, param_names=self.param_names,
                     input_name=self.input_name)
