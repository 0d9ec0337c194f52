"""DOT export (msgpass.view.dot), read back by a small checker of the DOT we write (no
Graphviz here): its labels are compared with the trace's own messages and sums."""

import re

import numpy as np
import pytest

import msgpass as mp
from msgpass.demos import DEMOS
from msgpass.testing import random_batch

QUOTED = r'"((?:[^"\\]|\\.)*)"'
ID = r"(g\d+_\d+)"          # node ids are positions (group, entry); names are in the labels
EDGE = re.compile(rf"^\s*{ID} -> {ID} \[(.*)\];$")
NODE = re.compile(rf"^\s*{ID} \[label={QUOTED}\];$")


def unquote(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


def parse(dot: str, by_id: bool = False) -> tuple[dict, list]:
    """The nodes ({name: label lines}) and edges ([(tail, head, {attr: value})]) of DOT text
    as to_dot writes it, named by the first line of each node's label (before " · "), or by
    their DOT ids with ``by_id``; AssertionError for braces that do not balance outside the
    quoted strings, a statement that is not one of ours, an edge to an undeclared node, or
    two nodes of one name."""
    lines = dot.strip().splitlines()
    assert lines[0] == "digraph msgpass {" and lines[-1] == "}"
    depth = 0
    for line in lines:
        bare = re.sub(QUOTED, '""', line)
        for ch in bare:
            depth += {"{": 1, "}": -1}.get(ch, 0)
            assert depth >= 0, line
    assert depth == 0, "unbalanced braces"
    nodes, edges = {}, []
    for line in lines[1:-1]:
        stripped = line.strip()
        if m := EDGE.match(line):
            attrs = dict((k, unquote(v)) for k, v in re.findall(rf"(\w+)={QUOTED}", m.group(3)))
            edges.append((m.group(1), m.group(2), attrs))
        elif m := NODE.match(line):
            nodes[m.group(1)] = unquote(m.group(2)).split("\n")
        else:
            assert (stripped.startswith(("//", "graph [", "node [", "edge [", "label=",
                                         "subgraph ")) or stripped == "}"), line
    for tail, head, _ in edges:
        assert tail in nodes and head in nodes, (tail, head)
    if by_id:
        return nodes, edges
    name = {i: label[0].split(" · ")[0] for i, label in nodes.items()}
    assert len(set(name.values())) == len(name), "two nodes of one name"
    return ({name[i]: label for i, label in nodes.items()},
            [(name[t], name[h], attrs) for t, h, attrs in edges])


def equal_to_digits(text: str, value: float, digits: int = 4) -> bool:
    """``text`` is ``value`` printed with ``digits`` significant digits."""
    return float(text) == float(f"{value:.{digits}g}")


def sum_of(label: list[str]) -> float:
    return float(next(line for line in label if line.startswith("S = "))[4:])


@pytest.fixture(scope="module")
def mlp():
    net = mp.build_network("20-12-relu-6-sce", seed=0)
    x, target = random_batch(net, 5, np.random.default_rng(0))
    net.forward(x, target)
    return net.backward()


def chain_index(name: str) -> tuple[int, int]:
    t, n = re.fullmatch(r"z(\d+)\[(\d+)\]", name).groups()
    return int(t), int(n)


@pytest.mark.parametrize("sample", [0, 3, "mean"])
def test_a_chain_writes_one_edge_line_per_shown_edge_labelled_with_its_message(mlp, sample):
    nodes, edges = parse(mlp.to_dot(sample=sample, top_k=7))
    per_layer = [int(np.asarray(mlp.block(t).partials.edges()).sum()) for t in range(1, 5)]
    assert len(edges) == sum(min(7, e) for e in per_layer) == 7 + 7 + 7 + 6
    for tail, head, attrs in edges:
        (below, n), (t, n_) = chain_index(tail), chain_index(head)
        assert below == t - 1
        messages = mlp.message(t)
        delta = messages.mean(0) if sample == "mean" else messages[sample]
        assert equal_to_digits(attrs["label"], delta[n, n_]), (tail, head)
    for name, label in nodes.items():
        t, n = chain_index(name)
        S = mlp.incoming(t + 1)
        assert equal_to_digits(str(sum_of(label)), S.mean(0)[n] if sample == "mean"
                               else S[sample, n]), name
    # the strongest: the weakest shown edge of layer 1 is its 7th strongest
    messages = mlp.message(1)
    delta1 = messages.mean(0) if sample == "mean" else messages[sample]
    shown = [abs(float(a["label"])) for tail, _, a in edges if tail.startswith("z0[")]
    assert np.sort(np.abs(delta1).ravel())[-7] == pytest.approx(min(shown), rel=1e-3)


def test_top_k_none_writes_every_edge_and_all_nodes_every_node(mlp):
    nodes, edges = parse(mlp.to_dot(top_k=None, all_nodes=True, values=True, digits=6))
    assert len(edges) == 240 + 12 + 72 + 6
    assert len(nodes) == 20 + 12 + 12 + 6 + 1
    assert nodes["z2[3]"][2] == f"z = {mlp.values[2][0, 3]:.6g}"
    for tail, head, attrs in edges:
        (_, n), (t, n_) = chain_index(tail), chain_index(head)
        assert equal_to_digits(attrs["label"], mlp.message(t)[0, n, n_], 6)
        J, S = attrs["tooltip"].split("= J · S = ")[1].split(" × ")
        assert float(J) * float(S) == pytest.approx(float(attrs["label"]), rel=2e-5, abs=1e-12)


def test_a_graph_trace_labels_every_edge_and_node():
    graph, output = DEMOS["staged"].build()
    trace = graph.backward(output)
    nodes, edges = parse(trace.to_dot())
    assert len(edges) == len(trace.edges) == 11
    for tail, head, attrs in edges:
        assert equal_to_digits(attrs["label"], trace.message(tail, head)[0, 0, 0])
        assert attrs["color"] == ("#c0392b" if float(attrs["label"]) >= 0 else "#1f5fbf")
    assert set(nodes) == set(trace.order)
    for name, label in nodes.items():
        assert label[0] == f"{name} · {graph.nodes[name].op.describe()}" if \
            graph.nodes[name].op else f"{name} · input"
        assert equal_to_digits(str(sum_of(label)), float(trace.grad(name)))


def test_names_with_quotes_and_backslashes_are_escaped():
    g = mp.Graph()
    x = g.input('x"1', 2.0)
    y = (x * x).named("back\\slash")
    nodes, edges = parse(g.backward(y).to_dot())
    assert set(nodes) == {'x"1', "back\\slash"}
    assert len(edges) == 2 and all(tail == 'x"1' for tail, _, _ in edges)


def test_a_conv_trace_names_nodes_by_channel_and_position():
    net = mp.build_network("1x6x6-conv2k3p1-relu-maxpool2-flatten-3-sce", seed=0)
    x, target = random_batch(net, 2, np.random.default_rng(0))
    net.forward(x, target)
    trace = net.backward()
    nodes, edges = parse(trace.to_dot(top_k=5))
    per_layer = [int(np.asarray(trace.block(t).partials.edges()).sum()) for t in range(1, 7)]
    assert len(edges) == sum(min(5, e) for e in per_layer) == 5 * 5 + 3   # the loss has 3
    image = [name for name in nodes if name.startswith("z0[")]
    for name in image:
        c, i, j = map(int, re.fullmatch(r"z0\[(\d+),(\d+),(\d+)\]", name).groups())
        assert equal_to_digits(str(sum_of(nodes[name])), trace.incoming(1)[0, c, i, j])


def test_a_coupled_block_is_a_comment_not_edges():
    net = mp.build_network("4-batchnorm-3-sce", seed=0)
    x, target = random_batch(net, 3, np.random.default_rng(0))
    net.forward(x, target)
    dot = net.backward().to_dot(top_k=None)
    nodes, edges = parse(dot)
    assert len(edges) == 4 * 3 + 3
    assert "// layer 1 (BatchNorm(4)): layer 1 (BatchNorm(4)) couples the samples" in dot


def test_the_checker_catches_broken_dot(mlp):
    """Test the tester: an unbalanced brace, a stray statement, an edge to no node."""
    dot = mlp.to_dot(top_k=2)
    parse(dot)
    with pytest.raises(AssertionError):
        parse(dot.replace("subgraph \"cluster_z1\" {", "subgraph \"cluster_z1\" {{"))
    with pytest.raises(AssertionError):
        parse(dot.replace("  edge [dir=back", "  edges [dir=back"))
    first_node = next(line for line in dot.splitlines() if NODE.match(line))
    with pytest.raises(AssertionError):
        parse(dot.replace(first_node + "\n", ""))
    nodes, edges = parse(dot)
    tail, head, attrs = edges[0]
    (_, n), (t, n_) = chain_index(tail), chain_index(head)
    assert not equal_to_digits(attrs["label"], 1.001 * mlp.message(t)[0, n, n_])


def test_the_text_is_the_same_in_another_process(mlp):
    # nothing in it may depend on the process: set order, ids of objects, hash seeds
    import subprocess
    import sys
    code = ("import numpy as np, msgpass as mp\n"
            "from msgpass.testing import random_batch\n"
            "net = mp.build_network('20-12-relu-6-sce', seed=0)\n"
            "x, target = random_batch(net, 5, np.random.default_rng(0))\n"
            "net.forward(x, target)\n"
            "print(net.backward().to_dot(sample='mean'), end='')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONHASHSEED": "123"})
    assert done.returncode == 0, done.stderr
    assert done.stdout == mlp.to_dot(sample="mean")


