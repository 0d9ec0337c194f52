"""A compact architecture spec: ``"4-8-relu-3-sce"``.

Tokens are separated by ``-`` (or ``,``). The first is the input width. Every later integer k
adds ``Affine(previous width, k)``; names add layers: ``relu``, ``sigmoid``, ``tanh``,
``softmax``, ``logsoftmax``, ``batchnorm`` (BatchNorm of the current width), ``dropout``
(p = 0.5) or ``dropoutP`` (e.g. ``dropout0.2``); the last token must be a loss: ``sce``
(SoftmaxCrossEntropy), ``nll`` (NLLLoss, put ``logsoftmax`` before it) or ``mse`` (MSELoss).

Examples: ``784-50-relu-10-sce`` (the textbook's two-layer net), ``4-16-tanh-16-sigmoid-2-mse``,
``6-10-logsoftmax-nll``.

Convolutional networks start from an image, ``CxHxW`` (``1x28x28``), and may use:

============  ===============================================================================
``convCkK``   Conv2d to C channels, kernel K×K; add ``sS`` for stride S and ``pP`` for zero
              padding P, in that order: ``conv6k5p2``, ``conv16k3s2p1``
``maxpoolK``  MaxPool2d(K) (stride K); ``maxpoolKsS`` for stride S: ``maxpool3s2``
``avgpoolK``  AvgPool2d(K) (stride K); ``avgpoolKsS``
``gap``       GlobalAvgPool2d: (C, H, W) → (C,)
``flatten``   (C, H, W) → (C·H·W,): needed before a width (Affine)
``batchnorm`` BatchNorm2d on an image, BatchNorm on a row
============  ===============================================================================

The activations and dropout work on images as they are. Presets name whole specs
(``PRESETS``): ``lenet5`` is LeNet-5 for 1×28×28 MNIST,
``1x28x28-conv6k5p2-relu-maxpool2-conv16k5-relu-maxpool2-flatten-120-relu-84-relu-10-sce``,
and ``digits-cnn`` a small one for the 1×8×8 digits,
``1x8x8-conv8k3p1-relu-maxpool2-flatten-10-sce``.
"""

from __future__ import annotations

import re

import numpy as np

from .errors import ShapeError, SpecError
from .layers import (
    Affine,
    AvgPool2d,
    BatchNorm,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    LogSoftmax,
    MaxPool2d,
    MSELoss,
    NLLLoss,
    ReLU,
    Sigmoid,
    Softmax,
    SoftmaxCrossEntropy,
    Tanh,
)
from .network import Sequential

__all__ = ["build_network", "parse_spec", "message_count", "DEFAULT_SPEC", "PRESETS",
           "spec_input_shape"]

DEFAULT_SPEC = "6-16-relu-12-tanh-12-sigmoid-8-logsoftmax-8-sce"

ACTIVATIONS = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh, "softmax": Softmax,
               "logsoftmax": LogSoftmax}
LOSSES = {"sce": SoftmaxCrossEntropy, "nll": NLLLoss, "mse": MSELoss}
DROPOUT = re.compile(r"dropout(\d*\.?\d+)?")
IMAGE = re.compile(r"(\d+)x(\d+)x(\d+)")
CONV = re.compile(r"conv(\d+)k(\d+)(?:s(\d+))?(?:p(\d+))?")
POOL = re.compile(r"(max|avg)pool(\d+)(?:s(\d+))?")
IMAGE_LAYERS = "conv…, maxpool…, avgpool…, gap, flatten"
PRESETS = {
    "lenet5": "1x28x28-conv6k5p2-relu-maxpool2-conv16k5-relu-maxpool2-flatten-120-relu-84-relu"
              "-10-sce",
    "digits-cnn": "1x8x8-conv8k3p1-relu-maxpool2-flatten-10-sce",
}


def _expand(spec: str) -> str:
    return PRESETS.get(spec.strip().lower(), spec)


def spec_input_shape(spec: str) -> tuple[int, ...]:
    """The per-sample input shape a spec (or preset) starts from: (N,) or (C, H, W)."""
    first = parse_spec(spec)[0]
    image = IMAGE.fullmatch(first)
    return tuple(int(n) for n in image.groups()) if image else (int(first),)


