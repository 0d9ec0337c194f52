"""Graph operations: nodes with any number of inputs (seed 001's multiply and add layers, seed
003's gates, seed 000's Copy/Add/Max modules).

Like a layer, an op is one class with three faces side by side:

``forward(*xs) -> (out, saved)``
    every x and out of shape (B, N); an input of width 1 is broadcast against width N;
``local_partials(saved) -> OpPartials``
    one structured InputPartials per input (the edge u_i → v), plus parameter partials;
``backward(saved, dout) -> (dxs, dparams)``
    the classic vector–Jacobian products, one per input, written from ``saved`` only.

An input of the output's width gets diagonal partials; a width-1 input broadcast to width N
gets a dense (B, 1, N) block: its single node sends to all N output nodes. An input with batch
1 combined with a batch of B (a scalar input, a constant) is shared by every sample, so what
it receives is summed over the samples too, like a parameter's gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import numbers
from ..errors import DtypeError, InputValueError, MsgpassError, ShapeError, StateError
from ..layers.base import Layer
from ..partials import Dense, Diagonal, InputPartials, ParamPartials, Selection
from ..validate import positive_int

__all__ = [
    "Op", "OpPartials", "Add", "Sub", "Mul", "Div", "Pow", "Exp", "Log", "Max", "Identity",
    "Scale", "Reciprocal", "LayerOp", "Concat", "Slice", "Min", "Where", "Power",
]


@dataclass(frozen=True, eq=False)
class OpPartials:
    """Local partials of one op: ``inputs[i]`` for the edge from its i-th input."""

    inputs: list[InputPartials]
    params: dict[str, ParamPartials] = field(default_factory=dict)


def edge_partial(values: np.ndarray, in_width: int, terms: np.ndarray | None = None):
    """Elementwise ∂out_n/∂x_n of shape (B, N) as the right structured kind for an input of
    width ``in_width``: diagonal if it has the output's width, a dense (B, 1, N) row if it is
    a width-1 input broadcast to N."""
    if values.shape[1] == in_width:
        return Diagonal(values, terms)
    return Dense(values[:, None, :], None if terms is None else terms[:, None, :])


def _saved_input(saved) -> np.ndarray:
    """Any array a layer saved, to tell which arithmetic its forward ran in."""
    for value in vars(saved).values() if hasattr(saved, "__dict__") else ():
        if isinstance(value, np.ndarray) and value.size:
            return value
    return np.zeros(0)


def _constant_array(value) -> np.ndarray:
    """A float array, or an object array for an exact (Fraction) or mp constant."""
    a = np.asarray(value)
    return a if a.dtype == object else a.astype(float)


def _like(x: np.ndarray, constant: np.ndarray):
    """A constant in x's arithmetic: converted exactly for exact or mp x, a float for float x."""
    if x.dtype == object:
        return numbers.convert_like(x, constant, "constant")
    return constant.astype(float) if constant.dtype == object else constant


