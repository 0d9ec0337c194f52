"""The kinds of local partials and their one interface (msgpass.partials): a kind defined here,
in the test file, runs through the message pass, its budgets and kept samples, verify and the
statistics without any other change to msgpass."""

from dataclasses import dataclass

import numpy as np
import pytest

import msgpass as mp
from msgpass.partials import Coupled, Dense, Diagonal, InputPartials, LocalPartials, Shared
from msgpass.testing import random_batch


@dataclass(frozen=True, eq=False)
class Route(InputPartials):
    """A toy kind: output node n' hears from input node perm[n'] only, with weight
    scale[b, n'] (a shuffle of the nodes, scaled). Each receiver n has one edge, from sender
    n' = inverse[n]; its block stores that one message per receiver, (B, N)."""

    perm: np.ndarray        # (N,) the input node each output node reads
    scale: np.ndarray       # (B, N) ∂y_{n'}/∂x_{perm[n']}
    kind = "route"
    storage = "route"
    block_dims = ("node",)

    @property
    def n_in(self):
        return len(self.perm)

    @property
    def n_out(self):
        return len(self.perm)

    @property
    def dtype(self):
        return self.scale.dtype

    @property
    def inverse(self):
        return np.argsort(self.perm)

    def block_shape(self, batch):
        return (batch, self.n_in)

    def send(self, incoming, piece, out=None):
        sender = self.inverse[piece.receivers]            # the one sender of each receiver
        return np.multiply(self.scale[piece.rows][:, sender], incoming[piece.rows][:, sender],
                           out=out)

    def receive(self, messages, out=None):
        if out is None:
            return messages.copy()
        np.copyto(out, messages)
        return out

    def dense(self):
        jac = np.zeros((len(self.scale), self.n_in, self.n_out), dtype=self.dtype)
        jac[:, self.perm, np.arange(self.n_out)] = self.scale
        return jac

    def storage_attrs(self):
        return {"stored": self.storage, "perm": self.perm.tolist()}

    @classmethod
    def expand_stored(cls, block, attrs):
        """(..., N) one message per receiver as (..., N, N), each in its sender's column."""
        if not isinstance(block, np.ndarray):        # a lazy (dask) block of a loaded store
            block = block.rechunk({block.ndim - 1: -1})
            return block.map_blocks(cls.expand_stored, attrs, new_axis=[block.ndim],
                                    chunks=block.chunks + ((block.shape[-1],),),
                                    dtype=block.dtype)
        inverse = np.argsort(attrs["perm"])
        full = np.zeros(block.shape + (len(inverse),), dtype=block.dtype)
        full[..., np.arange(len(inverse)), inverse] = block
        return full

    def edges(self):
        mask = np.zeros((self.n_in, self.n_out), dtype=bool)
        mask[self.perm, np.arange(self.n_out)] = True
        return mask


@dataclass(frozen=True)
class ShuffleSaved:
    x: np.ndarray


class Shuffle(mp.Layer):
    """y_{n'} = w_{n'} · x_{perm[n']}: a layer whose partials are the toy kind."""

    def __init__(self, perm, weight):
        super().__init__()
        self.perm = np.asarray(perm)
        self.params = {"w": np.asarray(weight, dtype=float)}

    def forward(self, x):
        return x[:, self.perm] * self.params["w"], ShuffleSaved(x)

    def local_partials(self, saved):
        scale = np.broadcast_to(self.params["w"], saved.x.shape).copy()
        return LocalPartials(Route(self.perm, scale),
                             {"w": mp.Elementwise(saved.x[:, self.perm], len(self.perm))})

    def backward(self, saved, dout):
        dx = np.zeros_like(dout)
        dx[:, self.perm] = dout * self.params["w"]
        return dx, {"w": np.sum(dout * saved.x[:, self.perm], axis=0)}


class WrongRoute(Route):
    """The toy kind with a planted fault: every message 0.1 % too large."""

    def send(self, incoming, piece, out=None):
        messages = super().send(incoming, piece, out)
        messages *= 1.001
        return messages


class WrongShuffle(Shuffle):
    def local_partials(self, saved):
        right = super().local_partials(saved)
        return LocalPartials(WrongRoute(right.inputs.perm, right.inputs.scale), right.params)


PERM = np.array([3, 0, 5, 1, 4, 2])


def toy_network(layer=Shuffle):
    return mp.Sequential([mp.Affine(5, 6, seed=0), layer(PERM, np.linspace(0.5, 1.5, 6)),
                          mp.Tanh(), mp.Affine(6, 3, seed=1), mp.SoftmaxCrossEntropy()])


@pytest.fixture
def toy():
    net = toy_network()
    x, labels = random_batch(net, 7, np.random.default_rng(3))
    net.forward(x, labels)
    return net, x, labels


