"""One table for three network sizes: message backward against the bandwidth floor and against
standard backprop, standard backprop against PyTorch, and peak memory against the budget.

Run from the repository root (PyTorch is optional: ``pip install torch==2.13.0``; without it
the PyTorch columns say "n/a"):

    python benchmarks/bench_suite.py [--repeat 7] [--sizes small,medium,large]

Sizes (issue 8): small = 784-100-relu-10-sce at B = 100, medium = 512-512-relu-512-relu-10-sce
at B = 64, large = 1024-1024-relu-10-sce at B = 256. Inputs are standard normal, labels
uniform, weights msgpass's seeded defaults; everything is seeded.

What is timed (wall clock; --repeat runs interleaved in a shuffled order per round, after
warm-up, garbage collector off), all single-process on this machine. The table gives ratios of
the *fastest* runs, with ratios of the medians after them: on this shared 2-core machine the
2 GiB cases swing between about 0.6 and 1.9 s from one run to the next for the same work
(fresh memory from the hypervisor), and interference only ever adds time, so the minimum is
the estimate of the cost itself; the medians show what a user sees on a busy machine.

messages      ``net.backward()`` after one ``net.forward``: every message computed and kept.
sums          ``net.backward(keep="sums")``: every message computed and summed, none kept.
floor         For every message block of the same network: allocate it (``np.empty``, as
              the backward does for kept blocks), write every stored float once (``fill``)
              and read every one once to sum it (``np.add.reduce`` over the last axis). This
              is the memory-bandwidth floor of any method that stores every message and sums
              it; it computes nothing, so no real backward can reach it exactly. This is
              the floor issue 8 states ("write + sum-reduce of the same number of floats").
piece floor   The same, but written and summed 4 MiB at a time, each piece read back while
              still in cache, as the backward does: a tighter floor for the same traffic.
bp bwd        Standard backprop's backward alone (each layer's classic ``backward`` chained).
bp f64, f32   ``mp.backprop(net, x, target, input_grad=False)``: standard backprop, forward +
              backward to the parameter gradients, in float64 and in float32 (a float32
              network with the same seeds). Like the PyTorch twin, whose x requires no
              gradient, it skips ∂L/∂x.
torch f64/32  The same network in PyTorch (same weights, ``x @ W + b``, ReLU,
              ``cross_entropy`` with mean), forward + ``torch.autograd.grad`` of the weights
              and biases, CPU, torch's default threads.

Peak memory is measured in a fresh process per size: the growth of resident memory (VmHWM
after /proc/self/clear_refs, less VmRSS before) during ``net.backward(keep="sums",
budget_bytes=64 MiB, chunk_bytes=64 MiB)`` after a warm-up one: pieces as large as the budget
allows, so that the budget binds (by default pieces are 4 MiB). The growth includes what the
pass returns, the node sums and the gradients, which the table also gives.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

# run as a script, this folder is on sys.path: bench_messages is its neighbour
from bench_messages import classic_backward, time_interleaved

import msgpass as mp
from msgpass.streaming import DEFAULT_BUDGET_BYTES, DEFAULT_CHUNK_BYTES
from msgpass.testing import random_batch

SIZES = {
    "small": ("784-100-relu-10-sce", 100),
    "medium": ("512-512-relu-512-relu-10-sce", 64),
    "large": ("1024-1024-relu-10-sce", 256),
}


def setup(spec: str, batch: int, dtype=np.float64):
    net = mp.build_network(spec, seed=0, dtype=dtype)
    x, target = random_batch(net, batch, np.random.default_rng(0))
    return net, x.astype(dtype), target


def floor_case(trace: mp.Trace):
    shapes = [(trace.block(t).values.shape, trace.block(t).values.dtype)
              for t in range(1, trace.T + 1)]

    def floor():
        blocks = []
        for shape, dtype in shapes:
            block = np.empty(shape, dtype)
            block.fill(1.0)                       # write every message once
            np.add.reduce(block, axis=-1)         # read every message once, summing
            blocks.append(block)
        return blocks
    def piece_floor():
        # the same, but each 4 MiB piece is summed while still in cache, as the backward does
        blocks = []
        for shape, dtype in shapes:
            block = np.empty(shape, dtype)
            rows = block.reshape(-1, shape[-1])
            step = max(1, DEFAULT_CHUNK_BYTES // (shape[-1] * np.dtype(dtype).itemsize))
            for start in range(0, rows.shape[0], step):
                piece = rows[start:start + step]
                piece.fill(1.0)
                np.add.reduce(piece, axis=-1)
            blocks.append(block)
        return blocks
    return floor, piece_floor, sum(int(np.prod(s)) * np.dtype(d).itemsize for s, d in shapes)


def torch_case(net: mp.Sequential, x: np.ndarray, target: np.ndarray, dtype):
    """Forward + backward of the same network in PyTorch, or None without torch."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    params, plan = [], []
    for layer in net.layers:
        if isinstance(layer, mp.Affine):
            W = torch.tensor(layer.params["W"], dtype=tdtype, requires_grad=True)
            b = torch.tensor(layer.params["b"], dtype=tdtype, requires_grad=True)
            params += [W, b]
            plan.append(("affine", W, b))
        elif isinstance(layer, mp.ReLU):
            plan.append(("relu",))
        elif not isinstance(layer, mp.SoftmaxCrossEntropy):
            raise ValueError(f"no PyTorch twin for {layer.describe()}")
    xt = torch.tensor(x, dtype=tdtype)
    yt = torch.tensor(target, dtype=torch.long)

    def step():
        z = xt
        for op in plan:
            z = z @ op[1] + op[2] if op[0] == "affine" else torch.relu(z)
        loss = F.cross_entropy(z, yt)
        return torch.autograd.grad(loss, params)

    ours = mp.backprop(net, x, target).grads
    theirs = step()
    keys = [k for k in ours]
    for key, grad in zip(keys, theirs, strict=True):
        assert np.allclose(ours[key], grad.numpy(), rtol=1e-3, atol=1e-6), f"torch {key}"
    return step


