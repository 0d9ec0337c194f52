"""Dropout and BatchNorm: dropout masks (per step, seeded by position) and their messages;
BatchNorm's coupled messages between samples, verified against backprop and numerical
differentiation, streamed under a budget, its running statistics and its evaluation mode."""

import numpy as np
import pytest

import msgpass as mp

# -- dropout --------------------------------------------------------------------------------


def test_dropout_masks_step_and_evaluate():
    layer = mp.Dropout(0.4, seed=2)
    x = np.ones((50, 40))
    first, _ = layer.forward(x)
    again, _ = layer.forward(x)
    np.testing.assert_array_equal(first, again)           # one mask per step
    assert set(np.unique(first)) == {0.0, 1 / 0.6}
    assert abs((first == 0).mean() - 0.4) < 0.03          # 2,000 draws
    layer.step += 1
    assert not np.array_equal(layer.forward(x)[0], first)
    layer.training = False
    np.testing.assert_array_equal(layer.forward(x)[0], x)


@pytest.mark.claim("C4.9")
def test_dropout_messages_are_the_mask_and_verify():
    net = mp.build_network("5-8-relu-dropout0.5-3-sce", seed=0)
    x, y = np.random.default_rng(0).standard_normal((4, 5)), np.array([0, 1, 2, 1])
    net.forward(x, y)
    trace = net.backward()
    keep = trace.partials[2].inputs.values
    # the partials are exactly 0 and 1/(1 − p) = 2, and the same mask scaled the forward
    # values (read from z, not from the partials): z3 = 0 where dropped, z2/(1 − p) where kept
    assert set(np.unique(keep)) == {0.0, 2.0}
    z2, z3 = trace.value(2), trace.value(3)
    np.testing.assert_array_equal(z3[keep == 0], 0)
    np.testing.assert_array_equal(z3[keep != 0], z2[keep != 0] * 2.0)
    np.testing.assert_array_equal(trace.block(3).values, keep * trace.incoming(4))
    dropped = keep == 0
    assert np.all(trace.block(3).values[dropped] == 0)     # every message it sends down is 0
    assert np.all(trace.incoming(3)[dropped] == 0)         # so the node below hears nothing
    assert np.all(trace.incoming(4)[dropped] != 0)         # but it still receives W·S
    assert mp.verify(net, x, y).ok


def test_dropouts_built_without_a_seed_draw_different_masks_by_their_position():
    """Unseeded Dropouts once took their seeds from a class counter, so a network's masks
    depended on how many Dropouts the process had built before; now the seed is the
    position, the same in every run and different for each Dropout of a network."""
    def masks():
        net = mp.Sequential([mp.Dropout(0.5), mp.Affine(30, 30, seed=0), mp.Dropout(0.5),
                             mp.MSELoss()])
        net.forward(np.ones((20, 30)), np.zeros((20, 30)))
        return [net.record.saved[t - 1].keep for t in (1, 3)]
    first, third = masks()
    assert not np.array_equal(first, third)
    mp.Dropout(0.5)                       # building another Dropout changes nothing
    again = masks()
    assert np.array_equal(again[0], first) and np.array_equal(again[1], third)
    dropped = np.mean(first == 0)
    assert 0.4 < dropped < 0.6


def test_a_network_runs_the_users_own_dropout_and_positions_never_meet_seeds():
    """The network once ran a copy of an unseeded Dropout (to give it a seed): the user's
    object then neither switched the network to eval mode nor counted its steps. And a
    position's masks must not be a seeded Dropout's (UNSEEDED + t once was seed 10001)."""
    drop = mp.Dropout(0.5)
    net = mp.Sequential([drop, mp.Affine(30, 30, seed=0), mp.MSELoss()])
    assert net.layers[0] is drop
    x, target = np.ones((20, 30)), np.zeros((20, 30))
    net.forward(x, target)
    first = net.record.saved[0].keep
    net.next_step()
    assert drop.step == 1
    drop.eval()
    net.forward(x, target)
    assert np.all(net.record.saved[0].keep == 1)
    drop.train()
    for seed in (mp.Dropout.UNSEEDED + 1, mp.Dropout.UNSEEDED, 1, 0):
        seeded = mp.Sequential([mp.Dropout(0.5, seed=seed), mp.Affine(30, 30, seed=0),
                                mp.MSELoss()])
        seeded.forward(x, target)
        drop.step = 0
        net.forward(x, target)
        assert np.array_equal(net.record.saved[0].keep, first)
        assert not np.array_equal(seeded.record.saved[0].keep, first)


