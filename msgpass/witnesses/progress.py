"""Progress of a long numerical witness: counted in forward evaluations, reported to stderr
only when the run is long (or to a callable the caller gives).

``progress`` as ``mp.verify`` takes it:

* ``None`` (default): quiet unless the run is long: once ``PROGRESS_AFTER`` seconds have
  passed and the evaluations still to do are projected to take more than that again, a line
  goes to stderr, then one every ``PROGRESS_EVERY`` seconds, and a last one when it ends.
  Short runs (tests, small graphs) print nothing.
* ``True``: those lines from the start, whatever the length; ``False``: never.
* a callable ``progress(done, total)``: called after every forward evaluation with the
  evaluations done and planned so far (``total`` grows when a stencil is split to find the
  samples that leave a function's domain, and shrinks when one stops early); nothing is
  printed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

__all__ = ["Progress", "PROGRESS_AFTER", "PROGRESS_EVERY"]

PROGRESS_AFTER = 5.0   # seconds: a run projected to be shorter prints nothing
PROGRESS_EVERY = 5.0   # seconds between two lines


class Progress:
    """Counts forward evaluations against a plan and reports them (see the module docstring).

    Parameters
    ----------
    total : int
        Forward evaluations planned.
    report : None, bool or callable(done, total)
    label : str
        What is running, at the start of each line.
    clock, stream : for tests (default ``time.monotonic`` and ``sys.stderr``)
    """

    def __init__(self, total: int, report: bool | Callable[[int, int], None] | None = None,
                 label: str = "verify: numerical witness", *, clock=time.monotonic,
                 stream=None) -> None:
        if not (report is None or isinstance(report, bool) or callable(report)):
            raise TypeError(f"progress must be None, True, False or a callable(done, total), "
                            f"got {report!r}")
        self.total, self.done = int(total), 0
        self.report, self.label = report, label
        self.clock, self.stream = clock, stream
        self.start = clock()
        self.last: float | None = None       # when the last line was printed

    def plan(self, more: int) -> None:
        """``more`` evaluations were added to the plan."""
        self.total += int(more)

    def step(self, evaluations: int, where: str = "") -> None:
        """``evaluations`` more were done (``where``: the node or parameter, for the line)."""
        self.done += int(evaluations)
        if callable(self.report):
            self.report(self.done, self.total)
            return
        if self.report is False:
            return
        now = self.clock()
        elapsed = now - self.start
        if self.last is None:
            left = elapsed / max(self.done, 1) * (self.total - self.done)
            if self.report is None and (elapsed < PROGRESS_AFTER or left < PROGRESS_AFTER):
                return
        elif now - self.last < PROGRESS_EVERY:
            return
        self.last = now
        self._line(elapsed, where)

    def finish(self) -> None:
        """The last line, if any was printed."""
        if self.last is not None and self.report is not False and not callable(self.report):
            self._print(f"{self.label}: {self.done:,} forward evaluations done in "
                        f"{self.clock() - self.start:.1f} s")

    def _line(self, elapsed: float, where: str) -> None:
        share = self.done / max(self.total, 1)
        left = elapsed / max(self.done, 1) * max(self.total - self.done, 0)
        at = f", at {where}" if where else ""
        self._print(f"{self.label}: {self.done:,} of {self.total:,} forward evaluations "
                    f"({share:.0%}){at}, about {left:.0f} s left")

    def _print(self, line: str) -> None:
        print(line, file=self.stream or sys.stderr, flush=True)