def unbroadcast(grad: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Classic backward of a broadcast: an input of width 1 collects the sum over the N
    outputs, an input of batch 1 the sum over the samples."""
    if grad.shape[1] != shape[1]:
        grad = grad.sum(axis=1, keepdims=True)
    if grad.shape[0] != shape[0]:
        grad = grad.sum(axis=0, keepdims=True)
    return grad


def _out_shape(op: Op, xs) -> tuple[int, int]:
    batches = {x.shape[0] for x in xs} - {1}
    widths = {x.shape[1] for x in xs} - {1}
    if len(batches) > 1:
        raise ShapeError(f"{op.label} needs inputs with one batch size (or batch 1, shared), "
                         f"got shapes {[x.shape for x in xs]}")
    if len(widths) > 1:
        raise ShapeError(f"{op.label} needs inputs of one width (or width 1, broadcast), got "
                         f"shapes {[x.shape for x in xs]}")
    return batches.pop() if batches else 1, widths.pop() if widths else 1


def _fitted(op: Op, constant: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The constant shaped to combine with x's flat (B, N) value: as it is when it broadcasts
    (a scalar, one entry per node), else one sample's entries in any shape ((C, H, W) or
    (1, C, H, W) for an image, C order) or a whole batch's."""
    try:
        if np.broadcast_shapes(constant.shape, x.shape) == x.shape:
            return constant
    except ValueError:
        pass
    if constant.size == x.shape[1] and (constant.ndim < 2 or constant.shape[0] == 1
                                        or constant.ndim > 2):
        return constant.reshape(1, -1)
    if constant.ndim > 2 and constant.shape[0] == x.shape[0] and constant.size == x.size:
        return constant.reshape(x.shape)
    raise ShapeError(f"its constant of shape {constant.shape} does not fit "
                     f"the input's {x.shape[1]} entries per sample (batch {x.shape[0]}); give a "
                     f"scalar, one entry per node (in the node's per-sample shape, or flat), "
                     f"or a whole batch of them")


class Op:
    """Base class. ``arity`` inputs; ``params`` like a layer's (empty for most ops)."""

    arity = 1
    label = "op"  # short name, used in automatic node names and reports
    couples_samples = False
    kink_convention = ""
    keeps_shape = True   # the output has its inputs' per-sample shape (an image stays one)

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}

    def forward(self, *xs: np.ndarray) -> tuple[np.ndarray, Any]:
        raise NotImplementedError

    def forward_shaped(self, xs: list[np.ndarray], shapes: list[tuple[int, ...]]
                       ) -> tuple[np.ndarray, Any]:
        """``forward`` on the inputs' flat (B, N) values, whose per-sample shapes are
        ``shapes``; returns the flat output. An op that needs its input's shape (an image
        layer) reshapes here."""
        return self.forward(*xs)

    def output_features(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...] | None:
        """The output's per-sample shape when the op decides it (an image layer's (C, H, W)),
        else None (the graph infers it from the inputs)."""
        return None

    def local_partials(self, saved: Any) -> OpPartials:
        raise NotImplementedError

    def backward(self, saved: Any, dout: np.ndarray):
        raise NotImplementedError

    def tangent_partials(self, saved: Any, tangents: list[np.ndarray]) -> list:
        """J̇: how each input edge's local partials move along the inputs' tangents
        ``tangents`` ((B_i, N_i) each), as InputPartials of the edge's own kind, None for an
        edge whose partials do not move (second-order messages, ``Graph.hvp``)."""
        raise MsgpassError(f"{self.describe()} has no second derivatives, so second-order "
                           f"messages (hvp) cannot pass through it")

    def constant_partials(self) -> list:
        return [None] * self.arity

    def nondifferentiable(self, saved: Any) -> np.ndarray | None:
        """Bool (B, N_out): outputs computed at a point without a derivative (ties in Max)."""
        return None

    def branch(self, saved: Any) -> np.ndarray | None:
        """Integer (B, N): which smooth piece each output is on (for the numeric witness)."""
        return None

    def user_jacobian_check(self, x: np.ndarray):
        """An op whose Jacobian comes from the user checks it at its input x (a custom
        Function as a node); None for every other op."""
        return None

    def check_shapes(self, name: str, shapes: list[tuple[int, ...]]) -> None:
        """Refuse, before computing, what the inputs' per-sample shapes make meaningless;
        ``name`` is the node. An op that keeps shapes refuses images that differ, in the
        user's shapes rather than the flat widths (one number per sample fits any)."""
        per_sample = {shape for shape in shapes if int(np.prod(shape)) > 1}
        if self.keeps_shape and len(per_sample) > 1 and any(len(s) > 1 for s in per_sample):
            raise ShapeError(f"node {name!r} ({self.describe()}) combines values of shapes "
                             f"{sorted(per_sample)} per sample: they must agree (or be one "
                             f"number)")

    def placed(self, position: int) -> Op:
        """The op as the ``position``-th node of its graph: itself, unless what it does
        depends on where it sits (a layer node: the layer runs at that position)."""
        return self

    def describe(self) -> str:
        return self.label

    def astype(self, dtype) -> Op:
        import copy
        clone = copy.copy(self)
        clone.params = {k: np.asarray(v, dtype=dtype).copy() for k, v in self.params.items()}
        return clone


@dataclass(frozen=True)
class PairSaved:
    a: np.ndarray
    b: np.ndarray
    batch: int  # output shape (batch, width)
    width: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.batch, self.width)

    def operands(self) -> tuple[np.ndarray, np.ndarray]:
        """a and b broadcast to the output's shape."""
        return np.broadcast_to(self.a, self.shape), np.broadcast_to(self.b, self.shape)


class Add(Op):
    """``a + b``: passes the gradient through unchanged to both inputs."""

    arity, label = 2, "add"

    def forward(self, a, b):
        shape = _out_shape(self, (a, b))  # before computing, so numpy never sees a mismatch
        return a + b, PairSaved(a, b, *shape)

    def local_partials(self, saved):
        ones = np.ones(saved.shape, dtype=np.result_type(saved.a, saved.b))
        return OpPartials([edge_partial(ones, saved.a.shape[1]),
                           edge_partial(ones, saved.b.shape[1])])

    def tangent_partials(self, saved, tangents):
        return self.constant_partials()       # J does not depend on the inputs

    def backward(self, saved, dout):
        da = dout * 1
        db = dout * 1
        return [unbroadcast(da, saved.a.shape), unbroadcast(db, saved.b.shape)], {}


