"""Convolutional networks as messages (issue 17): the window, route and channel-coupled kinds,
the image layers, and their equivalence with standard backprop, the numerical gradient and a
dense Jacobian built here, by code of this file's own.

Tolerances: message sums and gradients against backprop ≤ 1e-12 relative to the largest
entry (float64: the same sums in another order, a few ulps per term over ≤ ~400 terms);
against the numerical gradient ≤ 1e-6 (the 5-point stencil at h = 2^-13, round-off ~1e-11
relative, truncation ~1e-17); messages against J·S exactly (one product each side).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import msgpass as mp
from msgpass.errors import ShapeError, StateError
from msgpass.partials import LocalPartials, Window
from msgpass.spec import build_network

RTOL_BACKPROP = 1e-12
RTOL_NUMERIC = 1e-6


def _rel(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


def _conv_net(draw):
    """A random small conv net: a conv (stride 1 or 2, padding 0 or 2, kernel 1, 3 or 5),
    ReLU or Tanh, optionally BatchNorm2d, a pool, another conv, then GAP or Flatten."""
    c_in = draw(st.integers(1, 3))
    kernel = draw(st.sampled_from([1, 3, 5, (3, 1), (2, 3)]))
    stride = draw(st.sampled_from([1, 2, (2, 1)]))
    padding = draw(st.sampled_from([0, 2, (1, 0)]))
    size = draw(st.integers(7, 10))
    c1 = draw(st.integers(1, 4))
    layers = [mp.Conv2d(c_in, c1, kernel, stride=stride, padding=padding,
                        seed=draw(st.integers(0, 99))),
              draw(st.sampled_from([mp.ReLU, mp.Tanh]))()]
    if draw(st.booleans()):
        layers.append(mp.BatchNorm2d(c1))
    shape = layers[0].output_shape((c_in, size, size))
    pool = draw(st.sampled_from(["max", "overlapping max", "avg", "none"]))
    if pool != "none" and min(shape[1:]) >= 3:
        layers.append({"max": mp.MaxPool2d(2), "avg": mp.AvgPool2d((2, 1), stride=1),
                       "overlapping max": mp.MaxPool2d(3, stride=2, padding=1)}[pool])
        shape = layers[-1].output_shape(shape)
    c2 = draw(st.integers(1, 3))
    k2 = 3 if min(shape[1:]) >= 3 else 1
    layers += [mp.Conv2d(shape[0], c2, k2, seed=draw(st.integers(0, 99))), mp.Sigmoid()]
    shape = layers[-2].output_shape(shape)
    if draw(st.booleans()):
        layers += [mp.GlobalAvgPool2d()]
        width = c2
    else:
        layers += [mp.Flatten()]
        width = int(np.prod(shape))
    layers += [mp.Affine(width, 3, seed=1), mp.SoftmaxCrossEntropy()]
    batch = draw(st.integers(2, 3))
    return mp.Sequential(layers, input_shape=(c_in, size, size)), batch


@st.composite
def conv_nets(draw):
    return _conv_net(draw)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_nets(), st.integers(0, 2**31 - 1), st.booleans())
def test_random_conv_nets_agree_with_backprop(made, seed, evaluation):
    net, batch = made
    if evaluation:
        net.eval()          # BatchNorm2d elementwise, from its running statistics
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *net.input_shape))
    y = rng.integers(0, 3, batch)
    net.forward(x, y)
    trace = net.backward()
    ref = mp.backprop(net, x, y)
    for t in range(1, net.T + 1):
        assert trace.incoming(t).shape == ref.incoming(t).shape
        assert _rel(trace.incoming(t), ref.incoming(t)) <= RTOL_BACKPROP, net.labels[t - 1]
    for key, grad in trace.grads.items():
        assert _rel(grad, ref.grads[key]) <= RTOL_BACKPROP, key


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_nets(), st.integers(0, 2**31 - 1))
def test_random_conv_nets_agree_with_the_numerical_gradient(made, seed):
    net, batch = made
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *net.input_shape))
    y = rng.integers(0, 3, batch)
    net.forward(x, y)
    trace = net.backward(keep="sums")
    num = mp.numeric_witness(net, x, y, tails=False)
    # relative to the largest entry, plus the estimate's own round-off (all-zero gradients,
    # a dead ReLU layer, are estimated as ±1e-14 noise)
    for key, grad in trace.grads.items():
        keep = ~num.straddles[key]        # a stencil over a max-pool tie or ReLU kink
        err = np.abs(grad[keep] - num.grads[key][keep])
        assert np.all(err <= RTOL_NUMERIC * np.max(np.abs(grad)) + num.roundoff_params), key
    keep = ~num.straddles["x"]                  # ∂L/∂x in the input's shape, as S^1
    assert num.grads["x"].shape == trace.incoming(1).shape == x.shape
    err = np.abs(trace.incoming(1)[keep] - num.grads["x"][keep])
    assert np.all(err <= RTOL_NUMERIC * np.max(np.abs(trace.incoming[1]))
                  + num.roundoff_tails)


def _jacobian_by_unit_inputs(layer, image):
    """J[n, n'] of a linear, bias-free layer, column by column of its forward on unit
    images: the test's own dense construction, which reads no partials."""
    size = int(np.prod(image))
    units = np.eye(size).reshape((size, *image))
    return layer.forward(units)[0].reshape(size, -1)


@pytest.mark.parametrize("stride, padding, kernel", [(1, 0, 3), (2, 2, 3), (1, 2, 5),
                                                     (2, 0, 1), ((2, 1), (1, 0), (3, 2))])
def test_every_message_is_its_tap_times_the_arriving_sum(stride, padding, kernel):
    layer = mp.Conv2d(2, 3, kernel, stride=stride, padding=padding, bias=False, seed=4)
    image = (2, 6, 7)
    J = _jacobian_by_unit_inputs(layer, image)
    net = mp.Sequential([layer, mp.Flatten(), mp.Affine(J.shape[1], 2, seed=2),
                         mp.MSELoss()], input_shape=image)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, *image))
    net.forward(x, rng.standard_normal((3, 2)))
    trace = net.backward()
    S = trace.incoming[2]                                 # (B, N_1), what arrived above
    dense = trace.message(1)                              # (B, N_0, N_1)
    np.testing.assert_array_equal(dense, J[None] * S[:, None, :])
    # no message off the edges: where J has no tap, the dense view is an exact zero, and a
    # tap that lands in the padding is not an edge
    edges = trace.block(1).partials.edges()
    assert not dense[:, ~edges].any()
    _, Ho, Wo = layer.output_shape(image)
    (sh, sw), (ph, pw), (kh, kw) = (np.broadcast_to(a, 2) for a in (stride, padding, kernel))
    inside = sum(1 for i in range(Ho) for j in range(Wo) for u in range(kh) for v in range(kw)
                 if 0 <= sh * i + u - ph < 6 and 0 <= sw * j + v - pw < 7)
    assert trace.block(1).partials.message_count(3) == 3 * 3 * 2 * inside
    if padding == 0:
        assert inside == Ho * Wo * kh * kw      # B·C_out·H'·W'·C_in·kh·kw
    assert int(edges.sum()) == int((J != 0).sum()) or np.any(layer.params["W"] == 0)
    # the structured block's meaning: [b, c', i', j', c, u, v] = W[c', c, u, v] · S_b[c',i',j']
    block = trace.block(1).values
    assert block.shape == (3, 3, Ho, Wo, 2, kh, kw)
    b, co, i, j, c, u, v = 1, 2, Ho - 1, 0, 1, kh - 1, 0
    if 0 <= sh * i + u - ph < 6 and 0 <= sw * j + v - pw < 7:
        assert block[b, co, i, j, c, u, v] == layer.params["W"][co, c, u, v] * \
            S[b, (co * Ho + i) * Wo + j]


