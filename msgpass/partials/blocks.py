"""Block partials: a block matrix of structured partials (a level of a graph's layered view)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import InputPartials, Piece

__all__ = ["Blocks", "Part"]


@dataclass(frozen=True)
class Part:
    """One block: J (an InputPartials) at receivers ``row`` … and senders ``column`` …"""

    row: int
    column: int
    partials: InputPartials


@dataclass(frozen=True, eq=False)
class Blocks(InputPartials):
    """J made of blocks: ``J[row_k + n, column_k + n'] = J_k[n, n']`` for each part k, exact
    zeros everywhere else (the layered view of a graph: a level's nodes read the level below,
    each through its own structured partials, and a carried node through an identity).

    Parameters
    ----------
    parts : tuple of Part
    n_rows, n_columns : int
        N_{t-1} and N_t.

    Messages: each part's block as that part stores it, the parts side by side. With every
    part's samples independent the block is (B, Σ_k per-sample size of part k), one row per
    sample; otherwise it is flat, (Σ_k size of part k's whole block,), and sent whole. Nothing
    is expanded: a diagonal part stays (B, N).
    """

    parts: tuple[Part, ...]
    n_rows: int
    n_columns: int
    kind = "blocks"
    block_dims = ("message",)

    def __post_init__(self):
        independent = all(p.partials.samples_independent for p in self.parts)
        object.__setattr__(self, "samples_independent", independent)

    @property
    def n_in(self) -> int:  # type: ignore[override]
        return self.n_rows

    @property
    def n_out(self) -> int:  # type: ignore[override]
        return self.n_columns

    @property
    def dtype(self) -> np.dtype:
        return np.result_type(*(p.partials.dtype for p in self.parts)) if self.parts \
            else np.dtype(np.float64)

    # -- where each part sits in the block ---------------------------------------------------
    def _sizes(self, batch: int) -> list[int]:
        """Each part's share of the block: per sample, or of the whole batch when flat."""
        if self.samples_independent:
            return [int(np.prod(p.partials.block_shape(1)[1:])) for p in self.parts]
        return [int(np.prod(p.partials.block_shape(batch))) for p in self.parts]

    def _segments(self, messages: np.ndarray, batch: int):
        """(part, its messages in its own layout) for every part of a block (or piece)."""
        offset = 0
        for part, size in zip(self.parts, self._sizes(batch), strict=True):
            J = part.partials
            if self.samples_independent:
                rows = messages.shape[0]
                yield part, messages[:, offset:offset + size].reshape(
                    (rows,) + J.block_shape(1)[1:])
            else:
                yield part, messages[offset:offset + size].reshape(J.block_shape(batch))
            offset += size

    def block_shape(self, batch):
        total = sum(self._sizes(batch))
        return (batch, total) if self.samples_independent else (total,)

    @property
    def edge_shape(self):
        if not self.samples_independent:
            raise ValueError("couples the samples in one of its blocks: message statistics "
                             "are per edge over independent samples")
        return self.block_shape(1)[1:]

    def smallest_piece_bytes(self, batch):
        # whole samples (the parts side by side); a flat block is sent whole
        return int(np.prod(self.block_shape(1 if self.samples_independent else batch)[-1:])) \
            * np.dtype(self.dtype).itemsize

    def pieces(self, rows, piece_bytes):
        if not self.samples_independent:
            yield Piece(rows, slice(0, self.n_rows))
            return
        step = max(1, piece_bytes // self.smallest_piece_bytes(1))
        for start in range(rows.start, rows.stop, step):
            yield Piece(slice(start, min(start + step, rows.stop)), slice(0, self.n_rows))

    def whole(self, batch):
        return Piece(slice(0, batch), slice(0, self.n_rows))

    def piece_index(self, piece):
        return (piece.rows,) if self.samples_independent else (slice(None),)

    def piece_shape(self, piece):
        rows = piece.rows.stop - piece.rows.start
        return (rows,) + self.block_shape(1)[1:] if self.samples_independent \
            else self.block_shape(rows)

    # -- the recursion ---------------------------------------------------------------------
    def send(self, incoming, piece, out=None):
        rows = piece.rows.stop - piece.rows.start
        if out is None:
            out = np.empty(self.piece_shape(piece), dtype=np.result_type(self.dtype, incoming))
        offset = 0
        for part, size in zip(self.parts, self._sizes(rows), strict=True):
            J = part.partials
            # the part's whole block for these rows, in its own layout of pieces
            whole = J.whole(piece.rows.stop - piece.rows.start)
            sent = J.send(incoming[:, part.column:part.column + J.n_out],
                          Piece(piece.rows, whole.receivers))
            if self.samples_independent:
                out[:, offset:offset + size] = sent.reshape(rows, -1)
            else:
                out[offset:offset + size] = sent.ravel()
            offset += size
        return out

    def receive(self, messages, out=None):
        batch = messages.shape[0] if self.samples_independent else self._batch()
        if out is None:
            out = np.zeros((batch, self.n_rows), dtype=messages.dtype)
        else:
            out[...] = 0
        for part, sent in self._segments(messages, batch):
            J = part.partials
            out[:, part.row:part.row + J.n_in] += J.receive(sent)
        return out

    def _batch(self) -> int:
        """The batch of a flat block: that of its coupled part."""
        return next(p.partials.batch for p in self.parts
                    if not p.partials.samples_independent)

    # -- views, each from the parts' own ----------------------------------------------------
    def _assemble(self, blocks) -> np.ndarray:
        """Dense (B, N_{t-1}, N_t) from each part's dense array (broadcast over B)."""
        if not self.samples_independent:
            raise ValueError("couples the samples in one of its blocks: it has no per-sample "
                             "dense view")
        blocks = list(blocks)
        batch = max((b.shape[0] for b in blocks), default=1)
        full = np.zeros((batch, self.n_rows, self.n_columns), dtype=self.dtype)
        for part, block in zip(self.parts, blocks, strict=True):
            J = part.partials
            full[:, part.row:part.row + J.n_in, part.column:part.column + J.n_out] += block
        return full

    def dense(self):
        return self._assemble(p.partials.dense() for p in self.parts)

    def dense_messages(self, block):
        batch = block.shape[0] if self.samples_independent else self._batch()
        return self._assemble(part.partials.dense_messages(sent)
                              for part, sent in self._segments(block, batch))

    def magnitude(self):
        return self._assemble(p.partials.magnitude() for p in self.parts)

    def send_check(self, block, incoming):
        batch = block.shape[0] if self.samples_independent else self._batch()
        found, expected = [], []
        for part, sent in self._segments(block, batch):
            J = part.partials
            f, e = J.send_check(sent, incoming[:, part.column:part.column + J.n_out])
            found.append(np.asarray(f).ravel())
            expected.append(np.asarray(e).ravel())
        return np.concatenate(found), np.concatenate(expected)

    def magnitudes(self, M):
        out = np.zeros((M.shape[0], self.n_rows), dtype=np.result_type(M, np.float64))
        for part in self.parts:
            J = part.partials
            out[:, part.row:part.row + J.n_in] += J.magnitudes(
                M[:, part.column:part.column + J.n_out])
        return out

    def edges(self):
        mask = np.zeros((self.n_rows, self.n_columns), dtype=bool)
        for part in self.parts:
            J = part.partials
            mask[part.row:part.row + J.n_in, part.column:part.column + J.n_out] |= J.edges()
        return mask

    def message_count(self, batch):
        return sum(p.partials.message_count(batch) for p in self.parts)

    def sample_view(self, block, row):
        if not self.samples_independent:
            raise ValueError("couples the samples in one of its blocks: its messages run "
                             "between (sample, feature) nodes, not within one sample")
        return super().sample_view(block, row)
