"""Training on MNIST with message-passing gradients: the textbook's experiment, a modern
recipe, and the cost of an epoch against PyTorch.

Run from the repository root with the MNIST files at ../shared/data/mnist (or --mnist DIR):

    python benchmarks/bench_training.py textbook   # 784-50-10, SGD 0.1, 10,000 steps, 3 seeds
    python benchmarks/bench_training.py modern     # ReLU + He + Adam + Dropout, 10 epochs
    python benchmarks/bench_training.py epoch      # one epoch of 784-100-10: backprop vs PyTorch

textbook  The book's chapter-5 two-layer network (seed 001): Affine(784→50) ReLU Affine(50→10)
          softmax-with-loss, weights N(0, 0.01²), biases 0, pixels scaled to [0, 1], SGD lr 0.1,
          batch 100, 10,000 iterations on the 60,000 training images, trained on messages.
          The book draws each minibatch at random (np.random.choice); here each epoch is a
          seeded permutation cut into batches. Test accuracy on the 10,000 test images, for
          seeds 0, 1, 2 and their mean.
modern    784-256-relu-dropout0.2-10-sce, He normal init, Adam lr 1e-3, batch 100, 10 epochs,
          pixels in [0, 1], trained on messages; test accuracy after every epoch.
epoch     One epoch (600 steps of batch 100 over the 60,000 images, the same batches) of
          784-100-relu-10-sce with SGD lr 0.1: msgpass with gradients from standard backprop,
          msgpass with gradients from the messages, and PyTorch CPU (float64 and float32) with
          the same weights and batches; ratios measured in this one run (best of --repeat).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

import msgpass as mp
from msgpass.training.data import Dataset, load_mnist

DEFAULT_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def textbook_network(seed: int) -> mp.Sequential:
    """The book's TwoLayerNet: W ~ 0.01·N(0, 1), b = 0."""
    return mp.Sequential([mp.Affine(784, 50, seed=np.random.default_rng([seed, 1]), scale=0.01),
                          mp.ReLU(),
                          mp.Affine(50, 10, seed=np.random.default_rng([seed, 2]), scale=0.01),
                          mp.SoftmaxCrossEntropy()])


def textbook(train: Dataset, test: Dataset, seeds=(0, 1, 2), steps: int = 10_000) -> None:
    accuracies = []
    for seed in seeds:
        net = textbook_network(seed)
        start = time.perf_counter()
        mp.train(net, mp.optim.SGD(net.params, lr=0.1), train, epochs=-(-steps * 100 // len(train)),
                 batch_size=100, steps=steps, seed=seed, backward="messages")
        _, accuracy = mp.evaluate(net, test)
        accuracies.append(accuracy)
        print(f"seed {seed}: test accuracy {accuracy:.4f} after {steps:,} steps on messages "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"mean of {len(seeds)} seeds: {np.mean(accuracies):.4f} (the book's notebook: 0.969)")


def modern(train: Dataset, test: Dataset, epochs: int = 10, seed: int = 0) -> None:
    net = mp.build_network("784-256-relu-dropout0.2-10-sce", seed=seed, init="he_normal")
    optimizer = mp.optim.Adam(net.params, lr=1e-3)
    for epoch in range(epochs):
        start = time.perf_counter()
        mp.train(net, optimizer, train, epochs=1, batch_size=100, seed=seed * 1000 + epoch,
                 backward="messages")
        _, accuracy = mp.evaluate(net, test)
        print(f"epoch {epoch + 1}: test accuracy {accuracy:.4f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)


def epoch_cost(train: Dataset, repeat: int = 3) -> None:
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        raise SystemExit("the epoch comparison needs PyTorch: pip install torch==2.13.0") from None
    order = np.random.default_rng(0).permutation(len(train))
    batches = [order[i:i + 100] for i in range(0, len(train), 100)]

    def msgpass_epoch(backward):
        net = mp.build_network("784-100-relu-10-sce", seed=0)
        opt = mp.optim.SGD(net.params, lr=0.1)
        start = time.perf_counter()
        for index in batches:
            if backward == "messages":
                net.forward(train.x[index], train.y[index])
                grads = net.backward(keep="sums").grads
            else:
                grads = mp.backprop(net, train.x[index], train.y[index], input_grad=False).grads
            opt.step(grads)
        return time.perf_counter() - start, net

    def torch_epoch(dtype):
        net = mp.build_network("784-100-relu-10-sce", seed=0)
        params = [torch.tensor(net.params[k], dtype=dtype, requires_grad=True)
                  for k in ("1.W", "1.b", "3.W", "3.b")]
        opt = torch.optim.SGD(params, lr=0.1)
        x_all = torch.tensor(train.x, dtype=dtype)
        y_all = torch.tensor(train.y)
        start = time.perf_counter()
        for index in batches:
            idx = torch.from_numpy(index)
            x, y = x_all[idx], y_all[idx]
            opt.zero_grad()
            loss = F.cross_entropy(torch.relu(x @ params[0] + params[1]) @ params[2] + params[3], y)
            loss.backward()
            opt.step()
        return time.perf_counter() - start, params

    times = {"msgpass backprop": [], "msgpass messages": [], "torch f64": [], "torch f32": []}
    for _ in range(repeat):
        t, bp_net = msgpass_epoch("backprop")
        times["msgpass backprop"].append(t)
        t, msg_net = msgpass_epoch("messages")
        times["msgpass messages"].append(t)
        t, torch_params = torch_epoch(torch.float64)
        times["torch f64"].append(t)
        times["torch f32"].append(torch_epoch(torch.float32)[0])
    same = max(float(np.max(np.abs(bp_net.params[k] - p.detach().numpy())))
               for k, p in zip(("1.W", "1.b", "3.W", "3.b"), torch_params, strict=True))
    best = {k: min(v) for k, v in times.items()}
    print(f"numpy {np.__version__}, torch {torch.__version__} ({torch.get_num_threads()} "
          f"threads), {os.cpu_count()} CPUs, {platform.machine()}; one epoch = 600 steps of "
          f"batch 100, 784-100-relu-10-sce, SGD 0.1; best of {repeat}")
    for k, v in best.items():
        print(f"  {k:<18} {v:7.2f} s")
    print(f"msgpass backprop ÷ torch f64: {best['msgpass backprop'] / best['torch f64']:.2f}   "
          f"÷ torch f32: {best['msgpass backprop'] / best['torch f32']:.2f}")
    print(f"msgpass messages ÷ msgpass backprop: "
          f"{best['msgpass messages'] / best['msgpass backprop']:.2f}")
    print(f"after the epoch, msgpass (backprop) and torch f64 parameters differ by at most "
          f"{same:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("textbook", "modern", "epoch"))
    parser.add_argument("--mnist", default=os.environ.get("MSGPASS_MNIST", DEFAULT_MNIST))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    train, test = load_mnist("train", args.mnist), load_mnist("test", args.mnist)
    if args.what == "textbook":
        textbook(train, test, seeds=tuple(int(s) for s in args.seeds.split(",")))
    elif args.what == "modern":
        modern(train, test)
    else:
        epoch_cost(train, args.repeat)


if __name__ == "__main__":
    main()
