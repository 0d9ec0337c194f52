"""Drawings: they show the messages (checked with matplotlib's own testing tools), edge colours
follow the message signs, no text overlaps at the default sizes, and figures regenerate the
same bytes."""

import functools

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection
from matplotlib.path import Path
from matplotlib.testing.decorators import check_figures_equal
from matplotlib.text import Text
from matplotlib.transforms import Bbox
from PIL import Image

import msgpass as mp
from msgpass.demos import DEMOS
from msgpass.draw import (
    animate_backward,
    draw_graph,
    draw_message_panels,
    draw_network,
    draw_verification,
)
from msgpass.draw.style import CMAP, symmetric_norm
from msgpass.gallery import FIGURE_SPEC, WIDE_SPEC, make_figures
from msgpass.testing import random_batch


def chain(spec=FIGURE_SPEC, batch=4, seed=0):
    net = mp.build_network(spec, seed=seed)
    x, target = random_batch(net, batch, np.random.default_rng(seed))
    net.forward(x, target)
    return net, x, target, net.backward()


def _rendered(fig):
    """The figure drawn once on Agg, and its renderer: extents are those of the saved file."""
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _texts(fig):
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def _label_box(text, renderer):
    """What a reader sees of a text: its box where it draws one (a graph's node), else its
    glyphs, shrunk by a pixel on each side so touching is not overlapping."""
    patch = text.get_bbox_patch()
    box = patch.get_window_extent(renderer) if patch is not None and \
        patch.get_edgecolor()[3] > 0 else text.get_window_extent(renderer)
    return box.expanded(1.0, 1.0).padded(-1.0)


def _marker_boxes(fig):
    """The square around every node marker of a scatter (its diameter is sqrt(s) points)."""
    boxes = []
    for collection in fig.findobj(PathCollection):
        if not collection.get_visible() or not len(collection.get_offsets()):
            continue
        centres = collection.get_offset_transform().transform(collection.get_offsets())
        sizes = np.broadcast_to(collection.get_sizes(), (len(centres),))
        for (x, y), s in zip(centres, sizes, strict=True):
            r = np.sqrt(s) / 2 * fig.dpi / 72
            boxes.append(Bbox.from_extents(x - r, y - r, x + r, y + r).padded(-1.0))
    return boxes


def overlapping_texts(fig):
    """Pairs of visible, non-empty texts whose rendered boxes overlap (by more than a pixel),
    and texts that cover a node marker (named by the text and "marker")."""
    renderer = _rendered(fig)
    texts = _texts(fig)
    boxes = [_label_box(t, renderer) for t in texts]
    pairs = [(texts[i].get_text(), texts[j].get_text())
             for i in range(len(texts)) for j in range(i + 1, len(texts))
             if boxes[i].overlaps(boxes[j])]
    markers = _marker_boxes(fig)
    return pairs + [(t.get_text(), "marker") for t, box in zip(texts, boxes, strict=True)
                    if any(box.overlaps(m) for m in markers)]


def _chain_figure(kind):
    net, x, target, trace = chain()
    if kind == "network":
        return draw_network(trace, 0, values=True)
    if kind == "network-mean":
        return draw_network(trace, "mean")
    if kind == "network-mean-layer":
        return draw_network(trace, "mean", scale="layer")
    if kind == "network-wide":
        return draw_network(chain(WIDE_SPEC, batch=2)[3], 0)
    if kind == "panels":
        return draw_message_panels(trace, 0)
    if kind == "panels-mean":
        return draw_message_panels(trace, "mean")
    if kind == "panels-layer":
        return draw_message_panels(trace, "mean", scale="layer")
    return draw_verification(mp.verify(net, x, target))


def _graph_figure(kind, name):
    graph, output = DEMOS[name].build()
    if kind == "graph":
        return draw_graph(graph.backward(output))
    return draw_verification(mp.verify(graph, output))


@functools.cache
def _lenet():
    """The gallery's trained LeNet-5 (a few seconds, once per test session)."""
    from msgpass.gallery import find_mnist, lenet_trace
    directory = find_mnist()
    if directory is None:
        pytest.skip("the LeNet-5 figures need MNIST ($MSGPASS_MNIST or ../shared/data/mnist)")
    return lenet_trace(directory)


def _lenet_figure(kind):
    from msgpass.draw.feature_maps import draw_conv_fan, draw_feature_maps, draw_saliency
    _, trace, labels = _lenet()
    if kind == "feature-maps":
        return draw_feature_maps(trace, 0)
    if kind == "saliency":
        return draw_saliency(trace, range(4), labels)
    return draw_conv_fan(trace, 4, None, 0)