class Sub(Op):
    """``a − b``."""

    arity, label = 2, "sub"

    def forward(self, a, b):
        shape = _out_shape(self, (a, b))  # before computing, so numpy never sees a mismatch
        return a - b, PairSaved(a, b, *shape)

    def local_partials(self, saved):
        ones = np.ones(saved.shape, dtype=np.result_type(saved.a, saved.b))
        return OpPartials([edge_partial(ones, saved.a.shape[1]),
                           edge_partial(-ones, saved.b.shape[1])])

    def tangent_partials(self, saved, tangents):
        return self.constant_partials()       # J does not depend on the inputs

    def backward(self, saved, dout):
        return [unbroadcast(dout, saved.a.shape), unbroadcast(-dout, saved.b.shape)], {}


class Mul(Op):
    """``a · b``: each input receives the gradient times the *other* input (the swap)."""

    arity, label = 2, "mul"

    def forward(self, a, b):
        shape = _out_shape(self, (a, b))  # before computing, so numpy never sees a mismatch
        return a * b, PairSaved(a, b, *shape)

    def local_partials(self, saved):
        a, b = saved.operands()
        # ∂(ab)/∂a = b and ∂(ab)/∂b = a
        return OpPartials([edge_partial(np.array(b), saved.a.shape[1]),
                           edge_partial(np.array(a), saved.b.shape[1])])

    def tangent_partials(self, saved, tangents):
        da, db = (np.array(np.broadcast_to(t, saved.shape)) for t in tangents)
        return [edge_partial(db, saved.a.shape[1]), edge_partial(da, saved.b.shape[1])]

    def backward(self, saved, dout):
        dx = dout * saved.b
        dy = dout * saved.a
        return [unbroadcast(dx, saved.a.shape), unbroadcast(dy, saved.b.shape)], {}


class Div(Op):
    """``a / b``; b must be non-zero."""

    arity, label = 2, "div"

    def forward(self, a, b):
        shape = _out_shape(self, (a, b))
        if np.any(b == 0):
            bad = np.argwhere(b == 0)[0]
            raise InputValueError(f"division by zero: the divisor is 0 at sample {bad[0]}, "
                                  f"entry {bad[1]}")
        return a / b, PairSaved(a, b, *shape)

    def local_partials(self, saved):
        a, b = saved.operands()
        return OpPartials([edge_partial(np.array(1 / b), saved.a.shape[1]),
                           edge_partial(np.array(-a / (b * b)), saved.b.shape[1])])

    def tangent_partials(self, saved, tangents):
        a, b = saved.operands()
        da, db = (np.broadcast_to(t, saved.shape) for t in tangents)
        return [edge_partial(np.array(-db / (b * b)), saved.a.shape[1]),
                edge_partial(np.array(-da / (b * b) + 2 * a * db / (b * b * b)),
                             saved.b.shape[1])]

    def backward(self, saved, dout):
        da = dout / saved.b
        db = -dout * saved.a / saved.b**2
        return [unbroadcast(da, saved.a.shape), unbroadcast(db, saved.b.shape)], {}

    def branch(self, saved):
        # The sign of the divisor: a stencil that crosses the pole b = 0 changes it.
        return np.sign(np.broadcast_to(saved.b, saved.shape)).astype(np.int8)


