"""Loss layers g^T. Each gives the per-sample loss ℓ_b as a (B, 1) output; the network's loss
is the batch mean L = (1/B) Σ_b ℓ_b. Their local partials are ∂ℓ_b/∂x_n, a dense (B, N, 1)
block; the 1/B of the mean enters the message pass as the sum arriving from above the loss
(S^{T+1} = 1/B). Their classic ``backward`` returns ∂L/∂x directly, 1/B included, as the
textbook's SoftmaxWithLoss does.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .. import numbers
from ..errors import DtypeError, InputValueError, ShapeError
from ..partials import Dense, LocalPartials
from ..validate import as_array
from .base import LossLayer
from .softmax import log_softmax

__all__ = ["SoftmaxCrossEntropy", "NLLLoss", "MSELoss", "Rescaled"]


def class_target(target, x: np.ndarray) -> np.ndarray:
    """Turn labels (B,) in 0..K-1, or non-negative rows (B, K) such as one-hot or soft labels,
    into a float (B, K) array in x's dtype. Raises with the expected vs given shape or value.

    Rows need not sum to 1: the losses use derivatives that hold for any row sum."""
    batch, classes = x.shape
    t = as_array(target, "target")
    if t.dtype == object:   # Fractions or mpf: labels must be whole numbers, rows convert exactly
        if t.shape == (batch, classes) and x.dtype == object:
            return _object_rows(x, t)
        t = numbers.EXACT.array(t, "target")           # exact, so 2.5 is not taken for 2
        if t.shape == (batch,) and any(v.denominator != 1 for v in t):
            bad = next(i for i, v in enumerate(t) if v.denominator != 1)
            raise InputValueError(f"label of sample {bad} is {t[bad]}; labels must be integers")
        t = t.astype(np.float64) if t.shape == (batch, classes) else \
            np.array([int(v) for v in t.reshape(-1)]).reshape(t.shape)
    if t.dtype.kind not in "biuf" or (t.dtype.kind == "b" and t.ndim == 1):
        raise DtypeError(
            f"target must be integer labels or numeric one-hot rows, got dtype {t.dtype}")
    if t.shape == (batch,):
        if t.dtype.kind == "f":
            if not np.all(np.isfinite(t)) or np.any(t != np.round(t)):
                bad = int(np.flatnonzero(~np.isfinite(t) | (t != np.round(t)))[0])
                raise InputValueError(
                    f"label of sample {bad} is {float(t[bad]):g}; labels must be integers")
        out_of_range = (t < 0) | (t >= classes)  # before any cast, which could wrap around
        if out_of_range.any():
            bad = int(np.flatnonzero(out_of_range)[0])
            shown = f"{float(t[bad]):g}" if t.dtype.kind == "f" else str(t[bad])
            raise InputValueError(
                f"label of sample {bad} is {shown}; expected 0..{classes - 1} "
                f"({classes} classes)")
        labels = t.astype(np.int64)
        onehot = np.zeros((batch, classes), dtype=np.float64 if x.dtype == object else x.dtype)
        onehot[np.arange(batch), labels] = 1
        if x.dtype == object:   # exact or mp: 0 and 1 as the mode's numbers (int / int is float)
            return numbers.convert_like(x, onehot, "target")
        return onehot
    if t.shape == (batch, classes):
        if x.dtype == object:
            return _object_rows(x, t)
        rows = t.astype(x.dtype)
        if not np.all(np.isfinite(rows)):
            bad = np.argwhere(~np.isfinite(rows))[0]
            raise InputValueError(f"target contains NaN or Inf at sample {bad[0]}, class {bad[1]}")
        if np.any(rows < 0):
            bad = np.argwhere(rows < 0)[0]
            raise InputValueError(
                f"target rows must be non-negative (one-hot or soft labels), but sample "
                f"{bad[0]}, class {bad[1]} is {rows[bad[0], bad[1]]:g}")
        return rows
    raise ShapeError(
        f"target must be labels of shape ({batch},) or one-hot rows of shape "
        f"({batch}, {classes}), got {t.shape}")


def _object_rows(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Probability rows for an exact or mp input, in its arithmetic; non-negative."""
    rows = numbers.convert_like(x, t, "target")
    if np.any(rows < 0):
        bad = np.argwhere(rows < 0)[0]
        raise InputValueError(f"target rows must be non-negative, but sample {bad[0]}, "
                              f"class {bad[1]} is {rows[bad[0], bad[1]]}")
    return rows


