"""Selection partials: an op that copies some input entries to some output entries (a slice, one
input of a concatenation), so each edge is one input node → one output node with partial 1."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import InputPartials

__all__ = ["Selection"]


@dataclass(frozen=True, eq=False)
class Selection(InputPartials):
    """``J[n, n'] = 1`` for the edges ``(sources[e], targets[e])``, no edge otherwise; the same
    for every sample.

    Parameters
    ----------
    sources, targets : ndarray of int, shape (k,)
        Edge e runs from input node ``sources[e]`` to output node ``targets[e]``; every output
        node has at most one edge (a copy), an input node any number.
    inputs, outputs : int
        N_{t-1} and N_t.
    message_dtype : numpy dtype

    Messages: one per edge and sample, ``δ_b[e] = S_b[targets[e]]``: the block is (B, k).
    Receivers add what arrives at each source.
    """

    sources: np.ndarray
    targets: np.ndarray
    inputs: int
    outputs: int
    message_dtype: np.dtype
    kind = "selection"
    storage = "selection"
    block_dims = ("edge",)

    @property
    def n_in(self) -> int:  # type: ignore[override]
        return int(self.inputs)

    @property
    def n_out(self) -> int:  # type: ignore[override]
        return int(self.outputs)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.message_dtype)

    def block_shape(self, batch):
        return (batch, len(self.targets))

    def message_count(self, batch):
        return batch * len(self.targets)

    def send(self, incoming, piece, out=None):
        # the one message of each edge: its output's sum, times 1
        chosen = self.targets[piece.receivers]
        return np.take(incoming[piece.rows], chosen, axis=1, out=out)

    def receive_piece(self, messages, piece, sums, first=0):
        sums = sums[piece.rows.start - first:piece.rows.stop - first]
        sources = self.sources[piece.receivers]
        if len(np.unique(sources)) == len(sources):       # a slice, a concatenation: copies
            sums[:, sources] += messages
        else:                                             # an input sent to several outputs
            np.add.at(sums, (slice(None), sources), messages)

    def receive(self, messages, out=None):
        return self.receive_by_pieces(messages, out)

    # -- dense views, by code separate from send and receive ----------------------------------
    def dense(self):
        J = np.zeros((1, self.n_in, self.n_out), dtype=self.dtype)
        for source, target in zip(self.sources, self.targets, strict=True):
            J[0, source, target] = 1
        return J

    def storage_attrs(self):
        return {"stored": self.storage, "sources": self.sources.tolist(),
                "targets": self.targets.tolist(), "inputs": self.n_in,
                "outputs": self.n_out}

    @classmethod
    def expand_stored(cls, block, attrs):
        """(rows, k) edges as dense (rows, N_in, N_out), zeros off the edges."""
        block = np.asarray(block)
        full = np.zeros(block.shape[:-1] + (attrs["inputs"], attrs["outputs"]),
                        dtype=block.dtype)
        full[..., np.asarray(attrs["sources"]), np.asarray(attrs["targets"])] = block
        return full

    def send_check(self, block, incoming):
        return block, incoming[:, self.targets] * np.ones((), dtype=self.dtype)

    def stored_receive(self, block):
        sums = np.zeros((len(block), self.n_in), dtype=np.asarray(block).dtype)
        for e, source in enumerate(self.sources):       # edge by edge, not by fancy index
            sums[:, source] += np.asarray(block)[:, e]
        return sums

    def repeated(self, batch):
        return self

    def row(self, n):
        hit = self.sources == n
        return self.targets[hit], np.ones((1, int(hit.sum())), dtype=self.dtype)

    def edge_counts(self, counts):
        out = np.zeros(self.n_in, dtype=object)
        for source, target in zip(self.sources, self.targets, strict=True):
            out[source] += counts[target]
        return out

    def magnitudes(self, M):
        return self.receive(self.send(M, self.whole(len(M))))

    def edges(self):
        edges = np.zeros((self.n_in, self.n_out), dtype=bool)
        edges[self.sources, self.targets] = True
        return edges
