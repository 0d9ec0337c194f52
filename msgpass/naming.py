"""The names a model shows its parameters under, when they are not msgpass's own.

A network keys its parameters "t.name" (layer t's), a graph "node.name". An imported model
shows them under the names of the library it came from (PyTorch's ``named_parameters()``,
"layer1.0.conv1.weight") and in that library's shapes (a Linear weight (out, in), where
msgpass's Affine stores (in, out)). ``names`` maps msgpass's key to (the shown name,
transposed); everything that hands out parameters or their gradients goes through here, so
that the model, its traces and the witnesses agree.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["shown", "shown_all", "internal_keys"]


def shown(names: Mapping | None, key: str, array=None):
    """(the shown key, the array as shown) for msgpass's ``key``: the last two axes swapped for
    a transposed parameter (so a per-sample array (B, in, out) shows as (B, out, in) too)."""
    if not names or key not in names:
        return key, array
    name, transposed = names[key]
    if array is None or not transposed:
        return name, array
    return name, np.swapaxes(array, -1, -2)


def shown_all(names: Mapping | None, arrays: Mapping) -> dict:
    """A dict of msgpass keys to arrays, as shown."""
    return dict(shown(names, key, array) for key, array in arrays.items())


def internal_keys(names: Mapping | None) -> dict:
    """Shown key → msgpass's key (identity for keys not renamed)."""
    return {name: key for key, (name, _) in (names or {}).items()}
