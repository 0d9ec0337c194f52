"""The composite-function ops (issue 19): value, gradient and messages against PyTorch autograd
in float64, the numerical witness, numpy ufuncs on nodes, kinks, exact and mp modes, custom
elementwise ops, and linear memory for elementwise graphs.

Tolerances: torch and msgpass evaluate the same float64 formulas, sometimes in another order
or another algebraic form (softplus as max(x, 0) + log1p(e^-|x|)), so values and gradients
agree to a few ulps: 1e-12 relative (the issue's bound) leaves a wide margin. The numerical
witness's five-point stencil at h = 2^-13 is accurate to ~1e-10 on these smooth functions:
1e-6 is the issue's bound for it.
"""

from __future__ import annotations

import tracemalloc
from fractions import Fraction

import numpy as np
import pytest

import msgpass as mp
from msgpass.errors import InputValueError, MsgpassError
from msgpass.witnesses.graph import graph_numeric

torch = pytest.importorskip("torch", reason="the PyTorch comparisons need torch (test extra)")

RTOL = 1e-12


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def points(seed, shape=(6, 5), low=-2.0, high=2.0):
    return np.random.default_rng(seed).uniform(low, high, size=shape)


# (name, msgpass op on nodes, torch op on tensors, input range)
UNARY = [
    ("sin", mp.sin, torch.sin, (-3, 3)),
    ("cos", mp.cos, torch.cos, (-3, 3)),
    ("sqrt", mp.sqrt, torch.sqrt, (0.1, 4)),
    ("abs", mp.abs, torch.abs, (-3, 3)),
    # torch's softplus returns x itself (slope 1) above its threshold, 20 by default, where
    # σ(x) = 1 − e^−x differs from 1 by up to 2e-9: compared with the formula everywhere
    ("softplus", mp.softplus, lambda t: torch.nn.functional.softplus(t, threshold=100),
     (-30, 30)),
    ("log1p", mp.log1p, torch.log1p, (-0.9, 5)),
    ("expm1", mp.expm1, torch.expm1, (-3, 3)),
    ("square", mp.square, torch.square, (-3, 3)),
]


def torch_grads(fn, arrays, seed):
    tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out = fn(*tensors)
    out.backward(torch.tensor(seed, dtype=torch.float64))
    return out.detach().numpy(), [t.grad.numpy() for t in tensors]


@pytest.mark.parametrize("name, op, top, bounds", UNARY, ids=[u[0] for u in UNARY])
def test_each_elementwise_op_equals_torch(name, op, top, bounds):
    x = points(1, low=bounds[0], high=bounds[1])
    seed = points(2)
    g = mp.Graph()
    node = g.input("x", x)
    out = op(node)
    trace = g.backward(out, seed=seed)
    value, (grad,) = torch_grads(top, [x], seed)
    assert rel(trace.value(out), value) <= RTOL
    assert rel(trace.grad("x"), grad) <= RTOL
    # the message on the edge x → op is J · S, entry by entry: the diagonal of torch's
    # per-entry derivative times the seed
    (edge,) = trace.edges
    assert edge.block.values.shape == x.shape            # diagonal: stored as (B, N)
    assert rel(edge.block.values, grad) <= RTOL          # one message per node = its sum
    numeric = graph_numeric(g, out, seed=seed)
    assert rel(numeric.nodes["x"], grad) <= 1e-6
    assert mp.verify(g, out, seed=seed).ok


BINARY = [
    ("minimum", mp.minimum, torch.minimum, (-2, 2), (-2, 2)),
    ("maximum", mp.maximum, torch.maximum, (-2, 2), (-2, 2)),
    ("pow", lambda a, b: a ** b, torch.pow, (0.2, 3), (-2, 2)),
    ("where", lambda a, b: mp.where(np.arange(5) % 2 == 0, a, b),
     lambda a, b: torch.where(torch.tensor(np.arange(5) % 2 == 0), a, b), (-2, 2), (-2, 2)),
    ("where-node", lambda a, b: mp.where(a > 0, a, b),
     lambda a, b: torch.where(a > 0, a, b), (-2, 2), (-2, 2)),
]


