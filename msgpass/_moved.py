"""Module paths of msgpass 0.8 that moved in 0.9, still importable where users' scripts name
them (``from msgpass.data import load_digits`` keeps working): each old name is the new
module itself. Those msgpass imports anyway are entered at once (so that importing one never
rebinds a name of the package, such as the function ``msgpass.compare``); the others are
imported when first asked for."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__all__ = ["MOVED", "install"]

MOVED = {
    "msgpass.checks": "msgpass.validate",
    "msgpass.compare": "msgpass.verify.compare",
    "msgpass.data": "msgpass.train.data",
    "msgpass.optim": "msgpass.train.optim",
    "msgpass.init": "msgpass.layers.initializers",
    "msgpass.sampling": "msgpass.testing",
    "msgpass.figures": "msgpass.draw.gallery",
    "msgpass.cli_train": "msgpass.cli.train",
}


class _OldPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module path and hands out the module that now lives elsewhere."""

    def __init__(self) -> None:
        self._specs: dict = {}

    def find_spec(self, name, path=None, target=None):
        if name not in MOVED:
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        module = importlib.import_module(MOVED[spec.name])
        self._specs[module.__name__] = module.__spec__   # the import system writes over it
        return module

    def exec_module(self, module):
        module.__spec__ = self._specs.pop(module.__name__)


def install() -> None:
    """Enter the old paths of modules already imported, and find the others when asked for
    (msgpass calls this last, once everything it imports is imported)."""
    for old, new in MOVED.items():
        if new in sys.modules:
            sys.modules.setdefault(old, sys.modules[new])
    if not any(isinstance(finder, _OldPaths) for finder in sys.meta_path):
        sys.meta_path.append(_OldPaths())
