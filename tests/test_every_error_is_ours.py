"""Every error is ours (issue 22): random compositions of every layer kind, random graphs of
every op and random bad inputs and call orders. Each call either works, and then its result is
finite and verifies (``report.ok``; an inconclusive witness is ok by its documentation), or it
raises a ``MsgpassError`` (or a TypeError / ValueError / KeyError / IndexError raised by a
``raise`` statement in msgpass itself: the documented kinds for an argument of the wrong type
or value, such as keep= or budget_bytes=, a missing name and an index out of range) whose
message names the layer, node, input or target at fault — never a bare numpy or Python error
from inside, and never a RuntimeWarning (the sign of a silent NaN: warnings are errors here).

The default hypothesis profile runs a few hundred examples; ``MSGPASS_HYPOTHESIS=long`` runs
thousands (tests/conftest.py).
"""

from __future__ import annotations

import re
import traceback
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

import msgpass as mp
from msgpass.graph.ops import LayerOp
from msgpass.training.data import Dataset

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

PACKAGE = Path(mp.__file__).resolve().parent
# the built-in kinds msgpass raises itself, each documented for one kind of misuse
OWN_BUILTINS = (TypeError, ValueError, KeyError, IndexError)
# twice the profile's examples: 200 by default, 4,000 with MSGPASS_HYPOTHESIS=long (conftest.py)
EXAMPLES = 2 * settings.default.max_examples
NUMERIC_ENTRIES = 6   # verify's numerical witness on a few entries only: this test is about errors
LAYER_NAMES = ("Affine", "Function", "Dropout", "BatchNorm", "ReLU", "Sigmoid", "Tanh",
               "Softmax", "LogSoftmax", "Conv2d", "MaxPool2d", "AvgPool2d", "GlobalAvgPool2d",
               "Flatten", "SoftmaxCrossEntropy", "NLLLoss", "MSELoss")
NAMED = re.compile(r"layer|node|input|target|label|value of|output|" + "|".join(LAYER_NAMES))


def assert_ours(err: BaseException, names=()) -> None:
    """``err`` is one msgpass raised on purpose, and its message names what is at fault."""
    frames = traceback.extract_tb(err.__traceback__)
    where = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    if isinstance(err, mp.MsgpassError):
        pass
    elif isinstance(err, OWN_BUILTINS):
        last = frames[-1]
        assert Path(last.filename).resolve().is_relative_to(PACKAGE) and \
            last.line.lstrip().startswith("raise"), f"a bare {type(err).__name__}:\n{where}"
    else:
        raise AssertionError(f"not a msgpass error: {type(err).__name__}\n{where}")
    text = str(err)
    assert NAMED.search(text) or any(n in text for n in names), \
        f"the message names no layer, node, input or target: {text!r}\n{where}"


def attempt(what: str, call, names=()):
    """(True, result) if ``call()`` works, else (False, the error), which must be ours.
    ``what`` labels the call in hypothesis's statistics (--hypothesis-show-statistics)."""
    try:
        result = call()
    except AssertionError:
        raise
    except Exception as err:   # noqa: BLE001 - every exception is judged by assert_ours
        assert_ours(err, names)
        event(f"{what}: {type(err).__name__}")
        return False, err
    event(f"{what}: works")
    return True, result


def assert_finite(value, what: str) -> None:
    arrays = value.values() if isinstance(value, dict) else [value]
    for a in arrays:
        a = np.asarray(a)
        if a.dtype != object:
            assert np.all(np.isfinite(a)), f"{what} is not finite but no error was raised"


def known_false_alarm(check, report) -> bool:
    """The one false alarm of verify this test found that is still open (pinned by a strict
    xfail test below; drop the exemption when it starts passing): the numerical witness's
    step is too coarse for a BatchNorm feature whose batch variance is near eps. Only where
    the backprop witness confirms the same node (it shares no code with the numerical one).
    (The forward witness's false alarm on ⟨S, d⟩ that cancels to 0, a softmax's or x / x's,
    was fixed: it is judged by Σ M_n·|d_n| now.)"""
    backprop = [c for c in report.checks if c.witness == "backprop" and c.layer == check.layer]
    confirmed = backprop and all(c.ok and not c.result.inconclusive for c in backprop)
    return check.witness == "numeric" and confirmed and any(
        name.startswith("BatchNorm") or ": BatchNorm" in name for name in report.network)


