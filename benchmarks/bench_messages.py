"""Time the message backward against writing every message once, and against standard backprop.

Run from the repository root (options: --arch 784-100-relu-10-sce --batch 100 --repeat 21
--sweep-chunks):

    python benchmarks/bench_messages.py

For one network (default 784-100-relu-10-sce; x standard normal (B, N_0), B = 100, integer
labels, all seeded) it times, in one run:

messages        ``net.backward()`` (keep="all", the default) after one ``net.forward(x, target)``:
                the message backward alone. It allocates every block, writes every message,
                sums each block over its last axis and forms the parameter gradients.
messages(sums)  ``net.backward(keep="sums")``: every message is written and summed, none kept.
floor           Writing every message once. For each layer t: a fresh ``np.empty`` of exactly
                ``trace.block(t).values.shape`` and dtype, filled by one ``np.multiply`` of the
                same broadcast operands the backward uses (the local partials J^t and the sums
                S^{t+1} arriving from above, taken from a trace beforehand), which gives the same
                values bit for bit. Nothing is summed, no gradient is formed, there is no
                chunking; the time includes the first-touch page faults of the fresh memory,
                which the backward pays too, as it returns new blocks. Any method that stores
                every message must at least allocate this memory and write each element once,
                so this is its lower bound.
backprop        The classic backward alone: each layer's ``backward(saved, dout)`` chained from
                the loss down (the loop of ``mp.backprop``), after one forward.
backprop total  ``mp.backprop(net, x, target)``, forward + backward, for reference.

Every case is warmed up, then run --repeat times interleaved (each round runs every case once,
in a shuffled order, with the garbage collector off); the median (and the minimum) is reported.
``--sweep-chunks`` also times ``net.backward(chunk_bytes=c)`` for several c against the floor.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import time

import numpy as np

import msgpass as mp
from msgpass.testing import random_batch

CHUNKS = {"64 KiB": 1 << 16, "256 KiB": 1 << 18, "1 MiB": 1 << 20, "4 MiB": 1 << 22,
          "16 MiB": 1 << 24, "none": 1 << 40}


def floor_operands(trace: mp.Trace) -> list[tuple[np.ndarray, np.ndarray, tuple, np.dtype]]:
    """For each block: (a, b, shape, dtype) with block = a * b broadcast, as the layer sends it."""
    ops = []
    for t in range(1, trace.T + 1):
        block, arriving = trace.block(t), trace.incoming(t + 1)  # S^{t+1}: (B, N_t)
        # shared: W[None] * S[:, None, :]; diagonal: g'(z) * S; dense: J_b * S[:, None, :]
        a = block.partials.matrix[None] if block.kind == "shared" else block.partials.values
        b = arriving if block.kind == "diagonal" else arriving[:, None, :]
        assert np.array_equal(np.multiply(a, b), block.values), f"operands of block {t}"
        ops.append((a, b, block.values.shape, block.values.dtype))
    return ops


def classic_backward(net: mp.Sequential, x: np.ndarray, target: np.ndarray):
    """Run the forward once; return a function doing only standard backprop's backward."""
    z, saved = x, []
    for layer in net.layers:
        z, s = layer.forward(z, target) if layer.is_loss else layer.forward(z)
        saved.append(s)

    def backward() -> dict[str, np.ndarray]:
        dout, grads = 1.0, {}
        for t in range(net.T, 0, -1):
            dout, dparams = net.layers[t - 1].backward(saved[t - 1], dout)
            grads.update({f"{t}.{name}": g for name, g in dparams.items()})
        return grads

    ref = mp.backprop(net, x, target).grads
    assert all(np.allclose(g, ref[k]) for k, g in backward().items()), "classic backward"
    return backward


def time_interleaved(cases: dict, repeat: int, warmup: int = 2) -> dict[str, tuple[float, float]]:
    """Median and minimum wall time in ms of each case, run in shuffled round-robin order."""
    order = np.random.default_rng(0)
    for run in list(cases.values()) * warmup:
        run()
    names, times = list(cases), {name: [] for name in cases}
    gc.disable()
    for _ in range(repeat):
        for i in order.permutation(len(names)):
            start = time.perf_counter()
            result = cases[names[i]]()
            times[names[i]].append(time.perf_counter() - start)
            del result  # freed outside the timed region, the same for every case
    gc.enable()
    return {k: (1e3 * float(np.median(v)), 1e3 * min(v)) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="784-100-relu-10-sce")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--sweep-chunks", action="store_true")
    args = parser.parse_args()

    net = mp.build_network(args.arch, seed=0)
    x, target = random_batch(net, args.batch, np.random.default_rng(0))
    net.forward(x, target)
    ops = floor_operands(net.backward())
    stored = sum(int(np.prod(s)) * np.dtype(d).itemsize for _, _, s, d in ops)

    def floor() -> list[np.ndarray]:
        return [np.multiply(a, b, out=np.empty(s, d)) for a, b, s, d in ops]

    print(f"numpy {np.__version__}, python {platform.python_version()}, {os.cpu_count()} CPUs "
          f"({len(os.sched_getaffinity(0))} usable), {platform.machine()}")
    print(f"{args.arch}, B={args.batch}, {net.dtype}: {len(ops)} message blocks, "
          f"{stored / 1e6:.1f} MB stored; median (min) of {args.repeat} interleaved runs\n")

    cases = {
        "messages        net.backward()": net.backward,
        'messages(sums)  net.backward(keep="sums")': lambda: net.backward(keep="sums"),
        "floor           write every message once": floor,
        "backprop        classic backward only": classic_backward(net, x, target),
        "backprop total  mp.backprop (fwd + bwd)": lambda: mp.backprop(net, x, target),
    }
    ms = time_interleaved(cases, args.repeat)
    for name, (med, low) in ms.items():
        print(f"{name:<44} {med:9.3f} ms  ({low:.3f})")
    msg, sums, flo, bp = (ms[k][0] for k in list(cases)[:4])
    print(f"\nmessages / floor        {msg / flo:7.2f}   (target: <= about 2)")
    print(f"messages(sums) / floor  {sums / flo:7.2f}")
    print(f"messages / backprop     {msg / bp:7.1f}   (backward only, both)")

    if args.sweep_chunks:
        per_sample = max(int(np.prod(s[1:])) * np.dtype(d).itemsize for _, _, s, d in ops)
        sweep = {"floor": floor}
        for label, c in CHUNKS.items():
            sweep[f"all {label}"] = lambda c=c: net.backward(chunk_bytes=c)
            sweep[f"sums {label}"] = lambda c=c: net.backward(keep="sums", chunk_bytes=c)
        ms = time_interleaved(sweep, args.repeat)
        flo = ms["floor"][0]
        print(f"\nchunk sweep (floor {flo:.3f} ms; largest block {per_sample / 1024:.0f} KiB per "
              f"sample)\n{'chunk_bytes':>11} {'samples':>8} {'keep=all ms':>12} {'÷ floor':>8} "
              f"{'keep=sums ms':>13} {'÷ floor':>8}")
        for label, c in CHUNKS.items():
            rows = max(1, min(args.batch, c // per_sample))
            a, s = ms[f"all {label}"][0], ms[f"sums {label}"][0]
            print(f"{label:>11} {rows:>8} {a:12.3f} {a / flo:8.2f} {s:13.3f} {s / flo:8.2f}")


if __name__ == "__main__":
    main()