class Max(Op):
    """Elementwise ``max(a, b)``: the gradient is routed to the larger input.

    At a tie (a = b) there is no derivative; the convention is to split it, ½ to each input,
    in the local partials and the classic backward alike (torch.maximum's too), and verify
    lists the tie.
    """

    arity, label = 2, "max"
    kink_convention = "max at a tie sends half the gradient to each input"

    @staticmethod
    def wins(a, b):
        """Where a is the one picked (strictly)."""
        return a > b

    def forward(self, a, b):
        shape = _out_shape(self, (a, b))  # before computing, so numpy never sees a mismatch
        a_, b_ = np.broadcast_arrays(a, b)
        return np.where(self.wins(a_, b_) | (a_ == b_), a_, b_), PairSaved(a, b, *shape)

    def _routing(self, saved):
        a, b = saved.operands()
        to_a = np.where(self.wins(a, b), 1.0, np.where(a == b, 0.5, 0.0))
        to_a = numbers.convert_like(a, to_a, "routing")   # ½ stays exact on Fractions
        return to_a, 1 - to_a

    def local_partials(self, saved):
        to_a, to_b = self._routing(saved)
        return OpPartials([edge_partial(to_a, saved.a.shape[1]),
                           edge_partial(to_b, saved.b.shape[1])])

    def backward(self, saved, dout):
        shape = dout.shape
        a, b = np.broadcast_to(saved.a, shape), np.broadcast_to(saved.b, shape)
        da = dout * self.wins(a, b) + dout * (a == b) / 2  # / 2, not 0.5 *: Fractions stay exact
        db = dout * self.wins(b, a) + dout * (a == b) / 2
        return [unbroadcast(da, saved.a.shape), unbroadcast(db, saved.b.shape)], {}

    def tangent_partials(self, saved, tangents):
        return [None, None]       # the routing does not move away from a tie

    def nondifferentiable(self, saved):
        a, b = saved.operands()
        return a == b

    def branch(self, saved):
        a, b = saved.operands()
        return np.sign(a - b)


class Min(Max):
    """Elementwise ``min(a, b)``: the gradient is routed to the smaller input; a tie splits
    it, ½ to each (torch.minimum's convention), and verify lists it."""

    label = "min"
    kink_convention = "min at a tie sends half the gradient to each input"

    @staticmethod
    def wins(a, b):
        return a < b


class Where(Op):
    """``where(condition, a, b)``: a where the condition holds, b elsewhere. The gradient goes
    to the input that was picked; the other gets an exact 0.

    The condition is a constant boolean array, or a comparison of a node with a constant
    (``mp.where(x > 0, a, b)``): then that node is a third input, held at its value (its edge
    carries exact zeros: the condition is flat almost everywhere), verify lists the entries
    on the switch (x exactly at the threshold), and the numerical witness leaves out stencils
    that flip it.
    """

    arity, label = 2, "where"
    kink_convention = "where's switch: the entry exactly at the threshold picks by the " \
                      "comparison as written"

    def __init__(self, condition=None, compare=None, threshold=None) -> None:
        super().__init__()
        self.compare, self.threshold = compare, threshold
        if compare is not None:
            self.arity = 3
            self.condition = None
            return
        self.condition = np.asarray(condition)
        if self.condition.dtype != bool:
            raise DtypeError(f"where's condition must be booleans (or a node compared with a "
                             f"constant, x > 0), got dtype {self.condition.dtype}")

    def describe(self):
        return "where" if self.compare is None else f"where({self.compare.__name__} " \
            f"{float(np.max(self.threshold)):g})"

    def _mask(self, shape, c=None) -> np.ndarray:
        if self.compare is not None:
            threshold = _like(c, _fitted(self, self.threshold, c))
            return np.broadcast_to(self.compare(c, threshold), shape)
        try:
            return np.broadcast_to(_fitted(self, self.condition, np.empty(shape)), shape)
        except ShapeError as err:
            raise ShapeError(f"its condition: {str(err).replace('its constant', 'shape')}") \
                from None

    def forward(self, a, b, c=None):
        shape = _out_shape(self, (a, b) if c is None else (a, b, c))
        mask = self._mask(shape, c)
        a_, b_ = np.broadcast_to(a, shape), np.broadcast_to(b, shape)
        return np.where(mask, a_, b_), WhereSaved(a, b, *shape, c)

    def local_partials(self, saved):
        mask = self._mask(saved.shape, saved.c)
        one = _like(saved.a if saved.a.dtype == object else saved.b, np.ones(saved.shape))
        zero = one * 0
        edges = [edge_partial(np.where(mask, one, zero), saved.a.shape[1]),
                 edge_partial(np.where(mask, zero, one), saved.b.shape[1])]
        if saved.c is not None:
            edges.append(edge_partial(zero, saved.c.shape[1]))
        return OpPartials(edges)

    def backward(self, saved, dout):
        mask = self._mask(dout.shape, saved.c)
        grads = [unbroadcast(np.where(mask, dout, dout * 0), saved.a.shape),
                 unbroadcast(np.where(mask, dout * 0, dout), saved.b.shape)]
        if saved.c is not None:
            grads.append(unbroadcast(dout * 0, saved.c.shape))
        return grads, {}

    def tangent_partials(self, saved, tangents):
        return self.constant_partials()

    def nondifferentiable(self, saved):
        if saved.c is None:
            return None
        threshold = _like(saved.c, _fitted(self, self.threshold, saved.c))
        return np.broadcast_to(saved.c == threshold, saved.shape)

    def branch(self, saved):
        return None if saved.c is None else self._mask(saved.shape, saved.c).astype(np.int8)


