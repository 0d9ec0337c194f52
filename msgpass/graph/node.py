"""Node: a node of a Graph, and a handle for writing expressions with Python operators
(``x + y``, ``2 * x``, ``x ** 2``) and the functions on nodes (``mp.sigmoid(x)``, ...)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .. import numbers
from ..errors import DtypeError, ShapeError
from ..layers import ReLU, Sigmoid, Tanh
from ..validate import as_array, positive_int
from .ops import (
    Add,
    Concat,
    Div,
    Exp,
    Identity,
    LayerOp,
    Log,
    Max,
    Min,
    Mul,
    Op,
    Pow,
    Power,
    Reciprocal,
    Scale,
    Slice,
    Sub,
    Where,
)
from .reductions import MatMul, Mean, Sum
from .unary import Abs, Cos, CustomElementwise, Expm1, Log1p, Sin, Softplus, Sqrt, Square

if TYPE_CHECKING:   # for annotations only: the graph module builds on this one
    from .graph import Graph

__all__ = ["Node", "sigmoid", "tanh", "relu", "exp", "log", "maximum", "copy", "concat", "take",
           "sin", "cos", "sqrt", "abs", "softplus", "log1p", "expm1", "square", "minimum",
           "where", "sum", "mean", "matmul", "elementwise", "Condition", "UFUNCS"]


class Node:
    """A node of a Graph, and a handle for writing expressions with Python operators.

    Attributes
    ----------
    name : str
    op : Op or None
        None for an input (or a constant).
    inputs : list of str
        The names of the nodes it reads, in order.
    """

    def __array_ufunc__(self, ufunc, method, *operands, **kwargs):
        """numpy's ufuncs on nodes (``np.exp(node)``, ``np.maximum(a, b)``, ``array + node``)
        become the graph ops of the same name (``UFUNCS`` lists them)."""
        if method != "__call__" or kwargs:
            raise TypeError(f"np.{ufunc.__name__}.{method} with {sorted(kwargs) or 'no'} "
                            f"keyword arguments cannot take graph nodes: only plain calls "
                            f"np.f(node, ...) become graph ops")
        if ufunc.__name__ not in UFUNCS:
            raise TypeError(f"np.{ufunc.__name__} has no graph op; the ufuncs that take "
                            f"graph nodes are {', '.join('np.' + n for n in sorted(UFUNCS))} "
                            f"(or make one: mp.elementwise(f))")
        return UFUNCS[ufunc.__name__](*operands)

    def __init__(self, graph: Graph, name: str, op: Op | None, inputs: Sequence[str],
                 kind: str) -> None:
        self.graph = graph
        self.name = name
        self.op = op
        self.inputs = list(inputs)
        self.kind = kind  # "input", "constant" or "op"

    def __repr__(self) -> str:
        what = self.op.describe() if self.op is not None else self.kind
        return f"<node {self.name}: {what}({', '.join(self.inputs)})>"

    def named(self, name: str) -> Node:
        """Give the node a name of your choosing (before anything refers to it by name)."""
        self.graph.rename(self, name)
        return self

    # -- expressions ---------------------------------------------------------------------
    def _binary(self, other, op_cls, reverse=False) -> Node:
        if isinstance(other, Node):
            a, b = (other, self) if reverse else (self, other)
            return self.graph.node(op_cls(), a, b)
        constant = _constant(other)
        if op_cls is Add:
            return self.graph.node(Scale(1.0, constant), self)
        if op_cls is Mul:
            return self.graph.node(Scale(constant, 0.0), self)
        if op_cls is Sub:
            op = Scale(-1.0, constant) if reverse else Scale(1.0, -constant)
            return self.graph.node(op, self)
        if op_cls is Div:
            if reverse:
                return self.graph.node(Reciprocal(constant), self)
            return self.graph.node(Scale(1.0, 0.0, divisor=constant), self)
        if op_cls is Max:
            return self.graph.node(Max(), self, self.graph.constant(constant))
        raise TypeError(f"unsupported constant operand {other!r}")

    def __add__(self, other):
        return self._binary(other, Add)

    def __radd__(self, other):
        return self._binary(other, Add, reverse=True)

    def __sub__(self, other):
        return self._binary(other, Sub)

    def __rsub__(self, other):
        return self._binary(other, Sub, reverse=True)

    def __mul__(self, other):
        return self._binary(other, Mul)

    def __rmul__(self, other):
        return self._binary(other, Mul, reverse=True)

    def __truediv__(self, other):
        return self._binary(other, Div)

    def __rtruediv__(self, other):
        return self._binary(other, Div, reverse=True)

    def __neg__(self):
        return self.graph.node(Scale(-1.0, 0.0), self)

    def __pos__(self):
        return self

    def __pow__(self, exponent):
        if isinstance(exponent, Node):       # a node exponent: a^b for a > 0
            return self.graph.node(Power(), self, exponent)
        return self.graph.node(Pow(float(exponent)), self)

    def __rpow__(self, base):
        return self.graph.node(Power(), self.graph.constant(_constant(base)), self)

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(other, self)

    def __abs__(self):
        return abs(self)

    # comparisons with a constant make a condition for mp.where (== and != stay identity:
    # nodes are dict keys)
    def __gt__(self, threshold):
        return Condition(self, np.greater, threshold)

    def __ge__(self, threshold):
        return Condition(self, np.greater_equal, threshold)

    def __lt__(self, threshold):
        return Condition(self, np.less, threshold)

    def __le__(self, threshold):
        return Condition(self, np.less_equal, threshold)

    __hash__ = object.__hash__

    def _apply_layer(self, layer, target=None) -> Node:
        """``layer(node)``: a core layer as a node of this graph."""
        return self.graph.node(LayerOp(layer, target), self)


def _constant(value) -> np.ndarray:
    a = as_array(value, "constant")
    if a.dtype == object:   # a Fraction (or mpf) constant stays exact
        return numbers.mode_of(a).array(a, "constant")
    if a.dtype.kind not in "iuf":
        raise DtypeError(f"a constant must be a real number or array, got {value!r}")
    return a.astype(float)


# -- functions on nodes -----------------------------------------------------------------
def _node(x) -> Node:
    if not isinstance(x, Node):
        raise TypeError(f"expected a graph node, got {x!r}")
    return x


def sigmoid(x: Node) -> Node:
    """σ(x) = 1 / (1 + e^{−x}) as a node (the core Sigmoid layer)."""
    return _node(x)._apply_layer(Sigmoid())


def tanh(x: Node) -> Node:
    return _node(x)._apply_layer(Tanh())


def relu(x: Node) -> Node:
    return _node(x)._apply_layer(ReLU())


def exp(x: Node) -> Node:
    return _node(x).graph.node(Exp(), x)


def log(x: Node) -> Node:
    return _node(x).graph.node(Log(), x)


def maximum(a, b) -> Node:
    """Elementwise max of two nodes (or a node and a constant)."""
    if isinstance(a, Node):
        return a._binary(b, Max)
    return _node(b)._binary(a, Max, reverse=True)


def concat(nodes, axis: int = 0) -> Node:
    """The nodes side by side along per-sample axis ``axis`` (0: an image's channels, torch's
    ``torch.cat(..., dim=1)``)."""
    nodes = [_node(n) for n in nodes]
    return nodes[0].graph.node(Concat(len(nodes), axis), *nodes)


def take(x: Node, index) -> Node:
    """``x[:, index]``: a constant slice of each sample (slices and integers over the
    per-sample axes), as torch's ``x[:, :3]``."""
    return _node(x).graph.node(Slice(index), x)


