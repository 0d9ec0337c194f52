"""Diagonal partials: elementwise layers, where node n' hears only from node n = n'."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import InputPartials

__all__ = ["Diagonal"]


@dataclass(frozen=True, eq=False)
class Diagonal(InputPartials):
    """Elementwise layers: ``J_b[n, n'] = values[b, n]`` if n = n', else an exact zero.

    Parameters
    ----------
    values : ndarray, shape (B, N)
    terms : ndarray of the same shape, optional
        Sizes of the terms each entry is formed from, when it is a difference of larger
        terms (Tanh's 1 − y² is formed from 1 and y²); None means |values|.

    Messages: one edge per node, n ← n. The block stores only those, (B, N); the off-diagonal
    non-edges carry exact zeros that are never stored, and each receiver's single message is
    its sum.
    """

    values: np.ndarray
    terms: np.ndarray | None = None
    kind = "diagonal"
    storage = "diagonal"
    block_dims = ("node",)

    def __post_init__(self):
        # an elementwise layer on images (B, C, H, W) gives its partials as it computed
        # them; the nodes are numbered flat, in C order
        for name in ("values", "terms"):
            array = getattr(self, name)
            if array is not None and array.ndim > 2:
                object.__setattr__(self, name, array.reshape(len(array), -1))

    @property
    def n_in(self) -> int:  # type: ignore[override]
        return self.values.shape[1]

    @property
    def n_out(self) -> int:  # type: ignore[override]
        return self.values.shape[1]

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype

    def block_shape(self, batch):
        return (batch, self.n_in)

    def send(self, incoming, piece, out=None):
        # One edge per node: δ_b[n ← n] = g'(z_b[n]) · S_b[n].
        return np.multiply(self.values[piece.rows, piece.receivers],
                           incoming[piece.rows, piece.receivers], out=out)

    def receive(self, messages, out=None):
        # node n hears only from n' = n: its one message is its sum
        if out is None:
            return messages.copy()
        np.copyto(out, messages)
        return out

    def push(self, tangent):
        # one edge per node: τ_b[n → n] = g'(z_b[n]) · ṫ_b[n], stored (B, N) as the block is
        return self.values * tangent

    def push_receive(self, messages):
        return np.array(messages)

    def push_dense(self, messages):
        return self.expand_stored(messages, {})

    def dense(self):
        # Built by different code from expand_stored, so the two can check each other.
        identity = np.eye(self.n_in, dtype=self.values.dtype)
        return self.values[:, :, None] * identity[None, :, :]

    @classmethod
    def expand_stored(cls, block, attrs):
        """(..., N) diagonals as (..., N, N) blocks with exact zeros off the diagonal; a dask
        array (a loaded store) expands lazily, chunk by chunk."""
        size = block.shape[-1]
        if not isinstance(block, np.ndarray) and hasattr(block, "map_blocks"):
            block = block.rechunk({block.ndim - 1: -1})
            return block.map_blocks(cls.expand_stored, attrs, new_axis=[block.ndim],
                                    chunks=block.chunks + ((size,),), dtype=block.dtype)
        full = np.zeros(block.shape + (size,), dtype=block.dtype)
        full[..., np.arange(size), np.arange(size)] = block
        return full

    def stored_receive(self, block):
        return np.array(block)   # one message per receiver: its sum, never expanded

    def send_check(self, block, incoming):
        # in the stored layout: the diagonal times S, never expanded to N×N
        return block, self.values * incoming

    def repeated(self, batch):
        return Diagonal(np.broadcast_to(self.values, (batch, self.n_in)),
                        None if self.terms is None else
                        np.broadcast_to(self.terms, (batch, self.n_in)))

    def row(self, n):
        return np.array([n]), self.values[:, n:n + 1]

    def edge_counts(self, counts):
        return np.asarray(counts, dtype=object).copy()

    def magnitudes(self, M):
        sizes = np.abs(self.values) if self.terms is None else self.terms
        return sizes * M

    def magnitude(self):
        sizes = np.abs(self.values) if self.terms is None else self.terms
        return sizes[:, :, None] * np.eye(self.n_in, dtype=sizes.dtype)[None, :, :]

    def edges(self):
        return np.eye(self.n_in, dtype=bool)

    def message_count(self, batch):
        return batch * self.n_in         # one per node: never the N×N edge set