@dataclass(frozen=True)
class WhereSaved(PairSaved):
    c: np.ndarray | None = None      # the node the condition was read from


class Power(Op):
    """``a ** b`` with both nodes, for a > 0: a^b = e^(b·log a). Local partials
    ∂/∂a = b·a^(b−1) and ∂/∂b = a^b·log a."""

    arity, label = 2, "pow"

    def forward(self, a, b):
        shape = _out_shape(self, (a, b))
        if np.any(a <= 0):
            bad = np.argwhere(a <= 0)[0]
            raise InputValueError(f"a ** b with a node exponent needs a > 0, got "
                                  f"{a[bad[0], bad[1]]} at sample {bad[0]}, entry {bad[1]}")
        mode = numbers.mode_of(a)
        if mode is not None and mode.exact:
            raise DtypeError("a ** b with a node exponent leaves the rational numbers, so it "
                             "cannot run in exact mode; use 'mp:50'")
        a_, b_ = np.broadcast_to(a, shape), np.broadcast_to(b, shape)
        return numbers.exp(b_ * numbers.log(a_)), PairSaved(a, b, *shape)

    def local_partials(self, saved):
        a, b = saved.operands()
        out = numbers.exp(b * numbers.log(a))
        return OpPartials([edge_partial(b * out / a, saved.a.shape[1]),
                           edge_partial(out * numbers.log(a), saved.b.shape[1])])

    def backward(self, saved, dout):
        a, b = saved.operands()
        out = numbers.exp(b * numbers.log(a))
        return [unbroadcast(dout * b * out / a, saved.a.shape),
                unbroadcast(dout * out * numbers.log(a), saved.b.shape)], {}

    def tangent_partials(self, saved, tangents):
        a, b = saved.operands()
        da, db = (np.broadcast_to(t, saved.shape) for t in tangents)
        out, log_a = numbers.exp(b * numbers.log(a)), numbers.log(a)
        dout = out * (b * da / a + db * log_a)           # the tangent of a^b
        return [edge_partial(db * out / a + b * dout / a - b * out * da / (a * a),
                             saved.a.shape[1]),
                edge_partial(dout * log_a + out * da / a, saved.b.shape[1])]


@dataclass(frozen=True)
class OneSaved:
    x: np.ndarray
    out: np.ndarray


class Pow(Op):
    """``x ** p`` for a constant exponent p; local partial ``p · x^(p−1)``."""

    label = "pow"

    def __init__(self, exponent: float) -> None:
        super().__init__()
        self.exponent = float(exponent)

    def describe(self):
        return f"pow({self.exponent:g})"

    def forward(self, x):
        if not float(self.exponent).is_integer() and np.any(x < 0):
            bad = np.argwhere(x < 0)[0]
            raise InputValueError(f"x ** {self.exponent:g} needs x ≥ 0 for a non-integer "
                                  f"exponent, got {x[bad[0], bad[1]]:g} at sample {bad[0]}, "
                                  f"entry {bad[1]}")
        if self.exponent < 0 and np.any(x == 0):
            raise InputValueError(f"x ** {self.exponent:g} is infinite at x = 0")
        p = self._power(x)
        return x**p, OneSaved(x, None)

    def _power(self, x):
        """The exponent in x's arithmetic: an int where it is one (exact Fractions stay
        exact), refused in exact mode otherwise."""
        if x.dtype != object:
            return self.exponent
        if float(self.exponent).is_integer():
            return int(self.exponent)
        mode = numbers.mode_of(x)
        if mode.exact:
            raise DtypeError(f"x ** {self.exponent:g} leaves the rational numbers, so it cannot "
                             f"run in exact mode; use 'mp:50'")
        return mode.scalar(self.exponent)

    def local_partials(self, saved):
        p = self._power(saved.x)
        return OpPartials([Diagonal(p * saved.x ** (p - 1))])

    def tangent_partials(self, saved, tangents):
        p = self._power(saved.x)
        if p in (0, 1):
            return [None]           # a constant slope: nothing moves (and no 0^(−1) at x = 0)
        return [Diagonal(p * (p - 1) * saved.x ** (p - 2) * tangents[0])]

    def backward(self, saved, dout):
        p = self._power(saved.x)
        return [dout * p * saved.x ** (p - 1)], {}

    def branch(self, saved):
        # x^p with p < 1 has a pole or an edge of its domain at 0.
        return np.sign(saved.x).astype(np.int8) if self.exponent < 1 else None


