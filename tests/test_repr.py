"""Jupyter's display of reports and traces (msgpass.view.notebook): the report's verdict and
induction table with failing rows highlighted and inconclusive ones marked; a trace's summary
and its diagram as valid, bounded inline SVG; everything a user names HTML-escaped; matplotlib
imported only when a diagram is drawn, and pyplot never."""

import dataclasses
import html
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import msgpass as mp
from msgpass.partials import Diagonal, LocalPartials
from msgpass.view import notebook

SVG = "{http://www.w3.org/2000/svg}"
X = np.random.default_rng(5).standard_normal((4, 5))
LABELS = np.array([0, 2, 1, 3])


class ScaledTanh(mp.Tanh):
    """A planted wrong rule: J = 1.001·tanh′, so step t=2 must fail."""

    def local_partials(self, saved):
        return LocalPartials(Diagonal(super().local_partials(saved).inputs.values * 1.001))


def network(middle=mp.Tanh):
    return mp.Sequential([mp.Affine(5, 6, seed=1), middle(), mp.Affine(6, 4, seed=2),
                          mp.SoftmaxCrossEntropy()])


def rows(page: str) -> list[tuple[str, str, str]]:
    """(status, style, visible text) of every check row of a report's HTML."""
    found = re.findall(r'<tr data-status="(\w+)" style="([^"]*)">(.*?)</tr>', page, re.S)
    return [(status, style, html.unescape(re.sub(r"<[^>]+>", " ", cells)))
            for status, style, cells in found]


def facts(page: str) -> dict[str, str]:
    """The summary of a trace's HTML: {fact: value}, unescaped."""
    return {html.unescape(k): html.unescape(v)
            for k, v in re.findall(r"<tr><th[^>]*>(.*?)</th><td[^>]*>(.*?)</td></tr>", page)}


def svg_root(page: str):
    """The inline SVG of a trace's HTML, parsed as XML (ParseError if it is not valid)."""
    start, end = page.index("<svg"), page.rindex("</svg>") + len("</svg>")
    assert page.count("<svg") == 1
    return ET.fromstring(page[start:end])


def drawn_edges(root) -> dict[str, int]:
    """Segments drawn per layer: draw_network gives layer t's edges the gid messages-t."""
    return {g.get("id"): len(list(g.iter(SVG + "path"))) for g in root.iter(SVG + "g")
            if g.get("id", "").startswith("messages-")}


# -- reports -----------------------------------------------------------------------------------

def test_a_verified_report_puts_the_verdict_on_top_and_a_row_per_check():
    report = mp.verify(network(), X, LABELS)
    page = report._repr_html_()
    assert report.ok
    assert page.index("VERIFIED") < page.index("<table")
    found = rows(page)
    assert [s for s, _, _ in found] == [c.status for c in report.checks]
    assert all(style == "" for _, style, _ in found)    # nothing highlighted
    # the lines under the text table come along, each once: kinks, tolerances, witnesses
    tail = str(report).split("\n")
    tail = tail[tail.index("non-differentiable points: none met"):-1]
    shown = re.findall(r"<div>(.*?)</div>", page.split("</table>")[1])
    assert [html.unescape(line) for line in shown] == tail


def test_a_failing_report_highlights_exactly_its_failing_rows():
    report = mp.verify(network(ScaledTanh), X, LABELS)
    page = report._repr_html_()
    assert not report.ok and report.first_failure.t == 2
    assert page.index("FAILED at step t=2") < page.index("<table")
    found = rows(page)
    failing = [(style, text) for status, style, text in found if status == "fails"]
    assert len(failing) == sum(not c.ok for c in report.checks) >= 1
    assert all(style == notebook.FAIL_STYLE for style, _ in failing)
    assert all(style == "" for status, style, _ in found if status == "holds")
    # the first highlighted row is the report's first failure, the planted layer's step
    bad = report.first_failure
    assert bad.claim in failing[0][1] and "FAIL" in failing[0][1]
    first = next(i for i, (status, _, _) in enumerate(found) if status == "fails")
    assert report.checks[first] is bad