def _cross_entropy_partials(prob: np.ndarray, target: np.ndarray):
    """∂ℓ/∂x_n = p_n Σ_k t_k − t_n (the famous p − t when the row sums to 1), and the sizes
    p_n Σ t + t_n of the two terms it is a difference of. Shapes (B, K)."""
    weighted = prob * target.sum(axis=1, keepdims=True)
    return weighted - target, weighted + target


@dataclass(frozen=True)
class ClassSaved:
    prob: np.ndarray    # (B, K) softmax of the logits (SoftmaxCrossEntropy) or unused
    target: np.ndarray  # (B, K) probability rows


class SoftmaxCrossEntropy(LossLayer):
    """Softmax with cross-entropy: ``ℓ_b = −Σ_k t_{bk} log softmax(x_b)_k``.

    Target: integer labels (B,) or non-negative rows (B, K), one-hot or soft. Local partials
    ``∂ℓ_b/∂x_n = p_n Σ_k t_k − t_n``: the famous y − t for one-hot or normalised rows.
    """

    def prepare_target(self, target, x):
        return class_target(target, x)

    def forward(self, x, target=None):
        t = self.prepare_target(target, x)
        logp = log_softmax(x)
        loss = -np.sum(t * logp, axis=1, keepdims=True)
        return loss, ClassSaved(prob=numbers.exp(logp), target=t)

    def local_partials(self, saved):
        grad, terms = _cross_entropy_partials(saved.prob, saved.target)
        return LocalPartials(Dense(grad[:, :, None], terms[:, :, None]))

    def backward(self, saved, dout=1):
        batch_size, t = saved.target.shape[0], saved.target
        dx = dout * (saved.prob * np.sum(t, axis=1, keepdims=True) - t) / batch_size
        return dx, {}


class NLLLoss(LossLayer):
    """Negative log-likelihood on log-probabilities: ``ℓ_b = −Σ_k t_{bk} x_{bk}``.

    Put a LogSoftmax before it. The inputs are not checked to be normalised: the function
    −Σ t·x is defined for any x, and the numerical witness evaluates it off the
    log-probability rows. Local partials ``∂ℓ_b/∂x_n = −t_n``.
    """

    rational = True

    def prepare_target(self, target, x):
        return class_target(target, x)

    def forward(self, x, target=None):
        t = self.prepare_target(target, x)
        loss = -np.sum(t * x, axis=1, keepdims=True)
        return loss, ClassSaved(prob=np.empty((0, 0), x.dtype), target=t)

    def local_partials(self, saved):
        return LocalPartials(Dense(-saved.target[:, :, None]))

    def backward(self, saved, dout=1):
        batch_size = saved.target.shape[0]
        dx = -dout * saved.target / batch_size
        return dx, {}


@dataclass(frozen=True)
class DiffSaved:
    diff: np.ndarray  # (B, N) y − t
    size: np.ndarray  # (B, N) |y| + |t|


