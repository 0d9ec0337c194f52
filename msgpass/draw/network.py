"""The network diagram: layers as columns of nodes, every edge coloured and sized by its message.

Reads a finished Trace; knows nothing of how it was computed. Uses matplotlib's object API
(``matplotlib.figure.Figure``), never pyplot, so it needs no display and draws the same pixels
every time.
"""

from __future__ import annotations

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..validate import positive_int
from .style import CMAP, LABEL_SIZE, TEXT_SIZE, fmt, new_axes, symmetric_norm

__all__ = ["draw_network", "network_edges", "MAX_EDGES", "MAX_LABELLED_NODES"]

MAX_EDGES = 2000          # beyond this many edges only the strongest are drawn (the figure says so)
MAX_LABELLED_NODES = 12   # node sums are written at the nodes of columns up to this tall


def _column_y(width: int) -> np.ndarray:
    """Vertical positions of a column's nodes, top to bottom, within [-1, 1]."""
    if width == 1:
        return np.zeros(1)
    return np.linspace(1.0, -1.0, width)


def network_edges(trace, sample: int | str = 0):
    """Every edge of the network for one sample (or ``"mean"`` over the batch).

    Returns a list, one entry per layer t = 1..T, of (x0, y0, x1, y1, message) arrays: the
    segment from node n of column t−1 to node n' of column t and its message δ^t_{n←n'}.
    Non-edges of the graph (off-diagonal pairs of an elementwise layer) are not listed.
    """
    trace = trace.as_floats()   # exact or mp numbers are drawn as floats
    layers = []
    for t in range(1, trace.T + 1):
        block = trace.sample_messages(t, sample)
        mask = trace.partials[t - 1].inputs.edges()
        n, n_ = np.nonzero(mask)
        y_from, y_to = _column_y(mask.shape[0]), _column_y(mask.shape[1])
        layers.append((np.full(n.size, t - 1.0), y_from[n], np.full(n.size, float(t)), y_to[n_],
                       block[n, n_]))
    return layers


def check_sample(trace, sample) -> None:
    """``sample`` must be "mean" or a sample index 0..B−1."""
    batch = trace.values[0].shape[0]
    if isinstance(sample, str) and sample == "mean":
        return
    if not isinstance(sample, (int, np.integer)) or isinstance(sample, bool) \
            or not 0 <= sample < batch:
        raise ValueError(f"sample must be a sample index 0..{batch - 1} or 'mean', "
                         f"got {sample!r}")


def strongest(messages: np.ndarray, limit: int | None) -> np.ndarray:
    """Boolean mask of the ``limit`` largest |messages| over all layers at once (ties broken
    by position, so the choice is reproducible); all True when there are fewer."""
    keep = np.ones(messages.size, dtype=bool)
    if limit is not None and messages.size > limit:
        keep[:] = False
        keep[np.argsort(-np.abs(messages), kind="stable")[:limit]] = True
    return keep


