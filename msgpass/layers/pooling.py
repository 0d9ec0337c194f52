"""Pooling and flattening of NCHW images.

* ``MaxPool2d``: each output unit is the largest input under its window; its one edge goes
  to that input (the route kind). Ties go to the window's first position in row-major order,
  as PyTorch's; they are kinks, reported by verify, and the padding (−∞) never wins.
* ``AvgPool2d``, ``GlobalAvgPool2d``: the mean under the window (the whole image), a window
  kind whose taps are all 1/(kh·kw), each channel hearing only from itself.
* ``Flatten``: (B, C, H, W) → (B, C·H·W) in C order (torch's ``flatten(1)``): the identity on
  the numbering, diagonal partials of ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ShapeError
from ..partials import Diagonal, LocalPartials, Route, Window
from .base import Layer
from .images import check_image, image_shape, one_over, pair, pair_text

__all__ = ["MaxPool2d", "AvgPool2d", "GlobalAvgPool2d", "Flatten"]


def _positions(u: int, v: int, stride, output) -> tuple[slice, ...]:
    """Where tap (u, v) of every window reads in the padded input: (..., rows, cols)."""
    (sh, sw), (Ho, Wo) = stride, output
    return (slice(None), slice(None), slice(u, u + sh * (Ho - 1) + 1, sh),
            slice(v, v + sw * (Wo - 1) + 1, sw))


def _under_taps(padded: np.ndarray, kernel, stride, output) -> np.ndarray:
    """(B, C, H', W', kh·kw): the inputs under each output unit's window, taps row-major."""
    (kh, kw), (Ho, Wo) = kernel, output
    B, C = padded.shape[:2]
    windows = np.empty((B, C, Ho, Wo, kh * kw), dtype=padded.dtype)
    for u in range(kh):
        for v in range(kw):
            windows[..., u * kw + v] = padded[_positions(u, v, stride, output)]
    return windows


@dataclass(frozen=True)
class MaxSaved:
    taps: np.ndarray       # (B, C, H', W') the winning tap of each window
    padded: np.ndarray     # (B, C, H + 2p, W + 2p) the input, −∞ around it (for the ties)
    image: tuple[int, int, int]
    dtype: np.dtype        # the messages' (the input's)