@pytest.mark.parametrize("name, op, top, ra, rb", BINARY, ids=[b[0] for b in BINARY])
def test_each_binary_op_equals_torch(name, op, top, ra, rb):
    a, b = points(3, low=ra[0], high=ra[1]), points(4, low=rb[0], high=rb[1])
    seed = points(5)
    g = mp.Graph()
    out = op(g.input("a", a), g.input("b", b))
    trace = g.backward(out, seed=seed)
    value, (ga, gb) = torch_grads(top, [a, b], seed)
    assert rel(trace.value(out), value) <= RTOL
    assert rel(trace.grad("a"), ga) <= RTOL
    assert rel(trace.grad("b"), gb) <= RTOL
    # the messages: each input's edges into the op (where-node reads a twice: as its
    # condition, with zero messages, and as a branch) carry J · S, which summed per entry is
    # torch's gradient of that input, entry by entry (both edges are diagonal, (B, N))
    for name_in, expected in (("a", ga), ("b", gb)):
        blocks = [e.block.values for e in trace.edges if e.source == name_in]
        assert blocks and all(v.shape == a.shape for v in blocks)
        assert rel(sum(blocks), expected) <= RTOL
    numeric = graph_numeric(g, out, seed=seed)
    assert rel(numeric.nodes["a"], ga) <= 1e-6 and rel(numeric.nodes["b"], gb) <= 1e-6
    assert mp.verify(g, out, seed=seed).ok


def test_reductions_equal_torch_and_keep_one_edge_per_entry():
    x = points(6, shape=(4, 7))
    g = mp.Graph()
    node = g.input("x", x)
    s, m = mp.sum(mp.sin(node)), mp.mean(node * node)
    total = s + m
    seed = points(7, shape=(4,))
    trace = g.backward(total, seed=seed)
    value, (grad,) = torch_grads(lambda t: torch.sin(t).sum(1) + (t * t).mean(1), [x], seed)
    assert trace.value(total).shape == (4,)
    assert rel(trace.value(total), value) <= RTOL
    assert rel(trace.grad("x"), grad) <= RTOL
    edges = {(e.source, e.destination): e.block for e in trace.edges}
    assert edges[(s.inputs[0], s.name)].values.shape == (4, 7, 1)   # one edge per entry
    # the messages into each reduction: torch's gradient of the reduced tensor, entry by entry
    t = torch.tensor(x, dtype=torch.float64)
    sin_t, sq_t = torch.sin(t).requires_grad_(), (t * t).requires_grad_()
    (sin_t.sum(1) + sq_t.mean(1)).backward(torch.tensor(seed))
    assert rel(edges[(s.inputs[0], s.name)].values[:, :, 0], sin_t.grad.numpy()) <= RTOL
    assert rel(edges[(m.inputs[0], m.name)].values[:, :, 0], sq_t.grad.numpy()) <= RTOL
    assert mp.verify(g, total, seed=seed).ok


def test_plain_matrix_product_is_the_cs231n_gate():
    rng = np.random.default_rng(8)
    W, X, dD = rng.normal(size=(5, 10)), rng.normal(size=(10, 3)), rng.normal(size=(5, 3))
    g = mp.Graph()
    D = g.input("W", W) @ g.input("X", X)
    trace = g.backward(D, seed=dD)
    value, (gW, gX) = torch_grads(torch.matmul, [W, X], dD)
    assert rel(trace.value(D), value) <= RTOL
    assert rel(trace.grad("W"), dD @ X.T) <= RTOL and rel(trace.grad("W"), gW) <= RTOL
    assert rel(trace.grad("X"), W.T @ dD) <= RTOL and rel(trace.grad("X"), gX) <= RTOL
    blocks = {e.source: e.block for e in trace.edges}
    # W[i, l] → D[i, j] carries X[l, j]·dD[i, j]; X[l, j] → D[i, j] carries W[i, l]·dD[i, j]
    assert np.allclose(blocks["W"].values, X[None] * dD[:, None, :], rtol=0, atol=0)
    assert np.allclose(blocks["X"].values, W.T[None] * dD.T[:, None, :], rtol=0, atol=0)
    assert mp.verify(g, D, seed=dD).ok


