"""Message tensor panels: one heat map per layer of the block δ^t (N_{t-1} × N_t)."""

from __future__ import annotations

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from .network import check_sample, layer_norms
from .style import CMAP, LABEL_SIZE, TEXT_SIZE, fmt

__all__ = ["draw_message_panels", "panel_blocks"]


def panel_blocks(trace, sample: int | str = 0) -> list[np.ndarray]:
    """The (N_{t-1}, N_t) block of every layer, for one sample or the batch mean."""
    trace = trace.as_floats()   # exact or mp numbers are drawn as floats
    return [trace.sample_messages(t, sample) for t in range(1, trace.T + 1)]


def draw_message_panels(trace, sample: int | str = 0, *, scale: str = "global") -> Figure:
    """One heat map per layer, on one shared symmetric colour scale (``scale="global"``) or
    each on its own ±max |δ| (``scale="layer"``, written in its title, for layers that differ
    by orders of magnitude; the colour bar then reads as a fraction of that max).

    Rows are the receiving nodes n of layer t−1, columns the sending nodes n' of layer t;
    an elementwise layer's block is zero off the diagonal, as it should be.
    """
    trace = trace.as_floats()   # exact or mp numbers are drawn as floats
    check_sample(trace, sample)
    blocks = panel_blocks(trace, sample)
    norms = layer_norms(blocks, scale)
    fig = Figure(figsize=(max(6.0, 1.75 * len(blocks) + 0.6), 2.9), dpi=100,
                 layout="constrained")
    axes = fig.subplots(1, len(blocks), squeeze=False)[0]
    for t, (ax, block, norm) in enumerate(zip(axes, blocks, norms, strict=True), 1):
        image = ax.imshow(block, cmap=CMAP, norm=norm, aspect="auto", interpolation="nearest")
        title = f"$\\delta^{{{t}}}$: {trace.labels[t - 1]}"
        if scale == "layer":
            title += f"\n|δ| ≤ {fmt(norm.vmax)}"
        ax.set_title(title, fontsize=LABEL_SIZE)
        ax.set_xlabel(f"n' (layer {t})", fontsize=LABEL_SIZE)
        ax.set_ylabel(f"n (layer {t - 1})", fontsize=LABEL_SIZE)
        ax.tick_params(labelsize=LABEL_SIZE)
        # node indices only, at most six per axis, never outside the block
        ax.set_xticks(_index_ticks(block.shape[1]))
        ax.set_yticks(_index_ticks(block.shape[0]))
    which = "mean over the batch" if sample == "mean" else f"sample {sample}"
    how = "one shared symmetric scale" if scale == "global" else "each layer on its own scale"
    fig.suptitle(f"message blocks $\\delta^t_{{n \\leftarrow n'}}$, {which}, {how}",
                 fontsize=TEXT_SIZE)
    shown = image if scale == "global" else ScalarMappable(Normalize(-1.0, 1.0), CMAP)
    bar = fig.colorbar(shown, ax=list(axes), fraction=0.02, pad=0.01)
    bar.set_label("δ" if scale == "global" else "δ / its layer's max |δ|", fontsize=LABEL_SIZE)
    bar.ax.tick_params(labelsize=LABEL_SIZE)
    return fig


def _index_ticks(size: int) -> np.ndarray:
    return np.unique(np.linspace(0, size - 1, min(size, 6)).round().astype(int))
