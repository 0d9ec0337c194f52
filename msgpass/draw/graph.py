"""The graph diagram, the way the textbooks draw the apple example: nodes left to right by level,
the forward value above each arrow (black), the message coming back below it (red), and at a
node that feeds several others, the sum of what came back (Σ)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

from ..errors import StateError
from ..graph.layered import levels_of
from .style import BACKWARD_COLOUR, FORWARD_COLOUR, LABEL_SIZE, TEXT_SIZE, fmt, new_axes

__all__ = ["draw_graph", "graph_layout"]

SYMBOLS = {"mul": "×", "add": "+", "sub": "−", "div": "÷", "exp": "exp", "log": "log",
           "max": "max", "id": "id", "sigmoid": "σ", "tanh": "tanh", "relu": "ReLU", "rdiv": "c/x",
           "affine": "Wx+b", "softmax": "smax", "logsoftmax": "lsmax",
           "softmaxcrossentropy": "CE", "nllloss": "NLL", "mseloss": "MSE"}
MAX_SIZE = (30.0, 20.0)  # inches: a bigger graph is drawn denser, not bigger
X_STEP, Y_STEP = 2.6, 1.5
SKIP_BEND = 0.3  # curvature of an edge that skips a level


def graph_layout(trace) -> dict[str, tuple[float, float]]:
    """(x, y) of each node: x by level (longest distance from an input), y spread per level,
    each level ordered by the mean height of its nodes' inputs (the barycentre heuristic),
    which keeps edges from crossing, and their labels from landing on one another."""
    level = levels_of(trace.graph, trace.order)
    positions: dict[str, tuple[float, float]] = {}
    for lv in sorted(set(level.values())):
        names = [n for n in trace.order if level[n] == lv]
        if lv > 0:
            rank = {name: i for i, name in enumerate(names)}  # ties keep topological order
            names.sort(key=lambda name: (-np.mean([positions[i][1]
                                                   for i in trace.graph.nodes[name].inputs]),
                                         rank[name]))
        for i, name in enumerate(names):
            positions[name] = (lv * X_STEP, ((len(names) - 1) / 2 - i) * Y_STEP)
    return positions


def _symbol(node) -> str:
    if node.op is None:
        return ""
    label = node.op.label
    if label == "pow":
        return f"^{node.op.exponent:g}"
    if label == "scale":
        return node.op.describe().replace("scale", "").strip("()") or "·1"
    return SYMBOLS.get(label, node.op.describe())


def draw_graph(trace, *, ax=None) -> Figure:
    """Draw a graph trace: forward values above the arrows, messages below, fan-out sums.

    Returns the Figure. Each arrow's pair of labels sits at its midpoint; each node shows its
    name (and its operation); a node whose value goes to several consumers, and every input,
    shows Σ, the sum of the messages that came back to it: its gradient.
    """
    graph = trace.graph
    every = sum(len(graph.nodes[n].inputs) for n in trace.order)
    if len(trace.blocks) < every:
        raise StateError(f"this graph trace kept the messages of {len(trace.blocks)} of its "
                         f"{every} edges (backward(keep=...)); draw a trace from "
                         f"g.backward(output) to see them all")
    pos = graph_layout(trace)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    fig, ax = new_axes(ax, figsize=(min(MAX_SIZE[0], max(6.0, 1.45 * (max(xs) - min(xs) + 2.0))),
                                    min(MAX_SIZE[1], max(3.2, 1.1 * (max(ys) - min(ys) + 2.4)))))
    consumers = {n: [e for e in trace.edge_list if e.source == n] for n in trace.order}
    level = levels_of(graph, trace.order)
    seen: dict[tuple[str, str], int] = {}
    for e in trace.edge_list:
        (x0, y0), (x1, y1) = pos[e.source], pos[e.destination]
        # An edge that skips levels bends, so it passes around the nodes in between; a second
        # edge between the same two nodes (x * x) bends the other way, so both stay visible.
        rad = SKIP_BEND if level[e.destination] - level[e.source] > 1 else 0.0
        repeat = seen.get((e.source, e.destination), 0)
        seen[(e.source, e.destination)] = repeat + 1
        if repeat:
            rad = (-1) ** repeat * SKIP_BEND * ((repeat + 1) // 2) + rad
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=9,
                                     shrinkA=17, shrinkB=17, color="0.35", linewidth=0.9,
                                     connectionstyle=f"arc3,rad={rad}"))
        # the middle of matplotlib's arc3 curve (equal aspect: data and display agree)
        mx, my = (x0 + x1) / 2 + rad * (y1 - y0) / 2, (y0 + y1) / 2 - rad * (x1 - x0) / 2
        message = e.block.received()    # what the source receives along this edge
        # The forward value sits just above the edge, the message just below it: each is
        # anchored on its own side (va bottom / top), so the two can never overlap.
        for text, side, colour, va in ((fmt(trace.value(e.source)), 1, FORWARD_COLOUR, "bottom"),
                                       (fmt(message), -1, BACKWARD_COLOUR, "top")):
            ax.annotate(text, (mx, my), xytext=(0, side * 2.5), textcoords="offset points",
                        color=colour, ha="center", va=va, fontsize=TEXT_SIZE - 1,
                        bbox=dict(boxstyle="square,pad=0.05", facecolor="white",
                                  edgecolor="none", alpha=0.8))
    for name, (x, y) in pos.items():
        node = graph.nodes[name]
        symbol = _symbol(node)
        ax.text(x, y, symbol if symbol else name, ha="center", va="center",
                fontsize=TEXT_SIZE + (2 if symbol in ("×", "+", "−", "÷", "σ") else 0),
                bbox=dict(boxstyle="circle" if symbol else "round,pad=0.3",
                          facecolor="white", edgecolor="0.3", linewidth=0.9), zorder=3)
        if symbol:
            ax.text(x, y - 0.42, name, ha="center", va="top", fontsize=LABEL_SIZE - 1,
                    color="0.4")
        if node.kind == "input" or len(consumers[name]) > 1:
            ax.text(x, y + 0.38, f"Σ {fmt(trace.grad(name))}", ha="center", va="bottom",
                    fontsize=LABEL_SIZE, color=BACKWARD_COLOUR)
    out_x, out_y = pos[trace.output]
    ax.text(out_x + 0.55, out_y, f"= {fmt(trace.value(trace.output))}", ha="left",
            va="center", fontsize=TEXT_SIZE, color=FORWARD_COLOUR)
    ax.set_xlim(min(xs) - 0.9, max(xs) + 1.4)
    ax.set_ylim(min(ys) - 1.6, max(ys) + 1.6)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"forward values above the arrows (black), messages below (red); Σ: the sum "
                 f"of the messages that came back, ∂{trace.output}/∂(node)", fontsize=LABEL_SIZE)
    return fig
