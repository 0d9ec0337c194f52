"""Graph: a directed acyclic graph of nodes, built by name or from Python expressions.

>>> import msgpass as mp
>>> g = mp.Graph()
>>> x, y = g.input("x", 3.0), g.input("y", -4.0)
>>> f = (x + mp.sigmoid(y)) / (mp.sigmoid(x) + (x + y) ** 2)
>>> trace = g.backward(f)
>>> round(float(trace.value(f)), 5)
1.54564

Every node holds a (B, N) array: an input given as a scalar is (1, 1), a vector of length N is
(1, N), an array (B, ...) is a batch of B whose N entries per sample are numbered in C order
(an image (B, C, H, W) has N = C·H·W, as torch's ``flatten(1)``). ``trace.value`` and
``trace.grad`` give arrays back in the shape the inputs were given in, and an op that keeps
shapes (every elementwise op, the elementwise layers, Dropout and BatchNorm) keeps its inputs'
per-sample shape; a layer that changes widths (Affine) gives (N,).

A graph whose output is a loss layer node runs again on new inputs (``g.forward``), has its
parameters as a live mapping (``g.params``) and trains with ``mp.train``.

This module builds graphs and evaluates them forward (the witnesses use that too); nodes and
expressions are msgpass.graph.node, the message pass msgpass.graph.backward.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
from ..network import ParamDict
from ..streaming import DEFAULT_BUDGET_BYTES, DEFAULT_CHUNK_BYTES
from ..validate import as_array, first_nonfinite
from .backward import graph_backward
from .node import Node
from .ops import LayerOp, Op

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
    """A node's value as it is kept, (B, N), and the shape it was given in. A scalar is
    (1, 1), a vector of length N is (1, N), an array (B, ...) a batch of B whose N entries
    per sample are numbered in C order (an image (B, C, H, W) has N = C·H·W)."""
    a = as_array(value, f"value of {name!r}")
    if a.size == 0:
        raise ShapeError(f"value of {name!r} is empty: shape {a.shape}")
    shape = a.shape
    flat = (1, -1) if a.ndim < 2 else (a.shape[0], -1)
    if a.dtype == object:   # Fractions (exact) or mpmath numbers: kept as they are
        try:
            mode = numbers.mode_of(a)
        except DtypeError as err:
            raise DtypeError(f"value of {name!r}: {err}") from None
        a = mode.array(a.reshape(flat), f"value of {name!r}")
        a.flags.writeable = False
        return a, shape
    if a.dtype.kind not in "iuf":
        raise DtypeError(f"value of {name!r} must be real numbers, got dtype {a.dtype}")
    a = a.astype(np.float64).reshape(flat)  # a copy
    where = first_nonfinite(a)
    if where is not None:
        features = _features(shape)
        entry = where[1] if len(features) == 1 else tuple(
            int(i) for i in np.unravel_index(where[1], features))
        raise InputValueError(f"value of {name!r} contains {a[where]} at sample {where[0]}, "
                              f"entry {entry}; values must be finite")
    a.flags.writeable = False  # set() replaces a value; nothing may change it in place
    return a, shape


def _features(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The per-sample shape of a value given in ``shape``: (N,) for a scalar, a vector or a
    (B, N) batch; the trailing axes of a batch (B, ...)."""
    if len(shape) > 2:
        return shape[1:]
    return (shape[1],) if len(shape) == 2 else (int(np.prod(shape)),)


def _op_features(node, op: Op, out: np.ndarray, shapes: dict) -> tuple[int, ...]:
    """The per-sample shape of an op node's value: that of its inputs for an op (or layer)
    that keeps shapes (the one with most axes: an image (1, 1, 1) beside a scalar (1,)),
    (N,) for a layer that changes widths. Inputs whose shapes disagree were refused before
    the op ran (Graph.evaluate)."""
    decided = op.output_features([shapes[i] for i in node.inputs])
    if decided is not None:
        return decided
    width = out.shape[1]
    same = [shapes[i] for i in node.inputs if int(np.prod(shapes[i])) == width]
    if not op.keeps_shape or not same:
        return (width,)
    return max(same, key=len)