class MSELoss(LossLayer):
    """Squared error ``ℓ_b = ½ Σ_n (y_{bn} − t_{bn})²``; target of shape (B, N).

    Local partials ``∂ℓ_b/∂y_n = y_n − t_n``.
    """

    rational = True

    def prepare_target(self, target, x):
        t = as_array(target, "target")
        if t.dtype.kind not in "biuf" and not (x.dtype == object and t.dtype == object):
            raise DtypeError(f"target must be numeric, got dtype {t.dtype}")
        if t.shape != x.shape:
            raise ShapeError(f"target must have the shape of the input {x.shape}, got {t.shape}")
        if x.dtype == object:   # exact or mp: convert and check entry by entry
            return numbers.convert_like(x, t, "target")
        t = t.astype(x.dtype)
        if not np.all(np.isfinite(t)):
            bad = np.argwhere(~np.isfinite(t))[0]
            raise InputValueError(f"target contains NaN or Inf at sample {bad[0]}, node {bad[1]}")
        return t

    def forward(self, x, target=None):
        t = self.prepare_target(target, x)
        diff = x - t
        # / 2, not 0.5 *: a float factor would turn exact Fractions into floats
        return (np.sum(diff * diff, axis=1, keepdims=True) / 2,
                DiffSaved(diff=diff, size=np.abs(x) + np.abs(t)))

    def local_partials(self, saved):
        # y − t is a difference: its round-off scales with |y| + |t|, not |y − t|.
        return LocalPartials(Dense(saved.diff[:, :, None], saved.size[:, :, None]))

    def backward(self, saved, dout=1):
        batch_size = saved.diff.shape[0]
        return dout * saved.diff / batch_size, {}


@dataclass(frozen=True)
class RescaledSaved:
    inner: object       # what the rescaled loss saved
    factor: object      # the factor this batch's per-sample losses were multiplied by


class Rescaled(LossLayer):
    """``Rescaled(loss, factor=1, per_batch=False, per_width=False)``: a loss layer whose
    per-sample loss is ``factor`` times ``loss``'s, times B as well with ``per_batch`` (the
    batch mean becomes a sum), divided by the input width N with ``per_width``. How another
    library's conventions are met exactly: PyTorch's ``nn.MSELoss()`` is
    ``Rescaled(MSELoss(), 2, per_width=True)`` (the mean over all B·N entries, no ½), and
    ``reduction="sum"`` is ``per_batch=True``.

    Local partials: ``loss``'s, times the factor (the losses' are dense)."""

    def __init__(self, loss: LossLayer, factor=1, per_batch: bool = False,
                 per_width: bool = False) -> None:
        super().__init__()
        if not isinstance(loss, LossLayer):
            raise TypeError(f"Rescaled takes a loss layer, got {loss!r}")
        self.loss, self.factor = loss, factor
        self.per_batch, self.per_width = bool(per_batch), bool(per_width)
        self.rational = loss.rational

    def describe(self):
        factor = "" if self.factor == 1 else f" · {float(self.factor):g}"
        return (f"{self.loss.describe()}{factor}{' · B' if self.per_batch else ''}"
                f"{' / N' if self.per_width else ''}")

    def prepare_target(self, target, x):
        return self.loss.prepare_target(target, x)

    def _factor(self, x):
        factor = Fraction(self.factor) * (len(x) if self.per_batch else 1) / (
            x.shape[1] if self.per_width else 1)
        if x.dtype == object:     # exact or mp: the factor in the same numbers
            return numbers.convert_like(x, np.array([factor], dtype=object), "factor")[0]
        return x.dtype.type(float(factor))

    def forward(self, x, target=None):
        out, saved = self.loss.forward(x, target)
        factor = self._factor(x)
        return out * factor, RescaledSaved(saved, factor)

    def local_partials(self, saved):
        inner = self.loss.local_partials(saved.inner).inputs
        terms = None if inner.terms is None else inner.terms * abs(saved.factor)
        return LocalPartials(Dense(inner.values * saved.factor, terms))

    def backward(self, saved, dout=1):
        return self.loss.backward(saved.inner, dout * saved.factor)

    def nondifferentiable(self, saved):
        return self.loss.nondifferentiable(saved.inner)

    def branch(self, saved):
        return self.loss.branch(saved.inner)
