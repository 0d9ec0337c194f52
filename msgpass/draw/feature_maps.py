"""Drawings of convolutional traces: the sums S^t arriving at every channel of every image
layer as heat maps, the input saliency S^1, one conv output unit's messages fanning into its
receptive field, and the backward pass of a conv net as an animation of those heat maps.

They read a finished trace (its values, sums and kept window blocks) and nothing else.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.animation import FuncAnimation, PillowWriter
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..errors import StateError
from ..trace import Trace
from .style import CMAP, LABEL_SIZE, TEXT_SIZE, symmetric_norm

__all__ = ["draw_feature_maps", "draw_saliency", "draw_conv_fan", "animate_feature_maps",
           "image_steps"]


def _chain(trace, sample: int | None = None) -> None:
    """Refuse what these drawings cannot read: a graph's trace, a sample outside the batch."""
    if not isinstance(trace, Trace):
        raise StateError(f"feature maps draw a Sequential's trace, got a "
                         f"{type(trace).__name__} (draw a graph's with draw_graph)")
    if sample is not None and (not isinstance(sample, (int, np.integer))
                               or isinstance(sample, bool) or not 0 <= sample < trace.batch):
        raise ValueError(f"sample must be a sample index 0..{trace.batch - 1}, got "
                         f"{sample!r}")


def image_steps(trace) -> list[int]:
    """The values z^t that are images and worth a row: the input (t = 0) and the output of
    every convolution and pool, from the top of the network down."""
    _chain(trace)
    shapes = trace.shapes
    if not shapes or len(shapes[0]) != 3:
        raise StateError("this trace's input is not an image (B, C, H, W): feature maps need "
                         "a convolutional network")
    chosen = [t for t in range(1, trace.T)
              if len(shapes[t]) == 3 and trace.partials[t - 1].inputs.kind in ("window", "route")]
    return sorted(chosen, reverse=True) + [0]


def _maps(trace, t: int, sample: int) -> np.ndarray:
    """S^{t+1} at z^t for one sample, (C, H, W): ∂L/∂z^t per channel."""
    return np.asarray(trace.incoming(t + 1)[sample], dtype=float)


def _row_title(trace, t: int) -> str:
    if t == 0:
        return "input saliency $S^1$ = ∂L/∂x"
    return f"$S^{{{t + 1}}}$ at the output of layer {t}, {trace.labels[t - 1]}"


def draw_feature_maps(trace, sample: int = 0, *, hidden: set[int] | None = None) -> Figure:
    """S^{t+1} = ∂L/∂z^t per channel, one row per image value z^t from the top of the network
    down (``image_steps``), ending in the input saliency S^1; each row on its own symmetric
    colour scale (red: raising that entry raises the loss). ``hidden`` rows are drawn blank
    (the animation's frames before their messages arrive)."""
    _chain(trace, sample)
    trace = trace.as_floats()
    steps = image_steps(trace)
    columns = max(trace.shapes[t][0] for t in steps)
    # 0.62 in per map keeps sixteen channels within a 900-px notebook cell at legible sizes
    fig = Figure(figsize=(1.0 + 0.62 * columns, 0.55 + 1.0 * len(steps)), dpi=100,
                 layout="constrained")
    grid = fig.subplots(len(steps), columns + 1, squeeze=False,
                        gridspec_kw={"width_ratios": [1] * columns + [0.12]})
    for row, t in zip(grid, steps, strict=True):
        maps = _maps(trace, t, sample)
        norm = symmetric_norm(maps)
        shown = hidden is None or t not in hidden
        for c, ax in enumerate(row[:-1]):
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(maps):
                ax.set_axis_off()
                continue
            image = ax.imshow(maps[c] if shown else np.zeros_like(maps[c]), cmap=CMAP,
                              norm=norm, interpolation="nearest")
            if c == 0:
                ax.set_ylabel(f"$z^{{{t}}}$" if t else "$x$", fontsize=LABEL_SIZE)
            ax.set_title(f"ch {c}", fontsize=LABEL_SIZE, pad=2)
        colorbar = fig.colorbar(image, cax=row[-1])
        _few_ticks(colorbar)
        note = row[0].annotate(_row_title(trace, t) + ("" if shown else ": not yet arrived"),
                               (0, 1), xycoords="axes fraction", xytext=(0, 11),
                               textcoords="offset points", fontsize=LABEL_SIZE, ha="left",
                               va="bottom")
        note.set_in_layout(False)     # a row's title runs over its row, not its first column
    fig.suptitle(f"backward pass as feature maps, sample {sample}: what arrives at each "
                 f"channel (∂L/∂z)", fontsize=TEXT_SIZE)
    return fig


def _few_ticks(colorbar) -> None:
    """Three ticks, −t, 0 and t with t = 0.8·max in one significant digit: a short colour bar
    beside a row of maps has no room for more, and labels kept off its ends stay clear of
    the next row's."""
    top = 0.8 * colorbar.norm.vmax
    tick = float(f"{top:.1g}")
    colorbar.set_ticks([-tick, 0.0, tick], labels=[f"{-tick:g}", "0", f"{tick:g}"])
    colorbar.ax.tick_params(labelsize=LABEL_SIZE)


