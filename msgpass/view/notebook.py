"""Jupyter's rich display of reports and traces (``_repr_html_``).

``report_html(report)``: the verdict, then the induction table, a row per check as in
``str(report)``, failing rows highlighted and inconclusive ones marked. ``trace_html(trace)``:
a short summary and the diagram that msgpass.draw makes of the trace, inline as SVG.

Everything a user's network or graph names (labels, node names, notes) is HTML-escaped.
matplotlib is imported only inside ``trace_html``, when a diagram is drawn, and pyplot never:
the figure is rendered by matplotlib's SVG backend directly.
"""

from __future__ import annotations

import html
import io
import math
import re
from fractions import Fraction

import numpy as np

from ..errors import MsgpassError

__all__ = ["report_html", "trace_html", "svg_of", "MAX_DRAWN_EDGES", "MAX_COLUMN_NODES",
           "MAX_GRAPH_NODES", "MAX_SVG_BYTES"]

# A notebook cell is about 900 px wide: beyond a few hundred lines an edge drawing is ink, not
# information, so the display draws only the strongest (draw_network says how many it left out).
MAX_DRAWN_EDGES = 400
# A column of more nodes than this (a layer wider than 1,024) is a smear of dots at cell
# height, and reading its dense messages costs more than a display should: summary only.
MAX_COLUMN_NODES = 1024
# draw_graph lays every node out with its labels; beyond this many they no longer fit a cell.
MAX_GRAPH_NODES = 60
# A display that would put more than this into the notebook file is left out, with the reason.
MAX_SVG_BYTES = 2_000_000

# Row colours: the same meaning in a light and a dark theme (text stays the theme's colour).
FAIL_STYLE = "background:rgba(220,40,40,0.22);font-weight:bold"
INCONCLUSIVE_STYLE = "background:rgba(230,170,0,0.22);font-style:italic"
OK_BANNER = "background:rgba(40,160,70,0.18);border-left:4px solid #2a9d46"
FAIL_BANNER = "background:rgba(220,40,40,0.18);border-left:4px solid #c0392b"
CELL = "padding:1px 8px;text-align:left"


def _e(text) -> str:
    return html.escape(str(text), quote=True)


# -- the report --------------------------------------------------------------------------------

def report_html(report) -> str:
    """The report as HTML: verdict on top, then the table of ``str(report)``.

    Parameters
    ----------
    report : msgpass.verification.report.Report

    Returns
    -------
    str
        A ``<div>``: the verdict (green when every check holds, red otherwise), the report's
        heading lines, a ``<table>`` with one ``<tr data-status="holds|fails|inconclusive">``
        per check (failing rows highlighted, inconclusive rows marked), and below it the
        report's own notes: kinks met, tolerances and witnesses.
    """
    text = str(report).split("\n")
    # The heading and the lines under the table are the report's own text, so the two views
    # cannot drift apart: str(report) opens with 2 heading lines, and its notes run from the
    # line on non-differentiable points (always there) to the verdict, the last line.
    start = next(i for i, line in enumerate(text) if line.startswith("non-differentiable"))
    heading, notes = text[:2], text[start:-1]
    banner = OK_BANNER if report.ok else FAIL_BANNER
    out = ['<div class="msgpass-report">',
           f'<p style="{banner};padding:4px 8px"><strong>{_e(report.verdict())}</strong></p>',
           "".join(f"<div>{_e(line)}</div>" for line in heading)]
    heads = ("part", "about", "claim", "max abs", "max rel", "rtol", "result")
    out.append('<table style="border-collapse:collapse;font-size:90%;font-family:monospace">'
               "<thead><tr>" + "".join(f'<th style="{CELL}">{h}</th>' for h in heads)
               + "</tr></thead><tbody>")
    previous = None
    for c in report.checks:
        # the part and its subject are written once per group of checks, as in str(report)
        part = c.column
        shown_part = part if (part, c.layer) != previous else ""
        previous = (part, c.layer)
        about = c.layer if (shown_part or c.part == "conclusion") else ""
        result = {"fails": "FAIL", "inconclusive": "inconclusive", "holds": "ok"}[c.status]
        if c.note:
            result += f" [{c.note}]"
        style = {"fails": FAIL_STYLE, "inconclusive": INCONCLUSIVE_STYLE, "holds": ""}[c.status]
        cells = (shown_part, about, c.claim, _fmt(c.result.max_abs),
                 _fmt(c.result.max_rel), f"{c.tol.rtol:.0e}", result)
        out.append(f'<tr data-status="{c.status}" style="{style}">'
                   + "".join(f'<td style="{CELL}">{_e(v)}</td>' for v in cells) + "</tr>")
    out.append("</tbody></table>")
    if not report.checks:
        out.append("<p>(no check was run)</p>")
    out.append('<div style="font-size:85%;white-space:pre-wrap">'
               + "".join(f"<div>{_e(line)}</div>" for line in notes if line) + "</div>")
    out.append("</div>")
    return "\n".join(out)


