"""Shared drawing conventions: one diverging colour map, symmetric scales, small readable text."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

__all__ = ["CMAP", "FORWARD_COLOUR", "BACKWARD_COLOUR", "TEXT_SIZE", "LABEL_SIZE",
           "symmetric_norm", "fmt", "new_axes", "save"]

CMAP = colormaps["RdBu_r"]   # red positive, blue negative, white zero
FORWARD_COLOUR = "0.15"      # forward values, as the textbooks print them: black above the arrow
BACKWARD_COLOUR = "#c0392b"  # messages: red below the arrow
TEXT_SIZE = 8
LABEL_SIZE = 7


def symmetric_norm(values) -> Normalize:
    """A colour scale from −m to m, m the largest |value| (1 if all are zero)."""
    values = np.asarray(values, dtype=float)
    top = float(np.max(np.abs(values))) if values.size else 0.0
    top = top if top > 0 else 1.0
    return Normalize(vmin=-top, vmax=top)


def fmt(value) -> str:
    """A number in four significant digits; small vectors in brackets."""
    a = np.asarray(value, dtype=float) + 0.0  # + 0.0 turns −0 into 0
    if a.size == 1:
        return f"{float(a.reshape(())):.4g}"
    if a.size <= 4:
        return "[" + ", ".join(f"{v:.3g}" for v in a.ravel()) + "]"
    return f"[{a.size} values, |·|max {np.max(np.abs(a)):.3g}]"


def new_axes(ax, figsize):
    """(figure, axes): the given axes' figure, or a new Figure (no pyplot, no display)."""
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, dpi=100, layout="constrained")
    return fig, fig.add_subplot()


def save(fig: Figure, path) -> None:
    """Save deterministically: no version or date in the file, so it is byte-stable."""
    fig.savefig(path, metadata={"Software": None}, dpi=fig.dpi)
