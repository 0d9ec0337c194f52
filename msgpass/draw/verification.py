"""The verification figure: each induction step's error on a log scale against its tolerance."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .style import LABEL_SIZE, TEXT_SIZE

__all__ = ["draw_verification", "EXACT_FLOOR"]

EXACT_FLOOR = 1e-18  # where an error of exactly 0 is plotted (log scales have no 0)
# one marker per witness, so a point says who checked it (the legend lists those present)
WITNESS_MARKERS = {"partials": "s", "backprop": "o", "layered": "D", "numeric": "^",
                   "pathsum": "v", "forward": "P", "torch": "*"}


def draw_verification(report) -> Figure:
    """One point per check: its max relative error (hollow when exactly 0), a dash at the
    tolerance it was held to; green when it holds, red when it fails, grey when the witness
    was inconclusive, a red cross at the top when the error is not finite. Checks run left to
    right as the proof does; each step is labelled."""
    checks = report.checks
    fig = Figure(figsize=(max(6.5, 0.11 * len(checks) + 3), 3.9), dpi=100,
                 layout="constrained")
    ax = fig.add_subplot()
    finite = [c.result.max_rel for c in checks if np.isfinite(c.result.max_rel)]
    top = max([10.0] + [3 * e for e in finite])
    for i, c in enumerate(checks):
        error = c.result.max_rel
        colour = ("#c0392b" if not c.ok else "0.6" if c.result.inconclusive else "#1e8449")
        if not np.isfinite(error):
            ax.plot([i], [top / 3], marker="x", markersize=6, color="#c0392b", linestyle="")
        else:
            ax.plot([i], [error if error > 0 else EXACT_FLOOR],
                    marker=WITNESS_MARKERS.get(c.witness, "o"), markersize=4, color=colour,
                    markerfacecolor="none" if error == 0 else colour, linestyle="")
        ax.plot([i - 0.35, i + 0.35], [c.tol.rtol, c.tol.rtol], color="0.3", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_ylim(EXACT_FLOOR / 3, top)
    ticks = [i for i, c in enumerate(checks) if c.part != "forward" and (
        i == 0 or c.column != checks[i - 1].column or c.layer != checks[i - 1].layer)]
    ax.set_xticks(ticks)
    ax.set_xticklabels([_short(checks[i]) for i in ticks], rotation=60, ha="right",
                       fontsize=LABEL_SIZE - 1)
    ax.tick_params(axis="y", labelsize=LABEL_SIZE)
    ax.set_ylabel("max relative error", fontsize=LABEL_SIZE)
    ax.set_xlabel("checks, in the order of the proof", fontsize=LABEL_SIZE)
    handles = [Line2D([], [], marker=m, linestyle="", color="0.3", markersize=4, label=w)
               for w, m in WITNESS_MARKERS.items() if any(c.witness == w for c in checks)]
    handles += [Line2D([], [], color="0.3", linewidth=0.8, label="tolerance (rtol)"),
                Line2D([], [], marker="o", linestyle="", color="#1e8449", markersize=4,
                       label="holds"),
                Line2D([], [], marker="o", linestyle="", color="#c0392b", markersize=4,
                       label="fails (× not finite)"),
                Line2D([], [], marker="o", linestyle="", color="0.6", markersize=4,
                       label="inconclusive")]
    fig.legend(handles=handles, fontsize=LABEL_SIZE, ncol=5, loc="outside lower center",
               frameon=False)
    verdict = report.verdict()
    ax.set_title(verdict.split(":")[0] + f": {sum(c.ok for c in checks)} of {len(checks)} "
                 f"checks hold (hollow: exactly 0)", fontsize=TEXT_SIZE)
    return fig


def _short(check) -> str:
    if check.part == "conclusion":
        return check.layer
    if check.t is not None:
        return f"t={check.t}"
    return check.layer
