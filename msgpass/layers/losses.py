"""Loss layers g^T. Each gives the per-sample loss ℓ_b as a (B, 1) output; the network's loss
is the batch mean L = (1/B) Σ_b ℓ_b. Their local partials are ∂ℓ_b/∂x_n, a dense (B, N, 1)
block; the 1/B of the mean enters the message pass as the sum arriving from above the loss
(S^{T+1} = 1/B). Their classic ``backward`` returns ∂L/∂x directly, 1/B included, as the
textbook's SoftmaxWithLoss does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DtypeError, InputValueError, ShapeError
from ..partials import Dense, LocalPartials
from .base import LossLayer
from .softmax import log_softmax

__all__ = ["SoftmaxCrossEntropy", "NLLLoss", "MSELoss"]


def class_target(target, x: np.ndarray) -> np.ndarray:
    """Turn labels (B,) in 0..K-1, or probability rows (B, K) such as one-hot, into a float
    (B, K) array in x's dtype. Raises with the expected vs given shape or value."""
    batch, classes = x.shape
    t = np.asarray(target)
    if t.dtype.kind not in "biuf" or (t.dtype.kind == "b" and t.ndim == 1):
        raise DtypeError(
            f"target must be integer labels or numeric one-hot rows, got dtype {t.dtype}")
    if t.shape == (batch,):
        if t.dtype.kind == "f":
            if not np.all(np.isfinite(t)) or np.any(t != np.round(t)):
                bad = int(np.flatnonzero(~np.isfinite(t) | (t != np.round(t)))[0])
                raise InputValueError(
                    f"label of sample {bad} is {float(t[bad]):g}; labels must be integers")
        labels = t.astype(np.int64)
        out_of_range = (labels < 0) | (labels >= classes)
        if out_of_range.any():
            bad = int(np.flatnonzero(out_of_range)[0])
            raise InputValueError(
                f"label of sample {bad} is {labels[bad]}; expected 0..{classes - 1} "
                f"({classes} classes)")
        onehot = np.zeros((batch, classes), dtype=x.dtype)
        onehot[np.arange(batch), labels] = 1
        return onehot
    if t.shape == (batch, classes):
        rows = t.astype(x.dtype)
        if not np.all(np.isfinite(rows)):
            bad = np.argwhere(~np.isfinite(rows))[0]
            raise InputValueError(f"target contains NaN or Inf at sample {bad[0]}, class {bad[1]}")
        tol = 1e-6 if x.dtype == np.float64 else 1e-3  # round-off in a user's own normalisation
        if np.any(rows < 0) or np.any(np.abs(rows.sum(axis=1) - 1) > tol):
            bad = int(np.flatnonzero(np.any(rows < 0, axis=1)
                                     | (np.abs(rows.sum(axis=1) - 1) > tol))[0])
            raise InputValueError(
                f"target row of sample {bad} is not a probability row (one-hot or soft labels: "
                f"entries ≥ 0 summing to 1); it sums to {rows[bad].sum():.6g}")
        return rows
    raise ShapeError(
        f"target must be labels of shape ({batch},) or one-hot rows of shape "
        f"({batch}, {classes}), got {t.shape}")


@dataclass(frozen=True)
class ClassSaved:
    prob: np.ndarray    # (B, K) softmax of the logits (SoftmaxCrossEntropy) or unused
    target: np.ndarray  # (B, K) probability rows


class SoftmaxCrossEntropy(LossLayer):
    """Softmax with cross-entropy: ``ℓ_b = −Σ_k t_{bk} log softmax(x_b)_k``.

    Target: integer labels (B,) or probability rows (B, K). Local partials
    ``∂ℓ_b/∂x_n = p_n − t_n`` (the famous y − t).
    """

    def prepare_target(self, target, x):
        return class_target(target, x)

    def forward(self, x, target=None):
        t = self.prepare_target(target, x)
        logp = log_softmax(x)
        loss = -np.sum(t * logp, axis=1, keepdims=True)
        return loss, ClassSaved(prob=np.exp(logp), target=t)

    def local_partials(self, saved):
        return LocalPartials(Dense((saved.prob - saved.target)[:, :, None]))

    def backward(self, saved, dout=1.0):
        batch_size = saved.target.shape[0]
        dx = dout * (saved.prob - saved.target) / batch_size
        return dx, {}


class NLLLoss(LossLayer):
    """Negative log-likelihood on log-probabilities: ``ℓ_b = −Σ_k t_{bk} x_{bk}``.

    Put a LogSoftmax before it. The inputs are not checked to be normalised: the function
    −Σ t·x is defined for any x, and the numerical witness evaluates it off the
    log-probability rows. Local partials ``∂ℓ_b/∂x_n = −t_n``.
    """

    def prepare_target(self, target, x):
        return class_target(target, x)

    def forward(self, x, target=None):
        t = self.prepare_target(target, x)
        loss = -np.sum(t * x, axis=1, keepdims=True)
        return loss, ClassSaved(prob=np.empty((0, 0), x.dtype), target=t)

    def local_partials(self, saved):
        return LocalPartials(Dense(-saved.target[:, :, None]))

    def backward(self, saved, dout=1.0):
        batch_size = saved.target.shape[0]
        dx = -dout * saved.target / batch_size
        return dx, {}


@dataclass(frozen=True)
class DiffSaved:
    diff: np.ndarray  # (B, N) y − t


class MSELoss(LossLayer):
    """Squared error ``ℓ_b = ½ Σ_n (y_{bn} − t_{bn})²``; target of shape (B, N).

    Local partials ``∂ℓ_b/∂y_n = y_n − t_n``.
    """

    def prepare_target(self, target, x):
        t = np.asarray(target)
        if t.dtype.kind not in "biuf":
            raise DtypeError(f"target must be numeric, got dtype {t.dtype}")
        if t.shape != x.shape:
            raise ShapeError(f"target must have the shape of the input {x.shape}, got {t.shape}")
        t = t.astype(x.dtype)
        if not np.all(np.isfinite(t)):
            bad = np.argwhere(~np.isfinite(t))[0]
            raise InputValueError(f"target contains NaN or Inf at sample {bad[0]}, node {bad[1]}")
        return t

    def forward(self, x, target=None):
        diff = x - self.prepare_target(target, x)
        return 0.5 * np.sum(diff * diff, axis=1, keepdims=True), DiffSaved(diff=diff)

    def local_partials(self, saved):
        return LocalPartials(Dense(saved.diff[:, :, None]))

    def backward(self, saved, dout=1.0):
        batch_size = saved.diff.shape[0]
        return dout * saved.diff / batch_size, {}