def test_two_unseeded_dropout_nodes_of_a_graph_draw_different_masks():
    g = mp.Graph()
    x = g.input("x", np.ones((10, 20)))
    a, b = mp.Dropout(0.5)(x), mp.Dropout(0.5)(x)
    trace = g.backward(a + b)
    assert not np.array_equal(trace.value(a), trace.value(b))


# -- batch normalisation ----------------------------------------------------------------------

def bn_case(batch=6, seed=0):
    net = mp.build_network("5-7-batchnorm-relu-6-tanh-batchnorm-3-sce", seed=seed)
    rng = np.random.default_rng(seed)
    return net, rng.standard_normal((batch, 5)) * 2 + 1, rng.integers(0, 3, batch)


@pytest.mark.claim("C4.10")
def test_batchnorm_messages_run_between_samples():
    net, x, y = bn_case()
    net.forward(x, y)
    trace = net.backward()
    block = trace.block(2)                                  # BatchNorm(7), training mode
    assert block.kind == "coupled" and trace.message(2).shape == (7, 6, 6)
    J = trace.partials[1].inputs.values                     # (N, B, B)
    arriving = trace.incoming(3)                            # (B, N)
    np.testing.assert_array_equal(trace.message(2), J * arriving.T[:, None, :])
    np.testing.assert_allclose(trace.incoming(2), trace.message(2).sum(axis=2).T, rtol=1e-15)
    # off-diagonal sample pairs really talk: J_j[b, b'] = (γ/σ)(δ − 1/B − x̂_b x̂_b'/B)
    assert np.all(np.abs(J[:, 0, 1]) > 0)
    with pytest.raises(mp.StateError, match="couples the samples"):
        trace.sample_messages(2, 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.claim("C4.10")
def test_batchnorm_verifies_against_backprop_and_numerical_differentiation(seed):
    net, x, y = bn_case(batch=4 + seed, seed=seed)
    report = mp.verify(net, x, y)
    assert report.ok, str(report)
    assert any(c.witness == "numeric" and c.t == 2 and not c.result.inconclusive
               for c in report.checks)


def test_batchnorm_streams_under_a_budget_and_evaluates_elementwise():
    net, x, y = bn_case(batch=8)
    net.forward(x, y)
    full = net.backward()
    for budget in (8 * 8 * 8, 3 * 8 * 8 * 8):               # one feature, three features
        streamed = net.backward(keep="sums", budget_bytes=budget)
        for t in range(1, net.T + 2):
            np.testing.assert_array_equal(streamed.incoming(t), full.incoming(t))
    layer = net.layers[1]
    before = layer.running_mean.copy()
    mp.verify(net, x, y)                                    # many forwards: stats unchanged
    np.testing.assert_array_equal(layer.running_mean, before)
    net.next_step()                                         # the trainer's end of step
    np.testing.assert_allclose(layer.running_mean, 0.1 * (x @ net.params["1.W"]
                                                          + net.params["1.b"]).mean(axis=0))
    net.eval()
    net.forward(x, y)
    assert net.backward().block(2).kind == "diagonal"       # eval mode: elementwise
    assert mp.verify(net, x, y).ok


def test_batchnorm_running_variance_and_mp_verify():
    """This once failed because BatchNorm's partials used the rounded float 1/B, which an
    mp:30 network cannot verify; and nothing checked the running variance."""
    net, x, y = bn_case(batch=8)
    net.forward(x, y)
    net.next_step()
    z = x @ net.params["1.W"] + net.params["1.b"]
    np.testing.assert_allclose(net.layers[1].running_var, 0.9 + 0.1 * z.var(axis=0))
    pytest.importorskip("mpmath")
    net, x, y = bn_case(batch=3)
    assert mp.verify(net.astype("mp:30"), x, y).ok


def test_per_sample_gradients_are_refused_below_batchnorm():
    """This once failed because per_sample_grads() handed out the per-sample messages below a
    BatchNorm as per-sample gradients, though there every sample's loss reaches each one."""
    net = mp.build_network("3-4-batchnorm-relu-2-sce", seed=0)
    net.forward(np.random.default_rng(0).standard_normal((5, 3)), np.array([0, 1, 0, 1, 1]))
    trace = net.backward(per_sample=True)
    with pytest.raises(mp.StateError, match=r"layer 2 \(BatchNorm\(4\)\) couples.*1\.W"):
        trace.per_sample_grads()


def test_coupled_messages_are_oriented_receiver_first():
    """Review found mutations that survived the tests; a transposed coupled block (J[b', b]
    for J[b, b']) would have: BatchNorm's J is symmetric in b, b', so only an unsymmetric one
    tells the two orientations apart."""
    from msgpass.partials import Coupled
    values = np.random.default_rng(1).standard_normal((3, 4, 4))   # not symmetric in b, b'
    incoming = np.random.default_rng(2).standard_normal((4, 3))    # (B, N)
    J = Coupled(values)
    message = J.send(incoming, J.whole(4))
    for j in range(3):
        for b in range(4):
            for b2 in range(4):
                assert message[j, b, b2] == values[j, b, b2] * incoming[b2, j]
    np.testing.assert_allclose(J.receive(message),
                               np.einsum("jab,bj->aj", values, incoming), rtol=1e-14)


# -- L2 and L1 penalties as a loss term -----------------------------------------------------


@pytest.mark.claim("C4.11")
def test_a_penalty_is_a_verified_loss_term_and_what_the_optimizers_add():
    """theory/04: with W an input node of a graph, the gradient of the batch-mean squared error
    plus (λ/2)‖W‖² + κ‖W‖₁ is the data gradient plus λW + κ sign W — what the optimizers add
    for weight_decay = λ and l1 = κ — and verify proves it with every witness. One entry of W
    is exactly 0, where mp.abs and the optimizers both take the derivative 0."""
    rng = np.random.default_rng(4)
    B = 5
    X, T, W0 = rng.standard_normal((B, 3)), rng.standard_normal((B, 2)), rng.standard_normal((3, 2))
    W0[1, 0] = 0.0
    lam, kappa = 0.1, 0.01
    g = mp.Graph()
    W = g.input("W", W0[None])
    z = mp.matmul(g.input("x", X[:, None, :]), W)
    data = mp.sum(mp.square(z - T[:, None, :])) * 0.5
    loss = data + mp.sum(mp.square(W)) * (lam / 2) + mp.sum(mp.abs(W)) * kappa
    seed = np.full(B, 1 / B)
    grad = g.backward(loss, seed=seed).grad("W")[0]
    data_grad = X.T @ (X @ W0 - T) / B                       # written out by hand
    np.testing.assert_allclose(grad, data_grad + lam * W0 + kappa * np.sign(W0), rtol=1e-14,
                               atol=1e-15)
    assert grad[1, 0] == pytest.approx(data_grad[1, 0], abs=1e-15)   # |W|'(0) taken as 0
    for name in mp.optim.OPTIMIZERS:
        optimizer = mp.optim.OPTIMIZERS[name]({"W": W0.copy()}, lr=0.1, weight_decay=lam,
                                              l1=kappa)
        gap = np.abs(optimizer.regularised("W", data_grad) - grad).max()
        assert gap < 1e-15 * np.abs(grad).max(), name      # round-off, relative to the largest
    # the loss value is the penalised one, and verify proves the gradient (numerical witness
    # included: it differentiates this forward, penalty and all)
    value = np.asarray(g.backward(loss, seed=seed).value(loss)).reshape(-1).mean()
    expected = (0.5 * ((X @ W0 - T) ** 2).sum(axis=1).mean() + lam / 2 * (W0 ** 2).sum()
                + kappa * np.abs(W0).sum())
    assert value == pytest.approx(expected, rel=1e-14)
    report = mp.verify(g, loss, seed=seed)
    assert report.ok and report.verdict().startswith("VERIFIED")
    assert any(c.witness == "numeric" for c in report.checks)
