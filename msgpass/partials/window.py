"""Window partials: a convolution or an average pool, where each output unit hears from the
inputs under its kernel, with the same taps for every sample and every position.

Images are NCHW, numbered in C order: input node n = (c, i, j) of (C_in, H, W), output node
n' = (c', i', j') of (C_out, H', W'). With stride s and zero padding p (each a pair, rows
and columns; written for one here),

    J[(c, i, j), (c', i', j')] = weights[c', c, i − s·i' + p, j − s·j' + p]

where that index lies inside the kernel, and there is no edge otherwise. A tap that lands in
the zero padding is not an edge either: the padding is a constant, not a node.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from .base import InputPartials

__all__ = ["Window", "window_geometry"]


def window_geometry(size: int, kernel: int, stride: int, padding: int) -> int:
    """The output length along one axis: ⌊(size + 2p − k) / s⌋ + 1 (0 or less: the kernel
    does not fit)."""
    return (size + 2 * padding - kernel) // stride + 1


@dataclass(frozen=True, eq=False)
class Window(InputPartials):
    """J of a convolution (``weights`` (C_out, C_in, kh, kw)) or of a depthwise window, where
    channel c hears only from channel c (``depthwise=True``, ``weights`` (C, kh, kw): an
    average pool's 1/(kh·kw) everywhere).

    Parameters
    ----------
    weights : ndarray
        The kernel taps, shared by every sample.
    image : (C_in, H, W)
        The input's per-sample shape.
    stride, padding : int or (rows, cols)
        Kept as pairs.
    depthwise : bool

    Messages: one per (sample, output unit, kernel tap). The block is laid out by sender,
    (B, C_out, H', W', C_in, kh, kw) (depthwise: (B, C, H', W', kh, kw)): entry
    [b, c', i', j', c, u, v] is the message from output unit (c', i', j') to input
    (c, s·i' + u − p, s·j' + v − p), that is W[c', c, u, v] · S^{t+1}_b[c', i', j']. Taps that
    land in the padding hold an exact zero and are not edges (``message_count`` leaves them
    out). Receivers sum by scatter-add (col2im), so the block is cut by samples and by bands
    of output channels, and each band adds into the sums.
    """

    weights: np.ndarray
    image: tuple[int, int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    depthwise: bool = False
    kind = "window"
    storage = "window"
    # Each piece is summed over its output channels before it is scattered (col2im), so
    # pieces as large as the budget allows cost least (see msgpass.streaming.piece_bytes)
    large_pieces = True

    def __post_init__(self):
        for name in ("stride", "padding"):
            value = getattr(self, name)
            object.__setattr__(self, name, (int(value), int(value)) if np.ndim(value) == 0
                               else tuple(int(v) for v in value))

    # -- geometry ---------------------------------------------------------------------------
    @property
    def kernel(self) -> tuple[int, int]:
        return tuple(self.weights.shape[-2:])

    @property
    def channels_out(self) -> int:
        return self.weights.shape[0]

    @property
    def output(self) -> tuple[int, int, int]:
        """(C_out, H', W'), the output's per-sample shape."""
        _, H, W = self.image
        kh, kw = self.kernel
        (sh, sw), (ph, pw) = self.stride, self.padding
        return (self.channels_out, window_geometry(H, kh, sh, ph),
                window_geometry(W, kw, sw, pw))

    @cached_property
    def inside(self) -> np.ndarray:
        """Bool (H', W', kh, kw): where tap (u, v) of output position (i', j') lands inside
        the input (an edge), not in the padding."""
        _, H, W = self.image
        _, Ho, Wo = self.output
        kh, kw = self.kernel
        (sh, sw), (ph, pw) = self.stride, self.padding
        rows = sh * np.arange(Ho)[:, None] + np.arange(kh)[None, :] - ph
        cols = sw * np.arange(Wo)[:, None] + np.arange(kw)[None, :] - pw
        row_in = (rows >= 0) & (rows < H)
        col_in = (cols >= 0) & (cols < W)
        return row_in[:, None, :, None] & col_in[None, :, None, :]

    @property
    def n_in(self) -> int:  # type: ignore[override]
        return int(np.prod(self.image))

    @property
    def n_out(self) -> int:  # type: ignore[override]
        return int(np.prod(self.output))

    @property
    def dtype(self) -> np.dtype:
        return self.weights.dtype

    @property
    def block_dims(self) -> tuple[str, ...]:  # type: ignore[override]
        if self.depthwise:
            return ("channel", "out_row", "out_col", "tap_row", "tap_col")
        return ("out_channel", "out_row", "out_col", "in_channel", "tap_row", "tap_col")

    def block_shape(self, batch):
        return (batch, *self.output, *self.weights.shape[1:])

    def message_count(self, batch):
        per_channel = int(self.inside.sum())
        taps = self.channels_out * (1 if self.depthwise else self.image[0])
        return batch * taps * per_channel

    # -- the recursion ------------------------------------------------------------------------
    def send(self, incoming, piece, out=None):
        # δ[b, c', i', j', c, u, v] = W[c', c, u, v] · S_b[c', i', j']: one multiply per
        # message, the arriving sum broadcast over the output unit's taps
        rows = incoming[piece.rows].reshape((-1, *self.output))[:, piece.receivers]
        extra = (None,) * (self.weights.ndim - 1)
        taps = self.weights[piece.receivers][:, None, None][None]
        out = np.multiply(rows[(...,) + extra], taps, out=out)
        if any(self.padding):
            self._zero_padding(out)
        return out

    def _zero_padding(self, block: np.ndarray) -> None:
        """Put exact zeros on the taps that land in the padding (not edges): for each tap
        row u, the output rows i' before and after those where s·i' + u − p is inside the
        input, and likewise for the columns; only the border is touched."""
        _, H, W = self.image
        _, Ho, Wo = self.output
        kh, kw = self.kernel
        (sh, sw), (ph, pw) = self.stride, self.padding
        tap_row = block.ndim - 2              # block: (rows, band, H', W', [C,] kh, kw)
        for axis, size, out_size, taps, s, p in ((2, H, Ho, kh, sh, ph), (3, W, Wo, kw, sw, pw)):
            for u in range(taps):
                first = min(out_size, max(0, -(-(p - u) // s)))   # ⌈(p − u) / s⌉
                last = max(first, min(out_size, (size - 1 + p - u) // s + 1))
                for outside in (slice(0, first), slice(last, out_size)):
                    if outside.stop > outside.start:
                        index = [slice(None)] * block.ndim
                        index[axis] = outside
                        index[tap_row + axis - 2] = u
                        block[tuple(index)] = 0

    def _scatter(self, messages: np.ndarray, band: slice, padded: np.ndarray | None = None
                 ) -> np.ndarray:
        """Add a band of output channels' messages into ``padded`` (rows, C, H + 2p, W + 2p),
        each tap's messages at the input positions it reads (col2im); returns it. The band's
        messages to one (input channel, tap, position) are summed first, in one streaming
        pass over the block (channel by channel, in order), so the scattering reads a block
        1/band the size. (A block cut into bands of output channels, when one sample is over
        the budget, adds its bands' partial sums in turn: the same sums up to rounding.)"""
        C, H, W = self.image
        _, Ho, Wo = self.output
        kh, kw = self.kernel
        (sh, sw), (ph, pw) = self.stride, self.padding
        if padded is None:
            padded = np.zeros((len(messages), C, H + 2 * ph, W + 2 * pw), dtype=messages.dtype)
        if self.depthwise:      # channel c hears from channel c only: the band's channels
            target, per_tap = padded[:, band], messages
        else:                   # every input channel hears from every output channel
            target = padded
            per_tap = np.add.reduce(messages, axis=1).transpose(0, 3, 1, 2, 4, 5)
        for u in range(kh):
            for v in range(kw):
                target[:, :, u:u + sh * (Ho - 1) + 1:sh, v:v + sw * (Wo - 1) + 1:sw] += \
                    per_tap[..., u, v]
        return padded

    def _sums(self, padded: np.ndarray) -> np.ndarray:
        """The input's sums (rows, N_in) from the padded accumulation."""
        _, H, W = self.image
        ph, pw = self.padding
        return padded[:, :, ph:ph + H, pw:pw + W].reshape(len(padded), -1)

    def receive(self, messages, out=None):
        return self.receive_by_pieces(messages, out)    # a whole block: every output channel

    def receive_piece(self, messages, piece, sums, first=0):
        rows = slice(piece.rows.start - first, piece.rows.stop - first)
        if not any(self.padding):   # add straight into the sums (a view: C-contiguous)
            self._scatter(messages, piece.receivers, sums[rows].reshape((-1, *self.image)))
            return
        C, H, W = self.image
        ph, pw = self.padding
        padded = np.zeros((rows.stop - rows.start, C, H + 2 * ph, W + 2 * pw),
                          dtype=messages.dtype)
        padded[:, :, ph:ph + H, pw:pw + W] = sums[rows].reshape((-1, *self.image))
        sums[rows] = self._sums(self._scatter(messages, piece.receivers, padded))

    # -- dense views, by code separate from send and receive ----------------------------------
    def _edge_list(self):
        """Every edge as flat indices into the block's (output unit, tap) entries, the input
        node n and the output node n' it joins, by explicit coordinates."""
        C, H, W = self.image
        Co, Ho, Wo = self.output
        kh, kw = self.kernel
        (sh, sw), (ph, pw) = self.stride, self.padding
        if self.depthwise:
            c_out, i_out, j_out, u, v = np.indices((Co, Ho, Wo, kh, kw)).reshape(5, -1)
            c_in = c_out
        else:
            c_out, i_out, j_out, c_in, u, v = np.indices((Co, Ho, Wo, C, kh, kw)).reshape(6, -1)
        i, j = sh * i_out + u - ph, sw * j_out + v - pw
        edge = (i >= 0) & (i < H) & (j >= 0) & (j < W)
        entry = np.flatnonzero(edge)
        source = (c_in * H + i) * W + j
        destination = (c_out * Ho + i_out) * Wo + j_out
        return entry, source[edge], destination[edge]

    def dense(self):
        # J entry by entry from the definition: W[c', c, i − s·i' + p, j − s·j' + p]
        C, H, W = self.image
        Co, Ho, Wo = self.output
        kh, kw = self.kernel
        (sh, sw), (ph, pw) = self.stride, self.padding
        J = np.zeros((1, self.n_in, self.n_out), dtype=self.dtype)
        view = J.reshape(C, H, W, Co, Ho, Wo)
        for i_out in range(Ho):
            for j_out in range(Wo):
                for u in range(kh):
                    for v in range(kw):
                        i, j = sh * i_out + u - ph, sw * j_out + v - pw
                        if 0 <= i < H and 0 <= j < W:
                            if self.depthwise:
                                for c in range(C):
                                    view[c, i, j, c, i_out, j_out] = self.weights[c, u, v]
                            else:
                                view[:, i, j, :, i_out, j_out] = self.weights[:, :, u, v].T
        return J

    def storage_attrs(self):
        return {"stored": self.storage, "image": list(self.image), "kernel": list(self.kernel),
                "channels_out": self.channels_out, "stride": list(self.stride),
                "padding": list(self.padding), "depthwise": self.depthwise}

    @classmethod
    def expand_stored(cls, block, attrs):
        """Window blocks (rows, C_out, H', W', [C_in,] kh, kw) as dense (rows, N_in, N_out),
        exact zeros off the edges; a dask array expands lazily, chunk of samples by chunk."""
        depthwise = bool(attrs["depthwise"])
        shape = (attrs["channels_out"],) + (() if depthwise else (attrs["image"][0],)) + \
            tuple(attrs["kernel"])
        geometry = cls(np.zeros(shape, dtype=np.int8), tuple(attrs["image"]),
                       attrs["stride"], attrs["padding"], depthwise)   # an int or a pair
        tail = len(shape) + 2
        if not isinstance(block, np.ndarray) and hasattr(block, "map_blocks"):
            block = block.rechunk({axis: -1 for axis in range(1, block.ndim)})
            return block.map_blocks(cls.expand_stored, attrs,
                                    drop_axis=list(range(3, block.ndim)),
                                    chunks=(block.chunks[0], (geometry.n_in,),
                                            (geometry.n_out,)), dtype=block.dtype)
        lead = block.shape[:block.ndim - tail]
        entry, source, destination = geometry._edge_list()
        flat = np.asarray(block).reshape(lead + (-1,))
        full = np.zeros(lead + (geometry.n_in, geometry.n_out), dtype=block.dtype)
        full[..., source, destination] = flat[..., entry]
        return full

    def stored_receive(self, block):
        # each edge's message added at its receiver by index (the edge list), not by col2im
        entry, source, _ = self._edge_list()
        flat = np.asarray(block).reshape(len(block), -1)
        sums = np.zeros((len(block), self.n_in), dtype=flat.dtype)
        np.add.at(sums, (np.arange(len(block))[:, None], source[None, :]), flat[:, entry])
        return sums

    def send_check(self, block, incoming):
        # J · S for every edge, rebuilt from the edge list (explicit coordinates) rather than
        # from send's broadcast: same layout as the stored block, never the dense N×N
        entry, _, destination = self._edge_list()
        flat_weights = np.broadcast_to(
            self.weights[:, None, None], self.block_shape(1)[1:]).reshape(-1)
        expected = np.zeros((len(incoming), int(np.prod(self.block_shape(1)[1:]))),
                            dtype=np.result_type(self.weights, incoming))
        expected[:, entry] = flat_weights[entry] * incoming[:, destination]
        return block, expected.reshape(block.shape)

    def repeated(self, batch):
        return self           # the same taps for every sample already

    def row(self, n):
        C, H, W = self.image
        Co, Ho, Wo = self.output
        c, rest = divmod(n, H * W)
        i, j = divmod(rest, W)
        columns, values = [], []
        kh, kw = self.kernel
        (sh, sw), (ph, pw) = self.stride, self.padding
        for u in range(kh):
            for v in range(kw):
                top, left = i + ph - u, j + pw - v
                if top % sh or left % sw:
                    continue
                i_out, j_out = top // sh, left // sw
                if not (0 <= i_out < Ho and 0 <= j_out < Wo):
                    continue
                outs = [c] if self.depthwise else range(Co)
                for c_out in outs:
                    columns.append((c_out * Ho + i_out) * Wo + j_out)
                    values.append(self.weights[c, u, v] if self.depthwise
                                  else self.weights[c_out, c, u, v])
        order = np.argsort(columns)
        return (np.asarray(columns, dtype=int)[order],
                np.asarray(values, dtype=self.dtype)[order][None, :])

    def _with(self, weights: np.ndarray) -> Window:
        return replace(self, weights=weights)

    def tap_errors(self, incoming: np.ndarray, error: np.ndarray) -> np.ndarray:
        """The change of taps ΔW (shaped like ``weights``) whose messages, sent from
        ``incoming`` (B, N_out), would sum to ``error`` (B, N_in), by least squares: which
        taps a difference in the sums points at (verify's diagnosis of a failing step).
        A tap into input channel c reaches only channel c, so the least squares splits into
        one small problem per input channel, whose columns are the arriving sums S of one
        output channel shifted to where one tap reads."""
        C, H, W = self.image
        _, Ho, Wo = self.output
        kh, kw = self.kernel
        (sh, sw), (ph, pw) = self.stride, self.padding
        S = np.asarray(incoming, dtype=np.float64).reshape((-1, *self.output))
        error = np.asarray(error, dtype=np.float64).reshape((-1, *self.image))
        delta = np.zeros(self.weights.shape)
        for c in range(C):
            outs = [c] if self.depthwise else range(self.channels_out)
            columns, where = [], []
            for c_out in outs:
                for u in range(kh):
                    for v in range(kw):
                        column = np.zeros((len(S), H + 2 * ph, W + 2 * pw))
                        column[:, u:u + sh * (Ho - 1) + 1:sh, v:v + sw * (Wo - 1) + 1:sw] = \
                            S[:, c_out]
                        columns.append(column[:, ph:ph + H, pw:pw + W].ravel())
                        where.append((c, u, v) if self.depthwise else (c_out, c, u, v))
            solution = np.linalg.lstsq(np.stack(columns, axis=1), error[:, c].ravel(),
                                       rcond=None)[0]
            for index, value in zip(where, solution, strict=True):
                delta[index] = value
        return delta

    def edge_counts(self, counts):
        # Σ over a node's edges of counts[n']: the sums of messages of taps 1 sent from
        # ``counts`` (exact Python ints)
        ones = self._with(np.ones(self.weights.shape, dtype=object))
        counts = np.asarray(counts, dtype=object)[None, :]
        sent = ones.send(counts, ones.whole(1))
        return ones.receive(sent)[0]

    def magnitudes(self, M):
        absolute = self._with(np.abs(self.weights))
        return absolute.receive(absolute.send(M, absolute.whole(len(M))))

    def edges(self):
        _, source, destination = self._edge_list()
        edges = np.zeros((self.n_in, self.n_out), dtype=bool)
        edges[source, destination] = True
        return edges
