"""The backward pass as an animation: the messages appear level by level, from the loss down,
and each column of nodes shows its sum only once the messages from above have arrived."""

from __future__ import annotations

from pathlib import Path

from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.backends.backend_agg import FigureCanvasAgg

from .network import draw_network

__all__ = ["animate_backward"]


def animate_backward(trace, path, *, sample: int | str = 0, fps: float = 1.0,
                     max_edges: int | None = None) -> Path:
    """Write a GIF: frame 0 shows the network with only the seed at the loss; frame k adds the
    messages of layer T−k+1 and the sums they bring to column T−k; the last frame is
    ``draw_network``. Returns the path written."""
    trace = trace.as_floats()   # exact or mp numbers are drawn as floats
    kwargs = {} if max_edges is None else {"max_edges": max_edges}
    fig = draw_network(trace, sample, **kwargs)
    FigureCanvasAgg(fig)
    ax = fig.axes[0]
    layers = {c.get_gid(): c for c in ax.collections if (c.get_gid() or "").startswith("messages-")}
    nodes = {c.get_gid(): c for c in ax.collections if (c.get_gid() or "").startswith("nodes-")}
    colours = {gid: c.get_facecolors().copy() for gid, c in nodes.items()}
    sum_labels = [text for text in ax.texts if (text.get_gid() or "").startswith("sums-")]
    title = ax.get_title()

    def frame(k: int):
        shown = {f"messages-{t}" for t in range(trace.T - k + 1, trace.T + 1)}
        for gid, collection in layers.items():
            collection.set_visible(gid in shown)
        arrived = {f"{t}" for t in range(trace.T - k, trace.T + 1)}  # columns that have sums
        for gid, collection in nodes.items():
            here = gid.split("-")[1] in arrived
            collection.set_facecolors(colours[gid] if here else "white")
        for text in sum_labels:
            text.set_visible(text.get_gid().split("-")[1] in arrived)
        ax.set_title(title if k == trace.T else
                     f"backward pass: {k} of {trace.T} layers have sent their messages",
                     fontsize=ax.title.get_fontsize())
        return list(layers.values())

    path = Path(path)
    FuncAnimation(fig, frame, frames=trace.T + 1, blit=False).save(
        path, writer=PillowWriter(fps=fps), dpi=fig.dpi)
    return path