# every figure `msgpass figures` draws (the GIFs' last frames are network and feature-maps),
# and the other scales of the network and panels drawings
FIGURE_MAKERS = {kind: (lambda kind=kind: _chain_figure(kind)) for kind in
                 ("network", "network-mean", "network-mean-layer", "network-wide", "panels",
                  "panels-mean", "panels-layer", "verification")}
FIGURE_MAKERS.update({f"{kind}-{name}": (lambda kind=kind, name=name: _graph_figure(kind, name))
                      for kind in ("graph", "verification") for name in DEMOS})
FIGURE_MAKERS.update({f"lenet5-{kind}": (lambda kind=kind: _lenet_figure(kind))
                      for kind in ("feature-maps", "saliency", "conv-fan")})


@pytest.mark.parametrize("name", list(FIGURE_MAKERS))
def test_no_text_overlaps_at_the_default_sizes(name):
    """No label's box overlaps another label or a node (a node marker, or a graph node's
    box): the graph drawing once wrote message labels over node names."""
    assert overlapping_texts(FIGURE_MAKERS[name]()) == [], name


# A figure is read in a notebook cell or a README column about 900 px wide (msgpass.view
# sizes its display for the same cell); a wider PNG is shrunk to fit.
DISPLAY_WIDTH_PX = 900
# 7 px glyphs (the em size; about 5 pt on a 96-dpi screen) are the smallest we read without
# zooming: the graph drawings once printed their node names at 4.2 px after that shrinking.
MIN_TEXT_PX = 7.0


@pytest.mark.parametrize("name", list(FIGURE_MAKERS))
def test_every_text_is_legible_when_shown_a_cell_wide(name):
    fig = FIGURE_MAKERS[name]()
    _rendered(fig)
    shrink = min(1.0, DISPLAY_WIDTH_PX / (fig.get_figwidth() * fig.dpi))
    small = {(t.get_text(), round(t.get_fontsize() * fig.dpi / 72 * shrink, 1))
             for t in _texts(fig) if t.get_fontsize() * fig.dpi / 72 * shrink < MIN_TEXT_PX}
    assert small == set(), name


def _content_box(fig):
    """The union of what is drawn: every visible text, line, patch, collection and image of
    an axes without axis lines (not the axes' empty rectangle), the whole tight box of an
    axes with them (frame, ticks, colour bars), the figure's own texts and legends."""
    from matplotlib.axis import Axis
    from matplotlib.spines import Spine
    renderer = _rendered(fig)
    boxes = [t.get_window_extent(renderer) for t in fig.texts + fig.legends
             if t.get_visible() and (not isinstance(t, Text) or t.get_text().strip())]
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        if ax.axison:
            boxes.append(ax.get_tightbbox(renderer))
            continue
        for artist in ax.get_children():
            if artist is ax.patch or isinstance(artist, (Spine, Axis)) \
                    or not artist.get_visible() \
                    or (isinstance(artist, Text) and not artist.get_text().strip()):
                continue
            box = artist.get_window_extent(renderer)
            if np.all(np.isfinite(box.get_points())) and (box.width > 0 or box.height > 0):
                boxes.append(box)
    return Bbox.union(boxes)


# The drawing should fill its canvas: a fifth left empty across the width or the height is
# already wasted space in a page-wide figure (the graph drawings once left 40 % of the width
# empty). Margins of a few pixels round the content are what a tight layout leaves.
MIN_CONTENT_SHARE = 0.8


@pytest.mark.parametrize("name", list(FIGURE_MAKERS))
def test_the_drawing_fills_its_canvas(name):
    fig = FIGURE_MAKERS[name]()
    box = _content_box(fig)
    width, height = fig.bbox.width, fig.bbox.height
    share = ((min(box.x1, width) - max(box.x0, 0)) / width,
             (min(box.y1, height) - max(box.y0, 0)) / height)
    assert min(share) >= MIN_CONTENT_SHARE, (name, share)


