"""How two arrays are compared, and the tolerances they are held to (with their reasons).

An entry passes when

    |a − b| ≤ rtol · max(|a|, |b|, floor · M) + atol,

and its relative error is reported as ``|a − b| / max(|a|, |b|, floor · M)``. ``M`` is the
entry's *path magnitude* (msgpass.verify.path_magnitudes): the same sum with every local
partial replaced by its absolute value, i.e. what the entry would be if nothing cancelled.
Round-off in either summation order is a few u·M, so an entry far below its own M is "near
zero" — it is the result of cancellation, and its relative error says nothing about
correctness. (Where no M is given, the largest magnitude in the arrays stands in for it.)
``atol`` covers known absolute round-off (the numerical witness's u·|L|/h). Any NaN or Inf
in either array fails the comparison.

The float constants below come from ``python benchmarks/roundoff.py --nets 3000 --seed 7``
(3000 random networks of depth ≤ 6, width ≤ 32, batch ≤ 16, every layer kind and loss):
message sums and gradients differed from standard backprop by at most 6.4·u·M in float64
and 7.5·u·M in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Tolerance", "Comparison", "compare", "tolerances_for"]


@dataclass(frozen=True)
class Tolerance:
    """``|a − b| ≤ rtol · max(|a|, |b|, floor · scale) + atol``, with the reason for it."""

    rtol: float
    floor: float
    atol: float
    reason: str

    def with_atol(self, atol: float) -> Tolerance:
        return Tolerance(self.rtol, self.floor, atol, self.reason)


# float64 (u = 1.1e-16) ----------------------------------------------------------------------
# Messages and backprop form the same sums in different orders: measured ≤ 6.4·u·M, so an
# entry at the floor (1/100 of its M) is off by ≤ 7e-14 relative: 14x inside the 1e-12.
TOL_F64_BACKPROP = Tolerance(1e-12, 1e-2, 0.0,
                             "float64 sums in another order: measured <= 6.4·u·M")
# Five-point central differences at h = 1e-4: truncation ≈ 3e-18·f⁽⁵⁾, round-off ≈ 2e-12·|L|
# (the latter also enters as atol, computed per run from the loss).
TOL_F64_NUMERIC = Tolerance(1e-6, 1e-2, 0.0,
                            "5-point stencil, h = 1e-4: truncation ~1e-17, round-off ~1e-12·|L|")
# A message is one product J·S; the structured send and the dense view each round it once.
TOL_F64_RECURSION = Tolerance(2 * np.finfo(np.float64).eps, 0.0, 0.0,
                              "one product per message, rounded once on each side")

# float32 (u = 6e-8) -------------------------------------------------------------------------
# Measured ≤ 7.5·u·M ≈ 4.5e-7·M; entries within 10x of their M are held to 1e-4 relative
# (22x margin at the floor).
TOL_F32_BACKPROP = Tolerance(1e-4, 1e-1, 0.0,
                             "float32 sums in another order: measured <= 7.5·u·M")
# The numerical witness runs in float64 on the same (exactly upcast) parameters, so the gap
# is the float32 pass's own round-off through the forward and backward chains.
TOL_F32_NUMERIC = Tolerance(1e-3, 1e-1, 0.0,
                            "float32 pass vs a float64 witness: forward and backward round-off")
TOL_F32_RECURSION = Tolerance(2 * np.finfo(np.float32).eps, 0.0, 0.0,
                              "one product per message, rounded once on each side")


def tolerances_for(dtype) -> dict[str, Tolerance]:
    """The tolerances for the message pass computed in ``dtype``."""
    if np.dtype(dtype) == np.float32:
        return {"backprop": TOL_F32_BACKPROP, "numeric": TOL_F32_NUMERIC,
                "recursion": TOL_F32_RECURSION}
    return {"backprop": TOL_F64_BACKPROP, "numeric": TOL_F64_NUMERIC,
            "recursion": TOL_F64_RECURSION}


@dataclass(frozen=True)
class Comparison:
    """Outcome of comparing ``a`` (the message side) with ``b`` (a witness)."""

    max_abs: float
    max_rel: float
    ok: bool
    compared: int
    skipped: int
    worst: tuple[int, ...] | None  # index of the entry with the largest relative error


def compare(a, b, tol: Tolerance, include: np.ndarray | None = None,
            magnitude: np.ndarray | None = None) -> Comparison:
    """Compare two arrays of one shape entry by entry (see the module docstring).

    Parameters
    ----------
    a, b : array_like of one shape
    tol : Tolerance
    include : bool array of that shape, optional
        Entries to compare (others are counted as skipped), e.g. to leave out a numerical
        estimate whose stencil straddled a kink.
    magnitude : array of that shape, optional
        Per-entry size that round-off is proportional to (the path magnitude M); the floor
        is ``tol.floor · magnitude``. Without it, ``tol.floor · scale``.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return Comparison(np.inf, np.inf, False, 0, 0, None)
    mask = np.ones(a.shape, dtype=bool) if include is None else np.asarray(include, dtype=bool)
    skipped = int(mask.size - mask.sum())
    if not mask.any():
        return Comparison(0.0, 0.0, True, 0, skipped, None)
    av, bv = a[mask], b[mask]
    if not (np.all(np.isfinite(av)) and np.all(np.isfinite(bv))):
        return Comparison(np.nan, np.nan, False, int(mask.sum()), skipped, None)
    diff = np.abs(av - bv)
    if magnitude is None:
        size = max(float(np.max(np.abs(av))), float(np.max(np.abs(bv))))
    else:
        size = np.broadcast_to(np.asarray(magnitude, dtype=np.float64), a.shape)[mask]
    denom = np.maximum(np.maximum(np.abs(av), np.abs(bv)), tol.floor * size)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(diff == 0, 0.0, diff / np.where(denom == 0, 1.0, denom))
    ok = bool(np.all(diff <= tol.rtol * denom + tol.atol))
    k = int(np.argmax(rel))
    worst = tuple(int(i) for i in np.argwhere(mask)[k])
    return Comparison(float(diff.max()), float(rel[k]), ok, int(mask.sum()), skipped, worst)
