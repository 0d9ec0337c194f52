"""The optional extra msgpass[scale]: its libraries are imported when first used, or a clear
error says what to install."""

from __future__ import annotations

import importlib

from ..errors import MsgpassError

__all__ = ["require", "EXTRA"]

EXTRA = 'pip install "msgpass[scale]"'


def require(module: str):
    """Import an optional dependency or say what to install."""
    try:
        imported = importlib.import_module(module)
    except ImportError:
        raise MsgpassError(f"this needs {module}, part of the optional extra: {EXTRA} (from "
                           f"a clone: pip install \".[scale]\"; Python >= 3.11)") from None
    if module == "zarr" and int(imported.__version__.split(".")[0]) < 3:
        raise MsgpassError(f"msgpass writes zarr format 3, which needs zarr >= 3 (found "
                           f"{imported.__version__}): pip install -U \"msgpass[scale]\"")
    return imported
