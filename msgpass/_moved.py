"""Module paths of msgpass 0.8 that moved in 0.9, still importable where users' scripts name
them (``from msgpass.data import load_digits`` keeps working): each old name is the new
module itself. Those msgpass imports anyway are entered at once (so that importing one never
rebinds a name of the package, such as the function ``msgpass.compare``); the others are
imported when first asked for.

The packages ``verification`` and ``training`` are not called ``verify`` and ``train``
because the functions ``msgpass.verify`` and ``msgpass.train`` would hide them
(``import msgpass.verify.witness as w`` would fail); ``msgpass.verify.*`` and
``msgpass.train.*`` still import, as the old modules of those names did.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__all__ = ["MOVED", "PACKAGES", "install"]

MOVED = {
    "msgpass.checks": "msgpass.validate",
    "msgpass.compare": "msgpass.verification.compare",
    "msgpass.data": "msgpass.training.data",
    "msgpass.optim": "msgpass.training.optim",
    "msgpass.init": "msgpass.layers.initializers",
    "msgpass.sampling": "msgpass.testing",
    "msgpass.figures": "msgpass.gallery",
    "msgpass.draw.gallery": "msgpass.gallery",
    "msgpass.witnesses.backprop": "msgpass.witnesses.standard",
}
# whole packages under another name: msgpass.verify.compare is msgpass.verification.compare
PACKAGES = {
    "msgpass.verify": "msgpass.verification",
    "msgpass.train": "msgpass.training",
}


def new_name(old: str) -> str | None:
    """Where the module that 0.8 (or the issue's layout) called ``old`` lives now."""
    if old in MOVED:
        return MOVED[old]
    for before, now in PACKAGES.items():
        if old == before or old.startswith(before + "."):
            return now + old[len(before):]
    return None


class _OldPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module path and hands out the module that now lives elsewhere."""

    def __init__(self) -> None:
        self._specs: dict = {}

    def find_spec(self, name, path=None, target=None):
        if new_name(name) is None:
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        module = importlib.import_module(new_name(spec.name))
        self._specs[module.__name__] = module.__spec__   # the import system writes over it
        return module

    def exec_module(self, module):
        module.__spec__ = self._specs.pop(module.__name__)


def install() -> None:
    """Enter the old paths of modules already imported, and find the others when asked for
    (msgpass calls this last, once everything it imports is imported)."""
    for name in list(sys.modules):
        for before, now in PACKAGES.items():
            if name == now or name.startswith(now + "."):
                sys.modules.setdefault(before + name[len(now):], sys.modules[name])
    for old, new in MOVED.items():
        if new in sys.modules:
            sys.modules.setdefault(old, sys.modules[new])
    if not any(isinstance(finder, _OldPaths) for finder in sys.meta_path):
        sys.meta_path.append(_OldPaths())
