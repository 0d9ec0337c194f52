"""Training with message-passing gradients (or standard backprop, for comparison): the loop
and evaluation.

>>> history = mp.train(net, mp.optim.Adam(net.params, lr=1e-3), data, epochs=5,
...                    batch_size=64, validation=val)                    # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError, StateError
from ..graph import Graph
from ..network import Sequential
from ..validate import positive_int
from ..witnesses.graph import graph_backprop
from ..witnesses.standard import backprop
from .checkpoints import save_checkpoint
from .data import Dataset, minibatches

__all__ = ["train", "evaluate", "gradients", "History", "BACKWARDS"]

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


def labelled(data: Dataset, what: str) -> Dataset:
    """``data`` if it is what training and ``evaluate`` read: inputs x (N, ...) and integer
    labels y (N,) (accuracy is argmax == label); else a DataError naming ``what``."""
    x, y = np.asarray(data.x), np.asarray(data.y)
    if y.ndim != 1 or x.ndim < 2 or len(x) != len(y):
        raise DataError(f"{what} must hold inputs x of shape (N, ...) and integer labels y of "
                        f"shape (N,), got x {x.shape} and y {y.shape}")
    if y.dtype.kind not in "iub" and not (y.dtype.kind == "f" and np.all(y == np.round(y))):
        raise DataError(f"{what}: labels y must be integers, got dtype {y.dtype}")
    return data


def evaluate(net, data: Dataset, batch: int = 2000) -> tuple[float, float]:
    """(mean loss, accuracy) of the network on ``data`` in evaluation mode (no dropout);
    the loss layer's own forward, so nothing is kept for a backward."""
    labelled(data, "the data to evaluate")
    was_training = any(layer.training for layer in net.layers)
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


def gradients(net, x: np.ndarray, y: np.ndarray, backward: str) -> tuple[float, dict, list]:
    """(batch loss, gradients, what each layer's forward saved) by the message pass (every
    message computed, only sums kept) or by standard backprop. ``net`` is a Sequential, or
    a Graph whose output is a loss layer node (the gradients of its batch mean)."""
    if isinstance(net, Graph):
        loss = net.forward(x, y)
        if backward == "messages":
            grads = net.backward(keep="sums", seed="mean").grads
        else:
            grads = graph_backprop(net, net.record.output, seed="mean").params
        # a parameter on a side branch that does not reach the loss has gradient zero
        grads = {key: grads[key] if key in grads else np.zeros_like(value)
                 for key, value in net.params.items()}
        return float(loss), grads, net.record.saved
    if backward == "messages":
        loss = net.forward(x, y)
        return float(loss), net.backward(keep="sums").grads, net.record.saved
    result = backprop(net, x, y, input_grad=False)
    return float(result.loss), result.grads, result.saved


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
    labelled(data, "the training data")
    if validation is not None:
        labelled(validation, "the validation data")
    for label, value in (("epochs", epochs), ("batch_size", batch_size)) + (
            (("steps", steps),) if steps is not None else ()):
        positive_int(value, label, DataError)
    if isinstance(net, Graph):
        net.loss_output()   # a StateError saying what is needed, before any work
        if len(net.inputs()) != 1:
            raise StateError(f"mp.train feeds data.x to the graph's one input; this graph has "
                             f"inputs {net.inputs()} (make the others constants: "
                             f"g.constant(value))")
    elif not isinstance(net, Sequential):
        raise TypeError(f"mp.train trains a Sequential or a Graph with a loss output, got "
                        f"{type(net).__name__}")
    coupled = any(layer.couples_samples for layer in net.layers)
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
                loss, grads, saved = gradients(net, x, y, backward)
                optimizer.step(grads)
                net.next_step(saved)
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
