"""A layer from a plain numpy function: its local partials come from complex-step
differentiation, or from the user's Jacobian, which can be checked against them.

Complex step: for f analytic near x, ``f(x + i·h·e_n) = f(x) + i·h·∂_n f(x) + O(h²)``, so
``Im f(x + i·h·e_n) / h`` is ∂_n f(x) with no subtraction, hence no cancellation: at h = 1e-20
it is accurate to the round-off of f itself. It needs f to accept complex input and to be
analytic: ``abs``, ``max``/``min``, comparisons, ``.real``/``.conj`` and integer casts break it
(abs of a complex number is its modulus, which silently drops the imaginary part). msgpass
checks the complex-step Jacobian against central differences once, on the first batch, and
falls back to central differences, with a warning, when f refuses complex input or the two
disagree.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import DtypeError, MsgpassError, ShapeError
from ..partials import Dense, Full, LocalPartials
from ..validate import positive_int
from .base import Layer

__all__ = ["Function", "JacobianCheck", "DerivativeWarning", "COMPLEX_STEP",
           "JACOBIAN_RTOL"]

COMPLEX_STEP = 1e-20     # far below √u: the O(h²) truncation is under round-off
# A user's Jacobian and the complex-step one differ by the round-off of two evaluations of the
# same derivative (~1e-15 relative); 1e-8 (relative to the largest entry of the sample's
# Jacobian) leaves a wide margin while a wrong formula is typically off by O(1).
JACOBIAN_RTOL = 1e-8
# A Jacobian the user computes in float32 (or float16) is judged at its own precision: 16 ulps
# (1.9e-6 in float32) leaves room for a few roundings of its formula, while a wrong formula
# is still off by O(1).
_LOW_PRECISION_ULPS = 16
# Central differences at h = u^(1/3)·max(1, |x|): error ~u^(2/3) ≈ 4e-11 relative; used as
# the sanity check of the complex step with a loose 1e-5.
_CENTRAL_AGREEMENT = 1e-5


def _agree(complex_step: np.ndarray, central: np.ndarray) -> bool:
    """Complex step and central differences agree to _CENTRAL_AGREEMENT, relative to the
    largest entry of either (so a function of any scale is judged the same way)."""
    scale = max(np.abs(central).max(initial=0.0), np.abs(complex_step).max(initial=0.0))
    return scale == 0 or bool(np.all(np.abs(complex_step - central)
                                     <= _CENTRAL_AGREEMENT * scale))


class DerivativeWarning(UserWarning):
    """The complex step could not be used; central differences were."""


@dataclass(frozen=True)
class FunctionSaved:
    x: np.ndarray       # (B, n_in)
    jac: np.ndarray     # (B, n_in, n_out): J[b, n, n'] = ∂y_{n'}/∂x_n
    param_jacs: dict    # name -> (B, P, n_out)


@dataclass(frozen=True)
class JacobianCheck:
    """A user Jacobian against the complex-step one.

    ``wrong`` lists (sample, n, n', given, complex step) for every disagreeing entry;
    ``str(check)`` says which (n, n') are wrong.
    """

    name: str
    ok: bool
    max_rel: float
    wrong: list[tuple[int, int, int, float, float]]
    compared: int = 0     # how many entries (samples × n × n') were compared
    rtol: float = JACOBIAN_RTOL   # what max_rel was held to (wider for a float32 Jacobian)
    precision: str = "float64"    # the precision the user's Jacobian came in

    def __str__(self) -> str:
        held = (f"{self.rtol:.1e} of each sample's largest entry"
                + ("" if self.precision == "float64" else
                   f", the Jacobian being given in {self.precision}"))
        if self.ok:
            return (f"{self.name}: the Jacobian agrees with the complex step (max rel "
                    f"{self.max_rel:.1e} <= {held})")
        pairs = sorted({(n, m) for _, n, m, _, _ in self.wrong})
        shown = "; ".join(f"∂y[{m}]/∂x[{n}] given {a}, complex step {b_} (sample {b})"
                          for b, n, m, g, c in self.wrong[:5] for a, b_ in [_distinct(g, c)])
        return (f"{self.name}: the Jacobian is wrong at (n, n') = "
                f"{', '.join(map(str, pairs))} (max rel {self.max_rel:.1e}, allowed "
                f"{held}): {shown}")


def _distinct(a: float, b: float) -> tuple[str, str]:
    """``a`` and ``b`` printed with the fewest digits (6 at least) that tell them apart: a
    wrong entry printed as its reference, to six digits, would say nothing."""
    for digits in range(6, 18):
        x, y = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if x != y:
            return x, y
    return repr(a), repr(b)


class Function(Layer):
    """A layer computing ``y = f(x, **params)`` row by row, for a plain numpy function f.

    Parameters
    ----------
    f : callable
        ``f(x, **params)`` with x of shape (B, n_in) returns (B, n_out); each row of the result
        may depend only on the same row of x. Written with numpy ufuncs (np.sin, np.exp, @,
        +, *, ...), it accepts complex input and its partials come from the complex step.
    n_in, n_out : int
    params : mapping of str to array, optional
        Trainable parameters, passed to f by keyword; their partials come from the complex
        step too.
    jacobian : callable, optional
        ``jacobian(x, **params)`` returning J of shape (B, n_in, n_out) with
        ``J[b, n, n'] = ∂y_{n'}/∂x_n`` (msgpass's convention: input first). Used instead of
        the complex step; ``check(x)`` tells whether it is right.
    name : str, optional
        Used in reports and errors (default: f's name).
    """

    def __init__(self, f: Callable, n_in: int, n_out: int,
                 params: Mapping[str, np.ndarray] | None = None,
                 jacobian: Callable | None = None, name: str | None = None) -> None:
        super().__init__()
        if not callable(f):
            raise TypeError(f"Function needs a callable f, got {f!r}")
        self.n_in = positive_int(n_in, "Function n_in", ShapeError)
        self.n_out = positive_int(n_out, "Function n_out", ShapeError)
        self.f = f
        self.jacobian = jacobian
        self.fname = name or getattr(f, "__name__", "f")
        self.params = {k: np.array(v, dtype=np.float64) for k, v in (params or {}).items()}
        self.method: str | None = None   # "complex step" or "central differences", once known

    def describe(self) -> str:
        return f"Function({self.fname}: {self.n_in}→{self.n_out})"

    @property
    def input_width(self):
        return self.n_in

    def output_width(self, n_in):
        if n_in is not None and n_in != self.n_in:
            raise ShapeError(f"expects {self.n_in} inputs but receives {n_in}")
        return self.n_out

    # -- evaluation ------------------------------------------------------------------------
    def _call(self, x: np.ndarray, params: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        y = np.asarray(self.f(x, **(self.params if params is None else params)))
        if y.shape != (x.shape[0], self.n_out):
            raise ShapeError(f"{self.describe()}: f returned shape {y.shape} for input of shape "
                             f"{x.shape}; expected ({x.shape[0]}, {self.n_out})")
        return y

    def forward(self, x):
        if x.dtype == object:
            raise DtypeError(f"{self.describe()} computes in floating point; exact and mp "
                             f"modes are not available for custom functions")
        self._check_width(x, self.n_in)
        y = self._call(x)
        if self.jacobian is not None:
            jac, param_jacs = self._user_jacobian(x), None
        else:
            jac, param_jacs = self._derivative(x)
        if param_jacs is None:
            param_jacs = {name: self._param_jacobian(x, name) for name in self.params}
        return y.astype(x.dtype, copy=False), FunctionSaved(x, jac.astype(x.dtype, copy=False),
                                                            param_jacs)

    def _user_jacobian(self, x, with_precision: bool = False):
        """The user's J as float64 (B, n_in, n_out); with ``with_precision``, also the
        precision it came in ("float64", or "float32"/"float16" when given so)."""
        raw = np.asarray(self.jacobian(x, **self.params))
        jac = np.asarray(raw, dtype=np.float64)
        expected = (x.shape[0], self.n_in, self.n_out)
        if jac.shape != expected:
            raise ShapeError(f"{self.describe()}: jacobian returned shape {jac.shape}; expected "
                             f"{expected} (sample, input n, output n')")
        if not with_precision:
            return jac
        low = raw.dtype.kind == "f" and raw.dtype.itemsize < 8
        return jac, (raw.dtype.name if low else "float64")

    # -- derivatives -----------------------------------------------------------------------
    def _call_complex(self, x: np.ndarray, params=None) -> np.ndarray:
        """f on complex input; TypeError if f refuses it (a cast to real included)."""
        with warnings.catch_warnings():   # f casting complex to real is a refusal, not noise
            warnings.simplefilter("error", np.exceptions.ComplexWarning)
            try:
                y = self._call(x, params)
            except np.exceptions.ComplexWarning as err:
                raise TypeError(f"f casts complex input to real ({err})") from None
        if not np.iscomplexobj(y):
            raise TypeError("f returned real numbers for complex input")
        return y

    def complex_step(self, x: np.ndarray) -> np.ndarray:
        """J (B, n_in, n_out) by the complex step, all n at once: the n_in perturbed copies of
        the batch go through f as one batch of n_in·B rows."""
        batch = x.shape[0]
        xc = np.repeat(x[None].astype(np.complex128), self.n_in, axis=0)  # (n_in, B, n_in)
        idx = np.arange(self.n_in)
        xc[idx, :, idx] += 1j * COMPLEX_STEP
        y = self._call_complex(xc.reshape(self.n_in * batch, self.n_in))
        return (y.imag / COMPLEX_STEP).reshape(self.n_in, batch, self.n_out).transpose(1, 0, 2)

    def central_differences(self, x: np.ndarray) -> np.ndarray:
        """J (B, n_in, n_out) by central differences, step u^(1/3)·max(1, |x_n|)."""
        batch = x.shape[0]
        step = np.cbrt(np.finfo(np.float64).eps) * np.maximum(1.0, np.abs(x))   # (B, n_in)
        idx = np.arange(self.n_in)
        up = np.repeat(x[None].astype(np.float64), self.n_in, axis=0)
        down = up.copy()
        up[idx, :, idx] += step.T
        down[idx, :, idx] -= step.T
        rows = self.n_in * batch
        diff = self._call(up.reshape(rows, self.n_in)) - self._call(down.reshape(rows, self.n_in))
        diff = diff.reshape(self.n_in, batch, self.n_out).transpose(1, 0, 2)
        return diff / (2 * step[:, :, None])

    def _derivative(self, x: np.ndarray) -> tuple[np.ndarray, dict | None]:
        """J, and the parameter partials when the first-batch check already computed them
        (None: compute them with ``_param_jacobian``)."""
        if self.method == "central differences":
            return self.central_differences(x), None
        try:
            jac = self.complex_step(x)
        except (TypeError, ValueError, MsgpassError) as err:
            return self._fall_back(x, f"it does not take complex input ({err})"), None
        if self.method is not None:
            return jac, None
        # once: is f analytic in x and its parameters, so that the complex step holds?
        central = self.central_differences(x)
        params = {name: self._param_complex(x, name) for name in self.params}
        if not _agree(jac, central) or not all(
                _agree(params[name], self._param_central(x, name)) for name in self.params):
            return self._fall_back(x, "its complex-step derivative disagrees with central "
                                      "differences (is f analytic in x and its parameters? "
                                      "abs, max, comparisons and .real break the complex "
                                      "step; so does mixing rows of the batch)", central), None
        self.method = "complex step"
        return jac, params

    def _fall_back(self, x, why: str, central: np.ndarray | None = None) -> np.ndarray:
        warnings.warn(f"{self.describe()}: using central differences (accurate to about 1e-10 "
                      f"relative, not round-off) because {why}", DerivativeWarning, stacklevel=4)
        self.method = "central differences"
        return self.central_differences(x) if central is None else central

    def _param_complex(self, x: np.ndarray, name: str) -> np.ndarray:
        theta = self.params[name]
        flat = theta.reshape(-1)
        out = np.empty((x.shape[0], flat.size, self.n_out))
        for p in range(flat.size):
            bumped = flat.astype(np.complex128)
            bumped[p] += 1j * COMPLEX_STEP
            y = self._call_complex(x.astype(np.complex128),
                                   {**self.params, name: bumped.reshape(theta.shape)})
            out[:, p, :] = y.imag / COMPLEX_STEP
        return out

    def _param_central(self, x: np.ndarray, name: str) -> np.ndarray:
        theta = self.params[name]
        flat = theta.reshape(-1)
        out = np.empty((x.shape[0], flat.size, self.n_out))
        for p in range(flat.size):
            h = np.cbrt(np.finfo(np.float64).eps) * max(1.0, abs(flat[p]))
            up, down = flat.copy(), flat.copy()
            up[p] += h
            down[p] -= h
            out[:, p, :] = (self._call(x, {**self.params, name: up.reshape(theta.shape)})
                            - self._call(x, {**self.params, name: down.reshape(theta.shape)})
                            ) / (2 * h)
        return out

    def _param_jacobian(self, x: np.ndarray, name: str) -> np.ndarray:
        """K (B, P, n_out) for parameter ``name``: one complex-step call per entry of it, or
        central differences once the complex step was found unusable. With a user jacobian
        for x (so no check has run yet), a refusal of complex input falls back here too."""
        if self.method != "central differences":
            try:
                return self._param_complex(x, name)
            except (TypeError, ValueError, MsgpassError) as err:
                self._fall_back(x, f"it does not take complex input ({err})")
        return self._param_central(x, name)

    # -- the three faces -------------------------------------------------------------------
    def local_partials(self, saved):
        params = {name: Full(k.astype(saved.x.dtype, copy=False), self.params[name].shape)
                  for name, k in saved.param_jacs.items()}
        return LocalPartials(Dense(saved.jac), params)

    def backward(self, saved, dout):
        # the vector–Jacobian product with the same J: for a custom function the classic
        # backward has no other source of derivatives (the numerical witness checks J itself)
        dx = np.einsum("bnm,bm->bn", saved.jac, dout)
        dparams = {name: np.einsum("bpm,bm->p", k, dout).reshape(self.params[name].shape)
                   for name, k in saved.param_jacs.items()}
        return dx, dparams

    # -- checking a user's Jacobian --------------------------------------------------------
    def user_jacobian_check(self, x):
        return None if self.jacobian is None else self.check(x)

    def check(self, x) -> JacobianCheck:
        """Compare the user's ``jacobian`` with the complex-step one at x (B, n_in); every
        entry off by more than JACOBIAN_RTOL of the sample's largest entry is named."""
        if self.jacobian is None:
            raise MsgpassError(f"{self.describe()} has no user jacobian to check")
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        self._check_width(x, self.n_in)
        given, precision = self._user_jacobian(x, with_precision=True)
        try:
            reference = self.complex_step(x)
        except (TypeError, ValueError, MsgpassError) as err:
            raise MsgpassError(f"{self.describe()}: f does not take complex input ({err}), so "
                               f"its Jacobian cannot be checked by the complex step") from None
        scale = np.maximum(np.abs(reference).max(axis=(1, 2), keepdims=True), np.finfo(float).tiny)
        rel = np.abs(given - reference) / scale
        # a Jacobian given in a lower precision is right to its own round-off: its entries
        # alone are off by half an ulp, and a few operations in that precision by a few ulps
        rtol = max(JACOBIAN_RTOL, _LOW_PRECISION_ULPS * float(np.finfo(precision).eps)) \
            if precision != "float64" else JACOBIAN_RTOL
        wrong = [(int(b), int(n), int(m), float(given[b, n, m]), float(reference[b, n, m]))
                 for b, n, m in np.argwhere(rel > rtol)]
        return JacobianCheck(self.describe(), not wrong, float(rel.max()), wrong,
                             int(given.size), rtol, precision)
