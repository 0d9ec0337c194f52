"""Affine: Y = X·W + b."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ShapeError
from ..partials import Elementwise, LocalPartials, Outer, Shared
from ..validate import positive_int
from .base import Layer
from .initializers import initial_weights


@dataclass(frozen=True)
class AffineSaved:
    x: np.ndarray  # (B, n_in): the input, which is ∂y/∂W


class Affine(Layer):
    """Fully connected layer ``y = x @ W + b``.

    Parameters
    ----------
    n_in, n_out : int
        Input and output widths; W has shape (n_in, n_out), b has shape (n_out,).
    seed : int or numpy.random.Generator, optional
        Source of the initial weights. None means seed 0, so that a network is reproducible
        by default; give distinct seeds to layers of the same shape to make them differ.
    scale : float, optional
        Standard deviation of the normal initial weights; default ``1/sqrt(n_in)`` (keeps the
        output variance near the input variance). Biases start at 0.
    init : str, optional
        A named initialisation instead (msgpass.init): "xavier_normal", "xavier_uniform",
        "he_normal", "he_uniform" (or "default").
    dtype : numpy dtype, default float64
    bias : bool, default True
        False: ``y = x @ W`` with no parameter "b" (torch's ``nn.Linear(bias=False)``).

    Local partials: shared, ``J[n, n'] = W[n, n']`` for every sample; parameter partials
    ``∂y_{n'}/∂W_{i,n'} = x_i`` and ``∂y_{n'}/∂b_{n'} = 1``.
    """

    rational = True
    takes_rows = True

    def __init__(self, n_in: int, n_out: int, seed=None, scale: float | None = None,
                 dtype=np.float64, init: str | None = None, bias: bool = True) -> None:
        super().__init__()
        self.n_in = positive_int(n_in, "Affine: n_in", ShapeError)
        self.n_out = positive_int(n_out, "Affine: n_out", ShapeError)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(
            0 if seed is None else seed)
        std = 1.0 / np.sqrt(self.n_in) if scale is None else float(scale)
        if init is not None and scale is not None:
            raise ValueError("Affine: give scale= or init=, not both")
        try:
            weights = (std * rng.standard_normal((self.n_in, self.n_out))) if init is None \
                else initial_weights(init, self.n_in, self.n_out, rng)
            self.params = {"W": weights.astype(dtype)}
            if bias:
                self.params["b"] = np.zeros(self.n_out, dtype=dtype)
        except (MemoryError, ValueError) as err:  # numpy: "array is too big" and the like
            raise ShapeError(f"Affine({n_in}→{n_out}): cannot allocate its weights ({err})") \
                from None

    @property
    def W(self) -> np.ndarray:
        return self.params["W"]

    @property
    def b(self) -> np.ndarray | None:
        """The bias, or None for an Affine made with ``bias=False``."""
        return self.params.get("b")

    def describe(self) -> str:
        return f"Affine({self.n_in}→{self.n_out}{'' if 'b' in self.params else ', no bias'})"

    @property
    def input_width(self):
        return self.n_in

    def output_width(self, n_in):
        if n_in is not None and n_in != self.n_in:
            raise ShapeError(f"expects {self.n_in} inputs but receives {n_in}")
        return self.n_out

    def forward(self, x):
        self._check_width(x, self.n_in)
        out = x @ self.W
        return (out if self.b is None else out + self.b), AffineSaved(x=x)

    def tangent_partials(self, saved, dx):
        """J = W does not depend on the input: nothing moves along its tangent (None)."""
        return None

    def local_partials(self, saved):
        params = {"W": Outer(saved.x)}
        if self.b is not None:
            params["b"] = Elementwise(None, self.n_out)
        # A copy: the trace records this pass, so a later update of W must not change it.
        return LocalPartials(inputs=Shared(self.W.copy()), params=params)

    def backward(self, saved, dout):
        dx = np.dot(dout, self.W.T)
        return dx, self.param_backward(saved, dout)

    def param_backward(self, saved, dout):
        grads = {"W": np.dot(saved.x.T, dout)}
        if self.b is not None:
            grads["b"] = np.sum(dout, axis=0)
        return grads
