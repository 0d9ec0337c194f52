"""How a layer's messages are cut and sent: pieces under a byte budget, which blocks and which
samples are kept, statistics folded in as the pieces go by.

The recursion (msgpass.messages) asks for one layer at a time: send δ^t = J^t · S^{t+1} and
let the receivers sum, S^t = Σ_{n'} δ^t. ``send_layer`` does that a piece at a time: each
piece of messages is written, summed by its receivers while it is still in cache, folded into
the statistics, and then either stored (a kept block) or overwritten by the next piece. The
messages in flight never exceed the byte budget, whatever the batch. How a block is cut is
the kind's own business (``InputPartials.pieces``); this module only chooses the piece size.

``StreamingSender`` is the in-memory backend's sender (msgpass.messages.Sender): the options
of ``backward`` checked once, before any work, and what the pass keeps. The dask backend
(msgpass.scale) calls ``send_layer`` for each chunk of samples.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from .errors import InputValueError, NonFiniteError
from .messages import Edge, MessageBlock, MessagePass, Step
from .partials import InputPartials, ParamPartials, Piece
from .stats import MessageStats, statistics_wanted
from .validate import first_nonfinite, positive_int

__all__ = ["StreamingSender", "send_layer", "piece_bytes", "wanted_layers", "wanted_edges",
           "all_edges", "kept_samples",
           "check_memory_options", "check_statistics", "check_gradient", "check_sums",
           "DEFAULT_BUDGET_BYTES", "DEFAULT_CHUNK_BYTES", "STATS_CHUNK_BYTES"]

# The working memory of one chunk of the backward is bounded by a byte budget (the user's
# option, ``budget_bytes``); within it, messages are written and summed a smaller piece at a
# time, so that each piece is still in cache when it is summed. 4 MiB measured best
# (python benchmarks/bench_messages.py --sweep-chunks: 1.39x the write floor against 1.45x at
# 1 MiB and 1.54x unchunked, for 784-100-10 at B = 100); each piece is one vectorised operation.
DEFAULT_BUDGET_BYTES = 64 << 20
DEFAULT_CHUNK_BYTES = 1 << 22
# Gathering statistics reads each piece three more times and keeps per-edge running values
# beside it, so smaller pieces stay in cache: 1 MiB measured best (python
# benchmarks/bench_scale.py --sweep-chunks: all three statistics cost 4.6x the sums-only pass
# at 1 MiB, 7.7x at 4 MiB, 5.2x at 256 KiB, for 2048-2048-relu-10-sce at B = 32).
STATS_CHUNK_BYTES = 1 << 20


# -- options, checked before any work ----------------------------------------------------

def wanted_layers(keep, T: int) -> set[int]:
    """The layers whose blocks ``keep`` ("all", "sums" or a list of indices) asks to keep."""
    if isinstance(keep, str) and keep in ("all", "sums"):
        return set(range(1, T + 1)) if keep == "all" else set()
    if isinstance(keep, (str, bytes)) or not isinstance(keep, Iterable) or not all(
            isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in keep):
        raise ValueError(f"keep must be 'all', 'sums' or a list of layer indices, got {keep!r}")
    wanted = {int(t) for t in keep}
    outside = sorted(t for t in wanted if not 1 <= t <= T)
    if outside:
        raise ValueError(f"keep names layers {outside}, but the layers are 1..{T}")
    return wanted


def all_edges(steps: Sequence[Step]) -> list[Edge]:
    """Every edge of a pass, in the order its steps list them."""
    return [edge for step in steps for edge in step.edges]


def wanted_edges(edges: Sequence[Edge], keep) -> set:
    """The keys of the edges whose blocks to keep: every one ("all"), none ("sums"), or
    those of ``keep``, a set of edge keys already checked by the caller."""
    if isinstance(keep, str):
        return {e.key for e in edges} if keep == "all" else set()
    return set(keep)


def kept_samples(samples, batch: int) -> np.ndarray | None:
    """``keep_samples`` as sorted unique batch indices (None keeps every sample)."""
    if samples is None:
        return None
    try:
        chosen = np.asarray(list(samples))
    except TypeError:
        raise ValueError(f"keep_samples must be a list of sample indices, got {samples!r}") \
            from None
    if chosen.ndim != 1 or chosen.size == 0 or not np.issubdtype(chosen.dtype, np.integer):
        raise ValueError(f"keep_samples must be a non-empty list of sample indices, got "
                         f"{samples!r}")
    outside = sorted({int(b) for b in chosen if not 0 <= b < batch})
    if outside:
        raise ValueError(f"keep_samples names samples {outside}, but the batch has samples "
                         f"0..{batch - 1}")
    return np.unique(chosen)


def check_memory_options(edges: Sequence[Edge], batch: int, budget_bytes, chunk_bytes,
                         where: Mapping) -> None:
    """Refuse unusable byte options before any work (not at layer t of a long pass)."""
    for name, value in (("budget_bytes", budget_bytes), ("chunk_bytes", chunk_bytes)):
        positive_int(value, name, noun="number of bytes")
    for edge in edges:
        J = edge.partials
        smallest = J.smallest_piece_bytes(batch)
        if smallest > budget_bytes:
            itemsize = np.dtype(J.dtype).itemsize
            raise ValueError(
                f"{where[edge.key]}: budget_bytes={budget_bytes:,} cannot hold one receiver's "
                f"{smallest // itemsize:,} messages ({smallest:,} bytes)")


def check_statistics(edges: Sequence[Edge], stats, where: Mapping) -> tuple[str, ...]:
    """The statistics asked for (() for none), after refusing edges that have none (a kind
    without per-edge statistics says why, in its ``edge_shape``)."""
    names = statistics_wanted(stats)
    for edge in edges if names else ():
        try:
            edge.partials.edge_shape   # noqa: B018 - a kind without edges says why
        except ValueError as err:
            raise InputValueError(f"{where[edge.key]} {err}") from None
        if np.dtype(edge.partials.dtype).kind != "f":
            raise ValueError(f"{where[edge.key]}: message statistics need float messages, "
                             f"these are {np.dtype(edge.partials.dtype)}; keep the messages "
                             f"of an exact or mp network instead")
    return names


def check_gradient(where: str, name: str, grad: np.ndarray) -> None:
    """Refuse a non-finite parameter gradient, naming the layer (node), parameter and entry."""
    at = first_nonfinite(grad)
    if at is not None:
        raise NonFiniteError(f"{where}: the gradient of parameter {name} is {grad[at]} at "
                             f"index {at}")


def check_sums(where: str, incoming: np.ndarray) -> None:
    """Refuse non-finite messages, seen in the sums they make (a NaN message makes its
    receiver's sum NaN)."""
    at = first_nonfinite(incoming)
    if at is not None:
        raise NonFiniteError(f"{where} sent non-finite messages: the sum arriving at node "
                             f"{at[1]} of sample {at[0]} is {incoming[at]}")


# -- one layer ---------------------------------------------------------------------------

def piece_bytes(J: InputPartials, batch: int, budget_bytes: int, chunk_bytes: int,
                stats: bool = False) -> int:
    """The piece size for J's block: the chunk size within the budget (smaller while gathering
    statistics), and never less than the smallest piece, however small the options."""
    smallest = J.smallest_piece_bytes(batch)   # checked ≤ budget
    # a kind whose receivers sum each piece before scattering it (a window) gains from
    # large pieces: bench_conv.py measured 2.2x the floor at 4 MiB pieces, 1.2x at 64 MiB
    chunk = budget_bytes if J.large_pieces else chunk_bytes
    size = max(smallest, min(int(budget_bytes), int(chunk)))
    return max(smallest, min(size, STATS_CHUNK_BYTES)) if stats else size


def send_layer(J: InputPartials, incoming: np.ndarray, *, piece_bytes: int,
               rows: slice | None = None, keep: bool = False, chosen: np.ndarray | None = None,
               stats: MessageStats | None = None):
    """Send every message of one layer a piece at a time and let each receiver sum them.

    Parameters
    ----------
    J : InputPartials
        J^t of the layer.
    incoming : ndarray, shape (B, N_t)
        S^{t+1}, for the whole batch.
    piece_bytes : int
        The size of a piece (``piece_bytes()``).
    rows : slice, optional
        Send only these samples' messages (a chunk of the batch, for the dask backend).
    keep : bool
        Keep the block (as sent, read-only).
    chosen : ndarray of int, optional
        Keep only these samples' rows of it (a kind without independent samples is kept
        whole).
    stats : MessageStats, optional
        Fold every piece into these statistics as it is sent.

    Returns
    -------
    incoming : ndarray, shape (rows, N_{t-1})
        S^t, the sums of the receivers, for the samples ``rows``.
    block : ndarray of ``J.block_shape(...)``, or None when not kept
    samples : ndarray of int, or None
        The batch indices of the block's rows when only some were kept.
    """
    rows = slice(0, len(incoming)) if rows is None else rows
    count, dtype = rows.stop - rows.start, J.dtype
    pieces = list(J.pieces(rows, piece_bytes))
    whole = keep and (chosen is None or not J.samples_independent)
    block = np.empty(J.block_shape(count), dtype=dtype) if whole else None
    if keep and not whole:
        block = np.empty((len(chosen),) + J.block_shape(1)[1:], dtype=dtype)
        row_of = {int(b): i for i, b in enumerate(chosen)}
    largest = J.piece_shape(pieces[0])        # a kind yields its largest piece first
    scratch = None if whole else np.empty(largest, dtype=dtype)
    # S^t, for the samples ``rows``; zeros, for a kind whose pieces add into shared receivers
    S = np.zeros((J.receiver_rows(count), J.n_in), dtype=dtype)
    for piece in pieces:
        # where the piece sits in this call's arrays (rows counted from ``rows.start``)
        here = piece if rows.start == 0 else piece.shifted(-rows.start)
        if whole:
            out = block[J.piece_index(here)]
        else:
            shape = J.piece_shape(piece)
            if shape != largest and any(n > m for n, m in zip(shape, largest, strict=True)):
                raise ValueError(f"{type(J).__name__}.pieces yielded a piece {shape} larger "
                                 f"than its first {largest}: a kind yields its largest first")
            out = scratch if shape == largest else scratch[tuple(map(slice, shape))]
        messages = J.send(incoming, piece, out=out)          # δ^t = J^t · S^{t+1}
        if stats is not None:
            stats.update(messages, piece.receivers)
        J.receive_piece(messages, piece, S, rows.start)      # S^t = Σ_{n'} δ^t
        if keep and not whole:      # copy the chosen samples' rows, where the kind puts them
            band = slice(0, piece.receivers.stop - piece.receivers.start)
            for b in range(piece.rows.start, piece.rows.stop):
                if b in row_of:
                    row, k = row_of[b], b - piece.rows.start
                    block[J.piece_index(Piece(slice(row, row + 1), piece.receivers))] = \
                        messages[J.piece_index(Piece(slice(k, k + 1), band))]
    if block is not None:
        block.flags.writeable = False   # a trace is a record: its messages stay as sent
    return S, block, (None if whole or not keep else chosen)


# -- the in-memory backend ---------------------------------------------------------------

class StreamingSender:
    """Sends each edge's messages for msgpass.messages.pass_messages, under ``backward``'s
    options (checked here, before any work; see Sequential.backward for their meaning), and
    keeps what they ask for: the blocks, each sample's parameter messages, statistics.

    ``where`` describes each edge (by its key) and each parameter holder (by its node) in
    messages ("layer 3 (Affine(4→8))"); ``keep`` is "all", "sums" or a set of edge keys.
    """

    def __init__(self, steps: Sequence[Step], batch: int, where: Mapping | None = None, *,
                 keep="all", budget_bytes: int = DEFAULT_BUDGET_BYTES,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES, keep_samples=None,
                 per_sample: bool = False, stats=False) -> None:
        edges = all_edges(steps)
        self.where = where if where is not None else _Described()
        self.wanted = wanted_edges(edges, keep)
        self.kept_samples = kept_samples(keep_samples, batch)
        if self.kept_samples is not None and not self.wanted and not per_sample:
            raise ValueError("keep_samples chooses whose messages to keep, but keep='sums' "
                             "keeps none: name the layers (graph nodes) too, e.g. keep=[1], "
                             "keep_samples=[0]")
        check_memory_options(edges, batch, budget_bytes, chunk_bytes, self.where)
        names = check_statistics(edges, stats, self.where)
        self.batch, self.per_sample = batch, per_sample
        self.budget_bytes, self.chunk_bytes = budget_bytes, chunk_bytes
        self.gathered = {e.key: MessageStats.start(e.key, self.where[e.key], e.partials, names)
                         for e in edges} if names else {}
        self.blocks: dict = {}
        self.param_messages: dict = {}

    def parameter(self, node, name: str, K: ParamPartials, incoming: np.ndarray,
                  grad: np.ndarray) -> None:
        """Check a parameter's gradient; with ``per_sample``, keep K · S without the sum over
        samples: each (kept) sample's message to the parameter."""
        check_gradient(self.where[node], name, grad)
        if self.per_sample:
            # a node shared by every sample (batch 1 in a graph's batch of B) has one row:
            # its messages to its parameters are already summed over the samples
            shared = len(incoming) < self.batch
            message = K.per_sample(incoming, None if shared else self.kept_samples)
            message.flags.writeable = False
            self.param_messages[(node, name)] = message

    def __call__(self, edge: Edge, incoming: np.ndarray) -> np.ndarray:
        """Send the edge's messages from S = ``incoming``; return the sums (read-only)."""
        J, stats = edge.partials, self.gathered.get(edge.key)
        # a shared node's edge (one row for every sample) is kept whole, whatever samples
        chosen = self.kept_samples if len(incoming) == self.batch else None
        S, block, samples = send_layer(
            J, incoming, piece_bytes=piece_bytes(J, len(incoming), self.budget_bytes,
                                                 self.chunk_bytes, stats is not None),
            keep=edge.key in self.wanted, chosen=chosen, stats=stats)
        check_sums(self.where[edge.key], S)
        S.flags.writeable = False  # a trace is a record: its messages and sums stay as sent
        if block is not None:
            self.blocks[edge.key] = MessageBlock(edge.key, J, block, samples)
        return S

    def finish(self, incoming: dict, grads: dict) -> MessagePass:
        for S in incoming.values():
            S.flags.writeable = False
        return MessagePass(blocks=self.blocks, incoming=incoming, grads=grads,
                           param_messages=self.param_messages,
                           stats={k: stats.finished() for k, stats in self.gathered.items()},
                           kept_samples=self.kept_samples)


class _Described(dict):
    """Descriptions by key when none were given: "layer t" for a chain's."""

    def __missing__(self, key) -> str:
        return f"layer {key}"