@pytest.mark.parametrize("name", list(FIGURE_MAKERS))
def test_legends_and_colour_bars_lie_inside_the_canvas(name):
    """The network drawing's width legend was once cut off at the left edge."""
    fig = FIGURE_MAKERS[name]()
    renderer = _rendered(fig)
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    canvas = fig.bbox.padded(1.0)    # a pixel of anti-aliasing past the edge is not cut off
    for legend in legends:
        box = legend.get_window_extent(renderer)
        assert canvas.containsx(box.x0) and canvas.containsx(box.x1) and \
            canvas.containsy(box.y0) and canvas.containsy(box.y1), (name, box, fig.bbox)
    for ax in fig.axes:
        box = ax.get_tightbbox(renderer)
        assert canvas.containsx(box.x0) and canvas.containsx(box.x1) and \
            canvas.containsy(box.y0) and canvas.containsy(box.y1), (name, box, fig.bbox)


def _outside_math(text):
    """A text without its $…$ mathtext parts: what matplotlib prints as plain characters."""
    parts = text.split("$")
    return "".join(parts[0::2]) if len(parts) % 2 else text


@pytest.mark.parametrize("name", list(FIGURE_MAKERS))
def test_no_text_prints_raw_math_markup(name):
    """A panel title once printed `δ^t_(n←n')` as typed, carets and all."""
    fig = FIGURE_MAKERS[name]()
    raw = [t.get_text() for t in _texts(fig)
           if "^" in _outside_math(t.get_text()) or "_(" in _outside_math(t.get_text())
           or "_{" in _outside_math(t.get_text())]
    assert raw == [], name


def _graph_arrows(fig):
    from matplotlib.patches import FancyArrowPatch
    renderer = _rendered(fig)
    ax = fig.axes[0]
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    # each arrow (its curve and its head) as polylines: to_polygons flattens the Béziers
    paths = [[Path(line) for line in a.get_transform().transform_path(a.get_path())
              .to_polygons(closed_only=False)] for a in arrows]
    points = [np.concatenate([line.interpolated(10).vertices for line in lines])
              for lines in paths]
    return renderer, paths, points


@pytest.mark.parametrize("name", list(DEMOS))
def test_graph_labels_sit_clear_of_other_edges(name):
    """A value or message label lies on its own edge, never on another edge or a crossing
    (the staged graph once printed −4 where two edges cross)."""
    from matplotlib.text import Annotation
    fig = _graph_figure("graph", name)
    renderer, paths, points = _graph_arrows(fig)
    crossed = []
    for label in (t for t in fig.axes[0].texts if isinstance(t, Annotation)):
        anchor = fig.axes[0].transData.transform(label.xy)
        distance = [np.min(np.hypot(*(p - anchor).T)) for p in points]
        own = int(np.argmin(distance))   # the edge the label is anchored on
        box = label.get_window_extent(renderer)
        crossed += [(label.get_text(), k) for k, lines in enumerate(paths) if k != own
                    and any(line.intersects_bbox(box, filled=False) for line in lines)]
    assert crossed == [], name


@pytest.mark.parametrize("name", list(DEMOS))
def test_graph_drawings_explain_their_labels_in_a_legend(name):
    fig = _graph_figure("graph", name)
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    entries = " ".join(t.get_text() for legend in legends for t in legend.get_texts())
    for meaning in ("forward value", "message", "sum of"):
        assert meaning in entries, (name, entries)


def _edge_norms(fig):
    """The colour scale of each layer's edges, t = 1..T."""
    layers = sorted((c for c in fig.axes[0].collections
                     if (c.get_gid() or "").startswith("messages-")),
                    key=lambda c: int(c.get_gid().split("-")[1]))
    return [c.norm for c in layers]


def test_the_mean_drawing_takes_its_colour_scale_from_the_mean_messages():
    """The batch-mean drawing was blank: its scale was pinned at the loss's seed 1/B while
    mean messages are a few thousandths. Now the edges' scale is ±max |mean message|."""
    _, _, _, trace = chain()
    fig = draw_network(trace, "mean")
    means = np.concatenate([trace.message(t).mean(axis=0).ravel()
                            for t in range(1, trace.T + 1)])
    for norm in _edge_norms(fig):
        assert (norm.vmin, norm.vmax) == (-np.abs(means).max(), np.abs(means).max())
    assert np.abs(means).max() < 1 / trace.batch    # else this test could not tell them apart


# a sigmoid stack: each sigmoid passes back at most a quarter of what reaches it, so the
# layers' mean messages differ by orders of magnitude
VANISHING_SPEC = "6-6-sigmoid-6-sigmoid-6-sigmoid-6-sigmoid-3-sce"


