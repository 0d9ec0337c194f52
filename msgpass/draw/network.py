"""The network diagram: layers as columns of nodes, every edge coloured and sized by its message.

Reads a finished Trace; knows nothing of how it was computed. Uses matplotlib's object API
(``matplotlib.figure.Figure``), never pyplot, so it needs no display and draws the same pixels
every time.
"""

from __future__ import annotations

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..validate import positive_int
from .style import CMAP, LABEL_SIZE, TEXT_SIZE, fmt, new_axes, symmetric_norm

__all__ = ["draw_network", "network_edges", "layer_norms", "check_scale", "MAX_EDGES",
           "MAX_LABELLED_NODES", "SCALES"]

MAX_EDGES = 2000          # beyond this many edges only the strongest are drawn (the figure says so)
MAX_LABELLED_NODES = 12   # node sums are written at the nodes of columns up to this tall
# "global": one colour scale for every layer, so layers compare; "layer": each layer on its
# own, for networks whose layers' messages differ by orders of magnitude
SCALES = ("global", "layer")
WIDTH_MIN, WIDTH_GAIN = 0.4, 3.0   # edge width in points: WIDTH_MIN + WIDTH_GAIN·|δ|/max|δ|
LONG_LABEL = 22   # characters of a layer name that fit between two columns at LABEL_SIZE


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


def check_scale(scale) -> None:
    """``scale`` must be one of SCALES."""
    if not isinstance(scale, str) or scale not in SCALES:
        raise ValueError(f"scale must be 'global' or 'layer', got {scale!r}")


def layer_norms(blocks, scale: str = "global") -> list[Normalize]:
    """One symmetric colour scale per layer, from that layer's messages (``scale="layer"``)
    or all layers' (``"global"``, the same scale repeated). Messages only: a node's sum or
    the loss's seed 1/B would pin the scale above every message of a batch mean."""
    check_scale(scale)
    if scale == "layer":
        return [symmetric_norm(np.ravel(block)) for block in blocks]
    shared = symmetric_norm(np.concatenate([np.ravel(block) for block in blocks]))
    return [shared] * len(blocks)


def strongest(messages: np.ndarray, limit: int | None) -> np.ndarray:
    """Boolean mask of the ``limit`` largest |messages| over all layers at once (ties broken
    by position, so the choice is reproducible); all True when there are fewer."""
    keep = np.ones(messages.size, dtype=bool)
    if limit is not None and messages.size > limit:
        keep[:] = False
        keep[np.argsort(-np.abs(messages), kind="stable")[:limit]] = True
    return keep


def draw_network(trace, sample: int | str = 0, *, max_edges: int | None = MAX_EDGES,
                 values: bool = False, scale: str = "global", ax=None) -> Figure:
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
    scale : "global" or "layer"
        One colour (and width) scale for all layers, ±max |δ| over the drawn messages, so
        layers compare; or each layer on its own ±max |δ|, written above the layer, for
        networks whose layers differ by orders of magnitude. Node sums share the scale of
        the messages that arrive at them and saturate beyond it.
    ax : matplotlib Axes, optional
        Draw here instead of on a new Figure.

    Returns
    -------
    matplotlib.figure.Figure
        Edge colour: the message's sign and size on a diverging scale (colour bar); edge
        width: |δ| (legend); node colour and the number beside it: the sum S^t arriving there.
        Each layer's edges are one LineCollection with gid ``"messages-t"`` (its ``norm`` is
        the layer's colour scale); each column's nodes a scatter with gid ``"nodes-t"`` and
        its sums texts with gid ``"sums-t"``.
    """
    trace = trace.as_floats()   # exact or mp numbers are drawn as floats
    check_sample(trace, sample)
    check_scale(scale)
    if max_edges is not None:
        positive_int(max_edges, "max_edges", noun="integer or None")
    per_layer = network_edges(trace, sample)
    norms = layer_norms([layer[4] for layer in per_layer], scale)
    everything = np.concatenate([layer[4] for layer in per_layer])
    keep = strongest(everything, max_edges)
    incoming = [_pick(trace.incoming[t + 1], sample) for t in range(trace.T + 1)]
    columns = trace.T + 1
    fig, ax = new_axes(ax, figsize=(max(6.0, 1.45 * columns), 5.0))
    start = 0
    for t, (layer, norm) in enumerate(zip(per_layer, norms, strict=True), 1):
        chosen = keep[start:start + layer[4].size]
        start += layer[4].size
        _draw_edges(ax, t, layer, chosen, norm)
    # column t holds z^t and the sums of layer t+1's messages: their scale; the loss's seed
    # takes the last layer's
    _draw_nodes(ax, trace, sample, incoming, norms + norms[-1:], values)
    _label_layers(ax, trace, norms if scale == "layer" else None)
    ax.set_xlim(-0.3, columns - 0.55)
    ax.set_ylim(-1.32, 1.42)
    ax.axis("off")
    drawn, total = int(keep.sum()), everything.size
    which = "mean over the batch" if sample == "mean" else f"sample {sample}"
    title = f"backward messages $\\delta^t$, {which}: {drawn:,} of {total:,} edges drawn"
    if drawn < total:
        title += f" (the strongest; {total - drawn:,} left out)"
    ax.set_title(title, fontsize=TEXT_SIZE + 1)
    _colour_bar(fig, ax, norms, scale, incoming)
    _width_legend(ax, norms[0].vmax if scale == "global" else None,
                  bool(np.any(everything != 0)))
    return fig


def _draw_edges(ax, t: int, layer, chosen: np.ndarray, norm: Normalize) -> None:
    """Layer t's chosen edges, strongest on top: colour by ``norm``, width by |δ|."""
    x0, y0, x1, y1, message = layer
    order = np.argsort(np.abs(message[chosen]), kind="stable")
    segments = np.stack([np.stack([x0, y0], 1), np.stack([x1, y1], 1)], 1)[chosen][order]
    shown = message[chosen][order]
    edges = LineCollection(segments, array=shown, cmap=CMAP, norm=norm,
                           linewidths=WIDTH_MIN + WIDTH_GAIN * np.abs(shown) / norm.vmax,
                           zorder=1, gid=f"messages-{t}")
    edges.update_scalarmappable()   # colours now, so they can be read before drawing
    ax.add_collection(edges)


