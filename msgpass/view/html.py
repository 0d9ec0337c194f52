"""The interactive HTML explorer of a trace: one self-contained file (the data as embedded
JSON, inline CSS and JavaScript; no network, no CDN), opened in any browser.

It steps through the backward pass block by block from the loss down; hovering or clicking an
edge shows δ = J · S with its three numbers; clicking a node lists the messages it received
and their sum S (= trace.incoming); a menu switches between the batch samples and the batch
mean; only the strongest ``top_k`` edges of each block are embedded (a 784-100 layer has
78,400); a checkbox shows the forward values instead of the sums.

    trace.to_html("trace.html")                       # Sequential, conv or Graph traces
    write_html(trace, "trace.html", sample="mean", top_k=50)
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np

from .assets import CSS, JS
from .extract import MEAN, Extract, check_top_k, check_view, extract

__all__ = ["write_html", "explorer_data", "page", "TOP_K", "MAX_SAMPLES", "DIGITS"]

TOP_K = 200          # edges per block: a 784-100 layer's 78,400 would make a 10 MB file
MAX_SAMPLES = 32     # samples embedded by default (each costs top_k messages per block)
DIGITS = 4           # significant digits printed; the embedded numbers keep all of theirs


def write_html(trace, path, *, sample: int | str | None = None, top_k: int | None = TOP_K,
               samples=None, digits: int = DIGITS, title: str | None = None) -> Path:
    """Write the explorer of ``trace`` (a Trace or a GraphTrace) to ``path``.

    Parameters
    ----------
    trace : Trace or GraphTrace
        Exact and mp numbers are shown as floats. A block the pass did not keep, or one that
        couples the samples (BatchNorm in training), is shown without edges, saying why.
    path : str or Path
        The file to write (UTF-8 HTML).
    sample : int, "mean" or None
        The view shown first: a batch index, or the batch mean; None (default) is the first
        sample the trace kept (0 unless it kept only some).
    top_k : int or None
        Edges embedded per block, the strongest by |δ| in each view (ties in C order); None
        embeds every edge. The page can show fewer.
    samples : sequence of int, optional
        The batch samples embedded (each adds top_k messages per block). Default: the first
        ``MAX_SAMPLES`` (32) samples the trace kept, and ``sample``. The mean is over every
        sample whatever is embedded.
    digits : int
        Significant digits printed (1..17).
    title : str, optional
        The page title (default: the layers, or the graph's output).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    TypeError, ValueError, IndexError
        For a trace of another type, a bad option (named, with what it expects), or a sample
        the trace does not hold.
    """
    data = explorer_data(trace, sample=sample, top_k=top_k, samples=samples, digits=digits,
                         title=title)
    path = Path(path)
    path.write_text(page(data), encoding="utf-8")
    return path


def explorer_data(trace, *, sample: int | str | None = None, top_k: int | None = TOP_K,
                  samples=None, digits: int = DIGITS, title: str | None = None) -> dict:
    """The JSON document the page draws (write_html's options).

    Fields: ``kind`` ("chain" or "graph"), ``title``, ``batch``, ``digits``, ``topK`` (edges
    embedded per block at most: ``top_k``, or the widest block's count for None),
    ``viewKeys`` (batch indices, and "mean"), ``viewNames``, ``initial`` (index into the
    views), ``steps`` (what each step sends), ``output`` (the group the seed arrives at),
    ``groups`` (key, label, shape, column, size, shared, ``values`` and ``sums``: one list
    of N numbers per view, ``sums`` null for a group that receives none) and ``links`` (key,
    source and destination group indices, title, label, step, note, total edges,
    ``inDegree`` (N_source,), and ``views``: per view the k strongest edges as ``src``,
    ``dst`` (node indices), ``msg`` (δ), ``J`` (or null where J cannot be recovered),
    ``S``).
    """
    ex = extract(trace)
    top_k = check_top_k(top_k)
    if isinstance(digits, bool) or not isinstance(digits, (int, np.integer)) \
            or not 1 <= digits <= 17:
        raise ValueError(f"digits must be an int from 1 to 17, got {digits!r}")
    first = check_view(sample, ex)
    keys = _views(ex, samples, first)
    index = {g.key: i for i, g in enumerate(ex.groups)}
    links = []
    for link in ex.links:
        edges = ex.strongest(link, keys, top_k)
        degree = ex.edge_index(link)[2] if not link.note else np.zeros(0, dtype=int)
        links.append({
            "key": link.key, "source": index[link.source],
            "destination": index[link.destination], "title": link.title,
            "label": link.label, "step": link.step, "note": link.note,
            "total": ex.edge_count(link), "inDegree": degree.tolist(),
            "views": [{"src": e.source.tolist(), "dst": e.destination.tolist(),
                       "msg": _numbers(e.message),
                       "J": None if e.partial is None else _numbers(e.partial),
                       "S": _numbers(e.arriving)} for e in (edges[k] for k in keys)]
            if edges else []})
    groups = [{"key": g.key, "label": g.label, "shape": list(g.shape), "column": g.column,
               "size": g.size, "shared": g.shared,
               # forward values are only printed: rounded here (correctly, to the digits
               # printed) they take half the bytes; sums and messages keep every digit, as
               # the page adds and subtracts them
               "values": [_numbers(ex.row(g, k, "values"), digits) for k in keys],
               "sums": None if g.sums is None else [_numbers(ex.row(g, k)) for k in keys]}
              for g in ex.groups]
    widest = max((len(v["msg"]) for link in links for v in link["views"]), default=1)
    return {"kind": ex.kind, "title": title or ex.title, "batch": ex.batch, "digits": digits,
            "topK": widest if top_k is None else top_k, "viewKeys": keys,
            "viewNames": [_view_name(k, ex) for k in keys], "initial": keys.index(first),
            "steps": ex.steps, "output": index[ex.output], "groups": groups,
            "links": links}


def page(data: dict) -> str:
    """The HTML document for ``explorer_data``'s dictionary."""
    payload = json.dumps(data, allow_nan=False, separators=(",", ":"))
    # no "<" at all inside the script element: "</script>" would end it, and "<!--" followed
    # by "<script" would leave the tokenizer in its double-escaped state and swallow the page's
    # own script. JSON reads "\\u003c" back as "<".
    payload = payload.replace("<", "\\u003c")
    title = html.escape(data["title"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; \
style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>msgpass · {title}</title>
<style>{CSS}</style></head>
<body>
<header>
  <h1>msgpass · messages</h1>
  <div class="group">
    <button id="step-first" title="before the first message">◀◀</button>
    <button id="step-prev" title="one step back (←)">◀</button>
    <button id="step-next" title="one step on (→)">▶</button>
    <button id="step-last" title="every message sent">▶▶</button>
    <span id="step-label"></span>
  </div>
  <div class="group"><label for="view">view</label> <select id="view"></select></div>
  <div class="group"><label for="top-k">strongest</label>
    <input id="top-k" type="number" min="1" step="1"> edges per block</div>
  <div class="group"><label><input id="forward" type="checkbox"> forward values</label></div>
  <div class="group"><label for="node-group">node</label> <select id="node-group"></select>
    <input id="node-index" type="number" min="0" value="0"> <button id="find">show</button>
  </div>
</header>
<main>
  <svg id="canvas" xmlns="http://www.w3.org/2000/svg" role="img"
       aria-label="the message blocks of the backward pass"></svg>
  <aside id="panel">
    <h2>{title}</h2>
    <p>Each edge carries a message <b>δ = J · S</b>: the local partial J of the node that sends
    times the sum S that node received from above. Every node sums what it receives.</p>
    <p class="note">Step through the backward pass from the loss down with ◀ ▶ (or the arrow
    keys). Hover or click an edge for its δ = J · S; click a node (or pick one above) for its
    incoming messages and their sum.</p>
  </aside>
</main>
<footer>
  <span id="edge-count"></span>
  <span><i class="swatch" style="background:var(--pos)"></i>δ &gt; 0
    <i class="swatch" style="background:var(--neg)"></i>δ &lt; 0; width ∝ |δ| ÷ the block's
    largest shown |δ|</span>
  <span id="legend-nodes"></span>
</footer>
<div id="tip"></div>
<noscript>This explorer needs JavaScript.</noscript>
<script id="msgpass-data" type="application/json">{payload}</script>
<script>{JS}</script>
</body></html>
"""


def _views(ex: Extract, samples, first) -> list:
    """The views embedded: batch indices (the chosen ones, or the first MAX_SAMPLES kept,
    plus ``first``), then "mean" when every sample was kept."""
    if samples is None:
        chosen = [int(s) for s in ex.samples[:MAX_SAMPLES]]
    else:
        if isinstance(samples, (str, bytes)) or not hasattr(samples, "__iter__"):
            raise TypeError(f"samples must be a sequence of batch indices, got {samples!r}")
        chosen = [check_view(s, ex) for s in samples]
        if MEAN in chosen:
            raise ValueError("samples lists batch indices; the mean is added by itself")
    if first != MEAN and first not in chosen:
        chosen.append(first)
    keys: list = sorted(set(chosen))
    if ex.mean:
        keys.append(MEAN)
    return keys


def _view_name(key, ex: Extract) -> str:
    if key == MEAN:
        return f"batch mean ({ex.batch} samples)"
    return f"sample {key}"


def _numbers(a, digits: int | None = None) -> list:
    """A float array as a JSON list (rounded to ``digits`` significant digits if given); NaN
    and ±∞ as the strings the page turns back."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    values = a.tolist()
    if digits is not None:
        values = [float(f"{x:.{digits}g}") for x in values]
    if np.isfinite(a).all():
        return values
    return [x if math.isfinite(x) else ("NaN" if math.isnan(x) else
                                        ("Infinity" if x > 0 else "-Infinity"))
            for x in values]