def test_pool_messages_follow_their_own_dense_jacobian():
    rng = np.random.default_rng(3)
    image = (2, 6, 6)
    for pool in (mp.AvgPool2d(2), mp.AvgPool2d(3, stride=1)):
        J = _jacobian_by_unit_inputs(pool, image)
        net = mp.Sequential([pool, mp.Flatten(), mp.Affine(J.shape[1], 2, seed=2),
                             mp.MSELoss()], input_shape=image)
        x = rng.standard_normal((2, *image))
        net.forward(x, rng.standard_normal((2, 2)))
        trace = net.backward()
        np.testing.assert_array_equal(trace.message(1), J[None] * trace.incoming[2][:, None])
    # max pooling: one message per output unit, from the winner only
    pool = mp.MaxPool2d(2)
    net = mp.Sequential([pool, mp.Flatten(), mp.Affine(18, 2, seed=2), mp.MSELoss()],
                        input_shape=image)
    x = rng.standard_normal((2, *image))
    net.forward(x, rng.standard_normal((2, 2)))
    trace = net.backward()
    dense = trace.message(1)
    assert trace.block(1).partials.message_count(2) == 2 * 18
    assert ((dense != 0).sum(axis=1) == 1).all()          # every output unit: one edge
    for b in range(2):
        windows = x[b].reshape(2, 3, 2, 3, 2).transpose(0, 1, 3, 2, 4).reshape(2, 3, 3, 4)
        winner = windows.argmax(axis=-1)
        for n_out in range(18):
            c, rest = divmod(n_out, 9)
            i, j = divmod(rest, 3)
            u, v = divmod(int(winner[c, i, j]), 2)
            n_in = (c * 6 + 2 * i + u) * 6 + 2 * j + v
            assert dense[b, n_in, n_out] == trace.incoming[2][b, n_out]


