"""Do two versions of msgpass compute the same chain traces, bit for bit?

    python benchmarks/same_results.py --old-python OLD/.venv/bin/python \\
        [--new-python .venv/bin/python]

Each interpreter imports its own installed msgpass (as in bench_versions.py) and runs the same
seeded networks (ReLU/Tanh MLPs, BatchNorm in training and in eval mode, Dropout, float32)
under every option of ``Sequential.backward`` (keep, keep_samples, per_sample, stats, small
budgets, the dask backend, store=), writing every array of every trace into an .npz; the two
files are then compared array by array with ``np.array_equal`` (NaN-free by construction).
Prints each case with "same" or what differs, and exits 1 if anything differs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

WORKER = r"""
import sys, tempfile, os, numpy as np, msgpass as mp
out = {}
nets = {
    "mlp": ("12-16-relu-8-tanh-5-sce", None),
    "bn-train": ("12-16-batchnorm-relu-5-sce", "train"),
    "bn-eval": ("12-16-batchnorm-relu-5-sce", "eval"),
    "dropout": ("12-16-relu-dropout-5-sce", None),
    "float32": ("12-16-sigmoid-5-sce", "float32"),
}
options = {
    "all": dict(), "sums": dict(keep="sums"), "some": dict(keep=[1, 3]),
    "samples": dict(keep=[1, 2], keep_samples=[0, 5]), "per_sample": dict(per_sample=True),
    "stats": dict(stats=True), "budget": dict(budget_bytes=400, chunk_bytes=64),
    "dask": dict(backend="dask", chunk_samples=3, keep="all"),
}
for name, (spec, mode) in nets.items():
    net = mp.build_network(spec, seed=0, dtype="float32" if mode == "float32" else "float64")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 12))
    y = rng.integers(0, 5, 7)
    if mode == "eval":
        net.forward(x, y); net.next_step(); net.eval()
    net.forward(x, y)
    for opt, kw in options.items():
        if name == "bn-train" and opt in ("dask", "stats"):
            continue   # refused for a coupled layer in both versions
        trace = net.backward(**kw)
        key = f"{name}/{opt}"
        for t, S in trace.incoming.items():
            out[f"{key}/S{t}"] = np.asarray(S)
        for k, g in trace.grads.items():
            out[f"{key}/g{k}"] = np.asarray(g)
        for t, b in trace.blocks.items():
            out[f"{key}/m{t}"] = np.asarray(b.values)
        for k, m in trace.param_messages.items():
            out[f"{key}/p{k}"] = np.asarray(m)
        for t, s in trace.stats.items():
            for field in ("total", "absmax", "counts"):
                if getattr(s, field) is not None:
                    out[f"{key}/s{t}{field}"] = np.asarray(getattr(s, field))
    if mode != "train" and name != "bn-train":
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "t.zarr")
            net.backward(backend="dask", store=path, keep="all", chunk_samples=4)
            ds = mp.load_trace(path)
            for v in ds.data_vars:
                out[f"{name}/store/{v}"] = np.asarray(ds[v].values)
np.savez(sys.argv[1], **out)
"""


def run(python: str, target: Path) -> None:
    # outside any checkout, so that each interpreter imports its own installed msgpass
    done = subprocess.run([python, "-c", WORKER, str(target)], cwd=tempfile.gettempdir(),
                          capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{python} failed:\n{done.stderr[-3000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-python", required=True)
    parser.add_argument("--new-python", default=sys.executable)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        old, new = Path(folder, "old.npz"), Path(folder, "new.npz")
        run(args.old_python, old)
        run(args.new_python, new)
        a, b = np.load(old), np.load(new)
        cases = sorted({k.rsplit("/", 1)[0] for k in a.files} | {k.rsplit("/", 1)[0]
                                                                  for k in b.files})
        bad = 0
        for case in cases:
            keys = sorted({k for k in a.files if k.startswith(case + "/")}
                          | {k for k in b.files if k.startswith(case + "/")})
            differ = [k.rsplit("/", 1)[1] for k in keys
                      if k not in a.files or k not in b.files
                      or a[k].shape != b[k].shape or not np.array_equal(a[k], b[k])]
            bad += bool(differ)
            print(f"{case:<24} {len(keys):3d} arrays  "
                  + ("same" if not differ else f"DIFFER: {', '.join(differ)}"))
        print(f"{len(cases)} cases, {bad} differ")
        return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