@dataclass(frozen=True)
class Evaluation:
    """A forward pass: the nodes in topological order with their values and saved records."""

    order: list[str]
    values: dict[str, np.ndarray]
    saved: dict[str, Any]
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """The per-sample shape of each node's value (its (B, N) array is kept flat, C order)."""


@dataclass(frozen=True, eq=False)
class GraphForward:
    """A forward pass with everything the backward needs (``g.record`` after ``g.forward``).

    Attributes
    ----------
    output : str
    order, values, saved, shapes : as an Evaluation's
    partials : dict of str to OpPartials
        The local partials of every op node.
    kinks : dict of str to bool ndarray
        Nodes computed at a point without a derivative, with the mask of those entries.
    """

    output: str
    order: list[str]
    values: dict[str, np.ndarray]
    saved: dict[str, Any]
    shapes: dict[str, tuple[int, ...]]
    partials: dict[str, Any]
    kinks: dict[str, np.ndarray]
    given: dict[str, tuple[int, ...]] = field(default_factory=dict)
    """The shape each input (among ``order``) was given in for this pass."""


class Graph:
    """A directed acyclic graph of nodes (see the module docstring)."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self._values: dict[str, np.ndarray] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._counts: dict[str, int] = {}
        self._record: GraphForward | None = None
        # msgpass key "node.name" → (the name shown, transposed): an imported model's
        self.param_names: dict = {}
        # an input's per-sample shape when it is fixed (an imported model's image input):
        # flat rows (B, C·H·W) given to it are read in that shape
        self.input_shapes: dict[str, tuple[int, ...]] = {}

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
        """A named input, with its value now or later (``set``). A value that is refused
        leaves no node behind."""
        kept = _as_node_value(name, value) if value is not None else None
        node = self._add(Node(self, name, None, [], "input"))
        if kept is not None:
            self._values[name], self._shapes[name] = kept
            self._record = None
        return node

    def constant(self, value, name: str | None = None) -> Node:
        """A node with a fixed value: it receives messages but is not an input of ``grad``."""
        name = name or self.fresh_name("const")
        kept = _as_node_value(name, value)   # refused before the node exists
        node = self._add(Node(self, name, None, [], "constant"))
        self._values[name], self._shapes[name] = kept
        return node

    def set(self, name: str, value) -> None:
        """Give (or change) the value of an input."""
        node = self[name]
        if node.kind != "input":
            raise StateError(f"{name!r} is not an input; only inputs take values")
        shape = self.input_shapes.get(name)
        if shape is not None and np.ndim(value) == 2 and \
                np.shape(value)[1] == int(np.prod(shape)):   # flat rows of a known image
            value = np.asarray(value).reshape((len(value), *shape))
        self._values[name], self._shapes[name] = _as_node_value(name, value)
        self._record = None   # the last forward saw other inputs

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

        overrides : name -> (B, N) array, or (B, *shape) for a node of another per-sample
            shape (an image)
            Use this value for the node instead of computing it (a "tail" evaluation).
        ops : name -> Op
            Use this op instead of the node's own (the numeric witness's float64 copies).
        """
        order = self.order(output)
        overrides = overrides or {}
        values: dict[str, np.ndarray] = {}
        saved: dict[str, Any] = {}
        shapes: dict[str, tuple[int, ...]] = {}
        for name in order:
            node = self.nodes[name]
            if node.op is None and name in self._shapes:
                shapes[name] = _features(self._shapes[name])
            if name in overrides:
                given = overrides[name]
                values[name] = given.reshape(len(given), -1)     # kept flat, as every value
                shapes.setdefault(name, tuple(given.shape[1:]))
                continue
            if node.op is None:
                if name not in self._values:
                    raise StateError(f"input {name!r} has no value: give one with "
                                     f"g.input({name!r}, value) or g.set({name!r}, value)")
                values[name] = self._values[name]
                continue
            op = (ops or {}).get(name, node.op)
            xs = [values[i] for i in node.inputs]
            op.check_shapes(name, [shapes[i] for i in node.inputs])
            try:
                xs = _one_arithmetic(xs, node.inputs)
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    out, saved[name] = op.forward_shaped(xs, [shapes[i] for i in node.inputs])
            except MsgpassError as err:
                raise type(err)(f"node {name!r} ({op.describe()}): {err}") from None
            where = first_nonfinite(out)
            if where is not None:
                raise NonFiniteError(f"node {name!r} ({op.describe()}) produced {out[where]} at "
                                     f"sample {where[0]}, entry {where[1]} from finite inputs")
            values[name] = out
            shapes[name] = _op_features(node, op, out, shapes)
        return Evaluation(order=order, values=values, saved=saved, shapes=shapes)

    def run_forward(self, output: Node | str) -> GraphForward:
        """Evaluate ``output`` and keep every op node's local partials (and kinks)."""
        out = output.name if isinstance(output, Node) else output
        run = self.evaluate(out)
        with np.errstate(all="ignore"):  # a NaN or Inf is caught in the pass, with its node
            partials = {name: self.nodes[name].op.local_partials(run.saved[name])
                        for name in run.order if self.nodes[name].op is not None}
        kinks = {}
        for name in run.order:
            op = self.nodes[name].op
            mask = None if op is None else op.nondifferentiable(run.saved[name])
            if mask is not None and np.any(mask):
                kinks[name] = mask
        given = {n: self._shapes[n] for n in run.order
                 if self.nodes[n].op is None and n in self._shapes}
        return GraphForward(output=out, order=run.order, values=run.values, saved=run.saved,
                            shapes=run.shapes, partials=partials, kinks=kinks, given=given)

    def backward(self, output: Node | str | None = None, seed=None, keep="all", *,
                 budget_bytes: int = DEFAULT_BUDGET_BYTES, keep_samples=None,
                 per_sample: bool = False, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 backend: str = "memory", chunk_samples: int = 256, stats=False, store=None):
        """Message passing from ``output`` back to the inputs; returns a GraphTrace.

        output : node or name, optional
            By default the output of the last ``forward``.
        seed : array like the output's value, or "mean", optional
            What arrives at the output from above: default ones, i.e. the gradient of
            ``output.sum()``; "mean" gives 1/B to every sample, the gradient of the batch
            mean (a loss output's L, as a chain's backward).
        keep : "all" (default), "sums", or a list of nodes (or names)
            Which message blocks to keep: every edge's; none; or those each named node sends
            back to its inputs.

        budget_bytes, keep_samples, per_sample, chunk_bytes, backend, chunk_samples, stats,
        store mean what they mean for ``Sequential.backward``: messages in flight bounded by
        the budget, blocks kept for some samples only, each sample's messages to each
        parameter of a layer node, the dask backend (optional extra) and its chunks,
        statistics per edge, and a zarr store written as the messages are sent.

        After ``forward``, the backward of that output sends from the partials that forward
        kept (at the weights it saw, like a chain's); otherwise the graph is evaluated now.
        """
        if output is None:
            if self._record is None:
                raise StateError("g.backward() without an output needs a g.forward(...) "
                                 "first; or name the output: g.backward(node)")
            output = self._record.output
        name = output.name if isinstance(output, Node) else output
        record = self._record if (self._record is not None
                                  and self._record.output == name) else None
        return graph_backward(self, output, seed=seed, keep=keep, record=record,
                              budget_bytes=budget_bytes, keep_samples=keep_samples,
                              per_sample=per_sample, chunk_bytes=chunk_bytes, backend=backend,
                              chunk_samples=chunk_samples, stats=stats, store=store)

    # -- forward mode and second order (msgpass.graph.forward) --------------------------------
    def jvp(self, output: Node | str, tangents: dict):
        """Forward-mode messages: the directional derivative of ``output`` along ``tangents``.

        tangents : dict of input name (or node) to an array of the input's shape
            The direction; an input left out has tangent 0.

        Each edge sends the tangent message J[n, n']·ṫ[n] up, each node sums what arrives.
        Returns a TangentTrace: ``tr.output`` (f's shape), ``tr.tangent(node)``, ``tr.edges``.
        """
        from .forward import jvp
        return jvp(self, output, tangents)

    def jacobian(self, output: Node | str, wrt=None, mode: str = "auto"):
        """∂output/∂wrt, of shape output's shape + wrt's shape (torch.func.jacrev's layout).

        wrt : input name or node, or a list of them (a dict is returned), default every input
        mode : "auto" (default), "reverse" or "forward"
            Reverse passes, one per entry of the output, or forward passes, one per entry of
            the inputs; "auto" takes whichever needs fewer.
        """
        from .forward import jacobian
        return jacobian(self, output, wrt, mode)

    def hvp(self, output: Node | str, vectors: dict, seed=None) -> dict:
        """Hessian-vector products of F = Σ seed · output (the seed as ``backward``'s: default
        ones): ``{input: H·v}`` for every input, by forward-over-reverse messages (the
        tangents of the reverse messages, δ̇ = J̇·S + J·Ṡ). ``vectors``: dict of input name
        (or node) to an array of the input's shape; an input left out has 0."""
        from .forward import hvp
        return hvp(self, output, vectors, seed)

    def natural_shape(self, order: list[str], value: np.ndarray, name: str,
                      features: tuple[int, ...] | None = None,
                      given: dict[str, tuple[int, ...]] | None = None) -> tuple[int, ...]:
        """How a node's (B, N) array is shown: an input in the shape it was given; in a graph
        whose inputs (among ``order``) are all scalars or vectors (no batch), () for width 1,
        (N,) otherwise; else (B, *features), its per-sample shape (an image's (C, H, W)).
        ``given``: the inputs' shapes in the pass the array comes from (default: now)."""
        given = self._shapes if given is None else given
        if self.nodes[name].op is None and name in given:
            return given[name]
        unbatched = all(len(given[n]) < 2 for n in order
                        if self.nodes[n].op is None and n in given)
        if value.shape[0] == 1 and unbatched:
            return () if value.shape[1] == 1 else (value.shape[1],)
        return (value.shape[0],) + tuple(features if features is not None else value.shape[1:])

    # -- running on new inputs, and training --------------------------------------------
    @property
    def record(self) -> GraphForward | None:
        """What the last ``forward`` kept for the backward, or None."""
        return self._record

    def sink(self) -> str:
        """The one node that no other node reads: the default output."""
        read = {i for node in self.nodes.values() for i in node.inputs}
        sinks = [n for n, node in self.nodes.items() if n not in read and node.op is not None]
        losses = [n for n in sinks if self._loss_op(n) is not None]
        if len(sinks) > 1 and len(losses) == 1:     # side branches beside one loss
            return losses[0]
        if len(sinks) != 1:
            raise StateError(f"the graph has {len(sinks)} outputs {sinks}; name the one you "
                             f"mean: output=")
        return sinks[0]

    def _loss_op(self, name: str):
        op = self.nodes[name].op
        return op if isinstance(op, LayerOp) and op.layer.is_loss else None

    def loss_output(self) -> str:
        """The node training minimises: the graph's output, which must be a loss layer node
        (a StateError saying what is needed otherwise)."""
        needed = ("training needs a graph whose output is a loss layer node, such as "
                  "mp.SoftmaxCrossEntropy()(logits, target=y)")
        try:
            name = self._record.output if self._record is not None else self.sink()
        except StateError:
            read = {i for node in self.nodes.values() for i in node.inputs}
            sinks = [n for n, node in self.nodes.items() if n not in read and node.op is not None]
            if not sinks:
                raise StateError(f"{needed}; this graph has no op node "
                                 f"(nodes {list(self.nodes)})") from None
            raise StateError(f"{needed}; this graph has {len(sinks)} outputs {sinks} and "
                             f"none is a loss layer node") from None
        if self._loss_op(name) is None:
            what = self.nodes[name].op.describe() if self.nodes[name].op else self.nodes[name].kind
            raise StateError(f"{needed}; this graph's output {name!r} is {what}")
        return name

    def forward(self, inputs=None, target=None, output: Node | str | None = None):
        """Run the graph again on new input arrays and keep every node's value and local
        partials for ``backward``.

        inputs : dict of name to array, or one array
            New values of inputs (one array: the value of the graph's only input).
        target : array_like, optional
            The new target of the output's loss layer node.
        output : node or name, optional
            By default the previous forward's output, else the graph's only sink.

        Returns the batch-mean loss L for a loss output (a float, or exact / mp), else the
        output's value.
        """
        if output is None:
            output = self._record.output if self._record is not None else self.sink()
        name = output.name if isinstance(output, Node) else output
        self[name]  # noqa: B018 - a clear KeyError for an unknown output
        self._record = None     # a forward that fails must not leave the last one behind
        before = (dict(self._values), dict(self._shapes),
                  {n: node.op.target for n, node in self.nodes.items()
                   if isinstance(node.op, LayerOp)})
        try:
            return self._forward(name, inputs, target)
        except BaseException:   # nor the inputs and target it failed on
            self._values, self._shapes = before[0], before[1]
            for n, target_before in before[2].items():
                self.nodes[n].op.target = target_before
            raise

    def _forward(self, name: str, inputs, target):
        if inputs is not None:
            if not isinstance(inputs, dict):
                free = self.inputs()
                if len(free) != 1:
                    raise StateError(f"the graph has inputs {free}: give their values as a "
                                     f"dict {{name: array}}")
                inputs = {free[0]: inputs}
            for key, value in inputs.items():
                self.set(key.name if isinstance(key, Node) else key, value)
        if target is not None:
            op = self._loss_op(name)
            if op is None:
                raise StateError(f"target= is for a graph whose output is a loss layer node; "
                                 f"{name!r} is not one")
            op.target = target
        record = self.run_forward(name)
        self._record = record
        value = record.values[name]
        if self._loss_op(name) is not None:
            return float(np.mean(value)) if value.dtype != object else \
                numbers.mode_of(value).mean(value)
        return value.reshape(self.natural_shape(record.order, value, name,
                                                record.shapes.get(name)))

    def predict(self, x) -> np.ndarray:
        """What arrives at the loss node for input ``x`` (its only input's value): the
        network's output before the loss, (B, N)."""
        loss = self.loss_output()
        free = self.inputs()
        if len(free) != 1:
            raise StateError(f"predict takes the value of the graph's only input; it has "
                             f"{free}")
        value, _ = _as_node_value(free[0], x)
        source = self.nodes[loss].inputs[0]
        return self.evaluate(source, overrides={free[0]: value}).values[source]

    def _layer_nodes(self) -> list[str]:
        output = self._record.output if self._record is not None else None
        if output is None:
            try:
                output = self.sink()
            except StateError:
                output = None
        names = self.order(output) if output is not None else list(self.nodes)
        return [n for n in names if isinstance(self.nodes[n].op, LayerOp)]

    @property
    def layers(self) -> list:
        """The layers of the layer nodes, in a topological order (a loss output last)."""
        return [self.nodes[n].op.layer for n in self._layer_nodes()]

    @property
    def labels(self) -> list[str]:
        """``"node: layer"`` for every layer node, in the order of ``layers``."""
        return [f"{n}: {self.nodes[n].op.describe()}" for n in self._layer_nodes()]

    @property
    def params(self):
        """The parameters of every node that has some, ``"node.name" -> ndarray``: the
        layers' own arrays (a live mapping: writing into them changes the graph)."""
        return ParamDict({f"{n}.{key}": array for n, node in self.nodes.items()
                          if node.op is not None for key, array in node.op.params.items()},
                         self.param_names)

    def train(self) -> Graph:
        """Training mode for every layer node (Dropout drops, BatchNorm uses the batch)."""
        for layer in self.layers:
            layer.train()
        return self

    def eval(self) -> Graph:
        """Evaluation mode for every layer node."""
        for layer in self.layers:
            layer.eval()
        return self

    def next_step(self, saved: dict | None = None) -> None:
        """End a training step: every layer node sees what its forward saved (by default the
        last forward's; ``saved`` is a dict by node name)."""
        if saved is None:
            saved = self._record.saved if self._record is not None else {}
        for n in self._layer_nodes():
            self.nodes[n].op.layer.next_step(saved.get(n))

    def __repr__(self) -> str:
        return f"Graph({list(self.nodes)})"


