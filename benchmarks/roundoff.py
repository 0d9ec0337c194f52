"""Measure how far the message sums and gradients drift from standard backprop by round-off.

The tolerances in msgpass/compare.py are derived from these numbers. Run:

    python benchmarks/roundoff.py [--nets 600] [--seed 123]

For random networks (depth ≤ 6, width ≤ 32, batch ≤ 16, every layer kind, every loss) it
prints, per dtype, quantiles of  max|messages − backprop| / (u · M),  u the unit round-off
and M each entry's path magnitude (msgpass.verify.path_magnitudes).
"""

from __future__ import annotations

import argparse

import numpy as np

import msgpass as mp
from msgpass.sampling import random_batch, random_network
from msgpass.verify import path_magnitudes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", type=int, default=600)
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    for dtype in (np.float64, np.float32):
        u = np.finfo(dtype).eps / 2
        ratios = []
        for _ in range(args.nets):
            net = random_network(rng, dtype=dtype)
            x, target = random_batch(net, int(rng.integers(1, 17)), rng)
            net.forward(x, target)
            trace = net.backward()
            ref = mp.backprop(net, x, target)
            sums_m, grads_m = path_magnitudes(trace)
            pairs = [(trace.incoming(t), ref.incoming(t), sums_m[t]) for t in range(1, net.T + 1)]
            pairs += [(trace.grads[k], ref.grads[k], grads_m[k]) for k in trace.grads]
            for a, b, m in pairs:
                a, b = a.astype(np.float64), b.astype(np.float64)
                if np.any(m > 0):
                    ratios.append(np.max(np.abs(a - b)[m > 0] / m[m > 0]) / u)
        q = np.percentile(ratios, [50, 99, 100])
        print(f"{np.dtype(dtype).name}: {len(ratios)} arrays from {args.nets} networks; "
              f"max|messages - backprop| / (u·M): median {q[0]:.2f}, 99% {q[1]:.2f}, "
              f"max {q[2]:.2f}")


if __name__ == "__main__":
    main()