def assert_verifies(report) -> None:
    failed = [c for c in report.checks if not c.ok]
    assert not report.error and report.checks and \
        all(known_false_alarm(c, report) for c in failed), str(report)


# -- chains -----------------------------------------------------------------------------------

def smooth(n_in: int, n_out: int, seed: int):
    """A Function's f: tanh(x·A) + 0.1 x·A, smooth and bounded in slope, complex-step ready."""
    a = np.random.default_rng(seed).standard_normal((n_in, n_out)) / np.sqrt(n_in)
    return lambda x: np.tanh(x @ a) + 0.1 * (x @ a)


def off(draw, n: int) -> int:
    """Mostly ``n``; now and then a width that does not fit (a bad composition)."""
    return n if draw(st.integers(0, 11)) else max(1, n + draw(st.sampled_from([-1, 1, 2])))


@st.composite
def image_layers(draw, shape):
    """Image layers on (C, H, W): conv, pools, BatchNorm2d, activations; then Flatten (or a
    global average pool and Flatten) and the flat width."""
    c, h, w = shape
    layers = []
    for i in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["conv", "max", "avg", "bn2d", "relu", "tanh", "dropout"]))
        if kind == "conv":
            c_out, k = draw(st.integers(1, 3)), draw(st.integers(1, 3))
            stride, pad = draw(st.integers(1, 2)), draw(st.integers(0, 1))
            c_in = off(draw, c)
            layers.append(partial(mp.Conv2d, c_in, c_out, k, stride=stride, padding=pad,
                                  seed=i))
            c, h, w = c_out, (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        elif kind in ("max", "avg"):
            k, stride = draw(st.integers(1, 3)), draw(st.sampled_from([None, 1, 2]))
            s = stride or k
            if kind == "max":
                pad = draw(st.integers(0, 1))
                layers.append(partial(mp.MaxPool2d, k, stride=stride, padding=pad))
            else:
                pad = 0
                layers.append(partial(mp.AvgPool2d, k, stride=stride))
            h, w = (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1
        elif kind == "bn2d":
            layers.append(partial(mp.BatchNorm2d, off(draw, c)))
        elif kind == "dropout":
            layers.append(partial(mp.Dropout, draw(st.sampled_from([0.0, 0.3])), seed=i))
        else:
            layers.append(mp.ReLU if kind == "relu" else mp.Tanh)
    if draw(st.booleans()):
        layers.append(mp.GlobalAvgPool2d)
        h = w = 1
    if draw(st.integers(0, 9)):
        layers.append(mp.Flatten)
    return layers, c * max(h, 0) * max(w, 0)


@st.composite
def flat_layers(draw, width):
    layers = []
    function_first = draw(st.booleans())
    for i in range(draw(st.integers(0 if not function_first else 1, 4))):
        kind = "function" if i == 0 and function_first else draw(st.sampled_from(
            ["affine", "function", "dropout", "batchnorm", "relu", "sigmoid", "tanh",
             "softmax", "logsoftmax"]))
        if kind in ("affine", "function"):
            n_out = draw(st.integers(1, 5))
            n_in = off(draw, width)
            layers.append(partial(mp.Affine, n_in, n_out, seed=i) if kind == "affine" else
                          partial(mp.Function, smooth(n_in, n_out, i), n_in, n_out,
                                  name=f"f{i}"))
            width = n_out
        elif kind == "batchnorm":
            layers.append(partial(mp.BatchNorm, off(draw, width)))
        elif kind == "dropout":
            layers.append(partial(mp.Dropout, draw(st.sampled_from([0.0, 0.5])), seed=i))
        else:
            layers.append({"relu": mp.ReLU, "sigmoid": mp.Sigmoid, "tanh": mp.Tanh,
                           "softmax": mp.Softmax, "logsoftmax": mp.LogSoftmax}[kind])
    return layers, width


@st.composite
def chains(draw):
    """(makers of the layers, input shape per sample, output width before the loss, loss
    kind): the layers are made in the test, where their constructors may refuse."""
    image = draw(st.booleans())
    if image:
        shape = (draw(st.integers(1, 2)), draw(st.integers(1, 5)), draw(st.integers(1, 5)))
        layers, width = draw(image_layers(shape))
    else:
        shape = (draw(st.integers(1, 4)),)
        layers, width = [], shape[0]
    more, width = draw(flat_layers(width))
    loss = draw(st.sampled_from(["sce", "nll", "mse"]))
    layers = layers + more + [{"sce": mp.SoftmaxCrossEntropy, "nll": mp.NLLLoss,
                               "mse": mp.MSELoss}[loss]]
    return layers, shape, width, loss


BAD_X = ["none", "width", "ndim", "str", "complex", "object", "bool", "nan", "inf", "empty",
         "huge", "list", "scalar", "ragged"]
BAD_TARGET = ["none", "high", "negative", "fraction", "str", "length", "missing", "nan",
              "float-labels", "onehot-negative"]


def bad_input(kind: str, x: np.ndarray):
    if kind == "width":
        return np.concatenate([x.reshape(len(x), -1), np.ones((len(x), 1))], axis=1)
    if kind == "ndim":
        return x[..., None]
    if kind == "str":
        return x.astype(str)
    if kind == "complex":
        return x + 1j
    if kind == "object":
        return x.astype(object)
    if kind == "bool":
        return x > 0
    if kind in ("nan", "inf"):
        x = x.copy()
        x.reshape(-1)[-1] = np.nan if kind == "nan" else -np.inf
        return x
    if kind == "empty":
        return x[:0]
    if kind == "huge":
        return x * 1e300
    if kind == "list":
        return x.tolist()
    if kind == "scalar":
        return 1.5
    if kind == "ragged":
        return [[1.0, 2.0], [1.0]]
    return x


def bad_target(kind: str, target: np.ndarray, loss: str):
    if kind == "missing":
        return None
    if kind == "length":
        return target[:-1] if len(target) > 1 else np.concatenate([target, target])
    if kind == "str":
        return target.astype(str)
    if loss == "mse":
        if kind == "nan":
            t = target.astype(float)
            t.reshape(-1)[0] = np.nan
            return t
        return target if kind not in ("high", "negative") else target[:, :1] * 0 + 1e308
    if kind == "high":
        return target + 100
    if kind == "negative":
        return target - 100
    if kind in ("fraction", "float-labels"):
        return target + (0.5 if kind == "fraction" else 0.0)
    if kind == "nan":
        return np.where(target == target.max(), np.nan, target.astype(float))
    if kind == "onehot-negative":
        return -np.ones((len(target), int(target.max()) + 1))
    return target


def run_chain(makers, shape, width, loss, batch, x_kind, target_kind, order, seed):
    layers = []
    for make in makers:
        ok, layer = attempt("layer", make)
        if not ok:
            return
        layers.append(layer)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *shape))
    k = max(width, 1)
    target = rng.standard_normal((batch, k)) if loss == "mse" else rng.integers(0, k, batch)
    names = [layer.describe() for layer in layers]
    kw = {"input_shape": shape} if len(shape) == 3 else {}
    ok, net = attempt("Sequential", lambda: mp.Sequential(layers, **kw), names)
    if not ok:
        return
    if order == "backward-first":
        ok, err = attempt("backward first", net.backward, names)
        assert not ok and isinstance(err, mp.StateError), "backward before forward worked"
    if order == "predict-first":
        ok, out = attempt("predict first", lambda: net.predict(x), names)
        if ok:
            assert_finite(out, "predict")
    x, target = bad_input(x_kind, x), bad_target(target_kind, target, loss)
    if order == "verify-first":   # verify on a network never run
        ok, report = attempt("verify first", lambda: mp.verify(
            net, x, target, numeric_entries=NUMERIC_ENTRIES), names)
        if ok:
            assert_verifies(report)
        return
    ok, value = attempt("forward", lambda: net.forward(x, target), names)
    if not ok:
        return
    assert_finite(value, "the loss")
    ok, trace = attempt("backward", lambda: net.backward(keep=[net.T]) if order == "keep" else
                        net.backward(), names)
    if not ok:
        return
    assert_finite(trace.grads, "the gradients")
    for t in (1, net.T, net.T + 1, 0):
        if ok := attempt("incoming", lambda t=t: trace.incoming(t), names)[0]:
            assert 1 <= t <= net.T + 1
    if order == "misuse":
        misuse(net, trace, x, target, names)
        return
    if order == "train":
        data = Dataset(np.asarray(x, dtype=float).reshape(batch, -1), np.asarray(target), "d",
                       max(k, 1))
        ok, _ = attempt("train", lambda: mp.train(net, mp.optim.SGD(net.params, lr=0.01), data,
                                         batch_size=2), names)
        return
    ok, report = attempt("verify", lambda: mp.verify(
        net, x, target, numeric_entries=NUMERIC_ENTRIES), names)
    if ok:
        assert_verifies(report)


