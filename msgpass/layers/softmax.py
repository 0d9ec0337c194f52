"""Softmax and LogSoftmax: every output depends on every input, so the local partials are a
dense (B, N, N) block per sample. Both shift by the row maximum first, so logits of any
magnitude (1e4 and beyond) stay finite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import numbers
from ..partials import Dense, LocalPartials
from .base import Layer

__all__ = ["Softmax", "LogSoftmax", "softmax", "log_softmax"]


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise ``x - log Σ exp x``, computed without overflow. Shape (B, N) → (B, N).

    After the shift the largest term of the sum is exactly 1, so ``log Σ`` is taken as
    ``log1p`` of the other terms: the top class's log-probability −log(1 + Σ_{k≠top} e^{x_k})
    then keeps its relative precision when it is tiny (logits (0, −40): −4.2e-18, where
    ``log`` of the sum rounds to 0).
    """
    shifted = x - x.max(axis=1, keepdims=True)
    terms = numbers.exp(shifted)
    top = np.arange(x.shape[1]) == shifted.argmax(axis=1)[:, None]   # one per row, ties too
    others = np.where(top, 0, terms).sum(axis=1, keepdims=True)
    return shifted - numbers.log1p(others)


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax, computed without overflow. Shape (B, N) → (B, N)."""
    e = numbers.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sum_of_the_others(p: np.ndarray) -> np.ndarray:
    """``Σ_{k≠n} p_k`` for every n, shape (B, N) → (B, N): the diagonal's ``1 − p_n`` as a sum
    of non-negative terms, which keeps full relative precision where ``1 − p_n`` cancels (for
    logits (0, −d) in float64, ``1 − p_max`` computed by subtraction is off by 1e-3 at d = 30
    and exactly 0 from d ≈ 37, though its true value is about e^(−d))."""
    off_diagonal = ~np.eye(p.shape[1], dtype=bool)[None]
    return np.where(off_diagonal, p[:, None, :], 0).sum(axis=2)


@dataclass(frozen=True)
class ProbSaved:
    prob: np.ndarray  # (B, N) softmax of the input


class Softmax(Layer):
    """``y_{n'} = e^{x_{n'}} / Σ_k e^{x_k}``.

    Local partials ``J_b[n, n'] = ∂y_{n'}/∂x_n = y_{n'} (δ_{nn'} − y_n)``; the diagonal
    ``y_n (1 − y_n)`` is computed as ``y_n Σ_{k≠n} y_k``, which keeps its relative precision
    when y_n is close to 1.
    """

    takes_rows = True

    def forward(self, x):
        y = softmax(x)
        return y, ProbSaved(prob=y)

    def local_partials(self, saved):
        y = saved.prob
        outer = y[:, :, None] * y[:, None, :]
        idx = np.arange(y.shape[1])
        jac = -outer
        jac[:, idx, idx] = y * _sum_of_the_others(y)
        terms = outer  # |y_n'(δ − y_n)| is formed from y_n'·δ and y_n'·y_n
        terms[:, idx, idx] += y
        return LocalPartials(Dense(jac, terms))

    def backward(self, saved, dout):
        y = saved.prob
        dx = y * (dout - np.sum(dout * y, axis=1, keepdims=True))
        return dx, {}


class LogSoftmax(Layer):
    """``y_{n'} = x_{n'} − log Σ_k e^{x_k}``.

    Local partials ``J_b[n, n'] = ∂y_{n'}/∂x_n = δ_{nn'} − p_n`` with p = softmax(x). The
    block is not symmetric: row n holds −p_n off the diagonal. The diagonal ``1 − p_n`` is
    computed as ``Σ_{k≠n} p_k``, which keeps its relative precision when p_n is close to 1.
    """

    takes_rows = True

    def forward(self, x):
        out = log_softmax(x)
        return out, ProbSaved(prob=numbers.exp(out))

    def local_partials(self, saved):
        p = saved.prob
        batch, n = p.shape
        jac = np.broadcast_to(-p[:, :, None], (batch, n, n)).copy()
        idx = np.arange(n)
        jac[:, idx, idx] = _sum_of_the_others(p)
        terms = np.broadcast_to(p[:, :, None], (batch, n, n)).copy()  # δ − p_n from δ and p_n
        terms[:, idx, idx] += 1
        return LocalPartials(Dense(jac, terms))

    def backward(self, saved, dout):
        dx = dout - saved.prob * np.sum(dout, axis=1, keepdims=True)
        return dx, {}
