"""The verification report: each measured claim of the proof (a Check), the points met where
a layer has no derivative, and the verdict; printed as a table, or as a JSON-able dict."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .compare import Comparison, Tolerance

__all__ = ["Check", "KinkReport", "Report", "WitnessInfo"]


@dataclass(frozen=True)
class WitnessInfo:
    """A witness as the report names it (msgpass.verification.witness.Witness has the
    meaning of each field)."""

    name: str
    phrase: str
    independent_of: str
    noun: str = ""
    agreement: str = ""
    blame: str = ""
    independent_of_partials: bool = True


@dataclass(frozen=True)
class Check:
    """One measured claim of the proof."""

    part: str         # "forward", "base", "step", "node", "conclusion"
    t: int | None     # layer index the claim is about (None for a graph node)
    layer: str        # its label, the node's name, or the parameter key
    claim: str
    witness: str      # "partials" (the recursion itself), "complex-step", or a witness name
    result: Comparison
    tol: Tolerance
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.result.ok

    @property
    def status(self) -> str:
        """What the witness reports for this claim: "holds", "fails" or "inconclusive" (it
        could not resolve the values, so it neither passes nor fails them)."""
        if not self.ok:
            return "fails"
        return "inconclusive" if self.result.inconclusive else "holds"

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
    witnesses: list[WitnessInfo] = field(default_factory=list)    # those that ran, in order

    @property
    def ok(self) -> bool:
        """True when no conclusive check failed and the standard-backprop witness confirmed
        every step it checks (none of its checks inconclusive). The same rule whatever
        witnesses ran: a report without the backprop witness is never ok, since the other
        witnesses either share code with what they check (path sum, layered view, forward
        messages) or can be inconclusive where round-off hides a gap (numerical)."""
        if self.error or not self.checks or not all(c.ok for c in self.checks):
            return False
        # (a graph whose output is an input has no step for backprop to check: ran is enough)
        ran = any(w.name == "backprop" for w in self.witnesses) or any(
            c.witness == "backprop" for c in self.checks)
        return ran and not any(c.result.inconclusive for c in self.checks
                               if c.witness == "backprop")

    def _repr_html_(self) -> str:
        """Jupyter's display: the induction table, failing checks highlighted."""
        from ..trace import EXTENSIONS  # msgpass.view plugs it in
        return EXTENSIONS["report_html"](self)

    @property
    def first_failure(self) -> Check | None:
        return next((c for c in self.checks if not c.ok), None)

    @property
    def inconclusive(self) -> list[Check]:
        """Checks whose witness could not resolve the values (they neither pass nor fail)."""
        return [c for c in self.checks if c.result.inconclusive]

    def verdict(self) -> str:
        """One sentence of what was proven: VERIFIED names only the witnesses that confirmed
        every step they check; a witness that could not resolve some steps is named as
        inconclusive there, never among those that confirmed. Without a backprop
        confirmation of every step (``ok`` False) the verdict is NOT VERIFIED."""
        if self.error:
            return f"FAILED: {self.error}"
        bad = self.first_failure
        if bad is not None:
            return f"FAILED at {bad.where}: {bad.claim} does not hold{self._diagnosis(bad)}"
        ran = [w for w in self.witnesses if any(c.witness == w.name for c in self.checks)]
        confirmed = [w for w in ran if not any(
            c.witness == w.name and c.result.inconclusive for c in self.checks)]
        if confirmed:
            names = [w.phrase for w in confirmed]
            witnesses = (", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1
                         else names[0])
            claim = f"at every step the message sums equal {witnesses}"
            if self.dtype == "exact":
                claim += ", compared with == on Fractions"
            if any(c.part == "conclusion" for c in self.checks):
                claim += ", and so do the parameter gradients"
        else:
            claim = "at every step the stored messages follow the recursion"
        if self.ok:
            text = ("VERIFIED EXACTLY: " if self.dtype == "exact" else "VERIFIED: ") + claim
        elif not any(w.name == "backprop" for w in self.witnesses) and not any(
                c.witness == "backprop" for c in self.checks):
            text = (f"NOT VERIFIED: no check failed, but the standard-backprop witness, on "
                    f"which a verdict rests, was not run; {claim}")
        else:
            text = (f"NOT VERIFIED: no check failed, but the standard-backprop witness could "
                    f"not confirm every step; {claim}")
        if not any(c.witness == "numeric" for c in self.checks):
            text += " (numerical witness not run)"
        for w in ran:
            unresolved = [c for c in self.checks if c.witness == w.name and c.result.inconclusive]
            if not unresolved:
                continue
            checks = sum(c.witness == w.name for c in self.checks)
            # why: nothing left to compare (every entry straddled a kink), or values below
            # the round-off the witness allows
            reasons = []
            for empty, why in ((True, "every entry was left out, its stencil straddling a "
                                      "kink"),
                               (False, "its round-off allowance exceeds rtol times the values "
                                       "there")):
                these = [c for c in unresolved if (c.result.compared == 0) == empty]
                if these:
                    reasons.append(f"at {', '.join(_where(c) for c in these)} ({why})")
            noun = w.noun or f"the {w.name} witness"
            text += (f"; {noun} was inconclusive in {len(unresolved)} of its {checks} checks, "
                     f"{' and '.join(reasons)}, and confirmed the rest")
        return text

    def _diagnosis(self, bad: Check) -> str:
        """Which code the failing check points at, from what the other witnesses of the same
        claim found."""
        if bad.witness == "partials":
            return " (the stored messages do not follow the recursion)"
        info = {w.name: w for w in self.witnesses}
        if bad.witness not in info:
            return ""
        same = [c for c in self.checks if c.part == bad.part and c.t == bad.t
                and c.layer == bad.layer and c.witness in info]
        # a witness that shares no code with the partials and holds: evidence against the
        # failing witness's own computation, if it can see a gap of that size
        holding = [c for c in same if c.ok and info[c.witness].independent_of_partials]
        if info[bad.witness].blame and holding:
            other = holding[0]
            if bad.result.max_rel > other.tol.rtol and not other.result.inconclusive:
                return (f" (messages agree with {info[other.witness].agreement}: "
                        f"{info[bad.witness].blame} looks wrong)")
            return (f" (messages and {bad.witness} differ by {bad.result.max_rel:.1e} "
                    f"relative, less than {info[other.witness].noun} resolves "
                    f"({other.tol.rtol:.0e}): it cannot tell which is wrong)")
        independent = [c for c in same if info[c.witness].independent_of_partials]
        if len(independent) >= 2 and not any(c.ok for c in independent):
            every = "both witnesses" if len(independent) == 2 else \
                f"all {len(independent)} witnesses independent of the partials"
            if bad.layer in self.suspects:  # a graph node: its messages come from its consumers
                return (f" ({every} disagree with the messages: the local partials of "
                        f"{', '.join(self.suspects[bad.layer])} for their edge from "
                        f"{bad.layer} look wrong)")
            kind = "parameter partials" if bad.part == "conclusion" else "local partials"
            return f" ({every} disagree with the messages: its {kind} look wrong)"
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
        shown = dict.fromkeys(["partials", "complex-step"] + [w.name for w in self.witnesses]
                              + [c.witness for c in self.checks])
        for witness in shown:
            tols = [c.tol for c in self.checks if c.witness == witness]
            if tols:
                atol = max(t.largest_atol for t in tols)
                extra = (f", round-off allowance up to {atol:.1e} (noise level "
                         f"{atol / tols[0].rtol:.1e})" if atol > 0 else "")
                lines.append(f"  {witness}: rtol {tols[0].rtol:.0e}, floor {tols[0].floor:g}·M"
                             f"{extra} ({tols[0].reason})")
        if self.witnesses:
            lines.append("witnesses, and what each is independent of:")
            lines += [f"  {w.name}: {w.independent_of}" for w in self.witnesses]
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
            "witnesses": [{"name": w.name, "independent_of": w.independent_of}
                          for w in self.witnesses],
            "first_failure": None if bad is None else {"part": bad.part, "t": bad.t,
                                                       "layer": bad.layer, "claim": bad.claim},
            "checks": [{
                "part": c.part, "t": c.t, "layer": c.layer, "claim": c.claim,
                "witness": c.witness, "ok": c.ok, "inconclusive": c.result.inconclusive,
                "status": c.status,
                "max_abs": _num(c.result.max_abs), "max_rel": _num(c.result.max_rel),
                "compared": c.result.compared, "excluded": c.result.excluded,
                "worst_index": [int(i) for i in c.result.worst] if c.result.worst else None,
                # float32 tolerances are numpy scalars: plain floats for JSON
                "rtol": float(c.tol.rtol), "floor": float(c.tol.floor),
                "noise": c.tol.largest_atol / float(c.tol.rtol) if c.tol.rtol else 0.0,
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


