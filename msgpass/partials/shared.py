"""Shared partials: the same J for every sample (Affine, J = W)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import InputPartials

__all__ = ["Shared"]


@dataclass(frozen=True, eq=False)
class Shared(InputPartials):
    """The same local partial for every sample: ``J[n, n'] = matrix[n, n']``.

    Parameters
    ----------
    matrix : ndarray, shape (N_{t-1}, N_t)

    Messages: every (n, n') is an edge; the block is (B, N_{t-1}, N_t), stored densely.
    """

    matrix: np.ndarray
    kind = "shared"

    @property
    def n_in(self) -> int:  # type: ignore[override]
        return self.matrix.shape[0]

    @property
    def n_out(self) -> int:  # type: ignore[override]
        return self.matrix.shape[1]

    @property
    def dtype(self) -> np.dtype:
        return self.matrix.dtype

    def send(self, incoming, piece, out=None):
        # δ_b[n, n'] = W[n, n'] · S_b[n']: W with column n' scaled by what arrived at n'.
        # One 2-D multiply per sample: numpy's 3-D broadcast of W[None] against
        # S[:, None, :] measured up to 2.4x slower for the same result (profile in
        # benchmarks/bench_messages.py's docstring).
        matrix = self.matrix[piece.receivers]
        rows = incoming[piece.rows]
        if out is None:
            out = np.empty((len(rows),) + matrix.shape, dtype=np.result_type(matrix, rows))
        for i, S_b in enumerate(rows):
            np.multiply(matrix, S_b, out=out[i])
        return out

    def repeated(self, batch):
        return self           # the same J for every sample already

    def row(self, n):
        return np.arange(self.n_out), self.matrix[None, n, :]

    def dense(self):
        return self.matrix[None, :, :].copy()

    def edges(self):
        return np.ones((self.n_in, self.n_out), dtype=bool)

    def message_count(self, batch):
        return batch * self.n_in * self.n_out       # every pair is an edge
