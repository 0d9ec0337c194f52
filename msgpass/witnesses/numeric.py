"""Numerical differentiation through the forward pass only (勾配確認, gradient checking).

Central differences with the five-point stencil

    f'(θ) ≈ [f(θ−2h) − 8 f(θ−h) + 8 f(θ+h) − f(θ+2h)] / (12 h),

whose truncation error is h⁴ f⁽⁵⁾/30 (≈ 7e-18 · f⁽⁵⁾ at h = 2⁻¹³) and whose round-off is
about 1.5 · u · |f| / h (≈ 3e-12 · |f| in float64). The step is absolute, not relative to |θ|:
the functions here vary on an absolute scale (softmax depends on differences of its inputs,
whatever their size), and a relative step at |θ| = 1e4 would be h ≈ 1, far too coarse. It is
a power of two, so θ ± k·h is computed exactly for |θ| < 2³⁹ and the stencil is exactly
equispaced. Everything is computed in float64 on copies of the layers, whatever the network's
dtype, so the user's network is never touched.

Two kinds of derivative are estimated:

* the gradient of the batch-mean loss with respect to each parameter and to the input x;
* for each layer t, the gradient of the tail G_t^T (layers t..T) with respect to z^{t-1},
  started from the forward value z^{t-1}: the quantity the message sum S^t must equal.

A stencil that moves some layer onto another smooth piece (a ReLU input changing sign)
straddles a point where the function has no derivative; such entries are flagged in
``straddles`` and left out of comparisons rather than silently passed or failed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..layers.base import run_layer
from ..naming import shown
from .weights import changed_weights_note

__all__ = ["numeric_gradients", "numeric_witness", "NumericResult", "EPS_STEP", "ROUNDOFF_FACTOR"]

EPS_STEP = 2.0**-13  # ≈ 1.2e-4, absolute: balances h⁴ truncation against u/h round-off
_STENCIL = ((-2, 1.0), (-1, -8.0), (1, 8.0), (2, -1.0))  # (multiple of h, weight); divide by 12h
# Round-off of one estimate is at most about ROUNDOFF_FACTOR · u · max(1, |ℓ|) / h. Measured
# with ``python benchmarks/roundoff.py``: median 1.1, 99% 2.9, worst 9.8 over 300 networks
# (a linear chain that amplifies the forward pass's rounding), so 32 leaves a 3x margin.
ROUNDOFF_FACTOR = 32.0


@dataclass(frozen=True)
class NumericResult:
    """Numerical derivatives (float64).

    Attributes
    ----------
    loss : float
    grads : dict of str to ndarray
        ``∂L/∂θ`` keyed like ``net.params``, plus ``"x"`` (∂L/∂x). Entries not evaluated
        (see ``evaluated``) are NaN.
    tails : dict of int to ndarray
        ``tails[t]`` = ∂G_t^T/∂z^{t-1} at the forward value, shape (B, N_{t-1}).
    evaluated : dict of str to bool ndarray
        Which parameter entries were estimated (all unless ``max_entries`` limited them).
    tail_evaluated : dict of int to bool ndarray
        Which entries (B, N_{t-1}) of each tail were estimated (with ``max_entries``, the
        columns of a seeded sample of at most that many nodes).
    straddles : dict of (str or int) to bool ndarray
        Entries whose stencil crossed a non-differentiable point (parameter keys, "x", and
        tail indices t).
    roundoff_params, roundoff_tails : float
        Estimated absolute round-off of one parameter derivative and of one tail entry.
    step : float
    """

    loss: float
    grads: dict[str, np.ndarray]
    tails: dict[int, np.ndarray]
    evaluated: dict[str, np.ndarray]
    straddles: dict
    roundoff_params: float
    roundoff_tails: float
    step: float
    tail_evaluated: dict = None   # type: ignore[assignment]
    notes: list = None            # type: ignore[assignment]  (which weights, as BackpropResult)


def _run_tail(layers, t: int, z: np.ndarray, target) -> tuple[np.ndarray, list]:
    """Layers t..T from z = z^{t-1}; returns the per-sample loss (B,) and each layer's branch."""
    branches = []
    for s in range(t, len(layers) + 1):
        z, saved = run_layer(layers[s - 1], s, z, target)
        branches.append(layers[s - 1].branch(saved))
    return z[:, 0], branches


def _changed_rows(branches: list, base: list, batch: int) -> np.ndarray:
    """Bool (B,): samples where some layer's branch pattern differs from the base."""
    changed = np.zeros(batch, dtype=bool)
    for now, then in zip(branches, base, strict=True):
        if now is not None:
            changed |= np.any((now != then).reshape(batch, -1), axis=1)
    return changed