def test_per_sample_matrix_products_equal_torch():
    rng = np.random.default_rng(9)
    A, B = rng.normal(size=(4, 2, 3)), rng.normal(size=(4, 3, 5))
    seed = rng.normal(size=(4, 2, 5))
    g = mp.Graph()
    out = g.input("a", A) @ g.input("b", B)
    trace = g.backward(out, seed=seed)
    value, (ga, gb) = torch_grads(torch.matmul, [A, B], seed)
    assert rel(trace.value(out), value) <= RTOL
    assert rel(trace.grad("a"), ga) <= RTOL and rel(trace.grad("b"), gb) <= RTOL
    # the messages, sample by sample: J_b[n, n']·S_b[n'] with J_b torch's Jacobian of the
    # sample's product with respect to that factor (flattened: n' = (i, j), n = its entries)
    blocks = {e.source: e.block.partials.dense_messages(e.block.values) for e in trace.edges}
    S = seed.reshape(4, 10)
    for b in range(4):
        At, Bt = torch.tensor(A[b]), torch.tensor(B[b])
        Ja = torch.autograd.functional.jacobian(lambda u, Bt=Bt: u @ Bt, At).reshape(10, 6)
        Jb = torch.autograd.functional.jacobian(lambda v, At=At: At @ v, Bt).reshape(10, 15)
        assert rel(blocks["a"][b], Ja.numpy().T * S[b][None, :]) <= RTOL
        assert rel(blocks["b"][b], Jb.numpy().T * S[b][None, :]) <= RTOL
    assert mp.verify(g, out, seed=seed).ok


def test_numpy_ufuncs_dispatch_to_graph_ops():
    x = points(10)
    g = mp.Graph()
    node = g.input("x", x)
    out = np.exp(np.sin(node)) + np.maximum(node, 0.5) * np.sqrt(np.abs(node) + 1) \
        - np.ones(5) * np.log1p(np.square(node))
    trace = g.backward(out)
    expected = np.exp(np.sin(x)) + np.maximum(x, 0.5) * np.sqrt(np.abs(x) + 1) \
        - np.log1p(np.square(x))
    assert rel(trace.value(out), expected) <= RTOL
    assert mp.verify(g, out).ok


def test_an_unsupported_ufunc_lists_the_supported_ones():
    g = mp.Graph()
    node = g.input("x", 0.5)
    with pytest.raises(TypeError, match="np.arctan has no graph op.*np.sin"):
        np.arctan(node)


def test_softplus_at_800_is_finite_and_right():
    g = mp.Graph()
    x = g.input("x", np.array([800.0, -800.0, 0.0, 40.0]))
    out = mp.softplus(x)
    trace = g.backward(out)
    assert np.array_equal(trace.value(out), [800.0, 0.0, np.log(2.0), 40.0 + np.log1p(np.exp(-40))])
    # σ(800) = 1, σ(−800) = e^−800 underflows to 0, σ(0) = ½
    assert np.array_equal(trace.grad("x")[:3], [1.0, 0.0, 0.5])
    tensor = torch.tensor([800.0, -800.0, 0.0, 40.0], dtype=torch.float64, requires_grad=True)
    torch.nn.functional.softplus(tensor).sum().backward()
    assert rel(trace.grad("x"), tensor.grad.numpy()) <= RTOL