def test_inconclusive_checks_are_marked_not_passed_or_failed():
    net = mp.Sequential([mp.ReLU(), mp.Affine(3, 4, seed=0), mp.SoftmaxCrossEntropy()])
    report = mp.verify(net, np.zeros((2, 3)), [1, 2])   # every ReLU input on the kink
    page = report._repr_html_()
    unresolved = [(style, text) for status, style, text in rows(page)
                  if status == "inconclusive"]
    assert len(unresolved) == len(report.inconclusive) >= 1
    assert all(style == notebook.INCONCLUSIVE_STYLE and "inconclusive" in text
               for style, text in unresolved)


def test_report_html_escapes_names_and_notes():
    report = mp.verify(network(), X, LABELS)
    evil = "<script>alert('x')</script> & <b>"
    report.checks[1] = dataclasses.replace(report.checks[1], layer=evil)
    report.notes.append(f"note: {evil}")
    page = notebook.report_html(report)
    assert "<script" not in page and "<b>" not in page
    assert page.count(html.escape(evil, quote=True)) == 2


# -- traces ------------------------------------------------------------------------------------

def chain_trace(spec="5-6-tanh-4-sce", batch=4, **backward):
    net = mp.build_network(spec, seed=0)
    x = np.random.default_rng(0).standard_normal((batch, net.layers[0].n_in))
    net.forward(x, np.arange(batch) % 4)
    return net.backward(**backward)


def test_a_chain_trace_shows_its_summary_and_every_edge_as_valid_svg():
    trace = chain_trace()
    page = trace._repr_html_()
    summary = facts(page)
    assert summary["kind"] == "network trace (Sequential)"
    assert summary["layers"].startswith("T = 4: 1 Affine(5→6), 2 Tanh")
    assert summary["widths"] == "5 → 6 → 6 → 4 → 1"
    assert (summary["batch"], summary["numbers"]) == ("4", "float64")
    assert summary["loss"] == f"{trace.loss:.6g}" and summary["messages kept"] == "every layer"
    edges = drawn_edges(svg_root(page))
    assert edges == {"messages-1": 30, "messages-2": 6, "messages-3": 24, "messages-4": 4}
    assert page == trace._repr_html_()      # the same bytes every time


def test_a_wide_trace_draws_only_the_strongest_edges_within_the_size_bound():
    trace = chain_trace("784-100-relu-10-sce", batch=2)
    page = trace._repr_html_()
    assert sum(drawn_edges(svg_root(page)).values()) == notebook.MAX_DRAWN_EDGES
    assert len(page.encode("utf-8")) <= notebook.MAX_SVG_BYTES + 10_000  # + the summary
    assert facts(page)["widths"] == "784 → 100 → 100 → 10 → 1"


def test_a_trace_that_kept_only_sums_is_summarised_and_says_why_there_is_no_diagram():
    page = chain_trace(keep="sums")._repr_html_()
    assert "<svg" not in page
    assert "not drawn" in page and "layers 1, 2, 3, 4 were not kept" in page


def test_a_trace_of_kept_samples_draws_the_first_kept_one():
    trace = chain_trace(keep_samples=[2, 3])
    page = trace._repr_html_()
    assert facts(page)["messages kept"] == "every layer, samples 2, 3"
    svg_root(page)
    # the title names the sample (matplotlib's SVG writes each text's source as a comment)
    assert re.search(r"<!-- backward messages .*, sample 2: ", page)


def test_a_trace_whose_messages_join_samples_says_why_it_is_not_drawn():
    net = mp.build_network("5-6-batchnorm-relu-4-sce", seed=0)
    net.forward(np.random.default_rng(0).standard_normal((4, 5)), [0, 1, 2, 3])
    page = net.backward()._repr_html_()
    assert "<svg" not in page
    assert facts(page)["diagram"].startswith("not drawn: layer 2 (BatchNorm(6)) couples the "
                                             "samples")


