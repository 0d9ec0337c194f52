"""Parameter partials K^t, structured like the input partials: a weight matrix keeps the layer
input x (``∂y_{n'}/∂W_{i,n'} = x_i``), never an (N_in·N_out × N_out) matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import ParamPartials

__all__ = ["Outer", "Elementwise", "Full", "Kernel", "PerChannel"]


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


@dataclass(frozen=True, eq=False)
class Kernel(ParamPartials):
    """A convolution's kernel W (C_out, C_in, kh, kw): ``∂y_{c',i',j'}/∂W[c', c, u, v] =
    x_pad[c, s·i' + u, s·j' + v]`` (the input under tap (u, v), zero in the padding; other
    output channels 0). Kept as the padded input, never as a (|W| × N_out) matrix.

    Parameters
    ----------
    padded : ndarray, shape (B, C_in, H + 2p, W + 2p)
    kernel : (kh, kw)
    stride : (rows, cols)
    output : (C_out, H', W')
    """

    padded: np.ndarray
    kernel: tuple[int, int]
    stride: tuple[int, int]
    output: tuple[int, int, int]
    kind = "kernel"

    def _patches(self, samples=None) -> np.ndarray:
        """x_pad under every tap of every output position: (B, C_in, kh, kw, H', W')."""
        x = self.padded if samples is None else self.padded[samples]
        _, Ho, Wo = self.output
        kh, kw = self.kernel
        sh, sw = self.stride
        windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
        # (B, C, H'', W'', kh, kw) → every s-th position, then taps before positions
        return windows[:, :, ::sh, ::sw][:, :, :Ho, :Wo].transpose(0, 1, 4, 5, 2, 3)

    def gradient(self, incoming):
        # Σ_b Σ_{i',j'} S_b[c', i', j'] · x_pad[b, c, s·i' + u, s·j' + v]
        return self.per_sample(incoming).sum(axis=0)

    def per_sample(self, incoming, samples=None):
        rows = slice(None) if samples is None else samples
        patches = self._patches(rows)                          # (B, C_in, kh, kw, H', W')
        S = incoming[rows].reshape((-1, *self.output))         # (B, C_out, H', W')
        batch, C, kh, kw = patches.shape[:4]
        flat = patches.reshape(batch, C * kh * kw, -1)         # (B, C_in·kh·kw, H'W')
        out = np.matmul(S.reshape(batch, self.output[0], -1), flat.transpose(0, 2, 1))
        return out.reshape(batch, self.output[0], C, kh, kw)

    def absolute(self):
        return Kernel(np.abs(self.padded), self.kernel, self.stride, self.output)


@dataclass(frozen=True, eq=False)
class PerChannel(ParamPartials):
    """A parameter per channel θ (C,) of an image output (C, H, W): ``∂y_{c,i,j}/∂θ_c =
    factor[b, c, i, j]`` (a bias: factor 1), other channels 0.

    Parameters
    ----------
    factor : ndarray of shape (B, C, P), or None for a factor of exactly 1
    channels, positions : int
        C and P = H·W.
    """

    factor: np.ndarray | None
    channels: int
    positions: int
    kind = "per-channel"

    def per_sample(self, incoming, samples=None):
        rows = slice(None) if samples is None else samples
        S = incoming[rows].reshape(-1, self.channels, self.positions)
        if self.factor is not None:
            S = self.factor[rows] * S
        return S.sum(axis=2)

    def gradient(self, incoming):
        return self.per_sample(incoming).sum(axis=0)

    def absolute(self):
        return PerChannel(None if self.factor is None else np.abs(self.factor), self.channels,
                          self.positions)