class Exp(Op):
    """``e^x``; its own derivative."""

    label = "exp"

    def forward(self, x):
        out = numbers.exp(x)
        return out, OneSaved(x, out)

    def local_partials(self, saved):
        return OpPartials([Diagonal(saved.out.copy())])

    def tangent_partials(self, saved, tangents):
        return [Diagonal(saved.out * tangents[0])]

    def backward(self, saved, dout):
        return [dout * saved.out], {}


class Log(Op):
    """``log x`` for x > 0; local partial ``1/x``."""

    label = "log"

    def forward(self, x):
        if np.any(x <= 0):
            bad = np.argwhere(x <= 0)[0]
            raise InputValueError(f"log needs positive input, got {x[bad[0], bad[1]]:g} at "
                                  f"sample {bad[0]}, entry {bad[1]}")
        return numbers.log(x), OneSaved(x, None)

    def local_partials(self, saved):
        return OpPartials([Diagonal(1 / saved.x)])

    def tangent_partials(self, saved, tangents):
        return [Diagonal(-tangents[0] / (saved.x * saved.x))]

    def backward(self, saved, dout):
        return [dout / saved.x], {}


class Identity(Op):
    """``y = x``: a pass-through (the layered view's filler, and each branch of a Copy)."""

    label = "id"

    def forward(self, x):
        return x.copy(), OneSaved(x, None)

    def local_partials(self, saved):
        return OpPartials([Diagonal(np.ones_like(saved.x))])

    def tangent_partials(self, saved, tangents):
        return self.constant_partials()       # J does not depend on the inputs

    def backward(self, saved, dout):
        return [dout * 1], {}


class Scale(Op):
    """``a · x / d + c`` with constants a, d and c: how ``2 * x``, ``x / 3``, ``x + 1``,
    ``1 - x`` and ``-x`` enter the graph (the constant is part of the op, not a node; x / 3
    is computed as a division, exactly as written)."""

    label = "scale"

    def __init__(self, factor=1.0, shift=0.0, divisor=1.0) -> None:
        super().__init__()
        self.factor, self.shift, self.divisor = map(_constant_array, (factor, shift, divisor))
        if np.any(self.divisor == 0):
            raise InputValueError("division by the constant 0")

    def describe(self):
        parts = []
        for sign, value in (("×", self.factor), ("/", self.divisor)):
            if value.ndim or value != 1:
                parts.append(sign + (f"{float(value):g}" if not value.ndim else "array"))
        if self.shift.ndim or self.shift != 0:
            parts.append("+" + (f"{float(self.shift):g}" if not self.shift.ndim else "array"))
        return "scale(" + " ".join(parts) + ")" if parts else "scale"

    def _constants(self, x):
        """factor, shift, divisor in x's arithmetic (exact Fractions and mp stay so), shaped
        to combine with x."""
        return tuple(_like(x, _fitted(self, c, x)) for c in (self.factor, self.shift,
                                                               self.divisor))

    def forward(self, x):
        factor, shift, divisor = self._constants(x)
        return factor * x / divisor + shift, OneSaved(x, None)

    def local_partials(self, saved):
        factor, _, divisor = self._constants(saved.x)
        slope = np.broadcast_to(factor / divisor, saved.x.shape)
        return OpPartials([Diagonal(slope.astype(saved.x.dtype))])

    def tangent_partials(self, saved, tangents):
        return self.constant_partials()       # J does not depend on the inputs

    def backward(self, saved, dout):
        factor, _, divisor = self._constants(dout)
        return [dout * factor / divisor], {}


class Reciprocal(Op):
    """``c / x`` for a constant c; local partial ``−c / x²``."""

    label = "rdiv"

    def __init__(self, numerator=1.0) -> None:
        super().__init__()
        self.numerator = _constant_array(numerator)

    def forward(self, x):
        numerator = _like(x, _fitted(self, self.numerator, x))
        if np.any(x == 0):
            bad = np.argwhere(x == 0)[0]
            raise InputValueError(f"division by zero: the divisor is 0 at sample {bad[0]}, "
                                  f"entry {bad[1]}")
        return numerator / x, OneSaved(x, None)

    def local_partials(self, saved):
        numerator = _like(saved.x, _fitted(self, self.numerator, saved.x))
        return OpPartials([Diagonal(-numerator / saved.x**2)])

    def tangent_partials(self, saved, tangents):
        numerator = _like(saved.x, _fitted(self, self.numerator, saved.x))
        return [Diagonal(2 * numerator * tangents[0] / (saved.x * saved.x * saved.x))]

    def backward(self, saved, dout):
        return [-dout * _like(dout, _fitted(self, self.numerator, dout)) / (saved.x * saved.x)],\
            {}

    def branch(self, saved):
        return np.sign(saved.x).astype(np.int8)  # crossing the pole at 0 changes it


