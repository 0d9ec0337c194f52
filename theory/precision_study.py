"""Precision study: is the gap between messages and backprop nothing but round-off?

Runs one network with transcendental layers (sigmoid, tanh, log-softmax) in mpmath at 15 to
60 significant digits (``net.astype("mp:D")``). For each precision D it measures

* gap(D): the largest difference between the message sums S^t and standard backprop's
  ∂L/∂z^{t-1}, both computed at D digits, relative to the largest |∂L/∂z^{t-1}| of the layer;
* error(D): the same for the message sums against a reference computed at 120 digits;

and float64's gap for comparison. Round-off at D digits is about 10^-D per operation, so
both should fall like 10^-D; anything else would be a bug. Writes figures/precision.png and
prints the table. Needs mpmath (pip install "msgpass[mp]").

    python theory/precision_study.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import msgpass as mp
from msgpass.testing import random_batch

SPEC = "4-8-tanh-8-sigmoid-6-tanh-5-logsoftmax-nll"
DIGITS = (15, 20, 25, 30, 40, 50, 60)
REFERENCE_DIGITS = 120
BATCH, SEED = 4, 0


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    """max |a − b| / max |b| over one layer's sums, computed in a's and b's own arithmetic."""
    scale = max(abs(v) for v in b.reshape(-1))
    return float(max(abs(x - y) for x, y in zip(a.reshape(-1), b.reshape(-1), strict=True))
                 / scale)


def measure(spec: str = SPEC, digits=DIGITS, batch: int = BATCH, seed: int = SEED,
            reference_digits: int = REFERENCE_DIGITS) -> list[tuple[str, float, float]]:
    """Rows (precision, gap, error against the reference) for float64 and each D."""
    net = mp.build_network(spec, seed=seed)
    x, target = random_batch(net, batch, np.random.default_rng(seed))

    def sums(model):
        model.forward(x, target)
        trace, ref = model.backward(keep="sums"), mp.backprop(model, x, target)
        return ([trace.incoming(t) for t in range(1, model.T + 1)],
                [ref.incoming(t) for t in range(1, model.T + 1)])

    truth, _ = sums(net.astype(f"mp:{reference_digits}"))
    rows = []
    mine, theirs = sums(net)
    rows.append(("float64", max(_relative(a, b) for a, b in zip(mine, theirs, strict=True)),
                 max(_relative(np.asarray(a, dtype=object), t)
                     for a, t in zip(mine, truth, strict=True))))
    for d in digits:
        mine, theirs = sums(net.astype(f"mp:{d}"))
        rows.append((f"mp:{d}",
                     max(_relative(a, b) for a, b in zip(mine, theirs, strict=True)),
                     max(_relative(a, t) for a, t in zip(mine, truth, strict=True))))
    return rows


def plot(rows, path: Path) -> None:
    from matplotlib.figure import Figure

    from msgpass.draw.style import save
    digits = [int(name[3:]) for name, _, _ in rows if name.startswith("mp:")]
    gaps = [g for name, g, _ in rows if name.startswith("mp:")]
    errors = [e for name, _, e in rows if name.startswith("mp:")]
    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    ax = fig.add_subplot()
    ax.semilogy(digits, errors, "o-", color="#1f77b4", label="messages vs 120-digit reference")
    ax.semilogy(digits, gaps, "s--", color="#d62728", label="messages vs backprop, same digits")
    ax.semilogy(digits, [10.0 ** -d for d in digits], ":", color="grey", label="10^-D")
    float_gap = next(g for name, g, _ in rows if name == "float64")
    ax.semilogy([15.95], [float_gap], "D", color="black", label="float64 (u ≈ 1.1e-16)")
    ax.set_xlabel("working precision D (significant decimal digits)")
    ax.set_ylabel("max relative difference of the node sums")
    ax.set_title(f"The gap is round-off: it falls like 10^-D\n{SPEC}, batch {BATCH}",
                 fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    save(fig, path)


def main(out: Path | None = None) -> list[tuple[str, float, float]]:
    out = out or Path(__file__).resolve().parents[1] / "figures" / "precision.png"
    rows = measure()
    print(f"{SPEC}, batch {BATCH}, seed {SEED}; reference at {REFERENCE_DIGITS} digits")
    print(f"{'precision':>10} {'gap vs backprop':>16} {'error vs reference':>19}")
    for name, gap, err in rows:
        print(f"{name:>10} {gap:16.2e} {err:19.2e}")
    plot(rows, out)
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path,
                        help="where to write the figure (default figures/precision.png)")
    main(parser.parse_args().out)
