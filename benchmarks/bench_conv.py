"""Convolutional networks: the message pass against its bandwidth floor, classic conv backprop
against PyTorch, and one LeNet-5 MNIST epoch by messages and by backprop.

Run from the repository root (options: --repeat 7, --quick, --skip-epoch, --mnist DIR):

    python benchmarks/bench_conv.py

Every ratio is of two timings measured in this one run (median of --repeat interleaved runs,
shuffled order, garbage collector off), so a noisy machine moves both sides.

messages        ``net.backward()`` (keep="all"): every block allocated, every message written,
                every receiver's sum, the parameter gradients.
messages(sums)  ``net.backward(keep="sums")``: every message written and summed, none kept.
floor           Write and sum every message once: for each layer a fresh ``np.empty`` of
                the stored block's shape, filled by one ``np.multiply`` of the operands the
                layer sends from (a window's taps broadcast against the arriving sums S^{t+1};
                W and S for an Affine; the diagonal times S), then one ``np.add.reduce`` over
                all of it (reading each message once). A max pool's one-hot block is written
                by ``np.zeros`` and one ``put_along_axis``. The floor does not scatter the sums
                to their receivers (a convolution's col2im), which the pass must.
classic         Conv backprop as msgpass's layers do it (``mp.backprop(..., input_grad=False)``:
                im2col forward, the classic backward with col2im), forward + backward to the
                parameter gradients.
torch           The same network in PyTorch, CPU, float64, forward + backward to the parameter
                gradients (the input does not require a gradient, as ``input_grad=False``);
                optional: skipped without torch.

Networks: LeNet-5 (``lenet5``) at B = 64, and a 3×32×32 stack of two 64-channel 3×3
convolutions (``3x32x32-conv64k3p1-relu-conv64k3p1-relu-gap-10-sce``) at B = 4, whose second
layer alone holds 4·64·32·32·64·9 = 151 M messages (1.2 GB).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import time
from pathlib import Path

import numpy as np

import msgpass as mp
from msgpass.partials import Window
from msgpass.spec import build_network

STACK = "3x32x32-conv64k3p1-relu-conv64k3p1-relu-gap-10-sce"
DEFAULT_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def time_interleaved(cases: dict, repeat: int) -> dict[str, tuple[float, float]]:
    """Median and minimum milliseconds of each case, run in a shuffled order each round."""
    for run in cases.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in cases}
    order = list(cases)
    rng = random.Random(0)
    gc.disable()
    try:
        for _ in range(repeat):
            rng.shuffle(order)
            for name in order:
                start = time.perf_counter()
                cases[name]()
                times[name].append((time.perf_counter() - start) * 1e3)
    finally:
        gc.enable()
    return {name: (float(np.median(v)), float(np.min(v))) for name, v in times.items()}


def floor_steps(trace):
    """For each block, a function that writes it once from its operands and reads it once."""
    steps = []
    for t in range(1, trace.T + 1):
        block, S = trace.block(t), trace.incoming[t + 1]
        J, shape, dtype = block.partials, block.values.shape, block.values.dtype
        if isinstance(J, Window):
            rows = S.reshape((len(S), *J.output))[(...,) + (None,) * (J.weights.ndim - 1)]
            a, b = rows, J.weights[:, None, None][None]
        elif J.kind == "route":
            def write(J=J, S=S, shape=shape, dtype=dtype):
                out = np.zeros(shape, dtype)
                np.put_along_axis(out.reshape(shape[:4] + (-1,)), J.taps[..., None],
                                  S.reshape(J.taps.shape)[..., None], axis=-1)
                return np.add.reduce(out, axis=None)
            steps.append(write)
            continue
        elif J.kind == "shared":
            a, b = J.matrix[None], S[:, None, :]
        elif J.kind == "diagonal":
            a, b = J.values, S
        else:
            a, b = J.dense(), S[:, None, :]

        def write(a=a, b=b, shape=shape, dtype=dtype):
            return np.add.reduce(np.multiply(a, b, out=np.empty(shape, dtype)), axis=None)
        steps.append(write)
    return steps


def torch_model(net):
    """The msgpass network as a torch.nn.Sequential with the same weights (float64)."""
    import torch
    from torch import nn
    modules = []
    for layer in net.layers[:-1]:
        if isinstance(layer, mp.Conv2d):
            conv = nn.Conv2d(layer.c_in, layer.c_out, layer.kernel, layer.stride,
                             layer.padding).double()
            conv.weight.data = torch.from_numpy(layer.params["W"].copy())
            conv.bias.data = torch.from_numpy(layer.params["b"].copy())
            modules.append(conv)
        elif isinstance(layer, mp.Affine):
            linear = nn.Linear(layer.n_in, layer.n_out).double()
            linear.weight.data = torch.from_numpy(layer.params["W"].T.copy())
            linear.bias.data = torch.from_numpy(layer.params["b"].copy())
            modules.append(linear)
        elif isinstance(layer, mp.MaxPool2d):
            modules.append(nn.MaxPool2d(layer.kernel, layer.stride, layer.padding))
        elif isinstance(layer, mp.ReLU):
            modules.append(nn.ReLU())
        elif isinstance(layer, mp.Flatten):
            modules.append(nn.Flatten())
        elif isinstance(layer, mp.GlobalAvgPool2d):
            modules += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        else:
            raise TypeError(f"no torch twin for {layer.describe()}")
    return nn.Sequential(*modules)


def bench_network(spec: str, batch: int, repeat: int, torch_threads: int) -> None:
    net = build_network(spec, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *net.input_shape))
    y = rng.integers(0, 10, batch)
    net.forward(x, y)
    trace = net.backward()
    stored = sum(np.asarray(b.values).nbytes for b in trace.blocks.values())
    messages = sum(trace.block(t).partials.message_count(batch) for t in range(1, net.T + 1))
    floor = floor_steps(trace)
    del trace
    cases = {
        "messages        net.backward()": net.backward,
        'messages(sums)  net.backward(keep="sums")': lambda: net.backward(keep="sums"),
        "floor           write and sum every message once": lambda: [f() for f in floor],
        "classic         mp.backprop (fwd + bwd)": lambda: mp.backprop(net, x, y,
                                                                   input_grad=False),
    }
    try:
        import torch
        torch.set_num_threads(torch_threads)
        model = torch_model(net)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        loss_fn = torch.nn.CrossEntropyLoss()

        def torch_step():
            model.zero_grad()
            loss_fn(model(xt), yt).backward()
        torch_step()
        grads = {name: p.grad.numpy() for name, p in model.named_parameters()}
        ours = mp.backprop(net, x, y).grads
        first = next(k for k in ours if k.endswith(".W"))
        assert np.allclose(grads["0.weight"], ours[first], rtol=1e-9, atol=1e-12), \
            "torch twin disagrees"
        cases["torch           PyTorch CPU float64 (fwd + bwd)"] = torch_step
    except ImportError:
        torch = None
    print(f"\n{spec}, B={batch}: {messages / 1e6:.1f} M messages, {stored / 1e6:.0f} MB "
          f"stored; median (min) of {repeat} interleaved runs")
    ms = time_interleaved(cases, repeat)
    for name, (med, low) in ms.items():
        print(f"  {name:<52} {med:9.1f} ms  ({low:.1f})")
    names = list(cases)
    msg, sums, flo, classic = (ms[k][0] for k in names[:4])
    print(f"  messages / floor        {msg / flo:6.2f}   (target <= 1.5)")
    print(f"  messages(sums) / floor  {sums / flo:6.2f}")
    if torch is not None:
        print(f"  classic / torch         {classic / ms[names[4]][0]:6.2f}   (target <= 1.5; "
              f"torch on {torch_threads} thread(s))")
    else:
        print("  classic / torch         skipped: torch is not installed")


def bench_epoch(mnist: Path, images: int) -> None:
    """One LeNet-5 epoch (Adam, batch 64) by messages and by backprop, same seed."""
    from msgpass.training import optim, train
    from msgpass.training.data import Dataset, load_mnist
    full = load_mnist("train", mnist)
    data = Dataset(full.x[:images], full.y[:images], "mnist")
    seconds = {}
    for backward in ("messages", "backprop"):
        net = build_network("lenet5", seed=0)
        start = time.perf_counter()
        train(net, optim.Adam(net.params, lr=1e-3), data, epochs=1, batch_size=64,
              backward=backward, seed=0)
        seconds[backward] = time.perf_counter() - start
    print(f"\nLeNet-5, one epoch of {images:,} MNIST images, batch 64, Adam:")
    for name, value in seconds.items():
        print(f"  {name:<9} {value:7.1f} s")
    print(f"  messages / backprop  {seconds['messages'] / seconds['backprop']:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, help="default 7 (2 with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="LeNet-5 at B = 8, the stack at B = 1, 2 repeats, 1,000 images")
    parser.add_argument("--skip-epoch", action="store_true")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="PyTorch's threads (default 1: numpy's products here use one)")
    parser.add_argument("--mnist", default=os.environ.get("MSGPASS_MNIST", DEFAULT_MNIST))
    args = parser.parse_args()
    repeat = args.repeat or (2 if args.quick else 7)
    print(f"numpy {np.__version__}, python {platform.python_version()}, {os.cpu_count()} CPUs "
          f"({len(os.sched_getaffinity(0))} usable), {platform.machine()}")
    bench_network("lenet5", 8 if args.quick else 64, repeat, args.torch_threads)
    bench_network(STACK, 1 if args.quick else 4, repeat, args.torch_threads)
    if not args.skip_epoch:
        mnist = Path(args.mnist)
        if (mnist / "train-images-idx3-ubyte.gz").exists():
            bench_epoch(mnist, 1000 if args.quick else 60000 * 9 // 10)
        else:
            print(f"\nLeNet-5 epoch: skipped, no MNIST at {mnist}")


if __name__ == "__main__":
    main()