def _fmt(v: float) -> str:
    return f"{v:.1e}" if math.isfinite(v) else str(v)


# -- traces ------------------------------------------------------------------------------------

def trace_html(trace) -> str:
    """A trace as HTML: a summary, then its diagram as inline SVG.

    Parameters
    ----------
    trace : Trace or GraphTrace

    Returns
    -------
    str
        A ``<div>`` with a table of facts (kind, layers or nodes, batch, number type, loss or
        output value, what was kept) and the diagram: ``draw_network`` of sample 0 with at
        most MAX_DRAWN_EDGES edges for a chain, ``draw_feature_maps`` of sample 0 for a
        network whose input is an image, ``draw_graph`` for a graph. Where no diagram can be
        drawn (blocks not kept, a layer wider than MAX_COLUMN_NODES, a graph of more than
        MAX_GRAPH_NODES nodes, an SVG above MAX_SVG_BYTES) the summary says why instead.
    """
    is_graph = hasattr(trace, "graph")
    facts = _graph_facts(trace) if is_graph else _chain_facts(trace)
    try:
        figure, why_not = (_graph_figure(trace) if is_graph else _chain_figure(trace))
    except (MsgpassError, ValueError) as err:     # e.g. a kind without per-sample messages
        figure, why_not = None, str(err)
    diagram = ""
    if figure is not None:
        svg = svg_of(figure)
        if len(svg.encode("utf-8")) > MAX_SVG_BYTES:
            why_not = (f"the diagram would take {len(svg.encode('utf-8')):,} bytes of SVG, "
                       f"more than the display's {MAX_SVG_BYTES:,}; draw it with msgpass.draw")
        else:
            diagram = f'<div class="msgpass-diagram">{svg}</div>'
    if why_not:
        facts.append(("diagram", f"not drawn: {why_not}"))
    rows = "".join(f'<tr><th style="{CELL};white-space:nowrap">{_e(k)}</th>'
                   f'<td style="{CELL}">{_e(v)}</td></tr>' for k, v in facts)
    return (f'<div class="msgpass-trace"><table style="border-collapse:collapse;'
            f'font-size:90%">{rows}</table>{diagram}</div>')


