"""Witnesses on graphs: standard backprop (each op's classic backward, accumulated at nodes
with several consumers) and numerical differentiation (the five-point stencil of
msgpass.witnesses.numeric, through forward evaluations only). Neither imports the message code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .numeric import _STENCIL, EPS_STEP, ROUNDOFF_FACTOR

__all__ = ["graph_backprop", "graph_numeric", "GraphGradients"]


@dataclass(frozen=True)
class GraphGradients:
    """∂F/∂v for every node v reaching the output (``nodes``), and parameter gradients keyed
    ``"node.name"`` (``params``); F = Σ seed · output. For the numerical witness also the
    entries whose stencil straddled a kink, and its round-off allowance."""

    nodes: dict[str, np.ndarray]
    params: dict[str, np.ndarray]
    straddles: dict[str, np.ndarray] | None = None
    roundoff: float = 0.0


def _seed(seed, value):
    return np.ones_like(value) if seed is None else np.asarray(seed, float).reshape(value.shape)


def graph_backprop(graph, output, seed=None) -> GraphGradients:
    """Reverse topological order, each op's classic ``backward``; a node's gradient is the sum
    of what its consumers hand back (micrograd's ``+=``, written out)."""
    name = getattr(output, "name", output)
    run = graph.evaluate(name)
    grad = {n: np.zeros_like(run.values[n]) for n in run.order}
    grad[name] = _seed(seed, run.values[name])
    params: dict[str, np.ndarray] = {}
    for n in reversed(run.order):
        node = graph.nodes[n]
        if node.op is None:
            continue
        dxs, dparams = node.op.backward(run.saved[n], grad[n])
        for source, dx in zip(node.inputs, dxs, strict=True):
            grad[source] = grad[source] + dx
        for pname, value in dparams.items():
            params[f"{n}.{pname}"] = value
    return GraphGradients(nodes=grad, params=params)


def _branches(graph, run):
    """Branch pattern of every op that was computed (an overridden node was not)."""
    return {n: graph.nodes[n].op.branch(saved) for n, saved in run.saved.items()}


def _changed(now, base) -> bool:
    return any(b is not None and k in now and np.any(now[k] != b) for k, b in base.items())


def graph_numeric(graph, output, seed=None, *, step: float = EPS_STEP) -> GraphGradients:
    """Five-point central differences of F = Σ seed · output.

    For every node v: ∂F/∂v with v's value overridden and its descendants recomputed (the
    graph's "tail" at v). For every parameter: ∂F/∂θ by perturbing θ in a float64 copy of the
    op. An estimate whose stencil moves some node onto another branch (a ReLU input or a Max
    tie crossing over) straddles a kink and is flagged.
    """
    name = getattr(output, "name", output)
    run = graph.evaluate(name)
    weights = _seed(seed, run.values[name])
    base_branch = _branches(graph, run)

    def total(evaluation) -> float:
        return float(np.sum(weights * evaluation.values[name]))

    u = np.finfo(np.float64).eps / 2
    roundoff = ROUNDOFF_FACTOR * u * max(1.0, float(np.sum(np.abs(weights * run.values[name]))))
    roundoff /= step
    nodes, straddles = {}, {}
    for n in run.order:
        value = run.values[n]
        est = np.zeros_like(value)
        crossed = np.zeros(value.shape, dtype=bool)
        for index in np.ndindex(value.shape):
            acc = 0.0
            for multiple, weight in _STENCIL:
                moved = value.copy()
                moved[index] += multiple * step
                again = graph.evaluate(name, overrides={n: moved})
                acc += weight * total(again)
                crossed[index] |= _changed(_branches(graph, again), base_branch)
            est[index] = acc / (12 * step)
        nodes[n], straddles[n] = est, crossed

    params = {}
    for n in run.order:
        op = graph.nodes[n].op
        if op is None or not op.params:
            continue
        copy = op.astype(np.float64)
        for pname, array in copy.params.items():
            flat = array.reshape(-1)
            est = np.zeros(flat.size)
            crossed = np.zeros(flat.size, dtype=bool)
            for i in range(flat.size):
                original, acc = flat[i], 0.0
                for multiple, weight in _STENCIL:
                    flat[i] = original + multiple * step
                    again = graph.evaluate(name, ops={n: copy})
                    acc += weight * total(again)
                    crossed[i] |= _changed(_branches(graph, again), base_branch)
                flat[i] = original
                est[i] = acc / (12 * step)
            params[f"{n}.{pname}"] = est.reshape(array.shape)
            straddles[f"{n}.{pname}"] = crossed.reshape(array.shape)
    return GraphGradients(nodes=nodes, params=params, straddles=straddles, roundoff=roundoff)
