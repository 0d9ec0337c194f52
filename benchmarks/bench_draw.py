"""Time drawing a network diagram with every one of 10,000+ edges (no edge limit).

    python benchmarks/bench_draw.py [--width 100] [--repeat 3]

The network is WIDTH-WIDTH-relu-WIDTH-sce: 2·WIDTH² + 2·WIDTH edges (20,200 at width 100).
It prints the edges drawn and the time to draw and to render a PNG (median of the repeats).
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np

import msgpass as mp
from msgpass.draw import draw_network, save
from msgpass.testing import random_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    w = args.width
    net = mp.build_network(f"{w}-{w}-relu-{w}-sce", seed=0)
    x, target = random_batch(net, 2, np.random.default_rng(0))
    net.forward(x, target)
    trace = net.backward()
    draws, renders, drawn = [], [], 0
    for _ in range(args.repeat):
        start = time.perf_counter()
        fig = draw_network(trace, 0, max_edges=None)
        middle = time.perf_counter()
        save(fig, io.BytesIO())
        end = time.perf_counter()
        draws.append(middle - start)
        renders.append(end - middle)
        drawn = sum(len(c.get_segments()) for c in fig.axes[0].collections
                    if (c.get_gid() or "").startswith("messages-"))
    draw, render = np.median(draws), np.median(renders)
    print(f"{net.spec}: {drawn:,} edges drawn; draw {draw:.2f} s, render PNG {render:.2f} s, "
          f"total {draw + render:.2f} s (median of {args.repeat})")


if __name__ == "__main__":
    main()
