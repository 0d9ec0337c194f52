"""Coupled partials: a layer whose nodes are (sample, feature) pairs (BatchNorm in training)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import InputPartials, Piece

__all__ = ["Coupled", "CouplesSamples"]


class CouplesSamples:
    """What a kind whose nodes are (sample, something) pairs refuses, and why: per-edge
    statistics, a single sample's view, and paths (its ``nodes`` says which pairs)."""

    nodes = "(sample, feature) nodes"

    @property
    def edge_shape(self):
        raise ValueError("couples the samples: message statistics are per edge over "
                         "independent samples; gather them in eval mode or keep that layer's "
                         "block instead")

    def sample_view(self, block, row):
        raise ValueError(f"couples the samples: its messages run between {self.nodes}, not "
                         f"within one sample")

    def row(self, n):
        raise ValueError(f"couples the samples: its edges run between {self.nodes}, so its "
                         f"paths leave the sample they start in")


@dataclass(frozen=True, eq=False)
class Coupled(CouplesSamples, InputPartials):
    """A layer that couples the samples of a batch (BatchNorm in training mode): its nodes
    are (sample, feature) pairs, and node (b', j) of the output hears from every (b, j) of
    the input with the same feature: ``J_j[b, b'] = ∂y_{b',j}/∂x_{b,j}``.

    Parameters
    ----------
    values : ndarray, shape (N, B, B)
    terms : ndarray of the same shape, optional
        Sizes of the terms each entry is formed from (for round-off magnitudes).

    Messages: ``δ[j, b, b'] = J_j[b, b'] · S[b', j]``, a block of shape (N, B, B), receiver
    first like every block; the sum arriving at input node (b, j) is ``Σ_{b'} δ[j, b, b']``.
    The block has no sample axis: it is cut into bands of features, never into samples.
    """

    values: np.ndarray
    terms: np.ndarray | None = None
    kind = "coupled"
    samples_independent = False
    block_dims = ("feature", "sample_in", "sample_out")

    @property
    def n_in(self) -> int:  # type: ignore[override]
        return self.values.shape[0]

    @property
    def n_out(self) -> int:  # type: ignore[override]
        return self.values.shape[0]

    @property
    def batch(self) -> int:
        return self.values.shape[1]

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype

    def block_shape(self, batch):
        return (self.n_in, batch, batch)

    def smallest_piece_bytes(self, batch):
        # one feature: every sample hears from every sample
        return batch * batch * np.dtype(self.dtype).itemsize

    def pieces(self, rows, piece_bytes):
        if (rows.start, rows.stop) != (0, self.batch):
            raise ValueError(f"a coupled layer's messages join all {self.batch} samples; they "
                             f"cannot be sent for samples {rows.start}..{rows.stop - 1} alone")
        band = max(1, piece_bytes // self.smallest_piece_bytes(self.batch))
        for start in range(0, self.n_in, band):
            yield Piece(rows, slice(start, min(start + band, self.n_in)))

    def whole(self, batch):
        return Piece(slice(0, batch), slice(0, self.n_in))   # every feature

    def piece_index(self, piece):
        return (piece.receivers,)

    def piece_shape(self, piece):
        return (piece.receivers.stop - piece.receivers.start, self.batch, self.batch)

    def send(self, incoming, piece, out=None):
        # ``piece.receivers`` selects features here (every sample talks to every sample)
        return np.multiply(self.values[piece.receivers],
                           incoming[:, piece.receivers].T[:, None, :], out=out)

    def receive(self, messages, out=None):
        # (features, B, B) → the sums (B, features): node (b, j) sums over the senders b'
        if out is None:
            return messages.sum(axis=2).T
        np.add.reduce(messages, axis=2, out=out.T)
        return out

    def push(self, tangent):
        # node (b, j) below sends ṫ[b, j]·J_j[b, b'] to (b', j) above: (N, B, B') like the block
        return self.values * tangent.T[:, :, None]

    def push_receive(self, messages):
        return messages.sum(axis=1).T

    def dense(self):
        return self.values.copy()

    def times_senders(self, dense, incoming):
        return dense * incoming.T[:, None, :]       # sender (b', j) sits at [j, :, b']

    def dense_receive(self, dense_messages):
        return dense_messages.sum(axis=2).T

    def magnitude(self):
        return np.abs(self.values) if self.terms is None else self.terms

    def edges(self):
        return np.eye(self.n_in, dtype=bool)   # feature j to feature j (across all samples)

    def message_count(self, batch):
        return self.n_in * batch * batch