def test_names_that_collide_or_break_lines_stay_apart():
    # graph node "a[0]" and entry 0 of the vector node "a" print alike: ids keep them two
    # nodes; a newline in a name stays inside its quoted label and out of the comments
    g = mp.Graph()
    a = g.input("a", np.array([1.0, 2.0]))
    a0 = g.input("a[0]", np.array([5.0]))
    f = mp.sum(a * 3.0) + a0 * 7.0
    f = f.named("out\nline")
    dot = g.backward(f).to_dot(top_k=None, all_nodes=True)
    nodes, edges = parse(dot, by_id=True)
    labels = [label[0].split(" · ")[0] for label in nodes.values()]
    assert labels.count("a[0]") == 2
    sums = sorted(sum_of(label) for label in nodes.values()
                  if label[0].split(" · ")[0] == "a[0]")
    assert sums == [3.0, 7.0]          # ∂f/∂a[0] = 3 and ∂f/∂(node a[0]) = 7


def test_a_trace_that_kept_only_sums_shows_its_nodes(mlp):
    net = mp.build_network("20-12-relu-6-sce", seed=0)
    x, target = random_batch(net, 5, np.random.default_rng(0))
    net.forward(x, target)
    trace = net.backward(keep="sums")
    nodes, edges = parse(trace.to_dot(top_k=3))
    assert edges == []
    assert len(nodes) > 1 + 3        # the output and the largest sums of the other layers
    for name, label in nodes.items():
        t, n = chain_index(name)
        assert equal_to_digits(str(sum_of(label)), trace.incoming(t + 1)[0, n]), name


@pytest.mark.parametrize("options, error, match", [
    ({"top_k": -1}, ValueError, "top_k must be a positive int"),
    ({"sample": 9}, IndexError, "sample 9 is not in the trace: its samples are 0..4"),
    ({"sample": "all"}, ValueError, "sample must be a batch index or 'mean'"),
    ({"digits": 30}, ValueError, "digits must be an int from 1 to 17"),
    ({"rankdir": "left"}, ValueError, "rankdir must be 'LR', 'RL', 'TB' or 'BT'"),
])
def test_bad_options_say_what_was_expected(mlp, options, error, match):
    with pytest.raises(error, match=match):
        mlp.to_dot(**options)


def test_only_traces_are_exported():
    from msgpass.view.dot import to_dot
    with pytest.raises(TypeError, match="expected a msgpass Trace"):
        to_dot([1, 2])