def numeric_witness(net, x, target, *, step: float = EPS_STEP, tails: bool = True,
                    max_entries: int | None = None, seed: int = 0) -> NumericResult:
    """Numerical gradients of the parameters, the input and (optionally) every tail.

    Parameters
    ----------
    net : Sequential
    x, target : as for ``net.forward``
    step : float
        Absolute step h of the stencil (a power of two keeps θ ± k·h exact).
    tails : bool
        Also estimate ∂G_t^T/∂z^{t-1} for every t (needed by verify).
    max_entries : int, optional
        Estimate at most this many entries of each parameter array, and of each tail at most
        this many nodes (for every sample), chosen with ``seed`` (the rest are NaN and
        marked not evaluated). None estimates all of them.
    """
    layers = [layer.astype(np.float64) for layer in net.layers]  # copies: perturbing is safe
    names = getattr(net, "param_names", None)
    T = len(layers)
    z = net.prepare_input(x, dtype=np.float64)   # (B, N_0), or (B, C, H, W) for images
    batch = z.shape[0]
    values = [z]
    for t in range(1, T + 1):
        values.append(run_layer(layers[t - 1], t, values[-1], target)[0])
    per_sample_loss, base_branches = _run_tail(layers, 1, z, target)
    loss = float(np.mean(per_sample_loss))
    u = np.finfo(np.float64).eps / 2
    scale = max(1.0, float(np.max(np.abs(per_sample_loss))))
    roundoff = ROUNDOFF_FACTOR * u * scale / step
    coupled = any(layer.couples_samples for layer in layers)
    rng = np.random.default_rng(seed)

    grads: dict[str, np.ndarray] = {}
    evaluated: dict[str, np.ndarray] = {}
    straddles: dict = {}
    for t, layer in enumerate(layers, 1):
        start = values[t - 1]
        _, branches_from_t = _run_tail(layers, t, start, target)
        for name, param in layer.params.items():
            key = f"{t}.{name}"
            flat = param.reshape(-1)  # a view: writing into it perturbs the copy's parameter
            chosen = np.arange(flat.size)
            if max_entries is not None and flat.size > max_entries:
                chosen = np.sort(rng.choice(flat.size, size=max_entries, replace=False))
            grad = np.full(flat.size, np.nan)
            crossed = np.zeros(flat.size, dtype=bool)
            for i in chosen:
                original = flat[i]
                h = step
                acc = 0.0
                for multiple, weight in _STENCIL:
                    flat[i] = original + multiple * h
                    ell, branches = _run_tail(layers, t, start, target)
                    acc += weight * np.mean(ell)
                    crossed[i] |= _changed_rows(branches, branches_from_t, batch).any()
                flat[i] = original
                grad[i] = acc / (12 * h)
            shown_key = shown(names, key)[0]    # an imported model's name and shape
            grads[shown_key] = shown(names, key, grad.reshape(param.shape))[1]
            mask = np.zeros(flat.size, dtype=bool)
            mask[chosen] = True
            evaluated[shown_key] = shown(names, key, mask.reshape(param.shape))[1]
            straddles[shown_key] = shown(names, key, crossed.reshape(param.shape))[1]

    tail_grads: dict[int, np.ndarray] = {}
    tail_evaluated: dict[int, np.ndarray] = {}
    for t in range(1, T + 1 if tails else 2):
        width = values[t - 1].reshape(batch, -1).shape[1]
        columns = np.arange(width)
        if max_entries is not None and width > max_entries:
            columns = np.sort(rng.choice(width, size=max_entries, replace=False))
        tail_grads[t], straddles[t] = _tail_gradient(layers, t, values[t - 1], target,
                                                     step, coupled, columns)
        tail_evaluated[t] = np.zeros((batch, width), dtype=bool)
        tail_evaluated[t][:, columns] = True
    # ∂L/∂x in x's own shape ((B, C, H, W) for an image), as standard backprop gives it
    grads["x"] = tail_grads[1].reshape(z.shape)
    straddles["x"] = straddles[1].reshape(z.shape)
    if not tails:
        tail_grads = {}
    note = changed_weights_note(net, "the numerical witness")
    return NumericResult(loss=loss, grads=grads, tails=tail_grads, evaluated=evaluated,
                         straddles=straddles, roundoff_params=roundoff,
                         roundoff_tails=roundoff / batch, step=step,
                         tail_evaluated=tail_evaluated, notes=[note] if note else [])


def _tail_gradient(layers, t, start, target, step, coupled, columns):
    """∂L/∂z^{t-1} of the tail G_t^T at ``start`` (B, N) (an image (B, C, H, W) is
    perturbed in its flat C-order numbering), at the nodes ``columns``, with its straddle
    mask; flat (B, N), NaN at the nodes not estimated."""
    batch = len(start)
    width = start.reshape(batch, -1).shape[1]
    _, base = _run_tail(layers, t, start, target)
    grad = np.full((batch, width), np.nan)
    crossed = np.zeros((batch, width), dtype=bool)
    h = np.full((batch, width), step)
    if not coupled:
        # Sample b's loss depends only on sample b, so one column of perturbations at a
        # time gives B derivatives at once.
        for n in columns:
            acc = np.zeros(batch)
            for multiple, weight in _STENCIL:
                moved = start.copy()        # contiguous: its flat view perturbs it
                moved.reshape(batch, -1)[:, n] += multiple * h[:, n]
                ell, branches = _run_tail(layers, t, moved, target)
                acc += weight * ell
                crossed[:, n] |= _changed_rows(branches, base, batch)
            grad[:, n] = acc / (12 * h[:, n]) / batch
        return grad, crossed
    for b in range(batch):
        for n in columns:
            acc = 0.0
            for multiple, weight in _STENCIL:
                moved = start.copy()
                moved.reshape(batch, -1)[b, n] += multiple * h[b, n]
                ell, branches = _run_tail(layers, t, moved, target)
                acc += weight * np.mean(ell)
                crossed[b, n] |= _changed_rows(branches, base, batch).any()
            grad[b, n] = acc / (12 * h[b, n])
    return grad, crossed


def numeric_gradients(net, x, target, *, step: float = EPS_STEP) -> dict[str, np.ndarray]:
    """Central-difference gradients of the batch-mean loss: a dict keyed like
    ``net.params`` plus ``"x"`` (∂L/∂x, shaped like x: (B, N_0), or (B, C, H, W) for an
    image). Float64, whatever the net's dtype.

    See ``numeric_witness`` for the tail gradients and the straddle masks.
    """
    return numeric_witness(net, x, target, step=step, tails=False).grads
