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
    Mul,
    Op,
    Pow,
    Reciprocal,
    Scale,
    Slice,
    Sub,
)

if TYPE_CHECKING:   # for annotations only: the graph module builds on this one
    from .graph import Graph

__all__ = ["Node", "sigmoid", "tanh", "relu", "exp", "log", "maximum", "copy", "concat", "take"]


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

    __array_ufunc__ = None  # so that numpy_array + node asks the node, not numpy

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
        if isinstance(exponent, Node):
            raise TypeError(f"{self.name} ** node: only constant exponents are supported "
                            f"(write exp(b * log(a)) for a variable one)")
        return self.graph.node(Pow(float(exponent)), self)

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
