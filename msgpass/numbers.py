"""Number modes beyond floating point: exact rationals and arbitrary precision.

A network or graph normally computes in float64 or float32. For proof-grade statements it
can instead hold numpy object arrays of

* ``fractions.Fraction`` ("exact"): +, −, ×, ÷ and comparisons stay exact, so messages, node
  sums and gradients can be compared with ``==``. Only rational-preserving pieces qualify
  (Affine, ReLU, Max, Add, Sub, Mul, Div, Copy, MSELoss, NLLLoss, identity); exp, log and tanh
  leave the rationals, and the layers and ops that need them refuse exact mode by name.
* ``mpmath.mpf`` at a chosen number of significant decimal digits ("mp:50"): every layer works,
  and the gap between messages and backprop is round-off at that precision. mpmath is an
  optional extra (``pip install "msgpass[mp]"``).

Floats convert exactly in both (a binary float is a rational; mpf at ≥ 53 bits holds it).
"""

from __future__ import annotations

import numbers as _abc
from fractions import Fraction

import numpy as np

from .errors import DtypeError, InputValueError

__all__ = ["NumberMode", "Exact", "Multiprecision", "number_mode", "mode_of", "convert_like",
           "as_numbers", "arithmetic", "is_number_mode", "EXACT", "FLOAT_DTYPES"]

FLOAT_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


