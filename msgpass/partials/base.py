"""The interface every kind of local partials implements, and the records around it.

``InputPartials`` is J^t, one class per structured kind (msgpass.partials explains the
interface); ``ParamPartials`` is K^t; ``LocalPartials`` is what one layer's forward pass leaves
for the message pass: its J^t and a K^t per parameter. A ``Piece`` names the part of a message
block that is sent at once: some samples, and a band of the receiving nodes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

__all__ = ["Piece", "InputPartials", "ParamPartials", "LocalPartials", "STORAGES"]


class Piece(NamedTuple):
    """A part of a message block: the samples ``rows`` of the batch and a band ``receivers``
    of the block's second axis: the receiving nodes of layer t−1 for most kinds (features,
    for a kind whose nodes are (sample, feature) pairs; the senders' output channels for the
    window kind, whose block is laid out by sender)."""

    rows: slice
    receivers: slice

    def shifted(self, offset: int) -> Piece:
        """The same piece with its rows counted from ``-offset`` (rows of a chunk of the batch
        that starts at sample ``-offset``)."""
        return Piece(slice(self.rows.start + offset, self.rows.stop + offset), self.receivers)


def _length(part: slice) -> int:
    return part.stop - part.start


# The kinds by the name of their storage layout: a loaded trace store has no InputPartials at
# hand, only each block's attributes (``storage_attrs``), and asks the kind named there to
# expand it (``expand_stored``). A kind that stores its blocks in a layout of its own
# registers here by declaring ``storage``.
STORAGES: dict = {}


class InputPartials:
    """J^t, structured: the base of every kind (see msgpass.partials for the interface).

    A kind sets ``kind`` (its name in reports) and implements ``n_in``, ``n_out``, ``dtype``,
    ``send``, ``dense`` and ``edges``; the defaults below describe a kind whose block has
    a sample axis first and the receivers second, ``(B, N_{t-1}, ...)``, summed over its
    last axis. A kind whose messages are laid out otherwise overrides what differs.

    Attributes
    ----------
    n_in, n_out : int
        N_{t-1} and N_t, the widths of the layer's input and output.
    samples_independent : bool
        True when each sample's messages depend only on that sample: the block's first axis
        is the sample, and it can be cut, kept, chunked and summarised sample by sample.
        False for a kind whose nodes are (sample, feature) pairs (BatchNorm in training).
    storage : str
        How a stored block is laid out in a trace store ("dense": as the dense view). A kind
        that declares another layout implements ``expand_stored`` (and ``storage_attrs`` if
        expanding needs more than the block itself).
    block_dims : tuple of str
        Names of the stored block's axes after the sample axis, for labelled traces.
    """

    kind: str = ""
    samples_independent: bool = True
    large_pieces: bool = False   # True: send pieces as large as the budget, not cache-sized
    storage: str = "dense"
    block_dims: tuple[str, ...] = ("src", "dst")
    n_in: int
    n_out: int

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "storage" in cls.__dict__:
            if "expand_stored" not in cls.__dict__:
                raise TypeError(f"{cls.__name__} stores its blocks as {cls.storage!r}: it must "
                                f"say how they expand to the dense view (expand_stored)")
            STORAGES[cls.storage] = cls

    @property
    def dtype(self) -> np.dtype:
        raise NotImplementedError

    # -- the message block and its pieces --------------------------------------------------
    def block_shape(self, batch: int) -> tuple[int, ...]:
        """Shape of the stored message block of ``batch`` samples."""
        return (batch, self.n_in, self.n_out)

    @property
    def edge_shape(self) -> tuple[int, ...]:
        """Shape of per-edge statistics: the block of one sample, without its sample axis."""
        return self.block_shape(1)[1:]

    def smallest_piece_bytes(self, batch: int) -> int:
        """Bytes of the smallest piece the block can be cut into: one receiver of one sample."""
        return int(np.prod(self.block_shape(1)[2:], dtype=np.int64)) * np.dtype(
            self.dtype).itemsize

    def pieces(self, rows: slice, piece_bytes: int) -> Iterator[Piece]:
        """Pieces of at most ``piece_bytes`` (or one smallest piece) covering the block of the
        samples ``rows``, the largest first (every kind yields its largest piece first: the
        scratch for the others is cut from it): whole samples while one sample fits, else one
        sample a band of receivers at a time, band by band, so that a band's partials (and
        per-edge statistics) stay in cache across the samples."""
        per_receiver = self.smallest_piece_bytes(_length(rows))
        bands = self.block_shape(1)[1]          # N_{t-1} unless the kind lays out otherwise
        per_sample = bands * per_receiver
        everyone = slice(0, bands)
        if per_sample <= piece_bytes:
            step = min(_length(rows), piece_bytes // per_sample)
            for start in range(rows.start, rows.stop, step):
                yield Piece(slice(start, min(start + step, rows.stop)), everyone)
            return
        band = max(1, piece_bytes // per_receiver)
        for start in range(0, bands, band):
            for sample in range(rows.start, rows.stop):
                yield Piece(slice(sample, sample + 1), slice(start, min(start + band, bands)))

    def receiver_rows(self, batch: int) -> int:
        """Rows of the receivers' sums S^t when ``batch`` samples send: the same samples,
        except for a kind that contracts its input's samples (``Contracted``)."""
        return batch

    def whole(self, batch: int) -> Piece:
        """The piece that is the whole block of ``batch`` samples."""
        return Piece(slice(0, batch), slice(0, self.block_shape(1)[1]))

    def piece_index(self, piece: Piece) -> tuple[slice, ...]:
        """Where ``piece`` sits in the block (rows counted from the block's first sample)."""
        return piece.rows, piece.receivers

    def piece_shape(self, piece: Piece) -> tuple[int, ...]:
        """Shape of the messages of ``piece``: the block indexed by ``piece_index``."""
        rows, receivers = piece
        return (rows.stop - rows.start, receivers.stop - receivers.start) + \
            self.block_shape(1)[2:]

    # -- the recursion ---------------------------------------------------------------------
    def send(self, incoming: np.ndarray, piece: Piece, out: np.ndarray | None = None
             ) -> np.ndarray:
        """The messages of ``piece``: ``δ^t_{n←n'} = J^t[n, n'] · S^{t+1}_{n'}`` on its edges.

        Parameters
        ----------
        incoming : ndarray, shape (B, N_t)
            S^{t+1}, what has arrived at the layer's output nodes, for the whole batch (the
            piece says which rows to read).
        piece : Piece
        out : ndarray of shape ``piece_shape(piece)``, optional
            Where to write the messages.
        """
        raise NotImplementedError

    def receive(self, messages: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """What the piece's receivers sum: ``S^t_n = Σ_{n'} δ^t_{n←n'}`` over the piece's
        edges, shape (rows, receivers) of the piece, written into ``out`` if given."""
        if out is None:
            return messages.sum(axis=2)
        return np.add.reduce(messages, axis=2, out=out)

    def receive_piece(self, messages: np.ndarray, piece: Piece, sums: np.ndarray,
                      first: int = 0) -> None:
        """Let the piece's receivers take their sums into ``sums``: S^t of the samples being
        sent, (rows, N_{t-1}), whose row 0 is batch sample ``first``, zeros before the first
        piece. By default each piece's receivers are a band of their own, written whole; a
        kind whose pieces share receivers (the window kind, cut by senders) adds into them."""
        here = piece.shifted(-first) if first else piece
        self.receive(messages, out=sums[here.rows, here.receivers])

    def receive_by_pieces(self, messages: np.ndarray, out: np.ndarray | None = None
                          ) -> np.ndarray:
        """``receive`` for a kind whose receivers add what arrives (``receive_piece``): the
        whole block taken as one piece into zeros, written into ``out`` if given."""
        sums = np.zeros((len(messages), self.n_in), dtype=messages.dtype)
        self.receive_piece(messages, self.whole(len(messages)), sums)
        if out is None:
            return sums
        np.copyto(out, sums)
        return out

    # -- forward (tangent) messages ---------------------------------------------------------
    def push(self, tangent: np.ndarray) -> np.ndarray:
        """Forward-mode messages ``τ[b, n, n'] = J_b[n, n'] · ṫ[b, n]`` for the tangent ṫ
        (B, N_{t-1}) arriving at the senders below, in the kind's forward layout (the dense
        one by default, from ``dense()``). A tangent of one sample serves a batch of B."""
        return self.dense() * tangent[:, :, None]

    def push_receive(self, messages: np.ndarray) -> np.ndarray:
        """What each node above sums of the tangent messages: ``Σ_n τ[n, n']``, (B, N_t)."""
        return messages.sum(axis=1)

    def push_dense(self, messages: np.ndarray) -> np.ndarray:
        """Tangent messages in the dense layout (B, N_{t-1}, N_t)."""
        return messages

    # -- dense views, by code separate from send and receive ------------------------------
    def dense(self) -> np.ndarray:
        """The dense local partials J^t in the kind's dense layout: (B, N_{t-1}, N_t) (or
        (1, ...) when shared by every sample); a kind whose samples are not independent has
        its own (Coupled: (N, B, B), its nodes being (sample, feature) pairs)."""
        raise NotImplementedError

    def dense_messages(self, block: np.ndarray) -> np.ndarray:
        """A stored message block as the dense view's layout (B, N_{t-1}, N_t)."""
        return self.expand_stored(block, self.storage_attrs())

    def sample_view(self, block: np.ndarray, row: int | str) -> np.ndarray:
        """The dense (N_{t-1}, N_t) messages of one sample, row ``row`` of a stored block, or
        their mean over the block's samples for ``"mean"``; a kind without per-sample
        messages says why (ValueError)."""
        if row == "mean":
            return self.dense_messages(block).mean(axis=0)
        return self.dense_messages(block[row:row + 1])[0]

    def storage_attrs(self) -> dict:
        """What a trace store keeps beside a block of this kind, so that ``expand_stored`` can
        expand it later without the partials: the layout's name, and whatever else it needs
        (JSON-able values)."""
        return {"stored": self.storage}

    @classmethod
    def expand_stored(cls, block, attrs: dict):
        """A stored block (any leading axes; a numpy array, or a dask array for a loaded
        store, expanded lazily) in its dense layout, from the attributes ``storage_attrs``
        gave: the identity for a block stored densely."""
        return block

    def times_senders(self, dense: np.ndarray, incoming: np.ndarray) -> np.ndarray:
        """An array in the dense layout (``dense()``'s) with each sender n' scaled by
        ``incoming[:, n']``, S^{t+1} (B, N_t)."""
        return dense * incoming[:, None, :]

    def dense_send(self, incoming: np.ndarray) -> np.ndarray:
        """``J^t · S^{t+1}`` in the dense layout, from ``dense()``: what the stored messages
        must equal (verify's recursion check)."""
        return self.times_senders(self.dense(), incoming)

    def send_check(self, block: np.ndarray, incoming: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
        """(the stored messages, J · S from the dense view's code) in a layout both share:
        verify's recursion check for a block sent from ``incoming`` (B, N_t). The dense
        layout by default; a kind whose stored block is smaller (a diagonal) compares in the
        stored one, so that checking never expands it."""
        return self.dense_messages(block), self.dense_send(incoming)

    def repeated(self, batch: int) -> InputPartials:
        """The same partials for each of ``batch`` samples, from partials of one sample (a
        node of batch 1 shared by a batch of B, in the layered view)."""
        raise ValueError(f"{self.kind or type(self).__name__} partials of one sample cannot "
                         f"be repeated over a batch")

    def row(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The edges from input node n: the output nodes n' it feeds (int array) and
        J_b[n, n'] for them, (B, k) (the path-sum witness walks these). A kind whose nodes
        are not per sample says why (ValueError)."""
        columns = np.flatnonzero(self.edges()[n])
        return columns, self.dense()[:, n, columns]

    def edge_counts(self, counts: np.ndarray) -> np.ndarray:
        """For each input node n, Σ of ``counts[n']`` over its edges n → n' (exact ints:
        the path count, by dynamic programming)."""
        return self.edges().astype(object) @ counts

    def stored_receive(self, block: np.ndarray) -> np.ndarray:
        """The sums (B, N_{t-1}) of a stored block, by code separate from ``receive`` (the
        dense view's, unless a kind has a cheaper one of its own): verify's check that the
        receivers summed what was sent."""
        return self.dense_receive(self.dense_messages(block))

    def dense_receive(self, dense_messages: np.ndarray) -> np.ndarray:
        """The sums (B, N_{t-1}) of messages in the dense layout."""
        return dense_messages.sum(axis=2)

    def magnitude(self) -> np.ndarray:
        """Dense sizes of the terms each partial is formed from, shaped like ``dense()``: the
        scale of its round-off. It is |J| unless an entry is a difference of larger terms
        (Softmax's y_n'(δ − y_n) is formed from y_n'(δ + y_n))."""
        return np.abs(self.dense())

    def magnitudes(self, M: np.ndarray) -> np.ndarray:
        """``M^t_n = Σ_{n'} |J^t[n, n']| · M^{t+1}_{n'}`` (B, N_{t-1}) from the path magnitudes
        M = M^{t+1} (B, N_t): the sums if nothing cancelled (verify's round-off)."""
        return self.dense_receive(self.times_senders(self.magnitude(), M))

    def edges(self) -> np.ndarray:
        """Boolean (N_{t-1}, N_t): which (n, n') pairs are edges of the graph."""
        raise NotImplementedError

    def message_count(self, batch: int) -> int:
        """How many messages a block of ``batch`` samples holds (one per edge and sample)."""
        return int(self.edges().sum()) * batch


class ParamPartials:
    """Base of the parameter-partial kinds ``K[i, n'] = ∂g_{n'}/∂θ_i``."""

    kind: str = ""

    def gradient(self, incoming: np.ndarray) -> np.ndarray:
        """``∂L/∂θ_i = Σ_b Σ_{n'} K_b[i, n'] · S_b[n']``, shaped like the parameter, for
        ``incoming`` = S^{t+1} (B, N_t)."""
        raise NotImplementedError

    def per_sample(self, incoming: np.ndarray, samples: np.ndarray | None = None) -> np.ndarray:
        """The same without the sum over samples: shape (B, *parameter shape), or only the
        rows of ``samples`` (batch indices) when given."""
        raise NotImplementedError

    def absolute(self) -> ParamPartials:
        """The same kind with |K| in place of K (for round-off magnitudes)."""
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class LocalPartials:
    """What one layer's forward pass leaves for the message pass.

    Attributes
    ----------
    inputs : InputPartials
        ``J^t``, structured.
    params : dict of str to ParamPartials
        ``K^t`` for each named parameter of the layer (empty for parameterless layers).
    """

    inputs: InputPartials
    params: dict[str, ParamPartials] = field(default_factory=dict)