def copy(x: Node, n: int = 2) -> tuple[Node, ...]:
    """An explicit n-way split (the Y-splitter): n identity nodes reading x. The messages
    that come back along the n branches are summed at x."""
    node = _node(x)
    n = positive_int(n, "copy's number of branches n", ShapeError)
    return tuple(node.graph.node(Identity(), node, name=node.graph.fresh_name(f"{node.name}.copy"))
                 for _ in range(n))


class Condition:
    """``node > c`` (or >=, <, <=) for a constant c: the condition of ``mp.where``, read from
    the node's value when the graph runs."""

    def __init__(self, node: Node, compare, threshold) -> None:
        if isinstance(threshold, Node):
            raise TypeError(f"{node.name} compared with a node: a condition compares a node "
                            f"with a constant (x > 0)")
        self.node, self.compare, self.threshold = node, compare, _constant(threshold)

    def __bool__(self):
        raise TypeError(f"a comparison of graph node {self.node.name!r} has no truth value "
                        f"until the graph runs; use it as mp.where(condition, a, b)")


def _operand(x, graph) -> Node:
    """A node, or a constant made a node of ``graph``."""
    return x if isinstance(x, Node) else graph.constant(_constant(x))


def _unary(op_cls):
    def apply(x):
        node = _node(x)
        return node.graph.node(op_cls(), node)
    apply.__name__ = op_cls.label
    apply.__doc__ = f"{op_cls.__doc__.splitlines()[0]} (elementwise, a graph node)"
    return apply


