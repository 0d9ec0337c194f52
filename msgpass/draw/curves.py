"""Training curves: loss and accuracy per epoch, from a finished training History."""

from __future__ import annotations

from matplotlib.figure import Figure

__all__ = ["draw_curves"]


def draw_curves(history, title: str = "") -> Figure:
    """Two panels: training and validation loss; training and validation accuracy."""
    epochs = history.column("epoch")
    fig = Figure(figsize=(8.0, 3.4), dpi=100)
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, history.column("loss"), "o-", ms=3, label="training (running)")
    if any(v is not None for v in history.column("val_loss")):
        loss_ax.plot(epochs, history.column("val_loss"), "s--", ms=3, label="validation")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss")
    loss_ax.legend(fontsize=8)
    if any(v is not None for v in history.column("accuracy")):
        acc_ax.plot(epochs, history.column("accuracy"), "o-", ms=3, label="training")
    if any(v is not None for v in history.column("val_accuracy")):
        acc_ax.plot(epochs, history.column("val_accuracy"), "s--", ms=3, label="validation")
    acc_ax.set_xlabel("epoch")
    acc_ax.set_ylabel("accuracy")
    acc_ax.legend(fontsize=8)
    for ax in (loss_ax, acc_ax):
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
