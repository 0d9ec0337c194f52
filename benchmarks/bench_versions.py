"""Two versions of msgpass side by side, in one run: the message backward on the bench suite's
three sizes, and the whole test suite.

    python benchmarks/bench_versions.py --old-python OLD/.venv/bin/python --old-tree OLD \\
        [--new-python .venv/bin/python] [--new-tree .] [--rounds 5] [--no-suite]

Each interpreter imports its own installed msgpass (install each tree into its own venv,
``pip install ".[test]"``). For every size, each round runs one fresh process per version,
in alternating order, timing inside it (after a warm-up) ``net.backward()`` (every message
kept), ``net.backward(keep="sums")`` and ``net.forward`` + ``net.backward(keep="sums")``; the
test suite is ``python -m pytest -q`` in each tree, also alternating. Only the public API both
versions share is used. Reported: the fastest time of each case over all rounds, and
new ÷ old of the fastest (and of the medians): on this shared machine interference only adds
time, so the fastest run estimates the cost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# run as a script, this folder is on sys.path: the sizes are bench_suite's
from bench_suite import add_size_options, chosen_sizes

WORKER = """
import json, sys, time, numpy as np, msgpass as mp
spec, batch, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
net = mp.build_network(spec, seed=0)
rng = np.random.default_rng(0)
x = rng.standard_normal((batch, int(spec.split("-")[0])))
labels = rng.integers(0, int(spec.split("-")[-2]), size=batch)
net.forward(x, labels)
def messages():
    net.backward()
def sums():
    net.backward(keep="sums")
def step():
    net.forward(x, labels); net.backward(keep="sums")
out = {}
for name, case in (("messages", messages), ("sums", sums), ("forward+sums", step)):
    case()
    times = []
    for _ in range(repeat):
        start = time.perf_counter(); case(); times.append(time.perf_counter() - start)
    out[name] = min(times)
print(json.dumps({"version": mp.__version__, **out}))
"""


def run_worker(python: str, spec: str, batch: int, repeat: int) -> dict:
    # from a neutral directory: from a checkout, ``python -c`` would import its msgpass
    proc = subprocess.run([python, "-c", WORKER, spec, str(batch), str(repeat)],
                          capture_output=True, text=True, check=True,
                          cwd=tempfile.gettempdir())
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_suite(python: str, tree: Path) -> float:
    start = time.perf_counter()
    subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=tree,
                   capture_output=True, text=True)   # a failing test costs what it costs
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-python", required=True)
    parser.add_argument("--old-tree", required=True, type=Path)
    parser.add_argument("--new-python", default=sys.executable)
    parser.add_argument("--new-tree", default=Path(__file__).resolve().parents[1], type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per process")
    parser.add_argument("--no-suite", action="store_true", help="skip the test suite")
    add_size_options(parser)
    args = parser.parse_args()
    sizes = chosen_sizes(parser, args)
    versions = {"old": args.old_python, "new": args.new_python}
    trees = {"old": args.old_tree, "new": args.new_tree}
    timings: dict = {}
    for r in range(args.rounds):
        order = ("old", "new") if r % 2 == 0 else ("new", "old")
        for size, (spec, batch) in sizes.items():
            for which in order:
                got = run_worker(versions[which], spec, batch, args.repeat)
                timings.setdefault((size, which, "version"), got.pop("version"))
                for case, seconds in got.items():
                    timings.setdefault((size, which, case), []).append(seconds)
        if not args.no_suite:
            for which in order:
                timings.setdefault(("tests", which, "suite"), []).append(
                    run_suite(versions[which], trees[which]))
        print(f"round {r + 1} of {args.rounds} done", file=sys.stderr)
    first = next(iter(sizes))
    print(f"old: msgpass {timings[(first, 'old', 'version')]} ({args.old_python}), "
          f"new: msgpass {timings[(first, 'new', 'version')]} ({args.new_python}); "
          f"{args.rounds} alternating rounds, {args.repeat} timed calls per process\n")
    print("| size | case | old fastest s | new fastest s | new ÷ old fastest (medians) |")
    print("|---|---|---|---|---|")
    cases = [(size, case) for size in sizes for case in ("messages", "sums", "forward+sums")]
    if not args.no_suite:
        cases.append(("tests", "suite"))
    for size, case in cases:
        old, new = timings[(size, "old", case)], timings[(size, "new", case)]
        print(f"| {size} | {case} | {min(old):.4f} | {min(new):.4f} | "
              f"{min(new) / min(old):.2f} ({statistics.median(new) / statistics.median(old):.2f})"
              f" |")


if __name__ == "__main__":
    main()
