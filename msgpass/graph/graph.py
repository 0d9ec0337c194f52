"""Graph: a directed acyclic graph of nodes, built by name or from Python expressions.

>>> import msgpass as mp
>>> g = mp.Graph()
>>> x, y = g.input("x", 3.0), g.input("y", -4.0)
>>> f = (x + mp.sigmoid(y)) / (mp.sigmoid(x) + (x + y) ** 2)
>>> trace = g.backward(f)
>>> round(float(trace.value(f)), 5)
1.54564

Every node holds a (B, N) array: an input given as a scalar is (1, 1), a vector of length N is
(1, N), a 2-D array (B, N) is a batch. ``trace.value`` and ``trace.grad`` give arrays back in the
shape the inputs were given in.

This module builds graphs and evaluates them forward (the witnesses use that too); nodes and
expressions are msgpass.graph.node, the message pass msgpass.graph.backward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import numbers
from ..errors import (
    DtypeError,
    GraphError,
    InputValueError,
    MsgpassError,
    NonFiniteError,
    ShapeError,
    StateError,
)
from ..validate import as_array, first_nonfinite
from .backward import graph_backward
from .node import Node
from .ops import Op

__all__ = ["Graph", "Evaluation"]


def _one_arithmetic(xs: list[np.ndarray], names: list[str]) -> list[np.ndarray]:
    """An op whose inputs mix exact (or mp) values with floats (a constant node, a float
    input) computes in the exact one: the floats convert exactly."""
    exact = next((x for x in xs if x.dtype == object), None)
    if exact is None or all(x.dtype == object for x in xs):
        return xs
    return [x if x.dtype == object else numbers.convert_like(exact, x, f"the value of {n!r}")
            for x, n in zip(xs, names, strict=True)]


def _as_node_value(name: str, value) -> tuple[np.ndarray, tuple[int, ...]]:
    a = as_array(value, f"value of {name!r}")
    if a.dtype == object:   # Fractions (exact) or mpmath numbers: kept as they are
        if a.ndim > 2 or a.size == 0:
            raise ShapeError(f"value of {name!r} must be a scalar, a vector (N,) or a batch "
                             f"(B, N), got shape {a.shape}")
        shape = a.shape
        mode = numbers.mode_of(a)
        a = mode.array(a.reshape((1, -1) if a.ndim < 2 else a.shape), f"value of {name!r}")
        a.flags.writeable = False
        return a, shape
    if a.dtype.kind not in "iuf":
        raise DtypeError(f"value of {name!r} must be real numbers, got dtype {a.dtype}")
    if a.ndim > 2:
        raise ShapeError(f"value of {name!r} must be a scalar, a vector (N,) or a batch (B, N), "
                         f"got shape {a.shape}")
    if a.size == 0:
        raise ShapeError(f"value of {name!r} is empty: shape {a.shape}")
    shape = a.shape
    a = a.astype(np.float64).reshape((1, -1) if a.ndim < 2 else a.shape)  # a copy
    where = first_nonfinite(a)
    if where is not None:
        raise InputValueError(f"value of {name!r} contains {a[where]} at sample {where[0]}, "
                              f"entry {where[1]}; values must be finite")
    a.flags.writeable = False  # set() replaces a value; nothing may change it in place
    return a, shape


@dataclass(frozen=True)
class Evaluation:
    """A forward pass: the nodes in topological order with their values and saved records."""

    order: list[str]
    values: dict[str, np.ndarray]
    saved: dict[str, Any]


class Graph:
    """A directed acyclic graph of nodes (see the module docstring)."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self._values: dict[str, np.ndarray] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._counts: dict[str, int] = {}

    # -- building -----------------------------------------------------------------------
    def fresh_name(self, stem: str) -> str:
        """A node name not yet used: stem1, stem2, ... (node.py names its nodes with it)."""
        while True:
            self._counts[stem] = self._counts.get(stem, 0) + 1
            name = f"{stem}{self._counts[stem]}"
            if name not in self.nodes:
                return name

    def _add(self, node: Node) -> Node:
        if node.name in self.nodes:
            raise GraphError(f"a node named {node.name!r} already exists in this graph")
        self.nodes[node.name] = node
        return node

    def rename(self, node: Node, name: str) -> None:
        """Give ``node`` another name, before anything refers to it by name (Node.named)."""
        if name == node.name:
            return
        if name in self.nodes:
            raise GraphError(f"a node named {name!r} already exists in this graph")
        if any(node.name in other.inputs for other in self.nodes.values()):
            raise StateError(f"node {node.name!r} is already used by name; name it when you "
                             f"create it")
        del self.nodes[node.name]
        for table in (self._values, self._shapes):
            if node.name in table:
                table[name] = table.pop(node.name)
        node.name = name
        self.nodes[name] = node

    def input(self, name: str, value=None) -> Node:
        """A named input, with its value now or later (``set``)."""
        node = self._add(Node(self, name, None, [], "input"))
        if value is not None:
            self.set(name, value)
        return node

    def constant(self, value, name: str | None = None) -> Node:
        """A node with a fixed value: it receives messages but is not an input of ``grad``."""
        node = self._add(Node(self, name or self.fresh_name("const"), None, [], "constant"))
        self._values[node.name], self._shapes[node.name] = _as_node_value(node.name, value)
        return node

    def set(self, name: str, value) -> None:
        """Give (or change) the value of an input."""
        node = self[name]
        if node.kind != "input":
            raise StateError(f"{name!r} is not an input; only inputs take values")
        self._values[name], self._shapes[name] = _as_node_value(name, value)

    def node(self, op: Op, *inputs: Node | str, name: str | None = None) -> Node:
        """A node computing ``op`` of ``inputs`` (nodes, or names of nodes that may be defined
        later: a graph built by name can have cycles, which are caught when it runs)."""
        if not isinstance(op, Op):
            raise TypeError(f"{op!r} is not a graph op")
        if len(inputs) != op.arity:
            raise ShapeError(f"{op.describe()} takes {op.arity} input(s), got {len(inputs)}")
        names = []
        for item in inputs:
            if isinstance(item, Node):
                if item.graph is not self:
                    raise StateError(f"node {item.name!r} belongs to another graph")
                names.append(item.name)
            elif isinstance(item, str):
                names.append(item)
            else:
                raise TypeError(f"inputs of a node are nodes or node names, got {item!r}")
        op = op.placed(len(self.nodes) + 1)   # the node's position, as a layer's in a network
        return self._add(Node(self, name or self.fresh_name(op.label), op, names, "op"))

    def __getitem__(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise KeyError(f"no node named {name!r}; the nodes are {list(self.nodes)}") from None

    def inputs(self) -> list[str]:
        return [n for n, node in self.nodes.items() if node.kind == "input"]

    def input_shape(self, name: str) -> tuple[int, ...]:
        """The shape the input's value was given in."""
        return self._shapes[name]

    # -- order and evaluation -----------------------------------------------------------
    def order(self, output: Node | str) -> list[str]:
        """The ancestors of ``output`` (itself included) in a topological order.

        Iterative depth-first search, so deep graphs do not hit Python's recursion limit.
        Raises GraphError for a reference to a missing node and for a cycle (naming it).
        """
        if isinstance(output, Node) and output.graph is not self:
            raise StateError(f"node {output.name!r} belongs to another graph")
        out = output.name if isinstance(output, Node) else output
        self[out]  # noqa: B018 - raises a clear KeyError for an unknown output
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done
        order: list[str] = []
        stack: list[tuple[str, int]] = [(out, 0)]
        path: list[str] = []
        while stack:
            name, i = stack.pop()
            if i == 0:
                state[name] = 1
                path.append(name)
            node = self.nodes[name]
            if i < len(node.inputs):
                stack.append((name, i + 1))
                child = node.inputs[i]
                if child not in self.nodes:
                    raise GraphError(f"node {name!r} takes input {child!r}, but no node is "
                                     f"named {child!r}")
                if state.get(child) == 1:
                    cycle = path[path.index(child):] + [child]
                    raise GraphError(f"the graph has a cycle: {' → '.join(reversed(cycle))}")
                if child not in state:
                    stack.append((child, 0))
            else:
                state[name] = 2
                path.pop()
                order.append(name)
        return order

    def evaluate(self, output: Node | str, overrides: dict[str, np.ndarray] | None = None,
                 ops: dict[str, Op] | None = None) -> Evaluation:
        """Forward values of ``output`` and its ancestors.

        overrides : name -> (B, N) array
            Use this value for the node instead of computing it (a "tail" evaluation).
        ops : name -> Op
            Use this op instead of the node's own (the numeric witness's float64 copies).
        """
        order = self.order(output)
        overrides = overrides or {}
        values: dict[str, np.ndarray] = {}
        saved: dict[str, Any] = {}
        for name in order:
            node = self.nodes[name]
            if name in overrides:
                values[name] = overrides[name]
                continue
            if node.op is None:
                if name not in self._values:
                    raise StateError(f"input {name!r} has no value: give one with "
                                     f"g.input({name!r}, value) or g.set({name!r}, value)")
                values[name] = self._values[name]
                continue
            op = (ops or {}).get(name, node.op)
            xs = [values[i] for i in node.inputs]
            try:
                xs = _one_arithmetic(xs, node.inputs)
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    out, saved[name] = op.forward(*xs)
            except MsgpassError as err:
                raise type(err)(f"node {name!r} ({op.describe()}): {err}") from None
            where = first_nonfinite(out)
            if where is not None:
                raise NonFiniteError(f"node {name!r} ({op.describe()}) produced {out[where]} at "
                                     f"sample {where[0]}, entry {where[1]} from finite inputs")
            values[name] = out
        return Evaluation(order=order, values=values, saved=saved)

    def backward(self, output: Node | str, seed=None, keep: str = "all"):
        """Message passing from ``output`` back to the inputs; returns a GraphTrace.

        seed : array like the output's value, optional
            What arrives at the output from above: default ones, i.e. the gradient of
            ``output.sum()``. Required to be given for nothing else.
        """
        return graph_backward(self, output, seed=seed, keep=keep)

    def natural_shape(self, order: list[str], value: np.ndarray, name: str) -> tuple[int, ...]:
        """How a node's (B, N) array is shown: an input in the shape it was given; in a graph
        whose inputs (among ``order``) are all scalars or vectors (no batch), () for width 1,
        (N,) otherwise."""
        if self.nodes[name].op is None and name in self._shapes:
            return self.input_shape(name)
        unbatched = all(len(self.input_shape(n)) < 2 for n in order
                        if self.nodes[n].op is None and n in self._shapes)
        if value.shape[0] == 1 and unbatched:
            return () if value.shape[1] == 1 else (value.shape[1],)
        return value.shape

    def __repr__(self) -> str:
        return f"Graph({list(self.nodes)})"


