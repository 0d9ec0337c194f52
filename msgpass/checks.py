"""Input checks shared by the network and the witnesses: bad input gets a clear error here,
before it can become a bare numpy error deep inside a layer."""

from __future__ import annotations

import numpy as np

from .errors import DtypeError, InputValueError, ShapeError

__all__ = ["as_array", "as_batch", "first_nonfinite"]


def first_nonfinite(a: np.ndarray) -> tuple[int, ...] | None:
    """Index of the first NaN or Inf in ``a``, or None if every entry is finite."""
    if a.dtype == object:   # exact Fractions are always finite; mp numbers may not be
        from .numbers import mode_of
        mode = mode_of(a)
        finite = np.array([mode.isfinite(v) for v in a.reshape(-1)], dtype=bool).reshape(a.shape)
    else:
        finite = np.isfinite(a)
    if finite.all():  # the common case: one pass, one temporary
        return None
    return tuple(int(i) for i in np.argwhere(~finite)[0])


def as_array(obj, what: str) -> np.ndarray:
    """``np.asarray`` with a clear error for ragged nested lists and other non-arrays."""
    try:
        return np.asarray(obj)
    except (ValueError, TypeError) as err:
        raise ShapeError(f"{what} is not a rectangular array ({err})") from None


def as_batch(x, dtype: np.dtype, what: str = "input x", copy: bool = True,
             numbers=None) -> np.ndarray:
    """Validate ``x`` and return it as a new (B, N) array of ``dtype``: a copy by default, so
    that what the network records is never changed by (or changes) the caller's array.
    ``copy=False`` is for callers that keep nothing (standard backprop) and never write to it.
    With a NumberMode (``numbers``), the entries become exact Fractions or mpmath numbers.

    A 1-D x of length N is one sample and becomes (1, N).
    Raises DtypeError for non-numeric data, ShapeError for other ranks or an empty batch,
    InputValueError for NaN or Inf.
    """
    a = as_array(x, what)
    if numbers is not None:
        if a.ndim == 1:
            a = a[None, :]
        if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
            raise ShapeError(f"{what} must have shape (B, N) or (N,) with B, N ≥ 1, got "
                             f"{a.shape}")
        return numbers.array(a, what)   # a new array; NaN, Inf and non-numbers refused
    if a.dtype.kind not in "iuf":
        raise DtypeError(f"{what} must hold real numbers (integer or float), got dtype {a.dtype}")
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ShapeError(f"{what} must have shape (B, N) or (N,), got {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ShapeError(f"{what} is empty: shape {a.shape}")
    a = a.astype(dtype, copy=copy)
    where = first_nonfinite(a)
    if where is not None:
        raise InputValueError(
            f"{what} contains {a[where]} at sample {where[0]}, feature {where[1]}; "
            f"inputs must be finite")
    return a