def draw_network(trace, sample: int | str = 0, *, max_edges: int | None = MAX_EDGES,
                 values: bool = False, ax=None) -> Figure:
    """Draw the messages of one sample flowing through a network.

    Parameters
    ----------
    trace : Trace
        From ``net.backward()`` with every block kept.
    sample : int or "mean"
        Which sample's messages, or their mean over the batch.
    max_edges : int or None
        Draw at most this many edges, the strongest |δ| over all layers; the title says how
        many were left out. None draws every edge.
    values : bool
        Also write each node's forward value z^t (above the node, in grey). Node sums and
        values are written for columns of at most MAX_LABELLED_NODES nodes.
    ax : matplotlib Axes, optional
        Draw here instead of on a new Figure.

    Returns
    -------
    matplotlib.figure.Figure
        Edge colour: the message's sign and size on a diverging scale (colour bar); edge
        width: |δ| (legend); node colour and the number beside it: the sum S^t arriving there.
        Each layer's edges are one LineCollection with gid ``"messages-t"``; each column's
        nodes a scatter with gid ``"nodes-t"`` and its sums texts with gid ``"sums-t"``.
    """
    trace = trace.as_floats()   # exact or mp numbers are drawn as floats
    check_sample(trace, sample)
    if max_edges is not None:
        positive_int(max_edges, "max_edges", noun="integer or None")
    per_layer = network_edges(trace, sample)
    everything = np.concatenate([layer[4] for layer in per_layer])
    total = everything.size
    keep = strongest(everything, max_edges)
    incoming = [_pick(trace.incoming[t + 1], sample) for t in range(trace.T + 1)]
    norm = symmetric_norm(np.concatenate([everything, *incoming]))
    columns = trace.T + 1
    fig, ax = new_axes(ax, figsize=(max(6.0, 1.7 * columns), 5.2))
    start = 0
    for t, (x0, y0, x1, y1, message) in enumerate(per_layer, 1):
        chosen = keep[start:start + message.size]
        start += message.size
        order = np.argsort(np.abs(message[chosen]), kind="stable")  # strongest on top
        segments = np.stack([np.stack([x0, y0], 1), np.stack([x1, y1], 1)], 1)[chosen][order]
        strength = np.abs(message[chosen][order]) / norm.vmax
        ax.add_collection(LineCollection(
            segments, colors=CMAP(norm(message[chosen][order])),
            linewidths=0.4 + 3.0 * strength, zorder=1, gid=f"messages-{t}"))
    drawn = int(keep.sum())
    _draw_nodes(ax, trace, sample, incoming, norm, values)
    for t in range(1, trace.T + 1):
        ax.text(t - 0.5, 1.22, trace.labels[t - 1], ha="center", va="bottom",
                fontsize=LABEL_SIZE, rotation=0 if len(trace.labels[t - 1]) < 14 else 12)
    for t in range(columns):
        width = trace.values[t].shape[1]
        ax.text(t, -1.25, f"$z^{{{t}}}$  ({width})", ha="center", va="top", fontsize=LABEL_SIZE)
    ax.set_xlim(-0.4, columns - 0.6)
    ax.set_ylim(-1.45, 1.45)
    ax.axis("off")
    which = "mean over the batch" if sample == "mean" else f"sample {sample}"
    title = f"backward messages $\\delta^t$, {which}: {drawn:,} of {total:,} edges drawn"
    if drawn < total:
        title += f" (the strongest; {total - drawn:,} left out)"
    ax.set_title(title, fontsize=TEXT_SIZE + 1)
    colorbar = fig.colorbar(_mappable(norm), ax=ax, fraction=0.03, pad=0.01)
    colorbar.set_label("message δ and node sum S (colour: sign and size)", fontsize=LABEL_SIZE)
    colorbar.ax.tick_params(labelsize=LABEL_SIZE)
    if np.any(everything != 0):
        legend = [Line2D([], [], color="0.3", linewidth=0.4 + 3.0 * f,
                         label=f"|δ| = {fmt(f * norm.vmax)}") for f in (1.0, 0.5, 0.1)]
        ax.legend(handles=legend, loc="lower left", fontsize=LABEL_SIZE, frameon=False,
                  bbox_to_anchor=(0.0, -0.12), ncol=3, title="edge width",
                  title_fontsize=LABEL_SIZE)
    else:
        ax.text(0.0, -1.42, "every message is 0", fontsize=LABEL_SIZE, va="bottom")
    return fig


def _pick(array: np.ndarray, sample) -> np.ndarray:
    return array.mean(axis=0) if sample == "mean" else array[sample]


LABEL_BOX = dict(boxstyle="square,pad=0.1", facecolor="white", edgecolor="none", alpha=0.75)


def _draw_nodes(ax, trace, sample, incoming, norm: Normalize, values: bool) -> None:
    for t in range(trace.T + 1):
        here = incoming[t]
        y = _column_y(here.size)
        ax.scatter(np.full(here.size, float(t)), y, s=60 if here.size <= 40 else 12,
                   c=CMAP(norm(here)), edgecolors="0.25" if here.size <= 40 else "none",
                   linewidths=0.6, zorder=3, gid=f"nodes-{t}")
        if here.size <= MAX_LABELLED_NODES:
            for yy, s in zip(y, here, strict=True):
                ax.text(t + 0.06, yy - 0.02, fmt(s), fontsize=TEXT_SIZE - 1, va="top",
                        ha="left", zorder=4, bbox=LABEL_BOX, gid=f"sums-{t}")
        if values and here.size <= MAX_LABELLED_NODES:
            for yy, v in zip(y, _pick(trace.values[t], sample), strict=True):
                ax.text(t - 0.06, yy + 0.03, fmt(v), fontsize=TEXT_SIZE - 1, va="bottom",
                        ha="right", color="0.45", zorder=4, bbox=LABEL_BOX)


def _mappable(norm):
    from matplotlib.cm import ScalarMappable
    return ScalarMappable(norm=norm, cmap=CMAP)
