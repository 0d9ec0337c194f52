"""The induction, walked and measured (DESIGN.md §4).

Theorem: S^t_n = Σ_{n'} δ^t_{n←n'} equals ∂L/∂z^{t-1}_n for every layer t, and the
parameter gradients built from the sums equal ∂L/∂θ. The report checks, with measured errors:

* base case t = T: the loss layer's messages are its partials times the 1/B of the mean;
* each step t = T, …, 1: the stored messages follow the recursion
  δ^t = J^t · Σ δ^{t+1}; S^t equals standard backprop's ∂L/∂z^{t-1}; S^t equals the
  numerical gradient of the tail G_t^T at z^{t-1};
* conclusion: every parameter gradient equals backprop's and the numerical one.

A step fails if any of its checks fails; the first failing step (walking from the loss down)
names the culprit layer, as an induction would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .compare import Comparison, Tolerance, compare, compare_numbers, tolerances_for
from .compare import compare as compare_floats
from .errors import NonFiniteError
from .numbers import mode_of
from .witnesses import backprop, numeric_witness

__all__ = ["verify", "verify_graph", "Report", "Check", "DEFAULT_NUMERIC_ENTRIES"]

DEFAULT_NUMERIC_ENTRIES = 1000  # per parameter array; larger arrays get a seeded sample


@dataclass(frozen=True)
class Check:
    """One measured claim of the proof."""

    part: str         # "forward", "base", "step", "conclusion", "messages"
    t: int | None     # layer index the claim is about
    layer: str        # its label, or the parameter key
    claim: str
    witness: str      # "partials", "backprop", "numeric"
    result: Comparison
    tol: Tolerance
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.result.ok

    @property
    def where(self) -> str:
        """Where in the proof the claim sits, e.g. "step t=3, layer 3 (ReLU)" or "node mul1"."""
        if self.part == "conclusion":
            return f"the conclusion, parameter {self.layer}"
        if self.part == "forward":
            return "the forward pass"
        if self.t is None:
            return f"{self.part} {self.layer}"
        return f"step t={self.t}, layer {self.t} ({self.layer})"

    @property
    def column(self) -> str:
        """The table's "part" column."""
        if self.part in ("forward", "conclusion") or self.t is None:
            return self.part
        return f"{self.part} t={self.t}"


@dataclass(frozen=True)
class KinkReport:
    t: int | None  # the layer index, or None for a graph node
    layer: str
    points: list[tuple[int, int]]  # (sample, node) pairs, all of them
    convention: str


