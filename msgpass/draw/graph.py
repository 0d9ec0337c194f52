"""The graph diagram, the way the textbooks draw the apple example: nodes left to right by level,
the forward value above each arrow (black), the message coming back below it (red), and at a
node that feeds several others, the sum of what came back (Σ); a legend says which is which.

The figure is sized to its content (a fixed number of inches per layout unit, equal aspect),
and each arrow's pair of labels is slid along its arrow to the first place where it covers
no other arrow, node or label: labels are placed, not just put at the midpoint."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_agg import RendererAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch
from matplotlib.path import Path
from matplotlib.transforms import Bbox

from ..errors import StateError
from ..graph.layered import levels_of
from .style import BACKWARD_COLOUR, FORWARD_COLOUR, fmt

__all__ = ["draw_graph", "graph_layout"]

SYMBOLS = {"mul": "×", "add": "+", "sub": "−", "div": "÷", "exp": "exp", "log": "log",
           "max": "max", "id": "id", "sigmoid": "σ", "tanh": "tanh", "relu": "ReLU", "rdiv": "c/x",
           "affine": "Wx+b", "softmax": "smax", "logsoftmax": "lsmax",
           "softmaxcrossentropy": "CE", "nllloss": "NLL", "mseloss": "MSE"}
MAX_SIZE = (30.0, 20.0)  # inches: a bigger graph is drawn denser, not bigger
X_STEP, Y_STEP = 2.8, 2.2
SKIP_BEND = 0.3  # curvature of an edge that skips a level
UNIT_INCH = 0.58  # inches per layout unit: levels 1.6 in apart, room for a label between nodes
# Font sizes in points. The staged graph is about 9 in wide, so shown in a 900-px notebook cell
# these stay at their printed size; the operation symbols are the largest thing at a node.
SYMBOL_SIZE, NAME_SIZE, EDGE_SIZE, SUM_SIZE, TITLE_SIZE = 12, 9, 8.5, 8.5, 10
LABEL_GAP = 2.5  # points between an arrow and the labels above and below it
# where a node's name may go, in order of preference: (x, y) in circle radii from the
# centre and the alignment that keeps it off the circle (a corner of the circle's square)
NAME_SPOTS = ((0, -1, "center"), (0, 1, "center"), (1, -1, "left"), (1, 1, "left"),
              (-1, -1, "right"), (-1, 1, "right"))
CLEARANCE = 3.0  # points of air a placed label pair keeps from other arrows, nodes and labels
SUM_GAP = 3.0    # points between an input's box and its Σ on the left
NODE_PAD = 0.3   # matplotlib's circle / round box padding, in font sizes
# where along its arrow (0 = source, 1 = destination) a label pair may sit, in order of
# preference: the middle first, then ever closer to the ends
LABEL_SPOTS = (0.5, 0.42, 0.58, 0.34, 0.66, 0.26, 0.74, 0.18, 0.82)
MARGIN = 0.12    # layout units of white round the content
_MEASURE = RendererAgg(1, 1, 72)  # at 72 dpi one pixel is one point: text sizes in points


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
        return f"$(\\cdot)^{{{node.op.exponent:g}}}$"
    if label == "scale":
        return node.op.describe().replace("scale", "").strip("()") or "·1"
    return SYMBOLS.get(label, node.op.describe())


def _size(text: str, points: float, unit: float) -> tuple[float, float]:
    """(width, height) of a text in layout units, as matplotlib lays it out: a line is at
    least as tall as "lp" (ascender to descender), whatever its characters."""
    font = FontProperties(size=points)
    w, h, _ = _MEASURE.get_text_width_height_descent(text, font, ismath=text.count("$") >= 2)
    _, line, _ = _MEASURE.get_text_width_height_descent("lp", font, ismath=False)
    return w / 72 / unit, max(h, line) / 72 / unit


def _box(x, y, w, h, ha="center", va="center") -> Bbox:
    x0 = {"left": x, "center": x - w / 2, "right": x - w}[ha]
    y0 = {"bottom": y, "center": y - h / 2, "top": y - h}[va]
    return Bbox.from_bounds(x0, y0, w, h)


class _Node:
    """How one node is drawn: its main text, what is written above and below, and the boxes
    they take (layout units), which the edge labels must keep clear of."""

    def __init__(self, trace, name, xy, consumers, unit, paths):
        node = trace.graph.nodes[name]
        self.name, self.xy, self.symbol = name, xy, _symbol(node)
        self.text = self.symbol or name
        self.size = SYMBOL_SIZE if self.symbol else NAME_SIZE
        w, h = _size(self.text, self.size, unit)
        pad = 2 * NODE_PAD * self.size / 72 / unit
        if self.symbol:      # a circle round the symbol
            d = max(w, h) + pad
            self.boxes = [_box(*xy, d, d)]
        else:                # a rounded box round the name
            self.boxes = [_box(*xy, w + pad, h + pad)]
        self.radius = (self.boxes[0].height / 2, self.boxes[0].width / 2)
        x, y = xy
        # the name goes below an operation's circle, else at the first of NAME_SPOTS where
        # no arrow crosses it; Σ goes left of an input (nothing is drawn left of the inputs),
        # above any other node (below if the name took that place)
        self.name_at = None
        if self.symbol:
            r = self.radius[0]
            spots = [(x + dx * r, y + dy * r, ha, "bottom" if dy > 0 else "top")
                     for dx, dy, ha in NAME_SPOTS]
            boxes = [_box(sx, sy, *_size(name, NAME_SIZE, unit), ha=ha, va=va)
                     for sx, sy, ha, va in spots]
            crossings = [sum(path.intersects_bbox(box, filled=False) for path in paths)
                         for box in boxes]
            best = crossings.index(min(crossings))
            self.name_at = spots[best]
            self.boxes.append(boxes[best])
        self.sum = (f"Σ {fmt(trace.grad(name))}"
                    if node.kind == "input" or consumers > 1 else "")
        if not node.inputs:
            self.sum_at = (x - self.radius[1] - SUM_GAP / 72 / unit, y, "right", "center")
        elif self.name_at is not None and self.name_at[1] > y:
            self.sum_at = (x, y - self.radius[0], "center", "top")
        else:
            self.sum_at = (x, y + self.radius[0], "center", "bottom")
        if self.sum:
            sx, sy, ha, va = self.sum_at
            self.boxes.append(_box(sx, sy, *_size(self.sum, SUM_SIZE, unit), ha=ha, va=va))


def _curves(trace, pos) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, float]]:
    """(start, control, end, rad) of each edge's arc, in layout units: matplotlib's arc3
    curve, a quadratic Bézier (equal aspect: data and display agree)."""
    level = levels_of(trace.graph, trace.order)
    pairs = [(e.source, e.destination) for e in trace.edge_list]
    seen: dict[tuple[str, str], int] = {}
    curves = []
    for e, pair in zip(trace.edge_list, pairs, strict=True):
        p0, p1 = np.array(pos[e.source]), np.array(pos[e.destination])
        # An edge that skips levels bends, so it passes around the nodes in between; edges
        # between the same two nodes (x * x) bend apart symmetrically, so all stay visible.
        rad = SKIP_BEND if level[e.destination] - level[e.source] > 1 else 0.0
        repeat = seen.get(pair, 0)
        seen[pair] = repeat + 1
        rad += 2 * SKIP_BEND * (repeat - (pairs.count(pair) - 1) / 2)
        (dx, dy), mid = p1 - p0, (p0 + p1) / 2
        curves.append((p0, mid + rad * np.array([dy, -dx]), p1, rad))
    return curves


def _point(curve, s: float) -> np.ndarray:
    p0, c, p1, _ = curve
    return (1 - s) ** 2 * p0 + 2 * s * (1 - s) * c + s**2 * p1


def _polyline(curve) -> Path:
    return Path(np.array([_point(curve, s) for s in np.linspace(0, 1, 41)]))


def _pair_box(point, sizes) -> Bbox:
    """The box of a value above and a message below an arrow at ``point``."""
    (wf, hf), (wm, hm), gap = sizes
    return Bbox.from_extents(point[0] - max(wf, wm) / 2, point[1] - gap - hm,
                             point[0] + max(wf, wm) / 2, point[1] + gap + hf)


def _place_labels(curves, label_sizes, obstacles: list[Bbox], clearance: float) -> list[float]:
    """Where along its arrow each label pair sits: the first of LABEL_SPOTS where its box,
    widened by ``clearance`` (layout units), meets no other arrow, node or placed label;
    failing that, the spot meeting fewest."""
    paths = [_polyline(c) for c in curves]
    taken = list(obstacles)
    spots = []
    for k, (curve, sizes) in enumerate(zip(curves, label_sizes, strict=True)):
        def clashes(s, k=k, curve=curve, sizes=sizes):
            box = _pair_box(_point(curve, s), sizes).padded(clearance)
            return (sum(path.intersects_bbox(box, filled=False)
                        for j, path in enumerate(paths) if j != k)
                    + sum(box.overlaps(other) for other in taken))
        best = min(LABEL_SPOTS, key=lambda s: (clashes(s), LABEL_SPOTS.index(s)))
        spots.append(best)
        taken.append(_pair_box(_point(curve, best), sizes))
    return spots


def _legend_entries(output: str) -> list[tuple[str, str, str]]:
    """(marker, colour, label) of each legend entry."""
    return [("$1.5$", FORWARD_COLOUR, "forward value (above the arrow)"),
            ("$1.5$", BACKWARD_COLOUR, "message δ back to the source (below)"),
            ("$\\Sigma$", BACKWARD_COLOUR, f"sum of what came back, ∂{output}/∂(node)")]


def _legend_width(output: str, ncol: int) -> float:
    """Inches the legend takes in ``ncol`` columns (1 or 3): its texts, and a handle and gaps
    per entry."""
    widths = [_size(label, EDGE_SIZE, 1.0)[0] + LEGEND_HANDLE_INCH
              for _, _, label in _legend_entries(output)]
    return sum(widths) if ncol == 3 else max(widths)


def _legend(ax, output: str, ncol: int) -> None:
    handles = [Line2D([], [], linestyle="", marker=marker, markersize=10, color=colour,
                      label=label) for marker, colour, label in _legend_entries(output)]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol,
              fontsize=EDGE_SIZE, frameon=False, handletextpad=0.6, borderaxespad=0.1,
              handlelength=1.4, columnspacing=1.5, labelspacing=0.25)


def draw_graph(trace, *, ax=None) -> Figure:
    """Draw a graph trace: forward values above the arrows, messages below, fan-out sums.

    Returns the Figure. Each arrow's pair of labels sits where it covers no other arrow, node
    or label (``_place_labels``); each node shows its operation (and its name below) or, for
    an input, its name; a node whose value goes to several consumers, and every input, shows
    Σ above it, the sum of the messages that came back to it: its gradient. A legend below
    says which label is which.
    """
    graph = trace.graph
    every = sum(len(graph.nodes[n].inputs) for n in trace.order)
    if len(trace.blocks) < every:
        raise StateError(f"this graph trace kept the messages of {len(trace.blocks)} of its "
                         f"{every} edges (backward(keep=...)); draw a trace from "
                         f"g.backward(output) to see them all")
    pos = graph_layout(trace)
    unit = _unit(pos)
    consumers = {n: sum(e.source == n for e in trace.edge_list) for n in trace.order}
    curves = _curves(trace, pos)
    paths = [_polyline(c) for c in curves]
    nodes = [_Node(trace, name, xy, consumers[name], unit, paths) for name, xy in pos.items()]
    result = f"= {fmt(trace.value(trace.output))}"
    out = next(node for node in nodes if node.name == trace.output)
    out_x = out.xy[0] + out.radius[1] + 4 / 72 / unit
    result_box = _box(out_x, out.xy[1], *_size(result, NAME_SIZE, unit), ha="left")
    gap = LABEL_GAP / 72 / unit
    texts = [(fmt(trace.value(e.source)), fmt(e.block.received())) for e in trace.edge_list]
    sizes = [(_size(f, EDGE_SIZE, unit), _size(m, EDGE_SIZE, unit), gap) for f, m in texts]
    obstacles = [box for node in nodes for box in node.boxes] + [result_box]
    spots = _place_labels(curves, sizes, obstacles, CLEARANCE / 72 / unit)
    content = Bbox.union(obstacles + [_polyline(c).get_extents() for c in curves]
                         + [_pair_box(_point(c, s), z)
                            for c, s, z in zip(curves, spots, sizes, strict=True)])
    title = f"the backward pass from {trace.output}: messages on the edges"
    # wide enough for the title and the legend (in one column at least), the drawing centred
    content = _widen(content.padded(MARGIN),
                     max(_size(title, TITLE_SIZE, unit)[0] + 2 * MARGIN,
                         _legend_width(trace.output, 1) / unit))
    legend_rows = 1 if _legend_width(trace.output, 3) <= content.width * unit else 3
    fig, ax = _axes(ax, content, unit, legend_rows)
    for curve in curves:
        _draw_arrow(ax, curve)
    for curve, s, (forward, message) in zip(curves, spots, texts, strict=True):
        _draw_edge_labels(ax, _point(curve, s), forward, message)
    for node in nodes:
        _draw_node(ax, node)
    ax.text(out_x, out.xy[1], result, ha="left", va="center", fontsize=NAME_SIZE,
            color=FORWARD_COLOUR)
    # on our own figure the axes has the content's shape, so equal aspect changes nothing;
    # on a given axes it shrinks the box to that shape
    ax.set_xlim(content.x0, content.x1)
    ax.set_ylim(content.y0, content.y1)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=TITLE_SIZE, pad=6)
    _legend(ax, trace.output, 3 // legend_rows)
    return fig


def _widen(box: Bbox, width: float) -> Bbox:
    """``box`` widened equally on both sides to at least ``width``."""
    extra = max(0.0, width - box.width) / 2
    return Bbox.from_extents(box.x0 - extra, box.y0, box.x1 + extra, box.y1)


def _unit(pos) -> float:
    """Inches per layout unit: UNIT_INCH, or less for a graph too big for MAX_SIZE."""
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    span = (max(xs) - min(xs) + 3.0, max(ys) - min(ys) + 2.5)
    return min(UNIT_INCH, MAX_SIZE[0] / span[0], MAX_SIZE[1] / span[1])


# inches round the drawing: the title above, the legend below (one or three rows), the sides;
# and what a legend entry takes besides its text (handle and gaps)
TITLE_INCH, LEGEND_ROW_INCH, SIDE_INCH, LEGEND_HANDLE_INCH = 0.4, 0.2, 0.08, 0.55


def _axes(ax, content: Bbox, unit: float, legend_rows: int):
    """A figure exactly as big as the content at ``unit`` inches per layout unit, plus the
    title and legend: the axes is placed by hand, so the scale the labels were placed for
    is the scale they are drawn at (a layout engine would shrink it)."""
    if ax is not None:
        return ax.figure, ax
    width, height = content.width * unit, content.height * unit
    legend = LEGEND_ROW_INCH * legend_rows + 0.1
    size = (width + 2 * SIDE_INCH, height + TITLE_INCH + legend)
    fig = Figure(figsize=size, dpi=100)
    return fig, fig.add_axes((SIDE_INCH / size[0], legend / size[1], width / size[0],
                              height / size[1]))


def _draw_arrow(ax, curve) -> None:
    p0, _, p1, rad = curve
    ax.add_patch(FancyArrowPatch(tuple(p0), tuple(p1), arrowstyle="-|>", mutation_scale=10,
                                 shrinkA=12, shrinkB=12, color="0.35", linewidth=1.0,
                                 connectionstyle=f"arc3,rad={rad}", zorder=1))


LABEL_BOX = dict(boxstyle="square,pad=0.05", facecolor="white", edgecolor="none", alpha=0.85)


def _draw_edge_labels(ax, point, forward: str, message: str) -> None:
    # The forward value sits just above the arrow, the message just below it: each is
    # anchored on its own side (va bottom / top), so the two can never overlap.
    for text, side, colour, va in ((forward, 1, FORWARD_COLOUR, "bottom"),
                                   (message, -1, BACKWARD_COLOUR, "top")):
        ax.annotate(text, tuple(point), xytext=(0, side * LABEL_GAP), textcoords="offset points",
                    color=colour, ha="center", va=va, fontsize=EDGE_SIZE, bbox=LABEL_BOX,
                    zorder=2)


def _draw_node(ax, node: _Node) -> None:
    x, y = node.xy
    ax.text(x, y, node.text, ha="center", va="center", fontsize=node.size,
            bbox=dict(boxstyle=f"circle,pad={NODE_PAD}" if node.symbol
                      else f"round,pad={NODE_PAD}",
                      facecolor="white", edgecolor="0.3", linewidth=1.0), zorder=3)
    if node.name_at:
        nx, ny, ha, va = node.name_at
        ax.text(nx, ny, node.name, ha=ha, va=va, fontsize=NAME_SIZE, color="0.35")
    if node.sum:
        sx, sy, ha, va = node.sum_at
        ax.text(sx, sy, node.sum, ha=ha, va=va, fontsize=SUM_SIZE, color=BACKWARD_COLOUR)
