"""Training curves: loss and accuracy per epoch, from a finished training History."""

from __future__ import annotations

from matplotlib.figure import Figure

__all__ = ["draw_curves"]


def draw_curves(history, title: str = "") -> Figure:
    """Two panels: training and validation loss; training and validation accuracy."""
    epochs = history.column("epoch")
    fig = Figure(figsize=(8.0, 3.4), dpi=100)
    loss_ax, acc_ax = fig.subplots(1, 2)
    panels = [(loss_ax, "loss", [("loss", "o-", "training (running)"),
                                 ("val_loss", "s--", "validation")]),
              (acc_ax, "accuracy", [("accuracy", "o-", "training"),
                                    ("val_accuracy", "s--", "validation")])]
    for ax, ylabel, curves in panels:
        for key, style, label in curves:
            if any(v is not None for v in history.column(key)):
                ax.plot(epochs, history.column(key), style, ms=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    for ax in (loss_ax, acc_ax):
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
