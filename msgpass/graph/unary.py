"""Elementwise functions of one node: y_n = f(x_n), so node n of the output hears only from
node n of the input and the local partials are diagonal (B, N): linear memory whatever N.

Each function is one class with the three faces side by side, written from the scalar
calculus:

``value(x)``             f, in x's arithmetic (float, or exact / mp object arrays)
``slope(x, y)``          f′(x), given y = f(x): the local partial
``pullback(x, y, dout)`` dout·f′(x): the classic backward, written by its own code (not by
                         calling ``slope``), so that the standard-backprop witness checks the
                         local partial against a second writing of the derivative
``curvature(x, y)``      f″(x): the tangent of the local partial, J̇ = f″(x)·ẋ (second-order
                         messages, ``Graph.hvp``)

A function with a kink (abs at 0) says which entries sit on it (``at_kink``), the derivative
it uses there (``kink_convention``), and which smooth piece each entry is on (``piece``), so
that verify reports the kink and the numerical witness leaves out stencils that cross it.

``CustomElementwise(f)`` (``mp.elementwise(f)``) makes such a function from a user's scalar
numpy function, with its derivative from the complex step or given (and checked against the
complex step).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import numbers
from ..errors import DtypeError, InputValueError, MsgpassError
from ..layers.function import COMPLEX_STEP, JACOBIAN_RTOL, JacobianCheck
from ..partials import Diagonal
from .ops import OneSaved, Op, OpPartials

__all__ = ["Unary", "Sin", "Cos", "Sqrt", "Abs", "Softplus", "Log1p", "Expm1", "Square",
           "CustomElementwise"]


def _first_bad(mask: np.ndarray) -> tuple[int, int]:
    b, n = np.argwhere(mask)[0]
    return int(b), int(n)


class Unary(Op):
    """An elementwise function of one node (see the module docstring)."""

    def value(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def slope(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def pullback(self, x: np.ndarray, y: np.ndarray, dout: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def curvature(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def domain(self, x: np.ndarray) -> None:
        """Refuse x outside the function's domain (InputValueError naming the entry)."""

    def at_kink(self, x: np.ndarray) -> np.ndarray | None:
        """Bool (B, N): entries where f has no derivative (None: nowhere)."""
        return None

    def piece(self, x: np.ndarray) -> np.ndarray | None:
        """Int (B, N): the smooth piece of f each entry is on (None: f is smooth)."""
        return None

    # -- the op's faces, from the above ------------------------------------------------------
    def forward(self, x):
        self.domain(x)
        y = self.value(x)
        return y, OneSaved(x, y)

    def local_partials(self, saved):
        return OpPartials([Diagonal(self.slope(saved.x, saved.out))])

    def backward(self, saved, dout):
        return [self.pullback(saved.x, saved.out, dout)], {}

    def tangent_partials(self, saved, tangents):
        """J̇ of each input edge along the inputs' tangents: f″(x)·ẋ on the diagonal."""
        return [Diagonal(self.curvature(saved.x, saved.out) * tangents[0])]

    def nondifferentiable(self, saved):
        return self.at_kink(saved.x)

    def branch(self, saved):
        return self.piece(saved.x)


def _half(x: np.ndarray):
    """½ in x's arithmetic (a Fraction stays exact)."""
    return numbers.convert_like(x, np.array(0.5), "½") if x.dtype == object else 0.5


class Sin(Unary):
    """sin x; sin′ = cos, sin″ = −sin."""

    label = "sin"

    def value(self, x):
        return numbers.sin(x)

    def slope(self, x, y):
        return numbers.cos(x)

    def pullback(self, x, y, dout):
        return numbers.cos(x) * dout

    def curvature(self, x, y):
        return -y


class Cos(Unary):
    """cos x; cos′ = −sin, cos″ = −cos."""

    label = "cos"

    def value(self, x):
        return numbers.cos(x)

    def slope(self, x, y):
        return -numbers.sin(x)

    def pullback(self, x, y, dout):
        return -(dout * numbers.sin(x))

    def curvature(self, x, y):
        return -y


class Sqrt(Unary):
    """√x for x ≥ 0; √′ = 1/(2√x), infinite at 0, so x = 0 is refused where a derivative is
    needed: the forward refuses x < 0, the partials x = 0."""

    label = "sqrt"

    def domain(self, x):
        if np.any(x < 0):
            b, n = _first_bad(x < 0)
            raise InputValueError(f"sqrt needs x ≥ 0, got {x[b, n]} at sample {b}, entry {n}")

    def value(self, x):
        return numbers.sqrt(x)

    def slope(self, x, y):
        return 1 / (2 * y)       # an Inf at x = 0 is caught by the pass, naming the node

    def pullback(self, x, y, dout):
        return dout / (y + y)

    def curvature(self, x, y):
        return -1 / (4 * y * x)  # −¼ x^(−3/2)