class MaxPool2d(Layer):
    """``MaxPool2d(kernel_size, stride=None, padding=0)``: ints or (rows, cols) pairs; the
    stride defaults to the kernel size; padding (at most half the kernel, as PyTorch) is −∞
    and never wins."""

    rational = True
    takes_images = True
    kink_convention = ("a tie goes to the window's first position (row-major), in the local "
                       "partials and the classic backward alike")

    def __init__(self, kernel_size, stride=None, padding=0) -> None:
        super().__init__()
        self.kernel = pair(kernel_size, "MaxPool2d: kernel_size")
        self.stride = self.kernel if stride is None else pair(stride, "MaxPool2d: stride")
        self.padding = pair(padding, "MaxPool2d: padding", smallest=0)
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel, strict=True)):
            raise ShapeError(f"MaxPool2d: padding must be at most half the kernel "
                             f"{self.kernel[0]}×{self.kernel[1]}, got {padding!r}")

    def describe(self):
        extra = f", stride={pair_text(self.stride)}" if self.stride != self.kernel else ""
        extra += f", padding={pair_text(self.padding)}" if any(self.padding) else ""
        return f"MaxPool2d({self.kernel[0]}×{self.kernel[1]}{extra})"

    def output_width(self, n_in):
        return None

    def output_shape(self, shape):
        return image_shape(shape, None, self.kernel, self.stride, self.padding)

    def forward(self, x):
        C, Ho, Wo = check_image(x, None, self.kernel, self.stride, self.padding)
        ph, pw = self.padding
        # −∞ as the padding: a float, compared correctly with Fractions and mp numbers too
        padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf) \
            if ph or pw else x
        # tap by tap in row-major order, a later tap winning only if strictly larger: ties
        # go to the first, as torch's (and as argmax would)
        kh, kw = self.kernel
        out = padded[_positions(0, 0, self.stride, (Ho, Wo))].copy()
        taps = np.zeros(out.shape, dtype=np.intp)
        for k in range(1, kh * kw):
            here = padded[_positions(k // kw, k % kw, self.stride, (Ho, Wo))]
            larger = here > out
            np.copyto(out, here, where=larger)
            taps[larger] = k
        return out, MaxSaved(taps, padded, tuple(x.shape[1:]), x.dtype)

    def _ties(self, saved) -> np.ndarray:
        """The inputs that share their window's maximum with another input (found when
        asked: the forward itself does not need them)."""
        windows = _under_taps(saved.padded, self.kernel, self.stride, saved.taps.shape[2:])
        shape = (len(windows), *saved.image)
        out = np.take_along_axis(windows, saved.taps[..., None], axis=-1)[..., 0]
        top = windows == out[..., None]
        tied = top & (top.sum(axis=-1) > 1)[..., None]
        ph, pw = self.padding
        mask = np.zeros((shape[0], shape[1], shape[2] + 2 * ph, shape[3] + 2 * pw), dtype=bool)
        kh, kw = self.kernel
        for u in range(kh):
            for v in range(kw):
                mask[_positions(u, v, self.stride, out.shape[2:])] |= tied[..., u * kw + v]
        return mask[:, :, ph:ph + shape[2], pw:pw + shape[3]]

    def local_partials(self, saved):
        return LocalPartials(Route(saved.taps, saved.image, self.kernel, self.stride,
                                   self.padding, saved.dtype))

    def backward(self, saved, dout):
        C, H, W = saved.image
        B = len(saved.taps)
        (kh, kw), (ph, pw) = self.kernel, self.padding
        dout = dout.reshape(saved.taps.shape)
        # dout placed at each window's winning tap, zeros at the others; then every tap's
        # share added where that tap reads
        at_taps = np.zeros(dout.shape + (kh * kw,), dtype=dout.dtype)
        np.put_along_axis(at_taps, saved.taps[..., None], dout[..., None], axis=-1)
        dpadded = np.zeros((B, C, H + 2 * ph, W + 2 * pw), dtype=dout.dtype)
        for u in range(kh):
            for v in range(kw):
                dpadded[_positions(u, v, self.stride, dout.shape[2:])] += at_taps[..., u * kw + v]
        return dpadded[:, :, ph:ph + H, pw:pw + W], {}

    def nondifferentiable(self, saved):
        return self._ties(saved)

    def branch(self, saved):
        return saved.taps


class _Averaging(Layer):
    """A depthwise window of equal taps 1/(kh·kw): the mean under each window."""

    rational = True
    takes_images = True

    def _kernel_of(self, image) -> tuple[int, int]:
        return self.kernel

    def _stride_of(self, image) -> tuple[int, int]:
        return self.stride

    def output_width(self, n_in):
        return None

    def output_shape(self, shape):
        image = tuple(shape)
        return image_shape(image, None, self._kernel_of(image), self._stride_of(image), (0, 0))

    def forward(self, x):
        image = tuple(x.shape[1:]) if x.ndim == 4 else None
        kernel = self._kernel_of(image) if image else self.kernel
        C, Ho, Wo = check_image(x, None, kernel, self._stride_of(image), (0, 0))
        windows = _under_taps(x, kernel, self._stride_of(image), (Ho, Wo))
        weight = one_over(x, kernel[0] * kernel[1])        # exact for exact and mp input
        return windows.sum(axis=-1) * weight, (image, weight, x.dtype)

    def local_partials(self, saved):
        image, weight, dtype = saved
        taps = np.full((image[0], *self._kernel_of(image)), weight, dtype=dtype)
        return LocalPartials(Window(taps, image, self._stride_of(image), 0, depthwise=True))

    def backward(self, saved, dout):
        image, weight, _ = saved
        (kh, kw), stride = self._kernel_of(image), self._stride_of(image)
        C, H, W = image
        _, Ho, Wo = image_shape(image, None, (kh, kw), stride, (0, 0))
        dout = dout.reshape(len(dout), C, Ho, Wo) * weight
        dx = np.zeros((len(dout), C, H, W), dtype=dout.dtype)
        for u in range(kh):          # every input under a window gets its share
            for v in range(kw):
                dx[_positions(u, v, stride, (Ho, Wo))] += dout
        return dx, {}


class AvgPool2d(_Averaging):
    """``AvgPool2d(kernel_size, stride=None)``: the mean under each window (no padding);
    ints or (rows, cols) pairs; the stride defaults to the kernel size."""

    def __init__(self, kernel_size, stride=None) -> None:
        super().__init__()
        self.kernel = pair(kernel_size, "AvgPool2d: kernel_size")
        self.stride = self.kernel if stride is None else pair(stride, "AvgPool2d: stride")

    def describe(self):
        extra = f", stride={pair_text(self.stride)}" if self.stride != self.kernel else ""
        return f"AvgPool2d({self.kernel[0]}×{self.kernel[1]}{extra})"


class GlobalAvgPool2d(_Averaging):
    """``GlobalAvgPool2d()``: the mean of each channel over H and W; output (B, C)."""

    kernel = (1, 1)
    stride = (1, 1)

    def describe(self):
        return "GlobalAvgPool2d"

    def _kernel_of(self, image):
        return tuple(image[1:]) if image and len(image) == 3 else (1, 1)

    def output_shape(self, shape):
        C, _, _ = super().output_shape(shape)
        return (C,)

    def forward(self, x):
        out, saved = super().forward(x)
        return out.reshape(len(out), -1), saved       # (B, C, 1, 1) → (B, C)


class Flatten(Layer):
    """``Flatten()``: (B, C, H, W) (any per-sample shape) → (B, C·H·W) in C order."""

    rational = True

    def forward(self, x):
        return x.reshape(len(x), -1), FlattenSaved(tuple(x.shape[1:]), len(x), x.dtype)

    def output_shape(self, shape):
        return (int(np.prod(shape, dtype=np.int64)),)

    def local_partials(self, saved):
        # the same node, renumbered not at all: one edge n ← n of partial 1
        width = int(np.prod(saved.shape, dtype=np.int64))
        ones = np.ones((saved.batch, width), dtype=saved.dtype)
        return LocalPartials(Diagonal(ones if saved.dtype != object else ones.astype(int)
                                      .astype(object)))

    def backward(self, saved, dout):
        return dout.reshape((len(dout), *saved.shape)), {}


@dataclass(frozen=True)
class FlattenSaved:
    shape: tuple[int, ...]   # the input's per-sample shape
    batch: int
    dtype: np.dtype