def test_max_pool_ties_go_to_the_first_and_are_reported_as_kinks():
    x = np.zeros((1, 1, 2, 4))
    x[0, 0, :, 2:] = [[1.0, 3.0], [3.0, 2.0]]      # left window all zeros, right: a tie of 3s
    net = mp.Sequential([mp.MaxPool2d(2), mp.Flatten(), mp.Affine(2, 1, seed=0),
                         mp.MSELoss()], input_shape=(1, 2, 4))
    report = mp.verify(net, x, [[0.5]])
    assert report.ok
    points = {n for kink in report.kinks for _, n in kink.points}
    assert points == {0, 1, 4, 5, 3, 6}              # the four zeros and the two 3s
    net.forward(x, [[0.5]])
    trace = net.backward()
    dense = trace.message(1)[0]
    assert dense[0, 0] != 0 and dense[3, 1] != 0 and dense[6, 1] == 0   # first wins
    dx = mp.backprop(net, x, [[0.5]]).incoming(1)[0, 0]
    assert dx[0, 0] != 0 and dx[0, 3] != 0 and dx[1, 2] == 0


def test_exact_conv_net_equals_backprop_exactly():
    rng = np.random.default_rng(5)
    net = mp.Sequential([mp.Conv2d(1, 2, 3, padding=1, seed=1), mp.AvgPool2d(2),
                         mp.Conv2d(2, 2, 2, seed=2), mp.ReLU(), mp.MaxPool2d(2, stride=1),
                         mp.Flatten(), mp.Affine(2, 2, seed=3), mp.MSELoss()],
                        input_shape=(1, 6, 6))
    for layer in net.layers:                     # rational weights: multiples of 1/8
        for name, value in layer.params.items():
            layer.params[name] = np.round(value * 8) / 8
    exact = net.astype("exact")
    x = np.round(rng.standard_normal((2, 1, 6, 6)) * 4) / 4
    y = np.round(rng.standard_normal((2, 2)) * 4) / 4
    exact.forward(x, y)
    trace = exact.backward()
    ref = mp.backprop(exact, x, y)
    for t in range(1, exact.T + 1):
        S = trace.incoming(t)
        assert S.dtype == object and all(isinstance(v, (Fraction, int)) for v in S.flat)
        assert (S == ref.incoming(t)).all(), t
    for key, grad in trace.grads.items():
        assert (grad == ref.grads[key]).all(), key
    assert mp.verify(exact, x, y).ok


class PlantedTap(mp.Conv2d):
    """A Conv2d whose local partials carry one wrong tap (the classic backward is right)."""

    def local_partials(self, saved):
        local = super().local_partials(saved)
        W = local.inputs.weights.copy()
        W[1, 0, 2, 1] += 0.25
        return LocalPartials(Window(W, local.inputs.image, self.stride, self.padding),
                             local.params)


