"""Peak memory and time of a wide elementwise graph: backward, reading every edge, verify.

    python benchmarks/bench_graph_memory.py [--width 20000] [--numeric]

A (1, width) input through ten elementwise ops (sigmoid, tanh, exp, scale, sigmoid, shift,
log, tanh, square, sigmoid). Each step's peak is measured by tracemalloc (numpy's arrays are
traced), in one process. A dense block of this width would be width² · 8 bytes (3.2 GB at
20,000). verify runs the backprop, layered-view and path-sum witnesses; ``--numeric`` adds the
numerical one, which perturbs every entry of every node (slow at large widths).
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

import msgpass as mp


def measure(label: str, run):
    tracemalloc.start()
    start = time.perf_counter()
    try:
        result = run()
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"{label:<10} peak {peak / 2**20:8.1f} MiB   {seconds:7.2f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=20_000)
    parser.add_argument("--numeric", action="store_true")
    args = parser.parse_args()
    g = mp.Graph()
    h = g.input("x", np.random.default_rng(0).uniform(0.5, 1.5, (1, args.width)))
    for op in (mp.sigmoid, mp.tanh, mp.exp, lambda v: v * 0.5, mp.sigmoid,
               lambda v: v + 1.0, mp.log, mp.tanh, lambda v: v * v, mp.sigmoid):
        h = op(h)
    print(f"width {args.width:,}: a dense block would be {args.width**2 * 8 / 2**20:,.0f} MiB")
    trace = measure("backward", lambda: g.backward(h))
    measure("edges", lambda: [e.block.values.sum() for e in trace.edges])
    measure("layered", lambda: trace.layered)
    report = measure("verify", lambda: mp.verify(g, h, numeric=args.numeric))
    print(report.verdict())


if __name__ == "__main__":
    main()
