"""Standard backprop: each layer's classic ``backward(saved, dout)``, chained from the loss down.

It never forms a message and never reads a layer's local partials; it shares with the
message path only the layers' forward computation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import StateError
from ..layers.base import run_layer
from ..naming import shown_all
from .weights import changed_weights_note

__all__ = ["backprop", "BackpropResult"]


@dataclass(frozen=True)
class BackpropResult:
    """Result of standard backprop.

    Attributes
    ----------
    loss : float
        The batch-mean loss.
    grads : dict of str to ndarray
        ``∂L/∂θ`` keyed like ``net.params``.
    dz : list of ndarray
        ``dz[t]`` = ∂L/∂z^t of z^t's shape ((B, N_t), or (B, C, H, W) for an image), for
        t = 0..T−1 (``dz[0]`` is None when ``input_grad=False``).
    saved : list
        What each layer's forward returned (``saved[t-1]`` for layer t): a training step
        whose gradients come from here passes it to ``net.next_step(saved)``.
    notes : list of str
        Which weights were used, when they differ from those of the network's last forward
        pass (whose trace reflects the old ones).
    """

    loss: float
    grads: dict[str, np.ndarray]
    dz: list[np.ndarray]
    saved: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def incoming(self, t: int) -> np.ndarray:
        """∂L/∂z^{t-1} in z^{t-1}'s shape, the quantity the message sum S^t must equal
        (``trace.incoming(t)``); t = 1..T."""
        if not 1 <= t <= len(self.dz):
            raise IndexError(f"layer index must be 1..{len(self.dz)}, got {t!r}")
        if self.dz[t - 1] is None:
            raise StateError("∂L/∂x was not computed: backprop(..., input_grad=False)")
        return self.dz[t - 1]


def backprop(net, x, target, *, input_grad: bool = True) -> BackpropResult:
    """Gradients of the batch-mean loss by standard backprop (vector–Jacobian products).

    Parameters
    ----------
    net : Sequential
    x : array_like, shape (B, N_0)
    target : array_like
        As for ``net.forward``.
    input_grad : bool
        Compute ∂L/∂x too (default). Training needs only the parameter gradients, and
        without it the first layer skips its costliest product, as autodiff libraries do
        for an input that does not require a gradient.

    Returns
    -------
    BackpropResult
        At the network's weights as they are now, whatever its last forward pass saw (a
        trace is of that pass: ``notes`` says when the two differ).
    """
    layers = net.layers
    numbers = getattr(net, "numbers", None)   # exact or mp arithmetic, or None for floats
    z = net.prepare_input(x, copy=False)  # read only, not kept
    saved = []
    for t, layer in enumerate(layers, 1):
        z, s = run_layer(layer, t, z, target)
        saved.append(s)
    loss = float(np.mean(z)) if numbers is None else numbers.mean(z)

    grads: dict[str, np.ndarray] = {}
    dz: list[np.ndarray] = [None] * len(layers)  # type: ignore[list-item]
    # ∂L/∂L; the loss layer's backward supplies the 1/B of the mean. An int 1, not 1.0, so
    # that exact Fractions stay Fractions (1.0 · Fraction is a float).
    dout = 1
    for t in range(len(layers), 0, -1):
        if t == 1 and not input_grad:
            dout, dparams = None, layers[0].param_backward(saved[0], dout)
        else:
            dout, dparams = layers[t - 1].backward(saved[t - 1], dout)
        for name, grad in dparams.items():
            grads[f"{t}.{name}"] = grad
        dz[t - 1] = dout
    ordered = shown_all(getattr(net, "param_names", None), {
        f"{t}.{name}": grads[f"{t}.{name}"]
        for t, layer in enumerate(layers, 1) for name in layer.params})
    note = changed_weights_note(net, "standard backprop")
    return BackpropResult(loss=loss, grads=ordered, dz=dz, saved=saved,
                          notes=[note] if note else [])
