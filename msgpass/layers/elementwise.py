"""Elementwise activations: node n' of the output hears only from node n = n' of the input.

Their local partials are diagonal (B, N); their message blocks are zero off the diagonal.

Convention at the kink: ReLU′(0) = 0. The local partial uses ``x > 0`` and the classic
backward zeroes ``x <= 0``; both give 0 at exactly 0, and verify lists every such point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import numbers
from ..partials import Diagonal, LocalPartials
from .base import Layer

__all__ = ["ReLU", "Sigmoid", "Tanh"]


@dataclass(frozen=True)
class InputSaved:
    x: np.ndarray  # (B, N) the layer input


@dataclass(frozen=True)
class OutputSaved:
    out: np.ndarray  # (B, N) the layer output, from which the derivative follows


class ReLU(Layer):
    """``y = max(x, 0)``; local partial 1 where x > 0, else 0 (ReLU′(0) = 0)."""

    keeps_shape = True

    rational = True

    kink_convention = "ReLU'(0) = 0 in both the local partials and the classic backward"

    def forward(self, x):
        if x.dtype == object:   # x·0, not the int 0, so exact and mp values keep their type
            return np.where(x > 0, x, x * 0), InputSaved(x=x)
        return np.maximum(x, 0), InputSaved(x=x)

    def local_partials(self, saved):
        return LocalPartials(Diagonal((saved.x > 0).astype(saved.x.dtype)))

    def tangent_partials(self, saved, dx):
        """J̇ along the input's tangent (second-order messages): ReLU's slope is piecewise
        constant, so nothing moves (None)."""
        return None

    def backward(self, saved, dout):
        # zero where x ≤ 0 (ReLU′(0) = 0), dout elsewhere, in one pass
        dx = np.zeros_like(dout) if dout.dtype != object else dout * 0
        np.copyto(dx, dout, where=saved.x > 0)
        return dx, {}

    def nondifferentiable(self, saved):
        return saved.x == 0

    def branch(self, saved):
        return np.sign(saved.x).astype(np.int8)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # Two branches so that exp never overflows: for x < 0 use e^x / (1 + e^x).
    e = numbers.exp(-np.abs(x))  # float64 for integer x, float32 stays float32
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


class Sigmoid(Layer):
    """``y = 1 / (1 + e^{-x})``; local partial ``y (1 - y)``."""

    keeps_shape = True

    def forward(self, x):
        out = _sigmoid(x)
        return out, OutputSaved(out=out)

    def local_partials(self, saved):
        y = saved.out
        return LocalPartials(Diagonal(y * (1 - y), terms=y * (1 + y)))  # y − y² from y and y²

    def tangent_partials(self, saved, dx):
        """J̇ = σ″(x)·ẋ = y(1 − y)(1 − 2y)·ẋ (second-order messages)."""
        y = saved.out
        return Diagonal(y * (1 - y) * (1 - 2 * y) * dx)

    def backward(self, saved, dout):
        dx = dout * (1.0 - saved.out) * saved.out
        return dx, {}


class Tanh(Layer):
    """``y = tanh x``; local partial ``1 - y²``."""

    keeps_shape = True

    def forward(self, x):
        out = numbers.tanh(x)
        return out, OutputSaved(out=out)

    def local_partials(self, saved):
        square = saved.out * saved.out
        return LocalPartials(Diagonal(1 - square, terms=1 + square))  # 1 − y² from 1 and y²

    def tangent_partials(self, saved, dx):
        """J̇ = tanh″(x)·ẋ = −2y(1 − y²)·ẋ (second-order messages)."""
        y = saved.out
        return Diagonal(-2 * y * (1 - y * y) * dx)

    def backward(self, saved, dout):
        dx = dout * (1.0 - saved.out**2)
        return dx, {}


@dataclass(frozen=True)
class MaskSaved:
    keep: np.ndarray  # (B, N) the factor each input is multiplied by: 0 or 1/(1 − p)


class Dropout(Layer):
    """Inverted dropout: in training mode each input is zeroed with probability p and the
    rest scaled by 1/(1 − p); in evaluation mode (``net.eval()``) it is the identity.

    Local partials: diagonal, the mask itself (0 or 1/(1 − p)), so a dropped node sends and
    receives exactly zero messages.

    The mask for a batch is a function of (seed, step, batch shape): every forward within one
    training step draws the same mask, so that the messages, standard backprop and the
    numerical witness all see one function. ``net.next_step()`` (the trainer calls it once per
    step) moves on to fresh masks.

    Without a seed, the masks come from the layer's position: a network (or a graph) runs it
    with its position t (``forward_at``) and it draws from the stream (UNSEEDED, t, step,
    batch shape), which no seed's (seed, step, batch shape) can meet. So two unseeded Dropouts
    of a network draw different masks, and the same network draws the same ones in every run.
    Called directly (``forward``), it is at position 0.
    """

    keeps_shape = True

    UNSEEDED = 10_000

    def __init__(self, p: float = 0.5, seed: int | None = None) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p!r}")
        self.p, self.seed, self.step = float(p), None if seed is None else int(seed), 0

    def describe(self) -> str:
        return f"Dropout({self.p:g})"

    def next_step(self, saved) -> None:
        self.step += 1

    def _keep(self, x: np.ndarray, position: int | None) -> np.ndarray:
        if not self.training or self.p == 0:
            return np.ones_like(x)
        stream = [self.UNSEEDED, position or 0] if self.seed is None else [self.seed]
        draw = np.random.default_rng([*stream, self.step, *x.shape]).random(x.shape)
        return np.where(draw >= self.p, 1.0 / (1.0 - self.p), 0.0).astype(x.dtype)

    def forward(self, x):
        return self.forward_at(x, None)

    def forward_at(self, x, position, target=None):
        keep = self._keep(x, position)
        return x * keep, MaskSaved(keep)

    def local_partials(self, saved):
        return LocalPartials(Diagonal(saved.keep.copy()))

    def backward(self, saved, dout):
        return dout * saved.keep, {}
