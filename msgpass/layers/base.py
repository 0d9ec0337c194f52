"""What every layer provides, and the one convention they all follow.

A layer is one class holding three things side by side:

``forward(x) -> (out, saved)``
    the computation; ``saved`` is a small record of exactly what the other two need
    (returned, never stashed on ``self``, so a layer object holds only its parameters);
``local_partials(saved) -> LocalPartials``
    its local partial derivatives in structured form (msgpass.partials);
``backward(saved, dout) -> (dx, dparams)``
    the classic vector–Jacobian product, written the textbook way from ``saved``; it never
    looks at ``local_partials``, so standard backprop stays an independent witness.

Loss layers take the target too: ``forward(x, target)``; their output is the per-sample loss
(B, 1) and the network's loss is its batch mean. Their ``backward(saved, dout=1.0)`` returns
the gradient of that batch mean (so it carries the 1/B, as the textbook's does).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from ..errors import MsgpassError, NonFiniteError, ShapeError
from ..numbers import arithmetic
from ..partials import LocalPartials
from ..validate import first_nonfinite

__all__ = ["Layer", "LossLayer", "run_layer"]


class Layer:
    """Base class. Subclasses override ``forward``, ``local_partials`` and ``backward``.

    Attributes
    ----------
    params : dict of str to ndarray
        The layer's own parameter arrays (not copies): e.g. ``{"W": ..., "b": ...}``.
    couples_samples : bool
        True if an output of sample b depends on inputs of other samples (BatchNorm in
        training mode). The numerical witness then perturbs one entry at a time.
    training : bool
        Training mode (the default) or evaluation mode, set by ``net.train()`` and
        ``net.eval()``; only the layers that behave differently (Dropout, BatchNorm) read it.
    """

    is_loss = False
    couples_samples = False
    keeps_shape = False   # True: output n depends on input n only, so a graph node keeps its
    #                       input's per-sample shape (an image stays an image)
    takes_images = False  # True: the input is an NCHW image (B, C, H, W), never a flat row
    takes_rows = False    # True: the input must be rows (B, N) (softmax over axis 1, losses)
    training = True
    kink_convention = ""  # what the layer uses at its non-differentiable points, if any

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}

    # -- the three faces of a layer -------------------------------------------------------
    def forward(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        raise NotImplementedError

    def local_partials(self, saved: Any) -> LocalPartials:
        raise NotImplementedError

    def backward(self, saved: Any, dout: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        raise NotImplementedError

    #: True when forward, local partials and backward need only +, −, ×, ÷ and comparisons,
    #: so that the layer can run on exact Fractions (``net.astype("exact")``).
    rational: bool = False

    def param_backward(self, saved: Any, dout: np.ndarray) -> dict[str, np.ndarray]:
        """Only the parameter gradients of ``backward``: for the first layer of a network,
        where nothing needs ∂L/∂x. Layers whose dx is costly (Affine) skip computing it."""
        return self.backward(saved, dout)[1]

    def __call__(self, node, target=None):
        """``layer(node)``: this layer as a node of the node's graph (msgpass.graph).
        For a loss layer, pass the target: ``mp.MSELoss()(y, target=t)`` (or later, to
        ``g.forward(inputs, target=t)``)."""
        apply = getattr(node, "_apply_layer", None)
        if apply is None:
            raise TypeError(f"{self.describe()} is called on a graph node; to run it on an "
                            f"array use .forward(x), or put it in a Sequential")
        return apply(self, target)   # a loss node without a target takes one from g.forward

    # -- facts about the function, used by verification and the numeric witness ----------
    def nondifferentiable(self, saved: Any) -> np.ndarray | None:
        """Boolean (B, N_in): inputs sitting exactly on a point where the layer has no
        derivative (ReLU at 0). None for smooth layers."""
        return None

    def user_jacobian_check(self, x: np.ndarray):
        """A layer whose Jacobian comes from the user (a custom Function given ``jacobian=``)
        checks it at x here and returns the JacobianCheck; None for every other layer."""
        return None

    def branch(self, saved: Any) -> np.ndarray | None:
        """Which smooth piece each input is on, as an integer array (B, N_in); None for
        smooth layers. A central difference whose stencil changes a branch straddles a
        non-differentiable point, and the numerical witness leaves it out."""
        return None

    def output_width(self, n_in: int | None) -> int | None:
        """N_t given N_{t-1} (None when not yet known). Raises ShapeError on a mismatch."""
        return n_in

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The per-sample shape of the output given the input's ((C, H, W) for an image,
        (N,) for a row). Raises ShapeError on a mismatch. By default the input's shape for a
        layer that keeps it, else (N_t,)."""
        if self.takes_rows and len(shape) > 1:
            raise ShapeError(f"takes rows (B, N), but receives images {tuple(shape)} per "
                             f"sample: put Flatten (or GlobalAvgPool2d) before it")
        width = self.output_width(int(np.prod(shape, dtype=np.int64)))
        if self.keeps_shape:
            return tuple(shape)
        return (width,)

    @property
    def input_width(self) -> int | None:
        """The input width N_{t-1} this layer requires, or None if it takes any (and then
        gives the same width back)."""
        return None

    # -- a layer in a network ---------------------------------------------------------------
    def forward_at(self, x: np.ndarray, position: int | None, target: Any = None
                   ) -> tuple[np.ndarray, Any]:
        """``forward`` for the layer at ``position`` of its network (layer t, or a graph
        node's place; None outside one): what networks, graphs and the witnesses call. It is
        ``forward`` for every layer whose computation does not depend on where it sits; an
        unseeded Dropout draws its masks from its position."""
        if self.takes_rows and x.ndim != 2:
            raise ShapeError(f"takes rows (B, N), got shape {x.shape}: put Flatten (or "
                             f"GlobalAvgPool2d) before it")
        return self.forward(x, target) if self.is_loss else self.forward(x)

    def train(self) -> Layer:
        """Training mode (the default). Returns the layer."""
        self.training = True
        return self

    def eval(self) -> Layer:
        """Evaluation mode. Returns the layer."""
        self.training = False
        return self

    def state(self) -> dict[str, np.ndarray]:
        """What this layer keeps besides its parameters that a checkpoint must keep too
        (BatchNorm's running statistics); empty for most layers."""
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Take back what ``state()`` gave (from a checkpoint)."""
        for name in state:
            raise KeyError(f"{self.describe()} keeps no state named {name!r}")

    def next_step(self, saved: Any) -> None:
        """End of a training step: ``saved`` is what this layer's forward returned for the
        step's batch (None if there was none). Nothing to do for most layers; BatchNorm folds
        the batch's statistics into its running ones, Dropout moves on to fresh masks."""

    # -- housekeeping ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        return type(self).__name__

    def describe(self) -> str:
        """A short label such as ``Affine(4→8)`` used in reports and error messages."""
        return self.name

    def __repr__(self) -> str:
        return self.describe()

    def astype(self, dtype: Any) -> Layer:
        """A copy whose parameters are converted to ``dtype``: a float dtype, or a number
        mode ("exact", "mp:N"), into which floats convert exactly."""
        clone = copy.copy(self)
        target = arithmetic(dtype)
        if isinstance(target, np.dtype):
            clone.params = {k: np.asarray(v, dtype=target).copy() for k, v in self.params.items()}
        else:
            clone.params = {k: target.array(v, f"parameter {k} of {self.describe()}")
                            for k, v in self.params.items()}
        return clone

    def _check_width(self, x: np.ndarray, expected: int) -> None:
        if x.ndim != 2 or x.shape[1] != expected:
            raise ShapeError(f"expected input of shape (B, {expected}), got {x.shape}")


