"""Weight initialisations (seeded): the standard deviation or range that keeps the variance of
activations (Xavier/Glorot, for sigmoid and tanh) or of ReLU outputs (He/Kaiming) steady
from layer to layer.

=================  ==============================================================
name               W ~
=================  ==============================================================
``"default"``      N(0, 1/fan_in)
``xavier_normal``  N(0, 2/(fan_in + fan_out))
``xavier_uniform`` U(−a, a), a = √(6/(fan_in + fan_out))
``he_normal``      N(0, 2/fan_in)
``he_uniform``     U(−a, a), a = √(6/fan_in)
=================  ==============================================================
"""

from __future__ import annotations

import numpy as np

__all__ = ["INITS", "initial_weights"]

INITS = ("default", "xavier_normal", "xavier_uniform", "he_normal", "he_uniform")


def initial_weights(name: str, fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """A (fan_in, fan_out) float64 weight matrix drawn as ``name`` says."""
    shape = (fan_in, fan_out)
    if name == "default":
        return rng.standard_normal(shape) / np.sqrt(fan_in)
    if name == "xavier_normal":
        return rng.standard_normal(shape) * np.sqrt(2.0 / (fan_in + fan_out))
    if name == "xavier_uniform":
        a = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-a, a, shape)
    if name == "he_normal":
        return rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
    if name == "he_uniform":
        a = np.sqrt(6.0 / fan_in)
        return rng.uniform(-a, a, shape)
    raise ValueError(f"unknown initialisation {name!r}; choose one of {', '.join(INITS)}")
