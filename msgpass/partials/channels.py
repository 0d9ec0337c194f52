"""Channel-coupled partials: BatchNorm2d in training, where each channel is normalised with the
statistics of all its B·H·W entries, so the messages run between the (sample, position) nodes
of one channel."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import InputPartials, Piece
from .coupled import CouplesSamples

__all__ = ["ChannelCoupled"]


@dataclass(frozen=True, eq=False)
class ChannelCoupled(CouplesSamples, InputPartials):
    """Channel c's M = B·P members m = (b, p) (p = i·W + j, member m = b·P + p) all hear from
    each other:

        J_c[m, m'] = ∂y_{m'}/∂x_m = (γ_c/σ_c) (δ_{mm'} − 1/M − x̂_m x̂_{m'} / M).

    Parameters
    ----------
    xhat : ndarray, shape (C, M)
        The normalised inputs of each channel, members in (sample, position) order.
    scale : ndarray, shape (C,)
        γ_c / σ_c.
    positions : int
        P = H·W, the entries of one channel in one sample.

    Messages: ``δ[c, m, m'] = J_c[m, m'] · S[m']``, a block (C, M, M), receivers second; the
    block has no sample axis. J is never stored whole: each piece's partials are made from
    x̂ and the scale as it is sent, so the pass is cut channel by channel (and, when one
    channel is over the budget, a band of its receivers at a time).
    """

    xhat: np.ndarray
    scale: np.ndarray
    positions: int
    kind = "channel-coupled"
    samples_independent = False
    block_dims = ("channel", "member_in", "member_out")
    nodes = "(sample, position) nodes of a channel"

    @property
    def channels(self) -> int:
        return self.xhat.shape[0]

    @property
    def members(self) -> int:
        return self.xhat.shape[1]

    @property
    def batch(self) -> int:
        return self.members // self.positions

    @property
    def n_in(self) -> int:  # type: ignore[override]
        return self.channels * self.positions

    @property
    def n_out(self) -> int:  # type: ignore[override]
        return self.n_in

    @property
    def dtype(self) -> np.dtype:
        return self.xhat.dtype

    def block_shape(self, batch):
        members = batch * self.positions
        return (self.channels, members, members)

    def repeated(self, batch):
        raise ValueError("couples the samples: its partials of one sample cannot stand for a "
                         "batch")

    # -- pieces: whole channels, or a band of one channel's receivers ------------------------
    def smallest_piece_bytes(self, batch):
        return batch * self.positions * np.dtype(self.dtype).itemsize

    def pieces(self, rows, piece_bytes):
        if (rows.start, rows.stop) != (0, self.batch):
            raise ValueError(f"a channel-coupled layer's messages join all {self.batch} "
                             f"samples; they cannot be sent for samples "
                             f"{rows.start}..{rows.stop - 1} alone")
        M = self.members
        channel_bytes = M * self.smallest_piece_bytes(self.batch)
        if channel_bytes <= piece_bytes:
            band = piece_bytes // channel_bytes
            for start in range(0, self.channels, band):
                yield Piece(rows, slice(start * M, min(start + band, self.channels) * M))
            return
        band = max(1, piece_bytes // self.smallest_piece_bytes(self.batch))
        for c in range(self.channels):
            for start in range(0, M, band):
                yield Piece(rows, slice(c * M + start, c * M + min(start + band, M)))

    def whole(self, batch):
        return Piece(slice(0, batch), slice(0, self.channels * batch * self.positions))

    def _where(self, receivers: slice) -> tuple[slice, slice]:
        """(channels, members of one channel) of a band of the flat (c, m) receivers."""
        M = self.members
        first, rest = divmod(receivers.start, M)
        if rest == 0 and receivers.stop % M == 0:
            return slice(first, receivers.stop // M), slice(0, M)
        return slice(first, first + 1), slice(rest, receivers.stop - first * M)

    def piece_index(self, piece):
        channels, members = self._where(piece.receivers)
        return (channels,) if members == slice(0, self.members) else (channels, members)

    def piece_shape(self, piece):
        channels, members = self._where(piece.receivers)
        return (channels.stop - channels.start, members.stop - members.start, self.members)

    def _senders(self, incoming: np.ndarray, channels: slice) -> np.ndarray:
        """S at the senders of ``channels``, (channels, M), members in (sample, position)
        order."""
        batch = len(incoming)
        S = incoming.reshape(batch, self.channels, self.positions)[:, channels]
        return S.transpose(1, 0, 2).reshape(channels.stop - channels.start, -1)

    def _partials(self, channels: slice, members: slice) -> np.ndarray:
        """J_c for ``channels``, receivers ``members``: (channels, members, M)."""
        xhat = self.xhat[channels]
        M = self.members
        # an int identity and "/ M": exact and mp numbers stay exact
        eye = np.eye(M, dtype=int if xhat.dtype == object else xhat.dtype)[members]
        outer = xhat[:, members, None] * xhat[:, None, :] / M
        scale = self.scale[channels][:, None, None]
        return scale * (eye[None] - outer) - scale / M

    def send(self, incoming, piece, out=None):
        channels, members = self._where(piece.receivers)
        return np.multiply(self._partials(channels, members),
                           self._senders(incoming, channels)[:, None, :], out=out)

    def _place(self, sums: np.ndarray, channels: slice, members: slice,
               received: np.ndarray) -> None:
        """Write the sums (channels, members) of receivers into S (B, C·P)."""
        image = sums.reshape(len(sums), self.channels, self.positions)
        if members == slice(0, self.members):
            image[:, channels] = received.reshape(-1, len(sums), self.positions).transpose(
                1, 0, 2)
            return
        sample, position = np.divmod(np.arange(members.start, members.stop), self.positions)
        image[sample, channels.start, position] = received[0]

    def receive(self, messages, out=None):
        # a whole block: (C, M, M) → S (B, C·P)
        sums = np.zeros((self.batch, self.n_in), dtype=messages.dtype) if out is None else out
        self._place(sums, slice(0, self.channels), slice(0, self.members), messages.sum(axis=2))
        return sums

    def receive_piece(self, messages, piece, sums, first=0):
        channels, members = self._where(piece.receivers)
        self._place(sums, channels, members, messages.sum(axis=2))

    # -- dense views, by code separate from send and receive ----------------------------------
    def push(self, tangent):
        # member m of channel c below sends ṫ[m]·J_c[m, m'] to every member m' above:
        # (C, M, M) like the dense view: senders on axis 1, receivers on axis 2
        return self.dense() * self._senders(tangent, slice(0, self.channels))[:, :, None]

    def push_receive(self, messages):
        return self.dense_receive(messages.transpose(0, 2, 1))

    def dense(self):
        # channel by channel, each entry by the same formula as the pieces' (float32 would
        # round another arrangement of it differently; which entries are edges, and where,
        # is what this view checks, and the backprop witness checks the formula)
        J = np.empty(self.block_shape(self.batch), dtype=self.dtype)
        for c in range(self.channels):
            J[c] = self._partials(slice(c, c + 1), slice(0, self.members))[0]
        return J

    def times_senders(self, dense, incoming):
        return dense * self._senders(incoming, slice(0, self.channels))[:, None, :]

    def dense_receive(self, dense_messages):
        sums = np.zeros((self.batch, self.n_in), dtype=dense_messages.dtype)
        received = dense_messages.sum(axis=2)               # (C, M)
        return received.reshape(self.channels, self.batch, self.positions).transpose(
            1, 0, 2).reshape(self.batch, -1) + sums

    def magnitude(self):
        M = self.members
        scale = np.abs(self.scale)[:, None, None]
        outer = np.abs(self.xhat[:, :, None] * self.xhat[:, None, :]) / M
        return scale * (np.eye(M)[None] + outer) + scale / M

    def edges(self):
        # feature (c, p) to feature (c, p') of the same channel, across all samples
        channel = np.repeat(np.arange(self.channels), self.positions)
        return channel[:, None] == channel[None, :]

    def message_count(self, batch):
        members = batch * self.positions
        return self.channels * members * members