@dataclass
class Report:
    """The verification report: ``ok``, ``str(report)`` (a table), ``to_dict()``."""

    network: list[str]
    batch: int
    dtype: str
    loss: float
    numeric: bool = True
    checks: list[Check] = field(default_factory=list)
    kinks: list[KinkReport] = field(default_factory=list)
    error: str = ""
    notes: list[str] = field(default_factory=list)
    suspects: dict[str, list[str]] = field(default_factory=dict)  # graph node -> its consumers
    kind: str = "network"

    @property
    def ok(self) -> bool:
        return not self.error and bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def first_failure(self) -> Check | None:
        return next((c for c in self.checks if not c.ok), None)

    @property
    def inconclusive(self) -> list[Check]:
        """Checks whose witness could not resolve the values (they neither pass nor fail)."""
        return [c for c in self.checks if c.result.inconclusive]

    def verdict(self) -> str:
        if self.error:
            return f"FAILED: {self.error}"
        bad = self.first_failure
        if bad is not None:
            return f"FAILED at {bad.where}: {bad.claim} does not hold{self._diagnosis(bad)}"
        numeric = [c for c in self.checks if c.witness == "numeric"]
        unresolved = [c for c in numeric if c.result.inconclusive]
        names = ["standard backprop's"]
        if numeric and len(unresolved) < len(numeric):
            names.append("the numerical ones")
        if any(c.witness == "layered" for c in self.checks):
            names.append("the layered view's")
        if any(c.witness == "pathsum" for c in self.checks):
            names.append("the path sums")
        witnesses = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
        text = f"VERIFIED: at every step the message sums equal {witnesses}"
        if self.dtype == "exact":
            text = (f"VERIFIED EXACTLY: at every step the message sums equal {witnesses}, "
                    f"compared with == on Fractions")
        if any(c.part == "conclusion" for c in self.checks):
            text += ", and so do the parameter gradients"
        if not numeric:
            text += " (numerical witness not run)"
        elif unresolved:
            where = ", ".join(_where(c) for c in unresolved)
            text += (f"; the numerical witness was inconclusive at {where} (its round-off "
                     f"allowance exceeds rtol times the values there)")
        return text

    def _diagnosis(self, bad: Check) -> str:
        same = {c.witness: c for c in self.checks if c.part == bad.part and c.t == bad.t
                and c.layer == bad.layer}
        ok = {witness: c.ok for witness, c in same.items()}
        if bad.witness == "partials":
            return " (the stored messages do not follow the recursion)"
        numeric = same.get("numeric")
        if ok.get("backprop") is False and numeric is not None and numeric.ok:
            # Only evidence if the numerical witness can see a gap of that size.
            if bad.result.max_rel > numeric.tol.rtol and not numeric.result.inconclusive:
                return (" (messages agree with the numerical gradient: the classic backward "
                        "of this layer looks wrong)")
            return (f" (messages and backprop differ by {bad.result.max_rel:.1e} relative, "
                    f"less than the numerical witness resolves ({numeric.tol.rtol:.0e}): it "
                    f"cannot tell which is wrong)")
        if ok.get("backprop") is False and ok.get("numeric") is False:
            if bad.layer in self.suspects:  # a graph node: its messages come from its consumers
                return (f" (both witnesses disagree with the messages: the local partials of "
                        f"{', '.join(self.suspects[bad.layer])} for their edge from "
                        f"{bad.layer} look wrong)")
            kind = "parameter partials" if bad.part == "conclusion" else "local partials"
            return f" (both witnesses disagree with the messages: its {kind} look wrong)"
        return ""

    def __str__(self) -> str:
        if self.kind == "graph":
            lines = [f"Induction proof on a graph of {len(self.network)} nodes, in topological "
                     f"order: {', '.join(self.network)}",
                     f"batch {self.batch}, {self.dtype}, F = Σ seed·output = {self.loss:.6g}", ""]
        else:
            lines = [f"Induction proof for {' → '.join(self.network)}",
                     f"batch {self.batch}, {self.dtype}, loss {self.loss:.6g}, "
                     f"T = {len(self.network)}", ""]
        head = (f"{'part':<12} {'about':<22} {'claim':<40} {'max abs':>9} {'max rel':>9} "
                f"{'rtol':>7}  result")
        lines += [head, "-" * len(head)]
        previous = None
        for c in self.checks:
            part = c.column
            shown_part = part if (part, c.layer) != previous else ""
            previous = (part, c.layer)
            about = c.layer if (shown_part or c.part == "conclusion") else ""
            res = c.result
            status = "FAIL" if not c.ok else ("inconclusive" if res.inconclusive else "ok")
            if c.note:
                status += f" [{c.note}]"
            lines.append(f"{shown_part:<12} {about[:22]:<22} {c.claim[:40]:<40} "
                         f"{_fmt(res.max_abs):>9} {_fmt(res.max_rel):>9} "
                         f"{c.tol.rtol:>7.0e}  {status}")
        lines.append("")
        if self.kinks:
            for k in self.kinks:
                shown = ", ".join(f"(b={b}, n={n})" for b, n in k.points[:5])
                more = f" and {len(k.points) - 5} more" if len(k.points) > 5 else ""
                place = f"layer {k.t} ({k.layer})" if k.t is not None else f"node {k.layer}"
                lines.append(f"non-differentiable points: {place}: "
                             f"{len(k.points)} input(s) exactly on the kink: {shown}{more}; "
                             f"convention: {k.convention}")
        else:
            lines.append("non-differentiable points: none met")
        lines.append("max rel = |a - b| / max(|a|, |b|, floor·M, noise); M = the entry's "
                     "path magnitude")
        for witness in ("partials", "complex-step", "backprop", "layered", "numeric", "pathsum"):
            tols = [c.tol for c in self.checks if c.witness == witness]
            if tols:
                atol = max(t.atol for t in tols)
                extra = (f", round-off allowance up to {atol:.1e} (noise level "
                         f"{atol / tols[0].rtol:.1e})" if atol > 0 else "")
                lines.append(f"  {witness}: rtol {tols[0].rtol:.0e}, floor {tols[0].floor:g}·M"
                             f"{extra} ({tols[0].reason})")
        lines.extend(self.notes)
        lines.append(self.verdict())
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """A JSON-able dict (NaN and Inf become None)."""
        bad = self.first_failure
        return {
            "ok": self.ok,
            "verdict": self.verdict(),
            "network": list(self.network),
            "batch": self.batch,
            "dtype": self.dtype,
            "loss": _num(self.loss),
            "numeric": self.numeric,
            "error": self.error or None,
            "notes": list(self.notes),
            "first_failure": None if bad is None else {"part": bad.part, "t": bad.t,
                                                       "layer": bad.layer, "claim": bad.claim},
            "checks": [{
                "part": c.part, "t": c.t, "layer": c.layer, "claim": c.claim,
                "witness": c.witness, "ok": c.ok, "inconclusive": c.result.inconclusive,
                "max_abs": _num(c.result.max_abs), "max_rel": _num(c.result.max_rel),
                "compared": c.result.compared, "excluded": c.result.excluded,
                "worst_index": list(c.result.worst) if c.result.worst else None,
                "rtol": c.tol.rtol, "floor": c.tol.floor,
                "noise": c.tol.atol / c.tol.rtol if c.tol.rtol else 0.0,
                "tolerance_reason": c.tol.reason,
                "note": c.note or None,
            } for c in self.checks],
            "nondifferentiable": [{"t": k.t, "layer": k.layer, "count": len(k.points),
                                   "points": [list(p) for p in k.points],
                                   "convention": k.convention} for k in self.kinks],
        }