def parse_spec(spec: str) -> list[str]:
    """Split and check a spec (or a preset's name); returns its tokens (input width or
    image first, loss last)."""
    tokens = re.split(r"\s*[-,]\s*", _expand(spec).strip().lower())
    if "" in tokens:
        raise SpecError(f"spec {spec!r} has an empty token; join the parts with single '-'")
    if len(tokens) < 2:
        raise SpecError(f"spec {spec!r} is too short: give the input width, layers and a loss, "
                        f"e.g. '4-8-relu-3-sce'")
    image = IMAGE.fullmatch(tokens[0])
    if (not tokens[0].isdigit() or int(tokens[0]) < 1) and not (
            image and all(int(n) >= 1 for n in image.groups())):
        raise SpecError(f"spec {spec!r} must start with the input width (a positive integer) "
                        f"or an image CxHxW (e.g. 1x28x28), got {tokens[0]!r}; presets: "
                        f"{', '.join(PRESETS)}")
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
        elif tok in ("batchnorm", "gap", "flatten") or CONV.fullmatch(tok) or \
                POOL.fullmatch(tok):
            pass
        elif DROPOUT.fullmatch(tok):
            p = _dropout_p(tok)
            if not 0 <= p < 1:
                raise SpecError(f"spec {spec!r}: token {position} ({tok!r}): dropout p must "
                                f"be in [0, 1)")
        elif tok not in ACTIVATIONS:
            raise SpecError(
                f"spec {spec!r}: token {position} ({tok!r}) is not a width or a layer; known "
                f"layers: {', '.join([*ACTIVATIONS, 'batchnorm', 'dropout', 'dropoutP', *LOSSES])}"
                f"; on images: {IMAGE_LAYERS} (convCkK[sS][pP] as conv6k5p2, maxpoolK[sS] "
                f"and avgpoolK[sS] as maxpool3s2)")
    _check_shapes(spec, tokens)
    return tokens


def _check_shapes(spec: str, tokens: list[str]) -> None:
    """Refuse a spec whose layers do not fit the shapes they receive, naming the token."""
    image = IMAGE.fullmatch(tokens[0])
    shape = tuple(int(n) for n in image.groups()) if image else (int(tokens[0]),)
    for position, tok in enumerate(tokens[1:], 2):
        is_image = len(shape) == 3
        if (CONV.fullmatch(tok) or POOL.fullmatch(tok) or tok in ("gap", "flatten")) \
                and not is_image:
            fix = ("start the spec with an image CxHxW" if not image else
                   "it is a row already: drop this flatten" if tok == "flatten" else
                   "put it before 'flatten' or 'gap'")
            raise SpecError(f"spec {spec!r}: token {position} ({tok!r}) works on an image, but "
                            f"it receives a row of {shape[0]}; {fix}")
        if (tok.isdigit() or tok in LOSSES or tok in ("softmax", "logsoftmax")) and is_image:
            what = "a width (Affine)" if tok.isdigit() else "a layer on rows"
            raise SpecError(f"spec {spec!r}: token {position} ({tok!r}) is {what}, but it "
                            f"receives an image {'x'.join(map(str, shape))}; put 'flatten' "
                            f"(or 'gap') before it")
        try:
            layer = _image_layer(tok, shape, 0) if is_image else None
            if layer is not None:
                shape = layer.output_shape(shape)
        except ShapeError as err:
            raise SpecError(f"spec {spec!r}: token {position} ({tok!r}): {err}") from None
        if layer is None and tok.isdigit():
            shape = (int(tok),)


def _image_layer(tok: str, shape: tuple[int, ...], seed: int, dtype=np.float64):
    """The layer an image token stands for, given the image it receives; None for a token
    that is not an image layer."""
    conv = CONV.fullmatch(tok)
    if conv:
        channels, kernel, stride, padding = conv.groups()
        return Conv2d(shape[0], int(channels), int(kernel), stride=int(stride or 1),
                      padding=int(padding or 0), seed=seed, dtype=dtype)
    pool = POOL.fullmatch(tok)
    if pool:
        kind, kernel, stride = pool.groups()
        stride = int(stride) if stride else None
        return MaxPool2d(int(kernel), stride) if kind == "max" else AvgPool2d(int(kernel), stride)
    if tok == "gap":
        return GlobalAvgPool2d()
    if tok == "flatten":
        return Flatten()
    if tok == "batchnorm":
        return BatchNorm2d(shape[0], dtype=dtype)
    return None