def svg_of(figure) -> str:
    """A matplotlib Figure as an ``<svg>`` element to inline in HTML: no XML prolog, scaled
    down to the width of its container, the same bytes on every run."""
    import matplotlib
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    FigureCanvasSVG(figure)    # the SVG backend directly: no pyplot, no display
    buffer = io.StringIO()
    # a fixed hash salt fixes the ids of clip paths and markers; text stays text, which keeps
    # the file small and the labels selectable
    with matplotlib.rc_context({"svg.hashsalt": "msgpass", "svg.fonttype": "none"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]    # the prolog and DOCTYPE may not sit inside HTML
    return svg.replace("<svg", '<svg style="max-width:100%;height:auto"', 1)


def _chain_facts(trace) -> list[tuple[str, str]]:
    shapes = trace.shapes or tuple((v.shape[1],) for v in trace.values)
    widths = ["×".join(str(d) for d in s) for s in shapes]
    layers = ", ".join(f"{t} {label}" for t, label in enumerate(trace.labels, 1))
    kept = sorted(trace.blocks)
    kept_text = ("every layer" if len(kept) == trace.T
                 else "none (node sums and gradients only)" if not kept
                 else "layers " + ", ".join(map(str, kept)))
    if trace.kept_samples is not None:
        kept_text += f", samples {', '.join(map(str, trace.kept_samples.tolist()))}"
    return [("kind", "network trace (Sequential)"),
            ("layers", f"T = {trace.T}: {layers}"),
            ("widths", " → ".join(widths)),
            ("batch", str(trace.batch)),
            ("numbers", _number_type(trace.values[0])),
            ("loss", _scalar(trace.loss)),
            ("messages kept", kept_text)]


def _graph_facts(trace) -> list[tuple[str, str]]:
    names = list(trace.order)
    shown = ", ".join(names[:12]) + (f", … ({len(names) - 12} more)" if len(names) > 12 else "")
    edges = sum(len(trace.graph.nodes[n].inputs) for n in trace.order)
    value = trace.values[trace.output]
    return [("kind", "graph trace"),
            ("nodes", f"{len(names)} in topological order: {shown}"),
            ("edges", f"{edges}, messages kept on {len(trace.blocks)}"),
            ("batch", str(trace.batch)),
            ("numbers", _number_type(value)),
            (f"output {trace.output}", _array(value))]


def _chain_figure(trace):
    """(Figure or None, reason it is None)."""
    from ..draw.network import draw_network

    sample = 0 if trace.kept_samples is None else int(trace.kept_samples[0])
    if trace.shapes and len(trace.shapes[0]) == 3:    # an image input: a conv net
        from ..draw.feature_maps import draw_feature_maps
        return draw_feature_maps(trace, sample), ""
    missing = [t for t in range(1, trace.T + 1) if t not in trace.blocks]
    if missing:
        return None, (f"the drawing needs every layer's messages; layers "
                      f"{', '.join(map(str, missing))} were not kept (net.backward() keeps all)")
    widest = max(v.shape[1] for v in trace.values)
    if widest > MAX_COLUMN_NODES:
        return None, (f"a layer of {widest:,} nodes is wider than the {MAX_COLUMN_NODES:,} a "
                      f"notebook diagram shows; see trace.to_html(path) or msgpass.draw")
    return draw_network(trace, sample, max_edges=MAX_DRAWN_EDGES), ""


def _graph_figure(trace):
    from ..draw.graph import draw_graph

    if len(trace.order) > MAX_GRAPH_NODES:
        return None, (f"{len(trace.order)} nodes are more than the {MAX_GRAPH_NODES} a notebook "
                      f"diagram lays out; see trace.to_html(path)")
    return draw_graph(trace), ""


def _number_type(values: np.ndarray) -> str:
    if values.dtype != object:
        return str(values.dtype)
    from ..numbers import mode_of
    mode = mode_of(values)
    return mode.name if mode is not None else "object"


def _scalar(value) -> str:
    if isinstance(value, Fraction):
        exact = str(value)
        exact = exact if len(exact) <= 60 else f"a Fraction of {len(exact)} characters"
        return f"{float(value):.6g} (exactly {exact})"
    return f"{float(value):.6g}"


def _array(values: np.ndarray) -> str:
    """A node's value (B, N): every entry when few, else its shape and the first ones."""
    floats = np.asarray(values, dtype=object).astype(np.float64) if values.dtype == object \
        else np.asarray(values)
    text = np.array2string(floats, precision=6, threshold=12, edgeitems=3)
    text = re.sub(r"\s+", " ", text)
    return f"shape {tuple(values.shape)}: {text}"
