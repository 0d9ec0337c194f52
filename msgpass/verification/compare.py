"""How two arrays are compared, and the tolerances they are held to (with their reasons).

The relative error of an entry is

    |a − b| / max(|a|, |b|, floor · M, atol / rtol),

and an entry passes when that is at most ``rtol``: the reported maximum relative error and the
verdict always agree. ``M`` is the entry's *path magnitude* (msgpass.verification.roundoff): the
same sum with every local partial replaced by the size of its terms, i.e. what the entry
would be if nothing cancelled. Round-off in either summation order is a few u·M, so an entry
far below its own M is "near zero": it is the result of cancellation, and its relative error
says nothing about correctness. (Where no M is given, the largest magnitude in the arrays
stands in for it.) ``atol`` is a witness's own absolute round-off (for the numerical one,
32·u·max(1, |ℓ|)/h, measured: see msgpass.witnesses.numeric.ROUNDOFF_FACTOR; one number, or
one per entry when entries were differenced from totals of different sizes, as the graph
witness's samples are) and ``atol / rtol`` its *noise level*: entries below it can be checked
only to ``atol``, not to ``rtol`` relative. It is 0 for the other witnesses.

A comparison in which no entry rises above the noise level, or in which every entry was left
out, is *inconclusive*: it passes nothing and fails nothing, and says so. Any NaN or Inf in
either array fails.

The float constants below come from ``python benchmarks/roundoff.py --nets 3000 --seed 7``
(3000 random networks of depth ≤ 6, width ≤ 32, batch ≤ 16, every layer kind and loss):
message sums and gradients differed from standard backprop by at most 6.8·u·M in float64
and 7.7·u·M in float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

__all__ = ["Tolerance", "Comparison", "compare", "compare_numbers", "tolerances_for",
           "Arithmetic", "arithmetic_of"]


@dataclass(frozen=True)
class Tolerance:
    """``|a − b| ≤ rtol · max(|a|, |b|, floor · M, atol / rtol)``, with the reason for it.
    ``atol`` is a number, or an array of the compared arrays' shape (one per entry)."""

    rtol: float
    floor: float
    atol: float | np.ndarray
    reason: str

    def with_atol(self, atol: float | np.ndarray) -> Tolerance:
        return Tolerance(self.rtol, self.floor, atol, self.reason)

    @property
    def largest_atol(self) -> float:
        """The largest round-off allowance (what a report prints)."""
        return float(np.max(self.atol)) if np.size(self.atol) else 0.0


# float64 (u = 1.1e-16) ----------------------------------------------------------------------
# Messages and backprop form the same sums in different orders: measured ≤ 6.8·u·M, so an
# entry at the floor (1/100 of its M) is off by ≤ 7.5e-14 relative: 13x inside the 1e-12.
TOL_F64_BACKPROP = Tolerance(1e-12, 1e-2, 0.0,
                             "float64 sums in another order: measured <= 6.8·u·M")
# Five-point central differences at h = 2⁻¹³: truncation ≈ 7e-18·f⁽⁵⁾; round-off enters as
# atol, computed per run from the loss.
TOL_F64_NUMERIC = Tolerance(1e-6, 1e-2, 0.0,
                            "5-point stencil, h = 2^-13: truncation ~1e-17, round-off as atol")
# A message is one product J·S; the structured send and the dense view each round it once.
TOL_F64_RECURSION = Tolerance(2 * np.finfo(np.float64).eps, 0.0, 0.0,
                              "one product per message, rounded once on each side")

# float32 (u = 6e-8) -------------------------------------------------------------------------
# Measured ≤ 7.7·u·M ≈ 4.6e-7·M; entries within 10x of their M are held to 1e-4 relative
# (21x margin at the floor).
TOL_F32_BACKPROP = Tolerance(1e-4, 1e-1, 0.0,
                             "float32 sums in another order: measured <= 7.7·u·M")
# The numerical witness runs in float64 on the same (exactly upcast) parameters, so the gap
# is the float32 pass's own round-off through the forward and backward chains.
TOL_F32_NUMERIC = Tolerance(1e-3, 1e-1, 0.0,
                            "float32 pass vs a float64 witness: forward and backward round-off")
