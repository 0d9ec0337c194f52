"""The induction on a chain, walked and measured (DESIGN.md §4), whatever the numbers.

Theorem: S^t_n = Σ_{n'} δ^t_{n←n'} equals ∂L/∂z^{t-1}_n for every layer t, and the
parameter gradients built from the sums equal ∂L/∂θ. The report checks, with measured errors:

* base case t = T: the loss layer's messages are its partials times the 1/B of the mean;
* each step t = T, …, 1: the stored messages follow the recursion δ^t = J^t · Σ δ^{t+1};
  S^t equals what each witness computes (standard backprop's ∂L/∂z^{t-1}, the numerical
  gradient of the tail G_t^T at z^{t-1}, ...);
* conclusion: every parameter gradient equals each witness's.

A step fails if any of its checks fails; the first failing step (walking from the loss down)
names the culprit layer, as an induction would. How the two sides are compared (floats,
exact Fractions, mp numbers) is the arithmetic's business (verify.compare.Arithmetic).
"""

from __future__ import annotations

import numpy as np

from ..errors import MsgpassError, NonFiniteError
from ..layers.function import JACOBIAN_RTOL
from ..witnesses.weights import changed_weights_note
from .compare import Arithmetic, Comparison, Tolerance, arithmetic_of
from .report import Check, KinkReport, Report
from .roundoff import path_magnitudes
from .witness import ChainSubject, Witness

__all__ = ["walk_chain", "check_user_jacobian"]


def walk_chain(net, x, target, witnesses: list[Witness], numeric_entries: int | None,
                 numeric_seed: int) -> Report:
    """Walk the induction on one batch of a Sequential (see msgpass.verification.verify). The
    network's last forward record is left as it was."""
    previous = net.record   # verify must not leave its batch behind in the caller's network
    # asked before verify's own forward replaces the record: which weights verify uses
    note = changed_weights_note(net, "verify")
    try:
        report = _walk(net, x, target, witnesses, numeric_entries, numeric_seed)
    finally:
        net.restore(previous)
    if note:
        report.notes.append(note)
    return report


def _walk(net, x, target, witnesses, numeric_entries, numeric_seed) -> Report:
    arithmetic: Arithmetic = arithmetic_of(net.dtype, net.numbers)
    witnesses, dropped = runnable(witnesses, arithmetic)
    loss = net.forward(x, target)
    labels, T = net.labels, net.T
    report = Report(network=labels, batch=net.record.values[0].shape[0], dtype=arithmetic.name,
                    loss=float(loss), numeric=any(w.name == "numeric" for w in witnesses),
                    witnesses=[w.info for w in witnesses])
    try:
        trace = net.backward(keep="all")
    except NonFiniteError as err:
        report.error = str(err)
        return report
    tols = arithmetic.tolerances
    subject = ChainSubject(net, x, target, trace, tols, numeric_entries, numeric_seed)
    evidence = [(w, w.chain(subject)) for w in witnesses]
    evidence = [(w, e) for w, e in evidence if e is not None]
    magnitude, grad_magnitude = path_magnitudes(trace) if arithmetic.uses_magnitudes else ({}, {})
    add = report.checks.append

    def against(witness, part, t, label, found, expected, magnitude=None):
        add(Check(part, t, label, expected.claim, witness.name,
                  arithmetic.compare(expected.seen(found), expected.values, expected.tol,
                                     include=expected.include,
                                     magnitude=expected.scale(magnitude)),
                  expected.tol, expected.note))

    def one(value):   # a scalar (the loss) as a one-entry array in its own arithmetic
        return np.array([value], dtype=object) if net.numbers else np.array([float(value)])

    for witness, said in evidence:
        if said.loss is not None:
            expected = said.loss
            add(Check("forward", None, "loss", expected.claim, witness.name,
                      arithmetic.compare(one(loss), one(expected.values), expected.tol),
                      expected.tol))

    for t in range(T, 0, -1):
        part, label = ("base" if t == T else "step"), labels[t - 1]
        J = trace.partials[t - 1].inputs
        if arithmetic.floating:
            check_user_jacobian(net.layers[t - 1], trace.values[t - 1], part, t, label, add,
                                report.notes)
        if t == T:   # J^T / B, divided here: the messages were sent from the seed fl(1/B)
            claim = f"δ^{T} = J^{T} · 1/B"
            found = trace.message(t)
            expected = J.dense_send(np.ones_like(trace.incoming[T + 1])) / trace.batch
        else:        # sent from what arrived at layer t's outputs, S^{t+1}
            claim = f"δ^{t} = J^{t} · S^{t + 1}"
            # compared in a layout both share (a diagonal's or a window's own, never a
            # dense N×N), the expected side from the kind's dense-view code
            found, expected = J.send_check(trace.block(t).values, trace.incoming[t + 1])
        add(Check(part, t, label, claim, "partials",
                  arithmetic.compare(found, expected, tols["recursion"]),
                  tols["recursion"]))
        # each receiver sums what arrived: S^t = Σ_{n'} δ^t, added up again here from the
        # stored block by the kind's own code (an edge list, a dense view), in another order
        block = trace.block(t)
        add(Check(part, t, label, f"S^{t} = Σ δ^{t}", "partials",
                  arithmetic.compare(trace.incoming[t],
                                     J.stored_receive(np.asarray(block.values)),
                                     tols["backprop"], magnitude=magnitude.get(t)),
                  tols["backprop"]))
        for witness, said in evidence:
            if t in said.steps:
                against(witness, part, t, label, trace.incoming[t], said.steps[t],
                        magnitude.get(t))

    for key, grad in trace.grads.items():
        for witness, said in evidence:
            if key in said.params:
                against(witness, "conclusion", trace.param_layer(key), key, grad,
                        said.params[key], grad_magnitude.get(key))

    report.notes += _wrong_taps(trace, labels, report.checks, evidence)
    for t, mask in sorted(trace.nondifferentiable.items()):
        points = [(int(b), int(n)) for b, n in np.argwhere(mask)]
        if points:
            report.kinks.append(KinkReport(t, labels[t - 1], points,
                                           net.layers[t - 1].kink_convention))
    report.notes += arithmetic.notes
    for _, said in evidence:
        report.notes += said.notes
    report.notes += [f"{w.info.noun} needs floating point and was not run" for w in dropped]
    return report


