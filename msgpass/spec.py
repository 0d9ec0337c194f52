"""A compact architecture spec: ``"4-8-relu-3-sce"``.

Tokens are separated by ``-`` (or ``,``). The first is the input width. Every later integer k
adds ``Affine(previous width, k)``; names add layers: ``relu``, ``sigmoid``, ``tanh``,
``softmax``, ``logsoftmax``, ``batchnorm`` (BatchNorm of the current width), ``dropout``
(p = 0.5) or ``dropoutP`` (e.g. ``dropout0.2``); the last token must be a loss: ``sce``
(SoftmaxCrossEntropy), ``nll`` (NLLLoss, put ``logsoftmax`` before it) or ``mse`` (MSELoss).

Examples: ``784-50-relu-10-sce`` (the textbook's two-layer net), ``4-16-tanh-16-sigmoid-2-mse``,
``6-10-logsoftmax-nll``.
"""

from __future__ import annotations

import re

import numpy as np

from .errors import SpecError
from .layers import (
    Affine,
    BatchNorm,
    Dropout,
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

__all__ = ["build_network", "parse_spec", "message_count", "DEFAULT_SPEC"]

DEFAULT_SPEC = "6-16-relu-12-tanh-12-sigmoid-8-logsoftmax-8-sce"

ACTIVATIONS = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh, "softmax": Softmax,
               "logsoftmax": LogSoftmax}
LOSSES = {"sce": SoftmaxCrossEntropy, "nll": NLLLoss, "mse": MSELoss}
DROPOUT = re.compile(r"dropout(\d*\.?\d+)?")


def parse_spec(spec: str) -> list[str]:
    """Split and check a spec; returns its tokens (input width first, loss last)."""
    tokens = re.split(r"\s*[-,]\s*", spec.strip().lower())
    if "" in tokens:
        raise SpecError(f"spec {spec!r} has an empty token; join the parts with single '-'")
    if len(tokens) < 2:
        raise SpecError(f"spec {spec!r} is too short: give the input width, layers and a loss, "
                        f"e.g. '4-8-relu-3-sce'")
    if not tokens[0].isdigit() or int(tokens[0]) < 1:
        raise SpecError(f"spec {spec!r} must start with the input width (a positive integer), "
                        f"got {tokens[0]!r}")
    if tokens[-1] not in LOSSES:
        raise SpecError(f"spec {spec!r} must end in a loss ({', '.join(LOSSES)}), "
                        f"got {tokens[-1]!r}")
    for position, tok in enumerate(tokens[1:], 2):
        if tok.isdigit():
            if int(tok) < 1:
                raise SpecError(
                    f"spec {spec!r}: token {position} ({tok!r}) must be a positive width")
        elif tok in LOSSES:
            if position != len(tokens):
                raise SpecError(f"spec {spec!r}: the loss {tok!r} must be the last token")
            if tok == "nll" and tokens[position - 2] != "logsoftmax":
                raise SpecError(f"spec {spec!r}: nll takes log-probabilities; put logsoftmax "
                                f"right before it (e.g. 4-3-logsoftmax-nll)")
        elif tok == "batchnorm":
            pass
        elif DROPOUT.fullmatch(tok):
            p = _dropout_p(tok)
            if not 0 <= p < 1:
                raise SpecError(f"spec {spec!r}: token {position} ({tok!r}): dropout p must "
                                f"be in [0, 1)")
        elif tok not in ACTIVATIONS:
            raise SpecError(
                f"spec {spec!r}: token {position} ({tok!r}) is not a width or a layer; known "
                f"layers: {', '.join([*ACTIVATIONS, 'batchnorm', 'dropout', 'dropoutP', *LOSSES])}")
    return tokens


def _dropout_p(tok: str) -> float:
    return float(DROPOUT.fullmatch(tok).group(1) or 0.5)


def message_count(spec: str, batch: int) -> int:
    """How many numbers the message blocks of a verification hold (stored edges plus the
    dense views verify builds), for a batch of ``batch``: an estimate of its memory need."""
    tokens = parse_spec(spec)
    width, total = int(tokens[0]), 0
    for tok in tokens[1:]:
        out = int(tok) if tok.isdigit() else (1 if tok in LOSSES else width)  # dropout: width
        total += 3 * batch * width * out  # the block, the dense partials, the recursion check
        width = out
    return total


def build_network(spec: str = DEFAULT_SPEC, seed: int = 0, dtype="float64",
                  init: str | None = None) -> Sequential:
    """Build a Sequential from a spec string (see the module docstring).

    The Affine at layer t is initialised with seed ``seed + t`` (and ``init``, a name from
    msgpass.init, if given), so every layer differs and the whole network is reproducible;
    a Dropout at layer t draws its masks from seed ``seed + t``. The network remembers its
    spec and seed (``net.spec``, ``net.seed``).
    """
    tokens = parse_spec(spec)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise SpecError(f"unknown dtype {dtype!r}; use float64 or float32") from None
    width = int(tokens[0])
    layers = []
    for tok in tokens[1:]:
        t = len(layers) + 1
        if tok.isdigit():
            layers.append(Affine(width, int(tok), seed=seed + t, dtype=dt, init=init))
            width = int(tok)
        elif DROPOUT.fullmatch(tok):
            layers.append(Dropout(_dropout_p(tok), seed=seed + t))
        elif tok == "batchnorm":
            layers.append(BatchNorm(width, dtype=dt))
        elif tok in ACTIVATIONS:
            layers.append(ACTIVATIONS[tok]())
        else:
            layers.append(LOSSES[tok]())
    net = Sequential(layers, dtype=dt, input_width=int(tokens[0]))
    net.spec, net.seed = "-".join(tokens), seed
    return net
