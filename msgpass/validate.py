"""Validation of what users pass in, written once and shared: bad input gets a clear error here,
naming what was expected, before it can become a bare numpy error deep inside a layer.

* ``as_batch``, ``as_array``: arrays of inputs and targets;
* ``first_nonfinite``: where a NaN or Inf sits, for errors that name the entry;
* ``positive_int``: counts and sizes (widths, batch sizes, byte budgets, chunk sizes, ...);
* ``layer_index``: a layer index t within its range;
* ``graph_seed``: the one parser of a graph's seed (what arrives at its output from above).

Number modes ("exact", "mp:N") are parsed by msgpass.numbers.arithmetic.
"""

from __future__ import annotations

import numpy as np

from . import numbers
from .errors import DtypeError, InputValueError, ShapeError

__all__ = ["as_array", "as_batch", "first_nonfinite", "positive_int", "layer_index",
           "graph_seed"]


def first_nonfinite(a: np.ndarray) -> tuple[int, ...] | None:
    """Index of the first NaN or Inf in ``a``, or None if every entry is finite."""
    if a.dtype == object:   # exact Fractions are always finite; mp numbers may not be
        mode = numbers.mode_of(a)
        finite = np.array([mode.isfinite(v) for v in a.reshape(-1)], dtype=bool).reshape(a.shape)
    else:
        finite = np.isfinite(a)
    if finite.all():  # the common case: one pass, one temporary
        return None
    return tuple(int(i) for i in np.argwhere(~finite)[0])


def positive_int(value, what: str, error: type[Exception] = ValueError,
                 noun: str = "integer") -> int:
    """``value`` as an int if it is a positive integer (not a bool, not a float), else
    ``error`` saying "{what} must be a positive {noun}, got {value!r}"."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise error(f"{what} must be a positive {noun}, got {value!r}")
    return int(value)


def layer_index(t, low: int, high: int, what: str = "layer index") -> int:
    """``t`` as an int if it is an integer in low..high, else IndexError naming the range."""
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not low <= t <= high:
        raise IndexError(f"{what} must be {low}..{high}, got {t!r}")
    return int(t)


def as_array(obj, what: str) -> np.ndarray:
    """``np.asarray`` with a clear error for ragged nested lists and other non-arrays."""
    try:
        return np.asarray(obj)
    except (ValueError, TypeError) as err:
        raise ShapeError(f"{what} is not a rectangular array ({err})") from None


def as_batch(x, dtype: np.dtype, what: str = "input x", copy: bool = True,
             numbers=None, shape: tuple[int, ...] | None = None,
             images: bool = False) -> np.ndarray:
    """Validate ``x`` and return it as a new (B, N) array of ``dtype``: a copy by default, so
    that what the network records is never changed by (or changes) the caller's array.
    ``copy=False`` is for callers that keep nothing (standard backprop) and never write to it.
    With a NumberMode (``numbers``), the entries become exact Fractions or mpmath numbers.

    A 1-D x of length N is one sample and becomes (1, N). For a network whose input is an
    image, ``shape`` is its per-sample shape (C, H, W): x may be (B, C, H, W), a flat
    (B, C·H·W) (MNIST rows) or one image (C, H, W), and comes back as (B, C, H, W);
    ``images`` (shape unknown) lets x of any rank through as it is, for the first layer to
    check.
    Raises DtypeError for non-numeric data, ShapeError for other ranks or an empty batch,
    InputValueError for NaN or Inf.
    """
    a = as_array(x, what)
    if shape is not None:
        a = _as_image(a, tuple(shape), what)
    elif a.ndim == 1:
        a = a[None, :]
    # a network of image layers checks its input's rank itself, naming its first layer
    if a.ndim != 2 and not (shape is not None or (images and a.ndim > 2)):
        raise ShapeError(f"{what} must have shape (B, N) or (N,), got {a.shape}")
    if a.shape[0] == 0 or a.size == 0:
        raise ShapeError(f"{what} is empty: shape {a.shape}")
    if numbers is not None:
        return numbers.array(a, what)   # a new array; NaN, Inf and non-numbers refused
    if a.dtype.kind not in "iuf":
        raise DtypeError(f"{what} must hold real numbers (integer or float), got dtype {a.dtype}")
    given = a
    with np.errstate(over="ignore"):   # a finite value too large for dtype is refused below
        a = a.astype(dtype, copy=copy)
    where = first_nonfinite(a.reshape(len(a), -1))
    if where is not None:
        was = given.reshape(len(given), -1)[where]
        if np.isfinite(was):
            raise InputValueError(
                f"{what} holds {was} at sample {where[0]}, feature {where[1]}, too large for "
                f"{np.dtype(dtype).name} (at most {np.finfo(dtype).max:.4g})")
        raise InputValueError(
            f"{what} contains {a.reshape(len(a), -1)[where]} at sample {where[0]}, feature "
            f"{where[1]}; inputs must be finite")
    return a


def _as_image(a: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``a`` as (B, *shape) from (B, *shape), (B, prod(shape)) or one sample ``shape``."""
    size = int(np.prod(shape, dtype=np.int64))
    if a.shape[1:] == shape:
        return a
    if a.ndim == 2 and a.shape[1] == size:
        return a.reshape((len(a), *shape))
    if a.shape == shape:
        return a[None]
    dims = ", ".join(map(str, shape))
    raise ShapeError(f"{what} must have shape (B, {dims}) (or flat rows (B, {size})), got "
                     f"{a.shape}")


def graph_seed(seed, value: np.ndarray, output: str, natural: tuple[int, ...]) -> np.ndarray:
    """What arrives at a graph's output from above, as a new (B, N) array like its value.

    ``seed`` None means ones (the gradient of the output's sum), in the value's arithmetic
    (exact Fractions and mp numbers stay so). A given seed must have the value's shape (B, N)
    or the shape the value is shown in (``natural``); anything else is a ShapeError, never a
    silent reshape. ``"mean"`` gives every sample 1/B: the gradient of the batch mean of
    the output (a loss output's L, as a chain's backward).
    """
    if isinstance(seed, str):
        if seed != "mean":
            raise ValueError(f"seed must be an array or 'mean', got {seed!r}")
        batch = value.shape[0]
        if value.dtype == object:
            return np.full(value.shape, numbers.mode_of(value).one_over(batch), dtype=object)
        return np.full(value.shape, 1.0 / batch, dtype=value.dtype)
    if value.dtype == object:   # exact or mp: the seed in the same arithmetic (1/2 is a float)
        s = numbers.convert_like(value, np.ones(value.shape) if seed is None
                                 else as_array(seed, "seed"), "seed")
    elif seed is None:
        return np.ones_like(value)
    else:
        s = as_array(seed, "seed")
        if s.dtype.kind not in "biuf":
            raise DtypeError(f"seed for the output {output!r} must hold real numbers, got "
                             f"dtype {s.dtype}")
        s = s.astype(float)
    if s.shape == value.shape:
        return s.copy()
    if s.shape == natural:
        return s.reshape(value.shape).copy()
    raise ShapeError(f"seed for the output {output!r} must have its shape {natural or value.shape}"
                     f" (or {value.shape}), got shape {s.shape}")
