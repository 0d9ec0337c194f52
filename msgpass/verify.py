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

from .compare import Comparison, Tolerance, compare, tolerances_for
from .errors import NonFiniteError
from .witnesses import backprop, numeric_witness

__all__ = ["verify", "Report", "Check", "DEFAULT_NUMERIC_ENTRIES"]

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


@dataclass(frozen=True)
class KinkReport:
    t: int
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
            where = {"conclusion": f"the conclusion, parameter {bad.layer}",
                     "forward": "the forward pass"}.get(
                         bad.part, f"step t={bad.t}, layer {bad.t} ({bad.layer})")
            return f"FAILED at {where}: {bad.claim} does not hold{self._diagnosis(bad)}"
        numeric = [c for c in self.checks if c.witness == "numeric"]
        unresolved = [c for c in numeric if c.result.inconclusive]
        witnesses = "standard backprop's"
        if numeric and len(unresolved) < len(numeric):
            witnesses += " and the numerical ones"
        text = (f"VERIFIED: at every step the message sums equal {witnesses}, and so do the "
                f"parameter gradients")
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
            kind = "parameter partials" if bad.part == "conclusion" else "local partials"
            return f" (both witnesses disagree with the messages: its {kind} look wrong)"
        return ""

    def __str__(self) -> str:
        lines = [f"Induction proof for {' → '.join(self.network)}",
                 f"batch {self.batch}, {self.dtype}, loss {self.loss:.6g}, T = {len(self.network)}",
                 ""]
        head = (f"{'part':<12} {'about':<22} {'claim':<36} {'max abs':>9} {'max rel':>9} "
                f"{'rtol':>7}  result")
        lines += [head, "-" * len(head)]
        previous = None
        for c in self.checks:
            part = c.part if c.part in ("forward", "conclusion") else f"{c.part} t={c.t}"
            shown_part = part if part != previous else ""
            previous = part
            about = c.layer if (shown_part or c.part == "conclusion") else ""
            res = c.result
            status = "FAIL" if not c.ok else ("inconclusive" if res.inconclusive else "ok")
            if c.note:
                status += f" [{c.note}]"
            lines.append(f"{shown_part:<12} {about[:22]:<22} {c.claim[:36]:<36} "
                         f"{_fmt(res.max_abs):>9} {_fmt(res.max_rel):>9} "
                         f"{c.tol.rtol:>7.0e}  {status}")
        lines.append("")
        if self.kinks:
            for k in self.kinks:
                shown = ", ".join(f"(b={b}, n={n})" for b, n in k.points[:5])
                more = f" and {len(k.points) - 5} more" if len(k.points) > 5 else ""
                lines.append(f"non-differentiable points: layer {k.t} ({k.layer}): "
                             f"{len(k.points)} input(s) exactly on the kink: {shown}{more}; "
                             f"convention: {k.convention}")
        else:
            lines.append("non-differentiable points: none met")
        lines.append("max rel = |a - b| / max(|a|, |b|, floor·M, noise); M = the entry's "
                     "path magnitude")
        for witness in ("partials", "backprop", "numeric"):
            tols = [c.tol for c in self.checks if c.witness == witness]
            if tols:
                atol = max(t.atol for t in tols)
                extra = (f", round-off allowance up to {atol:.1e} (noise level "
                         f"{atol / tols[0].rtol:.1e})" if atol > 0 else "")
                lines.append(f"  {witness}: rtol {tols[0].rtol:.0e}, floor {tols[0].floor:g}·M"
                             f"{extra} ({tols[0].reason})")
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
    return c.layer if c.part == "conclusion" else f"step t={c.t}"


def _num(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _fmt(v: float) -> str:
    return f"{v:.1e}" if math.isfinite(v) else str(v)


def verify(net, x, target, *, numeric: bool = True,
           numeric_entries: int | None = DEFAULT_NUMERIC_ENTRIES, seed: int = 0) -> Report:
    """Walk the induction on one batch and measure every step.

    Parameters
    ----------
    net : Sequential
    x, target : as for ``net.forward``
    numeric : bool
        Include the numerical witness (the slowest part; off leaves only backprop).
    numeric_entries : int or None
        At most this many entries of each parameter array are estimated numerically (a
        sample drawn with ``seed``); None estimates all.

    Returns
    -------
    Report
    """
    previous = net._record  # verify must not leave its batch behind in the caller's network
    try:
        return _verify(net, x, target, numeric, numeric_entries, seed)
    finally:
        net._record = previous


def _verify(net, x, target, numeric, numeric_entries, seed) -> Report:
    if numeric_entries is not None and (not isinstance(numeric_entries, (int, np.integer))
                                        or numeric_entries < 1):
        raise ValueError(f"numeric_entries must be a positive integer or None, "
                         f"got {numeric_entries!r}")
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
        jac = trace.partials[t - 1].inputs.dense()
        if t == T:
            claim = f"δ^{T} = J^{T} · 1/B"
            expected = jac / trace.batch
        else:
            claim = f"δ^{t} = J^{t} · Σ δ^{t + 1}"
            expected = jac * trace.message(t + 1).sum(axis=2)[:, None, :]
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


def _numeric_note(straddles: np.ndarray, evaluated: np.ndarray | None = None) -> str:
    notes = []
    if evaluated is not None and not evaluated.all():
        notes.append(f"sampled {int(evaluated.sum())} of {evaluated.size}")
    if straddles.any():
        notes.append(f"{int(straddles.sum())} left out: stencil straddles a kink")
    return "; ".join(notes)


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
        jac = trace.partials[t - 1].inputs.magnitude().astype(dtype)
        sums[t] = (jac * sums[t + 1][:, None, :]).sum(axis=2)
    grads = {}
    for key in trace.grads:
        t, name = key.split(".", 1)
        partial = trace.partials[int(t) - 1].params[name].absolute()
        grads[key] = partial.gradient(sums[int(t) + 1].astype(dtype))
    return sums, grads
