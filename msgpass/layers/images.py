"""What the image layers share: NCHW input checks, kernel sizes, and 1/n in the input's own
arithmetic (exact Fractions and mp numbers stay so)."""

from __future__ import annotations

import numpy as np

from .. import numbers
from ..errors import ShapeError
from ..partials.window import window_geometry
from ..validate import positive_int

__all__ = ["pair", "pair_text", "image_shape", "check_image", "one_over"]


def pair(value, what: str, smallest: int = 1) -> tuple[int, int]:
    """A kernel size, stride or padding as (rows, cols) from an int or a pair of ints, each
    at least ``smallest``."""
    values = (value, value) if isinstance(value, (int, np.integer)) and \
        not isinstance(value, bool) else tuple(value) if isinstance(value, (tuple, list)) \
        else None
    if values is None or len(values) != 2 or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        raise ShapeError(f"{what} must be an int or a pair of ints, got {value!r}")
    if smallest == 1:
        return tuple(positive_int(v, what, ShapeError) for v in values)
    if any(v < smallest for v in values):
        raise ShapeError(f"{what} must be at least {smallest}, got {value!r}")
    return tuple(int(v) for v in values)


def pair_text(value: tuple[int, int]) -> str:
    """A pair as its user wrote it, mostly: 2 for (2, 2), (1, 2) otherwise."""
    return str(value[0]) if value[0] == value[1] else f"({value[0]}, {value[1]})"


def image_shape(shape, channels: int | None, kernel: tuple[int, int],
                stride: tuple[int, int], padding: tuple[int, int]) -> tuple[int, int, int]:
    """The output (C', H', W') — channels kept — of a window over an input of per-sample shape
    ``shape`` (C, H, W); otherwise a ShapeError saying the shape it expects (the network, the
    graph or the spec puts the layer's name before it)."""
    shape = tuple(int(n) for n in shape)
    want = f"({channels}, H, W)" if channels is not None else "(C, H, W)"
    if len(shape) != 3:
        raise ShapeError(f"expects images (B, {want[1:]}, got a per-sample shape {shape}: "
                         f"give NCHW input (B, C, H, W)")
    C, H, W = shape
    if channels is not None and C != channels:
        raise ShapeError(f"expects {channels} input channels, (B, {want[1:]}, but the input "
                         f"has {C}: (B, {C}, {H}, {W})")
    Ho = window_geometry(H, kernel[0], stride[0], padding[0])
    Wo = window_geometry(W, kernel[1], stride[1], padding[1])
    if Ho < 1 or Wo < 1:
        raise ShapeError(f"expects images of at least the kernel's {kernel[0]}×{kernel[1]} "
                         f"(padding included), (B, {C}, H ≥ {kernel[0] - 2 * padding[0]}, W ≥ "
                         f"{kernel[1] - 2 * padding[1]}), but the input is {H}×{W}")
    return C, Ho, Wo


def check_image(x: np.ndarray, channels: int | None, kernel, stride, padding: int
                ) -> tuple[int, int, int]:
    """Check an input batch ``x`` is NCHW with the right channels and room for the kernel;
    returns (C, H', W') as ``image_shape``."""
    if x.ndim != 4:
        want = f"(B, {channels}, H, W)" if channels is not None else "(B, C, H, W)"
        hint = (" (for flat rows, build the Sequential with input_shape=(C, H, W))"
                if x.ndim == 2 else "")
        raise ShapeError(f"expects NCHW input {want}, got shape {x.shape}{hint}")
    return image_shape(x.shape[1:], channels, kernel, stride, padding)


def one_over(x: np.ndarray, n: int):
    """1/n in the arithmetic of ``x``: a Fraction or an mpf for exact and mp arrays, else
    the float of x's dtype."""
    if x.dtype == object:
        return numbers.mode_of(x).one_over(n)
    return x.dtype.type(1) / x.dtype.type(n)
