"""Structured local partials (DESIGN.md §2).

A layer's forward pass returns its local partial derivatives as data of one named kind.
Input partials ``J^t[n, n'] = ∂_n g^t_{n'}`` come in three kinds here:

=========  =====================  ==========================  ===============================
kind       example layers         stored as                   dense view (B, N_{t-1}, N_t)
=========  =====================  ==========================  ===============================
shared     Affine (J = W)         (N_{t-1}, N_t), once        broadcast over the batch
diagonal   ReLU, Sigmoid, Tanh    (B, N)                      zero off the diagonal
dense      Softmax, LogSoftmax,   (B, N_{t-1}, N_t)           itself
           the loss layers
=========  =====================  ==========================  ===============================

Each kind can *send*: multiply its local partial by the sum arriving at each of its nodes,
giving the message block ``δ^t_{n←n'} = J^t[n, n'] · S^{t+1}_{n'}`` in the kind's own storage
(a diagonal layer stores only its N edges per sample; the off-diagonal non-edges are exact
zeros that are never stored). Each kind can also give its dense view, computed by separate
code, so that the verifier can check the recursion against it.

Parameter partials ``K^t[i, n'] = ∂g^t_{n'} / ∂θ^t_i`` stay structured too: a weight matrix
keeps the layer input x (``∂y_{n'}/∂W_{i,n'} = x_i``), never an (N_in·N_out × N_out) matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "InputPartials",
    "Shared",
    "Diagonal",
    "Dense",
    "Coupled",
    "ParamPartials",
    "Outer",
    "Elementwise",
    "Full",
    "LocalPartials",
]


class InputPartials:
    """Base of the input-partial kinds. Subclasses set ``kind`` and ``diagonal``.

    Attributes
    ----------
    n_in, n_out : int
        N_{t-1} and N_t, the widths of the layer's input and output.
    diagonal : bool
        True when node n' of the layer hears only from node n = n' (its message block is
        stored as (B, N) and each destination node receives exactly one message).
    """

    kind: str = ""
    diagonal: bool = False
    coupled: bool = False   # nodes are (sample, feature) pairs (BatchNorm in training mode)
    n_in: int
    n_out: int

    def message_shape(self, batch: int) -> tuple[int, ...]:
        """Storage shape of a message block for ``batch`` samples."""
        if self.diagonal:
            return (batch, self.n_in)
        return (batch, self.n_in, self.n_out)

    def send(self, arriving: np.ndarray, rows: slice, out: np.ndarray | None = None,
             receivers: slice = slice(None)) -> np.ndarray:
        """Messages for the samples ``rows``: local partial times the sum arriving at n'.

        Parameters
        ----------
        arriving : ndarray, shape (b, N_t)
            ``S^{t+1}`` for the samples in ``rows`` (b of them).
        rows : slice
            Which samples of the batch these are (per-sample partials are sliced by it).
        out : ndarray, optional
            Where to write the block, of shape ``message_shape(b)`` restricted to
            ``receivers``.
        receivers : slice
            Which receiving nodes n to send to (default all): a block too large for the
            working-memory budget is sent a band of receivers at a time.

        Returns
        -------
        ndarray, shape ``message_shape(b)`` with its n axis restricted to ``receivers``
        """
        raise NotImplementedError

    def dense(self) -> np.ndarray:
        """The dense local partials, shape (B, N_{t-1}, N_t) (Shared gives (1, ...))."""
        raise NotImplementedError

    def magnitude(self) -> np.ndarray:
        """Dense sizes of the terms each partial is formed from, shaped like ``dense()``: the
        scale of its round-off. It is |J| unless an entry is a difference of larger terms
        (Softmax's y_n'(δ − y_n) is formed from y_n'(δ + y_n))."""
        return np.abs(self.dense())

    def edges(self) -> np.ndarray:
        """Boolean (N_{t-1}, N_t): which (n, n') pairs are edges of the graph."""
        if self.diagonal:
            return np.eye(self.n_in, dtype=bool)
        return np.ones((self.n_in, self.n_out), dtype=bool)

    def dense_messages(self, values: np.ndarray) -> np.ndarray:
        """Expand a stored message block to its dense (B, N_{t-1}, N_t) form."""
        if not self.diagonal:
            return values
        batch, n = values.shape
        block = np.zeros((batch, n, n), dtype=values.dtype)
        idx = np.arange(n)
        block[:, idx, idx] = values
        return block

    @property
    def dtype(self) -> np.dtype:
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class Shared(InputPartials):
    """The same local partial for every sample: ``J[n, n'] = matrix[n, n']``.

    Parameters
    ----------
    matrix : ndarray, shape (N_{t-1}, N_t)
    """

    matrix: np.ndarray
    kind = "shared"

    @property
    def n_in(self) -> int:  # type: ignore[override]
        return self.matrix.shape[0]

    @property
    def n_out(self) -> int:  # type: ignore[override]
        return self.matrix.shape[1]

    @property
    def dtype(self) -> np.dtype:
        return self.matrix.dtype

    def send(self, arriving, rows, out=None, receivers=slice(None)):
        # δ_b[n, n'] = W[n, n'] · S_b[n']: W with column n' scaled by what arrived at n'.
        # One 2-D multiply per sample: numpy's 3-D broadcast of W[None] against
        # S[:, None, :] measured up to 2.4x slower for the same result (profile in
        # benchmarks/bench_messages.py's docstring).
        matrix = self.matrix[receivers]
        if out is None:
            out = np.empty((len(arriving),) + matrix.shape, dtype=np.result_type(matrix, arriving))
        for i, arrived in enumerate(arriving):
            np.multiply(matrix, arrived, out=out[i])
        return out

    def dense(self):
        return self.matrix[None, :, :].copy()


@dataclass(frozen=True, eq=False)
class Diagonal(InputPartials):
    """Elementwise layers: ``J_b[n, n'] = values[b, n]`` if n = n', else an exact zero.

    Parameters
    ----------
    values : ndarray, shape (B, N)
    terms : ndarray of the same shape, optional
        Sizes of the terms each entry is formed from, when it is a difference of larger
        terms (Tanh's 1 − y² is formed from 1 and y²); None means |values|.
    """

    values: np.ndarray
    terms: np.ndarray | None = None
    kind = "diagonal"
    diagonal = True

    @property
    def n_in(self) -> int:  # type: ignore[override]
        return self.values.shape[1]

    @property
    def n_out(self) -> int:  # type: ignore[override]
        return self.values.shape[1]

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype

    def send(self, arriving, rows, out=None, receivers=slice(None)):
        # One edge per node: δ_b[n ← n] = g'(z_b[n]) · S_b[n].
        return np.multiply(self.values[rows, receivers], arriving[:, receivers], out=out)

    def dense(self):
        # Built by different code from dense_messages, so the two can check each other.
        identity = np.eye(self.n_in, dtype=self.values.dtype)
        return self.values[:, :, None] * identity[None, :, :]

    def magnitude(self):
        sizes = np.abs(self.values) if self.terms is None else self.terms
        return sizes[:, :, None] * np.eye(self.n_in, dtype=sizes.dtype)[None, :, :]


@dataclass(frozen=True, eq=False)
class Dense(InputPartials):
    """A full Jacobian per sample: ``J_b[n, n'] = values[b, n, n']``.

    Parameters
    ----------
    values : ndarray, shape (B, N_{t-1}, N_t)
    terms : ndarray of the same shape, optional
        Sizes of the terms each entry is formed from, when an entry is a difference of
        larger terms (see ``magnitude``); None means |values|.
    """

    values: np.ndarray
    terms: np.ndarray | None = None
    kind = "dense"

    @property
    def n_in(self) -> int:  # type: ignore[override]
        return self.values.shape[1]

    @property
    def n_out(self) -> int:  # type: ignore[override]
        return self.values.shape[2]

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype

    def send(self, arriving, rows, out=None, receivers=slice(None)):
        return np.multiply(self.values[rows, receivers], arriving[:, None, :], out=out)

    def dense(self):
        return self.values.copy()

    def magnitude(self):
        return np.abs(self.values) if self.terms is None else self.terms


@dataclass(frozen=True, eq=False)
class Coupled(InputPartials):
    """A layer that couples the samples of a batch (BatchNorm in training mode): its nodes
    are (sample, feature) pairs, and node (b', j) of the output hears from every (b, j) of
    the input with the same feature: ``J_j[b, b'] = ∂y_{b',j}/∂x_{b,j}``.

    Parameters
    ----------
    values : ndarray, shape (N, B, B)
    terms : ndarray of the same shape, optional
        Sizes of the terms each entry is formed from (for round-off magnitudes).

    Messages: ``δ[j, b, b'] = J_j[b, b'] · S[b', j]``, a block of shape (N, B, B); the sum
    arriving at input node (b, j) is ``Σ_{b'} δ[j, b, b']``.
    """

    values: np.ndarray
    terms: np.ndarray | None = None
    kind = "coupled"
    coupled = True

    @property
    def n_in(self) -> int:  # type: ignore[override]
        return self.values.shape[0]

    @property
    def n_out(self) -> int:  # type: ignore[override]
        return self.values.shape[0]

    @property
    def batch(self) -> int:
        return self.values.shape[1]

    @property
    def dtype(self) -> np.dtype:
        return self.values.dtype

    def message_shape(self, batch: int) -> tuple[int, ...]:
        return (self.n_in, batch, batch)

    def send(self, arriving, rows, out=None, receivers=slice(None)):
        # ``receivers`` selects features here (every sample talks to every sample)
        return np.multiply(self.values[receivers], arriving[:, receivers].T[:, None, :],
                           out=out)

    def receive(self, message: np.ndarray) -> np.ndarray:
        """The sums (B, features) of a (features, B, B) message block."""
        return message.sum(axis=2).T

    def dense(self):
        return self.values.copy()

    def magnitude(self):
        return np.abs(self.values) if self.terms is None else self.terms

    def edges(self):
        return np.eye(self.n_in, dtype=bool)   # feature j to feature j (across all samples)

    def dense_messages(self, values):
        return values

    def apply(self, arriving: np.ndarray, partial: np.ndarray | None = None) -> np.ndarray:
        """Σ_{b'} J_j[b, b'] · arriving[b', j], shape (B, N) (``partial`` replaces J)."""
        values = self.values if partial is None else partial
        return np.einsum("jab,bj->aj", values, arriving)


class ParamPartials:
    """Base of the parameter-partial kinds ``K[i, n'] = ∂g_{n'}/∂θ_i``."""

    kind: str = ""

    def gradient(self, arriving: np.ndarray) -> np.ndarray:
        """``∂L/∂θ_i = Σ_b Σ_{n'} K_b[i, n'] · S_b[n']``, shaped like the parameter."""
        raise NotImplementedError

    def per_sample(self, arriving: np.ndarray, samples: np.ndarray | None = None) -> np.ndarray:
        """The same without the sum over samples: shape (B, *parameter shape), or only the
        rows of ``samples`` (batch indices) when given."""
        raise NotImplementedError

    def absolute(self) -> ParamPartials:
        """The same kind with |K| in place of K (for round-off magnitudes)."""
        raise NotImplementedError


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

    def gradient(self, arriving):
        # Only column n' of W reaches output n', so Σ_{n'} collapses to x_i · S[n'].
        return self.inputs.T @ arriving

    def per_sample(self, arriving, samples=None):
        rows = slice(None) if samples is None else samples
        return self.inputs[rows, :, None] * arriving[rows, None, :]

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

    def gradient(self, arriving):
        if self.factor is None:
            return arriving.sum(axis=0)
        return (self.factor * arriving).sum(axis=0)

    def per_sample(self, arriving, samples=None):
        rows = slice(None) if samples is None else samples
        if self.factor is None:
            return arriving[rows].copy()
        return self.factor[rows] * arriving[rows]

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

    def gradient(self, arriving):
        return np.einsum("bpn,bn->p", self.values, arriving).reshape(self.shape)

    def per_sample(self, arriving, samples=None):
        rows = slice(None) if samples is None else samples
        out = np.einsum("bpn,bn->bp", self.values[rows], arriving[rows])
        return out.reshape((out.shape[0],) + tuple(self.shape))

    def absolute(self):
        return Full(np.abs(self.values), self.shape)


@dataclass(frozen=True, eq=False)
class LocalPartials:
    """What one layer's forward pass leaves for the message pass.

    Attributes
    ----------
    inputs : InputPartials
        ``J^t``, structured.
    params : dict of str to ParamPartials
        ``K^t`` for each named parameter of the layer (empty for parameterless layers).
    """

    inputs: InputPartials
    params: dict[str, ParamPartials] = field(default_factory=dict)