class LayerOp(Op):
    """A core layer as a one-input node (with its target, for a loss layer)."""

    def __init__(self, layer: Layer, target=None, position: int | None = None) -> None:
        super().__init__()
        self.layer = layer
        self.target = target
        self.position = position   # the node's place in its graph (an unseeded Dropout's)
        self.params = layer.params  # the layer's own arrays
        self.couples_samples = layer.couples_samples
        self.kink_convention = layer.kink_convention
        self.keeps_shape = layer.keeps_shape

    @property
    def label(self) -> str:  # type: ignore[override]
        return self.layer.name.lower()

    def describe(self):
        return self.layer.describe()

    def _layer_for(self, x: np.ndarray) -> Layer:
        """The layer itself, or for exact / mp input a twin whose float parameters were
        converted exactly into that arithmetic (the user's layer is not changed)."""
        if x.dtype != object or not self.layer.params or all(
                v.dtype == object for v in self.layer.params.values()):
            return self.layer
        # converted on every call, never cached: the layer's parameters may have changed since
        # (conversion is exact and deterministic, so forward and backward see the same values)
        return self.layer.astype(numbers.mode_of(x))

    def check_shapes(self, name, shapes):
        super().check_shapes(name, shapes)
        target = None if self.target is None else np.asarray(self.target)
        if target is not None and target.ndim > 2 and \
                tuple(target.shape[1:]) != tuple(shapes[0]):
            raise ShapeError(f"node {name!r} ({self.describe()}): its target has "
                             f"{target.shape[1:]} per sample, its input {tuple(shapes[0])}: they "
                             f"must agree")

    def forward(self, x):
        target = self.target
        if isinstance(target, (list, tuple)):
            target = np.asarray(target)
        if self.layer.is_loss and target is None:
            raise StateError(f"no target: give it with g.forward(inputs, target=y), or when "
                             f"you build the node: {self.layer.name}()(node, target=y)")
        if isinstance(target, np.ndarray) and target.ndim > 2:   # an image target: flat, as x
            target = target.reshape(len(target), -1)
        return self._layer_for(x).forward_at(x, self.position, target)

    def forward_shaped(self, xs, shapes):
        # an image layer computes on (B, C, H, W); the graph keeps every value flat
        x = xs[0].reshape((len(xs[0]), *shapes[0])) if self.layer.takes_images else xs[0]
        out, saved = self.forward(x)
        return out.reshape(len(out), -1), saved

    def output_features(self, shapes):
        if self.layer.takes_images or not self.layer.keeps_shape and not self.layer.is_loss:
            return tuple(self.layer.output_shape(tuple(shapes[0])))
        return None

    def local_partials(self, saved):
        layer = self._layer_for(_saved_input(saved))
        local = layer.local_partials(saved)
        return OpPartials([local.inputs], local.params)

    def tangent_partials(self, saved, tangents):
        move = getattr(self.layer, "tangent_partials", None)
        if move is None:
            return super().tangent_partials(saved, tangents)
        return [move(saved, tangents[0])]

    def backward(self, saved, dout):
        layer = self._layer_for(dout)
        if layer.is_loss:
            # In a graph the node is the per-sample loss ℓ_b with its own upstream dout_b;
            # the layer's backward differentiates the batch mean (its 1/B), so scale by B.
            dx, dparams = layer.backward(saved, dout * dout.shape[0])
        else:
            dx, dparams = layer.backward(saved, dout)
        return [dx.reshape(len(dx), -1)], dparams     # an image layer's dx, flat

    def nondifferentiable(self, saved):
        mask = self.layer.nondifferentiable(saved)
        return None if mask is None else mask.reshape(len(mask), -1)

    def branch(self, saved):
        return self.layer.branch(saved)

    def user_jacobian_check(self, x):
        return self.layer.user_jacobian_check(x)

    def placed(self, position):
        return LayerOp(self.layer, self.target, position)

    def astype(self, dtype):
        return LayerOp(self.layer.astype(dtype), self.target, self.position)


@dataclass(frozen=True)
class ShapedSaved:
    shapes: tuple          # the inputs' per-sample shapes
    output: tuple          # the output's per-sample shape
    batch: int
    dtype: np.dtype


