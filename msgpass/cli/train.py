"""``msgpass train``: train a network from the command line on the built-in digits (the
default, no download) or on MNIST, with message-passing gradients or standard backprop."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..spec import build_network, spec_input_shape
from ..training import BACKWARDS, evaluate, load_checkpoint, optim, train
from ..training.data import Dataset, Standardizer, load_digits, load_mnist, split
from ..validate import positive_int

DEFAULTS = {   # per data set: a network and recipe that learn it well
    "digits": {"arch": "64-64-relu-10-sce", "optimizer": "adam", "lr": 1e-3, "epochs": 15,
               "batch": 32, "init": "he_normal"},
    "mnist": {"arch": "784-256-relu-dropout0.2-10-sce", "optimizer": "adam", "lr": 1e-3,
              "epochs": 10, "batch": 100, "init": "he_normal"},
}
SCHEDULES = ("none", "step", "exponential", "cosine")


def add_parser(sub) -> None:
    t = sub.add_parser("train", help="train a network with message-passing gradients",
                       description=(
                           "Train a network on the built-in 8×8 digits (default) or MNIST. "
                           "Prints a line per epoch, saves checkpoint.npz (atomically, every "
                           "epoch), history.json and curves.png in --out. Ctrl-C stops and "
                           "keeps the last checkpoint."))
    t.add_argument("--data", choices=("digits", "mnist"), default="digits")
    t.add_argument("--mnist", metavar="DIR", help="MNIST directory (default $MSGPASS_MNIST)")
    t.add_argument("--arch", metavar="SPEC", help="architecture spec (default per data set: "
                   + "; ".join(f"{k}: {v['arch']}" for k, v in DEFAULTS.items()) + ")")
    t.add_argument("--optimizer", choices=sorted(optim.OPTIMIZERS), help="default adam")
    t.add_argument("--lr", type=float, help="learning rate (default 1e-3 for adam)")
    t.add_argument("--weight-decay", type=float, default=0.0, help="L2 on weights")
    t.add_argument("--l1", type=float, default=0.0, help="L1 on weights")
    t.add_argument("--schedule", choices=SCHEDULES, default="none",
                   help="learning-rate schedule over the epochs")
    t.add_argument("--epochs", type=int, help="default 15 (digits), 10 (mnist)")
    t.add_argument("--steps", type=int, help="stop after this many steps")
    t.add_argument("--batch", type=int, help="minibatch size")
    t.add_argument("--init", choices=("default", "xavier_normal", "xavier_uniform", "he_normal",
                                      "he_uniform"), help="weight initialisation")
    t.add_argument("--backward", choices=BACKWARDS, default="messages",
                   help="where gradients come from (default messages)")
    t.add_argument("--validation", type=float, default=0.1,
                   help="fraction of the training data held out (default 0.1)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--resume", metavar="CHECKPOINT", help="start from a saved checkpoint")
    t.add_argument("--out", default="msgpass-run", metavar="DIR",
                   help="where to write checkpoint.npz, history.json, curves.png")
    t.add_argument("--quiet", action="store_true", help="no progress bar")


def _data(args) -> tuple[Dataset, Dataset, Dataset | None]:
    """(train, validation, test or None), normalised with statistics of train only."""
    if args.data == "digits":
        full, test = load_digits(), None
    else:
        full, test = load_mnist("train", args.mnist), load_mnist("test", args.mnist)
    train_set, validation = split(full, args.validation, args.seed)
    # eps: a tenth of a pixel's range (digits 0..16, MNIST 0..1), see Standardizer
    scale = Standardizer.fit(train_set.x, eps=1.6 if args.data == "digits" else 0.1)

    def norm(d: Dataset) -> Dataset:
        return Dataset(scale(d.x), d.y, d.name, d.classes)
    return norm(train_set), norm(validation), None if test is None else norm(test)


class Progress:
    """A single-line progress bar on a terminal (tqdm-free); silent when not a terminal."""

    def __init__(self, epochs: int, enabled: bool) -> None:
        self.epochs, self.enabled = epochs, enabled and sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, epoch, step, per_epoch, loss) -> None:
        now = time.perf_counter()
        if not self.enabled or (now - self.last < 0.1 and step != per_epoch):
            return
        self.last = now
        filled = int(30 * step / per_epoch)
        sys.stderr.write(f"\repoch {epoch + 1}/{self.epochs} [{'#' * filled}{'.' * (30 - filled)}]"
                         f" {step}/{per_epoch} loss {loss:.4f}")
        if step == per_epoch:
            sys.stderr.write("\r" + " " * 79 + "\r")
        sys.stderr.flush()


def _refuse_to_overwrite(path: Path, net) -> None:
    """A run must not silently replace a checkpoint of another network."""
    if not path.exists():
        return
    try:
        with np.load(path, allow_pickle=False) as stored:
            labels = [str(v) for v in stored["meta/labels"]] if "meta/labels" in stored.files \
                else []
    except Exception:   # not a checkpoint we can read: do not overwrite it either
        labels = None
    if labels != net.labels:
        held = "an unreadable file" if labels is None else "a checkpoint of " + " → ".join(labels)
        raise DataError(f"{path} holds {held}, not of this network; choose another --out (or "
                        f"remove it)")


def run(args) -> int:
    chosen = DEFAULTS[args.data]
    arch = args.arch or chosen["arch"]
    epochs = args.epochs if args.epochs is not None else chosen["epochs"]
    batch = args.batch if args.batch is not None else chosen["batch"]
    for label, value in (("--epochs", epochs), ("--batch", batch), ("--steps", args.steps)):
        if value is not None:
            positive_int(value, label, DataError)
    for label, value, low in (("--lr", args.lr, "> 0"), ("--weight-decay", args.weight_decay,
                                                         "≥ 0"), ("--l1", args.l1, "≥ 0")):
        if value is not None and (not math.isfinite(value) or value < 0 or
                                  (low == "> 0" and value == 0)):
            raise DataError(f"{label} must be finite and {low}, got {value}")
    if not 0 < args.validation < 1:
        raise DataError(f"--validation must be a fraction between 0 and 1, got "
                        f"{args.validation}")
    train_set, validation, test = _data(args)
    wanted = spec_input_shape(arch)
    if train_set.x.shape[1] != int(np.prod(wanted)):
        raise DataError(f"the {args.data} inputs have {train_set.x.shape[1]} features, but "
                        f"--arch {arch!r} starts with {'x'.join(map(str, wanted))}")
    net = build_network(arch, seed=args.seed, init=args.init or chosen["init"])
    name = args.optimizer or chosen["optimizer"]
    lr = args.lr if args.lr is not None else (chosen["lr"] if name == chosen["optimizer"]
                                              else 0.1 if name in ("sgd", "momentum",
                                                                   "nesterov") else 1e-3)
    optimizer = optim.OPTIMIZERS[name](net.params, lr=lr, weight_decay=args.weight_decay,
                                       l1=args.l1)
    if args.resume:
        load_checkpoint(args.resume, net, optimizer)   # refuses another architecture
    _refuse_to_overwrite(Path(args.out) / "checkpoint.npz", net)
    schedule = {"none": None, "step": optim.StepLR(max(1, epochs // 3), 0.1),
                "exponential": optim.ExponentialLR(0.9),
                "cosine": optim.CosineLR(epochs)}[args.schedule]
    out = Path(args.out)
    print(f"training {net} on {args.data} ({len(train_set):,} train, {len(validation):,} "
          f"validation), {name} lr {lr:g}, batch {batch}, {epochs} epochs, gradients from "
          f"{args.backward}")

    def line(row: dict) -> None:
        print(f"epoch {row['epoch']:>3}  loss {row['loss']:.4f}  train acc "
              f"{row['accuracy']:.4f}  val loss {row['val_loss']:.4f}  val acc "
              f"{row['val_accuracy']:.4f}  lr {row['lr']:.2g}  {row['seconds']:.1f}s",
              flush=True)
    history = train(net, optimizer, train_set, epochs=epochs, batch_size=batch,
                    backward=args.backward, validation=validation, seed=args.seed,
                    schedule=schedule, steps=args.steps, checkpoint=out / "checkpoint.npz",
                    progress=Progress(epochs, not args.quiet), on_epoch=line)
    summary = {"arch": arch, "data": args.data, "backward": args.backward,
               "optimizer": name, "lr": lr, "batch": batch, "seed": args.seed,
               "epochs": history.rows, "interrupted": history.interrupted}
    if test is not None:
        summary["test_loss"], summary["test_accuracy"] = evaluate(net, test)
        print(f"test loss {summary['test_loss']:.4f}  test accuracy "
              f"{summary['test_accuracy']:.4f}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "history.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    if history.rows:
        from ..draw.curves import draw_curves
        from ..draw.style import save
        save(draw_curves(history, f"{arch} on {args.data}"), out / "curves.png")
    if history.interrupted:
        print(f"interrupted: the checkpoint of the last finished epoch is in "
              f"{out / 'checkpoint.npz'}", file=sys.stderr)
        return 130
    print(f"wrote {out / 'checkpoint.npz'}, {out / 'history.json'}, {out / 'curves.png'}")
    return 0


__all__ = ["add_parser", "run", "DEFAULTS"]
