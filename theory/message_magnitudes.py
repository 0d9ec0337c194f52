"""How the magnitudes of every layer's messages move during a short training run.

A 64-64-relu-64-relu-10-sce network (msgpass's seeded defaults) learns the built-in 8×8
digits (standardised on the training split) by plain SGD with the message backward. Every
EVERY steps, one fixed probe batch (PROBE held-out samples, the same each time) goes through
the network and ``net.backward(keep="sums", stats=True)`` gathers, for every layer, the
histogram of its messages' binary orders of magnitude (bin e: 2^e ≤ |δ| < 2^(e+1); exact
zeros in the bin below 2^-1022) without keeping a single message. Each step's statistics are
appended to a zarr store with a ``step`` dimension (``mp.append_trace``), which is
then read back lazily with ``mp.load_trace`` (xarray over dask) to draw:

* for each Affine layer, the share of its messages in each magnitude bin, step by step;
* the share of zero messages per layer (what inactive ReLU units send; the histogram's
  lowest bin, which would also hold any message below 2^-1022) and the median magnitude of
  the non-zero ones.

Writes figures/message-magnitudes.png and prints a table of the first and last step. Needs
the optional extra msgpass[scale].

    python theory/message_magnitudes.py [--store run.zarr] [out.png]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import msgpass as mp
from msgpass.training.data import Standardizer, load_digits, minibatches, split

SPEC, STEPS, EVERY, BATCH, PROBE, LR, SEED = "64-64-relu-64-relu-10-sce", 600, 25, 32, 256, 0.1, 0


def run(store: Path, steps: int = STEPS, every: int = EVERY, seed: int = SEED) -> mp.Sequential:
    """Train, appending the probe batch's message statistics to ``store`` every ``every``
    steps (and at step 0, before any update)."""
    train, held_out = split(load_digits(), validation=0.2, seed=seed)
    scale = Standardizer.fit(train.x, eps=1.6)      # a tenth of a pixel's range 0..16
    x, y = scale(train.x), train.y
    probe_x, probe_y = scale(held_out.x[:PROBE]), held_out.y[:PROBE]
    net = mp.build_network(SPEC, seed=seed)
    optimizer = mp.optim.SGD(net.params, lr=LR)
    rng = np.random.default_rng(seed)
    step = 0
    while step <= steps:
        for index in minibatches(len(y), BATCH, rng):
            if step % every == 0:
                net.forward(probe_x, probe_y)
                mp.append_trace(net.backward(keep="sums", stats=True), store, step)
            if step == steps:
                return net
            net.forward(x[index], y[index])
            optimizer.step(net.backward(keep="sums").grads)
            step += 1
    return net


def summarise(ds) -> dict[int, dict[str, np.ndarray]]:
    """Per layer t, per recorded step: the share of zero messages, the median binary exponent of
    the non-zero messages, and the histogram as shares (rows: steps, columns: exponent)."""
    exponents = ds["exponent"].values
    rows = {}
    for t in range(1, int(ds.attrs["T"]) + 1):
        counts = ds[f"histogram{t}"].values.astype(np.float64)      # (step, exponent), read
        total = counts.sum(axis=1, keepdims=True)
        share = counts / total
        nonzero = counts[:, 1:]
        cumulative = np.cumsum(nonzero, axis=1) / nonzero.sum(axis=1, keepdims=True)
        median = exponents[1:][np.argmax(cumulative >= 0.5, axis=1)]
        rows[t] = {"zero": share[:, 0], "median": median, "share": share,
                   "total": total[:, 0]}
    return rows


def plot(ds, rows, path: Path) -> None:
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    from msgpass.draw.style import save
    steps = ds["step"].values
    exponents = ds["exponent"].values
    affine = [t for t in rows if ds.attrs[f"kind{t}"] == "shared"]
    fig = Figure(figsize=(11, 7.2), dpi=100, layout="constrained")
    axes = fig.subplots(2, 2)
    used = np.flatnonzero(sum(r["share"].sum(axis=0) for r in rows.values())[1:]) + 1
    low, high = exponents[used[0]] - 1, exponents[used[-1]] + 1
    image = None
    for ax, t in zip(axes.flat, affine, strict=False):
        share = rows[t]["share"][:, 1:].T                             # (exponent, step)
        shown = np.where(share > 0, share, np.nan)
        image = ax.pcolormesh(steps, exponents[1:], shown, shading="nearest",
                              norm=LogNorm(1e-5, 1), cmap="viridis")
        ax.plot(steps, rows[t]["median"], "--", color="#ff5a36", lw=1.5,
                label="median of the non-zero")
        ax.set_ylim(low, high)
        ax.set_title(f"layer {t}: {ds.attrs[f'label{t}']} sends to layer {t - 1}", fontsize=10)
        ax.set_xlabel("training step", fontsize=9)
        ax.set_ylabel("e, for 2^e ≤ |δ| < 2^(e+1)", fontsize=9)
        ax.legend(fontsize=8, loc="lower left")
    if image is not None:
        fig.colorbar(image, ax=list(axes.flat[:len(affine)]),
                     label="share of the layer's messages", shrink=0.6)
    ax = axes.flat[-1]
    for t, row in rows.items():
        affine_layer = ds.attrs[f"kind{t}"] == "shared"
        ax.plot(steps, row["zero"], "-" if affine_layer else "--", marker="o" if affine_layer
                else "x", ms=3, lw=1.2 if affine_layer else 2.2,
                label=f"{t}: {ds.attrs[f'label{t}']}")
    ax.set_title("share of messages that are zero (the bin below 2^-1022)\n(an Affine's "
                 "equals the ReLU's above it: a shut-off unit sends 0 to every input)",
                 fontsize=9)
    ax.set_xlabel("training step", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.suptitle(f"Message magnitudes while {SPEC} learns the 8×8 digits (SGD, lr {LR}, batch "
                 f"{BATCH}; probe batch of {ds.sizes['sample']} held-out samples)", fontsize=11)
    save(fig, path)


def main(out: Path | None = None, store: Path | None = None) -> dict:
    out = out or Path(__file__).resolve().parents[1] / "figures" / "message-magnitudes.png"
    with tempfile.TemporaryDirectory() as scratch:
        store = store or Path(scratch) / "run.zarr"
        run(store)
        ds = mp.load_trace(store)
        rows = summarise(ds)
        print(f"{SPEC}, {STEPS} SGD steps (lr {LR}, batch {BATCH}), statistics of a probe batch "
              f"of {ds.sizes['sample']} every {EVERY} steps, seed {SEED}")
        losses = ds["loss"].values
        print(f"probe loss: {losses[0]:.3f} at step 0, {losses[-1]:.3f} at step "
              f"{int(ds['step'].values[-1])}")
        print(f"{'layer':>24} {'messages':>10} {'zero, first':>12} {'last':>6} "
              f"{'median e, first':>16} {'last':>5}")
        for t, row in rows.items():
            print(f"{t:>3} {ds.attrs[f'label{t}']:>20} {int(row['total'][0]):>10,} "
                  f"{row['zero'][0]:>12.3f} {row['zero'][-1]:>6.3f} {int(row['median'][0]):>16} "
                  f"{int(row['median'][-1]):>5}")
        plot(ds, rows, out)
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path,
                        help="where to write the figure (default figures/message-magnitudes.png)")
    parser.add_argument("--store", type=Path,
                        help="keep the zarr store of statistics here (default: a temporary one)")
    args = parser.parse_args()
    main(args.out, args.store)
