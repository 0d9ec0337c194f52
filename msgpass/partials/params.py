"""Parameter partials K^t, structured like the input partials: a weight matrix keeps the layer
input x (``∂y_{n'}/∂W_{i,n'} = x_i``), never an (N_in·N_out × N_out) matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import ParamPartials

__all__ = ["Outer", "Elementwise", "Full"]


@dataclass(frozen=True, eq=False)
class Outer(ParamPartials):
    """A weight matrix W (N_in, N_out) with ``∂y_{n'}/∂W_{i,n'} = x_i`` (other columns 0).

    Parameters
    ----------
    inputs : ndarray, shape (B, N_in)
        The layer input x of each sample.
    """

    inputs: np.ndarray
    kind = "outer"

    def gradient(self, incoming):
        # Only column n' of W reaches output n', so Σ_{n'} collapses to x_i · S[n'].
        return self.inputs.T @ incoming

    def per_sample(self, incoming, samples=None):
        rows = slice(None) if samples is None else samples
        return self.inputs[rows, :, None] * incoming[rows, None, :]

    def absolute(self):
        return Outer(np.abs(self.inputs))


@dataclass(frozen=True, eq=False)
class Elementwise(ParamPartials):
    """A parameter vector θ (N,) with ``∂y_{n'}/∂θ_{n'} = factor[b, n']`` (bias: factor 1).

    Parameters
    ----------
    factor : ndarray of shape (B, N), or None for a factor of exactly 1 (a bias)
    width : int
        N, needed when ``factor`` is None.
    """

    factor: np.ndarray | None
    width: int
    kind = "elementwise"

    def gradient(self, incoming):
        if self.factor is None:
            return incoming.sum(axis=0)
        return (self.factor * incoming).sum(axis=0)

    def per_sample(self, incoming, samples=None):
        rows = slice(None) if samples is None else samples
        if self.factor is None:
            return incoming[rows].copy()
        return self.factor[rows] * incoming[rows]

    def absolute(self):
        return Elementwise(None if self.factor is None else np.abs(self.factor), self.width)


@dataclass(frozen=True, eq=False)
class Full(ParamPartials):
    """Any parameter array θ (flattened to P entries) with a full per-sample
    ``K_b[p, n'] = ∂y_{n'}/∂θ_p``: what a custom Function's partials are.

    Parameters
    ----------
    values : ndarray, shape (B, P, N_out)
    shape : tuple of int
        The parameter's own shape (P = its size).
    """

    values: np.ndarray
    shape: tuple[int, ...]
    kind = "full"

    def gradient(self, incoming):
        return np.einsum("bpn,bn->p", self.values, incoming).reshape(self.shape)

    def per_sample(self, incoming, samples=None):
        rows = slice(None) if samples is None else samples
        out = np.einsum("bpn,bn->bp", self.values[rows], incoming[rows])
        return out.reshape((out.shape[0],) + tuple(self.shape))

    def absolute(self):
        return Full(np.abs(self.values), self.shape)
