"""Ops that combine many entries into one: the sum and mean over a node's entries (one edge
per entry, so linear memory), and the matrix product ``a @ b`` of two variable nodes (the
matrix-product gate: each factor receives the gradient times the other factor).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import numbers
from ..errors import ShapeError
from ..partials import Contracted, Dense
from .ops import Op, OpPartials

__all__ = ["Sum", "Mean", "MatMul"]


@dataclass(frozen=True)
class ReduceSaved:
    x: np.ndarray      # (B, N)


class Sum(Op):
    """Σ_n x_n over each sample's entries: one number per sample. Every entry sends along one
    edge with partial 1; the block is (B, N, 1), linear in N."""

    label = "sum"
    keeps_shape = False

    def output_features(self, shapes):
        return ()              # one number per sample: a batch of B sums is shown as (B,)

    def weight(self, x: np.ndarray):
        """The partial of every edge, in x's arithmetic."""
        return numbers.convert_like(x, np.ones(1), "1")[0] if x.dtype == object else \
            x.dtype.type(1)

    def forward(self, x):
        w = self.weight(x)
        return (x * w).sum(axis=1, keepdims=True), ReduceSaved(x)

    def local_partials(self, saved):
        x = saved.x
        values = np.empty(x.shape + (1,), dtype=x.dtype)
        values[...] = self.weight(x)
        return OpPartials([Dense(values)])

    def backward(self, saved, dout):
        return [np.broadcast_to(dout, saved.x.shape) * self.weight(saved.x)], {}

    def tangent_partials(self, saved, tangents):
        return self.constant_partials()


class Mean(Sum):
    """The mean of each sample's entries: partial 1/N on every edge (a Fraction in exact
    mode)."""

    label = "mean"

    def weight(self, x):
        n = x.shape[1]
        return numbers.mode_of(x).one_over(n) if x.dtype == object else x.dtype.type(1) / n


@dataclass(frozen=True)
class ProductSaved:
    a: np.ndarray          # (B_a, N_a) as the graph keeps it
    b: np.ndarray
    shapes: tuple          # the two per-sample shapes
    plain: bool            # a plain matrix product: b's samples are its rows (contracted)


def _as_matrix(x: np.ndarray, shape: tuple, side: str) -> np.ndarray:
    """A factor's per-sample value as (B, rows, cols): a vector is a row (left) or a column
    (right) matrix."""
    if len(shape) == 1:
        return x.reshape(len(x), 1, -1) if side == "left" else x.reshape(len(x), -1, 1)
    return x.reshape(len(x), *shape)


