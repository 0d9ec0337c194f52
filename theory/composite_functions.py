"""Jacobians of composite functions: reverse messages against forward messages.

A family of dense composite functions f: R^n -> R^m, every output mixing every input:

    u = sin(x) * softplus(x)              n entries
    h = u @ W                             m entries; W a fixed n x m matrix, N(0, 1/n), seed 0
    f = softplus(h) * cos(h) + mean(u^2)  m entries (the mean is added to each of them)

One message pass, reverse or forward, sends one message along every edge of this graph:
E(n, m) = 6n + 2nm + 6m messages (document 7, section 7.3). The full Jacobian takes m
reverse passes (seed e_j: row j) or n forward passes (tangent e_i: column i), so m*E or n*E
messages. For each (n, m) the script runs both sets of passes, counts the messages they send
(the numbers stored in the reverse blocks, the tangent messages of each forward pass), checks
that the two Jacobians agree with each other, with ``Graph.jacobian`` in either mode and with
torch.func.jacrev (when torch imports), times ``Graph.jacobian`` in both modes, prints the
table and writes figures/composite-message-counts.png (counts only: the figure is the same on
every run).

    python theory/composite_functions.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import msgpass as mp

INPUTS = (1, 2, 4, 8, 16, 32)     # n
OUTPUTS = (1, 4, 16)              # m
SEED = 0
REPEATS = 3                       # wall time: the best of this many runs
TOL_AGREE = 1e-12                 # relative: the same float64 products, summed in other orders


def composite(n: int, m: int, seed: int = SEED):
    """The graph of f: R^n -> R^m at a random point; returns (graph, output node, x, W)."""
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=n)
    W = rng.normal(size=(n, m)) / np.sqrt(n)
    g = mp.Graph()
    x = g.input("x", x0)
    u = mp.sin(x) * mp.softplus(x)
    h = u @ W                                   # W enters as a constant node
    f = mp.softplus(h) * mp.cos(h) + mp.mean(mp.square(u))
    return g, f, x0, W


def messages_per_pass(n: int, m: int) -> int:
    """E(n, m), counted from the graph's wiring (section 7.3): 6n + 2nm + 6m."""
    return 6 * n + 2 * n * m + 6 * m


def torch_jacobian(x0: np.ndarray, W: np.ndarray) -> np.ndarray | None:
    """torch.func.jacrev of the same function in float64, (m, n); None without torch."""
    try:
        import torch
        from torch.func import jacrev
    except ImportError:
        return None
    Wt = torch.tensor(W, dtype=torch.float64)

    def f(x):
        u = torch.sin(x) * torch.nn.functional.softplus(x)
        h = u @ Wt
        return torch.nn.functional.softplus(h) * torch.cos(h) + (u * u).mean()
    return jacrev(f)(torch.tensor(x0, dtype=torch.float64)).numpy()


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), np.finfo(float).tiny))


def _best_time(call) -> float:
    best = np.inf
    for _ in range(REPEATS):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def measure(n: int, m: int, seed: int = SEED, timing: bool = True) -> dict:
    """One row: messages and passes of both Jacobians, their agreement, and wall times."""
    g, f, x0, W = composite(n, m, seed)
    shape = np.shape(g.forward(output=f))        # f's shape as msgpass shows it
    reverse = np.zeros((m, n))
    reverse_counts = []
    for j in range(m):                           # row j: the seed e_j on output j
        seed_j = np.zeros(m)
        seed_j[j] = 1
        trace = g.backward(f, seed=seed_j.reshape(shape))
        reverse[j] = trace.incoming["x"].reshape(-1)
        reverse_counts.append(sum(edge.block.values.size for edge in trace.edges))
    forward = np.zeros((m, n))
    forward_counts = []
    for i in range(n):                           # column i: the tangent e_i on input i
        direction = np.zeros(n)
        direction[i] = 1
        tangent = g.jvp(f, {"x": direction})
        forward[:, i] = tangent.output.reshape(-1)
        sent = sum(edge.messages.size for edge in tangent.edges)
        if sent != tangent.message_count():
            raise AssertionError(f"n={n}, m={m}: {sent} tangent messages stored, "
                                 f"message_count() says {tangent.message_count()}")
        forward_counts.append(sent)
    per_pass = messages_per_pass(n, m)
    if set(reverse_counts) != {per_pass} or set(forward_counts) != {per_pass}:
        raise AssertionError(f"n={n}, m={m}: passes sent {sorted(set(reverse_counts))} "
                             f"(reverse) and {sorted(set(forward_counts))} (forward) messages, "
                             f"not E = {per_pass}")
    by_mode = {mode: np.asarray(g.jacobian(f, "x", mode=mode)).reshape(m, n)
               for mode in ("reverse", "forward")}
    reference = torch_jacobian(x0, W)
    errors = {"reverse vs forward": _relative(reverse, forward),
              "vs Graph.jacobian": max(_relative(reverse, by_mode["reverse"]),
                                       _relative(forward, by_mode["forward"])),
              "vs torch": np.nan if reference is None else
              max(_relative(reverse, reference), _relative(forward, reference))}
    worst = max(e for e in errors.values() if not np.isnan(e))
    if worst > TOL_AGREE:
        raise AssertionError(f"n={n}, m={m}: the Jacobians disagree: {errors}")
    row = {"n": n, "m": m, "E": per_pass,
           "reverse passes": m, "reverse messages": sum(reverse_counts),
           "forward passes": n, "forward messages": sum(forward_counts),
           **errors}
    row["fewer"] = "reverse" if row["reverse messages"] < row["forward messages"] else \
        "forward" if row["forward messages"] < row["reverse messages"] else "equal"
    if timing:
        row["reverse ms"] = 1e3 * _best_time(lambda: g.jacobian(f, "x", mode="reverse"))
        row["forward ms"] = 1e3 * _best_time(lambda: g.jacobian(f, "x", mode="forward"))
    return row