PEAK = textwrap.dedent("""
    import sys, numpy as np, msgpass as mp
    from msgpass.testing import random_batch
    def kib(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1])
    spec, batch, budget = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    net = mp.build_network(spec, seed=0)
    x, target = random_batch(net, batch, np.random.default_rng(0))
    net.forward(x, target)
    # pieces as large as the budget allows (the default piece is 4 MiB), so the budget binds
    net.backward(keep="sums", budget_bytes=budget, chunk_bytes=budget)
    before = kib("VmRSS")
    open("/proc/self/clear_refs", "w").write("5")
    trace = net.backward(keep="sums", budget_bytes=budget, chunk_bytes=budget)
    returned = sum(s.nbytes for s in trace.incoming.values()) + sum(
        g.nbytes for g in trace.grads.values())
    print(1024 * (kib("VmHWM") - before), returned)
""")


def peak_bytes(spec: str, batch: int, budget: int) -> tuple[int, int] | None:
    """(growth of resident memory, bytes of sums and gradients returned) or None."""
    if not Path("/proc/self/clear_refs").exists():
        return None
    out = subprocess.run([sys.executable, "-c", PEAK, spec, str(batch), str(budget)],
                         capture_output=True, text=True, check=True)
    grown, returned = map(int, out.stdout.split())
    return grown, returned


def measure(name: str, repeat: int) -> dict:
    spec, batch = SIZES[name]
    net, x, target = setup(spec, batch)
    net.forward(x, target)
    floor, piece_floor, stored = floor_case(net.backward())
    net32, x32, target32 = setup(spec, batch, np.float32)
    cases = {
        "messages": net.backward,
        "sums": lambda: net.backward(keep="sums"),
        "floor": floor,
        "piece floor": piece_floor,
        "bp bwd": classic_backward(net, x, target),
        "bp f64": lambda: mp.backprop(net, x, target, input_grad=False),
        "bp f32": lambda: mp.backprop(net32, x32, target32, input_grad=False),
    }
    for label, twin in [("torch f64", torch_case(net, x, target, np.float64)),
                        ("torch f32", torch_case(net32, x32, target32, np.float32))]:
        if twin is not None:
            cases[label] = twin
    timed = time_interleaved(cases, repeat)
    return {"median": {k: v[0] for k, v in timed.items()},
            "min": {k: v[1] for k, v in timed.items()},
            "stored MiB": stored / 2**20,
            "peak": peak_bytes(spec, batch, DEFAULT_BUDGET_BYTES)}


