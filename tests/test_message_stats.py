"""Statistics of messages gathered while they are sent (issue 10): per-edge mean and |max|,
magnitude histograms. Checked against the kept messages with plain numpy, against the
structure of an Affine layer's messages, and across backends."""

import numpy as np
import pytest

import msgpass as mp
from msgpass.stats import MessageStats, statistics_wanted
from msgpass.testing import random_batch, random_spec


def forward(spec, batch, seed=0, dtype="float64"):
    net = mp.build_network(spec, seed=seed, dtype=dtype)
    x, target = random_batch(net, batch, np.random.default_rng(seed))
    net.forward(x, target)
    return net


def exponent_counts(values: np.ndarray) -> dict:
    """Messages per binary order of magnitude, by frexp (|x| = m·2^e, ½ ≤ m < 1, so
    2^(e−1) ≤ |x| < 2^e); everything below the smallest normal number under "zero"."""
    magnitude = np.abs(values).ravel()
    tiny = magnitude < np.finfo(values.dtype).tiny
    exponents = np.frexp(magnitude[~tiny])[1] - 1
    counts = dict(zip(*np.unique(exponents, return_counts=True), strict=True))
    counts = {int(e): int(c) for e, c in counts.items()}
    if tiny.any():
        counts["zero"] = int(tiny.sum())
    return counts


CASES = [("6-8-relu-5-tanh-3-sce", 9, 1 << 22), ("6-8-relu-5-tanh-3-sce", 9, 64),
         ("5-7-sigmoid-4-softmax-4-mse", 6, 100), ("10-12-relu-12-relu-3-sce", 17, 200)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("spec", "batch", "chunk_bytes"), CASES)
def test_statistics_are_those_of_the_kept_messages(spec, batch, chunk_bytes, dtype):
    # chunk_bytes of 64 and 100 bytes force bands of receivers and single-sample pieces
    net = forward(spec, batch, dtype=dtype)
    trace = net.backward(keep="all", stats=True, chunk_bytes=chunk_bytes)
    for t in range(1, net.T + 1):
        stats, values = trace.stats[t], trace.block(t).values   # diagonal: (B, N) edges
        assert stats.samples == batch
        assert stats.mean.shape == values.shape[1:]
        # the sum over B samples, in float64 either way, in another order: a few ulps of the
        # sum of magnitudes
        reference = values.astype(np.float64).mean(axis=0)
        scale = np.abs(values.astype(np.float64)).mean(axis=0)
        assert np.all(np.abs(stats.mean - reference) <= 4 * batch * 2.0**-52 * scale), t
        assert np.array_equal(stats.absmax, np.abs(values).max(axis=0)), t   # max is exact
        bins, counts = stats.histogram()    # a contiguous range of bins: some may be empty
        seen = {b: c for b, c in zip(bins, counts.tolist(), strict=True) if c}
        assert seen == exponent_counts(values), t
        assert counts.sum() == values.size


@pytest.mark.claim("C6.1")
def test_an_affine_layers_statistics_follow_from_its_weights():
    # δ_b[n, n'] = W[n, n'] · S_b[n'], so the mean over b is W · mean(S) (up to rounding) and
    # the largest magnitude is exactly |W| · max|S| (rounding is monotone and sign-symmetric)
    net = forward("12-9-tanh-7-relu-4-sce", batch=23, seed=3)
    trace = net.backward(keep="sums", stats=["mean", "absmax"])
    for t in (1, 3, 5):
        weights, above = net.params[f"{t}.W"], trace.incoming(t + 1)
        assert np.array_equal(trace.stats[t].absmax, np.abs(weights) * np.abs(above).max(0))
        expected = weights * above.mean(axis=0)
        # two different roundings of a mean of 23 products: a few ulps, more where the mean
        # nearly cancels (hence atol 1e-17: the smallest |mean| here is 2.4e-7, the median 1e-4)
        assert np.allclose(trace.stats[t].mean, expected, rtol=1e-13, atol=1e-17)


def test_only_the_chosen_statistics_are_gathered():
    net = forward("6-8-relu-3-sce", 5)
    trace = net.backward(keep="sums", stats="histogram")
    assert trace.stats[1].total is None and trace.stats[1].absmax is None
    with pytest.raises(ValueError, match="the mean was not gathered"):
        _ = trace.stats[1].mean
    assert net.backward(keep="sums").stats == {}
    assert statistics_wanted(True) == ("mean", "absmax", "histogram")
    with pytest.raises(ValueError, match=r"stats names \['median'\]"):
        net.backward(stats=["mean", "median"])


def test_statistics_refuse_what_they_cannot_describe():
    net = forward("4-6-batchnorm-3-sce", 5)
    with pytest.raises(ValueError, match=r"layer 2 \(BatchNorm.*couples the samples"):
        net.backward(keep="sums", stats=True)
    exact = forward("3-4-relu-2-mse", 3).astype("exact")
    exact.forward(np.ones((2, 3)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="layer 1 .*need float messages"):
        exact.backward(stats=True)


@pytest.mark.claim("C6.2")
def test_merging_two_halves_gives_the_whole():
    net = forward("6-8-relu-3-sce", 10)
    J = net.record.partials[0].inputs
    incoming = net.backward(keep="sums").incoming(2)
    whole = MessageStats.start(1, "Affine", J, ("mean", "absmax", "histogram"))
    halves = [MessageStats.start(1, "Affine", J, whole.names) for _ in range(2)]
    everyone = J.whole(10)
    whole.update(J.send(incoming, everyone), everyone.receivers)
    for half, rows in zip(halves, (slice(0, 4), slice(4, 10)), strict=True):
        half.update(J.send(incoming, everyone._replace(rows=rows)), everyone.receivers)
    merged = halves[0].merge(halves[1])
    assert merged.samples == 10
    assert np.array_equal(merged.absmax, whole.absmax)
    assert np.array_equal(merged.counts, whole.counts)
    assert np.allclose(merged.mean, whole.mean, rtol=1e-14, atol=0)
    other = MessageStats.start(3, "Affine", net.record.partials[2].inputs, whole.names)
    with pytest.raises(ValueError, match="cannot merge statistics of layer 3"):
        whole.merge(other)


@pytest.mark.claim("C6.2")
@pytest.mark.parametrize("seed", range(4))
def test_the_dask_backend_gathers_the_same_statistics(seed, same_statistics):
    pytest.importorskip("dask")
    rng = np.random.default_rng(seed)
    net = mp.build_network(random_spec(rng), seed=seed)
    x, target = random_batch(net, int(rng.integers(5, 40)), rng)
    net.forward(x, target)
    memory = net.backward(keep="sums", stats=True)
    lazy = net.backward(backend="dask", chunk_samples=4, keep="sums", stats=True)
    same_statistics(memory, lazy, net.T)