def test_the_layer_scale_gives_every_layer_its_own_colour_range():
    """Layers whose messages differ by orders of magnitude: under one global scale the small
    ones are white, under scale="layer" each layer's strongest message reaches the end of
    the colour map, in the network drawing and in the panels."""
    _, _, _, trace = chain(VANISHING_SPEC, batch=8)
    tops = [np.abs(trace.message(t).mean(axis=0)).max() for t in range(1, trace.T + 1)]
    assert max(tops) / min(tops) > 100    # the layers do differ: the option has work to do
    network = draw_network(trace, "mean", scale="layer")
    assert [n.vmax for n in _edge_norms(network)] == tops
    assert all(n.vmin == -n.vmax for n in _edge_norms(network))
    panels = draw_message_panels(trace, "mean", scale="layer")
    assert [im.norm.vmax for ax in panels.axes for im in ax.images] == tops
    assert {n.vmax for n in _edge_norms(draw_network(trace, "mean"))} == {max(tops)}
    for draw in (draw_network, draw_message_panels):
        with pytest.raises(ValueError, match="scale must be 'global' or 'layer'"):
            draw(trace, 0, scale="log")


def test_edge_colours_follow_the_message_signs():
    _, _, _, trace = chain()
    fig = draw_network(trace, sample=1)
    ax = fig.axes[0]
    checked = 0
    for t in range(1, trace.T + 1):
        (lines,) = [c for c in ax.collections if c.get_gid() == f"messages-{t}"]
        block = trace.message(t)[1]
        y_from = np.linspace(1, -1, block.shape[0]) if block.shape[0] > 1 else np.zeros(1)
        y_to = np.linspace(1, -1, block.shape[1]) if block.shape[1] > 1 else np.zeros(1)
        scale = np.abs(np.concatenate([trace.message(s)[1].ravel()
                                       for s in range(1, trace.T + 1)])).max()
        for segment, colour in zip(lines.get_segments(), lines.get_colors(), strict=True):
            n = int(np.argmin(np.abs(y_from - segment[0, 1])))
            n_ = int(np.argmin(np.abs(y_to - segment[1, 1])))
            message = block[n, n_]
            if abs(message) > 0.05 * scale:   # near zero the colour is white by design
                assert np.sign(colour[0] - colour[2]) == np.sign(message), (t, n, n_)
                checked += 1
    assert checked > 10


@pytest.mark.parametrize("limit", [500, 2000])
def test_wide_layers_draw_exactly_the_strongest_edges_and_say_so(limit):
    from msgpass.draw.network import network_edges
    _, _, _, wide = chain(WIDE_SPEC, batch=2)
    fig = draw_network(wide, 0, max_edges=limit)
    layers = [c for c in fig.axes[0].collections if (c.get_gid() or "").startswith("messages-")]
    drawn = sum(len(c.get_segments()) for c in layers)
    everything = np.concatenate([layer[4] for layer in network_edges(wide, 0)])
    total = everything.size
    assert drawn == limit
    assert f"{limit:,} of {total:,} edges drawn (the strongest; {total - limit:,} left out)" \
        in fig.axes[0].get_title()
    # the widths of the drawn edges are 0.4 + 3|δ|/max|δ|: recover |δ| and compare with the
    # top-k (the scale is the messages' own, node sums take no part in it)
    scale = np.abs(everything).max()
    shown = np.sort(np.concatenate([(np.asarray(c.get_linewidths()) - 0.4) / 3.0 * scale
                                    for c in layers]))
    expected = np.sort(np.abs(everything))[-limit:]
    np.testing.assert_allclose(shown, expected, rtol=1e-9, atol=1e-12)


@check_figures_equal(extensions=["png"])
def test_panels_show_exactly_the_message_blocks(fig_test, fig_ref):
    """The panels against an independent drawing of trace.message(t) on the shared scale."""
    _, _, _, trace = chain()
    made = draw_message_panels(trace, 0)
    fig_test.set_size_inches(made.get_size_inches())
    fig_test.set_layout_engine("constrained")
    for ax_made in made.axes[: trace.T]:
        ax = fig_test.add_subplot(1, trace.T, len(fig_test.axes) + 1)
        image = ax_made.images[0]
        ax.imshow(image.get_array(), cmap=image.get_cmap(), norm=image.norm, aspect="auto",
                  interpolation="nearest")
        ax.set_axis_off()
    blocks = [np.asarray(trace.message(t))[0] for t in range(1, trace.T + 1)]
    norm = symmetric_norm(np.concatenate([b.ravel() for b in blocks]))
    fig_ref.set_size_inches(made.get_size_inches())
    fig_ref.set_layout_engine("constrained")
    for t, block in enumerate(blocks, 1):
        ax = fig_ref.add_subplot(1, trace.T, t)
        ax.imshow(block, cmap=CMAP, norm=norm, aspect="auto", interpolation="nearest")
        ax.set_axis_off()
    assert list(made.axes[0].get_xticks()) == list(range(6))   # indices of the 6 senders