def test_verify_catches_a_planted_wrong_tap_at_its_step_and_names_it():
    rng = np.random.default_rng(0)
    net = mp.Sequential([mp.Conv2d(1, 2, 3, seed=1), mp.ReLU(),
                         PlantedTap(2, 3, 3, padding=1, seed=2), mp.Flatten(),
                         mp.Affine(75, 3, seed=3), mp.SoftmaxCrossEntropy()],
                        input_shape=(1, 7, 7))
    report = mp.verify(net, rng.standard_normal((4, 1, 7, 7)), [0, 1, 2, 0])
    assert not report.ok
    first = report.first_failure
    assert first.t == 3 and "Conv2d(2→3" in first.layer
    assert any("W[1, 0, 2, 1] by +0.25" in note for note in report.notes)
    # the same network with an honest layer 3 verifies
    net.layers[2].__class__ = mp.Conv2d
    assert mp.verify(net, rng.standard_normal((4, 1, 7, 7)), [0, 1, 2, 0]).ok


@pytest.mark.parametrize("layers, x, words", [
    ([mp.Conv2d(1, 2, 3)], np.zeros((2, 3, 8, 8)), "layer 1 (Conv2d(1→2, 3×3)): expects 1 "
                                                    "input channels, (B, 1, H, W)"),
    ([mp.Conv2d(1, 2, 5)], np.zeros((2, 1, 4, 4)), "layer 1 (Conv2d(1→2, 5×5)): expects "
                                                    "images of at least the kernel's 5×5"),
    ([mp.Conv2d(1, 2, 3)], np.zeros((2, 64)), "layer 1 (Conv2d(1→2, 3×3)): expects NCHW "
                                              "input (B, 1, H, W), got shape (2, 64)"),
    ([mp.MaxPool2d(2)], np.zeros((2, 1, 1, 5)), "layer 1 (MaxPool2d(2×2)): expects images"),
    ([mp.BatchNorm2d(3)], np.zeros((2, 2, 4, 4)), "layer 1 (BatchNorm2d(3)): expects NCHW "
                                                  "input (B, 3, H, W)"),
    ([mp.Conv2d(1, 2, 3)], np.zeros((2, 8, 8)), "layer 1 (Conv2d(1→2, 3×3)): expects NCHW "
                                                "input (B, 1, H, W), got shape (2, 8, 8)"),
    ([mp.Conv2d(1, 2, 3), mp.Softmax()], np.zeros((2, 1, 8, 8)),
     "layer 2 (Softmax): takes rows (B, N), got shape (2, 2, 6, 6): put Flatten"),
])
def test_bad_image_input_is_one_line_naming_the_layer_and_shape(layers, x, words):
    net = mp.Sequential([*layers, mp.Flatten(), mp.MSELoss()])
    with pytest.raises(ShapeError) as caught:
        net.forward(x, np.zeros((len(x), 72)))
    assert words in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("spec, words", [
    ("4-flatten-3-sce", "token 2 ('flatten') works on an image, but it receives a row of 4"),
    ("1x8x8-conv2k3-sce", "token 3 ('sce') is a layer on rows, but it receives an image 2x6x6"),
    ("1x4x4-conv2k3-logsoftmax-nll", "token 3 ('logsoftmax') is a layer on rows"),
    ("1x8x8-conv2k3s0-flatten-2-sce", "token 2 ('conv2k3s0'): Conv2d: stride must be a "
                                      "positive integer, got 0"),
    ("1x4x4-conv3k5-flatten-2-sce", "token 2 ('conv3k5'): expects images of at least the "
                                    "kernel's 5×5"),
])
def test_specs_refuse_tokens_that_do_not_fit_their_shape(spec, words):
    from msgpass.errors import SpecError
    with pytest.raises(SpecError) as caught:
        build_network(spec)
    assert words in str(caught.value)


def test_non_square_kernels_and_strides_follow_torchs_conventions():
    # a pool's stride defaults to its kernel, both rows and columns (torch's MaxPool2d((2, 3))
    # makes (1, 1, 6, 9) into (1, 1, 3, 3))
    x = np.arange(54.0).reshape(1, 1, 6, 9)
    out, _ = mp.MaxPool2d((2, 3)).forward(x)
    np.testing.assert_array_equal(out[0, 0], x[0, 0].reshape(3, 2, 3, 3).max(axis=(1, 3)))
    out, _ = mp.AvgPool2d((2, 3), stride=(2, 1)).forward(x)
    assert out.shape == (1, 1, 3, 7)
    np.testing.assert_array_equal(out[0, 0, 1, 2], x[0, 0, 2:4, 2:5].mean())
    conv = mp.Conv2d(1, 1, (3, 1), stride=(2, 1), padding=(1, 0), bias=False, seed=0)
    y, _ = conv.forward(x)
    w = conv.params["W"][0, 0, :, 0]
    padded = np.pad(x[0, 0], ((1, 1), (0, 0)))
    np.testing.assert_allclose(y[0, 0, 2, 4], w @ padded[4:7, 4], rtol=1e-15)
    assert y.shape == (1, 1, 3, 9)
    assert repr(conv) == "Conv2d(1→1, 3×1, stride=(2, 1), padding=(1, 0), no bias)"


