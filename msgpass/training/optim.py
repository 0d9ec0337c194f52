"""Optimizers and learning-rate schedules: each optimizer updates the network's parameter
arrays in place from a dict of gradients (from the messages or from standard backprop alike).

Every optimizer takes ``weight_decay`` (L2: adds λ·θ to the gradient) and ``l1`` (adds
λ₁·sign θ), applied to weight matrices only (arrays of two or more dimensions), not to biases.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ..errors import StateError

__all__ = ["Optimizer", "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam",
           "StepLR", "ExponentialLR", "CosineLR", "OPTIMIZERS"]


class Optimizer:
    """Base: ``step(grads)`` updates ``params`` (name → array, changed in place)."""

    def __init__(self, params: Mapping[str, np.ndarray], lr: float, weight_decay: float = 0.0,
                 l1: float = 0.0) -> None:
        for label, value in (("lr", lr), ("weight_decay", weight_decay), ("l1", l1)):
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{type(self).__name__}: {label} must be ≥ 0 and finite, got "
                                 f"{value!r}")
        self.params = params
        self.base_lr = self.lr = float(lr)
        self.weight_decay, self.l1 = float(weight_decay), float(l1)
        self.state: dict[str, dict[str, np.ndarray]] = {}
        self.steps = 0

    def regularised(self, name: str, grad: np.ndarray) -> np.ndarray:
        theta = self.params[name]
        if theta.ndim < 2 or (self.weight_decay == 0 and self.l1 == 0):
            return grad
        return grad + self.weight_decay * theta + self.l1 * np.sign(theta)

    def step(self, grads: Mapping[str, np.ndarray]) -> None:
        missing = sorted(set(self.params) - set(grads))
        if missing:
            raise StateError(f"{type(self).__name__}.step: no gradient for {missing}")
        self.steps += 1
        for name, theta in self.params.items():
            theta -= self.update(name, self.regularised(name, grads[name]))

    def update(self, name: str, grad: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _buffer(self, name: str, key: str) -> np.ndarray:
        slots = self.state.setdefault(name, {})
        if key not in slots:
            slots[key] = np.zeros_like(self.params[name])
        return slots[key]

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The optimizer's buffers, flat, for a checkpoint."""
        return {f"{name}/{key}": value for name, slots in self.state.items()
                for key, value in slots.items()} | {"steps": np.array(self.steps)}

    def load_state_arrays(self, arrays: Mapping[str, np.ndarray]) -> None:
        self.steps = int(arrays.get("steps", 0))
        for flat, value in arrays.items():
            if "/" in flat:
                name, key = flat.rsplit("/", 1)
                self.state.setdefault(name, {})[key] = np.array(value)


class SGD(Optimizer):
    """θ ← θ − lr·g."""

    def update(self, name, grad):
        return self.lr * grad


class Momentum(Optimizer):
    """v ← μ·v − lr·g; θ ← θ + v."""

    def __init__(self, params, lr=0.01, momentum=0.9, **kw):
        super().__init__(params, lr, **kw)
        self.momentum = momentum

    def update(self, name, grad):
        v = self._buffer(name, "v")
        v *= self.momentum
        v -= self.lr * grad
        return -v


class Nesterov(Momentum):
    """Nesterov's accelerated gradient in the form θ ← θ + μ²·v − (1 + μ)·lr·g, v ← μ·v − lr·g
    (the look-ahead gradient expressed at the current point)."""

    def update(self, name, grad):
        v = self._buffer(name, "v")
        v *= self.momentum
        v -= self.lr * grad
        return -(self.momentum * v - self.lr * grad)


class AdaGrad(Optimizer):
    """h ← h + g²; θ ← θ − lr·g / (√h + ε)."""

    def __init__(self, params, lr=0.01, eps=1e-7, **kw):
        super().__init__(params, lr, **kw)
        self.eps = eps

    def update(self, name, grad):
        h = self._buffer(name, "h")
        h += grad * grad
        return self.lr * grad / (np.sqrt(h) + self.eps)


class RMSProp(Optimizer):
    """h ← ρ·h + (1 − ρ)·g²; θ ← θ − lr·g / (√h + ε)."""

    def __init__(self, params, lr=0.001, decay=0.99, eps=1e-7, **kw):
        super().__init__(params, lr, **kw)
        self.decay, self.eps = decay, eps

    def update(self, name, grad):
        h = self._buffer(name, "h")
        h *= self.decay
        h += (1 - self.decay) * grad * grad
        return self.lr * grad / (np.sqrt(h) + self.eps)


class AdaDelta(Optimizer):
    """h ← ρ·h + (1 − ρ)·g²; Δ = √(s + ε)/√(h + ε)·g; s ← ρ·s + (1 − ρ)·Δ²; θ ← θ − lr·Δ
    (Zeiler 2012; lr = 1 is the original, without a learning rate)."""

    def __init__(self, params, lr=1.0, rho=0.95, eps=1e-6, **kw):
        super().__init__(params, lr, **kw)
        self.rho, self.eps = rho, eps

    def update(self, name, grad):
        h, s = self._buffer(name, "h"), self._buffer(name, "s")
        h *= self.rho
        h += (1 - self.rho) * grad * grad
        delta = np.sqrt(s + self.eps) / np.sqrt(h + self.eps) * grad
        s *= self.rho
        s += (1 - self.rho) * delta * delta
        return self.lr * delta


class Adam(Optimizer):
    """m ← β₁m + (1 − β₁)g; v ← β₂v + (1 − β₂)g²; θ ← θ − lr·m̂ / (√v̂ + ε) with the bias
    corrections m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ)."""

    def __init__(self, params, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, **kw):
        super().__init__(params, lr, **kw)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps

    def update(self, name, grad):
        m, v = self._buffer(name, "m"), self._buffer(name, "v")
        m *= self.beta1
        m += (1 - self.beta1) * grad
        v *= self.beta2
        v += (1 - self.beta2) * grad * grad
        m_hat = m / (1 - self.beta1 ** self.steps)
        v_hat = v / (1 - self.beta2 ** self.steps)
        return self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adagrad": AdaGrad,
              "rmsprop": RMSProp, "adadelta": AdaDelta, "adam": Adam}


class StepLR:
    """lr × γ^⌊epoch / step⌋."""

    def __init__(self, step: int, gamma: float = 0.1) -> None:
        self.step, self.gamma = step, gamma

    def __call__(self, epoch: int) -> float:
        return self.gamma ** (epoch // self.step)


class ExponentialLR:
    """lr × γ^epoch."""

    def __init__(self, gamma: float) -> None:
        self.gamma = gamma

    def __call__(self, epoch: int) -> float:
        return self.gamma ** epoch


class CosineLR:
    """lr × (floor + (1 − floor)·(1 + cos(π·epoch/total))/2): from 1 down to ``floor``."""

    def __init__(self, total: int, floor: float = 0.0) -> None:
        self.total, self.floor = total, floor

    def __call__(self, epoch: int) -> float:
        cosine = (1 + math.cos(math.pi * min(epoch, self.total) / self.total)) / 2
        return self.floor + (1 - self.floor) * cosine