TOL_F32_RECURSION = Tolerance(2 * np.finfo(np.float32).eps, 0.0, 0.0,
                              "one product per message, rounded once on each side")


# exact (Fractions) -------------------------------------------------------------------------
# Every operation is exact, so messages and backprop agree exactly or not at all.
TOL_EXACT = Tolerance(0.0, 0.0, 0.0, "exact rational arithmetic: compared with ==")


def tolerances_mp(digits: int) -> Tolerance:
    """mpmath at ``digits`` significant digits: each operation rounds to 10^-digits relative;
    the two sides sum the same terms in other orders along chains of at most a few hundred
    operations, so 10^(3 − digits) relative to the largest entry. Measured on the random
    networks of tests/test_numbers.py: ≤ 10^(−0.4 − digits) at 20 and at 50 digits."""
    return Tolerance(10.0 ** (3 - digits), 1.0, 0.0,
                     f"mpmath at {digits} digits: sums in another order, 10^-{digits} per step")


def tolerances_for(dtype, numbers=None) -> dict[str, Tolerance]:
    """The tolerances for the message pass computed in ``dtype`` (or in a number mode)."""
    if numbers is not None:
        tol = TOL_EXACT if numbers.exact else tolerances_mp(numbers.digits)
        return {"backprop": tol, "recursion": tol, "numeric": tol}
    if np.dtype(dtype) == np.float32:
        return {"backprop": TOL_F32_BACKPROP, "numeric": TOL_F32_NUMERIC,
                "recursion": TOL_F32_RECURSION}
    # The layered view and the path sum add the same terms in other orders, like backprop.
    return {"backprop": TOL_F64_BACKPROP, "numeric": TOL_F64_NUMERIC,
            "recursion": TOL_F64_RECURSION}


@dataclass(frozen=True)
class Comparison:
    """Outcome of comparing ``a`` (the message side) with ``b`` (a witness).

    ``ok`` is True when every compared entry's relative error is at most rtol; a comparison
    that compared nothing above the witness's noise level is ``inconclusive`` (and ok).
    """

    max_abs: float
    max_rel: float
    ok: bool
    compared: int
    excluded: int
    inconclusive: bool
    worst: tuple[int, ...] | None  # index of the entry with the largest relative error


def compare_numbers(a, b, tol: Tolerance, magnitude=None) -> Comparison:
    """Compare two object arrays of exact Fractions (``tol.rtol == 0``: every entry ``==``) or
    of mpmath numbers (relative to the largest entry, computed at the numbers' own
    precision; only the reported errors become floats)."""
    a, b = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    if a.shape != b.shape:
        return Comparison(np.inf, np.inf, False, 0, 0, False, None)
    if a.size == 0:
        return Comparison(0.0, 0.0, True, 0, 0, False, None)
    diff = np.abs(a - b)
    size = max(max(abs(v) for v in a.reshape(-1)), max(abs(v) for v in b.reshape(-1)))
    k = int(np.argmax(np.array([float(d) for d in diff.reshape(-1)])))
    worst = tuple(int(i) for i in np.unravel_index(k, a.shape))
    max_abs = diff.reshape(-1)[k]
    if tol.rtol == 0:
        # exact: equal as numbers, and both sides still exact (a float 0.5 == Fraction(1, 2),
        # but a float means exactness was lost somewhere)
        rational = all(isinstance(v, (Fraction, int)) for v in a.reshape(-1)) and all(
            isinstance(v, (Fraction, int)) for v in b.reshape(-1))
        ok = bool(np.all(a == b)) and rational
        rel = 0.0 if ok else float(max_abs / size) if size != 0 else np.inf
        return Comparison(float(max_abs), rel, ok, int(a.size), 0, False, worst)
    if magnitude is not None:   # the path magnitude: the scale of an entry's round-off
        size = max(size, float(np.max(np.asarray(magnitude, dtype=np.float64))))
    rel = max_abs / max(size, tol.floor * size) if size != 0 else 0 * max_abs
    return Comparison(float(max_abs), float(rel), bool(rel <= tol.rtol), int(a.size), 0, False,
                      worst)


