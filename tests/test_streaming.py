"""Streaming under a byte budget: what is kept changes, what is computed does not."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import msgpass as mp
from msgpass import partials as partials_module
from msgpass.errors import StateError
from msgpass.testing import random_batch

SPEC = "7-9-tanh-6-relu-5-logsoftmax-nll"


@pytest.fixture
def run():
    net = mp.build_network(SPEC, seed=4)
    x, target = random_batch(net, 6, np.random.default_rng(4))
    net.forward(x, target)
    return net, x, target, net.backward()


def assert_same_sums_and_grads(a, b, T):
    for t in range(1, T + 2):
        np.testing.assert_array_equal(a.incoming(t), b.incoming(t))
    assert a.grads.keys() == b.grads.keys()
    for key in a.grads:
        np.testing.assert_array_equal(a.grads[key], b.grads[key])


@pytest.mark.parametrize("keep", ["sums", [1], [2, 4], [5]])
def test_what_is_kept_changes_nothing_else(run, keep):
    net, _, _, full = run
    partial = net.backward(keep=keep)
    assert_same_sums_and_grads(full, partial, net.T)
    kept = set() if keep == "sums" else set(keep)
    assert set(partial.blocks) == kept
    for t in kept:
        np.testing.assert_array_equal(partial.message(t), full.message(t))


# One receiver of one sample is the smallest piece: 9 float64 = 72 bytes for 7-9, so these
# budgets force pieces of a few receivers of one sample, a whole sample, and a few samples.
@pytest.mark.parametrize("budget", [72, 100, 9 * 8 * 7, 4 * 9 * 8 * 7, 1 << 26])
@pytest.mark.parametrize("keep", ["all", "sums"])
def test_the_budget_changes_no_bit(run, budget, keep):
    net, _, _, full = run
    streamed = net.backward(keep=keep, budget_bytes=budget)
    assert_same_sums_and_grads(full, streamed, net.T)
    if keep == "all":
        for t in range(1, net.T + 1):
            np.testing.assert_array_equal(streamed.message(t), full.message(t))


# chunk_bytes below one sample of the elementwise layers (9 or 6 float64) bands them too:
# one receiver of one sample is the smallest piece
@pytest.mark.parametrize("chunk", [1, 8, 24])
@pytest.mark.parametrize("keep_samples", [None, [1, 5]])
def test_banded_elementwise_layers_change_no_bit(run, chunk, keep_samples):
    net, _, _, full = run
    keep = "all" if keep_samples is None else [2, 4]
    streamed = net.backward(keep=keep, chunk_bytes=chunk, keep_samples=keep_samples)
    assert_same_sums_and_grads(full, streamed, net.T)
    for t in streamed.blocks:
        rows = slice(None) if keep_samples is None else keep_samples
        np.testing.assert_array_equal(streamed.message(t), full.message(t)[rows])


@pytest.fixture
def counted(monkeypatch):
    """Count every message the kinds of partials send (by wrapping their send methods)."""
    sent = {"messages": 0, "largest piece": 0}
    for kind in (partials_module.Shared, partials_module.Diagonal, partials_module.Dense):
        original = kind.send

        def send(self, incoming, piece, out=None, _original=original):
            message = _original(self, incoming, piece, out=out)
            sent["messages"] += message.size
            sent["largest piece"] = max(sent["largest piece"], message.nbytes)
            return message
        monkeypatch.setattr(kind, "send", send)
    return sent


@pytest.mark.parametrize("budget", [72, 500, 1 << 26])
def test_keeping_only_sums_still_sends_every_message(run, counted, budget):
    net, _, _, _ = run
    edges = sum(int(p.inputs.edges().sum()) for p in net.record.partials)
    net.backward(keep="sums", budget_bytes=budget)
    assert counted["messages"] == 6 * edges          # B = 6: one message per edge per sample
    assert counted["largest piece"] <= max(budget, 72)


def test_a_budget_below_one_receiver_is_refused_by_layer():
    net = mp.build_network("4-300-tanh-2-mse", seed=0)
    x, target = random_batch(net, 2, np.random.default_rng(0))
    net.forward(x, target)
    with pytest.raises(ValueError, match=r"layer 1 \(Affine\(4→300\)\).*300 messages"):
        net.backward(budget_bytes=1000)
    for bad in (0, -5, 2.5, True, "64MiB"):
        with pytest.raises(ValueError, match="budget_bytes must be a positive"):
            net.backward(budget_bytes=bad)
        with pytest.raises(ValueError, match="chunk_bytes must be a positive"):
            net.backward(chunk_bytes=bad)
    with pytest.raises(TypeError):           # keyword-only: an old positional chunk size
        net.backward("all", 1 << 22)         # must not silently become the budget


def test_a_too_small_budget_is_refused_before_any_work(counted):
    net = mp.build_network("4-300-tanh-2-mse", seed=0)   # layer 3 is fine, layer 1 is not
    x, target = random_batch(net, 2, np.random.default_rng(0))
    net.forward(x, target)
    with pytest.raises(ValueError, match="layer 1"):
        net.backward(budget_bytes=1000)
    assert counted["messages"] == 0


def test_keeping_some_samples(run):
    net, _, _, full = run
    some = net.backward(keep=[1, 2], keep_samples=[4, 0], budget_bytes=100)
    assert_same_sums_and_grads(full, some, net.T)
    for t in (1, 2):
        block = some.block(t)
        assert block.samples.tolist() == [0, 4]
        np.testing.assert_array_equal(some.message(t), full.message(t)[[0, 4]])
        np.testing.assert_array_equal(some.sample_messages(t, 4), full.message(t)[4])
    with pytest.raises(StateError, match="sample 3 of layer 1's messages was not kept"):
        some.sample_messages(1, 3)
    with pytest.raises(StateError, match="needs every sample"):
        some.sample_messages(1, "mean")
    for bad, match in [([6], r"samples \[6\].*0\.\.5"), ([], "non-empty"), (["a"], "indices"),
                       (3, "list of sample indices")]:
        with pytest.raises(ValueError, match=match):
            net.backward(keep_samples=bad)
    with pytest.raises(ValueError, match="keep='sums' keeps none"):
        net.backward(keep="sums", keep_samples=[0])


def test_sample_indices_are_checked_and_count_from_the_end(run):
    _, _, _, full = run
    np.testing.assert_array_equal(full.sample_messages(2, -1), full.message(2)[5])
    for bad in (6, -7):
        with pytest.raises(IndexError, match=f"sample {bad} is outside the batch of 6"):
            full.sample_messages(2, bad)
    with pytest.raises(IndexError, match="must be an integer"):
        full.sample_messages(2, 1.0)


def test_per_sample_parameter_messages(run):
    net, x, target, _ = run
    trace = net.backward(per_sample=True, keep="sums")
    assert set(trace.param_messages) == set(trace.grads)
    for key, messages in trace.param_messages.items():
        assert messages.shape == (6,) + trace.grads[key].shape
        # summed in another order than the gradient's matrix product: float64 round-off
        np.testing.assert_allclose(messages.sum(axis=0), trace.grads[key], rtol=1e-12,
                                   atol=1e-16)
    # for Affine, the message from output n' to W[i, n'] is x_b[i] · S_b[n']
    below, arriving = trace.value(0), trace.incoming(2)
    np.testing.assert_array_equal(trace.param_messages["1.W"],
                                  below[:, :, None] * arriving[:, None, :])
    # and B times it is each sample's own gradient, computed from that sample alone
    per_sample = trace.per_sample_grads()
    for b in range(6):
        net.forward(x[b:b + 1], target[b:b + 1])
        alone = net.backward(keep="sums").grads
        for key in alone:
            np.testing.assert_allclose(per_sample[key][b], alone[key], rtol=1e-12, atol=1e-15)


def test_per_sample_messages_follow_keep_samples(run):
    net, _, _, _ = run
    everyone = net.backward(keep="sums", per_sample=True)
    some = net.backward(keep="sums", per_sample=True, keep_samples=[3, 1])
    for key, messages in some.param_messages.items():
        np.testing.assert_array_equal(messages, everyone.param_messages[key][[1, 3]])


def test_per_sample_needs_asking(run):
    _, _, _, trace = run
    with pytest.raises(StateError, match="per_sample=True"):
        trace.per_sample_grads()


def test_float32_streams_in_float32():
    net = mp.build_network("5-8-sigmoid-3-sce", seed=1, dtype=np.float32)
    x, target = random_batch(net, 4, np.random.default_rng(1))
    net.forward(x, target)
    trace = net.backward(keep="sums", per_sample=True, budget_bytes=64)
    whole = net.backward()
    assert_same_sums_and_grads(trace, whole, net.T)   # streaming changes no float32 bit
    assert all(s.dtype == np.float32 for s in trace.incoming.values())
    assert all(g.dtype == np.float32 for g in trace.grads.values())
    assert all(m.dtype == np.float32 for m in trace.param_messages.values())


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_keeping_sums_holds_memory_to_the_budget():
    """Peak resident memory of backward(keep="sums"), in a fresh process, for 1 GiB and then
    4 GiB of messages under a 1 MiB budget. chunk_bytes is set huge so that only the budget
    can keep a piece small (ignoring it would hold a 1 GiB layer at once). The growth must
    stay within what the pass returns (its node sums and gradients, counted exactly) plus
    the budget + 25 %, plus 4 MiB for the interpreter's own bookkeeping."""
    script = textwrap.dedent("""
        import sys, numpy as np, msgpass as mp
        from msgpass.testing import random_batch
        def kib(field):
            for line in open("/proc/self/status"):
                if line.startswith(field):
                    return int(line.split()[1])
        for batch in (128, 512):
            net = mp.build_network("1024-1024-relu-10-sce", seed=0)
            x, target = random_batch(net, batch, np.random.default_rng(0))
            net.forward(x, target)
            before = kib("VmRSS")
            open("/proc/self/clear_refs", "w").write("5")     # reset the high-water mark
            trace = net.backward(keep="sums", budget_bytes=1 << 20, chunk_bytes=1 << 40)
            grown = 1024 * (kib("VmHWM") - before)
            returned = sum(s.nbytes for s in trace.incoming.values()) + sum(
                g.nbytes for g in trace.grads.values())
            print(batch, grown, returned)
            del trace, net
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    for line in out.stdout.strip().splitlines():
        batch, grown, returned = map(int, line.split())
        allowed = returned + 1.25 * (1 << 20) + (4 << 20)
        assert grown <= allowed, f"B={batch}: grew {grown:,} bytes, allowed {allowed:,.0f}"


def test_backprop_without_the_input_gradient_gives_the_same_parameter_gradients(run):
    net, x, target, _ = run
    full = mp.backprop(net, x, target)
    lean = mp.backprop(net, x, target, input_grad=False)
    assert full.grads.keys() == lean.grads.keys()
    for key in full.grads:
        np.testing.assert_array_equal(lean.grads[key], full.grads[key])
    np.testing.assert_array_equal(lean.incoming(2), full.incoming(2))
    with pytest.raises(StateError, match="input_grad=False"):
        lean.incoming(1)
