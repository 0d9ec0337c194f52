"""Training with message-passing gradients (or standard backprop, for comparison): the loop,
evaluation, and checkpoints written atomically as .npz (never pickle).

>>> history = mp.train(net, mp.optim.Adam(net.params, lr=1e-3), data, epochs=5,
...                    batch_size=64, validation=val)                    # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data import Dataset, minibatches
from .errors import DataError, StateError
from .witnesses.backprop import backprop

__all__ = ["train", "evaluate", "History", "save_checkpoint", "load_checkpoint", "BACKWARDS"]

BACKWARDS = ("messages", "backprop")


@dataclass
class History:
    """One row per epoch: epoch, steps, lr, loss (training, running mean over the epoch),
    train_loss and accuracy (after the epoch, on at most 10,000 training samples), val_loss,
    val_accuracy, seconds (the epoch's steps, without evaluation)."""

    rows: list[dict] = field(default_factory=list)
    interrupted: bool = False

    def column(self, key: str) -> list:
        return [row.get(key) for row in self.rows]

    @property
    def last(self) -> dict:
        return self.rows[-1] if self.rows else {}


def evaluate(net, data: Dataset, batch: int = 2000) -> tuple[float, float]:
    """(mean loss, accuracy) of the network on ``data`` in evaluation mode (no dropout);
    the loss layer's own forward, so nothing is kept for a backward."""
    was_training = any(getattr(layer, "training", False) for layer in net.layers)
    net.eval()
    try:
        total, correct = 0.0, 0
        loss_layer = net.layers[-1]
        for start in range(0, len(data), batch):
            x, y = data.x[start:start + batch], data.y[start:start + batch]
            logits = net.predict(x)
            losses, _ = loss_layer.forward(logits, y)
            total += float(np.sum(losses))
            correct += int(np.sum(np.argmax(logits, axis=1) == y))
        return total / len(data), correct / len(data)
    finally:
        if was_training:
            net.train()


def gradients(net, x: np.ndarray, y: np.ndarray, backward: str) -> tuple[float, dict]:
    """(batch loss, gradients) by the message pass (every message computed, only sums kept)
    or by standard backprop."""
    if backward == "messages":
        loss = net.forward(x, y)
        return float(loss), net.backward(keep="sums").grads
    result = backprop(net, x, y, input_grad=False)
    return float(result.loss), result.grads


def train(net, optimizer, data: Dataset, *, epochs: int = 1, batch_size: int = 100,
          backward: str = "messages", validation: Dataset | None = None, seed: int = 0,
          schedule: Callable[[int], float] | None = None, steps: int | None = None,
          checkpoint: str | os.PathLike | None = None,
          progress: Callable[[int, int, int, float], None] | None = None,
          on_epoch: Callable[[dict], None] | None = None) -> History:
    """Train ``net`` in place with ``optimizer`` on shuffled minibatches of ``data``.

    Parameters
    ----------
    backward : "messages" (default) or "backprop"
        Where the gradients come from. Both give the same trajectory up to round-off.
    validation : Dataset, optional
        Evaluated after every epoch.
    seed : int
        Seeds the minibatch order (one generator for the whole run).
    schedule : callable epoch → factor, optional
        The learning rate of epoch e is ``optimizer.base_lr * schedule(e)`` (msgpass.optim).
    steps : int, optional
        Stop after this many optimizer steps in all (the last epoch may be partial).
    checkpoint : path, optional
        Written atomically after every epoch; on Ctrl-C the last one stays, and the history
        so far is returned with ``interrupted`` set.
    progress : callable(epoch, step in epoch, steps in epoch, running loss), optional
    on_epoch : callable(row), optional
        Called with each epoch's row (the CLI prints it).
    """
    if backward not in BACKWARDS:
        raise ValueError(f"backward must be 'messages' or 'backprop', got {backward!r}")
    if len(data) == 0:
        raise DataError("the training data is empty")
    for label, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise DataError(f"{label} must be a positive integer, got {value!r}")
    if steps is not None and (not isinstance(steps, (int, np.integer)) or steps < 1):
        raise DataError(f"steps must be a positive integer, got {steps!r}")
    coupled = any(getattr(layer, "couples_samples", False) for layer in net.layers)
    rng = np.random.default_rng(seed)
    history = History()
    done = 0
    per_epoch = -(-len(data) // batch_size)
    # training accuracy on at most 10,000 samples (a fixed seeded subset of a large set)
    probe = data if len(data) <= 10000 else data.subset(
        np.random.default_rng(seed + 1).choice(len(data), 10000, replace=False))
    try:
        for epoch in range(epochs):
            if schedule is not None:
                optimizer.lr = optimizer.base_lr * schedule(epoch)
            start, total, seen = time.perf_counter(), 0.0, 0
            net.train()
            for i, index in enumerate(minibatches(len(data), batch_size, rng,
                                                  smallest=2 if coupled else 1)):
                x, y = data.x[index], data.y[index]
                loss, grads = gradients(net, x, y, backward)
                optimizer.step(grads)
                net.next_step()
                total += loss * len(index)
                seen += len(index)
                if progress is not None:
                    progress(epoch, i + 1, per_epoch, total / seen)
                done += 1
                if steps is not None and done >= steps:
                    break
            row = {"epoch": epoch + 1, "steps": done, "lr": optimizer.lr, "loss": total / seen,
                   "seconds": time.perf_counter() - start}
            row["train_loss"], row["accuracy"] = evaluate(net, probe)
            if validation is not None:
                row["val_loss"], row["val_accuracy"] = evaluate(net, validation)
            history.rows.append(row)
            if checkpoint is not None:
                save_checkpoint(checkpoint, net, optimizer, history)
            if on_epoch is not None:
                on_epoch(row)
            if steps is not None and done >= steps:
                break
    except KeyboardInterrupt:
        history.interrupted = True
    net.eval()
    return history


# -- checkpoints --------------------------------------------------------------------------

def _layer_state(net) -> dict[str, np.ndarray]:
    """State that is not a parameter but belongs in a checkpoint: BatchNorm's running mean
    and variance, keyed "t.running_mean" / "t.running_var"."""
    return {f"{t}.{name}": getattr(layer, name)
            for t, layer in enumerate(net.layers, 1)
            for name in ("running_mean", "running_var") if hasattr(layer, name)}


def save_checkpoint(path, net, optimizer=None, history: History | None = None) -> Path:
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
        setattr(net.layers[int(t) - 1], name, np.array(value, dtype=np.float64))
    if optimizer is not None:
        optimizer.load_state_arrays(optimizer_state)
    return arrays