def _dropout_p(tok: str) -> float:
    return float(DROPOUT.fullmatch(tok).group(1) or 0.5)


def message_count(spec: str, batch: int) -> int:
    """How many numbers the message blocks of a verification hold (stored edges plus the
    dense views verify builds), for a batch of ``batch``: an estimate of its memory need."""
    tokens = parse_spec(spec)
    if IMAGE.fullmatch(tokens[0]):
        # an image network: each block as it is stored (a window's per output unit and tap)
        # and the recursion check's copy of it, in that layout
        net = build_network(spec)
        shape, total = net.input_shape, 0
        for layer in net.layers:
            out = layer.output_shape(shape)
            size_in, size_out = int(np.prod(shape)), int(np.prod(out))
            if isinstance(layer, Conv2d):
                per_sample = size_out * layer.c_in * layer.kernel[0] * layer.kernel[1]
            elif isinstance(layer, (MaxPool2d, AvgPool2d)):
                per_sample = size_out * layer.kernel[0] * layer.kernel[1]
            elif isinstance(layer, GlobalAvgPool2d):
                per_sample = size_in
            elif isinstance(layer, BatchNorm2d):
                per_sample = batch * size_in * size_in // shape[0]   # (C, B·P, B·P) / B
            elif isinstance(layer, Affine) or layer.is_loss:
                per_sample = size_in * size_out
            else:                                       # elementwise: the diagonal
                per_sample = size_in
            total += 2 * batch * per_sample
            shape = out
        return total
    width, total = int(tokens[0]), 0
    for tok in tokens[1:]:
        out = int(tok) if tok.isdigit() else (1 if tok in LOSSES else width)  # dropout: width
        total += 3 * batch * width * out  # the block, the dense partials, the recursion check
        width = out
    return total


def build_network(spec: str = DEFAULT_SPEC, seed: int = 0, dtype="float64",
                  init: str | None = None) -> Sequential:
    """Build a Sequential from a spec string or a preset's name (see the module docstring).

    The Affine (or Conv2d) at layer t is initialised with seed ``seed + t`` (an Affine with
    ``init``, a name from msgpass.init, if given), so every layer differs and the whole
    network is reproducible; a Dropout at layer t draws its masks from seed ``seed + t``.
    The network remembers its spec and seed (``net.spec``, ``net.seed``).
    """
    tokens = parse_spec(spec)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise SpecError(f"unknown dtype {dtype!r}; use float64 or float32") from None
    image = IMAGE.fullmatch(tokens[0])
    shape = tuple(int(n) for n in image.groups()) if image else (int(tokens[0]),)
    width = int(np.prod(shape))
    layers = []
    for tok in tokens[1:]:
        t = len(layers) + 1
        layer = _image_layer(tok, shape, seed + t, dt) if len(shape) == 3 else None
        if layer is not None:
            layers.append(layer)
            shape = layer.output_shape(shape)
            width = int(np.prod(shape))
            continue
        if tok.isdigit():
            layers.append(Affine(width, int(tok), seed=seed + t, dtype=dt, init=init))
            width = int(tok)
            shape = (width,)
        elif DROPOUT.fullmatch(tok):
            layers.append(Dropout(_dropout_p(tok), seed=seed + t))
        elif tok == "batchnorm":
            layers.append(BatchNorm(width, dtype=dt))
        elif tok in ACTIVATIONS:
            layers.append(ACTIVATIONS[tok]())
        else:
            layers.append(LOSSES[tok]())
    net = Sequential(layers, dtype=dt, input_width=None if image else int(tokens[0]),
                     input_shape=tuple(int(n) for n in image.groups()) if image else None)
    net.spec, net.seed = "-".join(tokens), seed
    return net