class LossLayer(Layer):
    """A loss layer g^T: per-sample loss of shape (B, 1); the network takes its batch mean."""

    is_loss = True
    takes_rows = True

    def forward(self, x: np.ndarray, target: Any = None) -> tuple[np.ndarray, Any]:  # type: ignore[override]
        raise NotImplementedError

    def prepare_target(self, target: Any, x: np.ndarray) -> np.ndarray:
        """Validate ``target`` against the input x (B, N) and return it as a float array
        of shape (B, N) in x's dtype. Raises ShapeError / InputValueError."""
        raise NotImplementedError

    def output_width(self, n_in: int | None) -> int:
        return 1


def run_layer(layer: Layer, t: int, z: np.ndarray, target: Any = None) -> tuple[np.ndarray, Any]:
    """``layer.forward`` with errors named after layer t, and non-finite output caught.

    Shared by the network and the witnesses, so that all of them report bad input the same
    way; it does no differentiation.
    """
    where_label = f"layer {t} ({layer.describe()})"
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            out, saved = layer.forward_at(z, t, target)
    except MsgpassError as err:
        raise type(err)(f"{where_label}: {err}") from None
    where = first_nonfinite(out.reshape(len(out), -1))   # (sample, node), images flat
    if where is not None:
        out = out.reshape(len(out), -1)
        bad_params = [k for k, v in layer.params.items() if first_nonfinite(v) is not None]
        hint = (f"its parameter(s) {', '.join(bad_params)} hold NaN or Inf" if bad_params
                else "the values overflowed; check the scale of the input and parameters")
        raise NonFiniteError(
            f"{where_label} produced {out[where]} at sample {where[0]}, node {where[1]} "
            f"from a finite input: {hint}")
    return out, saved
