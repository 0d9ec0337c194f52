"""Contracted partials: an input whose samples are summed over by the op (the right factor of a
plain matrix product ``a @ b``, whose rows are contracted with a's columns)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Piece
from .coupled import Coupled

__all__ = ["Contracted"]


@dataclass(frozen=True, eq=False)
class Contracted(Coupled):
    """An input of K samples feeding an output of B samples feature by feature, every sample
    to every sample: node (l, j) of the input sends to node (i, j) of the output for every i,
    with ``J_j[l, i] = values[j, l, i]``. For ``D = A @ W`` with A (B, K) and W (K, M) as
    graph values (W's K rows are its "samples"), W's edge has ``J_j[l, i] = A[i, l]``.

    Parameters
    ----------
    values : ndarray, shape (M, K, B)
        Usually a broadcast view (A.T repeated over the M features): stored once.

    Messages: ``δ[j, l, i] = J_j[l, i] · S[i, j]``, a block (M, K, B), receiver first; the
    sum arriving at input node (l, j) is ``Σ_i δ[j, l, i]``. Like Coupled (the square case,
    K = B), the block has no sample axis: it is cut into bands of features only.
    """

    kind = "contracted"
    block_dims = ("feature", "sample_in", "sample_out")

    @property
    def batch(self) -> int:
        return self.values.shape[2]          # the output's samples (the senders')

    @property
    def source_batch(self) -> int:
        return self.values.shape[1]

    def receiver_rows(self, batch: int) -> int:
        return self.source_batch

    def block_shape(self, batch):
        return (self.n_in, self.source_batch, batch)

    def smallest_piece_bytes(self, batch):
        return self.source_batch * batch * np.dtype(self.dtype).itemsize

    def piece_shape(self, piece):
        return (piece.receivers.stop - piece.receivers.start, self.source_batch, self.batch)

    def receive_piece(self, messages, piece: Piece, sums, first=0):
        # every piece holds all K input samples of a band of features
        self.receive(messages, out=sums[:, piece.receivers])

    def message_count(self, batch):
        return self.n_in * self.source_batch * batch
