"""A residual MLP built as a graph, trained on the built-in digits by messages.

    python benchmarks/train_graph.py [--epochs 10]

Two Affine+ReLU branches read one hidden layer and are added before the output layer; Adam
(lr 1e-2), batch 64, the digits split 80/20 with seed 0. Prints each epoch's row (loss,
training and validation accuracy) and the time of the run; the README quotes the last row.
"""

from __future__ import annotations

import argparse
import time

import msgpass as mp
from msgpass.training.data import load_digits, split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    train_set, validation = split(load_digits(), 0.2, 0)
    g = mp.Graph()
    x = g.input("x", train_set.x[:2])
    h = mp.relu(mp.Affine(64, 64, seed=0)(x))
    branches = mp.relu(mp.Affine(64, 32, seed=1)(h)) + mp.relu(mp.Affine(64, 32, seed=2)(h))
    mp.SoftmaxCrossEntropy()(mp.Affine(32, 10, seed=3)(branches), target=train_set.y[:2])
    start = time.perf_counter()
    mp.train(g, mp.optim.Adam(g.params, lr=1e-2), train_set, epochs=args.epochs,
             batch_size=64, validation=validation,
             on_epoch=lambda row: print(f"epoch {row['epoch']:2d}  loss {row['loss']:.4f}  "
                                        f"train {row['accuracy']:.4f}  "
                                        f"validation {row['val_accuracy']:.4f}"))
    print(f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
