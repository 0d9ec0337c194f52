"""Batch normalisation: in training mode each feature is normalised with the statistics of the
batch, so every output depends on every sample of the batch and the messages run between
(sample, feature) nodes (DESIGN.md §2, the coupled kind); in evaluation mode it uses running
statistics and is elementwise.

Training mode, per feature j, with μ, σ² the batch mean and (biased) variance, σ = √(σ² + ε):

    x̂_b = (x_b − μ) / σ,    y_b = γ x̂_b + β,
    J_j[b, b'] = ∂y_{b'}/∂x_b = (γ/σ) (δ_{bb'} − 1/B − x̂_b x̂_{b'} / B).

The running statistics are updated by ``net.next_step()`` (the trainer calls it after every
step) from the batch statistics that the step's forward returned in its saved record, so
repeated forwards within a step (the witnesses of verify) change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import numbers
from ..errors import ShapeError
from ..partials import ChannelCoupled, Coupled, Diagonal, Elementwise, LocalPartials, PerChannel
from ..validate import positive_int
from .base import Layer

__all__ = ["BatchNorm", "BatchNorm2d"]


@dataclass(frozen=True)
class BatchNormSaved:
    xhat: np.ndarray    # (B, N)
    scale: np.ndarray   # (N,) γ / σ
    training: bool
    mean: np.ndarray    # (N,) the statistics used: the batch's in training mode (which
    var: np.ndarray     # next_step folds into the running ones), else the running ones


class BatchNorm(Layer):
    """``BatchNorm(n, momentum=0.9, eps=1e-5)``: parameters γ ("gamma", ones) and β ("beta",
    zeros); running mean and variance for evaluation mode.

    ``running = momentum · running + (1 − momentum) · batch``, so PyTorch's momentum 0.1 is
    0.9 here. The running variance folds in the biased batch variance (the one the forward
    normalises with) unless ``unbiased_running_var=True``, which folds in the unbiased one,
    n/(n − 1) times it over the n entries per feature, as PyTorch does."""

    keeps_shape = True

    couples_samples = True

    def __init__(self, n: int, momentum: float = 0.9, eps: float = 1e-5,
                 dtype=np.float64, unbiased_running_var: bool = False) -> None:
        super().__init__()
        self.n = positive_int(n, "BatchNorm: n", ShapeError)
        self.momentum, self.eps = float(momentum), float(eps)
        self.unbiased_running_var = bool(unbiased_running_var)
        self.params = {"gamma": np.ones(self.n, dtype=dtype), "beta": np.zeros(self.n, dtype=dtype)}
        self.running_mean = np.zeros(self.n)
        self.running_var = np.ones(self.n)

    def describe(self) -> str:
        return f"BatchNorm({self.n})"

    @property
    def input_width(self):
        return self.n

    def output_width(self, n_in):
        if n_in is not None and n_in != self.n:
            raise ShapeError(f"expects {self.n} inputs but receives {n_in}")
        return self.n

    def forward(self, x):
        self._check_width(x, self.n)
        gamma, beta = self.params["gamma"], self.params["beta"]
        if self.training:
            if x.shape[0] < 2:
                raise ShapeError("BatchNorm in training mode needs a batch of at least 2 "
                                 "samples (the variance of one sample is 0)")
            mean, var = x.mean(axis=0), x.var(axis=0)
        else:
            mean, var = self.running_mean.astype(x.dtype), self.running_var.astype(x.dtype)
        sigma = numbers.sqrt(var + self.eps)
        xhat = (x - mean) / sigma
        return gamma * xhat + beta, BatchNormSaved(xhat, gamma / sigma, self.training, mean, var)

    def state(self):
        return {"running_mean": self.running_mean, "running_var": self.running_var}

    def load_state(self, state):
        for name, value in state.items():
            if name not in ("running_mean", "running_var"):
                raise KeyError(f"{self.describe()} keeps no state named {name!r}")
            setattr(self, name, np.array(value, dtype=np.float64))

    def next_step(self, saved) -> None:
        """Fold the step's training batch statistics (from its forward's saved record) into
        the running ones; nothing after an evaluation-mode forward or none at all."""
        if saved is not None and saved.training:
            var = saved.var     # the biased variance, as the forward uses, unless asked
            if self.unbiased_running_var:
                count = saved.xhat.size // self.n          # entries per feature (channel)
                var = var * count / (count - 1)
            self.running_mean = (self.momentum * self.running_mean
                                 + (1 - self.momentum) * saved.mean)
            self.running_var = self.momentum * self.running_var + (1 - self.momentum) * var

    def local_partials(self, saved):
        params = {"gamma": Elementwise(saved.xhat.copy(), self.n),
                  "beta": Elementwise(None, self.n)}
        if not saved.training:
            batch = saved.xhat.shape[0]
            return LocalPartials(Diagonal(np.broadcast_to(saved.scale, (batch, self.n)).copy()),
                                 params)
        xhat = saved.xhat.T                                   # (N, B)
        batch = xhat.shape[1]
        # an int identity and "/ batch" on the scale: exact and mp numbers stay exact
        # (1.0 / batch would bring a rounded float into an mp computation)
        eye = np.eye(batch, dtype=int if xhat.dtype == object else xhat.dtype)
        outer = xhat[:, :, None] * xhat[:, None, :] / batch   # (N, B, B)
        scale = saved.scale[:, None, None]
        values = scale * (eye[None] - outer) - scale / batch
        terms = np.abs(scale) * (eye[None] + np.abs(outer)) + np.abs(scale) / batch
        return LocalPartials(Coupled(values, terms), params)

    def backward(self, saved, dout):
        dgamma = np.sum(dout * saved.xhat, axis=0)
        dbeta = np.sum(dout, axis=0)
        if not saved.training:
            return dout * saved.scale, {"gamma": dgamma, "beta": dbeta}
        dx = saved.scale * (dout - dout.mean(axis=0) - saved.xhat * np.mean(dout * saved.xhat,
                                                                            axis=0))
        return dx, {"gamma": dgamma, "beta": dbeta}


class BatchNorm2d(BatchNorm):
    """``BatchNorm2d(channels, momentum=0.9, eps=1e-5)``: batch normalisation of NCHW images
    per channel, over the batch and every position (B·H·W entries per channel); parameters
    γ ("gamma") and β ("beta") of shape (channels,), running statistics as BatchNorm's.

    In training mode a channel's B·H·W nodes all hear from each other (the channel-coupled
    kind, sent channel by channel under the budget); in evaluation mode it is elementwise.
    """

    takes_images = True

    def __init__(self, channels: int, momentum: float = 0.9, eps: float = 1e-5,
                 dtype=np.float64, unbiased_running_var: bool = False) -> None:
        # the (and torch's) name for the width: channels
        super().__init__(channels, momentum, eps, dtype, unbiased_running_var)

    def describe(self) -> str:
        return f"BatchNorm2d({self.n})"

    @property
    def input_width(self):
        return None

    def output_width(self, n_in):
        return None

    def output_shape(self, shape):
        shape = tuple(shape)
        if len(shape) != 3 or shape[0] != self.n:
            raise ShapeError(f"expects images (B, {self.n}, H, W), got a "
                             f"per-sample shape {shape}")
        return shape

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.n:
            raise ShapeError(f"expects NCHW input (B, {self.n}, H, W), got "
                             f"shape {x.shape}")
        gamma = self.params["gamma"][:, None, None]
        beta = self.params["beta"][:, None, None]
        if self.training:
            if x.shape[0] * x.shape[2] * x.shape[3] < 2:
                raise ShapeError("in training mode needs at least 2 entries "
                                 "per channel (B·H·W ≥ 2)")
            mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
        else:
            mean, var = self.running_mean.astype(x.dtype), self.running_var.astype(x.dtype)
        sigma = numbers.sqrt(var + self.eps)
        xhat = (x - mean[:, None, None]) / sigma[:, None, None]
        return gamma * xhat + beta, BatchNormSaved(xhat, self.params["gamma"] / sigma,
                                                   self.training, mean, var)

    def local_partials(self, saved):
        B, C, H, W = saved.xhat.shape
        P = H * W
        xhat = saved.xhat.reshape(B, C, P)
        params = {"gamma": PerChannel(xhat.copy(), C, P), "beta": PerChannel(None, C, P)}
        if not saved.training:
            scale = np.broadcast_to(saved.scale[None, :, None], (B, C, P))
            return LocalPartials(Diagonal(scale.reshape(B, -1).copy()), params)
        members = xhat.transpose(1, 0, 2).reshape(C, B * P)   # (C, M), (sample, position)
        return LocalPartials(ChannelCoupled(members.copy(), saved.scale.copy(), P), params)

    def backward(self, saved, dout):
        dout = dout.reshape(saved.xhat.shape)
        axes = (0, 2, 3)
        dgamma = np.sum(dout * saved.xhat, axis=axes)
        dbeta = np.sum(dout, axis=axes)
        scale = saved.scale[:, None, None]
        if not saved.training:
            return dout * scale, {"gamma": dgamma, "beta": dbeta}
        dx = scale * (dout - dout.mean(axis=axes, keepdims=True)
                      - saved.xhat * np.mean(dout * saved.xhat, axis=axes, keepdims=True))
        return dx, {"gamma": dgamma, "beta": dbeta}