def misuse(net, trace, x, target, names) -> None:
    """Wrong arguments to every call a user makes after a good backward: each works or is
    refused by msgpass, naming the layer or the argument that is wrong."""
    first = next(iter(net.params), None)
    calls = [   # (what the message must name, the call)
        ("layer", lambda: trace.message(net.T + 3)),
        ("layer", lambda: trace.message(1.5)),
        ("layer", lambda: trace.block("1")),
        ("keep", lambda: net.backward(keep=[net.T + 5])),
        ("keep", lambda: net.backward(keep="some")),
        ("budget_bytes", lambda: net.backward(budget_bytes=0)),
        ("keep_samples", lambda: net.backward(keep_samples=[10**6])),
        ("backend", lambda: net.backward(backend="gpu")),
        ("stats", lambda: net.backward(stats="yes")),
        ("9.W", lambda: net.params["9.W"]),
        ("numeric_entries", lambda: mp.verify(net, x, target, numeric_entries=0)),
        ("seed", lambda: mp.verify(net, x, target, seed=1.0)),
        ("oracle", lambda: mp.verify(net, x, target, witnesses=["oracle"])),
        ("layer", lambda: mp.backprop(net, x, target)),
        ("float32", lambda: mp.verify(net.astype(np.float32), x, target,
                                      numeric_entries=NUMERIC_ENTRIES)),
    ]
    if first is not None:
        shape = net.params[first].shape
        calls.append((first, lambda: net.params.__setitem__(
            first, np.zeros(tuple(n + 1 for n in shape) or (2,)))))
        calls.append((first, lambda: net.params.__setitem__(first, np.full(shape, "a"))))
    for argument, call in calls:
        ok, result = attempt(f"misuse: {argument}", call, list(names) + [argument])
        if ok and argument == "float32":
            assert_verifies(result)