sin = _unary(Sin)
cos = _unary(Cos)
sqrt = _unary(Sqrt)
softplus = _unary(Softplus)
log1p = _unary(Log1p)
expm1 = _unary(Expm1)
square = _unary(Square)


def abs(x) -> Node:   # noqa: A001 - mp.abs, as numpy's
    """|x| elementwise; the derivative at 0 is taken as 0 (verify lists such entries)."""
    node = _node(x)
    return node.graph.node(Abs(), node)


def minimum(a, b) -> Node:
    """Elementwise min of two nodes (or a node and a constant); a tie splits the gradient."""
    if isinstance(a, Node):
        return a.graph.node(Min(), a, _operand(b, a.graph))
    node = _node(b)
    return node.graph.node(Min(), _operand(a, node.graph), node)


def where(condition, a, b) -> Node:
    """a where ``condition`` holds, else b: a constant boolean array, or a node compared with
    a constant (``x > 0``). Either of a and b may be a constant."""
    graph = next((n.graph for n in (a, b) if isinstance(n, Node)), None)
    if isinstance(condition, Condition):
        graph = graph or condition.node.graph
    if graph is None:
        raise TypeError("mp.where needs a graph node among a and b (or the condition)")
    a, b = _operand(a, graph), _operand(b, graph)
    if isinstance(condition, Condition):
        op = Where(compare=condition.compare, threshold=condition.threshold)
        return graph.node(op, a, b, condition.node)
    if isinstance(condition, Node):
        raise TypeError("mp.where's condition is a constant boolean array or a comparison of "
                        "a node with a constant (x > 0), not a node")
    return graph.node(Where(condition), a, b)


def sum(x) -> Node:   # noqa: A001 - mp.sum, as numpy's
    """Σ of each sample's entries: one number per sample."""
    node = _node(x)
    return node.graph.node(Sum(), node)


def mean(x) -> Node:
    """The mean of each sample's entries: one number per sample."""
    node = _node(x)
    return node.graph.node(Mean(), node)


def matmul(a, b) -> Node:
    """``a @ b`` of two nodes (msgpass.graph.reductions.MatMul says how shapes are read)."""
    graph = next((n.graph for n in (a, b) if isinstance(n, Node)), None)
    if graph is None:
        raise TypeError("mp.matmul needs a graph node")
    return graph.node(MatMul(), _operand(a, graph), _operand(b, graph))


def elementwise(f, derivative=None, name: str | None = None) -> CustomElementwise:
    """A custom elementwise op from a scalar numpy function: ``mp.elementwise(np.arcsinh)(x)``.
    Its derivative comes from the complex step, or is ``derivative`` (checked by verify
    against the complex step)."""
    return CustomElementwise(f, derivative, name)


def _binary_method(method: str, reverse: str):
    def apply(a, b):
        if isinstance(a, Node):
            return getattr(a, method)(b)
        return getattr(b, reverse)(a)
    return apply


# numpy ufunc name → the graph op it becomes on nodes
UFUNCS = {
    "add": _binary_method("__add__", "__radd__"),
    "subtract": _binary_method("__sub__", "__rsub__"),
    "multiply": _binary_method("__mul__", "__rmul__"),
    "divide": _binary_method("__truediv__", "__rtruediv__"),
    "true_divide": _binary_method("__truediv__", "__rtruediv__"),
    "power": _binary_method("__pow__", "__rpow__"),
    "matmul": matmul,
    "negative": lambda x: -x,
    "positive": lambda x: x,
    "exp": exp, "log": log, "sin": sin, "cos": cos, "sqrt": sqrt, "absolute": abs,
    "log1p": log1p, "expm1": expm1, "square": square, "tanh": tanh,
    "maximum": maximum, "minimum": minimum,
}
