"""The gallery: every figure in figures/, made the same way each time (``msgpass figures
[--out DIR]``).

Fixed networks, fixed seeds, the object API on the Agg canvas (no display), and PNGs saved
without version or date metadata, so a rerun writes the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..demos import DEMOS
from ..spec import build_network
from ..testing import random_batch
from ..verification import verify
from .animation import animate_backward
from .graph import draw_graph
from .network import draw_network
from .panels import draw_message_panels
from .style import save
from .verification import draw_verification

__all__ = ["make_figures", "rendering_stack", "arithmetic_fingerprint", "ROUNDOFF_FIGURES",
           "FIGURE_SPEC", "WIDE_SPEC"]

FIGURE_SPEC = "4-6-relu-5-tanh-3-sce"   # small enough to read every edge and node sum
WIDE_SPEC = "64-48-relu-10-sce"         # wide: only the strongest edges are drawn
SEED = 0


def _chain(spec: str, batch: int):
    net = build_network(spec, seed=SEED)
    x, target = random_batch(net, batch, np.random.default_rng(SEED))
    net.forward(x, target)
    return net, x, target, net.backward()


def rendering_stack() -> str:
    """The libraries that decide the pixels: same stack, same bytes."""
    import matplotlib
    import PIL
    from matplotlib import ft2font
    return (f"matplotlib {matplotlib.__version__}, freetype {ft2font.__freetype_version__}, "
            f"pillow {PIL.__version__}")


def arithmetic_fingerprint() -> str:
    """numpy's version and a hash of a fixed float64 matrix product and reduction: it changes
    with the BLAS kernel and the SIMD paths numpy picks for this CPU, which decide the last
    bits of a sum and so the round-off that verification figures plot."""
    import hashlib
    a = np.random.default_rng(0).standard_normal((67, 67))
    digest = hashlib.sha256((a @ a).tobytes() + np.add.reduce(a * a, axis=1).tobytes())
    return f"numpy {np.__version__}, arithmetic {digest.hexdigest()[:12]}"


# Figures whose data are measured round-off (errors near u): the same code draws other dots on
# a CPU whose BLAS kernel or SIMD width sums in another order.
ROUNDOFF_FIGURES = ("verification.png",)


def make_figures(out: str | Path = "figures") -> list[Path]:
    """Draw every figure into ``out`` and record the rendering stack (first line) and the
    arithmetic fingerprint (second line) in VERSIONS.txt; returns the paths written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "VERSIONS.txt").write_text(f"{rendering_stack()}\n{arithmetic_fingerprint()}\n",
                                      encoding="utf-8")
    written = []

    def keep(fig, name):
        save(fig, out / name)
        written.append(out / name)

    net, x, target, trace = _chain(FIGURE_SPEC, batch=4)
    keep(draw_network(trace, 0, values=True), "network.png")
    keep(draw_message_panels(trace, 0), "message-panels.png")
    keep(draw_message_panels(trace, "mean"), "message-panels-mean.png")
    keep(draw_verification(verify(net, x, target)), "verification.png")
    written.append(animate_backward(trace, out / "backward.gif"))
    _, _, _, wide = _chain(WIDE_SPEC, batch=2)
    keep(draw_network(wide, 0), "network-wide.png")
    for name in ("apple", "staged"):
        graph, output = DEMOS[name].build()
        keep(draw_graph(graph.backward(output)), f"graph-{name}.png")
    graph, output = DEMOS["staged"].build()
    keep(draw_verification(verify(graph, output)), "verification-graph.png")
    return written