def draw_saliency(trace, samples=(0, 1, 2, 3), labels=None) -> Figure:
    """For a few samples: the input image, and the sum arriving at each input pixel,
    S^1 = ∂L/∂x (its saliency map), on the sample's own symmetric scale."""
    _chain(trace)
    samples = list(samples)
    for b in samples:
        _chain(trace, b)
    if labels is not None and len(labels) < max(samples) + 1:
        raise ValueError(f"labels has {len(labels)} entries; samples go up to {max(samples)}")
    trace = trace.as_floats()
    x = np.asarray(trace.value(0), dtype=float)
    if x.ndim != 4:
        raise StateError("saliency maps need an image input (B, C, H, W)")
    S = np.asarray(trace.incoming(1), dtype=float)
    fig = Figure(figsize=(0.4 + 1.55 * len(samples), 3.5), dpi=100, layout="constrained")
    axes = fig.subplots(2, len(samples), squeeze=False)
    for k, b in enumerate(samples):
        top, bottom = axes[0, k], axes[1, k]
        top.imshow(x[b, 0], cmap="gray_r", interpolation="nearest")
        label = "" if labels is None else f", label {labels[b]}"
        top.set_title(f"sample {b}{label}", fontsize=LABEL_SIZE)
        bottom.imshow(S[b, 0], cmap=CMAP, norm=symmetric_norm(S[b, 0]),
                              interpolation="nearest")
        bottom.set_title(f"$S^1$, |max| {np.max(np.abs(S[b, 0])):.2g}", fontsize=LABEL_SIZE)
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("input saliency: the messages' sums at the pixels, each map on its own "
                 "scale (red: raising the pixel raises the loss)", fontsize=TEXT_SIZE)
    return fig


def draw_conv_fan(trace, t: int, unit: tuple[int, int, int] | None = None,
                  sample: int = 0) -> Figure:
    """The messages one output unit (c', i', j') of convolution layer t sends back: each
    input channel's map z^{t-1} with the unit's receptive field outlined and its kh × kw
    messages W[c', c, u, v] · S^{t+1}_{c',i',j'} drawn on it, on one symmetric scale. By
    default the unit that received the largest |S|."""
    _chain(trace)
    trace = trace.as_floats()
    block = trace.block(t)
    J = block.partials
    if J.kind != "window" or J.depthwise:
        raise StateError(f"layer {t} ({trace.labels[t - 1]}) is not a convolution: its "
                         f"messages are not one unit's taps over every input channel")
    _chain(trace, sample)
    row = block.row(sample)      # StateError naming the kept samples, with keep_samples
    arriving = np.asarray(trace.incoming(t + 1)[sample], dtype=float)
    if unit is None:
        unit = np.unravel_index(np.argmax(np.abs(arriving)), arriving.shape)
    if len(tuple(unit)) != 3 or not all(0 <= int(k) < n for k, n in zip(unit, J.output,
                                                                         strict=False)):
        raise ValueError(f"unit must be (channel, row, col) of layer {t}'s output "
                         f"{J.output}, got {tuple(unit)!r}")
    c_out, i_out, j_out = (int(k) for k in unit)
    messages = np.asarray(block.values[row, c_out, i_out, j_out], dtype=float)  # (C, kh, kw)
    C, H, W = J.image
    kh, kw = J.kernel
    top = J.stride[0] * i_out - J.padding[0]
    left = J.stride[1] * j_out - J.padding[1]
    values = np.asarray(trace.value(t - 1)[sample], dtype=float)
    fig = Figure(figsize=(max(6.5, 0.6 + 1.7 * C), 2.7), dpi=100, layout="constrained")
    axes = fig.subplots(1, C, squeeze=False)[0]
    norm = symmetric_norm(messages)
    arrived = float(arriving[c_out, i_out, j_out])
    for c, ax in enumerate(axes):
        fan = np.full((H, W), np.nan)
        for u in range(kh):
            for v in range(kw):
                if 0 <= top + u < H and 0 <= left + v < W:
                    fan[top + u, left + v] = messages[c, u, v]
        ax.imshow(values[c], cmap="gray_r", interpolation="nearest", alpha=0.35)
        image = ax.imshow(fan, cmap=CMAP, norm=norm, interpolation="nearest")
        ax.add_patch(Rectangle((left - 0.5, top - 0.5), kw, kh, fill=False, lw=1.2,
                               edgecolor="0.1"))
        ax.set_title(f"input channel {c}", fontsize=LABEL_SIZE)
        ax.set_xticks([])
        ax.set_yticks([])
    colorbar = fig.colorbar(image, ax=axes.tolist(), shrink=0.85)
    _few_ticks(colorbar)
    fig.suptitle(f"layer {t}, {trace.labels[t - 1]}: output unit (channel {c_out}, row "
                 f"{i_out}, col {j_out}) holds S = {arrived:.3g}\nand sends W·S to its "
                 f"{kh}×{kw} receptive field in every input channel", fontsize=TEXT_SIZE)
    return fig


def animate_feature_maps(trace, path, sample: int = 0, fps: float = 1.0) -> Path:
    """A GIF of the backward pass of a conv net: frame 0 shows nothing arrived; each next
    frame shows the sums at one more image value, from the top of the network down to the
    input saliency. Returns the path written."""
    steps = image_steps(trace)
    fig = draw_feature_maps(trace, sample)
    FigureCanvasAgg(fig)
    rows = [[ax for ax in fig.axes if ax.images and ax.get_subplotspec().rowspan.start == r]
            for r in range(len(steps))]
    data = [[ax.images[-1].get_array().copy() for ax in row] for row in rows]
    notes = [next(text for text in row[0].texts) for row in rows]
    titles = [note.get_text() for note in notes]

    def frame(k: int):
        for r, row in enumerate(rows):
            here = r < k
            for ax, array in zip(row, data[r], strict=True):
                ax.images[-1].set_data(array if here else np.zeros_like(array))
            notes[r].set_text(titles[r] if here else titles[r] + ": not yet arrived")
        return []

    path = Path(path)
    FuncAnimation(fig, frame, frames=len(steps) + 1, blit=False).save(
        path, writer=PillowWriter(fps=fps), dpi=fig.dpi)
    return path