def _label_layers(ax, trace, norms: list[Normalize] | None) -> None:
    """Each layer's name above it (with its own scale, when it has one), each column's z^t
    and width below it."""
    for t in range(1, trace.T + 1):
        label = trace.labels[t - 1]
        if norms is not None:
            label += f"\n|δ| ≤ {fmt(norms[t - 1].vmax)}"
        ax.text(t - 0.5, 1.13, label, ha="center", va="bottom", fontsize=LABEL_SIZE,
                rotation=0 if len(trace.labels[t - 1]) <= LONG_LABEL else 12, linespacing=1.3)
    for t in range(trace.T + 1):
        width = trace.values[t].shape[1]
        ax.text(t, -1.14, f"$z^{{{t}}}$  ({width})", ha="center", va="top", fontsize=LABEL_SIZE)


def _colour_bar(fig, ax, norms, scale: str, incoming) -> None:
    """One colour bar: the messages' scale, or under scale="layer" the fraction of each
    layer's own max |δ|; arrows at its ends where node sums go beyond it."""
    beyond = any(np.max(np.abs(s), initial=0.0) > norm.vmax
                 for s, norm in zip(incoming, norms + norms[-1:], strict=True))
    shown = norms[0] if scale == "global" else Normalize(-1.0, 1.0)
    bar = fig.colorbar(ScalarMappable(norm=shown, cmap=CMAP), ax=ax, fraction=0.03, pad=0.01,
                       extend="both" if beyond else "neither")
    bar.set_label("message δ and node sum S" if scale == "global"
                  else "δ and S as a fraction of their layer's max |δ|", fontsize=LABEL_SIZE)
    bar.ax.tick_params(labelsize=LABEL_SIZE)


def _width_legend(ax, top: float | None, any_message: bool) -> None:
    """Edge widths for |δ| at 1, ½ and 0.1 of the scale (``top``, or each layer's own max),
    below the drawing, inside the figure."""
    if not any_message:
        ax.text(0.0, -1.3, "every message is 0", fontsize=LABEL_SIZE, va="bottom")
        return
    handles = [Line2D([], [], color="0.3", linewidth=WIDTH_MIN + WIDTH_GAIN * f,
                      label=f"|δ| = {fmt(f * top)}" if top is not None else
                      f"|δ| = {f:g} × its layer's max") for f in (1.0, 0.5, 0.1)]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3,
              fontsize=LABEL_SIZE, frameon=False, title="edge width", title_fontsize=LABEL_SIZE,
              borderaxespad=0.2)


def _pick(array: np.ndarray, sample) -> np.ndarray:
    return array.mean(axis=0) if sample == "mean" else array[sample]


LABEL_BOX = dict(boxstyle="square,pad=0.1", facecolor="white", edgecolor="none", alpha=0.75)


def _draw_nodes(ax, trace, sample, incoming, norms: list[Normalize], values: bool) -> None:
    for t, norm in enumerate(norms):
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