def test_panels_are_symmetric_and_shared():
    _, _, _, trace = chain()
    fig = draw_message_panels(trace, "mean")
    norms = {(im.norm.vmin, im.norm.vmax) for ax in fig.axes for im in ax.images}
    assert len(norms) == 1
    (vmin, vmax), = norms
    assert vmin == -vmax
    means = np.concatenate([trace.message(t).mean(axis=0).ravel() for t in range(1, trace.T + 1)])
    assert vmax == np.abs(means).max()


def test_the_graph_diagram_writes_values_above_and_messages_below_each_edge():
    from matplotlib.colors import to_hex
    from matplotlib.text import Annotation

    from msgpass.draw.style import BACKWARD_COLOUR, FORWARD_COLOUR
    graph, output = DEMOS["apple"].build()
    fig = draw_graph(graph.backward(output))
    labels = [t for t in fig.axes[0].texts if isinstance(t, Annotation)]
    forward = sorted(t.get_text() for t in labels if to_hex(t.get_color()) == to_hex(FORWARD_COLOUR))
    backward = sorted(t.get_text() for t in labels
                      if to_hex(t.get_color()) == to_hex(BACKWARD_COLOUR))
    # edges apple→apple_price, apple_num→apple_price, apple_price→price, tax→price
    assert forward == sorted(["100", "2", "200", "1.1"])
    assert backward == sorted(["2.2", "110", "1.1", "200"])
    texts = [t.get_text() for t in fig.findobj(Text)]
    assert "Σ 200" in texts and "= 220" in texts and "×" in texts


def test_a_repeated_input_gets_two_visible_edges():
    g = mp.Graph()
    x = g.input("x", 3.0)
    fig = draw_graph(g.backward((x * x).named("f")))
    from matplotlib.patches import FancyArrowPatch
    arrows = [p for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch)]
    assert len(arrows) == 2
    assert len({a.get_connectionstyle().rad for a in arrows}) == 2
    assert overlapping_texts(fig) == []


def test_drawings_refuse_what_they_cannot_show():
    _, _, _, trace = chain()
    for bad in (4, -1, 1.0, "avg", None, True):
        with pytest.raises(ValueError, match="sample must be a sample index 0..3 or 'mean'"):
            draw_network(trace, bad)
    with pytest.raises(ValueError, match="max_edges must be a positive integer"):
        draw_network(trace, 0, max_edges=0)
    net = mp.build_network(FIGURE_SPEC, seed=0)
    x, target = random_batch(net, 2, np.random.default_rng(0))
    net.forward(x, target)
    with pytest.raises(mp.StateError, match="not kept"):
        draw_network(net.backward(keep="sums"))
    graph, output = DEMOS["apple"].build()
    with pytest.raises(mp.StateError, match="kept the messages of 0 of its"):
        draw_graph(graph.backward(output, keep="sums"))