def test_kinks_are_reported_and_left_out_of_the_numerical_witness():
    g = mp.Graph()
    x = g.input("x", np.array([[0.0, 1.0, -2.0]]))
    y = g.input("y", np.array([[3.0, 1.0, 0.5]]))
    out = mp.abs(x) + mp.minimum(x, y)
    report = mp.verify(g, out)
    assert report.ok
    kinks = {k.layer: k for k in report.kinks}
    assert set(kinks) == {out.inputs[0], out.inputs[1]}            # abs at 0, the tie at 1
    assert kinks[out.inputs[0]].points == [(0, 0)]
    assert kinks[out.inputs[1]].points == [(0, 1)]
    assert "abs at 0" in kinks[out.inputs[0]].convention
    numeric = graph_numeric(g, out)
    assert numeric.straddles["x"][0, 0] and numeric.straddles["x"][0, 1]
    assert not numeric.straddles["x"][0, 2]


def test_exact_mode_keeps_rational_ops_exact():
    F = Fraction
    x = mp.as_numbers(np.array([[F(1, 3), F(-2, 5), F(0)]]), "exact")
    y = mp.as_numbers(np.array([[F(1, 2), F(3, 7), F(-1, 4)]]), "exact")
    g = mp.Graph()
    a, b = g.input("x", x), g.input("y", y)
    out = mp.sum(mp.square(a) * b + mp.abs(a) + mp.minimum(a, b) + mp.where(a > 0, a, b)) \
        + mp.mean(a * b)
    trace = g.backward(out)
    xs, ys = x[0], y[0]
    grad_x = [2 * xi * yi + (1 if xi > 0 else -1 if xi < 0 else 0)
              + (1 if xi < yi else F(1, 2) if xi == yi else 0)
              + (1 if xi > 0 else 0) + yi / 3 for xi, yi in zip(xs, ys, strict=True)]
    assert list(trace.grad("x").reshape(-1)) == grad_x
    assert all(isinstance(v, (F, int)) for v in trace.grad("y").reshape(-1))
    assert mp.verify(g, out).ok


def test_exact_matrix_product():
    F = Fraction
    W = mp.as_numbers(np.array([[F(1, 2), F(1, 3)], [F(-1), F(2, 5)]]), "exact")
    X = mp.as_numbers(np.array([[F(3), F(1, 7)], [F(-2, 3), F(1)]]), "exact")
    g = mp.Graph()
    D = g.input("W", W) @ g.input("X", X)
    trace = g.backward(D)
    ones = np.ones((2, 2), dtype=object)
    assert (trace.grad("W") == ones @ X.T).all() and (trace.grad("X") == W.T @ ones).all()


def test_transcendental_ops_refuse_exact_and_run_in_mp():
    pytest.importorskip("mpmath")
    g = mp.Graph()
    g.input("x", mp.as_numbers(np.array([0.5]), "exact"))
    with pytest.raises(MsgpassError, match="sin leaves the rational numbers"):
        g.backward(mp.sin(g["x"]))
    h = mp.Graph()
    x = h.input("x", mp.as_numbers(np.array([0.5, 2.0, -1.0]), "mp:40"))
    out = mp.sin(x) + mp.cos(x) + mp.softplus(x) + mp.expm1(x) + mp.log1p(mp.square(x)) \
        + mp.sqrt(mp.square(x) + 1) + mp.abs(x)
    trace = h.backward(out)
    xs = np.array([0.5, 2.0, -1.0])
    expected = (np.cos(xs) - np.sin(xs) + 1 / (1 + np.exp(-xs)) + np.exp(xs)
                + 2 * xs / (1 + xs**2) + xs / np.sqrt(xs**2 + 1) + np.sign(xs))
    assert rel(trace.grad("x").astype(float), expected) <= 1e-14
    assert mp.verify(h, out).ok


def test_domains_are_clear_errors_naming_the_node():
    g = mp.Graph()
    x = g.input("x", np.array([1.0, -1.0]))
    with pytest.raises(InputValueError, match="sqrt1.*sqrt needs x ≥ 0.*entry 1"):
        g.backward(mp.sqrt(x))
    with pytest.raises(InputValueError, match="log1p needs x > −1"):
        g.backward(mp.log1p(x - 1))
    with pytest.raises(InputValueError, match="a > 0"):
        g.backward(x ** g.input("y", 2.0))


