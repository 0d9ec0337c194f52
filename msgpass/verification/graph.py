"""The induction on a graph, node by node in reverse topological order, whatever the numbers.

For each node v (the output first, as the base case): the messages v sends to its inputs
follow the recursion δ_{u→v} = J_{v,u} · S_v; and S_v, everything that arrived at v, equals
what each witness computes (standard backprop's ∂F/∂v, the numerical derivative of the
graph's tail at v, the layered view's sum, and for inputs and parameter holders the path sum,
when the paths can be enumerated). Conclusion: every parameter gradient against the
witnesses.
"""

from __future__ import annotations

import numpy as np

from ..errors import NonFiniteError
from ..graph import graph_backward
from ..numbers import mode_of
from .chain import check_user_jacobian, runnable
from .compare import arithmetic_of
from .report import Check, KinkReport, Report
from .roundoff import graph_path_magnitudes
from .witness import GraphSubject, Witness

__all__ = ["walk_graph"]


def walk_graph(graph, output, seed=None, *, witnesses: list[Witness],
                 path_limit: int | None = None, numeric_entries: int | None = None,
                 numeric_seed: int = 0, progress=None) -> Report:
    """Walk the induction on a Graph (see msgpass.verification.verify)."""
    name = getattr(output, "name", output)
    if seed is None:       # an imported model's loss: the batch mean's gradient, as torch's
        seed = getattr(graph, "default_seed", None)
    numeric = any(w.name == "numeric" for w in witnesses)
    try:
        # a forward now, at today's weights and inputs, as the witnesses see them (not the
        # record a g.forward() kept, which may be older)
        trace = graph_backward(graph, name, seed=seed)
    except NonFiniteError as err:
        return Report(network=[name], batch=0, dtype="float64", loss=float("nan"),
                      numeric=numeric, error=str(err))
    value = trace.values[name]
    arithmetic = arithmetic_of(np.float64, mode_of(value))   # float64, or exact / mp values
    witnesses, dropped = runnable(witnesses, arithmetic)
    report = Report(network=[f"{n}: {graph.nodes[n].op.describe()}" if graph.nodes[n].op
                             else f"{n}: {graph.nodes[n].kind}" for n in trace.order],
                    batch=value.shape[0], dtype=arithmetic.name,
                    loss=float(np.sum(trace.seed * value)),
                    numeric=any(w.name == "numeric" for w in witnesses), kind="graph",
                    witnesses=[w.info for w in witnesses])
    for v in trace.order:
        report.suspects[v] = [w for w in trace.order if v in graph.nodes[w].inputs]
    tols = arithmetic.tolerances
    subject = GraphSubject(graph, name, seed, trace, tols, path_limit, numeric_entries,
                           numeric_seed, progress)
    evidence = [(w, w.graph(subject)) for w in witnesses]
    evidence = [(w, e) for w, e in evidence if e is not None]
    magnitude, grad_magnitude = (graph_path_magnitudes(trace) if arithmetic.uses_magnitudes
                                 else ({}, {}))
    report.notes += arithmetic.notes
    report.notes += [f"{w.info.noun} needs floating point and was not run" for w in dropped]
    for _, said in evidence:
        report.notes += said.notes
    add = report.checks.append

    def against(witness, part, key, found, expected, magnitude):
        add(Check(part, None, key, expected.claim, witness.name,
                  arithmetic.compare(expected.seen(found), expected.values, expected.tol,
                                     include=expected.include,
                                     magnitude=expected.scale(magnitude)),
                  expected.tol, expected.note))

    into: dict[str, list] = {}
    for edge in trace.edge_list:      # each node's edges, once (not a scan per node)
        into.setdefault(edge.destination, []).append(edge)
    for v in reversed(trace.order):
        node = graph.nodes[v]
        if node.kind == "constant":
            continue
        part = "base" if v == name else "node"
        S = trace.incoming[v]
        if node.op is not None and arithmetic.floating:   # a custom Function's user Jacobian
            check_user_jacobian(node.op, trace.values[node.inputs[0]], part, None, v, add,
                                report.notes)
        for edge in into.get(v, []):    # compared as stored: a diagonal is never expanded
            J = trace.partials[v].inputs[edge.slot]
            found, expected = J.send_check(edge.block.values, S)
            add(Check(part, None, v, f"δ {edge.source}→{v} = J · S_{v}", "partials",
                      arithmetic.compare(found, expected, tols["recursion"]),
                      tols["recursion"]))
        if v == name:  # the base case: what arrives at the output is the seed
            add(Check(part, None, v, f"S_{v} = the seed", "partials",
                      arithmetic.compare(S, np.asarray(trace.seed), tols["recursion"]),
                      tols["recursion"]))
            continue
        for witness, said in evidence:
            if v in said.steps:
                against(witness, part, v, S, said.steps[v], magnitude.get(v))
    for key, grad in trace.grads.items():
        for witness, said in evidence:
            if key in said.params:
                against(witness, "conclusion", key, grad, said.params[key],
                        grad_magnitude.get(key))
    for v, mask in trace.nondifferentiable.items():
        report.kinks.append(KinkReport(None, v, [(int(b), int(n)) for b, n in np.argwhere(mask)],
                                       graph.nodes[v].op.kink_convention))
    return report