class Abs(Unary):
    """|x|. Its derivative is sign(x); at x = 0 there is none, and the convention is 0 (as
    torch's, and numpy's sign(0) = 0): the gradient stops there. verify lists those entries."""

    label = "abs"
    kink_convention = "abs at 0 passes no gradient (sign(0) = 0)"

    def value(self, x):
        return np.abs(x)

    def slope(self, x, y):
        s = np.sign(x)
        return numbers.convert_like(x, s, "sign") if x.dtype == object else s

    def pullback(self, x, y, dout):
        # dout where x > 0, −dout where x < 0, nothing at the kink (x·0 keeps x's arithmetic)
        return np.where(x > 0, dout, np.where(x < 0, -dout, x * 0))

    def curvature(self, x, y):
        return x * 0            # zero away from the kink, in x's arithmetic

    def at_kink(self, x):
        return x == 0

    def piece(self, x):
        return np.sign(x).astype(np.int8)


class Square(Unary):
    """x²; exact on rationals."""

    label = "square"

    def value(self, x):
        return x * x

    def slope(self, x, y):
        return 2 * x

    def pullback(self, x, y, dout):
        return dout * (x + x)

    def curvature(self, x, y):
        return x * 0 + 2


class Softplus(Unary):
    """log(1 + eˣ), computed so that it never overflows: max(x, 0) + log1p(e^(−|x|)) (at
    x = 800 it is 800, where log(1 + exp(800)) is inf). Its derivative is the logistic
    σ(x) = 1/(1 + e^(−x)), taken from the side where the exponential is at most 1."""

    label = "softplus"

    def value(self, x):
        if x.dtype == object:       # mp: no overflow at any precision, the formula as written
            return numbers.log(1 + numbers.exp(x))
        return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))

    def slope(self, x, y):
        if x.dtype == object:
            return 1 / (1 + numbers.exp(-x))
        small = np.exp(-np.abs(x))                   # ≤ 1: never overflows
        return np.where(x >= 0, 1 / (1 + small), small / (1 + small))

    def pullback(self, x, y, dout):
        # σ(x) = e^(x − softplus(x)), from the forward value: another formula than slope's,
        # accurate on both sides (x − y ≤ 0 always, so the exponential never overflows)
        return dout * numbers.exp(x - y)

    def curvature(self, x, y):
        # σ′ = e^(−|x|)/(1 + e^(−|x|))², symmetric in x; σ(1 − σ) would round 1 − σ to 0
        # for x ≳ 37 where σ′ is e^(−x), not 0
        e = numbers.exp(-abs(x))
        return e / ((1 + e) * (1 + e))


class Log1p(Unary):
    """log(1 + x) for x > −1, accurate for tiny x (where 1 + x would round); 1/(1 + x)."""

    label = "log1p"

    def domain(self, x):
        if np.any(x <= -1):
            b, n = _first_bad(x <= -1)
            raise InputValueError(f"log1p needs x > −1, got {x[b, n]} at sample {b}, entry {n}")

    def value(self, x):
        return numbers.log1p(x)

    def slope(self, x, y):
        return 1 / (1 + x)

    def pullback(self, x, y, dout):
        return dout / (x + 1)

    def curvature(self, x, y):
        return -1 / ((1 + x) * (1 + x))


class Expm1(Unary):
    """eˣ − 1, accurate for tiny x; its derivative is eˣ = y + 1."""

    label = "expm1"

    def value(self, x):
        return numbers.expm1(x)

    def slope(self, x, y):
        return y + 1

    def pullback(self, x, y, dout):
        return dout * numbers.exp(x)

    def curvature(self, x, y):
        return y + 1