def ratio(ms: dict, a: str, b: str) -> str:
    """min-based ratio (median-based ratio)."""
    if a not in ms["min"] or b not in ms["min"]:
        return "n/a"
    return f"{ms['min'][a] / ms['min'][b]:.2f} ({ms['median'][a] / ms['median'][b]:.2f})"


def add_size_options(parser: argparse.ArgumentParser) -> None:
    """--sizes (which to run) and --size NAME=SPEC:BATCH (another one), for every script
    that runs the suite's sizes."""
    parser.add_argument("--sizes", default="small,medium,large")
    parser.add_argument("--size", action="append", default=[], metavar="NAME=SPEC:BATCH",
                        help="define another size, e.g. tiny=12-8-relu-3-sce:4 (repeatable)")


def chosen_sizes(parser: argparse.ArgumentParser, args) -> dict[str, tuple[str, int]]:
    """The sizes asked for, name -> (spec, batch), with the ones --size defines."""
    sizes = dict(SIZES)
    for definition in args.size:
        name, _, rest = definition.partition("=")
        spec, _, batch = rest.rpartition(":")
        if not (name and spec and batch.isdigit()):
            parser.error(f"--size takes NAME=SPEC:BATCH, got {definition!r}")
        sizes[name] = (spec, int(batch))
    unknown = [name for name in args.sizes.split(",") if name not in sizes]
    if unknown:
        parser.error(f"unknown sizes {unknown}; the sizes are {', '.join(sizes)}")
    return {name: sizes[name] for name in args.sizes.split(",")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    add_size_options(parser)
    args = parser.parse_args()
    SIZES.update(chosen_sizes(parser, args))
    try:
        import torch
        torch_version = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:
        torch_version = "torch not installed"
    print(f"numpy {np.__version__}, {torch_version}, python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, {platform.machine()}; {args.repeat} interleaved runs; "
          f"budget {DEFAULT_BUDGET_BYTES >> 20} MiB\n")
    rows = []
    for name in args.sizes.split(","):
        ms = measure(name, args.repeat)
        rows.append((name, ms))
        spec, batch = SIZES[name]
        print(f"{name}: {spec}, B={batch}, {ms['stored MiB']:.0f} MiB of messages; "
              f"ms, min (median): " + ", ".join(f"{k} {v:.2f} ({ms['median'][k]:.2f})"
                                               for k, v in ms["min"].items()))
    print()
    header = ("size", "msg ÷ floor", "msg ÷ piece floor", "sums ÷ floor", "msg ÷ bp bwd",
              "bp ÷ torch f64", "bp ÷ torch f32", "peak ÷ budget (returned MiB)")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, ms in rows:
        peak = "n/a" if ms["peak"] is None else (
            f"{ms['peak'][0] / DEFAULT_BUDGET_BYTES:.2f} ({ms['peak'][1] / 2**20:.0f})")
        print(f"| {name} | {ratio(ms, 'messages', 'floor')} | "
              f"{ratio(ms, 'messages', 'piece floor')} | {ratio(ms, 'sums', 'floor')} | "
              f"{ratio(ms, 'messages', 'bp bwd')} | {ratio(ms, 'bp f64', 'torch f64')} | "
              f"{ratio(ms, 'bp f32', 'torch f32')} | {peak} |")
    print("\nratios of the fastest runs (of the medians); peak: growth of resident memory "
          "during backward(keep='sums') with pieces up to the budget ÷ budget_bytes, "
          "including the sums and gradients it returns")


if __name__ == "__main__":
    main()