class MatMul(Op):
    """``a @ b``, numpy's matmul of the two values as the user gave them.

    Two cases, by the values' shapes:

    * **plain**: a is a batch of rows (B, K) (or one vector (K,)), b is a matrix (K, M), given
      as a 2-D array: the graph keeps b as K rows of M entries, and they are contracted with
      a's columns: D = a @ b, (B, M). Edges a[i, l] → D[i, j] carry b[l, j]; edges
      b[l, j] → D[i, j] carry a[i, l] and join samples (``Contracted`` partials).
    * **per sample**: each sample holds a matrix (or vector) of each factor: a (B, n, k) and
      b (B, k, m) (either factor may be one sample shared by the batch, or a vector):
      each sample's product, with dense per-sample partials (n·k by n·m).
    """

    arity, label = 2, "matmul"
    keeps_shape = False
    couples_samples = False    # set by each forward: True in the plain case only, where b's
                               # rows feed every sample of the output

    @staticmethod
    def is_plain(sa, sb, batch_b: int) -> bool:
        return len(sa) == 1 and len(sb) == 1 and batch_b == sa[0]

    def check_shapes(self, name, shapes):
        sa, sb = (tuple(s) for s in shapes)
        if not 1 <= len(sa) <= 2 or not 1 <= len(sb) <= 2:   # a scalar, as numpy's matmul
            raise ShapeError(f"node {name!r} (a @ b): each sample's factors must be matrices "
                             f"or vectors, got per-sample shapes {sa} and {sb}")

    def _shapes(self, a, b, sa, sb):
        """(plain, output per-sample shape), refusing factors that do not fit."""
        if self.is_plain(sa, sb, len(b)):
            return True, (sb[0],)
        rows_a = 1 if len(sa) == 1 else sa[0]
        inner_a = sa[-1]
        inner_b = sb[0]
        batches = {len(a), len(b)} - {1}
        if inner_a != inner_b or len(batches) > 1:
            raise ShapeError(f"a @ b: a is {len(a)} sample(s) of shape {sa}, b {len(b)} "
                             f"sample(s) of shape {sb}; they multiply as one matrix product "
                             f"(a of shape (B, K), b given as a (K, M) array) or sample by "
                             f"sample ((n, k) @ (k, m) per sample, the same batch or one "
                             f"shared)")
        out = () if len(sa) == 1 else (rows_a,)
        return False, out + (() if len(sb) == 1 else (sb[1],))

    def output_features(self, shapes):
        return getattr(self, "_out", None)

    def forward(self, *xs):
        raise ShapeError("a @ b needs its factors' per-sample shapes (forward_shaped)")

    def forward_shaped(self, xs, shapes):
        a, b = xs
        sa, sb = tuple(shapes[0]), tuple(shapes[1])
        plain, out_shape = self._shapes(a, b, sa, sb)
        self._out = out_shape
        self.couples_samples = plain
        if plain:
            out = a @ b
        else:
            out = np.matmul(_as_matrix(a, sa, "left"), _as_matrix(b, sb, "right"))
            out = out.reshape(len(out), -1)
        return out, ProductSaved(a, b, (sa, sb), plain)

    # the partials are bilinear in (a, b): the same builders give J from the values and J̇
    # from the tangents
    def _edges(self, saved, a, b):
        if saved.plain:
            batch, m = len(a), b.shape[1]
            to_a = Dense(np.broadcast_to(b[None], (batch,) + b.shape))          # (B, K, M)
            to_b = Contracted(np.broadcast_to(a.T[None], (m,) + a.T.shape))     # (M, K, B)
            return [to_a, to_b]
        sa, sb = saved.shapes
        A, Bm = _as_matrix(a, sa, "left"), _as_matrix(b, sb, "right")
        batch = max(len(A), len(Bm))
        A = np.broadcast_to(A, (batch,) + A.shape[1:])
        Bm = np.broadcast_to(Bm, (batch,) + Bm.shape[1:])
        n, k, m = A.shape[1], A.shape[2], Bm.shape[2]
        dtype = np.result_type(A, Bm)
        # J_a[(i, l), (i', j)] = [i = i'] b[l, j];  J_b[(l, j), (i, j')] = [j = j'] a[i, l]
        to_a = np.zeros((batch, n, k, n, m), dtype=dtype)
        to_b = np.zeros((batch, k, m, n, m), dtype=dtype)
        for i in range(n):
            to_a[:, i, :, i, :] = Bm
        for j in range(m):
            to_b[:, :, j, :, j] = A.transpose(0, 2, 1)
        return [Dense(to_a.reshape(batch, n * k, n * m)),
                Dense(to_b.reshape(batch, k * m, n * m))]

    def local_partials(self, saved):
        return OpPartials(self._edges(saved, saved.a, saved.b))

    def tangent_partials(self, saved, tangents):
        da, db = (np.broadcast_to(t, x.shape) for t, x in zip(tangents, (saved.a, saved.b),
                                                             strict=True))
        # J_a is built from b, so it moves with ḃ; J_b from a, with ȧ
        return [self._edges(saved, saved.a, db)[0], self._edges(saved, da, saved.b)[1]]

    def backward(self, saved, dout):
        a, b = saved.a, saved.b
        if saved.plain:
            return [dout @ b.T, a.T @ dout], {}
        sa, sb = saved.shapes
        A, Bm = _as_matrix(a, sa, "left"), _as_matrix(b, sb, "right")
        D = dout.reshape(len(dout), A.shape[1], Bm.shape[2])
        dA = D @ Bm.transpose(0, 2, 1)
        dB = A.transpose(0, 2, 1) @ D
        if len(a) < len(dout):        # a factor shared by every sample sums over them
            dA = dA.sum(axis=0, keepdims=True)
        if len(b) < len(dout):
            dB = dB.sum(axis=0, keepdims=True)
        return [dA.reshape(len(dA), -1), dB.reshape(len(dB), -1)], {}
