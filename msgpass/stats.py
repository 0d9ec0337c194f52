"""Statistics of every message of a layer, gathered piece by piece while the messages are sent,
so a pass can keep them (and the node sums) without keeping the messages.

Per edge (n ← n'), over the samples of the batch:

* ``mean``: the mean message (1/B) Σ_b δ^t_b[n ← n'];
* ``absmax``: the largest magnitude max_b |δ^t_b[n ← n']|.

Per layer, over every message:

* ``histogram``: how many messages have each binary order of magnitude. Bin e counts the
  messages with 2^e ≤ |δ| < 2^(e+1), read off the float's exponent bits (no rounding, no
  choice of bin edges, the same in every run and on every machine); one more bin, ``"zero"``,
  counts the messages below the smallest normal number (exact zeros, mostly: a dead ReLU's).

An edge of an elementwise (diagonal) layer is n ← n, so its per-edge statistics have shape
(N,); every other layer's have shape (N_{t-1}, N_t). Float messages only: exact and mp
numbers have no exponent bits to bin.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["STATISTICS", "MessageStats", "Statistics", "statistics_wanted"]

STATISTICS = ("mean", "absmax", "histogram")


def statistics_wanted(stats) -> tuple[str, ...]:
    """``stats`` as passed to ``backward``: False/None (none), True (all), or names."""
    if stats is None or stats is False:
        return ()
    if stats is True:
        return STATISTICS
    if isinstance(stats, str):
        stats = (stats,)
    if not isinstance(stats, Iterable):
        raise ValueError(f"stats must be True, False or a list of {list(STATISTICS)}, "
                         f"got {stats!r}")
    names = tuple(dict.fromkeys(stats))
    unknown = [name for name in names if name not in STATISTICS]
    if unknown or not names:
        raise ValueError(f"stats names {unknown or 'nothing'}; choose from {list(STATISTICS)}")
    return names


class Statistics(dict):
    """A trace's statistics by layer index; a layer without any says how to gather them."""

    def __missing__(self, t):
        if not self:
            raise KeyError("no message statistics in this trace: call backward(stats=True) "
                           "to gather them")
        which = "layer" if isinstance(t, int) else "edge"
        raise KeyError(f"no statistics of {which} {t!r}; the trace has {list(self)}")


def _exponent_layout(dtype: np.dtype) -> tuple[type, int, int, int]:
    """(unsigned int type of the same width, mantissa bits, exponent bits, exponent bias)."""
    info = np.finfo(dtype)
    unsigned = {4: np.uint32, 8: np.uint64, 2: np.uint16}[dtype.itemsize]
    bits = dtype.itemsize * 8 - 1 - info.nmant
    return unsigned, info.nmant, bits, (1 << (bits - 1)) - 1