ORDERS = ["plain", "backward-first", "predict-first", "verify-first", "keep", "train",
          "misuse"]


# found here: an MSELoss network trained on regression targets died in evaluate with numpy's
# "operands could not be broadcast" (now a DataError: mp.train needs labels)
@example(case=([mp.MSELoss], (2,), 2, "mse"), batch=3, x_kind="none", target_kind="none",
         order="train", seed=0)
# found here: a float32 network given 1e300 raised numpy's RuntimeWarning "overflow in cast"
@example(case=([mp.SoftmaxCrossEntropy], (1,), 1, "sce"), batch=1, x_kind="huge",
         target_kind="none", order="misuse", seed=0)
@given(case=chains(), batch=st.integers(1, 4),
       x_kind=st.sampled_from(["none"] * len(BAD_X) + BAD_X),
       target_kind=st.sampled_from(["none"] * len(BAD_TARGET) + BAD_TARGET),
       order=st.sampled_from(ORDERS), seed=st.integers(0, 2**16))
@settings(max_examples=EXAMPLES)
def test_every_chain_call_works_and_verifies_or_raises_ours(case, batch, x_kind, target_kind,
                                                            order, seed):
    run_chain(*case, batch, x_kind, target_kind, order, seed)


# -- graphs -----------------------------------------------------------------------------------

UNARY = {
    "sin": mp.sin, "cos": mp.cos, "sqrt": mp.sqrt, "abs": mp.abs, "softplus": mp.softplus,
    "log1p": mp.log1p, "expm1": mp.expm1, "square": mp.square, "exp": mp.exp, "log": mp.log,
    "tanh": mp.tanh, "sigmoid": mp.sigmoid, "relu": mp.relu, "sum": mp.sum, "mean": mp.mean,
    "neg": lambda a: -a, "pow-const": lambda a: a ** 2, "rpow": lambda a: 2.0 ** a,
    "np.exp": np.exp, "scale": lambda a: 0.5 * a - 1.0, "rdiv": lambda a: 1.0 / a,
    "copy": lambda a: mp.copy(a, 2)[1],
    "affine": lambda a: mp.Affine(3, 3, seed=0)(a), "tanh-layer": lambda a: mp.Tanh()(a),
    "batchnorm": lambda a: mp.BatchNorm(3)(a), "dropout": lambda a: mp.Dropout(0.5, seed=1)(a),
    "function": lambda a: mp.Function(smooth(3, 3, 0), 3, 3)(a),
    "softmax": lambda a: mp.Softmax()(a),
}
BINARY = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b, "pow": lambda a, b: a ** b, "matmul": lambda a, b: a @ b,
    "minimum": mp.minimum, "maximum": mp.maximum,
    "where": lambda a, b: mp.where(a > 0, a, b),
}
LOSSES = ["none", "none", "sce", "mse"]


