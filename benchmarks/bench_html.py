"""Size and open time of the interactive HTML explorer of a trace, measured in one run.

    python benchmarks/bench_html.py [--spec 784-100-relu-10-sce] [--batch 16] [--top-k 200]
    python benchmarks/bench_html.py --quick            # a small network (the test suite's run)
    python benchmarks/bench_html.py --screenshot figures/html-explorer.png

The trace is the network's at a random batch (seed 0). It prints the file's size, the time
to write it, and the time to open it in headless Chromium (msgpass.view.browser, the browser
test's code): ``ready`` as the page measures it (performance.now() when the first drawing is
done, from navigation start) and the wall time from the request to that flag, the median of
--repeat openings. Targets (issue 20): under 10 MB and under 2 s for 784-100-relu-10 at
B = 16. Without a browser the open time is "n/a" and says why.

--screenshot PATH also writes the README's picture: the same page at 1400×820, a node's
incoming messages in the panel and an edge's δ = J · S under the pointer.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import msgpass as mp
from msgpass.testing import random_batch
from msgpass.view.browser import open_page, unavailable
from msgpass.view.html import write_html

LIMIT_BYTES = 10 * 1024 * 1024
LIMIT_SECONDS = 2.0


def trace_of(spec: str, batch: int):
    net = mp.build_network(spec, seed=0)
    x, target = random_batch(net, batch, np.random.default_rng(0))
    net.forward(x, target)
    return net.backward()


def screenshot(path: Path, out: Path, shown_k: int) -> None:
    """The README's picture: the strongest ``shown_k`` edges per block; clicked, the node of
    the last hidden layer that most of the shown messages of the block above reach; hovered,
    the strongest message of layer 1."""
    with open_page(path) as opened:
        page = opened.page
        page.fill("#top-k", str(shown_k))
        page.dispatch_event("#top-k", "change")
        data = page.evaluate("JSON.parse(document.getElementById('msgpass-data').textContent)")
        above = data["links"][1]                 # layer T-1, into the last hidden layer
        g = above["source"]
        n = int(np.argmax(np.bincount(above["views"][0]["src"][:shown_k],
                                      minlength=data["groups"][g]["size"])))
        page.click(f'.node[data-g="{g}"][data-n="{n}"]')
        last = len(data["links"]) - 1            # layer 1
        page.locator(f'.edge[data-l="{last}"][data-i="0"]').hover(force=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=out)
        if opened.errors:
            raise SystemExit(f"the page reported errors: {opened.errors}")
    print(f"screenshot: {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="784-100-relu-10-sce")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--top-k", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="64-32-relu-10-sce at B = 4, one opening")
    parser.add_argument("--screenshot", type=Path, help="also write the README's screenshot")
    parser.add_argument("--screenshot-k", type=int, default=100,
                        help="edges per block shown in the screenshot")
    args = parser.parse_args()
    if args.quick:
        args.spec, args.batch, args.repeat = "64-32-relu-10-sce", 4, 1
    trace = trace_of(args.spec, args.batch)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.html"
        start = time.perf_counter()
        write_html(trace, path, top_k=args.top_k)
        written = time.perf_counter() - start
        size = path.stat().st_size
        print(f"{args.spec}, B = {args.batch}, top_k = {args.top_k}: file {size / 1e6:.2f} MB "
              f"({size:,} bytes; under 10 MB: {'yes' if size < LIMIT_BYTES else 'NO'}), "
              f"written in {written:.2f} s")
        why = unavailable()
        if why:
            print(f"open time: n/a ({why})")
            return
        ready, wall = [], []
        for _ in range(args.repeat):
            with open_page(path) as opened:
                if opened.errors:
                    raise SystemExit(f"the page reported errors: {opened.errors}")
                ready.append(opened.ready_ms / 1000)
                wall.append(opened.wall_s)
        r, w = float(np.median(ready)), float(np.median(wall))
        print(f"open time: ready {r:.2f} s (page's own clock), {w:.2f} s wall (median of "
              f"{args.repeat}); under 2 s: {'yes' if max(r, w) < LIMIT_SECONDS else 'NO'}")
        if args.screenshot:
            screenshot(path, args.screenshot, args.screenshot_k)


if __name__ == "__main__":
    main()