def _where(c: Check) -> str:
    if c.part == "conclusion":
        return c.layer
    return f"step t={c.t}" if c.t is not None else f"{c.part} {c.layer}"


def _num(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _fmt(v: float) -> str:
    return f"{v:.1e}" if math.isfinite(v) else str(v)


def verify(net, x=None, target=None, *, numeric: bool = True,
           numeric_entries: int | None = DEFAULT_NUMERIC_ENTRIES, numeric_seed: int = 0,
           seed=None, path_limit: int | None = None) -> Report:
    """Walk the induction on one batch and measure every step.

    ``verify(graph, output)``, ``verify(graph, output, seed)`` or ``verify(graph, output,
    seed=...)`` verifies a Graph instead, ``seed`` being the upstream gradient of the output:
    see ``verify_graph``.

    Parameters
    ----------
    net : Sequential
    x, target : as for ``net.forward``
    numeric : bool
        Include the numerical witness (the slowest part; off leaves only backprop).
    numeric_entries : int or None
        At most this many entries of each parameter array are estimated numerically (a
        sample drawn with ``numeric_seed``); None estimates all.

    Returns
    -------
    Report
    """
    if hasattr(net, "evaluate") and hasattr(net, "nodes"):  # a Graph
        if seed is not None and target is not None:
            raise ValueError("give the graph's seed once: verify(g, f, seed) or seed=...")
        return verify_graph(net, x, target if seed is None else seed, numeric=numeric,
                            path_limit=path_limit)
    if seed is not None:
        raise ValueError("seed= is the upstream gradient of a graph's output; a network's loss "
                         "is a batch mean (numeric_seed= chooses the numerical sample)")
    previous = net._record  # verify must not leave its batch behind in the caller's network
    try:
        return _verify(net, x, target, numeric, numeric_entries, numeric_seed)
    finally:
        net._record = previous


def _verify(net, x, target, numeric, numeric_entries, seed) -> Report:
    if numeric_entries is not None and (not isinstance(numeric_entries, (int, np.integer))
                                        or numeric_entries < 1):
        raise ValueError(f"numeric_entries must be a positive integer or None, "
                         f"got {numeric_entries!r}")
    numbers = getattr(net, "numbers", None)
    if numbers is not None:
        return _verify_numbers(net, x, target, numbers)
    loss = net.forward(x, target)
    labels = net.labels
    T = net.T
    report = Report(network=labels, batch=net._record.values[0].shape[0], dtype=str(net.dtype),
                    loss=loss, numeric=numeric)
    try:
        trace = net.backward(keep="all")
    except NonFiniteError as err:
        report.error = str(err)
        return report
    tols = tolerances_for(net.dtype)
    ref = backprop(net, x, target)
    num = (numeric_witness(net, x, target, max_entries=numeric_entries, seed=seed)
           if numeric else None)
    magnitude, grad_magnitude = path_magnitudes(trace)
    add = report.checks.append

    add(Check("forward", None, "loss", "L equals backprop's forward L", "backprop",
              compare(trace.loss, ref.loss, tols["backprop"]), tols["backprop"]))

    for t in range(T, 0, -1):
        part = "base" if t == T else "step"
        label = labels[t - 1]
        _check_user_jacobian(net.layers[t - 1], trace.value(t - 1), part, t, label, add,
                             report.notes)
        jac = trace.partials[t - 1].inputs.dense()
        if t == T:
            claim = f"δ^{T} = J^{T} · 1/B"
            expected = jac / trace.batch
        else:
            claim = f"δ^{t} = J^{t} · Σ δ^{t + 1}"
            expected = _times_arriving(trace.partials[t - 1].inputs, jac,
                                       _received(trace, t + 1))
        add(Check(part, t, label, claim, "partials",
                  compare(trace.message(t), expected, tols["recursion"]), tols["recursion"]))
        add(Check(part, t, label, f"S^{t} = ∂L/∂z^{t - 1} (backprop)", "backprop",
                  compare(trace.incoming(t), ref.incoming(t), tols["backprop"],
                          magnitude=magnitude[t]), tols["backprop"]))
        if num is not None:
            tol = tols["numeric"].with_atol(num.roundoff_tails)
            add(Check(part, t, label, f"S^{t} = ∂G_{t}/∂z^{t - 1} (numeric)", "numeric",
                      compare(trace.incoming(t), num.tails[t], tol, include=~num.straddles[t],
                              magnitude=magnitude[t]), tol, _numeric_note(num.straddles[t])))

    for key, grad in trace.grads.items():
        t = int(key.split(".")[0])
        add(Check("conclusion", t, key, f"∂L/∂{key} (backprop)", "backprop",
                  compare(grad, ref.grads[key], tols["backprop"], magnitude=grad_magnitude[key]),
                  tols["backprop"]))
        if num is not None:
            tol = tols["numeric"].with_atol(num.roundoff_params)
            include = num.evaluated[key] & ~num.straddles[key]
            note = _numeric_note(num.straddles[key], num.evaluated[key])
            add(Check("conclusion", t, key, f"∂L/∂{key} (numeric)", "numeric",
                      compare(grad, num.grads[key], tol, include=include,
                              magnitude=grad_magnitude[key]), tol, note))

    for t, mask in sorted(trace.nondifferentiable.items()):
        points = [(int(b), int(n)) for b, n in np.argwhere(mask)]
        if points:
            report.kinks.append(KinkReport(t, labels[t - 1], points,
                                           net.layers[t - 1].kink_convention))
    return report


def _check_user_jacobian(layer, x, part, t, label, add, notes) -> None:
    """A custom Function with a user Jacobian: that Jacobian against the complex step (when
    f takes complex input; otherwise the report says the check could not run)."""
    from .errors import MsgpassError
    from .layers.function import JACOBIAN_RTOL, Function
    if not isinstance(layer, Function) or layer.jacobian is None:
        return
    try:
        check = layer.check(x)
    except MsgpassError as err:
        notes.append(f"{label}: the user Jacobian was not checked: {err}")
        return
    tol = Tolerance(JACOBIAN_RTOL, 1.0, 0.0, "user Jacobian vs complex step, relative to the "
                                             "sample's largest entry")
    worst = check.wrong[0][:3] if check.wrong else None
    result = Comparison(max(abs(g - c) for *_, g, c in check.wrong) if check.wrong else 0.0,
                        check.max_rel, check.ok, x.shape[0] * layer.n_in * layer.n_out, 0,
                        False, worst)
    note = "" if check.ok else "wrong (n, n'): " + ", ".join(
        map(str, sorted({(n, m) for _, n, m, _, _ in check.wrong})))
    claim = f"J^{t} = complex-step Jacobian" if t is not None else "J = complex-step Jacobian"
    add(Check(part, t, label, claim, "complex-step", result, tol, note))


def _verify_numbers(net, x, target, numbers) -> Report:
    """The induction in exact or mp arithmetic, against standard backprop in the same
    arithmetic. Exact: every claim is ``==``. The numerical witness needs floating point and
    is not run; path magnitudes are not needed (exact) or replaced by the largest entry (mp)."""
    loss = net.forward(x, target)
    labels, T = net.labels, net.T
    report = Report(network=labels, batch=net._record.values[0].shape[0], dtype=numbers.name,
                    loss=float(loss), numeric=False)
    try:
        trace = net.backward(keep="all")
    except NonFiniteError as err:
        report.error = str(err)
        return report
    tol = tolerances_for(net.dtype, numbers)["backprop"]
    ref = backprop(net, x, target)
    add = report.checks.append
    # mp: errors relative to each array's path magnitude, as in float64, so that an entry
    # that is 0 in exact arithmetic (the bias before a BatchNorm) is judged by its scale
    if numbers.exact:
        magnitude, grad_magnitude = {}, {}
    else:
        magnitude, grad_magnitude = path_magnitudes(trace)
    add(Check("forward", None, "loss", "L equals backprop's forward L", "backprop",
              compare_numbers(np.array([loss], dtype=object),
                              np.array([ref.loss], dtype=object), tol), tol))
    for t in range(T, 0, -1):
        part, label = ("base" if t == T else "step"), labels[t - 1]
        jac = trace.partials[t - 1].inputs.dense()
        if t == T:
            claim, expected = f"δ^{T} = J^{T} · 1/B", jac * numbers.one_over(trace.batch)
        else:
            claim = f"δ^{t} = J^{t} · Σ δ^{t + 1}"
            expected = _times_arriving(trace.partials[t - 1].inputs, jac,
                                       _received(trace, t + 1))
        add(Check(part, t, label, claim, "partials",
                  compare_numbers(trace.message(t), expected, tol), tol))
        add(Check(part, t, label, f"S^{t} = ∂L/∂z^{t - 1} (backprop)", "backprop",
                  compare_numbers(trace.incoming(t), ref.incoming(t), tol,
                                  magnitude.get(t)), tol))
    for key, grad in trace.grads.items():
        add(Check("conclusion", int(key.split(".")[0]), key, f"∂L/∂{key} (backprop)",
                  "backprop", compare_numbers(grad, ref.grads[key], tol,
                                              grad_magnitude.get(key)), tol))
    for t, mask in sorted(trace.nondifferentiable.items()):
        points = [(int(b), int(n)) for b, n in np.argwhere(mask)]
        if points:
            report.kinks.append(KinkReport(t, labels[t - 1], points,
                                           net.layers[t - 1].kink_convention))
    report.notes.append(
        "exact: Fractions throughout, every claim compared with == (max abs must be 0)"
        if numbers.exact else
        f"{numbers.name}: mpmath at {numbers.digits} significant digits; errors relative to "
        f"the largest entry")
    report.notes.append("the numerical witness needs floating point and was not run")
    return report


def _numeric_note(straddles: np.ndarray, evaluated: np.ndarray | None = None,
                  graph: bool = False) -> str:
    notes = []
    if evaluated is not None and not evaluated.all():
        notes.append(f"sampled {int(evaluated.sum())} of {evaluated.size}")
    if straddles.any():
        why = ("stencil straddles a kink or pole, leaves the domain, or the function is not "
               "smooth at the step's scale" if graph else "stencil straddles a kink")
        notes.append(f"{int(straddles.sum())} left out: {why}")
    return "; ".join(notes)


def _received(trace, t: int) -> np.ndarray:
    """The sums of layer t's stored messages, (B, N_{t-1}), summed here from the block."""
    block = trace.block(t)
    if block.kind == "coupled":            # (features, B, B): sum over the sending samples
        return block.values.sum(axis=2).T
    return trace.message(t).sum(axis=2)


def _times_arriving(layout, jac: np.ndarray, arriving: np.ndarray) -> np.ndarray:
    """J · S in the block's own layout: (B, N, N') per sample, or (N, B, B) coupled."""
    if layout.kind == "coupled":
        return jac * arriving.T[:, None, :]
    return jac * arriving[:, None, :]


def path_magnitudes(trace) -> tuple[dict[int, np.ndarray], dict[str, np.ndarray]]:
    """Round-off scales: the sums and gradients recomputed with every local partial replaced
    by the size of the terms it is formed from (|J|, or more where J is a difference).

    ``M^t_n = Σ_{n'} |J^t[n, n']| · M^{t+1}_{n'}``, ``M^{T+1} = 1/B``: the sum over all paths
    from node n to the loss of |product of local partials|, i.e. what |S^t_n| would be if
    nothing cancelled. Both summation orders err by a few u·M, so M, not |S|, says whether an
    entry is "near zero". Built from the dense partials with plain numpy, not the message code.
    """
    T, batch = trace.T, trace.batch
    dtype = np.float64
    sums = {T + 1: np.full((batch, 1), 1.0 / batch, dtype=dtype)}
    for t in range(T, 0, -1):
        layout = trace.partials[t - 1].inputs
        jac = layout.magnitude().astype(dtype)
        if layout.kind == "coupled":       # node (b, j) reaches every (b', j)
            sums[t] = layout.apply(sums[t + 1], jac)
        else:
            sums[t] = (jac * sums[t + 1][:, None, :]).sum(axis=2)
    grads = {}
    for key in trace.grads:
        t, name = key.split(".", 1)
        partial = trace.partials[int(t) - 1].params[name].absolute()
        grads[key] = partial.gradient(sums[int(t) + 1].astype(dtype))
    return sums, grads


def graph_path_magnitudes(trace) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``path_magnitudes`` for a graph: M_v = Σ over consumers w of |J_{w,v}| · M_w, M at the
    output = |seed|; plain numpy over the dense partials, not the message code."""
    graph = trace.graph
    sums = {name: np.zeros_like(trace.values[name]) for name in trace.order}
    sums[trace.output] = np.abs(trace.seed)
    for name in reversed(trace.order):
        node = graph.nodes[name]
        for slot, source in enumerate(node.inputs):
            jac = trace.partials[name].inputs[slot].magnitude()
            received = (jac * sums[name][:, None, :]).sum(axis=2)
            if sums[source].shape[0] == 1 < received.shape[0]:  # shared by every sample
                received = received.sum(axis=0, keepdims=True)
            sums[source] = sums[source] + received
    grads = {}
    for key in trace.grads:
        holder, pname = key.rsplit(".", 1)
        grads[key] = trace.partials[holder].params[pname].absolute().gradient(sums[holder])
    return sums, grads


def verify_graph(graph, output, seed=None, *, numeric: bool = True,
                 path_limit: int | None = None) -> Report:
    """The induction on a graph, node by node in reverse topological order.

    For each node v (the output first, as the base case): the messages v sends to its inputs
    follow the recursion δ_{u→v} = J_{v,u} · S_v; and S_v, everything that arrived at v,
    equals standard backprop's ∂F/∂v, the numerical derivative of the graph's tail at v, the
    layered view's sum, and, for inputs and parameter holders, the path sum (when the paths
    can be enumerated). Conclusion: every parameter gradient against the witnesses.
    """
    from .witnesses.graph import graph_backprop, graph_numeric
    from .witnesses.pathsum import DEFAULT_PATH_LIMIT, PathSumTooLarge, path_sum

    name = getattr(output, "name", output)
    try:
        trace = graph.backward(name, seed=seed)
    except NonFiniteError as err:
        return Report(network=[name], batch=0, dtype="float64", loss=float("nan"),
                      numeric=numeric, error=str(err))
    value = trace.values[name]
    numbers = mode_of(value)          # exact Fractions or mp numbers, or None for float64
    if numbers is not None:
        numeric = False               # numerical differentiation needs floating point
    report = Report(network=[f"{n}: {graph.nodes[n].op.describe()}" if graph.nodes[n].op
                             else f"{n}: {graph.nodes[n].kind}" for n in trace.order],
                    batch=value.shape[0], dtype="float64" if numbers is None else numbers.name,
                    loss=float(np.sum(trace.seed * value)), numeric=numeric, kind="graph")

    def compare(a, b, tol, include=None, magnitude=None):  # noqa: F811 - one rule per mode
        if numbers is not None:
            return compare_numbers(a, np.asarray(b, dtype=object), tol)
        return compare_floats(a, b, tol, include=include, magnitude=magnitude)
    for v in trace.order:
        report.suspects[v] = [w for w in trace.order if v in graph.nodes[w].inputs]
    tols = tolerances_for(np.float64, numbers)
    ref = graph_backprop(graph, name, seed=seed)
    num = graph_numeric(graph, name, seed=seed) if numeric else None
    layered = trace.layered
    if numbers is None:
        magnitude, grad_magnitude = graph_path_magnitudes(trace)
    else:       # exact: not needed; mp: errors are relative to the largest entry
        magnitude = dict.fromkeys(trace.order)
        grad_magnitude = dict.fromkeys(trace.grads)
        report.notes.append(
            "exact: Fractions throughout, every claim compared with == (max abs must be 0)"
            if numbers.exact else f"{numbers.name}: mpmath at {numbers.digits} digits")
        report.notes.append("the numerical witness needs floating point and was not run")
    try:
        paths = path_sum(trace, limit=path_limit or DEFAULT_PATH_LIMIT)
    except PathSumTooLarge as err:
        paths = None
        report.notes.append(f"path sum: not enumerated: {err}")
    else:
        report.notes.append("path sum: " + ", ".join(f"{n} {c:,} path(s)"
                                                      for n, c in paths.paths.items()))
    add = report.checks.append
    for v in reversed(trace.order):
        node = graph.nodes[v]
        if node.kind == "constant":
            continue
        part = "base" if v == name else "node"
        arrived = trace.sums[v]
        layer = getattr(node.op, "layer", None)
        if layer is not None and numbers is None:   # a custom Function's user Jacobian
            _check_user_jacobian(layer, trace.values[node.inputs[0]], part, None, v, add,
                                 report.notes)
        for edge in trace.edge_list:
            if edge.destination != v:
                continue
            expected = trace.partials[v].inputs[edge.slot].dense() * arrived[:, None, :]
            add(Check(part, None, v, f"δ {edge.source}→{v} = J · S_{v}", "partials",
                      compare(edge.dense(), expected, tols["recursion"]), tols["recursion"]))
        if v == name:  # the base case: what arrives at the output is the seed
            add(Check(part, None, v, f"S_{v} = the seed", "partials",
                      compare(arrived, np.asarray(trace.seed), tols["recursion"]),
                      tols["recursion"]))
            continue
        m = magnitude[v]
        add(Check(part, None, v, f"S_{v} = ∂F/∂{v} (backprop)", "backprop",
                  compare(arrived, ref.nodes[v], tols["backprop"], magnitude=m),
                  tols["backprop"]))
        add(Check(part, None, v, f"S_{v} = layered view", "layered",
                  compare(arrived, layered.node_sum(v), tols["backprop"], magnitude=m),
                  tols["backprop"]))
        if num is not None:
            tol = tols["numeric"].with_atol(num.roundoff)
            add(Check(part, None, v, f"S_{v} = ∂F/∂{v} (numeric tail)", "numeric",
                      compare(arrived, num.nodes[v], tol, include=~num.straddles[v],
                              magnitude=m), tol, _numeric_note(num.straddles[v], graph=True)))
        if paths is not None and v in paths.nodes:
            add(Check(part, None, v, f"S_{v} = sum over {paths.paths[v]:,} path(s)", "pathsum",
                      compare(arrived, paths.nodes[v], tols["backprop"], magnitude=m),
                      tols["backprop"]))
    for key, grad in trace.grads.items():
        m = grad_magnitude[key]
        add(Check("conclusion", None, key, f"∂F/∂{key} (backprop)", "backprop",
                  compare(grad, ref.params[key], tols["backprop"], magnitude=m),
                  tols["backprop"]))
        if num is not None:
            tol = tols["numeric"].with_atol(num.roundoff)
            add(Check("conclusion", None, key, f"∂F/∂{key} (numeric)", "numeric",
                      compare(grad, num.params[key], tol, include=~num.straddles[key],
                              magnitude=m), tol, _numeric_note(num.straddles[key], graph=True)))
        if paths is not None and key in paths.params:
            add(Check("conclusion", None, key, f"∂F/∂{key} (path sum)", "pathsum",
                      compare(grad, paths.params[key], tols["backprop"], magnitude=m),
                      tols["backprop"]))
    for v, mask in trace.nondifferentiable.items():
        report.kinks.append(KinkReport(None, v, [(int(b), int(n)) for b, n in np.argwhere(mask)],
                                       graph.nodes[v].op.kink_convention))
    return report