def test_input_shape_is_checked_when_the_network_is_built_and_given():
    with pytest.raises(ShapeError, match=r"layer 3 \(Affine\(10→2\)\)"):
        mp.Sequential([mp.Conv2d(1, 2, 3), mp.Flatten(), mp.Affine(10, 2), mp.MSELoss()],
                      input_shape=(1, 5, 5))
    net = build_network("digits-cnn")
    with pytest.raises(ShapeError, match=r"must have shape \(B, 1, 8, 8\) \(or flat rows "
                                         r"\(B, 64\)\), got \(2, 63\)"):
        net.forward(np.zeros((2, 63)), [0, 1])
    # flat rows, images and one image all go in
    flat = np.random.default_rng(0).standard_normal((2, 64))
    assert net.forward(flat, [0, 1]) == net.forward(flat.reshape(2, 1, 8, 8), [0, 1])
    assert net.forward(flat[0].reshape(1, 8, 8), [0]) == net.forward(flat[:1], [0])


def test_trace_shapes_and_the_dense_refusal(monkeypatch):
    net = build_network("digits-cnn", seed=1)
    x = np.random.default_rng(0).standard_normal((3, 64))
    net.forward(x, [0, 1, 2])
    trace = net.backward()
    assert trace.value(0).shape == (3, 1, 8, 8) and trace.value(1).shape == (3, 8, 8, 8)
    assert trace.incoming(1).shape == (3, 1, 8, 8) and trace.incoming[1].shape == (3, 64)
    assert trace.incoming(6).shape == (3, 10) and trace.incoming(5).shape == (3, 128)
    assert trace.message(1).shape == (3, 64, 512)
    assert trace.block(1).values.shape == (3, 8, 8, 8, 1, 3, 3)
    import msgpass.messages as messages
    monkeypatch.setattr(messages, "available_memory", lambda: 10_000)
    with pytest.raises(StateError, match=r"layer 1's messages, \(3, 64, 512\), would take "
                                         r"786,432 bytes.*trace\.block\(t\)\.values"):
        trace.message(1)


def test_streaming_options_give_the_same_results():
    net = mp.Sequential([mp.Conv2d(2, 4, 3, padding=1, seed=1), mp.ReLU(),
                         mp.BatchNorm2d(4), mp.MaxPool2d(2), mp.Conv2d(4, 3, 3, seed=2),
                         mp.Flatten(), mp.Affine(12, 3, seed=3), mp.SoftmaxCrossEntropy()],
                        input_shape=(2, 8, 8))
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((5, 2, 8, 8)), [0, 1, 2, 0, 1]
    net.forward(x, y)
    whole = net.backward()
    # pieces far smaller than a sample: a conv block cut by output channels, the
    # channel-coupled block by bands of one channel's receivers. A conv layer cut into bands
    # adds each band's partial sums in turn: the same sums in another order, so equal to
    # a few ulps of the largest (float64: 1e-14 of it), not bitwise
    tiny = net.backward(budget_bytes=1 << 14, chunk_bytes=1 << 10)
    for t in range(1, net.T + 1):
        for a, b in ((whole.incoming[t], tiny.incoming[t]),
                     (np.asarray(whole.block(t).values), np.asarray(tiny.block(t).values))):
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-14 * np.max(np.abs(a)))
    # above the first conv layer cut into bands, bitwise
    for t in range(5, net.T + 1):
        np.testing.assert_array_equal(whole.incoming[t], tiny.incoming[t])
    some = net.backward(keep=[1, 5], keep_samples=[1, 3], per_sample=True)
    np.testing.assert_array_equal(some.block(1).values, whole.block(1).values[[1, 3]])
    np.testing.assert_array_equal(some.block(5).values, whole.block(5).values[[1, 3]])
    for key, grad in whole.grads.items():
        np.testing.assert_array_equal(grad, some.grads[key])
    # every sample's messages to a conv kernel sum to its gradient (in float64, in another
    # order: 1e-13 of the largest)
    each = net.backward(keep="sums", per_sample=True)
    for key in ("1.W", "5.W", "5.b"):
        np.testing.assert_allclose(each.param_messages[key].sum(axis=0), whole.grads[key],
                                   rtol=0, atol=1e-13 * np.max(np.abs(whole.grads[key])))
    net.eval()
    net.forward(x, y)
    evaluated = net.backward(per_sample=True, stats=True)
    assert _rel(evaluated.param_messages["1.W"].sum(axis=0), evaluated.grads["1.W"]) < 1e-13
    stats = evaluated.stats[1]
    assert stats.mean.shape == (4, 8, 8, 2, 3, 3)
    np.testing.assert_allclose(stats.mean, np.asarray(evaluated.block(1).values).mean(axis=0))