@dataclass
class MessageStats:
    """The statistics of layer t's messages seen so far (see the module docstring).

    Attributes
    ----------
    t, label, kind : the layer, its name and its kind of local partials.
    names : which statistics are gathered (a subset of STATISTICS).
    samples : int
        How many samples' messages have been seen.
    total, absmax : ndarray of float64, shape ``J.edge_shape``: (N_{t-1}, N_t), or (N,) for
        a diagonal layer. The per-edge sum and largest magnitude (None when not gathered).
    counts : ndarray of int64, shape (2^exponent bits,)
        Messages per biased binary exponent: counts[0] are those below the smallest normal
        number, counts[k] those with 2^(k − bias) ≤ |δ| < 2^(k − bias + 1).
    """

    t: int
    label: str
    kind: str
    dtype: np.dtype
    edges: tuple[int, ...]
    names: tuple[str, ...]
    samples: int = 0
    total: np.ndarray | None = None
    absmax: np.ndarray | None = None
    counts: np.ndarray | None = None
    _scratch: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def start(cls, t: int, label: str, J, names: tuple[str, ...]) -> MessageStats:
        """Empty statistics for layer t's messages, sent from J^t (an InputPartials)."""
        dtype = np.dtype(J.dtype)
        if dtype.kind != "f":
            raise ValueError(f"layer {t} ({label}): message statistics need float messages, "
                             f"these are {dtype}; keep the messages of an exact or mp network "
                             f"instead")
        edges = J.edge_shape
        stats = cls(t=t, label=label, kind=J.kind, dtype=dtype, edges=edges, names=names)
        if "mean" in names:
            stats.total = np.zeros(edges)
        if "absmax" in names:
            stats.absmax = np.zeros(edges)
        if "histogram" in names:
            stats.counts = np.zeros(1 << _exponent_layout(dtype)[2], dtype=np.int64)
        return stats

    def update(self, message: np.ndarray, receivers: slice) -> None:
        """Fold in a piece of messages: shape (b, band, ...) (the kind's block for b samples
        and a band of receivers), for the receivers ``receivers`` of b samples. A sample
        counts once, when its first band (receivers.start == 0) arrives."""
        if receivers.start in (None, 0):
            self.samples += message.shape[0]
        # In place, into scratch reused across pieces: a fresh temporary per piece costs more
        # than the arithmetic (measured by python benchmarks/bench_scale.py --stats-only).
        if self.total is not None:    # Σ_b in float64 whatever the messages' dtype
            total = self.total[receivers]
            np.add(total, self._over_samples(np.add, message, np.float64), out=total)
        if self.absmax is None and self.counts is None:
            return
        magnitude = self._buffer("magnitude", message.shape, self.dtype)
        np.abs(message, out=magnitude)
        if self.absmax is not None:
            absmax = self.absmax[receivers]
            np.maximum(absmax, self._over_samples(np.maximum, magnitude, self.dtype), out=absmax)
        if self.counts is not None:
            unsigned, mantissa, _, _ = _exponent_layout(self.dtype)
            exponent = self._buffer("exponent", message.shape, unsigned)
            # the sign bit is clear after abs, so the shift leaves the biased exponent alone
            np.right_shift(magnitude.view(unsigned), mantissa, out=exponent)
            signed = exponent.view(np.dtype(unsigned.__name__.replace("u", "")))
            self.counts += np.bincount(signed.ravel(), minlength=self.counts.size)

    def _over_samples(self, ufunc, piece: np.ndarray, dtype) -> np.ndarray:
        """``ufunc`` reduced over the piece's samples (axis 0), into scratch."""
        if piece.shape[0] == 1:
            return piece[0]
        out = self._buffer(f"{ufunc.__name__}-reduced", piece.shape[1:], dtype)
        return ufunc.reduce(piece, axis=0, out=out, dtype=dtype)

    def _buffer(self, name, shape, dtype) -> np.ndarray:
        """Reused scratch of at least ``shape``: one allocation per pass, not per piece."""
        size = int(np.prod(shape))
        buffer = self._scratch.get(name)
        if buffer is None or buffer.size < size:
            buffer = self._scratch[name] = np.empty(size, dtype=dtype)
        return buffer[:size].reshape(shape)

    def merge(self, other: MessageStats) -> MessageStats:
        """The statistics of both sets of samples (e.g. two chunks of a batch)."""
        if (other.t, other.edges, other.names) != (self.t, self.edges, self.names):
            raise ValueError(f"cannot merge statistics of layer {other.t} {other.edges} into "
                             f"layer {self.t} {self.edges}")
        merged = MessageStats(t=self.t, label=self.label, kind=self.kind, dtype=self.dtype,
                              edges=self.edges, names=self.names,
                              samples=self.samples + other.samples)
        if self.total is not None:
            merged.total = self.total + other.total
        if self.absmax is not None:
            merged.absmax = np.maximum(self.absmax, other.absmax)
        if self.counts is not None:
            merged.counts = self.counts + other.counts
        return merged

    def finished(self) -> MessageStats:
        """Drop the scratch buffers (kept in a trace, or sent from a worker, they would only
        take memory) and make the statistics read-only."""
        self._scratch.clear()
        for array in (self.total, self.absmax, self.counts):
            if array is not None:
                array.flags.writeable = False
        return self

    @property
    def mean(self) -> np.ndarray:
        """Per-edge mean message over the samples seen, float64."""
        if self.total is None:
            raise ValueError(f"layer {self.t} ({self.label}): the mean was not gathered "
                             f"(stats={list(self.names)})")
        return self.total / self.samples

    @property
    def bias(self) -> int:
        return _exponent_layout(self.dtype)[3]

    def histogram(self) -> tuple[list, np.ndarray]:
        """The non-empty range of the magnitude histogram: (bins, counts), where a bin is the
        exponent e of [2^e, 2^(e+1)) or ``"zero"`` for the bin below the smallest normal."""
        if self.counts is None:
            raise ValueError(f"layer {self.t} ({self.label}): the histogram was not gathered "
                             f"(stats={list(self.names)})")
        used = np.flatnonzero(self.counts[1:]) + 1          # normal magnitudes seen
        bins, counts = [], np.zeros(0, dtype=np.int64)
        if used.size:
            first, last = int(used[0]), int(used[-1])
            bins = [e - self.bias for e in range(first, last + 1)]
            counts = self.counts[first:last + 1]
        if self.counts[0]:
            bins, counts = ["zero"] + bins, np.concatenate([self.counts[:1], counts])
        return bins, counts