def test_custom_elementwise_op_by_complex_step_and_given_derivative():
    x = points(11)
    g = mp.Graph()
    node = g.input("x", x)
    out = mp.elementwise(np.arcsinh)(node) + mp.elementwise(np.tanh, lambda v: 1 - np.tanh(v) ** 2,
                                                            name="mytanh")(node)
    trace = g.backward(out)
    assert rel(trace.grad("x"), 1 / np.sqrt(1 + x**2) + 1 / np.cosh(x) ** 2) <= RTOL
    assert mp.verify(g, out).ok
    # a wrong given derivative is caught, as a Function's wrong Jacobian is
    h = mp.Graph()
    bad = mp.elementwise(np.sin, lambda v: np.sin(v), name="badsin")(h.input("x", x))
    report = mp.verify(h, bad)
    assert not report.ok
    assert "badsin" in str(report) and "wrong" in str(report)


def test_any_layer_is_a_graph_node():
    """The documented way to use a layer, mp.Function included, as a node: layer(node)."""
    x = points(12, shape=(3, 4))
    g = mp.Graph()
    node = g.input("x", x)
    f = mp.Function(lambda v: np.sin(v) @ np.ones((4, 2)), 4, 2)
    out = mp.sum(mp.Affine(2, 3, seed=0)(f(node)))
    assert mp.verify(g, out).ok


def test_ten_elementwise_ops_on_20000_points_stay_linear_in_memory():
    x = np.random.default_rng(13).uniform(0.1, 1.0, size=(1, 20_000))
    g = mp.Graph()
    node = g.input("x", x)
    for op in (mp.sin, mp.cos, mp.softplus, mp.square, mp.expm1, mp.log1p, mp.abs,
               mp.sqrt, lambda v: mp.minimum(v, 0.9), lambda v: mp.where(v > 0.5, v, v * 2)):
        node = op(node)
    out = mp.sum(node)
    tracemalloc.start()
    try:
        trace = g.backward(out)
        edges = trace.edges
        report = mp.verify(g, out, numeric_entries=20)   # every witness; 20 sampled entries
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 15 = 11 + minimum's constant 0.9 + v*2's node + where's two more inputs (the node its
    # condition v > 0.5 reads, an edge of zeros, and the branch v*2)
    assert len(edges) == 15 and report.ok
    # a dense 20,000² block would be 3.2 GB; every block here is (1, 20,000) or (1, 20,000, 1)
    assert peak < 100 * 2**20, f"peak {peak / 2**20:.1f} MiB"


UNARY_OPS = ("sin", "cos", "sqrt", "abs", "softplus", "log1p", "expm1", "square")


@pytest.mark.parametrize("name", UNARY_OPS)
def test_the_backprop_witness_catches_a_wrong_local_partial_of_every_unary_op(name, monkeypatch):
    # the classic backward is written apart from the local partial (pullback, not slope), so
    # a wrong slope is caught by standard backprop itself, not only by the numerical witness
    x = np.random.default_rng(21).uniform(0.2, 1.5, size=(3, 4))
    g = mp.Graph()
    f = mp.sum(getattr(mp, name)(g.input("x", x)))
    assert mp.verify(g, f, witnesses=("backprop",)).ok
    op = type(g[f.inputs[0]].op)
    slope = op.slope
    monkeypatch.setattr(op, "slope", lambda self, x, y: slope(self, x, y) * 1.001)
    report = mp.verify(g, f, witnesses=("backprop",))
    assert not report.ok
    assert any(not c.ok and c.witness == "backprop" for c in report.checks)