def test_figures_command_writes_and_reports_errors_in_one_line(tmp_path):
    import subprocess
    import sys
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    proc = subprocess.run([sys.executable, "-m", "msgpass", "figures", "--out",
                           str(blocker / "sub")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("msgpass: error:")


def test_the_animation_has_a_frame_per_layer(tmp_path):
    _, _, _, trace = chain()
    path = animate_backward(trace, tmp_path / "backward.gif")
    with Image.open(path) as gif:
        assert gif.n_frames == trace.T + 1


# Committed figures against a fresh run. On the rendering stack recorded in figures/VERSIONS.txt
# the bytes must be equal. On another stack (a new matplotlib or FreeType moves anti-aliased
# pixels) the images are compared instead, at an RMS (0..255, matplotlib's measure) below what
# one changed label or one recoloured edge gives (1.0 to 1.7, measured in review). Figures that
# plot measured round-off (ROUNDOFF_FIGURES) are compared only where the arithmetic fingerprint
# matches too: another BLAS kernel or SIMD width sums in another order, and the dots near u
# move (RMS 5.4 between an AVX2 and an AVX-512 machine for verification.png).
FIGURE_RMS_TOLERANCE = 0.5


def test_committed_figures_match_a_fresh_run(tmp_path):
    from pathlib import Path

    from matplotlib.testing.compare import compare_images
    committed = Path(__file__).resolve().parents[1] / "figures"
    from msgpass.gallery import (
        LENET_FIGURES,
        ROUNDOFF_FIGURES,
        arithmetic_fingerprint,
        find_mnist,
        rendering_stack,
    )
    made = make_figures(tmp_path)
    assert {p.name for p in made} >= {"network.png", "network-mean.png", "message-panels.png",
                                      "graph-apple.png",
                                      "graph-staged.png", "backward.gif", "verification.png"}
    if find_mnist() is not None:     # the LeNet-5 figures are drawn where MNIST is at hand
        assert {p.name for p in made} >= set(LENET_FIGURES)
    recorded = (committed / "VERSIONS.txt").read_text(encoding="utf-8").splitlines()
    assert len(recorded) == 2, "figures/VERSIONS.txt is from an older msgpass: run `msgpass figures`"
    same_stack = recorded[0] == rendering_stack()
    same_arithmetic = recorded[1] == arithmetic_fingerprint()
    compared = 0
    for path in made:
        old = committed / path.name
        assert old.exists(), f"figures/{path.name} is missing: run `msgpass figures`"
        if path.name in ROUNDOFF_FIGURES and not same_arithmetic:
            continue
        compared += 1
        if same_stack:
            assert old.read_bytes() == path.read_bytes(), (
                f"figures/{path.name} differs from a fresh run: run `msgpass figures`")
        elif path.suffix == ".png":
            assert compare_images(str(old), str(path), tol=FIGURE_RMS_TOLERANCE) is None, (
                f"figures/{path.name} differs from a fresh run: run `msgpass figures`")
        else:
            with Image.open(old) as a, Image.open(path) as b:
                assert a.n_frames == b.n_frames
                for k in range(a.n_frames):
                    a.seek(k)
                    b.seek(k)
                    diff = np.abs(np.asarray(a.convert("RGB"), float)
                                  - np.asarray(b.convert("RGB"), float))
                    assert np.sqrt(np.mean(diff**2)) <= FIGURE_RMS_TOLERANCE, (path.name, k)
    assert compared >= len(made) - len(ROUNDOFF_FIGURES)


def test_drawing_twice_writes_the_same_bytes(tmp_path):
    from msgpass.draw import save
    _, _, _, trace = chain()
    for name in ("a.png", "b.png"):
        save(draw_network(trace, 0, values=True), tmp_path / name)
    graph, output = DEMOS["staged"].build()
    for name in ("c.png", "d.png"):
        save(draw_graph(graph.backward(output)), tmp_path / name)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert (tmp_path / "c.png").read_bytes() == (tmp_path / "d.png").read_bytes()


def test_drawings_return_figures_and_draw_into_given_axes():
    from matplotlib.figure import Figure
    _, _, _, trace = chain()
    host = Figure()
    ax = host.add_subplot()
    assert draw_network(trace, ax=ax) is host


def test_every_witness_of_a_graph_verification_has_its_own_marker_in_the_legend():
    # the forward witness once fell back to backprop's circle: two witnesses, one symbol
    from msgpass.draw.verification import WITNESS_MARKERS
    from msgpass.verification.witness import WITNESSES
    assert set(WITNESSES) | {"partials"} <= set(WITNESS_MARKERS)
    assert len(set(WITNESS_MARKERS.values())) == len(WITNESS_MARKERS)
    graph, output = DEMOS["staged"].build()
    fig = draw_verification(mp.verify(graph, output))
    labels = {t.get_text() for legend in fig.legends for t in legend.get_texts()}
    assert {"partials", "backprop", "layered", "numeric", "pathsum", "forward"} <= labels


def test_mnist_beside_the_working_directory_is_found_by_an_installed_package(tmp_path,
                                                                               monkeypatch):
    # CI installs msgpass into a venv (site-packages, away from the checkout) and runs pytest
    # in the checkout: ../shared/data/mnist must be found from the working directory too
    import msgpass.gallery as gallery
    from msgpass.gallery import find_mnist
    monkeypatch.setattr(gallery, "__file__",   # as installed: nothing beside the package
                        str(tmp_path / "venv" / "site-packages" / "msgpass" / "gallery.py"))
    data = tmp_path / "shared" / "data" / "mnist"
    data.mkdir(parents=True)
    (data / "t10k-images-idx3-ubyte.gz").write_bytes(b"")
    checkout = tmp_path / "main"
    checkout.mkdir()
    monkeypatch.chdir(checkout)
    monkeypatch.delenv("MSGPASS_MNIST", raising=False)
    assert find_mnist() == data
