"""verify on an expression graph as the batch grows: the numerical witness moves every sample
of a node at once, so verify at B = 3,000 should cost at most 5x verify at B = 30.

Run from the repository root (options: --batches 30,300,3000, --repeat 5, --quick,
--one-sample 300,3000):

    python benchmarks/bench_verify_graph.py

The graph is f = log(1 + exp(x·y)) / (x² + y² + 1) + tanh(x)·y with x and y of shape (B, 1): a
batch of B samples of one entry each (14 nodes). ``mp.verify(g, f)`` runs every graph witness
(backprop, numeric, layered, path sum, forward); each time is the median of --repeat runs,
interleaved across the batch sizes so that a noisy machine moves every size alike; each ratio
is to the smallest batch, measured in this one run. "evaluations" is the numerical witness's
count of forward evaluations (from verify's ``progress=`` callable), "no numeric" the same
verify with ``numeric=False``.

``--one-sample N,...`` adds rows for x and y given as 1-D arrays of N points: that is ONE
sample of width N (msgpass reads a 1-D array so), which the witness cannot move all at once;
it estimates at most ``numeric_entries`` (1,000) of its entries, entry by entry.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import msgpass as mp

TARGET = 5.0      # verify at the largest batch ÷ verify at the smallest, at most


def expression(shape: tuple[int, ...]):
    """The graph and its output, x and y seeded normal of ``shape``."""
    rng = np.random.default_rng(0)
    g = mp.Graph()
    x, y = g.input("x", rng.normal(size=shape)), g.input("y", rng.normal(size=shape))
    return g, mp.log(1 + mp.exp(x * y)) / (x ** 2 + y ** 2 + 1) + mp.tanh(x) * y


def timed(g, f, numeric: bool = True) -> tuple[float, int, bool]:
    """Seconds of one verify, its forward evaluations, and whether it VERIFIED."""
    planned = [0]

    def count(done: int, total: int) -> None:
        planned[0] = total
    start = time.perf_counter()
    report = mp.verify(g, f, numeric=numeric, progress=count)
    return time.perf_counter() - start, planned[0], report.ok


def measure(cases: dict, repeat: int) -> dict:
    """Median seconds, evaluations and verdict of each case, rounds interleaved."""
    seconds: dict = {name: [] for name in cases}
    result = {}
    for _ in range(repeat):
        for name, (g, f, numeric) in cases.items():
            s, evaluations, ok = timed(g, f, numeric)
            seconds[name].append(s)
            result[name] = (evaluations, ok)
    return {name: (statistics.median(seconds[name]), *result[name]) for name in cases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="30,300,3000")
    parser.add_argument("--repeat", type=int, help="default 5 (1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="batches 30 and 300, one run")
    parser.add_argument("--one-sample", default="", metavar="N,...",
                        help="also 1-D inputs of N points (one sample of width N)")
    args = parser.parse_args()
    batches = [30, 300] if args.quick else [int(b) for b in args.batches.split(",")]
    repeat = args.repeat or (1 if args.quick else 5)
    cases = {}
    for b in batches:
        g, f = expression((b, 1))
        cases[("batch", b, True)] = (g, f, True)
        cases[("batch", b, False)] = (g, f, False)
    for n in [int(n) for n in args.one_sample.split(",") if n]:
        g, f = expression((n,))
        cases[("one sample", n, True)] = (g, f, True)
    timed(*expression((batches[0], 1)))          # imports and first calls, not timed
    results = measure(cases, repeat)

    print(f"mp.verify(g, f), f = log(1 + exp(x·y)) / (x² + y² + 1) + tanh(x)·y; median of "
          f"{repeat} run(s)")
    print("| inputs | B or N | verify | evaluations | no numeric | ÷ smallest | verdict |")
    print("|---|---|---|---|---|---|---|")
    smallest = results[("batch", batches[0], True)][0]
    for key, (seconds, evaluations, ok) in results.items():
        form, size, numeric = key
        if not numeric:
            continue
        plain = results.get((form, size, False))
        plain = "-" if plain is None else f"{plain[0]:.4f} s"
        shape = f"({size:,}, 1)" if form == "batch" else f"({size:,},)"
        print(f"| {shape} | {size:,} | {seconds:.4f} s | {evaluations:,} | {plain} | "
              f"{seconds / smallest:.2f}x | {'VERIFIED' if ok else 'NOT VERIFIED'} |")
    largest = results[("batch", batches[-1], True)][0]
    ratio = largest / smallest
    print(f"verify at B = {batches[-1]:,} ÷ verify at B = {batches[0]:,}: {ratio:.2f}x "
          f"(target ≤ {TARGET:g}x: {'met' if ratio <= TARGET else 'NOT met'})")


if __name__ == "__main__":
    main()
