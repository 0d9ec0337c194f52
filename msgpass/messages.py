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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .checks import first_nonfinite
from .errors import NonFiniteError
from .partials import InputPartials, LocalPartials

__all__ = ["MessageBlock", "MessagePass", "pass_messages", "sum_incoming", "DEFAULT_CHUNK_BYTES"]

# Messages are written and summed a group of samples at a time, so that each piece is still
# in cache when it is summed. 4 MiB measured best (python benchmarks/bench_messages.py
# --sweep-chunks: 1.39x the write floor against 1.45x at 1 MiB and 1.54x unchunked, for
# 784-100-10 at B = 100, i.e. 6 samples per chunk); each chunk is one vectorised operation.
DEFAULT_CHUNK_BYTES = 1 << 22


@dataclass(frozen=True)
class MessageBlock:
    """Every message of layer t: ``δ^t_{n←n'}`` for all samples b, receivers n, senders n'.

    Attributes
    ----------
    t : int
        Layer index, 1..T.
    layout : InputPartials
        The structured partials the block was sent from; says which (n, n') are edges.
    values : ndarray
        The stored messages: shape (B, N_{t-1}, N_t), or (B, N) for a diagonal layer whose
        off-diagonal entries are non-edges carrying exact zeros.
    """

    t: int
    layout: InputPartials
    values: np.ndarray

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
        """The block as a dense array of shape (B, N_{t-1}, N_t)."""
        return self.layout.dense_messages(self.values)


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
    """

    blocks: dict[int, MessageBlock]
    incoming: dict[int, np.ndarray]
    grads: dict[tuple[int, str], np.ndarray]


def sum_incoming(message: np.ndarray, layout: InputPartials) -> np.ndarray:
    """``S_n = Σ_{n'} δ_{n←n'}``: each receiving node sums what arrives at it.

    message : (b, N_{t-1}, N_t), or (b, N) for a diagonal layout, where node n hears only
    from n' = n and its single message is its sum. Returns (b, N_{t-1}).
    """
    if layout.diagonal:
        return message.copy()
    return message.sum(axis=2)


def _label(labels: Sequence[str] | None, t: int) -> str:
    return labels[t - 1] if labels else f"layer {t}"


def _chunk_rows(batch: int, bytes_per_sample: int, chunk_bytes: int) -> Iterable[slice]:
    step = max(1, min(batch, chunk_bytes // max(1, bytes_per_sample)))
    return (slice(start, min(start + step, batch)) for start in range(0, batch, step))


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


def pass_messages(
    partials: Sequence[LocalPartials],
    batch: int,
    labels: Sequence[str] | None = None,
    keep: str | Iterable[int] = "all",
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    seed: np.ndarray | None = None,
) -> MessagePass:
    """Run the message recursion from the loss (t = T) down to the input (t = 1).

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
        gradients), or those of the listed layers. Every message is computed either way.
    chunk_bytes : int
        Messages are computed and summed this many bytes of samples at a time.
    seed : ndarray of shape (B, N_T), optional
        What arrives at the top layer's nodes from above. Default: 1/B per sample, the
        batch mean over a loss layer (N_T = 1). A graph's layered view passes its own.

    Raises
    ------
    NonFiniteError
        If a layer's messages hold NaN or Inf (a NaN message makes its receiver's sum NaN).
    """
    T = len(partials)
    wanted = _wanted(keep, T)
    dtype = partials[-1].inputs.dtype
    if seed is None:
        arriving = np.full((batch, 1), 1.0 / batch, dtype=dtype)  # S^{T+1} = ∂L/∂ℓ_b
    else:
        arriving = np.asarray(seed, dtype=dtype)
    incoming = {T + 1: arriving}
    blocks: dict[int, MessageBlock] = {}
    grads: dict[tuple[int, str], np.ndarray] = {}

    for t in range(T, 0, -1):
        local = partials[t - 1]
        layout = local.inputs
        for name, param_partials in local.params.items():
            grad = param_partials.gradient(arriving)
            where = first_nonfinite(grad)
            if where is not None:
                raise NonFiniteError(
                    f"layer {t} ({_label(labels, t)}): the gradient of parameter {name} is "
                    f"{grad[where]} at index {where}")
            grads[(t, name)] = grad

        shape = layout.message_shape(batch)
        per_sample = int(np.prod(shape[1:])) * np.dtype(layout.dtype).itemsize
        kept = np.empty(shape, dtype=layout.dtype) if t in wanted else None
        scratch = None if kept is not None else np.empty(
            layout.message_shape(min(batch, max(1, chunk_bytes // per_sample))), layout.dtype)
        sums = np.empty((batch, layout.n_in), dtype=layout.dtype)
        for rows in _chunk_rows(batch, per_sample, chunk_bytes):
            out = kept[rows] if kept is not None else scratch[: rows.stop - rows.start]
            message = layout.send(arriving[rows], rows, out=out)   # δ^t for these samples
            sums[rows] = sum_incoming(message, layout)              # S^t = Σ_{n'} δ^t

        where = first_nonfinite(sums)
        if where is not None:
            raise NonFiniteError(
                f"layer {t} ({_label(labels, t)}) sent non-finite messages: the sum arriving "
                f"at node {where[1]} of sample {where[0]} is {sums[where]}")
        sums.flags.writeable = False  # a trace is a record: its messages and sums stay as sent
        if kept is not None:
            kept.flags.writeable = False
            blocks[t] = MessageBlock(t, layout, kept)
        incoming[t] = sums
        arriving = sums
    return MessagePass(blocks=blocks, incoming=incoming, grads=grads)
