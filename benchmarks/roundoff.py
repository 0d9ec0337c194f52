"""Measure round-off: of the message pass against standard backprop, and of the numerical
witness. The tolerances in msgpass/compare.py and the numerical witness's ROUNDOFF_FACTOR
are derived from these numbers. Run:

    python benchmarks/roundoff.py [--nets 600] [--seed 123] [--numeric-nets 300]

1. For random networks (depth ≤ 6, width ≤ 32, batch ≤ 16, every layer kind, every loss) it
   prints, per dtype, quantiles of  max|messages − backprop| / (u · M),  u the unit round-off
   and M each entry's path magnitude (msgpass.verification.path_magnitudes).
2. For smaller random networks (width ≤ 12, batch ≤ 8, float64) it prints quantiles of
   max|numeric − backprop| / (u · max(1, |ℓ|) / h), the numerical witness's error in units
   of its round-off scale (parameters; and tails, where the scale carries a further 1/B).
"""

from __future__ import annotations

import argparse

import numpy as np

import msgpass as mp
from msgpass.testing import random_batch, random_network
from msgpass.verification.roundoff import path_magnitudes
from msgpass.witnesses.numeric import EPS_STEP


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", type=int, default=600)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--numeric-nets", type=int, default=300)
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
    numeric_noise(rng, args.numeric_nets)


def numeric_noise(rng: np.random.Generator, nets: int) -> None:
    """The numerical witness's error in units of u·max(1, |ℓ|)/h (straddles left out)."""
    u, ratios = np.finfo(np.float64).eps / 2, []
    for _ in range(nets):
        net = random_network(rng, max_width=12)
        x, target = random_batch(net, int(rng.integers(1, 9)), rng)
        ref = mp.backprop(net, x, target)
        num = mp.numeric_witness(net, x, target)
        ell = max(1.0, float(np.max(np.abs(net.layers[-1].forward(net.predict(x), target)[0]))))
        unit = u * ell / EPS_STEP
        pairs = [(num.grads[k], ref.grads[k], ~num.straddles[k], unit) for k in ref.grads]
        pairs += [(num.tails[t], ref.incoming(t), ~num.straddles[t], unit / x.shape[0])
                  for t in range(1, net.T + 1)]
        for a, b, keep, scale in pairs:
            if keep.any():
                ratios.append(np.max(np.abs(a - b)[keep]) / scale)
    q = np.percentile(ratios, [50, 99, 100])
    print(f"numeric witness: {len(ratios)} arrays from {nets} networks; max|numeric - backprop|"
          f" / (u·max(1,|l|)/h): median {q[0]:.2f}, 99% {q[1]:.2f}, max {q[2]:.2f}")


if __name__ == "__main__":
    main()