def plot(rows: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    from msgpass.draw.style import save
    fig = Figure(figsize=(6.6, 4.6), dpi=100)
    ax = fig.add_subplot()
    colours = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")
    for k, m in enumerate(sorted({row["m"] for row in rows})):
        mine = [row for row in rows if row["m"] == m]
        n = [row["n"] for row in mine]
        colour = colours[k % len(colours)]
        ax.loglog(n, [row["reverse messages"] for row in mine], "s--", ms=4, color=colour,
                  label=f"m = {m}: reverse, m·E")
        ax.loglog(n, [row["forward messages"] for row in mine], "o-", ms=4, color=colour,
                  label=f"m = {m}: forward, n·E")
        if m in n:                                # where the two cost the same: n = m
            both = mine[n.index(m)]["forward messages"]
            ax.plot([m], [both], "k*", ms=10, zorder=3)
    ax.plot([], [], "k*", ms=8, label="n = m: the same count")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({row["n"] for row in rows}))
    ax.set_xticklabels([str(n) for n in sorted({row["n"] for row in rows})])
    ax.set_ylim(8, 2e6)                           # room for the legend above the lines
    ax.set_xlabel("n, the number of inputs")
    ax.set_ylabel("messages sent for the whole Jacobian")
    ax.set_title("Full Jacobian of f: Rⁿ → Rᵐ by messages\nreverse: m passes, forward: n "
                 "passes, each E = 6n + 2nm + 6m messages", fontsize=10)
    ax.legend(fontsize=8, loc="upper left", ncols=2)
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    save(fig, path)


def table(rows: list[dict]) -> str:
    """The rows as text: counts, the mode that sends fewer messages, times, the largest relative
    differences (reverse against forward, and against torch)."""
    lines = [f"{'n':>3} {'m':>3} {'E':>5} {'reverse m·E':>12} {'forward n·E':>12} "
             f"{'fewer':>8} {'rev ms':>7} {'fwd ms':>7} {'rev−fwd':>8} {'torch':>7}"]

    def small(value):
        return "-" if np.isnan(value) else f"{value:.0e}"

    def ms(value):
        return "-" if value is None else f"{value:.1f}"
    for row in rows:
        lines.append(
            f"{row['n']:>3} {row['m']:>3} {row['E']:>5,} {row['reverse messages']:>12,} "
            f"{row['forward messages']:>12,} {row['fewer']:>8} "
            f"{ms(row.get('reverse ms')):>7} {ms(row.get('forward ms')):>7} "
            f"{small(row['reverse vs forward']):>8} {small(row['vs torch']):>7}")
    return "\n".join(lines)


def main(out: Path | None = None, timing: bool = True) -> list[dict]:
    out = out or Path(__file__).resolve().parents[1] / "figures" / "composite-message-counts.png"
    rows = [measure(n, m, timing=timing) for m in OUTPUTS for n in INPUTS]
    print(f"f: R^n -> R^m, u = sin(x)·softplus(x), h = u @ W, f = softplus(h)·cos(h) + "
          f"mean(u²); seed {SEED}")
    print(table(rows))
    plot(rows, out)
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path,
                        help="where to write the figure (default "
                             "figures/composite-message-counts.png)")
    parser.add_argument("--no-timing", action="store_true",
                        help="skip the wall times (the counts do not depend on them)")
    args = parser.parse_args()
    main(args.out, timing=not args.no_timing)
