"""Fault campaign: plant known faults into copies of the local partials and classic backward of
every layer kind and graph op, run ``mp.verify``, and count what it catches, where, and whom
it blames (issue 22, "Trust"). Run:

    python benchmarks/fault_campaign.py [--quick] [--json FILE]

For each subject (a layer kind in a small Sequential, or a graph op in a small graph) and each
*site* — its input partials J (per input slot of an op), each parameter's partials K, the dx
of its classic backward (per slot), each dparam of its backward — the campaign plants one
fault at a time, by wrapping the instance's ``local_partials`` / ``backward`` so that it
returns a modified copy (library code is never edited, and the wrapper is removed after):

* ``scale``: one stored entry times 1 + ε, ε = 1e-3 … 1e-12;
* ``sign``: one entry negated;   ``drop``: one entry set to 0 (a dropped edge);
* ``swap``: one entry swapped with its neighbour in storage order;
* ``transpose``: the block transposed (skipped, with the reason, where it is not square);
* ``stale``: the partials (or backward) computed from saved forward values perturbed by
  5 % of their RMS (a value left over from another forward).

Faults are planted in the kind's own storage: a diagonal's (B, N) values, a shared matrix, a
dense block, a coupled (N, B, B) block, a convolution's kernel taps, BatchNorm2d's x̂ (from
which its channel-coupled J is made), an Affine's saved x (its K), a bias's factor of 1. A
max pool's route and a selection store no values, so they are replaced by the equivalent
dense block first. Each fault is planted at two entries: the largest in magnitude, and one
drawn at random (seeded, so runs repeat).

For every fault the campaign measures, independently of verify, the change it makes to the
sum it should be caught at — ΔS = (J' − J)·S^{t+1} for a partial, Δdx for a backward, ΔG for a
parameter — in float64, and the *effect ratio* max |ΔS| / (rtol · max(|S|, |S + ΔS|, floor·M)):
the planted change in units of that check's tolerance (M the path magnitude, as verify uses).
A fault is *live* when its change is nonzero; a miss is explained by that data (a zero entry,
ε below the dtype's resolution, a symmetric block, no weight on its path, an effect below the
tolerance), or listed as UNEXPLAINED.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import zlib
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

import msgpass as mp
from msgpass.graph import concat, take
from msgpass.partials import (
    ChannelCoupled,
    Contracted,
    Coupled,
    Dense,
    Diagonal,
    Elementwise,
    Full,
    Kernel,
    Outer,
    PerChannel,
    Shared,
    Window,
)
from msgpass.verification import Check, Report, Tolerance, tolerances_for
from msgpass.verification.roundoff import graph_path_magnitudes, path_magnitudes

EPSILONS = [10.0 ** -k for k in range(3, 13)]
QUICK_EPSILONS = [1e-3, 1e-9, 1e-12]
CLASSES = ["scale", "sign", "drop", "swap", "transpose", "stale"]
PICKS = ["largest", "random"]
STALE_NOISE = 0.05      # stale saved values: + 5 % of each array's RMS, Gaussian, seeded
BATCH = 3
TIE = 0.01             # an effect within 1 % of the tolerance is a tie: rounding decides it

# The storage each kind keeps its values in, and whether J (or K) is linear in it (so that the
# change ΔJ is the same kind holding the difference of the stored arrays).
INPUT_STORAGE = {Diagonal: ("values", True), Shared: ("matrix", True), Dense: ("values", True),
                 Coupled: ("values", True), Contracted: ("values", True),
                 Window: ("weights", True), ChannelCoupled: ("xhat", False)}
PARAM_STORAGE = {Outer: "inputs", Elementwise: "factor", Full: "values", Kernel: "padded",
                 PerChannel: "factor"}


# -- the faults ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fault:
    cls: str
    eps: float | None = None
    pick: str = "largest"

    @property
    def label(self) -> str:
        return f"scale 1+{self.eps:.0e}" if self.cls == "scale" else self.cls


class Skip(Exception):
    """This fault cannot be planted at this site (the reason is the message)."""


def _seed(*parts) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode())


def plant_in_array(a: np.ndarray, fault: Fault, key: str) -> tuple[np.ndarray, dict]:
    """A modified copy of ``a`` and what was at the entry (for the reasons of a no-op)."""
    a = np.array(a, copy=True, order="C")    # C order: ``flat`` below is a view of it
    flat = a.reshape(-1)
    if flat.size == 0:
        raise Skip("nothing stored")
    if fault.pick == "largest":
        i = int(np.argmax(np.abs(flat)))
    else:
        # one random entry per site, the same for every class and ε
        i = int(np.random.default_rng(_seed(key, "random")).integers(flat.size))
    v = flat[i].item()
    info = {"entry": i, "value": v}
    if fault.cls == "scale":
        flat[i] = flat[i] * (1 + fault.eps)     # rounded in the array's own dtype
    elif fault.cls == "sign":
        flat[i] = -flat[i]
    elif fault.cls == "drop":
        flat[i] = 0
    elif fault.cls == "swap":
        if flat.size < 2:
            raise Skip("a single entry: nothing to swap with")
        j = i + 1 if i + 1 < flat.size else i - 1
        info["other"] = flat[j].item()
        flat[i], flat[j] = flat[j], v
    return a, info


def _float64(kind, name):
    value = getattr(kind, name)
    return dataclasses.replace(kind, **{name: np.asarray(value, dtype=np.float64)})


def dense_fallback(J, batch: int) -> Dense:
    """The same partials as a dense (B, N_{t-1}, N_t) block (for kinds that store no values)."""
    d = np.asarray(J.dense())
    return Dense(np.array(np.broadcast_to(d, (batch,) + d.shape[1:]), dtype=d.dtype))


def plant_in_partials(J, fault: Fault, key: str, batch: int):
    """A faulty copy of input partials J, and the info of the planted entry."""
    if fault.cls == "transpose":
        if J.n_in != J.n_out:
            raise Skip(f"block not square ({J.n_in}×{J.n_out})")
        if type(J) is Shared:
            return dataclasses.replace(J, matrix=np.array(J.matrix.T)), {}
        if type(J) in (Dense, Coupled, Contracted):
            if type(J) is Contracted and J.values.shape[1] != J.values.shape[2]:
                raise Skip(f"block not square {J.values.shape[1:]}")
            terms = None if J.terms is None else np.array(J.terms.swapaxes(1, 2))
            return dataclasses.replace(J, values=np.array(J.values.swapaxes(1, 2)),
                                       terms=terms), {}
        if type(J) in (Diagonal, ChannelCoupled):
            return J, {}      # its own transpose by construction; the no-op is measured below
        dense = dense_fallback(J, batch)
        return Dense(np.array(dense.values.swapaxes(1, 2))), {}
    if type(J) not in INPUT_STORAGE:
        J = dense_fallback(J, batch)
    name, _ = INPUT_STORAGE[type(J)]
    values, info = plant_in_array(getattr(J, name), fault, key)
    return dataclasses.replace(J, **{name: values}), info


def param_storage(K, batch: int, dtype=np.float64) -> tuple[str, np.ndarray]:
    name = PARAM_STORAGE[type(K)]
    value = getattr(K, name)
    if value is None:       # a bias: a factor of exactly 1, stored as None
        shape = (batch, K.width) if type(K) is Elementwise else (batch, K.channels, K.positions)
        value = np.ones(shape, dtype=dtype)
    return name, value


def plant_in_param(K, fault: Fault, key: str, batch: int, dtype):
    if fault.cls == "transpose":
        raise Skip("parameter partials: no square block to transpose")
    name, value = param_storage(K, batch, dtype)
    values, info = plant_in_array(value, fault, key)
    return dataclasses.replace(K, **{name: values}), info


def vjp_matrix(backward, saved, dout_shape, dtype, slot):
    """The Jacobian of a backward's dx (slot ``slot``) in its dout, probed one dout entry at a
    time: dx_flat = A @ dout_flat (the backward's own, never the partials)."""
    size = int(np.prod(dout_shape))
    columns = []
    for k in range(size):
        e = np.zeros(size, dtype=dtype)
        e[k] = 1
        dx = backward(saved, e.reshape(dout_shape))
        columns.append(np.asarray(_dx(dx, slot), dtype=np.float64).reshape(-1))
    return np.stack(columns, axis=1)


def _dx(result, slot):
    dxs = result[0]
    return dxs[slot] if slot is not None else dxs


def perturb_saved(saved, key: str):
    """``saved`` with every float array moved by STALE_NOISE of its RMS (seeded)."""
    rng = np.random.default_rng(_seed(key, "stale"))

    def move(a):
        if isinstance(a, np.ndarray) and a.dtype.kind == "f" and a.size:
            rms = float(np.sqrt(np.mean(np.square(a, dtype=np.float64))))
            return (a + STALE_NOISE * rms * rng.standard_normal(a.shape)).astype(a.dtype)
        return a
    if dataclasses.is_dataclass(saved) and not isinstance(saved, type):
        return dataclasses.replace(saved, **{f.name: move(getattr(saved, f.name))
                                             for f in dataclasses.fields(saved) if f.init})
    if isinstance(saved, tuple):
        return tuple(move(a) for a in saved)
    return move(saved)


# -- sites and subjects ----------------------------------------------------------------------------
@dataclass
class Site:
    """One faultable place: ``what`` is "J" (input partials of ``slot``), "K" (partials of
    ``param``), "dx" (backward's dx of ``slot``) or "dparam" (backward's d``param``)."""

    what: str
    slot: int | None = None
    param: str | None = None
    step: str = ""          # where the fault should be caught: "t=3", "node x", "param 2.W"

    @property
    def label(self) -> str:
        s = self.what
        if self.slot is not None and self.what in ("J", "dx"):
            s += f"[{self.slot}]"
        if self.param is not None:
            s += f"[{self.param}]"
        return s

    @property
    def in_partials(self) -> bool:
        return self.what in ("J", "K")


@dataclass
class Record:
    """What the wrapper saw on its last call: the value before and after planting."""

    before: object = None
    after: object = None
    info: dict = field(default_factory=dict)
    saved: object = None
    calls: int = 0


class Subject:
    """A small network or graph around one layer kind or op (the *owner* whose methods are
    wrapped). Subclasses set ``sites``, and give the clean sums and their tolerances."""

    name: str
    family: str
    owner: object
    tol: Tolerance
    batch: int = BATCH

    def verify(self) -> Report:
        raise NotImplementedError

    def wrap_partials(self, lp, site: Site, fault: Fault, record: Record):
        key = f"{self.name}|{site.label}|{fault.pick}"
        before = self.extract(lp, site)
        if site.what == "J":
            after, info = plant_in_partials(before, fault, key, self.batch)
        else:
            after, info = plant_in_param(before, fault, key, self.batch, self.dtype)
        record.before, record.after, record.info = before, after, info
        return self.replace_part(lp, site, after)

    def replace_part(self, lp, site: Site, value):
        """``lp`` with the partials of ``site`` replaced by ``value``."""
        if site.what == "K":
            return dataclasses.replace(lp, params={**lp.params, site.param: value})
        if self.family == "layer":
            return dataclasses.replace(lp, inputs=value)
        inputs = list(lp.inputs)
        inputs[site.slot] = value
        return dataclasses.replace(lp, inputs=inputs)

    def replace_out(self, result, site: Site, value):
        """A backward's ``(dx, dparams)`` with the part of ``site`` replaced by ``value``."""
        dx, dparams = result
        if site.what == "dparam":
            return dx, {**dparams, site.param: value}
        if self.family == "layer":
            return value, dparams
        dxs = list(dx)
        dxs[site.slot] = value
        return dxs, dparams

    def extract(self, lp, site: Site):
        """The partials of ``site`` out of a layer's LocalPartials or an op's OpPartials."""
        if site.what == "J":
            inputs = lp.inputs if self.family == "op" else [lp.inputs]
            return inputs[site.slot or 0]
        return lp.params[site.param]

    @contextmanager
    def planted(self, site: Site, fault: Fault):
        """The owner's ``local_partials`` or ``backward`` wrapped to plant ``fault`` into a copy
        of what it returns, for the duration of the block; yields the Record it fills."""
        owner, record = self.owner, Record()
        key = f"{self.name}|{site.label}"
        name = "local_partials" if site.in_partials else "backward"
        original = getattr(owner, name)

        def local_partials(saved):
            record.calls += 1
            if fault.cls == "stale":   # only this site's partials are stale
                clean = original(saved)
                record.before = self.extract(clean, site)
                record.after = self.extract(original(perturb_saved(saved, key)), site)
                return self.replace_part(clean, site, record.after)
            return self.wrap_partials(original(saved), site, fault, record)

        def backward(saved, dout):
            record.calls += 1
            result = original(saved, dout)
            if fault.cls == "stale":   # only this site's output is stale
                stale = original(perturb_saved(saved, key), dout)
                faulty = self.replace_out(result, site, self.pick_out(stale, site))
            else:
                faulty = self.plant_backward(original, saved, dout, result, site, fault,
                                             record)
            record.before, record.after = self.pick_out(result, site), \
                self.pick_out(faulty, site)
            return faulty

        setattr(owner, name, local_partials if site.in_partials else backward)
        try:
            yield record
        finally:
            delattr(owner, name)

    def pick_out(self, result, site):
        if site.what == "dx":
            return np.array(_dx(result, site.slot if self.family == "op" else None))
        return np.array(result[1][site.param])

    def plant_backward(self, original, saved, dout, result, site, fault, record):
        slot = site.slot if self.family == "op" else None
        dx, dparams = result
        key = f"{self.name}|{site.label}|{fault.pick}"
        if site.what == "dparam":
            if fault.cls == "transpose":
                raise Skip("a parameter gradient: no square block to transpose")
            value, record.info = plant_in_array(dparams[site.param], fault, key)
            return dx, {**dparams, site.param: value}
        target = _dx(result, slot)
        if fault.cls == "transpose":
            dout_arr = np.asarray(dout)
            if dout_arr.size != target.size:
                raise Skip("block not square (dx and dout differ in size)")
            A = vjp_matrix(original, saved, dout_arr.shape, dout_arr.dtype, slot)
            if np.all(np.abs(A - A.T) <= 16 * np.finfo(target.dtype).eps * np.abs(A).max()):
                return result     # symmetric up to its round-off: transposing changes nothing
            value = (A.T @ dout_arr.reshape(-1).astype(np.float64)).reshape(target.shape)
            value = value.astype(target.dtype)
        else:
            value, record.info = plant_in_array(target, fault, key)
        if self.family == "op":
            dxs = list(dx)
            dxs[slot] = value
            return dxs, dparams
        return value, dparams

    # what the fault changes, and the check it should be caught by
    def change(self, site: Site, record: Record) -> np.ndarray:
        """The planted change of the checked quantity, in float64, flat (B, N) or the
        parameter's shape."""
        raise NotImplementedError

    def checked(self, site: Site, record: Record) -> tuple[np.ndarray, np.ndarray]:
        """The clean checked quantity, shaped like ``change``, and its path magnitude as
        verify computes it: from the faulty partials when the fault is in the partials."""
        raise NotImplementedError

    def is_step(self, check: Check, site: Site) -> bool:
        raise NotImplementedError


def input_change(before, after, S: np.ndarray, batch: int) -> np.ndarray:
    """ΔS = (J' − J)·S in float64, from the kinds' dense-view code (never the message pass)."""
    S = np.asarray(S, dtype=np.float64)
    if type(before) is not type(after):
        before = dense_fallback(before, batch)
    name, linear = INPUT_STORAGE[type(after)]
    if linear:
        delta = dataclasses.replace(after, **{name: np.asarray(getattr(after, name), np.float64)
                                              - np.asarray(getattr(before, name), np.float64)})
        if hasattr(delta, "terms"):
            delta = dataclasses.replace(delta, terms=None)
        return np.asarray(delta.dense_receive(delta.dense_send(S)))
    a, b = _float64(_float64(after, "xhat"), "scale"), _float64(_float64(before, "xhat"),
                                                                 "scale")
    return np.asarray(a.dense_receive(a.dense_send(S))) - \
        np.asarray(b.dense_receive(b.dense_send(S)))


def param_change(before, after, S: np.ndarray, batch: int) -> np.ndarray:
    S = np.asarray(S, dtype=np.float64)
    name, new = param_storage(after, batch)
    _, old = param_storage(before, batch)
    delta = dataclasses.replace(after, **{name: np.asarray(new, np.float64)
                                          - np.asarray(old, np.float64)})
    return np.asarray(delta.gradient(S))


def storage_changed(site: Site, record: Record, batch: int) -> bool:
    before, after = record.before, record.after
    if site.what == "J":
        a, b = np.broadcast_arrays(np.asarray(after.dense(), np.float64),
                                   np.asarray(before.dense(), np.float64))
        return not np.array_equal(a, b)
    if site.what == "K":
        return not np.array_equal(np.asarray(param_storage(after, batch)[1], np.float64),
                                  np.asarray(param_storage(before, batch)[1], np.float64))
    return not np.array_equal(before, after)


class ChainSubject(Subject):
    family = "layer"

    def __init__(self, name, layers, x, target, t, dtype, input_shape=None):
        self.name, self.t, self.dtype = name, t, np.dtype(dtype)
        net = mp.Sequential(layers, input_shape=input_shape) if input_shape else \
            mp.Sequential(layers)
        self.net = net.astype(str(self.dtype)) if self.dtype != np.float64 else net
        self.x, self.target = np.asarray(x).astype(self.dtype), target
        self.owner = self.net.layers[t - 1]
        self.tol = tolerances_for(self.dtype)["backprop"]
        self.net.forward(self.x, target)
        trace = self.net.backward(keep="all")
        self.trace = trace
        self.M, self.grad_M = path_magnitudes(trace)
        self.batch = trace.batch
        self.sites = [Site("J", step=f"t={t}")]
        self.sites += [Site("K", param=p, step=f"param {t}.{p}") for p in self.owner.params]
        self.sites += [Site("dx", step=f"t={t}")]
        self.sites += [Site("dparam", param=p, step=f"param {t}.{p}") for p in self.owner.params]

    def verify(self):
        return mp.verify(self.net, self.x, self.target)

    def above(self) -> np.ndarray:
        return np.asarray(self.trace.incoming[self.t + 1], dtype=np.float64)

    def change(self, site, record):
        if site.what == "J":
            return input_change(record.before, record.after, self.above(), self.batch)
        if site.what == "K":
            return param_change(record.before, record.after, self.above(), self.batch)
        delta = np.asarray(record.after, np.float64) - np.asarray(record.before, np.float64)
        return delta.reshape(len(delta), -1) if site.what == "dx" else delta

    def checked(self, site, record):
        above = self.M[self.t + 1]
        if site.what in ("J", "dx"):
            M = record.after.magnitudes(above) if site.what == "J" else self.M[self.t]
            return (np.asarray(self.trace.incoming[self.t], np.float64),
                    np.asarray(M, np.float64))
        key = f"{self.t}.{site.param}"
        M = record.after.absolute().gradient(above) if site.what == "K" else self.grad_M[key]
        return np.asarray(self.trace.grads[key], np.float64), np.asarray(M, np.float64)

    def is_step(self, check, site):
        if site.what in ("J", "dx"):
            return check.part in ("base", "step") and check.t == self.t
        return check.part == "conclusion" and check.layer == f"{self.t}.{site.param}"


class GraphSubject(Subject):
    family = "op"

    def __init__(self, name, build, rng_seed=0):
        self.name, self.dtype = name, np.dtype(np.float64)
        rng = np.random.default_rng(rng_seed)
        g = mp.Graph()
        x = g.input("x", rng.standard_normal((BATCH, 4)))
        y = g.input("y", rng.uniform(0.5, 2.0, (BATCH, 4)))
        out = build(g, x, y, rng)
        self.graph, self.output = g, out.name
        node = g.nodes[out.name]
        self.owner, self.inputs = node.op, list(node.inputs)
        trace = g.backward(out)
        self.seed = rng.standard_normal(trace.values[out.name].shape)
        self.trace = g.backward(out, self.seed)
        self.M, self.grad_M = graph_path_magnitudes(self.trace)
        self.batch = self.trace.values[out.name].shape[0]
        self.tol = tolerances_for(np.float64)["backprop"]
        slots = [i for i, u in enumerate(self.inputs) if g.nodes[u].kind != "constant"]
        # a Where's condition input carries no gradient (its partials are zero by definition)
        if type(self.owner).__name__ == "Where":
            slots = slots[:2]
        self.sites = [Site("J", slot=i, step=f"node {self.inputs[i]}") for i in slots]
        self.sites += [Site("K", param=p, step=f"param {out.name}.{p}")
                       for p in self.owner.params]
        self.sites += [Site("dx", slot=i, step=f"node {self.inputs[i]}") for i in slots]
        self.sites += [Site("dparam", param=p, step=f"param {out.name}.{p}")
                       for p in self.owner.params]

    def verify(self):
        return mp.verify(self.graph, self.output, self.seed)

    def above(self):
        return np.asarray(self.trace.incoming[self.output], np.float64)

    def change(self, site, record):
        if site.what == "J":
            delta = input_change(record.before, record.after, self.above(), self.batch)
            S = self.trace.incoming[self.inputs[site.slot]]
            if S.shape[0] == 1 < delta.shape[0]:     # a batch-1 input shared by every sample
                delta = delta.sum(axis=0, keepdims=True)
            return delta
        if site.what == "K":
            return param_change(record.before, record.after, self.above(), self.batch)
        return np.asarray(record.after, np.float64) - np.asarray(record.before, np.float64)

    def checked(self, site, record):
        above = self.M[self.output]
        if site.what in ("J", "dx"):
            u = self.inputs[site.slot]
            M = np.asarray(self.M[u], np.float64)
            if site.what == "J":    # this edge's share of M_u, from the faulty partials
                moved = np.asarray(record.after.magnitudes(above), np.float64) - \
                    np.asarray(record.before.magnitudes(above), np.float64)
                M = M + (moved.sum(axis=0, keepdims=True) if M.shape[0] == 1 < len(moved)
                         else moved)
            return (np.asarray(self.trace.incoming[u], np.float64).reshape(
                len(self.trace.incoming[u]), -1), M)
        key = f"{self.output}.{site.param}"
        M = record.after.absolute().gradient(above) if site.what == "K" else self.grad_M[key]
        return np.asarray(self.trace.grads[key], np.float64), np.asarray(M, np.float64)

    def is_step(self, check, site):
        if site.what in ("J", "dx"):
            return check.part == "node" and check.layer == self.inputs[site.slot]
        return check.part == "conclusion" and check.layer == f"{self.output}.{site.param}"


# -- the subjects --------------------------------------------------------------------------------
def chain_subjects(dtype, names=None):
    """One Sequential per layer kind; the kind sits at position t (its S^t is checked)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((BATCH, 4))
    img = rng.standard_normal((BATCH, 2, 4, 4))
    labels = np.array([0, 1, 2])
    A = np.random.default_rng(5).standard_normal((5, 5)) / 2

    def mlp(layer, width=5):      # Affine(4→5), the layer at t = 2, Affine, softmax loss
        return [mp.Affine(4, 5, seed=0), layer, mp.Affine(width, 3, seed=2),
                mp.SoftmaxCrossEntropy()], x, labels, 2, None

    def conv(layer, width):       # a convolution first, the image layer at t = 2
        tail = [] if layer.name == "Flatten" or width == 2 else [mp.Flatten()]
        return [mp.Conv2d(2, 2, 3, padding=1, seed=0), layer, *tail,
                mp.Affine(width, 3, seed=2), mp.SoftmaxCrossEntropy()], img, labels, 2, (2, 4, 4)

    def tanh_mix(v):
        return np.tanh(v @ A)

    table = {
        "Affine": lambda: mlp(mp.Affine(5, 5, seed=1)),
        "ReLU": lambda: mlp(mp.ReLU()),
        "Sigmoid": lambda: mlp(mp.Sigmoid()),
        "Tanh": lambda: mlp(mp.Tanh()),
        "Softmax": lambda: mlp(mp.Softmax()),
        "LogSoftmax": lambda: mlp(mp.LogSoftmax()),
        "Dropout": lambda: mlp(mp.Dropout(0.3, seed=3)),
        "BatchNorm": lambda: mlp(mp.BatchNorm(5)),
        "Function": lambda: mlp(mp.Function(tanh_mix, 5, 5, name="tanh_mix")),
        "SoftmaxCrossEntropy": lambda: ([mp.Affine(4, 5, seed=0), mp.Tanh(),
                                         mp.Affine(5, 3, seed=2), mp.SoftmaxCrossEntropy()],
                                        x, labels, 4, None),
        "NLLLoss": lambda: ([mp.Affine(4, 5, seed=0), mp.Tanh(), mp.Affine(5, 3, seed=2),
                             mp.LogSoftmax(), mp.NLLLoss()], x, labels, 5, None),
        "MSELoss": lambda: ([mp.Affine(4, 5, seed=0), mp.Tanh(), mp.Affine(5, 3, seed=2),
                             mp.MSELoss()], x, rng.standard_normal((BATCH, 3)), 4, None),
        "Conv2d": lambda: conv(mp.Conv2d(2, 2, 3, padding=1, seed=1), 32),
        "MaxPool2d": lambda: conv(mp.MaxPool2d(2), 8),
        "AvgPool2d": lambda: conv(mp.AvgPool2d(2), 8),
        "GlobalAvgPool2d": lambda: conv(mp.GlobalAvgPool2d(), 2),
        "BatchNorm2d": lambda: conv(mp.BatchNorm2d(2), 32),
        "Flatten": lambda: conv(mp.Flatten(), 32),
    }
    for name in names or table:
        layers, inp, target, t, shape = table[name]()
        yield ChainSubject(name, layers, inp, target, t, dtype, shape)


def graph_subjects(names=None):
    table = {
        "add": lambda g, x, y, r: x + y,
        "add (broadcast)": lambda g, x, y, r: x + g.input("c", r.standard_normal((BATCH, 1))),
        "sub": lambda g, x, y, r: x - y,
        "mul": lambda g, x, y, r: x * y,
        "div": lambda g, x, y, r: x / y,
        "maximum": lambda g, x, y, r: mp.maximum(x, y),
        "minimum": lambda g, x, y, r: mp.minimum(x, y),
        "exp": lambda g, x, y, r: mp.exp(x),
        "log": lambda g, x, y, r: mp.log(y),
        "sigmoid": lambda g, x, y, r: mp.sigmoid(x),
        "tanh": lambda g, x, y, r: mp.tanh(x),
        "relu": lambda g, x, y, r: mp.relu(x),
        "sin": lambda g, x, y, r: mp.sin(x),
        "cos": lambda g, x, y, r: mp.cos(x),
        "sqrt": lambda g, x, y, r: mp.sqrt(y),
        "abs": lambda g, x, y, r: mp.abs(x),
        "softplus": lambda g, x, y, r: mp.softplus(x),
        "log1p": lambda g, x, y, r: mp.log1p(y),
        "expm1": lambda g, x, y, r: mp.expm1(x),
        "square": lambda g, x, y, r: mp.square(x),
        "pow (x ** 3)": lambda g, x, y, r: x ** 3,
        "pow (y ** x)": lambda g, x, y, r: y ** x,
        "scale (2.5 x)": lambda g, x, y, r: 2.5 * x,
        "reciprocal (1/y)": lambda g, x, y, r: 1 / y,
        "where": lambda g, x, y, r: mp.where(x > 0, x * 1.5, y),
        "sum": lambda g, x, y, r: mp.sum(x),
        "mean": lambda g, x, y, r: mp.mean(x),
        "matmul (plain)": lambda g, x, y, r: mp.matmul(
            x, g.input("w", r.standard_normal((4, 3)))),
        "matmul (per sample)": lambda g, x, y, r: mp.matmul(
            g.input("a", r.standard_normal((BATCH, 2, 3))),
            g.input("b", r.standard_normal((BATCH, 3, 2)))),
        "concat": lambda g, x, y, r: concat([x, y]),
        "take": lambda g, x, y, r: take(x, slice(1, 3)),
        "elementwise (arcsinh)": lambda g, x, y, r: mp.elementwise(np.arcsinh)(x),
        "layer node (Affine)": lambda g, x, y, r: mp.Affine(4, 4, seed=0)(x),
    }
    for name in names or table:
        yield GraphSubject(f"op {name}", table[name])


# -- one fault, measured -------------------------------------------------------------------------
@dataclass
class Outcome:
    dtype: str
    subject: str
    family: str
    site: str
    target: str         # "partials" or "backward"
    fault: str
    cls: str
    eps: float | None
    pick: str
    step: str
    live: bool = False
    ratio: float = 0.0          # the planted change in units of the check's tolerance
    measured: float = 0.0       # what verify's backprop check there measured, in rtol units
    caught: bool = False
    right_step: bool = False
    first: str = ""             # where verify's first failure was, and by which witness
    witnesses: str = ""         # witnesses failing at the right step
    blame: str = ""             # what the verdict's diagnosis blames
    reason: str = ""            # for a miss (or a no-op)
    skipped: str = ""


def _blame(verdict: str) -> str:
    if "look wrong)" in verdict and ("partials" in verdict or "for their edge" in verdict):
        return "partials"
    if "looks wrong)" in verdict:
        return "backward"
    if "cannot tell" in verdict:
        return "undecided"
    return "none"


def noop_reason(fault: Fault, info: dict, dtype: np.dtype) -> str:
    v = info.get("value")
    if fault.cls == "transpose":
        return "no-op: the block equals its transpose (diagonal or symmetric)"
    if fault.cls == "stale":
        return "no-op: the partial (or dx) does not read the perturbed saved values"
    if fault.cls == "swap":
        return "no-op: the two swapped entries are equal"
    if v == 0:
        return "no-op: the entry is 0 (an inactive unit, a dropped unit or a non-edge)"
    if fault.cls == "scale":
        return f"no-op: ε below {dtype} resolution, fl(v·(1+ε)) = v"
    return "no-op: unchanged"


def run_fault(subject: Subject, site: Site, fault: Fault) -> Outcome:
    out = Outcome(str(subject.dtype), subject.name, subject.family, site.label,
                  "partials" if site.in_partials else "backward", fault.label, fault.cls,
                  fault.eps, fault.pick, site.step)
    try:
        with subject.planted(site, fault) as record:
            report = subject.verify()
    except Skip as why:
        out.skipped = str(why)
        return out
    if record.calls == 0:
        out.skipped = "the wrapped method was never called"
        return out
    out.live = storage_changed(site, record, subject.batch)
    delta = subject.change(site, record) if out.live else None
    if delta is not None:
        S, M = subject.checked(site, record)
        delta = delta.reshape(S.shape)
        size = np.maximum(np.maximum(np.abs(S), np.abs(S + delta)),
                          subject.tol.floor * np.broadcast_to(M, S.shape))
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(delta == 0, 0.0, np.abs(delta) / (subject.tol.rtol * size))
        out.ratio = float(np.max(r)) if r.size else 0.0
    there = [c for c in report.checks if c.witness == "backprop" and subject.is_step(c, site)]
    out.measured = max((c.result.max_rel / c.tol.rtol for c in there), default=0.0)
    bad = report.first_failure
    out.caught = bad is not None or bool(report.error)
    if bad is not None:
        out.first = f"{bad.column} {bad.layer} ({bad.witness})"
        out.right_step = subject.is_step(bad, site)
        same = [c for c in report.checks if c.part == bad.part and c.t == bad.t
                and c.layer == bad.layer and not c.ok]
        out.witnesses = "+".join(sorted({c.witness for c in same}))
        out.blame = _blame(report.verdict())
    elif report.error:
        out.first = f"error: {report.error[:60]}"
    if not out.caught:
        if not out.live:
            out.reason = noop_reason(fault, record.info, subject.dtype)
        elif out.ratio == 0:
            out.reason = ("no weight on its path: the changed entries meet only zero sums "
                          "(path magnitude 0)")
        elif out.ratio <= 1:
            out.reason = "effect below the check's tolerance (ratio ≤ 1)"
        elif out.ratio <= 1 + TIE:
            out.reason = (f"effect at the tolerance (ratio within {TIE:.0%} of 1): a tie, "
                          f"decided by the rounding of the two sides")
        else:
            out.reason = f"UNEXPLAINED: effect {out.ratio:.3g}× the tolerance, not caught"
    return out


def faults_for(epsilons, picks):
    for pick in picks:
        for cls in CLASSES:
            if cls == "scale":
                for eps in epsilons:
                    yield Fault(cls, eps, pick)
            elif cls in ("transpose", "stale"):
                if pick == picks[0]:          # a whole-block fault: no entry to pick
                    yield Fault(cls, None, "block")
            else:
                yield Fault(cls, None, pick)


def campaign(quick: bool, progress=True) -> list[Outcome]:
    epsilons = QUICK_EPSILONS if quick else EPSILONS
    picks = PICKS
    layer_names = ["Affine", "ReLU", "Softmax", "SoftmaxCrossEntropy"] if quick else None
    op_names = ["mul", "sin", "sum"] if quick else None
    outcomes = []
    subjects = [(s, dt) for dt in ("float64", "float32") for s in chain_subjects(dt, layer_names)]
    subjects += [(s, "float64") for s in graph_subjects(op_names)]
    for k, (subject, _) in enumerate(subjects, 1):
        start = time.perf_counter()
        for site in subject.sites:
            for fault in faults_for(epsilons, picks):
                outcomes.append(run_fault(subject, site, fault))
        if progress:
            print(f"[{k}/{len(subjects)}] {subject.dtype} {subject.name}: "
                  f"{time.perf_counter() - start:.1f} s", file=sys.stderr)
    return outcomes


# -- the tables ----------------------------------------------------------------------------------
def threshold(rows: list[Outcome]) -> float | None:
    """The smallest ε such that every live scale fault at ε' ≥ ε was caught at the right step."""
    found = None
    for eps in sorted({r.eps for r in rows if r.cls == "scale"}, reverse=True):
        at = [r for r in rows if r.cls == "scale" and r.eps == eps and r.live]
        if at and all(r.caught and r.right_step for r in at):
            found = eps
        else:
            break
    return found


def site_thresholds(rows: list[Outcome]) -> list[float | None]:
    """Per series of scale faults (one site, one picked entry) with a live fault: the smallest
    ε such that the faults at every ε' ≥ ε were caught at the right step (a no-op counts as
    not caught: a 1 + ε the dtype cannot hold is a fault it cannot show); None if not even
    the largest ε was."""
    series: dict[tuple, list[Outcome]] = {}
    for r in rows:
        if r.cls == "scale" and not r.skipped:
            series.setdefault((r.subject, r.site, r.pick), []).append(r)
    found = []
    for faults in series.values():
        if not any(r.live for r in faults):
            continue      # a zero entry: no ε plants anything (its misses say so)
        eps = None
        for r in sorted(faults, key=lambda r: -r.eps):
            if not (r.caught and r.right_step):
                break
            eps = r.eps
        found.append(eps)
    return found


def summary(outcomes: list[Outcome]) -> dict:
    result = {}
    for dtype in ("float64", "float32"):
        rows = [r for r in outcomes if r.dtype == dtype]
        planted = [r for r in rows if not r.skipped]
        live = [r for r in planted if r.live]
        big = [r for r in live if r.ratio > 10]
        at9 = [r for r in live if r.cls != "scale" or r.eps >= 1e-9]
        result[dtype] = {
            "planted": len(planted), "skipped": len(rows) - len(planted),
            "live": len(live), "caught": sum(r.caught for r in planted),
            "right_step": sum(r.caught and r.right_step for r in planted),
            "live_caught_at_1e-9": sum(r.caught and r.right_step for r in at9),
            "live_at_1e-9": len(at9),
            "over_10x": len(big), "over_10x_caught": sum(r.caught and r.right_step for r in big),
            "threshold": threshold(planted),
            "site_thresholds": site_thresholds(planted),
            "misses": dict(Counter(r.reason for r in planted if not r.caught)),
            "wrong_step": sum(r.caught and not r.right_step for r in planted),
            "unexplained": sum(r.reason.startswith("UNEXPLAINED") for r in planted),
        }
    return result


def _pct(a, b):
    return f"{a}/{b} ({100 * a / b:.1f} %)" if b else "–"


def tables(outcomes: list[Outcome]) -> str:
    s = summary(outcomes)
    lines = ["| dtype | faults planted | live (change ≠ 0) | caught | caught at the right step "
             "| live, ε ≥ 1e-9 (or not a scale fault): caught at the right step "
             "| effect > 10× tol: caught at the right step "
             "| ε threshold: every live scale fault caught | ε threshold per site: median, worst |",
             "|---|---|---|---|---|---|---|---|---|"]
    for dtype, d in s.items():
        th = f"ε ≥ {d['threshold']:.0e}" if d["threshold"] else "none"
        per_site = d["site_thresholds"]
        never = sum(e is None for e in per_site)
        known = sorted(e for e in per_site if e is not None)
        median = f"{known[len(known) // 2]:.0e}" if known else "–"
        worst = f"{known[-1]:.0e}" if known else "–"
        if never:
            worst = f"{worst} ({never} of {len(per_site)} sites not caught at any ε)"
        lines.append(f"| {dtype} | {d['planted']} (+{d['skipped']} skipped) | {d['live']} | "
                     f"{d['caught']} | {d['right_step']} | "
                     f"{_pct(d['live_caught_at_1e-9'], d['live_at_1e-9'])} | "
                     f"{_pct(d['over_10x_caught'], d['over_10x'])} | {th} | {median}, {worst} |")
    lines += ["", "Scale faults by ε (live faults caught at the right step / live; no-ops in "
              "brackets):", "", "| ε | float64 | float32 |", "|---|---|---|"]
    for eps in sorted({r.eps for r in outcomes if r.cls == "scale"}, reverse=True):
        cells = []
        for dtype in ("float64", "float32"):
            at = [r for r in outcomes if r.dtype == dtype and r.cls == "scale" and r.eps == eps
                  and not r.skipped]
            live = [r for r in at if r.live]
            cells.append(f"{sum(r.caught and r.right_step for r in live)}/{len(live)} "
                         f"[{len(at) - len(live)}]")
        lines.append(f"| {eps:.0e} | {cells[0]} | {cells[1]} |")
    lines += ["", "By fault class (both dtypes; caught at the right step / planted; blame in the "
              "verdict: partials / backward / undecided):", "",
              "| class | target | planted | caught, right step | blamed partials | blamed backward "
              "| undecided | skipped |", "|---|---|---|---|---|---|---|---|"]
    for cls in CLASSES:
        for target in ("partials", "backward"):
            rows = [r for r in outcomes if r.cls == cls and r.target == target]
            planted = [r for r in rows if not r.skipped]
            right = [r for r in planted if r.caught and r.right_step]
            blames = Counter(r.blame for r in right)
            lines.append(f"| {cls} | {target} | {len(planted)} | {len(right)} | "
                         f"{blames['partials']} | {blames['backward']} | {blames['undecided']} | "
                         f"{len(rows) - len(planted)} |")
    lines += ["", "Misses, by reason (measured per fault):", "",
              "| dtype | reason | count | examples |", "|---|---|---|---|"]
    for dtype in ("float64", "float32"):
        missed = [r for r in outcomes if r.dtype == dtype and not r.skipped and not r.caught]
        for reason, n in Counter(r.reason for r in missed).most_common():
            ex = [r for r in missed if r.reason == reason][:3]
            examples = "; ".join(f"{r.subject} {r.site} {r.fault} ({r.pick}"
                                 + (f", ratio {r.ratio:.2g}" if r.live else "") + ")" for r in ex)
            lines.append(f"| {dtype} | {reason} | {n} | {examples} |")
    wrong = [r for r in outcomes if r.caught and not r.right_step and not r.skipped]
    if wrong:
        lines += ["", "Caught at another step than the planted one:", ""]
        lines += [f"- {r.dtype} {r.subject} {r.site} {r.fault} ({r.pick}): expected {r.step}, "
                  f"first failure {r.first}; effect at its own step {r.ratio:.3g}× the "
                  f"tolerance" for r in wrong[:30]]
    skipped = Counter(f"{r.target} {r.cls}: {r.skipped}" for r in outcomes if r.skipped)
    if skipped:
        lines += ["", "Skipped (not plantable there):", ""]
        lines += [f"- {k} ({n}×)" for k, n in sorted(skipped.items())]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a few layer kinds and ops, ε ∈ {1e-3, 1e-9, 1e-12}")
    parser.add_argument("--json", help="write every outcome and the summary to this file")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    outcomes = campaign(args.quick, progress=not args.quiet)
    elapsed = time.perf_counter() - start
    print(f"Fault campaign ({'quick' if args.quick else 'full'}): {len(outcomes)} faults tried "
          f"in {elapsed:.0f} s\n")
    print(tables(outcomes))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"summary": summary(outcomes),
                       "outcomes": [dataclasses.asdict(r) for r in outcomes]}, fh, indent=1)


if __name__ == "__main__":
    main()
