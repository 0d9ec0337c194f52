"""The witness interface, and the witnesses msgpass ships.

A witness computes, by means of its own, what the message sums and the gradients should be,
and the induction walk (verify.chain, verify.graph) compares each step with it. A witness

* has a ``name`` (the report's witness column, and how ``mp.verify(..., witnesses=[...])``
  chooses it) and a ``phrase`` (how the verdict names what it found equal);
* says what it is ``independent_of``: the code it shares nothing with, which is what its
  agreement proves;
* gives, for a chain or a graph, ``Evidence``: for each step (a layer index t, or a graph
  node) and each parameter the ``Expected`` values, with the tolerance, the entries it could
  estimate and a note; ``None`` where it has nothing to say. Each step is then reported as
  holds, fails or inconclusive (``Check.status``).

A new witness (PyTorch's autograd, forward messages) is a subclass of ``Witness`` passed to
``mp.verify(..., witnesses=[..., MyWitness()])`` or added to ``WITNESSES``.

Which witness uses which code
-----------------------------
=========  ======================================================================
backprop   each layer's (or op's) classic ``backward(dout)``: never the local partials nor
           the message code
numeric    central differences through the forward pass only: no derivative formula
layered    the graph's partials sent level by level through the chain recursion: another
           order of the same sums (it shares the partials and the message code)
pathsum    every path enumerated one by one and its partials multiplied: not the dynamic
           programme (it shares the partials)
forward    tangent messages pushed from each node up to the output (msgpass.graph.forward):
           not the reverse pass's sends, receives or order (it shares the partials)
torch      PyTorch's autograd on the exported model (an imported model's)
=========  ======================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from .. import numbers
from ..errors import StateError
from ..graph.forward import arithmetic_of, tangents_of
from ..witnesses import backprop, numeric_witness
from ..witnesses.graph import graph_backprop, graph_numeric
from ..witnesses.pathsum import DEFAULT_PATH_LIMIT, PathSumRefused, path_sum
from .compare import Tolerance
from .report import WitnessInfo

__all__ = ["Witness", "Evidence", "Expected", "ChainSubject", "GraphSubject", "WITNESSES",
           "CHAIN_WITNESSES", "GRAPH_WITNESSES", "BackpropWitness", "NumericWitness",
           "LayeredWitness", "PathSumWitness", "ForwardWitness", "numeric_note"]


@dataclass(frozen=True)
class Expected:
    """What a witness says one quantity should be: ``values`` (shaped like the message side's,
    after ``project``), the ``claim`` as the report prints it, the tolerance it is held to,
    the entries it could estimate (``include``, None for all) and a note. ``project``, if
    given, maps the message side first (e.g. S^t to a directional derivative ⟨S^t, v⟩, what
    forward messages compute); ``project_magnitude`` then maps the path magnitudes the same
    way (⟨M, |v|⟩: the size the projection's round-off scales with, so that a projection that
    cancels to 0 is judged by its terms, not by its own tiny value); without it, errors are
    judged against the largest projected value."""

    claim: str
    values: np.ndarray
    tol: Tolerance
    include: np.ndarray | None = None
    note: str = ""
    project: Callable[[np.ndarray], np.ndarray] | None = None
    project_magnitude: Callable[[np.ndarray], np.ndarray] | None = None

    def seen(self, found: np.ndarray) -> np.ndarray:
        """The message side as this expectation compares it."""
        return found if self.project is None else self.project(found)

    def scale(self, magnitude):
        """The path magnitudes to judge errors by (projected with the values, or None for a
        projection that cannot project them)."""
        if self.project is None:
            return magnitude
        if self.project_magnitude is None or magnitude is None:
            return None
        return self.project_magnitude(magnitude)


@dataclass
class Evidence:
    """A witness's answers for one subject, looked up by the walk: ``steps[key]`` for the sums
    arriving at layer t (a chain) or node v (a graph), ``params[key]`` for a parameter's
    gradient, ``loss`` for the forward pass; ``notes`` go into the report."""

    steps: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    loss: Expected | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ChainSubject:
    """What a witness may read of a chain: the network, the batch, the finished trace, the
    tolerances of its arithmetic (by role) and the options of verify."""

    net: object
    x: object
    target: object
    trace: object
    tolerances: dict[str, Tolerance]
    numeric_entries: int | None = None
    numeric_seed: int = 0


@dataclass(frozen=True)
class GraphSubject:
    """What a witness may read of a graph: the graph, its output and seed, the finished
    trace, the tolerances of its arithmetic and the options of verify."""

    graph: object
    output: str
    seed: object
    trace: object
    tolerances: dict[str, Tolerance]
    path_limit: int | None = None
    numeric_entries: int | None = None
    numeric_seed: int = 0
    progress: object = None     # None, a bool or callable(done, total): msgpass.witnesses.progress


class Witness:
    """Base of the witnesses (see the module docstring). Subclasses set the attributes and
    override ``chain`` and/or ``graph`` (naming them in ``subjects``).

    Attributes
    ----------
    name : str
        The report's witness column, and the name ``verify(witnesses=[...])`` takes.
    phrase : str
        How the verdict names what it found equal ("standard backprop's").
    independent_of : str
        The code it shares nothing with: what its agreement proves.
    noun : str
        How the report names the witness in a sentence ("the numerical witness").
    agreement : str
        What the messages agree with when it holds ("the numerical gradient").
    blame : str
        What to suspect when it alone disagrees with messages that another witness confirms
        ("the classic backward of this layer"); empty when that says nothing.
    independent_of_partials : bool
        It does not read the local partials, so its agreement or disagreement says whether
        they are right (the layered view and the path sum read them).
    needs_floats : bool
        It differentiates in floating point: not run for exact or mp numbers.
    subjects : tuple of str
        What it has evidence on: "chain", "graph".
    """

    name: str = ""
    phrase: str = ""
    independent_of: str = ""
    noun: str = ""
    agreement: str = ""
    blame: str = ""
    independent_of_partials: bool = True
    needs_floats: bool = False
    subjects: tuple[str, ...] = ("chain", "graph")

    def chain(self, subject: ChainSubject) -> Evidence | None:
        """Evidence on a chain, or None if this witness has nothing to say about chains."""
        return None

    def graph(self, subject: GraphSubject) -> Evidence | None:
        """Evidence on a graph, or None if this witness has nothing to say about graphs."""
        return None

    @property
    def info(self) -> WitnessInfo:
        return WitnessInfo(self.name, self.phrase, self.independent_of,
                           self.noun or f"the {self.name} witness", self.agreement or self.phrase,
                           self.blame, self.independent_of_partials)

    def __repr__(self) -> str:
        return f"<witness {self.name}>"


def numeric_note(straddles: np.ndarray, evaluated: np.ndarray | None = None,
                 graph: bool = False) -> str:
    """What the numerical witness left out of a comparison, and why."""
    notes = []
    if evaluated is not None and not evaluated.all():
        notes.append(f"sampled {int(evaluated.sum())} of {evaluated.size}")
    if straddles.any():
        why = ("stencil straddles a kink or pole, leaves the domain, or the function is not "
               "smooth at the step's scale" if graph else "stencil straddles a kink")
        notes.append(f"{int(straddles.sum())} left out: {why}")
    return "; ".join(notes)


class BackpropWitness(Witness):
    name, phrase = "backprop", "standard backprop's"
    independent_of = ("the local partials and the message code (each layer's or op's classic "
                      "backward(dout), chained)")
    noun, agreement = "the backprop witness", "standard backprop"
    blame = "the classic backward of this layer"

    def chain(self, s):
        ref, tol = backprop(s.net, s.x, s.target), s.tolerances["backprop"]
        return Evidence(
            loss=Expected("L equals backprop's forward L", ref.loss, tol),
            steps={t: Expected(f"S^{t} = ∂L/∂z^{t - 1} (backprop)",   # flat, as the pass's
                               ref.incoming(t).reshape(s.trace.batch, -1), tol)
                   for t in range(1, s.trace.T + 1)},
            params={key: Expected(f"∂L/∂{key} (backprop)", grad, tol)
                    for key, grad in ref.grads.items()})

    def graph(self, s):
        ref, tol = graph_backprop(s.graph, s.output, seed=s.seed), s.tolerances["backprop"]
        return Evidence(
            steps={v: Expected(f"S_{v} = ∂F/∂{v} (backprop)", value, tol)
                   for v, value in ref.nodes.items()},
            params={key: Expected(f"∂F/∂{key} (backprop)", grad, tol)
                    for key, grad in ref.params.items()})


class NumericWitness(Witness):
    name, phrase = "numeric", "the numerical ones"
    independent_of = ("every derivative formula (central differences of the forward pass; a "
                      "bug in the forward itself is invisible to it)")
    noun, agreement = "the numerical witness", "the numerical gradient"
    needs_floats = True

    def chain(self, s):
        num = numeric_witness(s.net, s.x, s.target, max_entries=s.numeric_entries,
                              seed=s.numeric_seed)
        tails = s.tolerances["numeric"].with_atol(num.roundoff_tails)
        params = s.tolerances["numeric"].with_atol(num.roundoff_params)
        return Evidence(
            steps={t: Expected(f"S^{t} = ∂G_{t}/∂z^{t - 1} (numeric)", num.tails[t], tails,
                               num.tail_evaluated[t] & ~num.straddles[t],
                               numeric_note(num.straddles[t], num.tail_evaluated[t]))
                   for t in num.tails},
            params={key: Expected(f"∂L/∂{key} (numeric)", num.grads[key], params,
                                  num.evaluated[key] & ~num.straddles[key],
                                  numeric_note(num.straddles[key], num.evaluated[key]))
                    for key in num.evaluated})

    def graph(self, s):
        num = graph_numeric(s.graph, s.output, seed=s.seed, max_entries=s.numeric_entries,
                            sample_seed=s.numeric_seed, progress=s.progress)

        def expected(claim, key, value):
            # each entry against its own round-off: a sample's total, or F's (witnesses.graph)
            tol = s.tolerances["numeric"].with_atol(num.roundoffs[key])
            return Expected(claim, value, tol, num.evaluated[key] & ~num.straddles[key],
                            numeric_note(num.straddles[key], num.evaluated[key], graph=True))
        return Evidence(
            steps={v: expected(f"S_{v} = ∂F/∂{v} (numeric tail)", v, value)
                   for v, value in num.nodes.items()},
            params={key: expected(f"∂F/∂{key} (numeric)", key, value)
                    for key, value in num.params.items()},
            notes=num.notes)


class LayeredWitness(Witness):
    name, phrase = "layered", "the layered view's"
    independent_of = ("the graph pass's order (the chain recursion over levels; it shares the "
                      "partials and the message code)")
    noun, agreement = "the layered view", "the layered view"
    independent_of_partials = False
    subjects = ("graph",)

    def graph(self, s):
        tol = s.tolerances["backprop"]
        try:
            view = s.trace.layered
        except StateError as err:
            return Evidence(notes=[f"the layered view was not run: {err}"])
        return Evidence(steps={v: Expected(f"S_{v} = layered view", view.node_sum(v), tol)
                               for v in s.trace.order})


class PathSumWitness(Witness):
    name, phrase = "pathsum", "the path sums"
    independent_of = ("the dynamic programme (every path enumerated and its partials "
                      "multiplied; it shares the partials)")
    noun, agreement = "the path-sum witness", "the path sums"
    independent_of_partials = False
    subjects = ("graph",)

    def graph(self, s):
        try:
            paths = path_sum(s.trace, limit=s.path_limit or DEFAULT_PATH_LIMIT)
        except PathSumRefused as err:
            return Evidence(notes=[f"path sum: not enumerated: {err}"])
        tol = s.tolerances["backprop"]
        return Evidence(
            steps={v: Expected(f"S_{v} = sum over {paths.paths[v]:,} path(s)", value, tol)
                   for v, value in paths.nodes.items()},
            params={key: Expected(f"∂F/∂{key} (path sum)", value, tol)
                    for key, value in paths.params.items()},
            notes=["path sum: " + ", ".join(f"{n} {c:,} path(s)"
                                            for n, c in paths.paths.items())])


@dataclass(frozen=True)
class _Scaled(Expected):
    """An expectation judged against one size for the whole array (``scale``), not against
    path magnitudes."""

    scale_to: float = 0.0

    def __init__(self, claim, values, tol, *, scale: float):
        super().__init__(claim, values, tol)
        object.__setattr__(self, "scale_to", scale)

    def scale(self, magnitude):
        return np.full(np.shape(self.values), self.scale_to)


class TorchWitness(Witness):
    """PyTorch's autograd on the module a model was imported from, carrying msgpass's current
    weights (``model.to_torch()``), in float64: for models made by ``mp.from_torch``."""

    name, phrase = "torch", "PyTorch autograd's"
    independent_of = ("all of msgpass's derivative code and its forward (the original torch "
                      "module, run by PyTorch, with msgpass's weights copied in)")
    noun, agreement = "the torch witness", "PyTorch autograd"
    blame = "the import of this layer, or msgpass's forward or partials of it"
    needs_floats = True

    @staticmethod
    def _expected(claim: str, values, tol: Tolerance, largest: float) -> Expected:
        """PyTorch computes the forward as well as the backward in its own order, so the
        forward's round-off enters too, which path magnitudes do not measure: each entry is
        judged against the largest of its array, and an array that is zero up to round-off
        (below 1e-8 of the model's largest gradient: a bias feeding a training-mode
        BatchNorm) against the model's largest gradient, at the backprop witness's rtol."""
        values = np.asarray(values, dtype=np.float64)
        own = float(np.max(np.abs(values))) if values.size else 0.0
        scale = own if own > 1e-8 * largest else largest
        per_array = Tolerance(tol.rtol, 1.0, 0.0, "PyTorch's own forward and backward "
                                                  "(float64, its order): relative to each "
                                                  "array's largest entry")
        return _Scaled(claim, values, per_array, scale=scale)

    @staticmethod
    def _run(model, x, target):
        import torch  # present: the model was imported from torch
        module = model.to_torch().double()
        x = torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
        out = module(x)
        loss = model.torch_loss(out, torch.as_tensor(np.asarray(target)))
        loss.backward()
        grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
        return float(loss.item()), x.grad.numpy(), grads

    def chain(self, s):
        if getattr(s.net, "to_torch", None) is None or getattr(s.net, "torch_loss", None) is None:
            return None
        x = s.net.prepare_input(s.x, dtype=np.float64)
        loss, dx, grads = self._run(s.net, x, s.target)
        tol = s.tolerances["backprop"]
        largest = max(float(np.max(np.abs(g))) for g in [dx, *grads.values()])
        return Evidence(
            loss=self._expected("L equals PyTorch's forward L", loss, tol, abs(loss)),
            steps={1: self._expected("S^1 = ∂L/∂x (torch)", dx.reshape(len(dx), -1), tol,
                                     largest)},
            params={key: self._expected(f"∂L/∂{key} (torch)", grad, tol, largest)
                    for key, grad in grads.items()})

    def graph(self, s):
        graph = s.graph
        if getattr(graph, "to_torch", None) is None or graph.torch_loss is None or \
                s.output != graph.sink() or not (isinstance(s.seed, str) and s.seed == "mean"):
            return None       # the witness speaks of an imported loss with seed "mean"
        inputs = [n for n in s.trace.order if graph.nodes[n].kind == "input"]
        if len(inputs) != 1:
            return None
        op = graph.nodes[s.output].op
        x = s.trace.value(inputs[0])          # in its own shape (an image stays one)
        _, dx, grads = self._run(graph, x, op.target)
        tol = s.tolerances["backprop"]
        largest = max(float(np.max(np.abs(g))) for g in [dx, *grads.values()])
        return Evidence(
            steps={inputs[0]: self._expected(f"S_{inputs[0]} = ∂F/∂{inputs[0]} (torch)",
                                             dx.reshape(len(dx), -1), tol, largest)},
            params={key: self._expected(f"∂F/∂{key} (torch)", grad, tol, largest)
                    for key, grad in grads.items()})


# The forward-mode witness (theory/07): reverse and forward accumulation sum the same paths in
# opposite orders, so ⟨S_v, d⟩ for a random direction d at v equals the tangent that forward
# messages push from v up to the output through the same partials, without the reverse pass.

def _direction(value: np.ndarray, reference: np.ndarray | None,
               rng: np.random.Generator) -> np.ndarray:
    """A random direction shaped like ``value``: small integers in (−8, 8) divided by 8, so
    it is exact in every arithmetic, in the graph's (``reference``, a value in its exact or
    mp arithmetic, or None for floats; a float input of an exact graph gets a Fraction)."""
    d = rng.integers(-8, 9, size=value.shape) / 8
    if reference is None:
        return d
    return numbers.convert_like(reference, np.vectorize(lambda v: Fraction(v).limit_denominator(8),
                                                    otypes=[object])(d), "direction")


class ForwardWitness(Witness):
    name, phrase = "forward", "the forward (tangent) messages'"
    independent_of = ("the reverse pass (tangent messages pushed from each node up to the "
                      "output; it shares the partials)")
    noun, agreement = "the forward-mode witness", "the forward messages"
    independent_of_partials = False
    subjects = ("graph",)

    def graph(self, s):
        trace, graph = s.trace, s.graph
        rng = np.random.default_rng(s.numeric_seed)
        seed = np.asarray(trace.seed).reshape(trace.values[trace.output].shape)
        tol = s.tolerances["backprop"]
        steps = {}
        reference = arithmetic_of(trace)
        for v in trace.order:
            if v == trace.output or graph.nodes[v].kind == "constant":
                continue
            d = _direction(trace.values[v], reference, rng)
            tangent, _ = tangents_of(graph, trace, {v: d}, keep_edges=False)
            along = np.sum(seed * tangent[trace.output])

            def project(S, d=d):
                return np.array([np.sum(np.asarray(S) * d)])

            def project_magnitude(M, d=d):
                # ⟨S, d⟩ sums terms S_n·d_n, each with round-off ~u·M_n·|d_n|: a sum that
                # cancels to ~0 (a softmax's, x/x's) is judged by Σ M_n·|d_n|, not by itself
                return np.array([np.sum(np.asarray(M, dtype=np.float64) *
                                        np.abs(np.asarray(d, dtype=np.float64)))])
            steps[v] = Expected(f"⟨S_{v}, d⟩ = forward tangent", np.array([along]), tol,
                                project=project, project_magnitude=project_magnitude)
        return Evidence(steps=steps, notes=["forward: one random direction d per node (entries "
                                            "k/8), pushed up to the output by tangent "
                                            "messages"])


WITNESSES: dict[str, Witness] = {w.name: w for w in (
    BackpropWitness(), NumericWitness(), LayeredWitness(), PathSumWitness(), TorchWitness(),
    ForwardWitness())}
CHAIN_WITNESSES = ("backprop", "numeric")                       # verify's defaults
GRAPH_WITNESSES = ("backprop", "numeric", "layered", "pathsum", "forward")


def chosen(witnesses, default: tuple[str, ...], numeric: bool, subject: str) -> list[Witness]:
    """The witnesses to run on a ``subject`` ("chain" or "graph"): names or Witness objects
    (default: ``default``), less the numerical one when ``numeric`` is False. A witness with
    nothing to say about the subject, or no witness at all, is refused."""
    if witnesses is None:
        witnesses = default
    if isinstance(witnesses, (str, Witness)):
        witnesses = [witnesses]
    out = []
    for w in witnesses:
        if isinstance(w, str):
            if w not in WITNESSES:
                raise ValueError(f"no witness named {w!r}; the witnesses are "
                                 f"{', '.join(WITNESSES)} (or pass a Witness)")
            w = WITNESSES[w]
        elif not isinstance(w, Witness):
            raise TypeError(f"a witness is a name ({', '.join(WITNESSES)}) or a "
                            f"msgpass.verification.Witness, got {w!r}")
        if subject not in w.subjects:
            raise ValueError(f"the {w.name} witness has nothing to say about a {subject}; "
                             f"choose from " + ", ".join(n for n, v in WITNESSES.items()
                                                          if subject in v.subjects))
        if (numeric or w.name != "numeric") and w not in out:
            out.append(w)
    if not out:
        raise ValueError(f"verify needs at least one witness to compare the message sums with "
                         f"(for a {subject}: " + ", ".join(n for n, v in WITNESSES.items()
                                                          if subject in v.subjects) + ")")
    return out