@st.composite
def graphs(draw):
    """A random graph of every op on a (B, 3) input, perhaps a shared (1, 1) input and a
    (B, 1) one; fan-out and skips; layer nodes whose widths may not fit; perhaps a loss."""
    g = mp.Graph()
    batch = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    nodes = [g.input("x", rng.standard_normal((batch, 3)))]
    for name, shape in (("s", (1, 1)), ("w", (batch, 1))):
        if draw(st.booleans()):
            nodes.append(g.input(name, rng.standard_normal(shape)))
    built = []
    for _ in range(draw(st.integers(1, 6))):
        pick = [nodes[draw(st.integers(0, len(nodes) - 1))] for _ in range(2)]
        kind = draw(st.sampled_from(sorted(UNARY) + sorted(BINARY)))
        built.append(kind)
        make = partial(UNARY[kind], pick[0]) if kind in UNARY else partial(BINARY[kind], *pick)
        ok, node = attempt(f"op {kind}", make, list(g.nodes))
        if ok:
            nodes.append(node)
    loss = draw(st.sampled_from(LOSSES))
    out = nodes[-1]
    if loss != "none":
        labels = rng.integers(0, 3, batch) if loss == "sce" else rng.standard_normal((batch, 3))
        layer = mp.SoftmaxCrossEntropy() if loss == "sce" else mp.MSELoss()
        ok, node = attempt("loss node", lambda: layer(out, target=labels), list(g.nodes))
        if ok:
            out = node
    return g, out, built


def run_graph(g, out, x_kind, order):
    names = list(g.nodes) + ["x"]
    if order == "backward-first":
        ok, _ = attempt("graph backward first", lambda: g.backward(), names)
    if order == "verify":
        ok, report = attempt("graph verify first", lambda: mp.verify(
            g, out, numeric_entries=NUMERIC_ENTRIES), names)
        if ok:
            assert_verifies(report)
        return
    if x_kind != "none":
        x = bad_input(x_kind, g._values["x"])
        ok, _ = attempt("graph forward", lambda: g.forward({"x": x}, output=out), names)
        if ok:
            ok, trace = attempt("graph backward after forward", lambda: g.backward(keep="sums"),
                               names)
            if ok:
                assert_finite(trace.grads, "the gradients")
        return
    ok, trace = attempt("graph backward", lambda: g.backward(out), names)
    if not ok:
        return
    for name in g.inputs():
        assert_finite(trace.grad(name), f"the gradient of {name}")
    attempt("grad of a missing node", lambda: trace.grad("no-such-node"), names)
    if order == "misuse":
        graph_misuse(g, out, trace, names)
        return
    if order == "jvp":
        ok, tangent = attempt("jvp", lambda: g.jvp(out, {"x": np.ones_like(g._values["x"])}),
                              names)
        if ok:
            assert_finite(tangent.output, "the tangent")
    elif order == "train":
        data = Dataset(np.random.default_rng(0).standard_normal((4, 3)), np.array([0, 1, 2, 1]),
                       "d", 3)
        ok, result = attempt("graph train", lambda: mp.train(
            g, mp.optim.SGD(g.params, lr=0.01), data, batch_size=2), names)
        # a graph whose output is a loss node trains on its one input; any other is refused
        trainable = isinstance(g.nodes[out.name].op, LayerOp) and \
            g.nodes[out.name].op.layer.is_loss and len(g.inputs()) == 1
        assert trainable if ok else not (trainable and isinstance(result, mp.StateError)), \
            result
    ok, report = attempt("graph verify",
                         lambda: mp.verify(g, out, numeric_entries=NUMERIC_ENTRIES), names)
    if ok:
        assert_verifies(report)


