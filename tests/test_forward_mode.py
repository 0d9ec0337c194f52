"""Forward-mode messages, Jacobians and Hessian-vector products (issue 19) against torch.func in
float64, on random graphs of the ops, and exact (==) on rational graphs.

Tolerance 1e-10 relative (the issue's bound): both sides evaluate the same float64 formulas in
different orders (and second derivatives in different algebraic forms), so they agree to some
hundreds of ulps at most on these graphs of depth ≤ 6.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import msgpass as mp
from msgpass.errors import MsgpassError, ShapeError

torch = pytest.importorskip("torch", reason="the torch.func comparisons need torch (test extra)")
from torch.func import grad, jacfwd, jacrev, jvp  # noqa: E402

RTOL = 1e-10

# (msgpass op, torch op) pairs; inputs are kept in safe domains by the builders below
UNARY = [
    (mp.sin, torch.sin), (mp.cos, torch.cos), (mp.tanh, torch.tanh),
    (mp.sigmoid, torch.sigmoid), (mp.softplus, torch.nn.functional.softplus),
    (mp.square, torch.square), (mp.expm1, lambda t: torch.expm1(t)),
    (lambda v: mp.sqrt(mp.square(v) + 1), lambda t: torch.sqrt(t * t + 1)),
    (lambda v: mp.log1p(mp.square(v)), lambda t: torch.log1p(t * t)),
    (lambda v: mp.exp(v * 0.5), lambda t: torch.exp(t * 0.5)),
]
BINARY = [
    (lambda a, b: a + b, lambda a, b: a + b), (lambda a, b: a - b, lambda a, b: a - b),
    (lambda a, b: a * b, lambda a, b: a * b),
    (lambda a, b: a / (mp.square(b) + 1), lambda a, b: a / (b * b + 1)),
    (lambda a, b: (mp.square(a) + 0.5) ** mp.sin(b), lambda a, b: (a * a + 0.5) ** torch.sin(b)),
    (mp.maximum, torch.maximum), (mp.minimum, torch.minimum),
]


def random_graph(seed: int, batch: int = 3, width: int = 4, depth: int = 5):
    """The same random expression of two inputs built twice: as a msgpass graph and as a
    torch function."""
    rng = np.random.default_rng(seed)
    X, Y = rng.normal(size=(batch, width)), rng.normal(size=(batch, width))
    steps = []
    for _ in range(depth):
        if rng.random() < 0.5:
            steps.append(("u", int(rng.integers(len(UNARY))), int(rng.integers(2))))
        else:
            steps.append(("b", int(rng.integers(len(BINARY))), int(rng.integers(2))))

    def build(x, y, unary, binary, reduce):
        pool = [x, y]
        for kind, k, which in steps:
            a, b = pool[-1 - which], pool[-2 + which] if len(pool) > 1 else pool[0]
            pool.append(unary[k](a) if kind == "u" else binary[k](a, b))
        return reduce(pool[-1]) + pool[-1] * pool[1]

    g = mp.Graph()
    f = build(g.input("x", X), g.input("y", Y), [u[0] for u in UNARY], [b[0] for b in BINARY],
              lambda v: mp.mean(v))

    def tf(x, y):
        return build(x, y, [u[1] for u in UNARY], [b[1] for b in BINARY],
                     lambda t: t.mean(1, keepdim=True))
    return g, f, tf, X, Y


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def tensors(*arrays):
    return [torch.tensor(a, dtype=torch.float64) for a in arrays]


@pytest.mark.parametrize("seed", range(8))
def test_jvp_equals_torch_func_jvp(seed):
    g, f, tf, X, Y = random_graph(seed)
    rng = np.random.default_rng(100 + seed)
    V, U = rng.normal(size=X.shape), rng.normal(size=Y.shape)
    trace = g.jvp(f, {"x": V, "y": U})
    _, expected = jvp(tf, tuple(tensors(X, Y)), tuple(tensors(V, U)))
    assert trace.output.shape == X.shape
    assert rel(trace.output, expected.numpy()) <= RTOL
    # each edge's dense messages are J[n, n']·ṫ_source[n], read off the dense partials, and
    # each computed node's tangent is the sum of what arrived on its edges (float64: the same
    # products, so 1e-15; the sums in another order, a few ulps of the largest term)
    arrived = {}
    for edge in trace.edges:
        J = edge.partials.dense()
        source = trace.tangents[edge.source]
        expected = J * np.broadcast_to(source, (len(J), source.shape[1]))[:, :, None]
        np.testing.assert_allclose(edge.dense(), expected, rtol=1e-15, atol=0)
        summed = edge.dense().sum(axis=1)
        arrived[edge.destination] = arrived.get(edge.destination, 0) + summed
    assert arrived
    for name, total in arrived.items():
        np.testing.assert_allclose(trace.tangents[name],
                                   np.broadcast_to(total, trace.tangents[name].shape),
                                   rtol=1e-13, atol=1e-15)
    # a tangent on x alone: the forward messages carry only x's direction
    only_x = g.jvp(f, {"x": V})
    _, expected_x = jvp(lambda x: tf(x, tensors(Y)[0]), (tensors(X)[0],), (tensors(V)[0],))
    assert rel(only_x.output, expected_x.numpy()) <= RTOL


@pytest.mark.parametrize("seed", range(6))
def test_jacobian_equals_jacrev_and_jacfwd_in_both_modes(seed):
    g, f, tf, X, Y = random_graph(seed, batch=2, width=3)
    tX, tY = tensors(X, Y)
    for wrt, arg in (("x", 0), ("y", 1)):
        expected = jacrev(tf, arg)(tX, tY).numpy()
        assert rel(jacfwd(tf, arg)(tX, tY).numpy(), expected) <= 1e-13   # torch agrees with itself
        for mode in ("reverse", "forward", "auto"):
            J = g.jacobian(f, wrt, mode=mode)
            assert J.shape == expected.shape
            assert rel(J, expected) <= RTOL
    both = g.jacobian(f)
    assert set(both) == {"x", "y"}


@pytest.mark.parametrize("seed", range(8))
def test_hvp_equals_forward_over_reverse_in_torch(seed):
    g, f, tf, X, Y = random_graph(seed)
    rng = np.random.default_rng(200 + seed)
    V, U = rng.normal(size=X.shape), rng.normal(size=Y.shape)
    W = rng.normal(size=X.shape)            # a seed other than ones: F = Σ W·f
    tX, tY, tV, tU, tW = tensors(X, Y, V, U, W)

    def F(x, y):
        return (tW * tf(x, y)).sum()
    _, expected = jvp(grad(F, argnums=(0, 1)), (tX, tY), (tV, tU))
    hv = g.hvp(f, {"x": V, "y": U}, seed=W)
    assert rel(hv["x"], expected[0].numpy()) <= RTOL
    assert rel(hv["y"], expected[1].numpy()) <= RTOL


def test_hvp_and_jacobian_of_a_matrix_product():
    rng = np.random.default_rng(7)
    A, B = rng.normal(size=(4, 3)), rng.normal(size=(3, 2))
    g = mp.Graph()
    f = mp.sum(mp.sin(g.input("a", A) @ g.input("b", B)))
    V, U = rng.normal(size=A.shape), rng.normal(size=B.shape)

    def tf(a, b):
        return torch.sin(a @ b).sum(1)
    tA, tB, tV, tU = tensors(A, B, V, U)
    _, expected = jvp(grad(lambda a, b: tf(a, b).sum(), argnums=(0, 1)), (tA, tB), (tV, tU))
    hv = g.hvp(f, {"a": V, "b": U})
    assert rel(hv["a"], expected[0].numpy()) <= RTOL and rel(hv["b"], expected[1].numpy()) <= RTOL
    assert rel(g.jacobian(f, "b"), jacrev(tf, 1)(tA, tB).numpy()) <= RTOL
    _, t = jvp(tf, (tA, tB), (tV, tU))
    assert rel(g.jvp(f, {"a": V, "b": U}).output, t.numpy()) <= RTOL


def test_exact_mode_gives_exact_jvp_jacobian_and_hvp():
    F = Fraction
    x = mp.as_numbers(np.array([[F(1, 3), F(-2, 5)]]), "exact")
    y = mp.as_numbers(np.array([[F(1, 2), F(3, 7)]]), "exact")
    g = mp.Graph()
    a, b = g.input("x", x), g.input("y", y)
    f = mp.sum(mp.square(a) * b + a / (b + 2) + mp.minimum(a, b) * a)
    v = mp.as_numbers(np.array([[F(1), F(-1, 2)]]), "exact")
    u = mp.as_numbers(np.array([[F(2, 3), F(1)]]), "exact")
    xs, ys, vs, us = x[0], y[0], v[0], u[0]
    # closed forms, written here by hand: f = Σ x²y + x/(y+2) + min(x, y)·x
    # (here x < y in both entries, so min(x, y)·x = x²)
    df_dx = [2 * xi * yi + 1 / (yi + 2) + 2 * xi for xi, yi in zip(xs, ys, strict=True)]
    df_dy = [xi * xi - xi / (yi + 2) ** 2 for xi, yi in zip(xs, ys, strict=True)]
    tangent = sum(dx * vi + dy * ui for dx, dy, vi, ui in zip(df_dx, df_dy, vs, us, strict=True))
    assert g.jvp(f, {"x": v, "y": u}).output == tangent
    J = g.jacobian(f, "x")
    assert list(J.reshape(-1)) == df_dx
    # H·v: ∂²f/∂x² = 2y + 2, ∂²f/∂x∂y = 2x − 1/(y+2)², ∂²f/∂y² = 2x/(y+2)³
    hx = [(2 * yi + 2) * vi + (2 * xi - 1 / (yi + 2) ** 2) * ui
          for xi, yi, vi, ui in zip(xs, ys, vs, us, strict=True)]
    hy = [(2 * xi - 1 / (yi + 2) ** 2) * vi + 2 * xi / (yi + 2) ** 3 * ui
          for xi, yi, vi, ui in zip(xs, ys, vs, us, strict=True)]
    hv = g.hvp(f, {"x": v, "y": u})
    assert list(hv["x"].reshape(-1)) == hx
    assert list(hv["y"].reshape(-1)) == hy


def test_float_inputs_constants_and_tangents_in_an_exact_graph_stay_exact():
    # a float input or constant joins an exact graph as floats; its zero tangent, a float
    # tangent given for it, and the forward witness's directions must stay Fractions, or one
    # 0.0 turns every Fraction it meets into a float
    F = Fraction
    g = mp.Graph()
    x = g.input("x", np.array([F(1, 3), F(-2, 3)], dtype=object))
    y = g.input("y", np.array([0.5, 0.25]))
    f = mp.sum(x * g.constant(0.5) + y * x)
    for tangents in ({"x": [1, 0]}, {"y": [0.5, 0.0]}, {"x": [1, 1], "y": [0.25, 1]}):
        out = g.jvp(f, tangents).output
        assert isinstance(out.reshape(-1)[0], F), tangents
    assert g.jvp(f, {"y": [0.5, 0.0]}).output == F(1, 3) * F(1, 2)
    assert all(isinstance(h, F) for h in g.hvp(f, {"y": [1.0, 0.0]})["x"])
    report = mp.verify(g, f)
    assert report.ok and report.verdict().startswith("VERIFIED EXACTLY"), str(report)


def test_tangents_are_checked_and_unsupported_second_order_is_named():
    g = mp.Graph()
    x = g.input("x", np.ones((2, 3)))
    f = mp.sum(mp.sin(x))
    with pytest.raises(ShapeError, match="tangent of 'x' has shape"):
        g.jvp(f, {"x": np.ones(4)})
    with pytest.raises(MsgpassError, match="not an input"):
        g.jvp(f, {f.inputs[0]: np.ones((2, 3))})
    h = mp.Graph()
    z = h.input("z", np.ones((2, 3)))
    out = mp.sum(mp.elementwise(np.arcsinh)(z))
    with pytest.raises(MsgpassError, match="arcsinh.*second"):
        h.hvp(out, {"z": np.ones((2, 3))})


def test_verify_has_the_forward_witness_and_it_catches_a_wrong_send(monkeypatch):
    """⟨S_v, d⟩ against the tangent pushed up from v: a fault in the reverse message code
    (every diagonal message scaled by 1 + 1e-6) makes those checks fail, while a correct pass
    holds them."""
    from msgpass.partials import Diagonal
    rng = np.random.default_rng(3)
    g = mp.Graph()
    x = g.input("x", rng.normal(size=(3, 4)))
    f = mp.sum(mp.sin(x) * mp.softplus(x))
    report = mp.verify(g, f, numeric=False)
    forward = [c for c in report.checks if c.witness == "forward"]
    assert forward and all(c.ok for c in forward)
    send = Diagonal.send

    def wrong(self, incoming, piece, out=None):
        return send(self, incoming, piece, out) * (1 + 1e-6)
    monkeypatch.setattr(Diagonal, "send", wrong)
    bad = mp.verify(g, f, numeric=False)
    failed = {c.layer for c in bad.checks if c.witness == "forward" and not c.ok}
    assert not bad.ok and "x" in failed


def test_tangents_pass_through_a_training_batchnorm2d_that_couples_the_samples():
    """A channel's (sample, position) members all hear from each other: the tangent at each
    member is Σ_m J_c[m, m']·ṫ[m] over the whole channel, as torch.func.jvp of the same batch
    statistics gives."""
    rng = np.random.default_rng(12)
    X, V = rng.standard_normal((3, 2, 4, 4)), rng.standard_normal((3, 2, 4, 4))
    g = mp.Graph()
    h = mp.sin(mp.BatchNorm2d(2)(g.input("x", X)))
    trace = g.jvp(h, {"x": V})

    def reference(t):
        mean = t.mean(dim=(0, 2, 3), keepdim=True)
        var = t.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        return torch.sin((t - mean) / torch.sqrt(var + 1e-5))
    _, expected = jvp(reference, (torch.tensor(X),), (torch.tensor(V),))
    assert rel(trace.output, expected.numpy()) <= RTOL
    assert trace.edges[0].dense().shape == (2, 48, 48)     # (C, B·P, B·P), one block a channel
    report = mp.verify(g, mp.sum(h), numeric=False)
    assert report.ok and any(c.witness == "forward" for c in report.checks)