def _index_grid(shape: tuple[int, ...]) -> np.ndarray:
    """Each entry's flat C-order number, in the per-sample shape ``shape``."""
    return np.arange(int(np.prod(shape, dtype=np.int64))).reshape(shape)


class Concat(Op):
    """``concat([a, b, ...], axis)``: the inputs side by side along a per-sample axis (axis 0
    is torch's dim 1, the channels of an image). Each input's edges copy it into its own
    segment of the output (selection partials)."""

    label = "cat"
    keeps_shape = False

    def __init__(self, count: int, axis: int = 0) -> None:
        super().__init__()
        self.arity = positive_int(count, "concat: the number of inputs", ShapeError)
        self.axis = int(axis)

    def describe(self):
        return f"cat(axis {self.axis})"

    def check_shapes(self, name, shapes):
        rest = {tuple(s[:self.axis]) + tuple(s[self.axis + 1:]) for s in shapes}
        if any(len(s) <= self.axis for s in shapes) or len(rest) > 1:
            raise ShapeError(f"node {name!r} ({self.describe()}) joins values of per-sample "
                             f"shapes {[tuple(s) for s in shapes]}: they must agree except "
                             f"along axis {self.axis}")

    def output_features(self, shapes):
        first = list(shapes[0])
        first[self.axis] = sum(s[self.axis] for s in shapes)
        return tuple(first)

    def forward(self, *xs):
        raise ShapeError("concat needs its inputs' per-sample shapes (forward_shaped)")

    def forward_shaped(self, xs, shapes):
        batch = max(len(x) for x in xs)
        natural = [np.broadcast_to(x.reshape((len(x), *s)), (batch, *s))
                   for x, s in zip(xs, shapes, strict=True)]
        out = np.concatenate(natural, axis=self.axis + 1)
        saved = ShapedSaved(tuple(tuple(s) for s in shapes), out.shape[1:], batch, out.dtype)
        return out.reshape(batch, -1), saved

    def local_partials(self, saved):
        grid = _index_grid(saved.output)
        edges, start = [], 0
        for shape in saved.shapes:
            size = shape[self.axis]
            part = np.take(grid, np.arange(start, start + size), axis=self.axis).ravel()
            edges.append(Selection(np.arange(part.size), part, part.size, grid.size,
                                   saved.dtype))
            start += size
        return OpPartials(edges)

    def tangent_partials(self, saved, tangents):
        return self.constant_partials()       # J does not depend on the inputs

    def backward(self, saved, dout):
        natural = dout.reshape((len(dout), *saved.output))
        bounds = np.cumsum([s[self.axis] for s in saved.shapes])[:-1]
        return [part.reshape(len(dout), -1).copy()
                for part in np.split(natural, bounds, axis=self.axis + 1)], {}


class Slice(Op):
    """``x[:, index]``: a constant slice of each sample (basic indexing: slices and integers
    over the per-sample axes). Each output entry's one edge copies its source entry."""

    label = "slice"
    keeps_shape = False

    def __init__(self, index) -> None:
        super().__init__()
        self.index = index if isinstance(index, tuple) else (index,)
        for part in self.index:
            if not isinstance(part, (slice, int, np.integer)) or isinstance(part, bool):
                raise ShapeError(f"a slice takes slices and integers, got {part!r}")

    def describe(self):
        return f"slice{self.index}"

    def output_features(self, shapes):
        return np.empty(shapes[0], dtype=np.int8)[self.index].shape

    def forward(self, x):
        raise ShapeError("a slice needs its input's per-sample shape (forward_shaped)")

    def forward_shaped(self, xs, shapes):
        x = xs[0]
        out = x.reshape((len(x), *shapes[0]))[(slice(None),) + self.index]
        saved = ShapedSaved((tuple(shapes[0]),), out.shape[1:], len(x), x.dtype)
        return np.ascontiguousarray(out).reshape(len(x), -1), saved

    def _sources(self, saved) -> np.ndarray:
        return _index_grid(saved.shapes[0])[self.index].ravel()

    def local_partials(self, saved):
        sources = self._sources(saved)
        return OpPartials([Selection(sources, np.arange(sources.size),
                                     int(np.prod(saved.shapes[0])), sources.size,
                                     saved.dtype)])

    def tangent_partials(self, saved, tangents):
        return self.constant_partials()       # J does not depend on the inputs

    def backward(self, saved, dout):
        dx = np.zeros((len(dout), int(np.prod(saved.shapes[0]))), dtype=dout.dtype)
        dx[:, self._sources(saved)] = dout        # basic indexing: every source once
        return [dx], {}
