"""Vanishing-gradient study (seed 000): how message magnitude changes with depth.

Three stacks of equal width and depth, differing only in the activation and its standard
initialisation:

* sigmoid, Xavier/Glorot normal (std = sqrt(2 / (fan_in + fan_out)));
* tanh, Xavier/Glorot normal;
* ReLU, He/Kaiming normal (std = sqrt(2 / fan_in)).

Each is DEPTH Affine+activation blocks of width WIDTH, then Affine(WIDTH → 10) and softmax
with cross-entropy, on a batch of standard-normal inputs with random labels (all seeded).
For every hidden Affine layer k (k = 1 at the input) the script records the mean |δ| of its
message block, i.e. the messages that layer sends down to its inputs, and the RMS of the
node sums S arriving at its input nodes. Writes figures/vanishing.png and prints the table.

    python theory/vanishing_gradients.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import msgpass as mp

DEPTH, WIDTH, CLASSES, BATCH, SEED = 30, 64, 10, 64, 0
ACTIVATIONS = {
    "sigmoid": (mp.Sigmoid, "Xavier", lambda fan_in, fan_out: np.sqrt(2 / (fan_in + fan_out))),
    "tanh": (mp.Tanh, "Xavier", lambda fan_in, fan_out: np.sqrt(2 / (fan_in + fan_out))),
    "relu": (mp.ReLU, "He", lambda fan_in, fan_out: np.sqrt(2 / fan_in)),
}


def stack(activation: str, depth: int = DEPTH, width: int = WIDTH, seed: int = SEED):
    layer, _, std = ACTIVATIONS[activation]
    layers = []
    for k in range(depth):
        layers += [mp.Affine(width, width, seed=seed + k, scale=std(width, width)), layer()]
    layers += [mp.Affine(width, CLASSES, seed=seed + depth, scale=std(width, CLASSES)),
               mp.SoftmaxCrossEntropy()]
    return mp.Sequential(layers)


def measure(activation: str, depth: int = DEPTH, width: int = WIDTH, batch: int = BATCH,
            seed: int = SEED) -> dict[str, np.ndarray]:
    """Per hidden Affine layer k = 1..depth: mean |δ| of its block and RMS of S at its input."""
    net = stack(activation, depth, width, seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, width))
    labels = rng.integers(0, CLASSES, batch)
    net.forward(x, labels)
    affine = [2 * k + 1 for k in range(depth)]          # layer indices of the hidden Affines
    trace = net.backward(keep=affine)
    return {"mean |δ|": np.array([np.abs(trace.block(t).values).mean() for t in affine]),
            "rms S": np.array([np.sqrt(np.mean(trace.incoming(t) ** 2)) for t in affine])}


def plot(results: dict[str, dict[str, np.ndarray]], path: Path) -> None:
    from matplotlib.figure import Figure

    from msgpass.draw.style import save
    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    ax = fig.add_subplot()
    colours = {"sigmoid": "#d62728", "tanh": "#ff7f0e", "relu": "#1f77b4"}
    for name, rows in results.items():
        depth = len(rows["mean |δ|"])
        ax.semilogy(np.arange(1, depth + 1), rows["mean |δ|"], "o-", ms=3, color=colours[name],
                    label=f"{name} ({ACTIVATIONS[name][1]} init)")
    ax.set_xlabel("hidden Affine layer k (1 = next to the input; the loss is above layer "
                  f"{DEPTH})", fontsize=9)
    ax.set_ylabel("mean |δ| of the layer's messages")
    ax.set_title(f"Messages vanish with depth unless the activation keeps them\n{DEPTH} layers of "
                 f"width {WIDTH}, batch {BATCH}, softmax + cross-entropy", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    save(fig, path)


def main(out: Path | None = None) -> dict[str, dict[str, np.ndarray]]:
    out = out or Path(__file__).resolve().parents[1] / "figures" / "vanishing.png"
    results = {name: measure(name) for name in ACTIVATIONS}
    print(f"{DEPTH} hidden layers of width {WIDTH}, batch {BATCH}, seed {SEED}")
    print(f"{'activation':>10} {'mean|δ| layer 1':>16} {'layer 15':>10} {'layer 30':>10} "
          f"{'ratio 1/30':>11} {'per layer':>10}")
    for name, rows in results.items():
        m = rows["mean |δ|"]
        per_layer = (m[0] / m[-1]) ** (1 / (len(m) - 1))
        print(f"{name:>10} {m[0]:16.2e} {m[len(m) // 2 - 1]:10.2e} {m[-1]:10.2e} "
              f"{m[0] / m[-1]:11.2e} {per_layer:10.3f}")
    plot(results, out)
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path,
                        help="where to write the figure (default figures/vanishing.png)")
    main(parser.parse_args().out)
