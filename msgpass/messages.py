"""The backward pass as message passing (DESIGN.md §1), in one short loop.

Node n' of layer t sends to node n of layer t−1 the message

    δ^t_{n←n'} = J^t[n, n'] · S^{t+1}_{n'},      S^{t+1}_{n'} = Σ_{n''} δ^{t+1}_{n'←n''},

its local partial times the sum of what arrived at it from above. Above the loss layer sits
the batch mean L = (1/B) Σ_b ℓ_b, so S^{T+1} = 1/B for every sample (the base case). Each node
sums its incoming messages; parameter gradients are the parameter partials K^t times the sums
arriving at the layer's output nodes.

This module knows only structured partials (msgpass.partials) and a sender: how a layer's
messages are cut, kept and summarised is msgpass.streaming's business.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .errors import StateError
from .partials import InputPartials, LocalPartials, ParamPartials

__all__ = ["MessageBlock", "MessagePass", "Sender", "pass_messages"]


def pass_messages(partials: Sequence[LocalPartials], seed: np.ndarray,
                  send: Sender) -> MessagePass:
    """Run the recursion from the loss (t = T) down to the input (t = 1).

    ``partials[t-1]`` holds J^t and K^t from the forward pass; ``seed`` is S^{T+1} (B, N_T),
    what arrives at the top layer from above (1/B per sample over a loss layer); ``send``
    sends each layer's messages and says what was kept (a Sender, below).
    """
    T = len(partials)
    incoming = {T + 1: seed}                                   # S^{T+1}
    grads: dict[tuple[int, str], np.ndarray] = {}
    for t in range(T, 0, -1):                                  # from the loss down
        J, S = partials[t - 1].inputs, incoming[t + 1]
        for name, K in partials[t - 1].params.items():
            grads[(t, name)] = K.gradient(S)                   # ∂L/∂θ^t = Σ_{n'} K^t · S^{t+1}
            send.parameter(t, name, K, S, grads[(t, name)])
        incoming[t] = send(t, J, S)                  # δ^t = J^t · S^{t+1}; S^t = Σ_{n'} δ^t
    return send.finish(incoming, grads)


class Sender(Protocol):
    """What ``pass_messages`` asks of the code that sends (msgpass.streaming.StreamingSender
    under a byte budget; the dask backend sends its own way)."""

    def __call__(self, t: int, J: InputPartials, incoming: np.ndarray) -> np.ndarray:
        """Send layer t's messages δ^t = J^t · S^{t+1} (``incoming``, (B, N_t)), let every
        receiver sum them, and return S^t, (B, N_{t-1})."""

    def parameter(self, t: int, name: str, K: ParamPartials, incoming: np.ndarray,
                  grad: np.ndarray) -> None:
        """See the gradient ``grad`` = K^t · S^{t+1} of parameter ``name`` of layer t."""

    def finish(self, incoming: dict[int, np.ndarray],
               grads: dict[tuple[int, str], np.ndarray]) -> MessagePass:
        """The pass's result: S^t for t = 1..T+1, the gradients, and what was kept."""


@dataclass(frozen=True)
class MessageBlock:
    """Every message of layer t: ``δ^t_{n←n'}`` for all samples b, receivers n, senders n'.

    Attributes
    ----------
    t : int
        Layer index, 1..T.
    partials : InputPartials
        J^t, the structured partials the block was sent from; says which (n, n') are edges.
    values : ndarray (a dask array for the dask backend's kept blocks)
        The stored messages, of shape ``partials.block_shape(B)``: (B, N_{t-1}, N_t), or
        (B, N) for a diagonal layer whose off-diagonal entries are non-edges carrying exact
        zeros. When only some samples were kept, B is their number and ``samples`` says
        which they are.
    samples : ndarray of int, or None
        The batch indices of the kept rows, in order; None when every sample was kept.
    """

    t: int
    partials: InputPartials
    values: np.ndarray
    samples: np.ndarray | None = None

    @property
    def layout(self) -> InputPartials:
        """The name of ``partials`` before 0.9."""
        return self.partials

    @property
    def kind(self) -> str:
        return self.partials.kind

    @property
    def receivers(self) -> int:
        """N_{t-1}: the nodes n of layer t−1 that receive."""
        return self.partials.n_in

    @property
    def senders(self) -> int:
        """N_t: the nodes n' of layer t that send."""
        return self.partials.n_out

    def dense(self) -> np.ndarray:
        """The block as a dense array of shape (B, N_{t-1}, N_t) (B: the kept samples)."""
        return self.partials.dense_messages(self.values)

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
    param_messages: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    kept_samples: np.ndarray | None = None
