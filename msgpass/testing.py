"""Seeded random networks and batches, for the CLI's default batch, tests, benchmarks and
studies (public: ``msgpass.testing``).

A random network is drawn as a spec string (msgpass.spec) and built from it, so any network a
test or study finds can be rebuilt with ``build_network(spec, seed)`` or checked with
``msgpass verify --arch SPEC --seed SEED``.
"""

from __future__ import annotations

import numpy as np

from .errors import ShapeError
from .layers import MSELoss
from .network import Sequential
from .spec import ACTIVATIONS, build_network

__all__ = ["random_spec", "random_network", "random_batch"]

_HEADS = ("sce", "logsoftmax-nll", "mse")


def random_spec(rng: np.random.Generator, *, max_depth: int = 6, max_width: int = 32) -> str:
    """A random chain spec: input width, 0..max_depth−1 hidden layers (an Affine of random
    width or any activation), and a random loss head (sce, logsoftmax-nll or mse)."""
    names = list(ACTIVATIONS)
    tokens = [str(int(rng.integers(1, max_width + 1)))]
    for _ in range(int(rng.integers(0, max_depth))):
        if rng.random() < 0.5:
            tokens.append(str(int(rng.integers(1, max_width + 1))))
        else:
            tokens.append(names[int(rng.integers(len(names)))])
    tokens.append(_HEADS[int(rng.integers(len(_HEADS)))])
    return "-".join(tokens)


def random_network(rng: np.random.Generator, *, max_depth: int = 6, max_width: int = 32,
                   dtype=np.float64) -> Sequential:
    """``build_network(random_spec(rng, ...), seed=...)``; ``net.spec`` says which."""
    spec = random_spec(rng, max_depth=max_depth, max_width=max_width)
    return build_network(spec, seed=int(rng.integers(2**31)), dtype=dtype)


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
