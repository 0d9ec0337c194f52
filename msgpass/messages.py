"""The backward pass as message passing (DESIGN.md §1), in one short loop.

Node n' of layer t sends to node n of layer t−1 the message

    δ^t_{n←n'} = J^t[n, n'] · S^{t+1}_{n'},      S^{t+1}_{n'} = Σ_{n''} δ^{t+1}_{n'←n''},

i.e. its local partial times the sum of what arrived at it from above. Above the loss layer
sits the batch mean L = (1/B) Σ_b ℓ_b, so S^{T+1} = 1/B for every sample (the base case).
Each node sums its incoming messages; parameter gradients are the parameter partials times
the sums arriving at the layer's output nodes.

This module knows only structured partials (msgpass.partials); it knows nothing of layers
or networks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from .checks import first_nonfinite
from .errors import InputValueError, NonFiniteError, StateError
from .partials import InputPartials, LocalPartials
from .stats import MessageStats, statistics_wanted

__all__ = ["MessageBlock", "MessagePass", "pass_messages", "sum_incoming",
           "DEFAULT_BUDGET_BYTES", "DEFAULT_CHUNK_BYTES"]

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

@dataclass(frozen=True)
class MessageBlock:
    """Every message of layer t: ``δ^t_{n←n'}`` for all samples b, receivers n, senders n'.

    Attributes
    ----------
    t : int
        Layer index, 1..T.
    layout : InputPartials
        The structured partials the block was sent from; says which (n, n') are edges.
    values : ndarray (a dask array for the dask backend's kept blocks)
        The stored messages: shape (B, N_{t-1}, N_t), or (B, N) for a diagonal layer whose
        off-diagonal entries are non-edges carrying exact zeros. When only some samples were
        kept, B is their number and ``samples`` says which they are.
    samples : ndarray of int, or None
        The batch indices of the kept rows, in order; None when every sample was kept.
    """

    t: int
    layout: InputPartials
    values: np.ndarray
    samples: np.ndarray | None = None

    @property
    def kind(self) -> str:
        return self.layout.kind

    @property
    def receivers(self) -> int:
        """N_{t-1}: the nodes n of layer t−1 that receive."""
        return self.layout.n_in

    @property
    def senders(self) -> int:
        """N_t: the nodes n' of layer t that send."""
        return self.layout.n_out

    def dense(self) -> np.ndarray:
        """The block as a dense array of shape (B, N_{t-1}, N_t) (B: the kept samples)."""
        return self.layout.dense_messages(self.values)

    def row(self, sample: int) -> int:
        """Where batch sample ``sample`` (negative counts from the end) sits among the kept
        rows. IndexError outside the batch, StateError if the sample was not kept."""
        if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)):
            raise IndexError(f"a sample index must be an integer, got {sample!r}")
        if self.samples is None:
            batch = self.values.shape[0]
            if not -batch <= sample < batch:
                raise IndexError(f"sample {sample} is outside the batch of {batch} "
                                 f"(0..{batch - 1}, or negative from the end)")
            return int(sample) % batch
        where = np.flatnonzero(self.samples == sample)
        if where.size == 0:
            raise StateError(f"sample {sample} of layer {self.t}'s messages was not kept "
                           f"(kept: {self.samples.tolist()})")
        return int(where[0])


@dataclass(frozen=True)
class MessagePass:
    """What the message pass computed.

    Attributes
    ----------
    blocks : dict of int to MessageBlock
        The kept message blocks, by layer index t.
    incoming : dict of int to ndarray
        ``S^t`` of shape (B, N_{t-1}) for t = 1..T+1 (S^{T+1} = 1/B, shape (B, 1)).
    grads : dict of (int, str) to ndarray
        Parameter gradients by (layer index, parameter name).
    param_messages : dict of (int, str) to ndarray
        With ``per_sample=True``: each sample's messages to each parameter, shape
        (B, *parameter shape), summing over b to ``grads``. Empty otherwise.
    stats : dict of int to MessageStats
        With ``stats``: the statistics of every layer's messages (msgpass.stats).
    kept_samples : ndarray of int, or None
        With ``keep_samples``: the batch indices whose blocks and parameter messages were
        kept, in order.
    """

    blocks: dict[int, MessageBlock]
    incoming: dict[int, np.ndarray]
    grads: dict[tuple[int, str], np.ndarray]
    param_messages: dict[tuple[int, str], np.ndarray]
    stats: dict[int, MessageStats] = field(default_factory=dict)
    kept_samples: np.ndarray | None = None


def sum_incoming(message: np.ndarray, layout: InputPartials) -> np.ndarray:
    """``S_n = Σ_{n'} δ_{n←n'}``: each receiving node sums what arrives at it.

    message : (b, N_{t-1}, N_t), or (b, N) for a diagonal layout, where node n hears only
    from n' = n and its single message is its sum. Returns (b, N_{t-1}).
    """
    if layout.coupled:
        return layout.receive(message)
    if layout.diagonal:
        return message.copy()
    return message.sum(axis=2)


def _label(labels: Sequence[str] | None, t: int) -> str:
    return labels[t - 1] if labels else f"layer {t}"


def _pieces(batch: int, layout: InputPartials, itemsize: int,
            chunk_bytes: int) -> Iterator[tuple[slice, slice]]:
    """(samples, receivers) slices covering a block, each piece at most ``chunk_bytes``: whole
    samples while one sample fits, else one sample a band of receivers at a time."""
    if layout.coupled:   # every sample hears every sample: bands of features
        per_feature = batch * batch * itemsize
        band = max(1, chunk_bytes // per_feature)
        for start in range(0, layout.n_in, band):
            yield slice(0, batch), slice(start, min(start + band, layout.n_in))
        return
    per_receiver = (1 if layout.diagonal else layout.n_out) * itemsize
    per_sample = layout.n_in * per_receiver
    if per_sample <= chunk_bytes:
        step = min(batch, chunk_bytes // per_sample)
        for start in range(0, batch, step):
            yield slice(start, min(start + step, batch)), slice(0, layout.n_in)
        return
    band = max(1, chunk_bytes // per_receiver)
    # band by band, every sample's: the band's partials (and per-edge statistics) stay in
    # cache across the samples, where sample by sample would stream the whole block each time
    for start in range(0, layout.n_in, band):
        for sample in range(batch):
            yield slice(sample, sample + 1), slice(start, min(start + band, layout.n_in))


def _per_receiver(layout: InputPartials, batch: int, itemsize: int) -> int:
    """Bytes of the smallest piece: one receiver of one sample (one feature of a coupled
    layer, whose receivers hear from every sample)."""
    if layout.coupled:
        return batch * batch * itemsize
    return (1 if layout.diagonal else layout.n_out) * itemsize


def _kept_samples(samples, batch: int) -> np.ndarray | None:
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


def _wanted(keep, T: int) -> set[int]:
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


def check_gradient(t: int, label: str, name: str, grad: np.ndarray) -> None:
    """Refuse a non-finite parameter gradient, naming the layer, parameter and entry."""
    where = first_nonfinite(grad)
    if where is not None:
        raise NonFiniteError(f"layer {t} ({label}): the gradient of parameter {name} is "
                             f"{grad[where]} at index {where}")


def check_sums(t: int, label: str, sums: np.ndarray) -> None:
    """Refuse non-finite messages, seen in the sums they make (a NaN message makes its
    receiver's sum NaN)."""
    where = first_nonfinite(sums)
    if where is not None:
        raise NonFiniteError(f"layer {t} ({label}) sent non-finite messages: the sum arriving "
                             f"at node {where[1]} of sample {where[0]} is {sums[where]}")


def check_memory_options(partials, batch: int, budget_bytes, chunk_bytes, labels) -> None:
    """Refuse unusable byte options before any work (not at layer t of a long pass)."""
    for name, value in (("budget_bytes", budget_bytes), ("chunk_bytes", chunk_bytes)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{name} must be a positive number of bytes, got {value!r}")
    for t, local in enumerate(partials, 1):
        layout = local.inputs
        itemsize = np.dtype(layout.dtype).itemsize
        per_receiver = _per_receiver(layout, batch, itemsize)
        if per_receiver > budget_bytes:
            raise ValueError(
                f"layer {t} ({_label(labels, t)}): budget_bytes={budget_bytes:,} cannot hold "
                f"one receiver's {per_receiver // itemsize:,} messages ({per_receiver:,} "
                f"bytes)")


def check_statistics(partials, stats, labels) -> tuple[str, ...]:
    """The statistics asked for (() for none), after refusing layers that have none."""
    names = statistics_wanted(stats)
    for t, local in enumerate(partials, 1):
        if names and local.inputs.coupled:
            raise InputValueError(f"layer {t} ({_label(labels, t)}) couples the samples: message "
                                  f"statistics are per edge over independent samples; gather "
                                  f"them in eval mode or keep that layer's block instead")
        if names and np.dtype(local.inputs.dtype).kind != "f":
            raise ValueError(f"layer {t} ({_label(labels, t)}): message statistics need float "
                             f"messages, these are {np.dtype(local.inputs.dtype)}; keep the "
                             f"messages of an exact or mp network instead")
    return names


def start_statistics(partials, stats, labels) -> dict[int, MessageStats]:
    """Empty statistics for every layer, or {} without ``stats``."""
    names = check_statistics(partials, stats, labels)
    return {t: MessageStats.start(t, _label(labels, t), local.inputs, names)
            for t, local in enumerate(partials, 1)} if names else {}


def pass_messages(
    partials: Sequence[LocalPartials],
    batch: int,
    labels: Sequence[str] | None = None,
    keep: str | Iterable[int] = "all",
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    seed: np.ndarray | None = None,
    keep_samples: Iterable[int] | None = None,
    per_sample: bool = False,
    stats=False,
) -> MessagePass:
    """Run the message recursion from the loss (t = T) down to the input (t = 1).

    Every message is computed explicitly, a piece at a time, and summed by its receiver;
    ``keep`` only says which of them are also stored.

    Parameters
    ----------
    partials : sequence of LocalPartials, length T
        ``partials[t-1]`` holds J^t and K^t from the forward pass.
    batch : int
        B. The base sum arriving at the loss is 1/B per sample (the batch mean).
    labels : sequence of str, optional
        Names of the layers, for error messages.
    keep : "all", "sums" or iterable of int
        Which message blocks to keep: every one (default), none (only node sums and
        gradients), or those of the listed layers.
    budget_bytes : int
        Upper bound on the working memory of one piece of messages (default 64 MiB). Kept
        blocks are outside it: they are what the user asked to store. It must hold at least
        one receiver's messages of one sample (N_t numbers).
    chunk_bytes : int
        The piece size used within the budget, for speed (default 4 MiB, chosen by
        measurement); the effective piece is min(budget_bytes, chunk_bytes).
    seed : ndarray of shape (B, N_T), optional
        What arrives at the top layer's nodes from above. Default: 1/B per sample, the
        batch mean over a loss layer (N_T = 1). A graph's layered view passes its own.
    keep_samples : iterable of int, optional
        Keep the kept layers' blocks (and per-sample parameter messages) only for these
        samples (batch indices).
    per_sample : bool
        Also keep each sample's messages to each parameter (``param_messages``): B times
        the parameters' size, outside the budget, like kept blocks.
    stats : bool or list of str
        Gather statistics of every layer's messages as they are sent (msgpass.stats:
        "mean", "absmax", "histogram"; True for all): 2·N_{t-1}·N_t float64 per layer for
        the per-edge ones, outside the budget, and the messages need not be kept.

    Raises
    ------
    NonFiniteError
        If a layer's messages hold NaN or Inf (a NaN message makes its receiver's sum NaN).
    ValueError
        If ``keep``, ``keep_samples`` or ``budget_bytes`` is not usable.
    """
    T = len(partials)
    wanted = _wanted(keep, T)
    chosen = _kept_samples(keep_samples, batch)
    if chosen is not None and not wanted and not per_sample:
        raise ValueError("keep_samples chooses whose messages to keep, but keep='sums' keeps "
                         "none: name the layers too, e.g. keep=[1], keep_samples=[0]")
    check_memory_options(partials, batch, budget_bytes, chunk_bytes, labels)
    gathered = start_statistics(partials, stats, labels)
    dtype = partials[-1].inputs.dtype
    if seed is None:
        arriving = np.full((batch, 1), 1.0 / batch, dtype=dtype)  # S^{T+1} = ∂L/∂ℓ_b
    else:
        arriving = np.asarray(seed, dtype=dtype)
    incoming = {T + 1: arriving}
    blocks: dict[int, MessageBlock] = {}
    grads: dict[tuple[int, str], np.ndarray] = {}
    param_messages: dict[tuple[int, str], np.ndarray] = {}

    for t in range(T, 0, -1):
        local = partials[t - 1]
        layout = local.inputs
        for name, param_partials in local.params.items():
            grad = param_partials.gradient(arriving)
            check_gradient(t, _label(labels, t), name, grad)
            grads[(t, name)] = grad
            if per_sample:
                # K^t · S^{t+1} without the sum over samples: the message each sample sends
                # to each parameter (for Affine, x_b[i] · S_b[n']); only the kept samples'.
                message = param_partials.per_sample(arriving, chosen)
                message.flags.writeable = False
                param_messages[(t, name)] = message
        sums = _send_layer(t, layout, arriving, batch, budget_bytes, chunk_bytes, labels,
                           keep=t in wanted, chosen=chosen, blocks=blocks,
                           stats=gathered.get(t))
        check_sums(t, _label(labels, t), sums)
        sums.flags.writeable = False  # a trace is a record: its messages and sums stay as sent
        incoming[t] = sums
        arriving = sums
    return MessagePass(blocks=blocks, incoming=incoming, grads=grads,
                       param_messages=param_messages,
                       stats={t: gathered[t].finished() for t in sorted(gathered)},
                       kept_samples=chosen)


def _send_layer(t, layout, arriving, batch, budget_bytes, chunk_bytes, labels, *, keep, chosen,
                blocks, stats=None, offset=0):
    """Compute every message of layer t piece by piece, sum each receiver's, store the block
    in ``blocks`` if kept, fold each piece into ``stats`` if given; return the sums S^t,
    shape (B, N_{t-1}).

    ``arriving`` holds the B = ``batch`` samples ``offset``, ``offset`` + 1, … of the whole
    batch (a chunk of it, for the dask backend); the block and sums are those rows'."""
    itemsize = np.dtype(layout.dtype).itemsize
    per_receiver = _per_receiver(layout, batch, itemsize)   # checked ≤ budget
    # the smallest piece is one receiver of one sample, however small chunk_bytes is
    piece_bytes = max(per_receiver, min(int(budget_bytes), int(chunk_bytes)))
    if stats is not None:
        piece_bytes = max(per_receiver, min(piece_bytes, STATS_CHUNK_BYTES))
    shape = layout.message_shape(batch)
    pieces = list(_pieces(batch, layout, itemsize, piece_bytes))
    coupled = layout.coupled
    whole = keep and (chosen is None or coupled)   # a coupled block is kept for all samples
    kept = np.empty(shape, dtype=layout.dtype) if whole else None
    if keep and not whole:
        kept = np.empty((len(chosen),) + shape[1:], dtype=layout.dtype)
        row_of = {int(b): i for i, b in enumerate(chosen)}
    scratch = None
    if not whole:
        rows, receivers = pieces[0]
        band = receivers.stop - receivers.start
        scratch = np.empty((band, batch, batch) if coupled else
                           (rows.stop - rows.start, band) + shape[2:], dtype=layout.dtype)
    sums = np.empty((batch, layout.n_in), dtype=layout.dtype)
    for rows, receivers in pieces:
        if whole and coupled:
            out = kept[receivers]
        elif whole:
            out = kept[rows, receivers]
        elif coupled:
            out = scratch[: receivers.stop - receivers.start]
        else:
            out = scratch[: rows.stop - rows.start, : receivers.stop - receivers.start]
        where = slice(offset + rows.start, offset + rows.stop)   # rows of the whole batch
        message = layout.send(arriving[rows], where, out=out, receivers=receivers)  # δ^t
        if stats is not None:
            stats.update(message, receivers)
        if coupled:                # (features, B, B): node (b, j) sums over the samples b'
            sums[:, receivers] = layout.receive(message)
        elif layout.diagonal:      # node n hears only from n' = n: its message is its sum
            sums[rows, receivers] = message
        else:                      # S^t_n = Σ_{n'} δ^t_{n←n'}
            np.add.reduce(message, axis=2, out=sums[rows, receivers])
        if kept is not None and not whole:
            for b in range(rows.start, rows.stop):
                if b in row_of:
                    kept[row_of[b], receivers] = message[b - rows.start]
    if kept is not None:
        kept.flags.writeable = False
        blocks[t] = MessageBlock(t, layout, kept, None if whole else chosen)
    return sums