class NumberMode:
    """How one kind of exact-or-precise number is made and computed with."""

    name: str = ""
    exact: bool = False
    dtype = np.dtype(object)

    def scalar(self, value, what: str = "value"):
        raise NotImplementedError

    def array(self, values, what: str = "value") -> np.ndarray:
        """``values`` (any array-like of ints, floats, Fractions or mpf) as an object array
        of this mode's numbers. Raises DtypeError / InputValueError naming ``what``."""
        a = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
        if a.dtype.kind not in "biufO":
            raise DtypeError(f"{what} must hold numbers, got dtype {a.dtype}")
        out = np.empty(a.shape, dtype=object)
        flat_in, flat_out = a.reshape(-1), out.reshape(-1)
        for i, v in enumerate(flat_in):
            flat_out[i] = self.scalar(v, what)
        return out

    def one_over(self, n: int):
        """1/n in this mode (the batch mean's weight)."""
        return self.scalar(Fraction(1, n))

    def mean(self, values: np.ndarray):
        return np.sum(values) / values.size

    def isfinite(self, value) -> bool:
        return True

    def exp(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def log(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def tanh(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def sqrt(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def function(self, name: str, x: np.ndarray) -> np.ndarray:
        """Elementwise ``name`` (sin, cos, log1p, expm1, ...) in this mode."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


def _finite_float(value, what: str) -> float:
    if not np.isfinite(value):
        raise InputValueError(f"{what} contains {value}; it must be finite")
    return float(value)


class Exact(NumberMode):
    """Python Fractions: +, −, ×, ÷ exact; exp, log, tanh refused."""

    name = "exact"
    exact = True

    def scalar(self, value, what="value"):
        if isinstance(value, Fraction):
            return value
        if isinstance(value, (bool, np.bool_)):
            return Fraction(int(value))
        if isinstance(value, (int, np.integer)):
            return Fraction(int(value))
        if isinstance(value, (float, np.floating)):
            return Fraction(_finite_float(value, what))   # exact: a float is a dyadic rational
        if isinstance(value, _abc.Rational):
            return Fraction(value.numerator, value.denominator)
        raise DtypeError(f"{what} holds {value!r} ({type(value).__name__}); exact mode takes "
                         f"ints, floats and Fractions")

    def _refuse(self, name: str):
        raise DtypeError(f"{name} leaves the rational numbers, so it cannot run in exact mode; "
                         f"use an arbitrary-precision mode such as 'mp:50' instead")

    def exp(self, x):
        self._refuse("exp")

    def log(self, x):
        self._refuse("log")

    def tanh(self, x):
        self._refuse("tanh")

    def sqrt(self, x):
        self._refuse("sqrt")

    def function(self, name, x):
        self._refuse(name)


class Multiprecision(NumberMode):
    """mpmath numbers at ``digits`` significant decimal digits, in a context of their own (the
    global mpmath precision is never touched)."""

    def __init__(self, digits: int) -> None:
        try:
            import mpmath
        except ImportError:
            raise DtypeError("arbitrary precision needs mpmath, an optional extra: "
                             "pip install 'msgpass[mp]' (or pip install mpmath)") from None
        if isinstance(digits, bool) or not isinstance(digits, (int, np.integer)) \
                or not 15 <= digits <= 10_000:
            raise DtypeError(f"mp digits must be an integer from 15 to 10000, got {digits!r}")
        self.digits = int(digits)
        self.context = mpmath.MPContext()
        self.context.dps = self.digits
        self.name = f"mp:{self.digits}"
        self._mpf = self.context.mpf
        self._exp = np.frompyfunc(self.context.exp, 1, 1)
        self._log = np.frompyfunc(self.context.log, 1, 1)
        self._tanh = np.frompyfunc(self.context.tanh, 1, 1)
        self._sqrt = np.frompyfunc(self.context.sqrt, 1, 1)
        self._functions: dict = {}

    def scalar(self, value, what="value"):
        if isinstance(value, Fraction):
            return self._mpf(value.numerator) / value.denominator
        if isinstance(value, (bool, np.bool_, int, np.integer)):
            return self._mpf(int(value))
        if isinstance(value, (float, np.floating)):
            return self._mpf(_finite_float(value, what))
        if type(value).__name__ == "mpf":
            if not self.context.isfinite(value):
                raise InputValueError(f"{what} contains {value}; it must be finite")
            return self._mpf(value)
        raise DtypeError(f"{what} holds {value!r} ({type(value).__name__}); mp mode takes "
                         f"ints, floats, Fractions and mpmath numbers")

    def isfinite(self, value) -> bool:
        return bool(self.context.isfinite(value))

    def exp(self, x):
        return self._exp(x)

    def log(self, x):
        return self._log(x)

    def tanh(self, x):
        return self._tanh(x)

    def sqrt(self, x):
        return self._sqrt(x)

    def function(self, name, x):
        if name not in self._functions:     # made once per mode: mpmath's own, elementwise
            self._functions[name] = np.frompyfunc(getattr(self.context, name), 1, 1)
        return self._functions[name](x)


EXACT = Exact()
_MODES: dict[int, Multiprecision] = {}


def number_mode(spec) -> NumberMode:
    """"exact" or "mp:N" (N significant digits) as a NumberMode; DtypeError otherwise."""
    if isinstance(spec, NumberMode):
        return spec
    if spec == "exact":
        return EXACT
    if isinstance(spec, str) and spec.startswith("mp:"):
        try:
            digits = int(spec[3:])
        except ValueError:
            raise DtypeError(f"unknown number mode {spec!r}: write mp:N with N digits, "
                             f"e.g. 'mp:50'") from None
        if digits not in _MODES:     # one context per precision, so modes compare equal
            _MODES[digits] = Multiprecision(digits)
        return _MODES[digits]
    raise DtypeError(f"unknown number mode {spec!r}; use float64, float32, 'exact' or 'mp:N'")


def is_number_mode(spec) -> bool:
    """True for a NumberMode or a string naming one ("exact", "mp:N"), however malformed the
    N (number_mode says what is wrong with it); False for anything else, e.g. a dtype."""
    return isinstance(spec, NumberMode) or (isinstance(spec, str) and (
        spec == "exact" or spec.startswith("mp:")))


def arithmetic(spec) -> np.dtype | NumberMode:
    """The one parser of what a network or layer computes in: "float64", "float32" (or any
    numpy spelling of them) as a dtype; "exact", "mp:N" or a NumberMode as a NumberMode.
    DtypeError naming the choices for anything else."""
    if is_number_mode(spec):
        return number_mode(spec)
    try:
        dtype = np.dtype(spec)
    except TypeError:
        raise DtypeError(f"unknown dtype {spec!r}; use float64 or float32, 'exact' or "
                         f"'mp:N'") from None
    if dtype not in FLOAT_DTYPES:
        raise DtypeError(f"dtype must be float64 or float32 (or 'exact', 'mp:N'), got {dtype}")
    return dtype


def mode_of(a: np.ndarray) -> NumberMode | None:
    """The number mode of an object array's entries (None for a float array)."""
    if a.dtype != object:
        return None
    for value in a.reshape(-1):
        if isinstance(value, (Fraction, int, np.integer)):
            continue    # an int (a ReLU's 0, a one-hot 1) says nothing: look further
        context = getattr(value, "context", None)
        if context is not None:
            return number_mode(f"mp:{context.dps}")
        raise DtypeError(f"an object array holds {type(value).__name__}; msgpass computes on "
                         f"floats, Fractions or mpmath numbers")
    return EXACT


def as_numbers(values, mode) -> np.ndarray:
    """``values`` as an object array in ``mode`` ("exact" or "mp:D"), converted exactly: how
    to give a graph exact or mp inputs, e.g. ``g.input("x", mp.as_numbers(x, "mp:50"))``."""
    return number_mode(mode).array(values, "values")


def convert_like(x: np.ndarray, values, what: str) -> np.ndarray:
    """``values`` in the number kind of ``x``: its float dtype, or its exact/mp mode."""
    mode = mode_of(x)
    if mode is None:
        return np.asarray(values).astype(x.dtype)
    return mode.array(values, what)


def _elementwise(name: str, on_floats):
    """The function ``name`` elementwise, in the arithmetic of its argument: numpy's for
    float arrays, the mode's (mpmath's, or a refusal in exact mode) for object arrays."""
    def apply(x: np.ndarray) -> np.ndarray:
        mode = mode_of(x)
        return on_floats(x) if mode is None else getattr(mode, name)(x)
    apply.__name__ = name
    apply.__doc__ = f"Elementwise {name} for float arrays and mp object arrays (exact refuses)."
    return apply


exp = _elementwise("exp", np.exp)
log = _elementwise("log", np.log)
sqrt = _elementwise("sqrt", np.sqrt)
tanh = _elementwise("tanh", np.tanh)


def _by_name(name: str, on_floats):
    """Like ``_elementwise`` for a function the modes know by name (``NumberMode.function``)."""
    def apply(x: np.ndarray) -> np.ndarray:
        mode = mode_of(x)
        return on_floats(x) if mode is None else mode.function(name, x)
    apply.__name__ = name
    apply.__doc__ = f"Elementwise {name} for float arrays and mp object arrays (exact refuses)."
    return apply


sin = _by_name("sin", np.sin)
cos = _by_name("cos", np.cos)
log1p = _by_name("log1p", np.log1p)
expm1 = _by_name("expm1", np.expm1)