class CustomElementwise(Unary):
    """A user's scalar function as an elementwise op: ``mp.elementwise(np.arcsinh)(node)``.

    Parameters
    ----------
    f : callable
        A function of one number (``math.erf``, one with an ``if``), applied entry by entry,
        or a numpy function applied to the whole array (any shape in, the same shape out:
        faster). Written with numpy ufuncs or ``cmath`` it takes complex input, and its
        derivative comes from the complex step: ``f′(x) = Im f(x + ih)/h`` at h = 1e-20,
        accurate to f's own round-off.
    derivative : callable, optional
        f′, entrywise; used instead of the complex step, and checked against it by verify
        (``check(x)``), as a ``Function``'s Jacobian is.
    name : str, optional
        For reports (default: f's name).

    Floating point only: exact and mp inputs are refused (f is a float function). Second
    order (``Graph.hvp``) is not available for it.
    """

    def __init__(self, f: Callable, derivative: Callable | None = None,
                 name: str | None = None) -> None:
        super().__init__()
        if not callable(f):
            raise TypeError(f"elementwise needs a callable f, got {f!r}")
        if derivative is not None and not callable(derivative):
            raise TypeError(f"elementwise's derivative must be callable, got {derivative!r}")
        self.f, self.derivative = f, derivative
        self.fname = name or getattr(f, "__name__", "f")

    @property
    def label(self) -> str:  # type: ignore[override]
        return self.fname

    def describe(self):
        return f"elementwise({self.fname})"

    def __call__(self, node):
        """The op applied to a graph node: a new node of that node's graph."""
        graph = getattr(node, "graph", None)     # a Node (node.py builds on this module)
        if graph is None or not hasattr(graph, "node"):
            raise TypeError(f"{self.describe()} applies to a graph node, got {node!r}")
        return graph.node(CustomElementwise(self.f, self.derivative, self.fname), node)

    def _call(self, x, what="f"):
        fn = self.f if what == "f" else self.derivative
        try:
            y = np.asarray(fn(x))
        except (TypeError, ValueError):
            y = None     # a scalar function (math.erf, an `if` on the value): entry by entry
        if y is None or (y.ndim == 0 and x.ndim > 0):
            y = self._entrywise(fn, x, what)
        if y.shape != x.shape:
            raise MsgpassError(f"{self.describe()}: {what} returned shape {y.shape} for input "
                               f"of shape {x.shape}; an elementwise function keeps the shape")
        return y

    def _entrywise(self, fn, x, what):
        """``fn`` applied to each entry of x (a function of one number). Results are kept as
        objects first: a fixed output type would truncate a float to an int or, for the
        complex step, make a real result complex with a silent zero derivative."""
        try:
            out = np.vectorize(fn, otypes=[object])(x)
        except (TypeError, ValueError) as err:
            if np.iscomplexobj(x):
                raise       # the complex step's caller says what to do instead
            raise MsgpassError(f"{self.describe()}: {what} failed on one number as well as on "
                               f"an array: {err}") from None
        if np.iscomplexobj(x):
            if not any(isinstance(v, (complex, np.complexfloating)) for v in out.flat):
                raise TypeError("f returned real numbers for complex input")
            return out.astype(complex)
        return out.astype(float)

    def value(self, x):
        if x.dtype == object:
            raise DtypeError(f"{self.describe()} is a float function; exact and mp modes are "
                             f"not available for custom elementwise ops")
        return self._call(x).astype(x.dtype, copy=False)

    def complex_step(self, x: np.ndarray) -> np.ndarray:
        """f′(x) by the complex step (TypeError if f refuses complex input)."""
        y = self._call(x + 1j * COMPLEX_STEP)
        if not np.iscomplexobj(y):
            raise TypeError("f returned real numbers for complex input")
        return y.imag / COMPLEX_STEP

    def slope(self, x, y):
        if self.derivative is not None:
            return self._call(x, "derivative").astype(x.dtype, copy=False)
        try:
            return self.complex_step(x).astype(x.dtype, copy=False)
        except (TypeError, ValueError) as err:
            raise MsgpassError(f"{self.describe()}: f does not take complex input ({err}); give "
                               f"its derivative: mp.elementwise(f, derivative=df)") from None

    def pullback(self, x, y, dout):
        # The classic backward takes the complex step where a derivative was given, so the
        # standard-backprop witness checks the given one (local partial) against it; with no
        # derivative, or an f that refuses complex input, it has only the one derivative.
        if self.derivative is not None:
            try:
                return dout * self.complex_step(x).astype(x.dtype, copy=False)
            except (TypeError, ValueError):
                pass
        return dout * self.slope(x, y)

    def curvature(self, x, y):
        raise MsgpassError(f"{self.describe()} has no second derivative, so second-order "
                           f"messages (hvp) cannot pass through it")

    def user_jacobian_check(self, x):
        return None if self.derivative is None else self.check(x)

    def check(self, x) -> JacobianCheck:
        """The given derivative against the complex step at x: every entry off by more than
        JACOBIAN_RTOL of the sample's largest derivative is named."""
        if self.derivative is None:
            raise MsgpassError(f"{self.describe()} has no given derivative to check")
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        given = self._call(x, "derivative").astype(np.float64)
        try:
            reference = self.complex_step(x)
        except (TypeError, ValueError) as err:
            raise MsgpassError(f"{self.describe()}: f does not take complex input ({err}), so "
                               f"its derivative cannot be checked by the complex step") from None
        scale = np.maximum(np.abs(reference).max(axis=1, keepdims=True), np.finfo(float).tiny)
        rel = np.abs(given - reference) / scale
        wrong = [(int(b), int(n), int(n), float(given[b, n]), float(reference[b, n]))
                 for b, n in np.argwhere(rel > JACOBIAN_RTOL)]
        return JacobianCheck(self.describe(), not wrong, float(rel.max(initial=0.0)), wrong,
                             int(given.size))
