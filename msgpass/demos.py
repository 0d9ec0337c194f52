"""Worked examples from the textbooks, as graphs (``msgpass demo NAME``).

Each demo builds a graph and names its output; ``show`` prints every forward value, every
message on every edge and the gradients of the inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .graph import Graph, Node, sigmoid

__all__ = ["DEMOS", "Demo", "show"]


@dataclass(frozen=True)
class Demo:
    title: str
    source: str
    build: Callable[[], tuple[Graph, Node]]


def apple() -> tuple[Graph, Node]:
    """2 apples at 100 yen each, with 10% consumption tax."""
    g = Graph()
    apple, apple_num, tax = g.input("apple", 100.0), g.input("apple_num", 2.0), g.input("tax", 1.1)
    apple_price = (apple * apple_num).named("apple_price")
    return g, (apple_price * tax).named("price")


def apple_orange() -> tuple[Graph, Node]:
    """2 apples at 100 yen and 3 oranges at 150 yen, with 10% tax."""
    g = Graph()
    apple, apple_num = g.input("apple", 100.0), g.input("apple_num", 2.0)
    orange, orange_num = g.input("orange", 150.0), g.input("orange_num", 3.0)
    tax = g.input("tax", 1.1)
    apple_price = (apple * apple_num).named("apple_price")
    orange_price = (orange * orange_num).named("orange_price")
    all_price = (apple_price + orange_price).named("all_price")
    return g, (all_price * tax).named("price")


def sigmoid_neuron() -> tuple[Graph, Node]:
    """f(w, x) = σ(w0·x0 + w1·x1 + w2) at w = (2, −3, −3), x = (−1, −2)."""
    g = Graph()
    w0, x0 = g.input("w0", 2.0), g.input("x0", -1.0)
    w1, x1 = g.input("w1", -3.0), g.input("x1", -2.0)
    w2 = g.input("w2", -3.0)
    dot = (w0 * x0 + w1 * x1 + w2).named("dot")
    return g, sigmoid(dot).named("f")


def staged() -> tuple[Graph, Node]:
    """f(x, y) = (x + σ(y)) / (σ(x) + (x + y)²) at x = 3, y = −4; x and y branch, so
    their gradients collect from several paths."""
    g = Graph()
    x, y = g.input("x", 3.0), g.input("y", -4.0)
    num = (x + sigmoid(y).named("sigy")).named("num")
    den = (sigmoid(x).named("sigx") + ((x + y).named("xpy") ** 2).named("xpysqr")).named("den")
    return g, (num / den).named("f")


DEMOS = {
    "apple": Demo("buying apples", "seed 001", apple),
    "apple-orange": Demo("buying apples and oranges", "seed 001", apple_orange),
    "sigmoid-neuron": Demo("a sigmoid neuron", "seed 003, modularity",
                           sigmoid_neuron),
    "staged": Demo("a staged computation", "seed 003, staged computation", staged),
}


def _fmt(a: np.ndarray) -> str:
    a = np.asarray(a)
    if a.size == 1:
        return f"{float(a.reshape(())):.6g}"
    return np.array2string(a, precision=6, separator=", ")


def show(name: str) -> str:
    """The demo's forward values, every message and the input gradients, as text."""
    demo = DEMOS[name]
    graph, output = demo.build()
    trace = graph.backward(output)
    width = max(len(n) for n in trace.order) + 2
    lines = [f"demo {name}: {demo.title} ({demo.source})", "", "forward values:"]
    for n in trace.order:
        node = graph.nodes[n]
        how = node.op.describe() + "(" + ", ".join(node.inputs) + ")" if node.op else node.kind
        lines.append(f"  {n:<{width}} = {_fmt(trace.value(n)):>12}    {how}")
    lines += ["", "backward messages (what each node sends back to its input, edge by edge):"]
    for e in trace.edge_list:
        lines.append(f"  {e.destination:>{width}} → {e.source:<{width}} "
                     f"δ = {_fmt(e.dense())}")
    lines += ["", f"gradients of {output.name} (each input sums what arrives at it):"]
    for n in graph.inputs():
        if n in trace.values:
            lines.append(f"  ∂{output.name}/∂{n:<{width}} = {_fmt(trace.grad(n))}")
    return "\n".join(lines)
