"""Every message of a network whose messages outgrow the machine, keeping only the node sums
and per-edge statistics; and what the dask backend costs against the in-memory streamed pass.

Run from the repository root (needs the optional extra msgpass[scale]):

    python benchmarks/bench_scale.py [--batch 4096] [--ratio-batch 64] [--repeat 3]

The network is 2048-2048-relu-10-sce (issue 10's example): its messages are
B·(2048·2048 + 2048 + 2048·10 + 10) float64s, 128.7 GiB at B = 4,096, over five times
this machine's 24 GiB. Weights are msgpass's seeded defaults, inputs standard normal, labels
uniform; everything is seeded.

1. The large pass, in a fresh process: ``net.backward(backend="dask", keep="sums",
   stats=True, chunk_samples=...)`` on dask's threaded scheduler (one thread per core) after
   one forward. Every message is computed and folded into the per-edge mean and |max| and the
   per-layer magnitude histogram; none is kept. Reported: the messages' total size, wall
   time, message throughput, and the peak resident memory of the whole process (VmHWM:
   Python, numpy, dask, the forward's record and the statistics included) against the bound
   stated below. Then the node sums and gradients are checked against standard backprop
   (``mp.backprop``, which does not touch the message code) to 1e-12 relative.
2. The ratio, on a size both backends run in a few seconds (--ratio-batch): the same
   statistics by the in-memory streamed pass (``backend="memory"``, single thread) and by the
   dask backend, interleaved --repeat times after a warm-up; the table gives the ratios of the
   fastest runs (medians after them). Also the price of the statistics themselves: each
   backend with ``stats=True`` ÷ the same backend with sums only.

Peak memory bound, by arithmetic (B = 4,096, chunk_samples = 256): the forward's record is
about 0.3 GiB (x, three B×2048 value arrays, ReLU's B×2048 partials), the node sums 0.13 GiB,
the running statistics of the 2048×2048 layer 64 MiB (mean and |max|, float64), each task
adds its own partial statistics (64 MiB) and 4 MiB pieces; with every one of the 16 chunks'
partial statistics waiting at once (dask merges them pairwise as they arrive, so it is fewer)
that is 1 GiB more. BOUND = 3 GiB covers it with room for the interpreter and libraries.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

# run as a script, this folder is on sys.path: bench_messages is its neighbour
from bench_messages import time_interleaved

import msgpass as mp
from msgpass.testing import random_batch

SPEC = "2048-2048-relu-10-sce"
BOUND = 3 << 30


def message_bytes(net: mp.Sequential, batch: int) -> int:
    """Bytes of every message of the network at this batch (each layer's B·N_{t-1}·N_t, or
    B·N for an elementwise layer, float64)."""
    return sum(int(np.prod(p.inputs.block_shape(batch))) * 8 for p in net.record.partials)


LARGE = textwrap.dedent("""
    import json, sys, time, numpy as np, msgpass as mp
    from msgpass.testing import random_batch
    def kib(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1])
    spec, batch, chunk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    net = mp.build_network(spec, seed=0)
    x, target = random_batch(net, batch, np.random.default_rng(0))
    net.forward(x, target)
    start = time.perf_counter()
    trace = net.backward(backend="dask", keep="sums", stats=True, chunk_samples=chunk)
    seconds = time.perf_counter() - start
    peak = 1024 * kib("VmHWM")
    total = sum(int(np.prod(p.inputs.block_shape(batch))) * 8 for p in trace.partials)
    ref = mp.backprop(net, x, target)
    worst = 0.0
    for key, grad in ref.grads.items():
        err = np.max(np.abs(grad - trace.grads[key])) / max(np.max(np.abs(grad)), 1e-300)
        worst = max(worst, float(err))
    for t in range(1, trace.T + 1):            # every layer's node sums S^t = ∂L/∂z^{t-1}
        want = ref.incoming(t)
        err = np.max(np.abs(want - trace.incoming(t))) / max(np.max(np.abs(want)), 1e-300)
        worst = max(worst, float(err))
    counted = int(sum(s.counts.sum() for s in trace.stats.values()))
    print(json.dumps({"seconds": seconds, "peak": peak, "bytes": total, "worst": worst,
                      "counted": counted, "messages": total // 8,
                      "absmax1": float(trace.stats[1].absmax.max())}))
