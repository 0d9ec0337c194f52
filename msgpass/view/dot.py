"""A trace as Graphviz DOT text: the messages as edge labels, the sums at the nodes. No
Graphviz is needed to write it; rendering is up to the user (``dot -Tsvg trace.dot``).

Each group (z^t of a chain, a node of a graph) is a cluster; each shown edge is one line

    "z0[3]" -> "z1[5]" [label="-0.001234", tooltip="δ = J · S = 0.02556 × -0.04828", ...];

drawn in the forward direction (so that Graphviz ranks the inputs first) with ``dir=back``:
the arrowhead sits at the receiver, where the message goes.
"""

from __future__ import annotations

import numpy as np

from .extract import MEAN, check_top_k, check_view, entry_name, extract

__all__ = ["to_dot", "TOP_K", "DIGITS"]

TOP_K = 20        # edges per block: more than a few dozen per block is unreadable as a drawing
DIGITS = 4
POSITIVE, NEGATIVE = "#c0392b", "#1f5fbf"    # the explorer's colours for δ > 0 and δ < 0


def to_dot(trace, *, sample: int | str | None = None, top_k: int | None = TOP_K,
           digits: int = DIGITS, all_nodes: bool = False, values: bool = False,
           rankdir: str = "LR") -> str:
    """The DOT text of a Trace or GraphTrace.

    Parameters
    ----------
    sample : int, "mean" or None
        The batch sample whose messages are written, or the batch mean; None (default) is
        the first sample the trace kept (0 unless it kept only some).
    top_k : int or None
        Edges per block, the strongest by |δ| (ties in C order); None writes every edge.
    digits : int
        Significant digits of every number (1..17).
    all_nodes : bool
        Write every node; by default only those a shown edge touches, and the output.
    values : bool
        Also print each node's forward value z.
    rankdir : "LR", "RL", "TB" or "BT"
        Graphviz's direction from the inputs to the output.

    Returns
    -------
    str
        ``digraph msgpass { … }``: a cluster per group, a node line per shown node (label: its
        name and ``S = …``, the sum it received), an edge line per shown edge (label: δ).
    """
    ex = extract(trace)
    view = check_view(sample, ex)
    top_k = check_top_k(top_k)
    if isinstance(digits, bool) or not isinstance(digits, (int, np.integer)) \
            or not 1 <= digits <= 17:
        raise ValueError(f"digits must be an int from 1 to 17, got {digits!r}")
    if rankdir not in ("LR", "RL", "TB", "BT"):
        raise ValueError(f"rankdir must be 'LR', 'RL', 'TB' or 'BT', got {rankdir!r}")
    graph = ex.kind == "graph"

    def num(x: float) -> str:
        return f"{x:.{digits}g}"

    groups = {g.key: g for g in ex.groups}
    number = {g.key: i for i, g in enumerate(ex.groups)}

    def node_id(key: str, n: int) -> str:
        # ids are positions, never names: graph node "a[0]" and entry 0 of a vector node "a"
        # share a display name, and must stay two nodes; names go in the labels only
        return f"g{number[key]}_{n}"

    shown: dict[str, set[int]] = {g.key: set() for g in ex.groups}
    edge_lines, notes = [], []
    for link in ex.links:
        if link.note:
            notes.append(f"  // {_comment(f'{link.title} ({link.label}): {link.note}')}")
            # no messages to show, but the sums at both ends were kept: show the nodes that
            # received the most, as a shown edge would
            for key in (link.source, link.destination):
                shown[key].update(_largest_sums(ex, groups[key], view, top_k))
            continue
        e = ex.strongest(link, [view], top_k)[view]
        for i in range(len(e.message)):
            n, n_ = int(e.source[i]), int(e.destination[i])
            shown[link.source].add(n)
            shown[link.destination].add(n_)
            J = "?" if e.partial is None else num(e.partial[i])
            product = f"{J} × {num(e.arriving[i])}"
            tip = (f"{link.title}: δ = J · S = {product}" if view != MEAN else
                   f"{link.title}: batch means: δ = {num(e.message[i])}, J = {J}, "
                   f"S = {num(e.arriving[i])}")
            edge_lines.append(
                f"  {node_id(link.source, n)} -> {node_id(link.destination, n_)} "
                f"[label={_id(num(e.message[i]))}, "
                f"tooltip={_id(tip)}, "
                f"color={_id(POSITIVE if e.message[i] >= 0 else NEGATIVE)}];")
    output = ex.output
    shown[output].update(range(groups[output].size))
    what = "the batch mean" if view == MEAN else f"sample {view}"
    kept = "every edge" if top_k is None else f"the strongest {top_k} edges per block"
    lines = ["digraph msgpass {",
             f"  // {_comment(f'msgpass messages of {ex.title}: {what}, {kept}')}; δ on the "
             f"edges, the sum S each node received at the nodes",
             f"  graph [rankdir={rankdir}, label={_id(f'{ex.title} · {what}')}, labelloc=t, "
             f"fontname=Helvetica, nodesep=0.08, ranksep=1.2];",
             "  node [shape=box, style=\"rounded,filled\", fillcolor=\"#f8f9fb\", "
             "fontname=Helvetica, fontsize=10];",
             "  edge [dir=back, fontname=Helvetica, fontsize=9];"]
    for g in ex.groups:
        nodes = range(g.size) if all_nodes else sorted(shown[g.key])
        if not nodes:
            continue
        alone = graph and g.size == 1       # a scalar graph node: no cluster around one box
        if not alone:
            lines.append(f"  subgraph {_id('cluster_' + g.key)} {{")
            lines.append(f"    label={_id(f'{g.key} · {g.label}')}; style=rounded; "
                         f"color=\"#d0d5dd\";")
        sums, zs = ex.row(g, view), ex.row(g, view, "values")
        for n in nodes:
            name = entry_name(g, n, graph)
            label = [f"{name} · {g.label}" if alone else name]
            if sums is not None:
                label.append(f"S = {num(sums[n])}")
            if values:
                label.append(f"z = {num(zs[n])}")
            lines.append(f"  {'' if alone else '  '}{node_id(g.key, n)} "
                         f"[label={_id(*label)}];")
        if not alone:
            lines.append("  }")
    return "\n".join([*lines, *notes, *edge_lines, "}"]) + "\n"


def _id(*lines: str) -> str:
    """A DOT quoted string of one or more lines (joined by DOT's ``\\n``; a line break inside
    a name is one too, so that it never ends the string's line)."""
    text = "\n".join(lines).replace("\r\n", "\n").replace("\r", "\n")
    return '"' + "\\n".join(part.replace("\\", "\\\\").replace('"', '\\"')
                             for part in text.split("\n")) + '"'


def _comment(text: str) -> str:
    """Text for a ``//`` comment: on one line, or the rest would be read as DOT."""
    return " ".join(text.splitlines())


def _largest_sums(ex, group, view, top_k) -> list[int]:
    """The nodes of ``group`` whose sums are largest in size (all of them for top_k None, or
    none when the group received no sums)."""
    sums = ex.row(group, view)
    if sums is None:
        return []
    order = np.argsort(-np.abs(np.asarray(sums, dtype=float)), kind="stable")
    return [int(n) for n in (order if top_k is None else order[:top_k])]
