"""Training: the loop (``train``, ``evaluate``), the optimizers and learning-rate schedules
(``optim``), the data (``data``: MNIST, the built-in 8×8 digits in digits.csv.gz,
standardisation, splits, minibatches) and checkpoints."""

from . import data, optim
from .checkpoints import load_checkpoint, save_checkpoint
from .loop import BACKWARDS, History, evaluate, gradients, train

__all__ = ["train", "evaluate", "gradients", "History", "BACKWARDS", "save_checkpoint",
           "load_checkpoint", "data", "optim"]