""")


def large(batch: int, chunk: int) -> dict | None:
    if not Path("/proc/self/status").exists():
        return None
    out = subprocess.run([sys.executable, "-c", LARGE, SPEC, str(batch), str(chunk)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def ratios(batch: int, chunk: int, repeat: int) -> dict:
    net = mp.build_network(SPEC, seed=0)
    x, target = random_batch(net, batch, np.random.default_rng(0))
    net.forward(x, target)
    cases = {
        "memory sums": lambda: net.backward(keep="sums"),
        "memory stats": lambda: net.backward(keep="sums", stats=True),
        "dask sums": lambda: net.backward(backend="dask", keep="sums", chunk_samples=chunk),
        "dask stats": lambda: net.backward(backend="dask", keep="sums", stats=True,
                                           chunk_samples=chunk),
    }
    timed = time_interleaved(cases, repeat, warmup=1)
    return {"bytes": message_bytes(net, batch), "timed": timed}


def sweep(repeat: int, batch: int = 32) -> None:
    """Each statistic's price (÷ the sums-only pass) by piece size. The statistics' piece is
    fixed (STATS_CHUNK_BYTES), so this patches it to sweep."""
    from msgpass import streaming
    net = mp.build_network(SPEC, seed=0)
    x, target = random_batch(net, batch, np.random.default_rng(0))
    net.forward(x, target)
    choices = [["mean"], ["absmax"], ["histogram"], True]
    print(f"\n## price of statistics by piece size, B = {batch} (fastest of {repeat})\n")
    print("| piece | sums s | " + " | ".join(str(c) for c in choices) + " |")
    print("|---" * (2 + len(choices)) + "|")
    saved = streaming.STATS_CHUNK_BYTES
    try:
        for piece in (4 << 20, 1 << 20, 256 << 10, 64 << 10):
            streaming.STATS_CHUNK_BYTES = piece
            cases = {"sums": lambda piece=piece: net.backward(keep="sums", chunk_bytes=piece)}
            for c in choices:
                cases[str(c)] = lambda c=c, piece=piece: net.backward(
                    keep="sums", stats=c, chunk_bytes=piece)
            timed = time_interleaved(cases, repeat, warmup=1)
            base = timed["sums"][1]
            print(f"| {piece >> 10} KiB | {base / 1e3:.3f} | " + " | ".join(
                f"{timed[str(c)][1] / base:.2f}x" for c in choices) + " |")
    finally:
        streaming.STATS_CHUNK_BYTES = saved


def main() -> None:
    global SPEC
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096,
                        help="the large pass's batch (default 4096: 128.7 GiB of messages, "
                             "about a minute)")
    parser.add_argument("--chunk-samples", type=int, default=256,
                        help="samples per dask task in the large pass (default 256)")
    parser.add_argument("--ratio-batch", type=int, default=64,
                        help="the batch at which both backends are timed (default 64)")
    parser.add_argument("--ratio-chunk-samples", type=int, default=8,
                        help="samples per dask task there (default 8)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="interleaved runs of each timed case (default 3)")
    parser.add_argument("--skip-large", action="store_true",
                        help="only the ratios, not the large pass")
    parser.add_argument("--sweep-chunks", action="store_true",
                        help="only the price of each statistic by piece size, at B = 32")
    parser.add_argument("--spec", default=SPEC,
                        help=f"the network (default {SPEC}; a small one checks the script)")
    args = parser.parse_args()
    SPEC = args.spec
    print(f"# bench_scale: {SPEC}, python {sys.version.split()[0]}, numpy {np.__version__}, "
          f"{os.cpu_count()} cores")
    if args.sweep_chunks:
        sweep(args.repeat)
        return

    measured = ratios(args.ratio_batch, args.ratio_chunk_samples, args.repeat)
    timed = measured["timed"]
    gib = measured["bytes"] / 2**30
    print(f"\n## ratio at B = {args.ratio_batch} ({gib:.2f} GiB of messages, "
          f"chunk_samples = {args.ratio_chunk_samples}, {args.repeat} runs)\n")
    print("| case | fastest s | median s | GiB/s of messages |")
    print("|---|---|---|---|")
    for name, (median, fastest) in timed.items():
        print(f"| {name} | {fastest / 1e3:.2f} | {median / 1e3:.2f} | "
              f"{gib / (fastest / 1e3):.2f} |")

    def ratio(a, b):
        return f"{timed[a][1] / timed[b][1]:.2f}x (median {timed[a][0] / timed[b][0]:.2f}x)"
    print(f"\ndask stats ÷ memory stats: {ratio('dask stats', 'memory stats')}  (target ≤ 1.5x)")
    print(f"dask sums ÷ memory sums: {ratio('dask sums', 'memory sums')}")
    print(f"memory stats ÷ memory sums: {ratio('memory stats', 'memory sums')}  "
          f"(the price of mean, |max| and histogram)")
    print(f"dask stats ÷ memory sums: {ratio('dask stats', 'memory sums')}")

    if args.skip_large:
        return
    result = large(args.batch, args.chunk_samples)
    if result is None:
        print("\nlarge pass: n/a (needs /proc/self/status for peak memory)")
        return
    gib = result["bytes"] / 2**30
    ok = "within" if result["peak"] <= BOUND else "OVER"
    print(f"\n## large pass at B = {args.batch} (chunk_samples = {args.chunk_samples})\n")
    print(f"messages: {result['messages']:,} ({gib:.1f} GiB; machine memory "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB)")
    print(f"histogram counts: {result['counted']:,} (every message binned once)")
    print(f"wall time: {result['seconds']:.1f} s, {gib / result['seconds']:.2f} GiB/s of "
          f"messages")
    print(f"peak resident memory: {result['peak'] / 2**30:.2f} GiB ({ok} the bound of "
          f"{BOUND / 2**30:.0f} GiB)")
    print(f"sums and gradients against standard backprop: worst relative difference "
          f"{result['worst']:.1e} (≤ 1e-12: {result['worst'] <= 1e-12})")


if __name__ == "__main__":
    main()
