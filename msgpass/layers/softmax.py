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
    """Row-wise ``x - log Σ exp x``, computed without overflow. Shape (B, N) → (B, N)."""
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - numbers.log(numbers.exp(shifted).sum(axis=1, keepdims=True))


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax, computed without overflow. Shape (B, N) → (B, N)."""
    e = numbers.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class ProbSaved:
    prob: np.ndarray  # (B, N) softmax of the input


class Softmax(Layer):
    """``y_{n'} = e^{x_{n'}} / Σ_k e^{x_k}``.

    Local partials ``J_b[n, n'] = ∂y_{n'}/∂x_n = y_{n'} (δ_{nn'} − y_n)``.
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
        jac[:, idx, idx] += y
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
    block is not symmetric: row n holds −p_n off the diagonal.
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
        jac[:, idx, idx] += 1
        terms = np.broadcast_to(p[:, :, None], (batch, n, n)).copy()  # δ − p_n from δ and p_n
        terms[:, idx, idx] += 1
        return LocalPartials(Dense(jac, terms))

    def backward(self, saved, dout):
        dx = dout - saved.prob * np.sum(dout, axis=1, keepdims=True)
        return dx, {}
