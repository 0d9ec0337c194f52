"""Checkpoints: a network's parameters (with BatchNorm's running statistics), an optimizer's
state and a history's numbers, written atomically as .npz (never pickle) and refused, changing
nothing, when they belong to another network.

Format 2 (``meta/format``) adds ``meta/sha256``, a digest of every other array's name, dtype,
shape and bytes, so that a flipped bit that still parses is found; checkpoints of format 1
(written before, without ``meta/format``) still load, guarded only by the zip's CRC-32."""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError, StateError

__all__ = ["save_checkpoint", "load_checkpoint", "FORMAT"]

FORMAT = 2              # 1: no meta/format, no checksum; 2: meta/sha256 over the other arrays
_CHECKED = ("meta/format", "meta/sha256")   # the arrays the digest does not cover


def _digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over every array but the checksum's own, in name order: name, dtype, shape and
    the bytes in C order."""
    sha = hashlib.sha256()
    for key in sorted(k for k in arrays if k not in _CHECKED):
        value = np.ascontiguousarray(arrays[key])
        sha.update(f"{key}\0{value.dtype.str}\0{value.shape}\0".encode())
        sha.update(value.tobytes())
    return sha.hexdigest()


def _layer_state(net) -> dict[str, np.ndarray]:
    """State that is not a parameter but belongs in a checkpoint (``Layer.state``: BatchNorm's
    running mean and variance), keyed "t.name" ("2.running_mean")."""
    return {f"{t}.{name}": value for t, layer in enumerate(net.layers, 1)
            for name, value in layer.state().items()}


def save_checkpoint(path, net, optimizer=None, history=None) -> Path:
    """Parameters (and optimizer state, and the history's numbers) as .npz with a sha256 of
    its arrays, written to a temporary file in the same directory, flushed to disk (fsync) and
    renamed over ``path`` (then the directory is synced where the system allows): a save that
    is interrupted, even killed, leaves the old checkpoint or the new one, never a broken
    file. A killed save may leave its temporary file (".{name}.*.tmp") beside it."""
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
    for key, value in arrays.items():
        if value.dtype.hasobject:
            raise DataError(f"{path}: cannot save {key} of dtype object without pickle, which "
                            f"msgpass checkpoints never hold")
    arrays["meta/format"] = np.array(FORMAT)
    arrays["meta/sha256"] = np.array(_digest(arrays))
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
    _sync_directory(path.parent)
    return path


def _sync_directory(directory: Path) -> None:
    """Make the rename durable: fsync the directory (POSIX; elsewhere there is no such call)."""
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def _looks_like(raw: bytes) -> str:
    """What a file that is not an .npz seems to be, for the error message."""
    if not raw:
        return "an empty file"
    if raw.startswith(b"\x93NUMPY"):
        return "a single .npy array (np.save), not the .npz that save_checkpoint writes"
    if raw[:1] == b"\x80" and raw[1:2] in b"\x02\x03\x04\x05":
        return "a Python pickle, which msgpass never loads (it could run any code)"
    if raw[:512].lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return "not an .npz (zip) file, it looks like an HTML page"
    return f"not an .npz (zip) file, it begins with {raw[:20]!r}"


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of the .npz at ``path``, never unpickling; DataError naming the file and
    what is wrong (not a zip, a damaged zip or array, an array that holds Python objects, a
    checksum that does not match, a format from a newer msgpass)."""
    arrays, key = {}, None
    with open(path, "rb") as stream:          # closed whatever happens: no ResourceWarning
        start = stream.read(512)
        if not start.startswith(b"PK\x03\x04"):
            raise DataError(f"{path}: not a msgpass checkpoint: {_looks_like(start)}")
        stream.seek(0)
        try:
            with zipfile.ZipFile(stream) as archive:
                for member in archive.namelist():
                    key = member.removesuffix(".npy")
                    with archive.open(member) as item:
                        version = np.lib.format.read_magic(item)
                        reader = {(1, 0): np.lib.format.read_array_header_1_0,
                                  (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                        if reader is not None and reader(item)[2].hasobject:
                            raise DataError(f"{path}: its array {key} holds Python objects (a "
                                            f"pickle); msgpass never unpickles: refused")
                    with archive.open(member) as item:
                        arrays[key] = np.lib.format.read_array(item, allow_pickle=False)
        except DataError:
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError,
                KeyError, NotImplementedError, UnicodeError, RuntimeError, zlib.error) as err:
            where = f"its array {key} is damaged" if key is not None else \
                "a damaged .npz (zip) file"
            raise DataError(f"{path}: not a readable msgpass checkpoint: {where} "
                            f"({type(err).__name__}: {err}); it was truncated or corrupted") \
                from None
    return _check_format(path, arrays)


def _check_format(path: Path, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if "meta/format" not in arrays:                # format 1: no checksum to check
        return arrays
    try:
        fmt = int(arrays["meta/format"])
    except (TypeError, ValueError):
        raise DataError(f"{path}: corrupt: meta/format is {arrays['meta/format']!r}") from None
    if fmt > FORMAT:
        raise DataError(f"{path}: a checkpoint of format {fmt}, written by a newer msgpass; "
                        f"this one reads formats 1 and {FORMAT}")
    if str(arrays.get("meta/sha256")) != _digest(arrays):
        raise DataError(f"{path}: corrupt: its arrays do not match the sha256 recorded when it "
                        f"was saved (a flipped bit, a lost array or an edited file)")
    return arrays


def load_checkpoint(path, net, optimizer=None) -> dict[str, np.ndarray]:
    """Load parameters saved by ``save_checkpoint`` into ``net`` (and optimizer state into
    ``optimizer``). Refuses, changing nothing, a checkpoint of another architecture, and raises
    DataError naming the file for one that is truncated, corrupt (its sha256 does not match)
    or not a checkpoint. Never unpickles: an array of Python objects is refused."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such checkpoint")
    arrays = _read_arrays(path)
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
