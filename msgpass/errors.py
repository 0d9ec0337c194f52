"""The error hierarchy. Every message names the layer or node and what was expected.

Each class also derives from the matching built-in exception, so ``except ValueError``
in a user's script keeps working.
"""

from __future__ import annotations


class MsgpassError(Exception):
    """Base class of every error msgpass raises on purpose."""


class ShapeError(MsgpassError, ValueError):
    """An array has the wrong shape (expected vs given is in the message)."""


class InputValueError(MsgpassError, ValueError):
    """A value is out of range: NaN or Inf in an input, a label outside 0..K-1, ..."""


class DtypeError(MsgpassError, TypeError):
    """An array is not of a real numeric dtype msgpass can compute with."""


class StateError(MsgpassError, RuntimeError):
    """A call came in the wrong order, e.g. ``backward`` before ``forward``."""


class NonFiniteError(MsgpassError, FloatingPointError):
    """A computation produced NaN or Inf; the message names the layer and the entry."""


class SpecError(MsgpassError, ValueError):
    """An architecture spec string could not be parsed."""


class GraphError(MsgpassError, ValueError):
    """A graph's structure is wrong: a cycle, a reference to a missing node, a duplicate name."""


class DataError(MsgpassError, ValueError):
    """A data file or checkpoint is missing, corrupt, truncated or for something else."""
