"""Witnesses on graphs: standard backprop (each op's classic backward, accumulated at nodes
with several consumers) and numerical differentiation (the five-point stencil of
msgpass.witnesses.numeric, through forward evaluations only). Neither imports the message code.

Graphs have domains and poles (log, division, fractional powers), so the numerical witness
leaves an entry out, rather than guessing, when its stencil

* moves some node onto another branch (a kink, a Max tie, the sign of a divisor: a pole);
* leaves a function's domain or overflows (the forward evaluation raises);
* sees a function that is not smooth at the step's scale: the three-point estimate
  (f(x+h) - f(x-h))/2h, from the same evaluations, differs from the five-point one by more
  than ``SMOOTHNESS`` relative. Agreement to 1e-4 bounds the h^2 term of the third
  derivative, and with it the five-point estimate's own error to about 1e-8 relative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MsgpassError
from ..naming import shown_all
from ..validate import graph_seed
from .numeric import _STENCIL, EPS_STEP, ROUNDOFF_FACTOR

__all__ = ["graph_backprop", "graph_numeric", "GraphGradients", "SMOOTHNESS"]

SMOOTHNESS = 1e-4  # largest relative gap allowed between the 3- and 5-point estimates


@dataclass(frozen=True)
class GraphGradients:
    """∂F/∂v for every node v reaching the output (``nodes``), and parameter gradients keyed
    ``"node.name"`` (``params``); F = Σ seed · output. For the numerical witness also the
    entries whose stencil straddled a kink, and its round-off allowance."""

    nodes: dict[str, np.ndarray]
    params: dict[str, np.ndarray]
    straddles: dict[str, np.ndarray] | None = None
    roundoff: float = 0.0


def _seed(graph, run, output: str, seed) -> np.ndarray:
    """The seed as the message pass reads it (msgpass.validate.graph_seed, the one parser)."""
    value = run.values[output]
    return graph_seed(seed, value, output, graph.natural_shape(run.order, value, output,
                                                              run.shapes.get(output)))


def graph_backprop(graph, output, seed=None) -> GraphGradients:
    """Reverse topological order, each op's classic ``backward``; a node's gradient is the sum
    of what its consumers hand back (micrograd's ``+=``, written out)."""
    name = getattr(output, "name", output)
    run = graph.evaluate(name)
    exact = any(v.dtype == object for v in run.values.values())   # see graph_backward
    grad = {n: np.zeros(run.values[n].shape, dtype=object if exact else run.values[n].dtype)
            for n in run.order}
    grad[name] = _seed(graph, run, name, seed)
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
    return GraphGradients(nodes=grad, params=shown_all(getattr(graph, "param_names", None),
                                                       params))


def _branches(graph, run):
    """Branch pattern of every op that was computed (an overridden node was not)."""
    return {n: graph.nodes[n].op.branch(saved) for n, saved in run.saved.items()}


def _changed(now, base) -> bool:
    return any(b is not None and k in now and np.any(now[k] != b) for k, b in base.items())


def _estimate(evaluate, total, changed, step: float, roundoff: float) -> float | None:
    """Five-point derivative of ``total(evaluate(offset))`` at 0, or None to leave it out."""
    values = {}
    for multiple, _ in _STENCIL:
        try:
            again = evaluate(multiple * step)
        except MsgpassError:
            return None  # the stencil leaves the domain, or the forward pass overflows
        if changed(again):
            return None  # a kink, a tie or a pole lies within the stencil
        values[multiple] = total(again)
    five = sum(w * values[m] for m, w in _STENCIL) / (12 * step)
    three = (values[1] - values[-1]) / (2 * step)
    if abs(five - three) > SMOOTHNESS * abs(five) + roundoff:
        return None  # not smooth at the step's scale
    return five


def graph_numeric(graph, output, seed=None, *, step: float = EPS_STEP) -> GraphGradients:
    """Five-point central differences of F = sum(seed * output).

    For every node v: dF/dv with v's value overridden and its descendants recomputed (the
    graph's "tail" at v). For every parameter: dF/dθ by perturbing θ in a float64 copy of the
    op. Entries that cannot be estimated (see the module docstring) are NaN and flagged in
    ``straddles``.
    """
    name = getattr(output, "name", output)
    run = graph.evaluate(name)
    weights = _seed(graph, run, name, seed)
    base_branch = _branches(graph, run)

    def changed(evaluation) -> bool:
        return _changed(_branches(graph, evaluation), base_branch)

    def total(evaluation) -> float:
        return float(np.sum(weights * evaluation.values[name]))

    u = np.finfo(np.float64).eps / 2
    roundoff = ROUNDOFF_FACTOR * u * max(1.0, float(np.sum(np.abs(weights * run.values[name]))))
    roundoff /= step
    nodes, straddles = {}, {}
    for n in run.order:
        value = run.values[n]
        est = np.full(value.shape, np.nan)
        for index in np.ndindex(value.shape):
            def moved(offset, index=index, n=n, value=value):
                shifted = np.array(value)
                shifted[index] += offset
                # in the node's per-sample shape: an image stays an image for what reads it
                shape = (len(shifted), *run.shapes.get(n, shifted.shape[1:]))
                return graph.evaluate(name, overrides={n: shifted.reshape(shape)})
            result = _estimate(moved, total, changed, step, roundoff)
            if result is not None:
                est[index] = result
        nodes[n], straddles[n] = est, np.isnan(est)

    params = {}
    for n in run.order:
        op = graph.nodes[n].op
        if op is None or not op.params:
            continue
        copy = op.astype(np.float64)
        for pname, array in copy.params.items():
            flat = array.reshape(-1)  # a view: writing into it perturbs the copy
            est = np.full(flat.size, np.nan)
            for i in range(flat.size):
                def moved(offset, i=i, original=flat[i], flat=flat, n=n, copy=copy):
                    flat[i] = original + offset
                    try:
                        return graph.evaluate(name, ops={n: copy})
                    finally:
                        flat[i] = original
                result = _estimate(moved, total, changed, step, roundoff)
                if result is not None:
                    est[i] = result
            params[f"{n}.{pname}"] = est.reshape(array.shape)
            straddles[f"{n}.{pname}"] = np.isnan(est).reshape(array.shape)
    names = getattr(graph, "param_names", None)     # an imported model's names and shapes
    straddles = {**{k: v for k, v in straddles.items() if k not in params},
                 **shown_all(names, {k: straddles[k] for k in params})}
    return GraphGradients(nodes=nodes, params=shown_all(names, params), straddles=straddles,
                          roundoff=roundoff)