# bytes of one input channel's least squares: a column of B·H·W floats per tap
TAP_DIAGNOSIS_LIMIT = 1 << 30


def _wrong_taps(trace, labels, checks, evidence) -> list[str]:
    """For the first step (from the loss down) whose sums disagree with standard backprop's,
    if its layer is a window (a convolution): the kernel taps the difference points at, the
    least-squares ΔW whose messages would make it (Window.tap_errors), named by index. Steps
    below inherit the difference, so only the first is diagnosed."""
    notes = []
    reference = next((said for w, said in evidence if w.name == "backprop"), None)
    failed = {c.t for c in checks if c.witness == "backprop" and c.part in ("base", "step")
              and not c.result.ok}
    for t in sorted(failed)[-1:]:
        J = trace.partials[t - 1].inputs
        if reference is None or not hasattr(J, "tap_errors") or t not in reference.steps \
                or J.weights.dtype == object:
            continue
        above = trace.incoming[t + 1]
        if J.weights.size // J.image[0] * J.n_in // J.image[0] * len(above) * 8 \
                > TAP_DIAGNOSIS_LIMIT:
            continue
        delta = J.tap_errors(np.asarray(above, dtype=np.float64),
                             np.asarray(trace.incoming[t] - reference.steps[t].values,
                                        dtype=np.float64))
        worst = np.max(np.abs(delta))
        if worst == 0:
            continue
        wrong = np.argwhere(np.abs(delta) > 1e-3 * worst)[:5]
        taps = ", ".join(f"W[{', '.join(map(str, idx))}] by {delta[tuple(idx)]:+.4g}"
                         for idx in wrong)
        notes.append(f"layer {t} ({labels[t - 1]}): its messages differ from standard backprop "
                     f"as these kernel taps of its local partials would: {taps}")
    return notes


def runnable(witnesses: list[Witness], arithmetic: Arithmetic):
    """(the witnesses that can run in this arithmetic, those that cannot); refuses when none
    can (verify would compare the sums with nothing)."""
    run = [w for w in witnesses if arithmetic.floating or not w.needs_floats]
    if not run:
        raise ValueError(f"{', '.join(w.name for w in witnesses)} need floating point; "
                         f"{arithmetic.name} numbers need another witness (backprop)")
    return run, [w for w in witnesses if w not in run]


def check_user_jacobian(layer, x, part, t, label, add, notes) -> None:
    """A layer (or graph op) with a user Jacobian (a custom Function): that Jacobian against
    the complex step (when f takes complex input; otherwise the report says the check could
    not run)."""
    try:
        result = layer.user_jacobian_check(x)
    except MsgpassError as err:
        notes.append(f"{label}: the user Jacobian was not checked: {err}")
        return
    if result is None:
        return
    tol = Tolerance(JACOBIAN_RTOL, 1.0, 0.0, "user Jacobian vs complex step, relative to the "
                                             "sample's largest entry")
    worst = result.wrong[0][:3] if result.wrong else None
    comparison = Comparison(max(abs(g - c) for *_, g, c in result.wrong) if result.wrong
                            else 0.0, result.max_rel, result.ok,
                            result.compared, 0, False, worst)
    note = "" if result.ok else "wrong (n, n'): " + ", ".join(
        map(str, sorted({(n, m) for _, n, m, _, _ in result.wrong})))
    claim = f"J^{t} = complex-step Jacobian" if t is not None else "J = complex-step Jacobian"
    add(Check(part, t, label, claim, "complex-step", comparison, tol, note))