def compare(a, b, tol: Tolerance, include: np.ndarray | None = None,
            magnitude: np.ndarray | None = None) -> Comparison:
    """Compare two arrays of one shape entry by entry (see the module docstring).

    Parameters
    ----------
    a, b : array_like of one shape
    tol : Tolerance
    include : bool array of that shape, optional
        Entries to compare (others are counted as excluded), e.g. to leave out a numerical
        estimate whose stencil straddled a kink.
    magnitude : array of that shape, optional
        Per-entry size that round-off is proportional to (the path magnitude M); the floor
        is ``tol.floor · magnitude``. Without it, ``tol.floor`` times the largest |a|, |b|.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return Comparison(np.inf, np.inf, False, 0, 0, False, None)
    mask = np.ones(a.shape, dtype=bool) if include is None else np.asarray(include, dtype=bool)
    excluded = int(mask.size - mask.sum())
    if not mask.any():
        return Comparison(0.0, 0.0, True, 0, excluded, True, None)
    av, bv = a[mask], b[mask]
    if not (np.all(np.isfinite(av)) and np.all(np.isfinite(bv))):
        return Comparison(np.nan, np.nan, False, int(mask.sum()), excluded, False, None)
    diff = np.abs(av - bv)
    size = np.maximum(np.abs(av), np.abs(bv))
    if magnitude is None:
        floor = tol.floor * float(size.max())
    else:
        floor = tol.floor * np.broadcast_to(np.asarray(magnitude, dtype=np.float64), a.shape)[mask]
    noise = (np.broadcast_to(np.asarray(tol.atol, dtype=np.float64), a.shape)[mask] / tol.rtol
             if tol.rtol > 0 else 0.0)
    denom = np.maximum(np.maximum(size, floor), noise)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(diff == 0, 0.0, diff / np.where(denom == 0, 1.0, denom))
    rel = np.where((denom == 0) & (diff > 0), np.inf, rel)
    k = int(np.argmax(rel))
    ok = bool(rel[k] <= tol.rtol)
    # Nothing above the witness's noise, and not simply equal: the witness could not tell.
    inconclusive = bool(ok and np.all((noise > 0) & (size <= noise)) and np.any(diff > 0))
    worst = tuple(int(i) for i in np.argwhere(mask)[k])
    return Comparison(float(diff.max()), float(rel[k]), ok, int(mask.sum()), excluded,
                      inconclusive, worst)


class Arithmetic:
    """How verify compares the message side with a witness in one kind of numbers: its
    tolerances (one per role: "recursion", "backprop", "numeric") and its comparison. One
    induction walk serves every kind; only this strategy differs.

    Attributes
    ----------
    name : str
        "float64", "float32", "exact" or "mp:D", as the report prints it.
    floating : bool
        Floating point: the numerical witness can run.
    uses_magnitudes : bool
        Errors are judged against path magnitudes (verify.roundoff); not needed when exact.
    notes : list of str
        What the report says about this arithmetic.
    """

    floating = True
    uses_magnitudes = True
    notes: list[str] = []

    def __init__(self, name: str, tolerances: dict[str, Tolerance]) -> None:
        self.name, self.tolerances = name, tolerances

    def compare(self, a, b, tol: Tolerance, include=None, magnitude=None) -> Comparison:
        return compare(a, b, tol, include=include, magnitude=magnitude)


class NumberArithmetic(Arithmetic):
    """Exact Fractions (every claim ``==``) or mpmath numbers (relative to the largest
    entry, or to the largest path magnitude), compared in their own arithmetic."""

    floating = False

    def __init__(self, numbers) -> None:
        super().__init__(numbers.name, tolerances_for(None, numbers))
        self.uses_magnitudes = not numbers.exact
        self.notes = [
            "exact: Fractions throughout, every claim compared with == (max abs must be 0)"
            if numbers.exact else
            f"{numbers.name}: mpmath at {numbers.digits} significant digits; errors relative "
            f"to the largest entry"]

    def compare(self, a, b, tol, include=None, magnitude=None):
        return compare_numbers(a, np.asarray(b, dtype=object), tol, magnitude)


def arithmetic_of(dtype, numbers=None) -> Arithmetic:
    """The comparison strategy for messages computed in ``dtype`` or in a number mode."""
    if numbers is not None:
        return NumberArithmetic(numbers)
    return Arithmetic(str(np.dtype(dtype)), tolerances_for(dtype))
