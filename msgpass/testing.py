"""Helpers for tests and studies: one builder of random networks over every layer kind."""

from __future__ import annotations

import numpy as np

from .layers import (
    Affine,
    LogSoftmax,
    MSELoss,
    NLLLoss,
    ReLU,
    Sigmoid,
    Softmax,
    SoftmaxCrossEntropy,
    Tanh,
)
from .network import Sequential

__all__ = ["random_network", "random_batch", "ACTIVATIONS", "LOSSES"]

ACTIVATIONS = (ReLU, Sigmoid, Tanh, Softmax, LogSoftmax)
LOSSES = ("sce", "nll", "mse")


def random_network(rng: np.random.Generator, *, max_depth: int = 6, max_width: int = 32,
                   dtype=np.float64) -> tuple[Sequential, int]:
    """A random chain of 1..max_depth hidden layers (Affine or any activation) and a random
    loss (SoftmaxCrossEntropy, LogSoftmax+NLLLoss, or MSELoss).

    Returns the network and its input width.
    """
    width = int(rng.integers(1, max_width + 1))
    n0, layers = width, []
    for _ in range(int(rng.integers(0, max_depth))):
        if rng.random() < 0.5:
            new = int(rng.integers(1, max_width + 1))
            layers.append(Affine(width, new, seed=int(rng.integers(2**31)), dtype=dtype))
            width = new
        else:
            layers.append(ACTIVATIONS[int(rng.integers(len(ACTIVATIONS)))]())
    loss = LOSSES[int(rng.integers(len(LOSSES)))]
    layers += {"sce": [SoftmaxCrossEntropy()], "nll": [LogSoftmax(), NLLLoss()],
               "mse": [MSELoss()]}[loss]
    return Sequential(layers, dtype=dtype), n0


def random_batch(net: Sequential, n_in: int, batch: int, rng: np.random.Generator):
    """Standard normal inputs (batch, n_in) and a matching target for the net's loss."""
    x = rng.standard_normal((batch, n_in))
    width = net.predict(x).shape[1]
    if isinstance(net.layers[-1], MSELoss):
        return x, rng.standard_normal((batch, width))
    return x, rng.integers(0, width, size=batch)
