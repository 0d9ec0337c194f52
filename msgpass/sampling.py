"""Seeded random networks and batches, for the CLI's default batch, tests and studies."""

from __future__ import annotations

import numpy as np

from .errors import ShapeError
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
                   dtype=np.float64) -> Sequential:
    """A random chain of 1..max_depth hidden layers (Affine or any activation) and a random
    loss (SoftmaxCrossEntropy, LogSoftmax+NLLLoss, or MSELoss).

    The network knows its input width (``net.input_width``).
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
    return Sequential(layers, dtype=dtype, input_width=n0)


def random_batch(net: Sequential, batch: int, rng: np.random.Generator):
    """Standard normal inputs (batch, N_0) and a matching target for the net's loss: labels
    for the classification losses, standard normal values for MSELoss."""
    if net.input_width is None:
        raise ShapeError(f"{net} does not know its input width; build it with "
                         f"Sequential(layers, input_width=N_0)")
    x = rng.standard_normal((batch, net.input_width))
    width = net.predict(x).shape[1]
    if isinstance(net.layers[-1], MSELoss):
        return x, rng.standard_normal((batch, width))
    return x, rng.integers(0, width, size=batch)
