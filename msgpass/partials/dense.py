"""Dense partials: a full Jacobian per sample (Softmax, LogSoftmax, the losses, Function)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import InputPartials

__all__ = ["Dense"]


@dataclass(frozen=True, eq=False)
class Dense(InputPartials):
    """A full Jacobian per sample: ``J_b[n, n'] = values[b, n, n']``.

    Parameters
    ----------
    values : ndarray, shape (B, N_{t-1}, N_t)
    terms : ndarray of the same shape, optional
        Sizes of the terms each entry is formed from, when an entry is a difference of
        larger terms (see ``magnitude``); None means |values|.

    Messages: every (n, n') is an edge; the block is (B, N_{t-1}, N_t), stored densely.
    """

    values: np.ndarray
    terms: np.ndarray | None = None
    kind = "dense"

    @property
    def n_in(self) -> int:  # type: ignore[override]
        return self.values.shape[1]

    @property
    def n_out(self) -> int:  # type: ignore[override]
        return self.values.shape[2]

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype

    def send(self, incoming, piece, out=None):
        return np.multiply(self.values[piece.rows, piece.receivers],
                           incoming[piece.rows, None, :], out=out)

    def push(self, tangent):
        return self.values * tangent[:, :, None]

    def dense(self):
        return self.values.copy()

    def repeated(self, batch):
        return Dense(np.broadcast_to(self.values, (batch,) + self.values.shape[1:]),
                     None if self.terms is None else
                     np.broadcast_to(self.terms, (batch,) + self.terms.shape[1:]))

    def row(self, n):
        return np.arange(self.n_out), self.values[:, n, :]

    def magnitude(self):
        return np.abs(self.values) if self.terms is None else self.terms

    def edges(self):
        return np.ones((self.n_in, self.n_out), dtype=bool)
