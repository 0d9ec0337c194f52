"""Witnesses on graphs: standard backprop (each op's classic backward, accumulated at nodes
with several consumers) and numerical differentiation (the five-point stencil of
msgpass.witnesses.numeric, through forward evaluations only). Neither imports the message code.

The numerical witness differentiates F = Σ seed · output with respect to every entry of every
node (its value overridden, its *tail*, the node and what lies downstream of it, recomputed;
every other node keeps its value) and every parameter entry. One perturbation costs one
forward evaluation of the tail over the whole batch, so it moves as many entries at once as
it can still tell apart:

* **all samples at once**: a node with the output's batch whose tail keeps samples apart (no
  op there couples samples, every node there has that batch) has entry j of every sample
  moved together, and sample b's derivative is read from its own total
  F_b = Σ_n seed[b, n] · out[b, n] (F = Σ_b F_b, and F_b depends on sample b alone). A column
  of B derivatives costs one stencil, whatever B.
* **entry by entry**, the derivative of F as a whole: a node *shared* by the batch (batch 1
  against a batch of B: a scalar input, a constant) moves every sample when it moves; a node
  whose tail couples samples (BatchNorm in training, a matrix product's right factor) cannot
  be read sample by sample; a parameter is shared by every sample. One stencil per entry.

Graphs have domains and poles (log, division, fractional powers), so an estimate is left out,
rather than guessed, when its stencil

* moves some node onto another branch (a kink, a Max tie, the sign of a divisor: a pole) -
  all samples at once, only the samples whose own branch pattern moved are left out;
* leaves a function's domain or overflows (a forward evaluation raises). All samples at once,
  the error does not say which sample left: the stencil is repeated on halves of the samples
  (the others at their base values, which they do not feel) until the samples that raise are
  isolated, at most ``DOMAIN_SPLITS`` stencils per column; samples still unresolved then are
  left out too (counted in the notes), never guessed. (Leaving the whole column out would be
  honest too, but one sample at log's edge among 3,000 would then hide the entry for all.)
* sees a function that is not smooth at the step's scale: the three-point estimate
  (f(x+h) - f(x-h))/2h, from the same evaluations, differs from the five-point one by more
  than ``SMOOTHNESS`` relative (plus the round-off allowance). Agreement to 1e-4 bounds the
  h^2 term of the third derivative, and with it the five-point estimate's own error to about
  1e-8 relative.

The round-off allowance of an estimate is ROUNDOFF_FACTOR · u · max(1, Σ |seed · output|) / h
over what was differenced: sample b's own total all samples at once, F otherwise. A node or
parameter with more than ``max_entries`` entries is sampled (columns, i.e. entries per
sample, for a node moved in all samples at once; single entries otherwise), drawn with
``sample_seed``: the others are NaN and not ``evaluated``, which is not a straddle; a
comparison leaves them out and the notes count them. A long run reports its progress
(msgpass.witnesses.progress).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import MsgpassError
from ..naming import shown_all
from ..validate import graph_seed
from .numeric import _STENCIL, EPS_STEP, ROUNDOFF_FACTOR
from .progress import Progress

__all__ = ["graph_backprop", "graph_numeric", "GraphGradients", "SMOOTHNESS", "DOMAIN_SPLITS"]

SMOOTHNESS = 1e-4  # largest relative gap allowed between the 3- and 5-point estimates
# Stencils spent on one column to find which samples left a function's domain: bisection
# isolates k of B samples in about 2k·log2(B/k), so 64 finds two or three among 3,000.
DOMAIN_SPLITS = 64


@dataclass(frozen=True)
class GraphGradients:
    """∂F/∂v for every node v reaching the output (``nodes``, each (B_v, N_v)), and parameter
    gradients keyed ``"node.name"`` (``params``); F = Σ seed · output. For the numerical
    witness also: the entries left out (``straddles``: a kink or pole in the stencil, the
    domain left, not smooth), the entries estimated at all (``evaluated``: all of them unless
    sampled), each entry's round-off allowance (``roundoffs``, shaped like the estimate), the
    largest of them (``roundoff``) and notes for the report."""

    nodes: dict[str, np.ndarray]
    params: dict[str, np.ndarray]
    straddles: dict[str, np.ndarray] | None = None
    roundoff: float = 0.0
    evaluated: dict[str, np.ndarray] | None = None
    roundoffs: dict[str, np.ndarray] | None = None
    notes: list[str] = field(default_factory=list)


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


def _changed_samples(now, base, batch: int) -> np.ndarray:
    """Bool (batch,): the samples in which some op's branch pattern moved. A pattern without
    the batch as its first axis cannot be told apart by sample: if it moved, all did."""
    moved = np.zeros(batch, dtype=bool)
    for k, b in base.items():
        if b is None or k not in now:
            continue
        differs = np.asarray(now[k] != b)
        if differs.ndim and differs.shape[0] == batch:
            moved |= differs.reshape(batch, -1).any(axis=1)
        elif differs.any():
            moved[:] = True
    return moved


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


def _chosen(rng, size: int, cap: int | None) -> np.ndarray:
    """Indices to estimate among ``size``: all, or a sorted seeded sample of ``cap``."""
    if cap is None or size <= cap:
        return np.arange(size)
    return np.sort(rng.choice(size, size=cap, replace=False))


class _Tails:
    """Forward evaluations of the output with one node's value (or op) replaced. Only the
    node's tail is recomputed: every other node is handed its base value, so a node deep in
    the graph costs what lies above it. Each evaluation is counted for ``progress``."""

    def __init__(self, graph, name: str, run, progress: Progress) -> None:
        self.graph, self.name, self.run, self.progress = graph, name, run, progress
        self.shaped = {n: v.reshape((len(v), *run.shapes.get(n, v.shape[1:])))
                       for n, v in run.values.items()}   # an image stays an image
        self.consumers: dict[str, set[str]] = {}
        for m in run.order:
            for source in graph.nodes[m].inputs:
                self.consumers.setdefault(source, set()).add(m)

    def tail(self, n: str) -> list[str]:
        """``n`` and every node downstream of it, in topological order."""
        seen, stack = {n}, [n]
        while stack:
            for m in self.consumers.get(stack.pop(), ()):
                if m not in seen:
                    seen.add(m)
                    stack.append(m)
        return [m for m in self.run.order if m in seen]

    def at(self, n: str, tail: list[str], value: np.ndarray | None = None, op=None):
        """The evaluation with node n's value (B_n, N_n) replaced by ``value``, or its op by
        ``op``; everything outside ``tail`` as in the base run."""
        inside = set(tail)
        kept = {m: self.shaped[m] for m in self.run.order if m not in inside}
        if value is not None:
            kept[n] = value.reshape(self.shaped[n].shape)
        self.progress.step(1, n)
        return self.graph.evaluate(self.name, overrides=kept,
                                   ops=None if op is None else {n: op})


def _samples_apart(graph, run, tail: list[str], batch: int) -> str | None:
    """None if the tail's first node (a node with the output's batch) can be moved in every
    sample at once, else why not: a node of the tail with another batch, or an op there
    that couples samples (the node's own op is not recomputed, so it does not count)."""
    for m in tail[1:]:
        if len(run.values[m]) != batch:
            return f"batch {len(run.values[m])} at {m!r} downstream"
        if graph.nodes[m].op.couples_samples:
            return f"{graph.nodes[m].op.describe()} at {m!r} couples the samples downstream"
    return None


class _Stencils:
    """The stencils of one numerical witness run: what a perturbation is read from (a sample's
    own total, or F), and which estimates are left out (see the module docstring)."""

    def __init__(self, graph, name: str, run, weights: np.ndarray, step: float,
                 tails: _Tails) -> None:
        self.graph, self.name, self.run, self.step, self.tails = graph, name, run, step, tails
        self.weights = np.broadcast_to(np.asarray(weights, dtype=np.float64),
                                       run.values[name].shape)
        self.base = _branches(graph, run)
        self.batch = len(run.values[name])
        u = np.finfo(np.float64).eps / 2
        sizes = np.sum(np.abs(self.weights * run.values[name]), axis=1)     # (B,)
        self.roundoff_samples = ROUNDOFF_FACTOR * u * np.maximum(1.0, sizes) / step
        self.roundoff_whole = ROUNDOFF_FACTOR * u * max(1.0, float(np.sum(sizes))) / step
        self.unresolved = 0      # samples left out because the domain splits ran out

    # -- all samples at once -----------------------------------------------------------
    def column(self, n: str, tail: list[str], j: int) -> np.ndarray:
        """∂F_b/∂v[b, j] for every sample b of node n (B,), NaN where left out. A forward
        evaluation that raises sends the samples back in halves (see the module docstring)."""
        est = np.full(self.batch, np.nan)
        pending, spent = [np.arange(self.batch)], 0
        while pending:
            rows = pending.pop()
            if spent == DOMAIN_SPLITS:       # unresolved: left out, not guessed
                self.unresolved += len(rows)
                self.tails.progress.plan(-len(_STENCIL))
                continue
            spent += 1
            start = self.tails.progress.done
            try:
                est[rows] = self._rows(n, tail, j, rows)
            except MsgpassError:
                self._settle(start)
                if len(rows) > 1:            # which of them left the domain? ask each half
                    half = len(rows) // 2
                    pending += [rows[:half], rows[half:]]
                    self.tails.progress.plan(2 * len(_STENCIL))
        return est

    def _settle(self, start: int) -> None:
        """A stencil begun at ``start`` evaluations that stopped early (an error, a branch
        that moved) did fewer than planned: the plan shrinks to match."""
        self.tails.progress.plan(self.tails.progress.done - start - len(_STENCIL))

    def _rows(self, n, tail, j, rows: np.ndarray) -> np.ndarray:
        """Five-point estimates of the samples ``rows`` (k,) moved together at entry j (the
        other samples stay put); NaN where a sample's branch moved or it is not smooth."""
        value = self.run.values[n]
        totals, moved = {}, np.zeros(len(rows), dtype=bool)
        for multiple, _ in _STENCIL:
            shifted = np.array(value)
            shifted[rows, j] += multiple * self.step
            again = self.tails.at(n, tail, value=shifted)
            totals[multiple] = np.sum(self.weights * again.values[self.name], axis=1)[rows]
            moved |= _changed_samples(_branches(self.graph, again), self.base, self.batch)[rows]
        with np.errstate(over="ignore", invalid="ignore"):   # totals near the largest float
            five = sum(w * totals[m] for m, w in _STENCIL) / (12 * self.step)
            three = (totals[1] - totals[-1]) / (2 * self.step)
            smooth = np.abs(five - three) <= SMOOTHNESS * np.abs(five) + \
                self.roundoff_samples[rows]       # False for a NaN: left out, as overflow
        return np.where(~moved & smooth, five, np.nan)

    # -- entry by entry, F as a whole --------------------------------------------------
    def whole(self, evaluate) -> float:
        """dF/dt of ``evaluate(t)`` (an Evaluation) at 0, or NaN to leave it out."""
        start = self.tails.progress.done
        result = _estimate(evaluate, self.total, self.changed, self.step, self.roundoff_whole)
        self._settle(start)
        return np.nan if result is None else result

    def total(self, evaluation) -> float:
        return float(np.sum(self.weights * evaluation.values[self.name]))

    def changed(self, evaluation) -> bool:
        return _changed(_branches(self.graph, evaluation), self.base)

    def entry(self, n: str, tail: list[str], index: tuple[int, int]) -> float:
        """dF/dv[index] of node n, one entry moved."""
        value = self.run.values[n]

        def moved(offset):
            shifted = np.array(value)
            shifted[index] += offset
            return self.tails.at(n, tail, value=shifted)
        return self.whole(moved)

    def param(self, n: str, tail: list[str], copy, flat: np.ndarray, i: int) -> float:
        """dF/dθ_i of a float64 copy of node n's op, ``flat`` a view of one of its arrays."""
        original = flat[i]

        def moved(offset):
            flat[i] = original + offset
            try:
                return self.tails.at(n, tail, op=copy)
            finally:
                flat[i] = original
        return self.whole(moved)


@dataclass
class _Plan:
    """What the witness will estimate at one node or parameter array."""

    key: str
    node: str
    tail: list[str]
    shape: tuple[int, ...]
    chosen: np.ndarray          # columns (all samples at once) or flat entries
    why_whole: str | None       # None: all samples at once; else why entry by entry

    @property
    def evaluations(self) -> int:
        return len(self.chosen) * len(_STENCIL)


def _plan(graph, run, tails: _Tails, batch: int, cap: int | None, rng) -> list[_Plan]:
    """Every node's, then every parameter's, entries to estimate and how (the seeded draws
    in this order, so a seed gives one sample)."""
    plans = []
    for n in run.order:
        value, tail = run.values[n], tails.tail(n)
        if len(value) == batch:
            why = _samples_apart(graph, run, tail, batch)
        elif len(value) == 1:
            why = f"shared by the batch of {batch}"
        else:
            why = f"batch {len(value)}, the output's {batch}"
        size = value.shape[1] if why is None else value.size
        plans.append(_Plan(n, n, tail, value.shape, _chosen(rng, size, cap), why))
    for n in run.order:
        op = graph.nodes[n].op
        if op is None or not op.params:
            continue
        tail = tails.tail(n)
        for pname, array in op.params.items():
            plans.append(_Plan(f"{n}.{pname}", n, tail, np.shape(array),
                               _chosen(rng, int(np.size(array)), cap), "a parameter"))
    return plans


def graph_numeric(graph, output, seed=None, *, step: float = EPS_STEP,
                  max_entries: int | None = None, sample_seed: int = 0,
                  progress=None) -> GraphGradients:
    """Five-point central differences of F = sum(seed * output) (see the module docstring).

    Parameters
    ----------
    graph : Graph
    output : Node or str
    seed : as for ``Graph.backward``
    step : float
        Absolute step h of the stencil (a power of two keeps v ± k·h exact).
    max_entries : int, optional
        Estimate at most this many entries of each node (columns of every sample, or single
        entries: see the module docstring) and of each parameter array, a sample drawn
        with ``sample_seed``; None estimates all.
    progress : None, bool or callable(done, total)
        Reporting of long runs (msgpass.witnesses.progress): None prints to stderr only
        when the run is long.

    Returns
    -------
    GraphGradients
        ``nodes[v]`` (B_v, N_v) and ``params[key]`` in the parameter's shape, NaN where not
        estimated; ``straddles`` the entries left out, ``evaluated`` those sampled,
        ``roundoffs`` each entry's round-off allowance.
    """
    name = getattr(output, "name", output)
    run = graph.evaluate(name)
    weights = _seed(graph, run, name, seed)
    batch = len(run.values[name])
    meter = Progress(0, progress)
    tails = _Tails(graph, name, run, meter)
    stencils = _Stencils(graph, name, run, weights, step, tails)
    plans = _plan(graph, run, tails, batch, max_entries, np.random.default_rng(sample_seed))
    meter.plan(sum(p.evaluations for p in plans))
    ests, evaluated, roundoffs = {}, {}, {}
    copies = {}
    for p in plans:
        est = np.full(int(np.prod(p.shape)), np.nan)
        mask = np.zeros(est.size, dtype=bool)
        if p.key == p.node and p.why_whole is None:
            est, mask = est.reshape(p.shape), mask.reshape(p.shape)
            for j in p.chosen:
                est[:, j] = stencils.column(p.node, p.tail, j)
            mask[:, p.chosen] = True
            allowance = np.broadcast_to(stencils.roundoff_samples[:, None], p.shape)
        elif p.key == p.node:
            for i in p.chosen:
                est[i] = stencils.entry(p.node, p.tail, np.unravel_index(i, p.shape))
            mask[p.chosen] = True
            allowance = np.full(p.shape, stencils.roundoff_whole)
        else:
            copy = copies.setdefault(p.node, graph.nodes[p.node].op.astype(np.float64))
            flat = copy.params[p.key.split(".", 1)[1]].reshape(-1)   # a view: perturbs copy
            for i in p.chosen:
                est[i] = stencils.param(p.node, p.tail, copy, flat, i)
            mask[p.chosen] = True
            allowance = np.full(p.shape, stencils.roundoff_whole)
        ests[p.key], evaluated[p.key] = est.reshape(p.shape), mask.reshape(p.shape)
        roundoffs[p.key] = np.array(allowance, dtype=np.float64)
    meter.finish()
    straddles = {k: evaluated[k] & np.isnan(v) for k, v in ests.items()}
    params = {p.key for p in plans if p.key != p.node}
    names = getattr(graph, "param_names", None)     # an imported model's names and shapes

    def shown_keys(table: dict) -> dict:
        """Nodes as they are; parameters by the names (and in the shapes) shown."""
        return {**{k: v for k, v in table.items() if k not in params},
                **shown_all(names, {k: v for k, v in table.items() if k in params})}
    return GraphGradients(
        nodes={k: v for k, v in ests.items() if k not in params},
        params=shown_all(names, {k: v for k, v in ests.items() if k in params}),
        straddles=shown_keys(straddles), roundoff=stencils.roundoff_whole,
        evaluated=shown_keys(evaluated), roundoffs=shown_keys(roundoffs),
        notes=_notes(plans, batch, max_entries, sample_seed, meter.done, stencils.unresolved))


def _notes(plans: list[_Plan], batch: int, cap, sample_seed: int, evaluations: int,
           unresolved: int) -> list[str]:
    """What the report says of the numerical witness: how it perturbed, what it sampled."""
    apart = [p.key for p in plans if p.why_whole is None]
    whole = [f"{p.key} ({p.why_whole})" for p in plans
             if p.why_whole is not None and p.key == p.node]
    how = f"numerical witness: {evaluations:,} forward evaluations"
    if batch > 1:
        how += f"; {len(apart)} node(s) moved in all {batch:,} samples at once"
        if whole:
            how += "; entry by entry: " + _listed(whole)
    notes = [how]
    sampled = [p for p in plans
               if len(p.chosen) < (p.shape[1] if p.why_whole is None else int(np.prod(p.shape)))]
    if sampled:
        notes.append(f"numerical witness: at most {cap:,} entries of each node and parameter "
                     f"(numeric_entries), drawn with numeric_seed={sample_seed}: " + _listed([
                         f"{p.key} {len(p.chosen):,} of {p.shape[1]:,}"
                         + (" entries in every sample" if p.shape[0] > 1 else "")
                         if p.why_whole is None else
                         f"{p.key} {len(p.chosen):,} of {int(np.prod(p.shape)):,}"
                         for p in sampled]))
    if unresolved:
        notes.append(f"numerical witness: {unresolved:,} estimate(s) left out whose stencil "
                     f"left a function's domain in a batch that {DOMAIN_SPLITS} splits did "
                     f"not resolve")
    return notes


def _listed(items: list[str], shown: int = 8) -> str:
    """The first ``shown`` items, and how many more (a note stays one readable line)."""
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more