def test_float32_conv_net_verifies():
    net = build_network("digits-cnn", seed=3, dtype="float32")
    x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    report = mp.verify(net, x, [0, 1, 2, 3])
    assert report.ok, str(report)
    net.forward(x, [0, 1, 2, 3])
    assert net.backward().block(1).values.dtype == np.float32


def test_conv_layers_as_graph_nodes():
    rng = np.random.default_rng(4)
    g = mp.Graph()
    x = g.input("x", rng.standard_normal((3, 2, 6, 6)))
    h = mp.ReLU()(mp.Conv2d(2, 3, 3, padding=1, seed=1)(x))
    pooled = mp.MaxPool2d(2)(h + mp.Conv2d(2, 3, 1, seed=2)(x))      # a residual add
    out = mp.Affine(27, 2, seed=3)(mp.Flatten()(pooled))
    loss = mp.SoftmaxCrossEntropy()(out, target=[0, 1, 1])
    g.forward({"x": rng.standard_normal((3, 2, 6, 6))})
    trace = g.backward(seed="mean")
    assert trace.value(pooled).shape == (3, 3, 3, 3)
    report = mp.verify(g, loss, seed="mean")
    assert report.ok, str(report)


def test_conv_traces_through_dask_zarr_and_xarray(tmp_path):
    pytest.importorskip("dask")
    pytest.importorskip("xarray")
    pytest.importorskip("zarr")
    from msgpass.scale.labels import dense
    net = mp.Sequential([mp.Conv2d(2, 4, 3, padding=1, seed=1), mp.ReLU(), mp.BatchNorm2d(4),
                         mp.MaxPool2d(2), mp.AvgPool2d(2), mp.Conv2d(4, 3, 1, seed=2),
                         mp.GlobalAvgPool2d(), mp.Affine(3, 3, seed=3),
                         mp.SoftmaxCrossEntropy()], input_shape=(2, 8, 8)).eval()
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((5, 2, 8, 8)), [0, 1, 2, 0, 1]
    net.forward(x, y)
    memory = net.backward()
    lazy = net.backward(backend="dask", chunk_samples=2)
    net.backward(backend="dask", chunk_samples=2, store=tmp_path / "sent.zarr")
    memory.save(tmp_path / "saved.zarr")
    sent, saved = mp.load_trace(tmp_path / "sent.zarr"), mp.load_trace(tmp_path / "saved.zarr")
    labelled = memory.to_xarray()
    for t in range(1, net.T + 1):
        np.testing.assert_array_equal(lazy.incoming[t], memory.incoming[t])
        np.testing.assert_array_equal(np.asarray(lazy.block(t).values), memory.block(t).values)
        for ds in (sent, saved, labelled):
            np.testing.assert_array_equal(dense(ds, t).values, memory.message(t))
    assert labelled["message1"].dims[1:4] == ("out_channel1", "out_row1", "out_col1")
    image = labelled.incoming1.set_index(src1=["src1_channel", "src1_row", "src1_col"])
    np.testing.assert_array_equal(image.unstack("src1").values, memory.incoming(1))