def graph_misuse(g, out, trace, names) -> None:
    """Wrong arguments to the calls of a graph after a good backward."""
    x = g._values["x"]
    calls = [   # (what the message must name besides a node, the call)
        ("seed", lambda: g.backward(out, seed=np.ones((7, 5)))),
        ("seed", lambda: g.backward(out, seed="ones")),
        ("seed", lambda: g.backward(out, seed=np.full(trace.value(out).shape, np.nan))),
        ("keep", lambda: g.backward(out, keep=["nowhere"])),
        ("keep", lambda: g.backward(out, keep=3)),
        ("nowhere", lambda: g.backward("nowhere")),
        ("output", lambda: g.backward(3)),
        ("edge", lambda: trace.message("x", "x")),
        ("nowhere", lambda: trace.value("nowhere")),
        ("tangent", lambda: g.jvp(out, {"x": np.ones((5, 7))})),
        ("tangent", lambda: g.jvp(out, {"x": x.astype(str)})),
        ("nowhere", lambda: g.jvp(out, {"nowhere": x})),
        ("mode", lambda: g.jacobian(out, "x", mode="sideways")),
        ("nowhere", lambda: g.jacobian(out, "nowhere")),
        ("jacobian", lambda: g.jacobian(out, "x")),
        ("vector", lambda: g.hvp(out, {"x": np.ones((5, 7))})),
        ("hvp", lambda: g.hvp(out, {"x": np.ones_like(x)})),
        ("seed", lambda: mp.verify(g, out, np.ones((7, 5)))),
        ("numeric_entries", lambda: mp.verify(g, out, numeric_entries=0)),
        ("input", lambda: g.set(out.name, x)),
        ("target", lambda: g.forward(target=np.zeros(len(x)))),
        ("nowhere", lambda: g.forward({"nowhere": x})),
        ("predict", lambda: g.predict(x)),
    ]
    for argument, call in calls:
        ok, result = attempt(f"misuse: {argument}", call, list(names) + [argument])
        if ok and argument in ("jacobian", "hvp"):
            assert_finite(result, argument)


GRAPH_ORDERS = ["plain", "backward-first", "verify", "jvp", "train", "misuse"]


@given(case=graphs(), x_kind=st.sampled_from(["none"] * len(BAD_X) + BAD_X),
       order=st.sampled_from(GRAPH_ORDERS))
@settings(max_examples=EXAMPLES)
def test_every_graph_call_works_and_verifies_or_raises_ours(case, x_kind, order):
    g, out, _ = case
    run_graph(g, out, x_kind, order)


# -- false alarms of verify found here (msgpass/verification, msgpass/witnesses: not ours) ------

@pytest.mark.xfail(strict=True, reason="numerical witness: step 2^-13 too coarse for a "
                   "BatchNorm feature whose batch variance (2e-6) is below eps (1e-5)")
def test_verify_holds_on_a_batchnorm_feature_of_variance_below_eps():
    """Found by the random chains (Conv2d with padding → BatchNorm on the flat map): the
    numerical witness fails S^1 at 2e-6 relative against rtol 1e-6, while backprop agrees."""
    net = mp.Sequential([mp.BatchNorm(1), mp.MSELoss()])
    x = np.array([[0.8909], [0.8892], [0.8942]])
    assert mp.verify(net, x, np.array([[1.0], [0.0], [0.5]])).ok


def test_verify_holds_on_a_softmax_output_whose_gradient_is_zero():
    """Found by the random graphs: Σ softmax(x) = 1, so every S_x is 0 up to round-off; the
    forward witness reported ⟨S_x, d⟩ 2e-17 from its tangent, relative error 0.43: FAIL. It
    now judges the projection by Σ M_n·|d_n|, the size of its terms."""
    g = mp.Graph()
    x = g.input("x", np.random.default_rng(0).standard_normal((1, 3)))
    assert mp.verify(g, mp.Softmax()(x)).ok


def test_verify_holds_on_x_over_x():
    """Found by the random graphs: ∂(x/x)/∂x = 0, the forward witness failed on round-off up
    to 1e-12 before it had a path-magnitude floor."""
    g = mp.Graph()
    x = g.input("x", np.random.default_rng(1).uniform(0.5, 2.0, (3, 4)))
    report = mp.verify(g, x / x)
    assert report.ok and all(c.ok for c in report.checks if c.witness == "forward"), str(report)
