"""Conv2d: a 2-D convolution (cross-correlation, as PyTorch's), NCHW.

    y[b, c', i', j'] = b[c'] + Σ_{c, u, v} W[c', c, u, v] · x_pad[b, c, s·i' + u, s·j' + v]

Local partials: the window kind (J's entries are the kernel taps, shared by every sample; no
edge from the zero padding) and, for W, the padded input under each tap (msgpass.partials.
Kernel). The classic backward is im2col / col2im: the forward's patch matrix, and its
transpose folded back onto the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ShapeError
from ..partials import Kernel, LocalPartials, PerChannel, Window
from ..validate import positive_int
from .base import Layer
from .images import check_image, image_shape, pair, pair_text

__all__ = ["Conv2d"]


@dataclass(frozen=True)
class ConvSaved:
    padded: np.ndarray    # (B, C_in, H + 2p, W + 2p)
    columns: np.ndarray   # (C_in·kh·kw, B·H'·W'): im2col of the padded input
    image: tuple[int, int, int]     # (C_in, H, W)
    output: tuple[int, int, int]    # (C_out, H', W')


def _im2col(padded: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
            output: tuple[int, int]) -> np.ndarray:
    """(C·kh·kw, B·H'·W'): column (b, i', j') holds sample b's patch under output position
    (i', j'), so that one matrix product serves the whole batch."""
    B, C = padded.shape[:2]
    (kh, kw), (Ho, Wo), (sh, sw) = kernel, output, stride
    columns = np.empty((C, kh, kw, B, Ho, Wo), dtype=padded.dtype)
    for u in range(kh):
        for v in range(kw):
            columns[:, u, v] = padded[:, :, u:u + sh * (Ho - 1) + 1:sh,
                                      v:v + sw * (Wo - 1) + 1:sw].transpose(1, 0, 2, 3)
    return columns.reshape(C * kh * kw, B * Ho * Wo)


class Conv2d(Layer):
    """``Conv2d(c_in, c_out, kernel_size, stride=1, padding=0, bias=True, seed=None)``.

    Parameters ``"W"`` (c_out, c_in, kh, kw) and, unless ``bias=False``, ``"b"`` (c_out,):
    PyTorch's layout, initialised like PyTorch's default (uniform in ±1/√(c_in·kh·kw)) from
    ``seed`` (None means seed 0). Input (B, c_in, H, W), zero padding, output
    (B, c_out, H', W') with H' = ⌊(H + 2p − kh)/s⌋ + 1. ``kernel_size``, ``stride`` and
    ``padding`` are ints or (rows, cols) pairs, as in PyTorch.
    """

    rational = True
    takes_images = True

    def __init__(self, c_in: int, c_out: int, kernel_size, stride=1, padding=0,
                 bias: bool = True, seed=None, dtype=np.float64) -> None:
        super().__init__()
        self.c_in = positive_int(c_in, "Conv2d: c_in", ShapeError)
        self.c_out = positive_int(c_out, "Conv2d: c_out", ShapeError)
        self.kernel = pair(kernel_size, "Conv2d: kernel_size")
        self.stride = pair(stride, "Conv2d: stride")
        self.padding = pair(padding, "Conv2d: padding", smallest=0)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(
            0 if seed is None else seed)
        bound = 1.0 / np.sqrt(self.c_in * self.kernel[0] * self.kernel[1])
        self.params = {"W": rng.uniform(-bound, bound, (self.c_out, self.c_in, *self.kernel)
                                        ).astype(dtype)}
        if bias:
            self.params["b"] = rng.uniform(-bound, bound, self.c_out).astype(dtype)

    def describe(self) -> str:
        extra = "".join(f", {name}={value}" for name, value, default in
                        (("stride", pair_text(self.stride), "1"),
                         ("padding", pair_text(self.padding), "0"))
                        if value != default)
        return (f"Conv2d({self.c_in}→{self.c_out}, {self.kernel[0]}×{self.kernel[1]}{extra}"
                f"{'' if 'b' in self.params else ', no bias'})")

    def output_width(self, n_in):
        return None     # depends on H and W: see output_shape

    def output_shape(self, shape):
        _, Ho, Wo = image_shape(shape, self.c_in, self.kernel, self.stride, self.padding)
        return (self.c_out, Ho, Wo)

    def forward(self, x):
        _, Ho, Wo = check_image(x, self.c_in, self.kernel, self.stride, self.padding)
        ph, pw = self.padding
        padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
        columns = _im2col(padded, self.kernel, self.stride, (Ho, Wo))
        out = self.params["W"].reshape(self.c_out, -1) @ columns        # (C_out, B·H'W')
        if "b" in self.params:
            out += self.params["b"][:, None]
        return (out.reshape(self.c_out, len(x), Ho, Wo).transpose(1, 0, 2, 3).copy(),
                ConvSaved(padded, columns, tuple(x.shape[1:]), (self.c_out, Ho, Wo)))

    def local_partials(self, saved):
        _, Ho, Wo = saved.output
        params = {"W": Kernel(saved.padded, self.kernel, self.stride, saved.output)}
        if "b" in self.params:
            params["b"] = PerChannel(None, self.c_out, Ho * Wo)
        # a copy of W: the trace records this pass, so a later update must not change it
        return LocalPartials(Window(self.params["W"].copy(), saved.image, self.stride,
                                    self.padding), params)

    def _by_channel(self, saved, dout) -> np.ndarray:
        """dout (B, C_out, H', W') as (C_out, B·H'·W'), the columns' order."""
        return np.ascontiguousarray(dout.reshape(len(saved.padded), self.c_out, -1)
                                    .transpose(1, 0, 2)).reshape(self.c_out, -1)

    def param_backward(self, saved, dout):
        dout = self._by_channel(saved, dout)
        grads = {"W": (dout @ saved.columns.T).reshape(self.params["W"].shape)}
        if "b" in self.params:
            grads["b"] = dout.sum(axis=1)
        return grads

    def backward(self, saved, dout):
        B = len(saved.padded)
        by_channel = self._by_channel(saved, dout)
        # col2im: each patch column's gradient, W^T · dout, added back where the patch came from
        dcolumns = self.params["W"].reshape(self.c_out, -1).T @ by_channel
        C, H, W = saved.image
        _, Ho, Wo = saved.output
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        dcolumns = dcolumns.reshape(C, kh, kw, B, Ho, Wo)
        # accumulated channel-major, as the columns are, and turned to (B, C, H, W) once
        dpadded = np.zeros((C, B) + saved.padded.shape[2:], dtype=dcolumns.dtype)
        for u in range(kh):
            for v in range(kw):
                dpadded[:, :, u:u + sh * (Ho - 1) + 1:sh, v:v + sw * (Wo - 1) + 1:sw] += \
                    dcolumns[:, u, v]
        grads = {"W": (by_channel @ saved.columns.T).reshape(self.params["W"].shape)}
        if "b" in self.params:
            grads["b"] = by_channel.sum(axis=1)
        dx = dpadded[:, :, ph:ph + H, pw:pw + W].transpose(1, 0, 2, 3)
        return np.ascontiguousarray(dx), grads
