"""What one forward + message backward leaves behind, for verification, drawing and study."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .errors import StateError
from .messages import MessageBlock
from .naming import internal_keys
from .partials import LocalPartials
from .stats import MessageStats, Statistics
from .validate import layer_index

__all__ = ["Trace", "Incoming", "EXTENSIONS", "block_variable"]

# Optional extras plug their trace methods in here (msgpass.scale adds "to_xarray" and "save"
# when msgpass is imported), so that this module never imports the layers built on it.
EXTENSIONS: dict[str, Callable] = {}


def block_variable(t: int, J) -> tuple[str, tuple[str, ...]]:
    """The name of layer t's message block in a labelled trace or store, and the names of its
    axes after the rows (src{t}, dst{t}, or node{t} for a diagonal block)."""
    return f"message{t}", tuple(f"{name}{t}" for name in J.block_dims)


class Incoming(dict):
    """S^t by layer index t, t = 1..T+1: a dict of the flat (B, N_{t-1}) sums the pass works
    in, and callable as ``incoming(t)``, which checks the index (an IndexError naming the
    range) and gives S^t in the shape of z^{t-1} ((B, C, H, W) for an image)."""

    shapes: tuple = ()

    def __call__(self, t: int) -> np.ndarray:
        S = self[layer_index(t, 1, max(self))]
        if len(self.shapes) >= t and len(self.shapes[t - 1]) > 1:
            return S.reshape((len(S), *self.shapes[t - 1]))
        return S


@dataclass(frozen=True)
class Trace:
    """A finished message pass: the backward of the network's last forward pass, at the
    weights that pass saw. Editing the weights afterwards changes nothing in it (it is a
    record); ``mp.backprop``, ``mp.numeric_gradients`` and ``mp.verify`` compute at the
    weights as they are when called, and say so when those differ
    (``Sequential.changed_since_forward``).

    Attributes
    ----------
    labels : list of str
        ``labels[t-1]`` describes layer t, e.g. ``"Affine(4→8)"``.
    values : list of ndarray
        Forward values z^0 = x, z^1, …, z^T; z^t has shape (B, N_t), z^T the per-sample loss.
    partials : list of LocalPartials
        ``partials[t-1]``: the structured local partials of layer t (J^t and K^t).
    blocks : dict of int to MessageBlock
        The kept message blocks (all by default).
    incoming : Incoming (dict of int to ndarray)
        ``incoming(t)`` = S^t_n = Σ_{n'} δ^t_{n←n'}, shape (B, N_{t-1}): the sum arriving at
        the nodes of layer t−1, equal to ∂L/∂z^{t-1}; t = T+1 gives 1/B, the sum arriving at
        the loss.
    grads : dict of str to ndarray
        Parameter gradients, keyed like ``net.params`` ("t.name").
    loss : float
        The batch-mean loss L.
    nondifferentiable : dict of int to bool ndarray
        For each layer with kinks (ReLU), a (B, N_{t-1}) mask of the inputs that sat exactly
        on a non-differentiable point, where the layer's documented convention was used.
    param_messages : dict of str to ndarray
        With ``backward(per_sample=True)``: for each parameter ("t.name"), every sample's
        message to it, shape (B, *parameter shape); their sum over samples is ``grads``.
    stats : dict of int to MessageStats
        With ``backward(stats=...)``: statistics of every layer's messages, gathered as they
        were sent (per-edge mean and |max|, magnitude histogram; msgpass.stats).
    kept_samples : ndarray of int, or None
        With ``backward(keep_samples=...)``: the batch indices of the kept rows.
    shapes : tuple of tuple of int
        The per-sample shape of each z^t: ``values`` and ``incoming[t]`` are flat (B, N) in
        C order, ``value(t)`` and ``incoming(t)`` have these shapes ((B, C, H, W) for an
        image layer).

    A trace is the backward of the last forward pass, at the weights that pass saw: changing
    the weights afterwards changes nothing in it.
    """

    labels: list[str]
    values: list[np.ndarray]
    partials: list[LocalPartials]
    blocks: dict[int, MessageBlock]
    incoming: Incoming
    grads: dict[str, np.ndarray]
    loss: float
    nondifferentiable: dict[int, np.ndarray]
    param_messages: dict[str, np.ndarray] = field(default_factory=dict)
    stats: dict[int, MessageStats] = field(default_factory=Statistics)
    kept_samples: np.ndarray | None = None
    shapes: tuple = ()
    param_names: dict = field(default_factory=dict)
    input_name: str = "x"

    def __post_init__(self):
        # a layer without statistics explains itself rather than raising a bare KeyError
        object.__setattr__(self, "stats", Statistics(self.stats))
        incoming = Incoming(self.incoming)
        incoming.shapes = tuple(self.shapes)
        object.__setattr__(self, "incoming", incoming)

    @property
    def sums(self) -> Incoming:
        """The name of ``incoming`` before 0.9."""
        return self.incoming

    @property
    def T(self) -> int:
        """Number of layers (the loss layer is layer T)."""
        return len(self.labels)

    @property
    def batch(self) -> int:
        return self.values[0].shape[0]

    def block(self, t: int) -> MessageBlock:
        """The structured message block of layer t, as its kind of partials stores it
        (``block(t).values``; ``block(t).partials.block_dims`` names its axes after the
        samples): (B, N_{t-1}, N_t) for Affine and the dense kinds; (B, N) for an
        elementwise layer (only its edges n ← n); (B, C_out, H', W', C_in, kh, kw) for a
        convolution, entry [b, c', i', j', c, u, v] being the message W[c', c, u, v] ·
        S^{t+1}_b[c', i', j'] from output unit (c', i', j') to input
        (c, s·i' + u − p, s·j' + v − p); (B, C, H', W', kh, kw) for a pool (a max pool's
        message at the winning tap, zeros elsewhere); (N, B, B) or (C, B·H·W, B·H·W) for
        BatchNorm in training, which has no sample axis."""
        t = layer_index(t, 1, self.T)
        if t not in self.blocks:
            kept = sorted(self.blocks) or "none"
            raise StateError(
                f"the messages of layer {t} ({self.labels[t - 1]}) were computed but not kept "
                f"(kept: {kept}); call net.backward(keep='all') or keep=[{t}, ...]")
        return self.blocks[t]

    def message(self, t: int) -> np.ndarray:
        """All messages ``δ^t_{n←n'}`` of layer t, dense: shape (B, N_{t-1}, N_t) in the flat
        C-order numbering of images (with ``keep_samples``, B is the number of kept samples;
        ``block(t).samples`` names them). A numpy array: the dask backend's lazy blocks are
        computed here, whole; their ``block(t).values`` stays lazy. Refused (a StateError
        naming its size) when it would not fit in memory: ``block(t)`` is the structured
        block, a convolution's (B, C_out, H', W', C_in, kh, kw)."""
        return np.asarray(self.block(t).dense())

    def sample_messages(self, t: int, sample: int | str) -> np.ndarray:
        """The dense (N_{t-1}, N_t) messages of layer t for batch sample ``sample``, or their
        mean over the batch for ``"mean"`` (which needs every sample kept)."""
        block = self.block(t)
        if isinstance(sample, str):
            if sample != "mean":
                raise ValueError(f"sample must be a sample index or 'mean', got {sample!r}")
            if block.samples is not None:
                raise StateError(f"the batch mean of layer {t}'s messages needs every sample, "
                                 f"but only samples {block.samples.tolist()} were kept")
            row = "mean"
        else:
            row = block.row(sample)   # IndexError / StateError naming the sample
        try:
            return block.partials.sample_view(block.values, row)
        except ValueError as err:     # a kind without per-sample messages says why
            raise StateError(f"layer {t} ({self.labels[t - 1]}) {err}; trace.message({t}) is "
                             f"its {block.values.shape} block") from None

    def as_floats(self) -> Trace:
        """The same trace with exact or mp numbers rounded to float64 (for drawing, or for
        numpy routines that need floats); a float trace is returned as it is."""
        if self.values[0].dtype != object:
            return self

        def f(a):
            return np.asarray(a, dtype=object).astype(np.float64)
        blocks = {t: MessageBlock(b.t, b.partials, f(b.values), b.samples)
                  for t, b in self.blocks.items()}
        return Trace(labels=self.labels, values=[f(v) for v in self.values],
                     partials=self.partials, blocks=blocks,
                     incoming={t: f(s) for t, s in self.incoming.items()},
                     grads={k: f(g) for k, g in self.grads.items()}, loss=float(self.loss),
                     nondifferentiable=self.nondifferentiable,
                     param_messages={k: f(m) for k, m in self.param_messages.items()},
                     stats=self.stats, kept_samples=self.kept_samples, shapes=self.shapes,
                     param_names=self.param_names, input_name=self.input_name)

    def to_xarray(self):
        """This trace as an ``xarray.Dataset`` (optional extra ``msgpass[scale]``); see
        msgpass.scale."""
        return EXTENSIONS["to_xarray"](self)

    def save(self, path, chunk_samples: int = 256):
        """Write this trace as a zarr store (optional extra ``msgpass[scale]``): chunked over
        samples, compressed, exact; read it back with ``mp.load_trace``."""
        return EXTENSIONS["save"](self, path, chunk_samples)

    # -- seeing it (msgpass.view plugs these in; no matplotlib until a diagram is drawn) -----
    def to_html(self, path, **options):
        """Write an interactive, self-contained HTML explorer of this trace to ``path`` (no
        network access): step through the backward pass, click an edge for δ = J · S, a node
        for its incoming messages and their sum. Options: msgpass.view.html.write_html."""
        return EXTENSIONS["to_html"](self, path, **options)

    def to_dot(self, **options) -> str:
        """This trace as Graphviz DOT text: messages as edge labels, sums at the nodes (no
        Graphviz needed; rendering it is up to you). Options: msgpass.view.dot.to_dot."""
        return EXTENSIONS["to_dot"](self, **options)

    def _repr_html_(self) -> str:
        """Jupyter's display: a summary and the diagram."""
        return EXTENSIONS["trace_html"](self)

    def per_sample_grads(self) -> dict[str, np.ndarray]:
        """∂ℓ_b/∂θ for every sample b and parameter, shape (B, *parameter shape): the
        per-sample parameter messages times B, undoing the batch mean's 1/B.

        Needs ``net.backward(per_sample=True)``; with ``keep_samples``, the rows are those
        samples."""
        if not self.param_messages and self.grads:
            raise StateError("this trace has no per-sample parameter messages; call "
                             "net.backward(per_sample=True)")
        coupled = [t for t, p in enumerate(self.partials, 1) if not p.inputs.samples_independent]
        below = sorted(k for k in self.param_messages if coupled and self.param_layer(k)
                       < max(coupled))
        if below:
            t = max(coupled)
            raise StateError(f"layer {t} ({self.labels[t - 1]}) couples the samples, so what "
                             f"reaches the parameters below it ({', '.join(below)}) mixes every "
                             f"sample's loss: their per-sample messages are not per-sample "
                             f"gradients")
        return {key: m * self.batch for key, m in self.param_messages.items()}

    def param_layer(self, key: str) -> int:
        """The layer t a gradient's key (as ``grads`` shows it) belongs to."""
        return int(internal_keys(self.param_names).get(key, key).split(".", 1)[0])

    def grad(self, name: str) -> np.ndarray:
        """A gradient by parameter key, or ``∂L/∂x`` by the input's name (``"x"``; an imported
        model's input is named as its forward's argument), in x's shape."""
        if name in self.grads:
            return self.grads[name]
        if name in (self.input_name, "x"):
            return self.incoming(1)
        raise KeyError(f"no gradient named {name!r}: the input is {self.input_name!r}, the "
                       f"parameters {sorted(self.grads)}")

    def value(self, t: int) -> np.ndarray:
        """Forward value z^t, t = 0..T: shape (B, N_t), or (B, C, H, W) for an image."""
        z = self.values[layer_index(t, 0, self.T, "value index")]
        if len(self.shapes) > t and len(self.shapes[t]) > 1:
            return z.reshape((len(z), *self.shapes[t]))
        return z