def test_cli_verifies_and_trains_conv_specs(tmp_path, capsys, monkeypatch):
    from msgpass.cli import main
    monkeypatch.chdir(tmp_path)
    assert main(["verify", "--arch", "digits-cnn"]) == 0
    assert "VERIFIED" in capsys.readouterr().out
    assert main(["verify", "--arch", "lenet5", "--batch", "2", "--no-numeric"]) == 0
    assert "Conv2d(6→16, 5×5)" in capsys.readouterr().out
    assert main(["verify", "--arch", "1x8x8-conv4k3s2p1-tanh-avgpool2-gap-3-sce",
                 "--batch", "3"]) == 0
    assert main(["verify", "--arch", "1x8x8-120-sce"]) == 2
    assert "put 'flatten' (or 'gap') before it" in capsys.readouterr().err
    # the digits as 1×8×8 images: a small conv net that trains in seconds
    assert main(["train", "--quiet", "--arch", "digits-cnn", "--lr", "3e-3", "--epochs", "10",
                 "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    accuracy = float(out.split("val acc ")[-1].split()[0])
    assert accuracy >= 0.95, out
    assert main(["train", "--quiet", "--arch", "lenet5", "--out", str(tmp_path / "r2")]) == 2
    assert "starts with 1x28x28" in capsys.readouterr().err


def test_feature_map_drawings_read_the_trace(tmp_path):
    from PIL import Image

    from msgpass.draw.feature_maps import (
        animate_feature_maps,
        draw_conv_fan,
        draw_feature_maps,
        draw_saliency,
        image_steps,
    )
    net = mp.Sequential([mp.Conv2d(1, 3, 3, padding=1, seed=1), mp.ReLU(), mp.MaxPool2d(2),
                         mp.Conv2d(3, 4, 3, seed=2), mp.Flatten(), mp.Affine(16, 3, seed=3),
                         mp.SoftmaxCrossEntropy()], input_shape=(1, 8, 8))
    x = np.random.default_rng(0).standard_normal((3, 1, 8, 8))
    net.forward(x, [0, 1, 2])
    trace = net.backward()
    assert image_steps(trace) == [4, 3, 1, 0]
    fig = draw_feature_maps(trace, 1)
    heat = [ax for ax in fig.axes if ax.images]
    assert len(heat) == 4 + 3 + 3 + 1               # one panel per channel of each row
    first = heat[-1].images[0].get_array()         # the last panel: the input saliency
    np.testing.assert_array_equal(first, trace.incoming(1)[1, 0])
    fan = draw_conv_fan(trace, 4, None, 0)
    assert "output unit" in fan._suptitle.get_text()
    assert len([ax for ax in fan.axes if ax.images]) == 3       # every input channel
    draw_saliency(trace, [0, 2])
    path = animate_feature_maps(trace, tmp_path / "maps.gif")
    with Image.open(path) as gif:
        assert gif.n_frames == len(image_steps(trace)) + 1
    with pytest.raises(StateError, match="not a convolution"):
        draw_conv_fan(trace, 3)
    mlp = build_network("4-3-relu-2-sce")
    mlp.forward(np.zeros((2, 4)), [0, 1])
    with pytest.raises(StateError, match="not an image"):
        draw_feature_maps(mlp.backward())


def test_mp_conv_net_verifies_in_its_precision():
    pytest.importorskip("mpmath")
    net = mp.Sequential([mp.Conv2d(1, 2, 3, padding=1, seed=1), mp.Tanh(), mp.AvgPool2d(2),
                         mp.MaxPool2d(2, padding=1), mp.Flatten(), mp.Affine(8, 2, seed=3),
                         mp.SoftmaxCrossEntropy()], input_shape=(1, 6, 6)).astype("mp:30")
    x = np.random.default_rng(0).standard_normal((2, 1, 6, 6))
    report = mp.verify(net, x, [0, 1])
    assert report.ok and report.dtype == "mp:30"
    net.forward(x, [0, 1])
    assert type(net.backward().incoming(1).flat[0]).__name__ == "mpf"


def test_graph_with_batchnorm2d_and_pools_verifies_with_every_witness():
    """A new user found: BatchNorm2d broke a graph's layered view, and the numerical tail
    of a node read by a pool was left out whole (its value reached the pool flat)."""
    rng = np.random.default_rng(0)
    g = mp.Graph()
    x = g.input("x", rng.standard_normal((3, 2, 4, 4)))
    out = mp.SoftmaxCrossEntropy()(mp.Affine(32, 3, seed=1)(mp.Flatten()(mp.BatchNorm2d(2)(x))),
                                   target=np.array([0, 1, 2]))
    assert mp.verify(g, out, seed="mean").ok
    g = mp.Graph()
    x = g.input("x", rng.standard_normal((3, 2, 8, 8)))
    h = mp.tanh(mp.Conv2d(2, 4, 3, padding=1, seed=0)(x))
    pooled = mp.GlobalAvgPool2d()(mp.AvgPool2d(2)(h))
    report = mp.verify(g, pooled)
    assert report.ok and not report.inconclusive, str(report)
    assert all(c.result.excluded == 0 for c in report.checks if c.witness == "numeric")


def test_float32_batchnorm2d_and_json_reports(capsys):
    from msgpass.cli import main
    assert main(["verify", "--arch", "1x8x8-conv4k3p1-batchnorm-relu-gap-3-sce", "--dtype",
                 "float32"]) == 0
    capsys.readouterr()
    assert main(["verify", "--arch", "digits-cnn", "--dtype", "float32", "--json"]) == 0
    import json
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_feature_map_drawings_refuse_what_they_cannot_draw():
    from msgpass.draw.feature_maps import draw_conv_fan, draw_feature_maps, draw_saliency
    g = mp.Graph()
    x = g.input("x", np.ones((2, 1, 4, 4)))
    y = mp.Conv2d(1, 2, 3, seed=0)(x)
    with pytest.raises(StateError, match="draw a Sequential's trace, got a GraphTrace"):
        draw_feature_maps(g.backward(y))
    net = build_network("digits-cnn")
    net.forward(np.zeros((2, 64)), [0, 1])
    trace = net.backward()
    with pytest.raises(ValueError, match="sample must be a sample index 0..1, got 5"):
        draw_saliency(trace, [0, 5])
    with pytest.raises(ValueError, match=r"unit must be \(channel, row, col\) of layer 1's "
                                         r"output \(8, 8, 8\), got \(8, 0, 0\)"):
        draw_conv_fan(trace, 1, (8, 0, 0))


def test_affine_without_bias_has_no_b_and_verifies():
    """nn.Linear(bias=False)'s counterpart, as Conv2d(bias=False)."""
    net = mp.Sequential([mp.Affine(4, 3, bias=False, seed=1), mp.ReLU(), mp.Affine(3, 2, seed=2),
                         mp.MSELoss()])
    assert list(net.params) == ["1.W", "3.W", "3.b"] and net.layers[0].b is None
    assert repr(net.layers[0]) == "Affine(4→3, no bias)"
    x = np.random.default_rng(0).standard_normal((5, 4))
    y = np.random.default_rng(1).standard_normal((5, 2))
    assert mp.verify(net, x, y).ok
    exact = net.astype("exact")
    exact.forward(x, y)
    trace = exact.backward()
    assert (trace.grads["1.W"] == mp.backprop(exact, x, y).grads["1.W"]).all()
    out, _ = net.layers[0].forward(x)
    np.testing.assert_array_equal(out, x @ net.params["1.W"])


@pytest.mark.parametrize("layer, x", [
    (mp.BatchNorm(3, momentum=0.9, unbiased_running_var=True),
     np.random.default_rng(0).standard_normal((5, 3))),
    (mp.BatchNorm2d(2, momentum=0.9, unbiased_running_var=True),
     np.random.default_rng(1).standard_normal((2, 2, 3, 4))),
])
def test_running_variance_can_fold_in_the_unbiased_batch_variance(layer, x):
    """PyTorch's convention (its momentum 0.1 is 0.9 here): the forward normalises with the
    biased batch variance, the running variance takes the unbiased one, n/(n − 1) times it."""
    _, saved = layer.forward(x)
    layer.next_step(saved)
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    unbiased = x.var(axis=axes, ddof=1)
    np.testing.assert_allclose(layer.running_var, 0.9 * 1.0 + 0.1 * unbiased, rtol=1e-15)
    np.testing.assert_allclose(layer.running_mean, 0.1 * x.mean(axis=axes), rtol=1e-15)
    biased = layer.__class__(layer.n)                       # the default: biased, as before
    biased.next_step(biased.forward(x)[1])
    np.testing.assert_allclose(biased.running_var, 0.9 + 0.1 * x.var(axis=axes), rtol=1e-15)