def test_a_plain_product_with_one_inner_row_verifies():
    # (4, 1) @ (1, 3): b has one row, which once passed for a node shared by the batch in the
    # layered view (its messages were summed over the samples); the view now steps aside for
    # every contracted factor
    rng = np.random.default_rng(22)
    A, B = rng.normal(size=(4, 1)), rng.normal(size=(1, 3))
    g = mp.Graph()
    a, b = g.input("a", A), g.input("b", B)
    f = mp.sum(mp.sin(a @ b))
    report = mp.verify(g, f)
    assert report.ok, str(report)
    ta, tb = (torch.tensor(v, requires_grad=True) for v in (A, B))
    torch.sin(ta @ tb).sum().backward()
    trace = g.backward(f)
    assert np.allclose(trace.grad("a"), ta.grad.numpy(), rtol=1e-13, atol=0)
    assert np.allclose(trace.grad("b"), tb.grad.numpy(), rtol=1e-13, atol=0)


def test_a_per_sample_product_does_not_couple_the_samples():
    rng = np.random.default_rng(23)
    g = mp.Graph()
    a = g.input("a", rng.normal(size=(5, 2, 3)))
    b = g.input("b", rng.normal(size=(5, 3, 2)))
    f = mp.sum(a @ b)
    g.backward(f)
    assert not g[f.inputs[0]].op.couples_samples
    plain = mp.Graph()
    p = plain.input("a", rng.normal(size=(5, 3))) @ plain.input("b", rng.normal(size=(3, 2)))
    plain.backward(p)
    assert plain[p.name].op.couples_samples


def test_a_scalar_python_function_is_an_elementwise_op():
    import math
    rng = np.random.default_rng(24)
    x = rng.normal(size=(3, 4))
    g = mp.Graph()
    node = g.input("x", x)
    # math.erf takes one float, and no complex: its derivative must be given
    erf = mp.elementwise(math.erf, derivative=lambda v: 2 / math.sqrt(math.pi) * math.exp(-v * v))
    f = mp.sum(erf(node))
    trace = g.backward(f)
    tx = torch.tensor(x, requires_grad=True)
    torch.erf(tx).sum().backward()
    assert np.allclose(trace.grad("x"), tx.grad.numpy(), rtol=1e-14, atol=0)
    assert mp.verify(g, f).ok
    with pytest.raises(MsgpassError, match="derivative=df"):
        g2 = mp.Graph()
        g2.backward(mp.sum(mp.elementwise(math.erf)(g2.input("x", x))))

    # an `if` on the value: one number at a time, the complex step taken through it
    def leaky(v):
        return v if v.real > 0 else 0.1 * v
    g3 = mp.Graph()
    f3 = mp.sum(mp.elementwise(leaky)(g3.input("x", x)))
    # (the complex step gives Im(0.1·(x + ih))/h: 0.1 to an ulp)
    assert np.allclose(g3.backward(f3).grad("x"), np.where(x > 0, 1.0, 0.1), rtol=1e-15, atol=0)


def test_softplus_curvature_keeps_its_tail():
    # σ′(x) = e^(−x)/(1 + e^(−x))² is 4.2e-18 at x = 40, where σ(1 − σ) rounds to 0
    g = mp.Graph()
    f = mp.sum(mp.softplus(g.input("x", np.array([[40.0, -40.0, 0.5]]))))
    hv = g.hvp(f, {"x": np.ones((1, 3))})["x"]
    tx = torch.tensor([[40.0, -40.0, 0.5]], dtype=torch.float64)
    expected = torch.sigmoid(tx) * torch.sigmoid(-tx)
    assert np.allclose(hv, expected.numpy(), rtol=1e-14, atol=0)


def test_a_product_with_a_scalar_per_sample_is_refused_naming_the_node():
    """This once failed with a bare IndexError from inside MatMul: x @ x of two vectors is a
    scalar per sample, and a product with it, as in numpy, is not a matrix product (found by
    tests/test_every_error_is_ours.py)."""
    g = mp.Graph()
    x = g.input("x", np.ones((1, 3)))
    dot = x @ x
    assert g.backward(dot).value(dot).shape == (1,)
    with pytest.raises(mp.ShapeError, match=r"node 'matmul2' \(a @ b\).*matrices or vectors, "
                                            r"got per-sample shapes \(3,\) and \(\)"):
        g.backward(x @ dot)
