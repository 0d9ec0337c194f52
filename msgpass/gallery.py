"""The gallery: every figure in figures/, made the same way each time (``msgpass figures
[--out DIR]``). It sits above drawing and training (the LeNet-5 figures train their network
first), below the public API.

Fixed networks, fixed seeds, the object API on the Agg canvas (no display), and PNGs saved
without version or date metadata, so a rerun writes the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .demos import DEMOS
from .draw.animation import animate_backward
from .draw.feature_maps import (
    animate_feature_maps,
    draw_conv_fan,
    draw_feature_maps,
    draw_saliency,
)
from .draw.graph import draw_graph
from .draw.network import draw_network
from .draw.panels import draw_message_panels
from .draw.style import save
from .draw.verification import draw_verification
from .spec import build_network
from .testing import random_batch
from .training import optim, train
from .training.data import Dataset, load_mnist
from .verification import verify

__all__ = ["make_figures", "rendering_stack", "arithmetic_fingerprint", "ROUNDOFF_FIGURES",
           "FIGURE_SPEC", "WIDE_SPEC", "LENET_FIGURES", "lenet_trace", "find_mnist"]

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


# The LeNet-5 figures: a LeNet-5 trained for one epoch on the first 3,000 MNIST training
# images by messages (a few seconds), then the backward of four test digits
LENET_FIGURES = ("lenet5-feature-maps.png", "lenet5-saliency.png", "lenet5-conv-fan.png",
                 "lenet5-backward.gif")
LENET_TRAIN_IMAGES = 3000


def find_mnist(path=None) -> Path | None:
    """The MNIST directory for the LeNet-5 figures: ``path``, else $MSGPASS_MNIST, else the
    data beside a checkout (``../shared/data/mnist``, from the package's checkout or from the
    working directory: an installed package lives in site-packages, not in the checkout);
    None if there is none."""
    import os
    candidates = [path, os.environ.get("MSGPASS_MNIST"),
                  Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist",
                  Path.cwd().parent / "shared" / "data" / "mnist"]
    for candidate in candidates:
        if candidate is not None and (Path(candidate) / "t10k-images-idx3-ubyte.gz").exists():
            return Path(candidate)
    return None


def lenet_trace(mnist: Path, samples: int = 4):
    """(network, trace, labels): LeNet-5 trained one epoch by messages on the first 3,000
    MNIST training images (Adam, lr 3e-3, batch 64, seed 0), then a full backward of the
    first ``samples`` test digits."""
    full = load_mnist("train", mnist)
    data = Dataset(full.x[:LENET_TRAIN_IMAGES], full.y[:LENET_TRAIN_IMAGES], "mnist-3000")
    net = build_network("lenet5", seed=SEED)
    train(net, optim.Adam(net.params, lr=3e-3), data, epochs=1, batch_size=64, seed=SEED)
    test = load_mnist("test", mnist)
    net.forward(test.x[:samples], test.y[:samples])
    return net, net.backward(), test.y[:samples]


# Figures whose data are measured round-off (errors near u), or come from a network trained by
# many steps that carry it (the LeNet-5 figures): the same code draws other dots on a CPU
# whose BLAS kernel or SIMD width sums in another order.
ROUNDOFF_FIGURES = ("verification.png", *LENET_FIGURES)


def make_figures(out: str | Path = "figures", mnist=None) -> list[Path]:
    """Draw every figure into ``out`` and record the rendering stack (first line) and the
    arithmetic fingerprint (second line) in VERSIONS.txt; returns the paths written. The
    LeNet-5 figures need MNIST (``find_mnist``); without it they are not drawn."""
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
    keep(draw_network(trace, "mean"), "network-mean.png")
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
    directory = find_mnist(mnist)
    if directory is not None:
        _, lenet, labels = lenet_trace(directory)
        keep(draw_feature_maps(lenet, 0), "lenet5-feature-maps.png")
        keep(draw_saliency(lenet, range(4), labels), "lenet5-saliency.png")
        keep(draw_conv_fan(lenet, 4, None, 0), "lenet5-conv-fan.png")
        written.append(animate_feature_maps(lenet, out / "lenet5-backward.gif"))
    return written