def test_a_trace_wider_than_a_column_can_show_is_summarised(monkeypatch):
    monkeypatch.setattr(notebook, "MAX_COLUMN_NODES", 5)
    page = chain_trace()._repr_html_()
    assert "<svg" not in page and "a layer of 6 nodes is wider than the 5" in page


def test_a_conv_trace_shows_feature_maps():
    net = mp.build_network("1x8x8-conv4k3p1-relu-maxpool2-flatten-3-sce", seed=0)
    net.forward(np.random.default_rng(0).standard_normal((2, 1, 8, 8)), [0, 2])
    page = net.backward()._repr_html_()
    root = svg_root(page)
    assert len(list(root.iter(SVG + "image"))) >= 2     # heat maps of the channels and input
    assert facts(page)["widths"].startswith("1×8×8 → 4×8×8 → 4×8×8 → 4×4×4 → 64 → 3")


def test_an_exact_trace_names_its_numbers_and_shows_the_exact_loss():
    net = mp.build_network("3-4-relu-2-mse", seed=0).astype("exact")
    net.forward(np.random.default_rng(0).standard_normal((2, 3)), np.zeros((2, 2)))
    trace = net.backward()
    page = trace._repr_html_()
    summary = facts(page)
    assert summary["numbers"] == "exact"
    # float weights become Fractions with long denominators: the summary gives the length
    assert summary["loss"] == (f"{float(trace.loss):.6g} (exactly a Fraction of "
                               f"{len(str(trace.loss))} characters)")
    assert drawn_edges(svg_root(page))["messages-1"] == 12


def test_a_graph_trace_shows_nodes_output_and_a_valid_svg_with_escaped_names():
    g = mp.Graph()
    x = g.input("<b>&x", np.array([[1.0, -2.0, 0.5]]))
    y = g.input("y", 2.0)
    f = mp.sum(mp.sin(x) * y)
    trace = g.backward(f)
    page = trace._repr_html_()
    assert "<b>&x" not in page and "&lt;b&gt;&amp;x" in page
    summary = facts(page)
    assert summary["kind"] == "graph trace"
    assert summary["nodes"] == f"5 in topological order: {', '.join(trace.order)}"
    value = float(np.sum(np.sin([1.0, -2.0, 0.5])) * 2.0)
    assert summary[f"output {trace.output}"] == f"shape (1, 1): [[{value:.6f}]]"
    root = svg_root(page)        # the node's name reached the SVG too, escaped as XML
    assert any("<b>&x" in (t.text or "") for t in root.iter(SVG + "text"))


def test_a_graph_too_big_for_a_cell_is_summarised(monkeypatch):
    monkeypatch.setattr(notebook, "MAX_GRAPH_NODES", 3)
    g = mp.Graph()
    x = g.input("x", 1.0)
    trace = g.backward(mp.sin(mp.cos(mp.exp(x))))
    page = trace._repr_html_()
    assert "<svg" not in page and "4 nodes are more than the 3" in page


def test_matplotlib_is_imported_only_for_a_diagram_and_pyplot_never():
    code = ("import sys, numpy as np, msgpass as mp\n"
            "net = mp.build_network('3-4-relu-2-sce', seed=0)\n"
            "x = np.random.default_rng(0).standard_normal((2, 3))\n"
            "net.forward(x, [0, 1]); trace = net.backward()\n"
            "page = mp.verify(net, x, [0, 1])._repr_html_()\n"
            "assert 'VERIFIED' in page\n"
            "assert 'matplotlib' not in sys.modules, 'a report imported matplotlib'\n"
            "assert '<svg' in trace._repr_html_()\n"
            "assert 'matplotlib' in sys.modules\n"
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("page_of", [lambda: mp.verify(network(), X, LABELS)._repr_html_(),
                                     lambda: chain_trace()._repr_html_()],
                         ids=["report", "trace"])
def test_the_display_is_one_balanced_html_fragment(page_of):
    """Every tag the display opens it closes (a stray one would swallow the next cell)."""
    page = page_of()
    svg = re.sub(r"<svg.*</svg>", "", page, flags=re.S)   # the SVG is checked as XML above
    ET.fromstring(svg.replace("&nbsp;", " "))
