"""Checkpoints: a network's parameters (with BatchNorm's running statistics), an optimizer's
state and a history's numbers, written atomically as .npz (never pickle) and refused, changing
nothing, when they belong to another network."""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataError, StateError

__all__ = ["save_checkpoint", "load_checkpoint"]


def _layer_state(net) -> dict[str, np.ndarray]:
    """State that is not a parameter but belongs in a checkpoint (``Layer.state``: BatchNorm's
    running mean and variance), keyed "t.name" ("2.running_mean")."""
    return {f"{t}.{name}": value for t, layer in enumerate(net.layers, 1)
            for name, value in layer.state().items()}


def save_checkpoint(path, net, optimizer=None, history=None) -> Path:
    """Parameters (and optimizer state, and the history's numbers) as .npz, written to a
    temporary file in the same directory and renamed over ``path``, so an interrupted save
    never leaves a broken file."""
    path = Path(path)
    arrays = {f"param/{key}": np.asarray(value) for key, value in net.params.items()}
    arrays |= {f"state/{key}": value for key, value in _layer_state(net).items()}
    arrays["meta/labels"] = np.array(net.labels)
    if optimizer is not None:
        arrays["meta/optimizer"] = np.array(type(optimizer).__name__)
        arrays |= {f"optim/{k}": v for k, v in optimizer.state_arrays().items()}
    if history is not None and history.rows:
        for key in ("epoch", "steps", "lr", "loss", "val_loss", "val_accuracy"):
            column = [np.nan if v is None else v for v in history.column(key)]
            arrays[f"history/{key}"] = np.array(column, dtype=float)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **arrays)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path, net, optimizer=None) -> dict[str, np.ndarray]:
    """Load parameters saved by ``save_checkpoint`` into ``net`` (and optimizer state into
    ``optimizer``). Refuses, changing nothing, a checkpoint of another architecture."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such checkpoint")
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: not a readable msgpass checkpoint ({err})") from None
    labels = [str(v) for v in arrays.get("meta/labels", np.array([]))]
    if labels != net.labels:
        raise DataError(f"{path}: a checkpoint of {' → '.join(labels) or 'an unknown network'}, "
                        f"not of this network ({' → '.join(net.labels)})")
    params = {key[len("param/"):]: value for key, value in arrays.items()
              if key.startswith("param/")}
    for key, value in net.params.items():
        if key not in params or params[key].shape != value.shape:
            shape = params[key].shape if key in params else "missing"
            raise DataError(f"{path}: parameter {key} is {shape}, the network's is "
                            f"{value.shape}")
    state = {key[len("state/"):]: value for key, value in arrays.items()
             if key.startswith("state/")}
    for key, value in _layer_state(net).items():
        if key in state and state[key].shape != value.shape:
            raise DataError(f"{path}: {key} is {state[key].shape}, the network's is "
                            f"{value.shape}")
    optimizer_state = {k[len("optim/"):]: v for k, v in arrays.items()
                       if k.startswith("optim/")}
    if optimizer is not None and optimizer_state and \
            str(arrays.get("meta/optimizer")) != type(optimizer).__name__:
        raise StateError(f"{path}: optimizer state of {arrays.get('meta/optimizer')}, not "
                         f"{type(optimizer).__name__}")
    for key, value in params.items():          # only now, when everything fits
        net.params[key] = value
    for key, value in state.items():           # BatchNorm's running statistics
        t, name = key.split(".", 1)
        net.layers[int(t) - 1].load_state({name: value})
    if optimizer is not None:
        optimizer.load_state_arrays(optimizer_state)
    return arrays
