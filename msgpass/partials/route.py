"""Route partials: max pooling, where each output unit has exactly one edge, to the input that
won its window."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .base import InputPartials
from .window import Window, window_geometry

__all__ = ["Route"]


@dataclass(frozen=True, eq=False)
class Route(InputPartials):
    """J of a max pool: ``J_b[n, n'] = 1`` if input n won output unit n''s window in sample b,
    else no edge. Ties go to the first position of the window in row-major order (torch's
    convention); padding is −∞ and never wins.

    Parameters
    ----------
    taps : ndarray of int, shape (B, C, H', W')
        The winning tap u·kw + v of each output unit's window.
    image : (C, H, W)
        The input's per-sample shape.
    kernel : (kh, kw)
    stride, padding : int or (rows, cols), kept as pairs
    dtype : numpy dtype of the messages

    Messages: one per (sample, output unit), B·C·H'·W'. The block keeps the window layout
    (B, C, H', W', kh, kw), the message at the winning tap and exact zeros at the others
    (non-edges), so that it reads like a pooling window and is stored, labelled and expanded
    like the window kind's (``storage_attrs``).
    """

    taps: np.ndarray
    image: tuple[int, int, int]
    kernel: tuple[int, int]
    stride: int
    padding: int
    message_dtype: np.dtype
    kind = "route"
    block_dims = ("channel", "out_row", "out_col", "tap_row", "tap_col")

    def __post_init__(self):
        for name in ("stride", "padding"):
            value = getattr(self, name)
            object.__setattr__(self, name, (int(value), int(value)) if np.ndim(value) == 0
                               else tuple(int(v) for v in value))

    @property
    def output(self) -> tuple[int, int, int]:
        C, H, W = self.image
        kh, kw = self.kernel
        (sh, sw), (ph, pw) = self.stride, self.padding
        return (C, window_geometry(H, kh, sh, ph), window_geometry(W, kw, sw, pw))

    @property
    def n_in(self) -> int:  # type: ignore[override]
        return int(np.prod(self.image))

    @property
    def n_out(self) -> int:  # type: ignore[override]
        return int(np.prod(self.output))

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.message_dtype)

    @cached_property
    def winners(self) -> np.ndarray:
        """(B, N_out): the input node n each output unit hears from."""
        C, H, W = self.image
        _, Ho, Wo = self.output
        kw = self.kernel[1]
        u, v = np.divmod(self.taps, kw)
        (sh, sw), (ph, pw) = self.stride, self.padding
        i = sh * np.arange(Ho)[None, None, :, None] + u - ph
        j = sw * np.arange(Wo)[None, None, None, :] + v - pw
        c = np.arange(C)[None, :, None, None]
        return ((c * H + i) * W + j).reshape(len(self.taps), -1)

    def block_shape(self, batch):
        return (batch, *self.output, *self.kernel)

    def message_count(self, batch):
        return batch * self.n_out

    # -- the recursion ------------------------------------------------------------------------
    def send(self, incoming, piece, out=None):
        S = incoming[piece.rows].reshape((-1, *self.output))[:, piece.receivers]
        if out is None:
            out = np.zeros(S.shape + self.kernel, dtype=self.dtype)
        else:
            out[...] = 0
        # the one message of each output unit, δ = 1 · S, at its winning tap
        np.put_along_axis(out.reshape(S.shape + (-1,)),
                          self.taps[piece.rows, piece.receivers][..., None], S[..., None],
                          axis=-1)
        return out

    def receive_piece(self, messages, piece, sums, first=0):
        # piece.rows index the taps (the whole batch's); sums start at sample ``first``
        sums = sums[piece.rows.start - first:piece.rows.stop - first]
        rows = len(messages)
        taps = self.taps[piece.rows, piece.receivers]
        sent = np.take_along_axis(messages.reshape(taps.shape + (-1,)), taps[..., None],
                                  axis=-1)[..., 0].reshape(rows, -1)
        winners = self.winners.reshape(self.taps.shape)[piece.rows, piece.receivers].reshape(
            rows, -1)
        sample = np.arange(rows)[:, None]
        if all(s >= k for s, k in zip(self.stride, self.kernel, strict=True)):
            # windows do not overlap: one sender per input
            sums[sample, winners] += sent
        else:                                # an input can win several windows: add each
            np.add.at(sums, (np.broadcast_to(sample, winners.shape), winners), sent)

    def receive(self, messages, out=None):
        return self.receive_by_pieces(messages, out)

    # -- dense views, by code separate from send and receive ----------------------------------
    def dense(self):
        # one 1 per (sample, output unit), at the input that won: from the taps directly
        batch = len(self.taps)
        C, H, W = self.image
        _, Ho, Wo = self.output
        kw = self.kernel[1]
        J = np.zeros((batch, self.n_in, self.n_out), dtype=self.dtype)
        for b in range(batch):
            for n_out in range(self.n_out):
                c, rest = divmod(n_out, Ho * Wo)
                i_out, j_out = divmod(rest, Wo)
                u, v = divmod(int(self.taps[b, c, i_out, j_out]), kw)
                i = self.stride[0] * i_out + u - self.padding[0]
                j = self.stride[1] * j_out + v - self.padding[1]
                J[b, (c * H + i) * W + j, n_out] = 1
        return J

    def storage_attrs(self):
        # stored in the window layout of a depthwise window, which expands it
        return {"stored": Window.storage, "image": list(self.image), "kernel": list(self.kernel),
                "channels_out": self.image[0], "stride": list(self.stride),
                "padding": list(self.padding), "depthwise": True}

    def dense_messages(self, block):
        return Window.expand_stored(block, self.storage_attrs())

    def stored_receive(self, block):
        # the one-hot window layout summed by the window's edge list: the zeros at the taps
        # that lost add nothing
        geometry = Window(np.zeros((self.image[0], *self.kernel)), self.image, self.stride,
                          self.padding, depthwise=True)
        return geometry.stored_receive(block)

    def send_check(self, block, incoming):
        # from the dense view: the one 1 of each column times S (small blocks: verify's)
        expected = np.zeros(self.block_shape(len(incoming)), dtype=np.result_type(
            self.dtype, incoming))
        dense = self.dense_send(incoming)
        taps = expected.reshape(expected.shape[:4] + (-1,))
        winners = self.winners
        for b in range(len(incoming)):
            sent = dense[b, winners[b], np.arange(self.n_out)]
            np.put_along_axis(taps[b], self.taps[b][..., None],
                              sent.reshape(self.output)[..., None], axis=-1)
        return block, expected

    def repeated(self, batch):
        raise ValueError("max pooling routes each sample its own way; its partials of one "
                         "sample cannot stand for a batch")

    def row(self, n):
        # node n's edges: the output units it won, in each sample; J is 1 on them
        hit = self.winners == n                                  # (B, N_out)
        columns = np.flatnonzero(hit.any(axis=0))
        return columns, hit[:, columns].astype(self.dtype)

    def edge_counts(self, counts):
        # an edge is (n, n') in any sample: what the path witness counts over
        edges = self.edges()
        return edges.astype(object) @ np.asarray(counts, dtype=object)

    def magnitudes(self, M):
        return self.receive(self.send(M, self.whole(len(M))))

    def edges(self):
        edges = np.zeros((self.n_in, self.n_out), dtype=bool)
        edges[self.winners, np.broadcast_to(np.arange(self.n_out), self.winners.shape)] = True
        return edges