def test_a_kind_defined_here_runs_through_the_message_pass(toy):
    net, x, labels = toy
    trace = net.backward()
    ref = mp.backprop(net, x, labels)
    block = trace.block(2)
    assert block.kind == "route" and block.values.shape == (7, 6)
    dense = trace.message(2)                           # (B, N, N): one edge per receiver
    assert np.count_nonzero(dense[0]) == 6
    np.testing.assert_array_equal(dense.sum(axis=2), trace.incoming(2))
    for t in range(1, net.T + 1):
        np.testing.assert_allclose(trace.incoming(t), ref.incoming(t), rtol=1e-12, atol=1e-16)
    for key, grad in ref.grads.items():
        np.testing.assert_allclose(trace.grads[key], grad, rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("chunk_bytes", [8, 24, 1 << 22])
def test_the_toy_kind_streams_in_pieces_and_keeps_chosen_samples(toy, chunk_bytes):
    """Budgets cut its block into pieces (one receiver of one sample at the smallest), and
    keep_samples keeps its rows, with the kind's default piece plan: no bit changes."""
    net, _, _ = toy
    whole = net.backward()
    streamed = net.backward(keep=[2], chunk_bytes=chunk_bytes, keep_samples=[1, 4],
                            per_sample=True)
    for t in range(1, net.T + 2):
        np.testing.assert_array_equal(streamed.incoming(t), whole.incoming(t))
    np.testing.assert_array_equal(streamed.message(2), whole.message(2)[[1, 4]])
    assert streamed.param_messages["2.w"].shape == (2, 6)


def test_verify_proves_the_toy_kind_and_catches_its_planted_fault(toy):
    net, x, labels = toy
    report = mp.verify(net, x, labels)
    assert report.ok, str(report)
    assert {c.status for c in report.checks} <= {"holds", "inconclusive"}
    wrong = toy_network(WrongShuffle)
    bad = mp.verify(wrong, x, labels)
    assert not bad.ok
    first = bad.first_failure
    assert (first.t, first.witness) == (2, "partials")      # the recursion fails at layer 2
    assert "layer 2 (WrongShuffle)" in bad.verdict()


def test_statistics_of_the_toy_kind_are_per_edge(toy):
    net, _, _ = toy
    trace = net.backward(keep="all", stats=True)
    stats = trace.stats[2]
    assert stats.absmax.shape == (6,) and stats.samples == 7
    np.testing.assert_allclose(stats.mean, trace.block(2).values.mean(axis=0), rtol=1e-14)
    np.testing.assert_array_equal(stats.absmax, np.abs(trace.block(2).values).max(axis=0))
    assert stats.counts.sum() == trace.block(2).partials.message_count(7) == 42


def test_labelled_and_stored_traces_expand_the_toy_kind_by_its_own_attributes(toy, tmp_path):
    """A trace store has no partials: the kind writes what it needs beside its block
    (storage_attrs) and expands it from there (expand_stored), in memory and lazily."""
    pytest.importorskip("xarray")
    pytest.importorskip("zarr")
    net, _, _ = toy
    trace = net.backward()
    ds = trace.to_xarray()
    assert ds["message2"].dims == ("sample", "node2")
    assert ds["message2"].attrs == {"stored": "route", "perm": PERM.tolist()}
    np.testing.assert_array_equal(ds.msgpass.dense(2).values, trace.message(2))
    trace.save(tmp_path / "toy.zarr")
    loaded = mp.load_trace(tmp_path / "toy.zarr", network=net)
    lazy = loaded.msgpass.dense(2)
    assert lazy.chunks is not None                     # still lazy
    np.testing.assert_array_equal(lazy.values, trace.message(2))


def test_a_kind_with_its_own_storage_must_say_how_it_expands():
    with pytest.raises(TypeError, match="stores its blocks as 'mine': it must say how"):
        class Mine(Route):
            storage = "mine"


def test_the_dask_backend_sends_the_toy_kind_too(toy):
    pytest.importorskip("dask")
    net, _, _ = toy
    memory = net.backward(keep="sums", stats=["mean"])
    lazy = net.backward(backend="dask", chunk_samples=3, keep=[2], stats=["mean"])
    for t in range(1, net.T + 1):
        np.testing.assert_array_equal(lazy.incoming(t), memory.incoming(t))
    np.testing.assert_array_equal(lazy.message(2), net.backward().message(2))
    np.testing.assert_allclose(lazy.stats[2].mean, memory.stats[2].mean, rtol=1e-14)


# -- every kind through the same interface ------------------------------------------------

def kinds():
    rng = np.random.default_rng(0)
    return {"shared": Shared(rng.standard_normal((4, 3))),
            "diagonal": Diagonal(rng.standard_normal((5, 4))),
            "dense": Dense(rng.standard_normal((5, 4, 3))),
            "coupled": Coupled(rng.standard_normal((4, 5, 5))),
            "route": Route(np.array([2, 0, 3, 1]), rng.standard_normal((5, 4)))}


@pytest.mark.parametrize("name", ["shared", "diagonal", "dense", "coupled", "route"])
def test_every_kind_sends_and_receives_what_its_dense_view_says(name):
    """send/receive (the kind's structured code) against dense_send/dense_receive (built
    from its dense view), piece by piece at the smallest pieces the kind allows."""
    J = kinds()[name]
    batch, incoming = 5, np.random.default_rng(1).standard_normal((5, J.n_out))
    whole = J.whole(batch)
    block = J.send(incoming, whole)
    assert block.shape == J.block_shape(batch)
    np.testing.assert_allclose(J.dense_messages(block), J.dense_send(incoming), rtol=1e-15)
    np.testing.assert_allclose(J.receive(block), J.dense_receive(J.dense_send(incoming)),
                               rtol=1e-13)
    sums = np.empty((batch, J.n_in))
    for piece in J.pieces(slice(0, batch), J.smallest_piece_bytes(batch)):
        messages = J.send(incoming, piece)
        assert messages.shape == J.piece_shape(piece)
        np.testing.assert_array_equal(messages, block[J.piece_index(piece)])
        J.receive(messages, out=sums[piece.rows, piece.receivers])
    np.testing.assert_allclose(sums, J.receive(block), rtol=1e-15)
    assert J.message_count(batch) == (np.count_nonzero(J.dense_messages(block))
                                      if name != "shared" else batch * 12)


def test_a_coupled_block_is_never_cut_by_samples():
    J = kinds()["coupled"]
    with pytest.raises(ValueError, match="join all 5 samples"):
        list(J.pieces(slice(0, 2), 1 << 20))
