"""Learning curves of a training run as a PNG: matplotlib is an optional extra (``pip install 'opreg[plot]'``)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from opreg.errors import OpregError
from opreg.train import EpochStats


def plot_history(history: Sequence[EpochStats], path: str | os.PathLike[str]) -> None:
    """Loss, and train and test accuracy, per epoch, side by side, saved to ``path``."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display is needed, or opened
        import matplotlib.pyplot as plt
    except ImportError:
        raise OpregError("plotting needs matplotlib, an optional extra: pip install 'opreg[plot]'") from None
    epochs = range(1, len(history) + 1)
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    loss_axes.plot(epochs, [s.loss for s in history], color="tab:red")
    loss_axes.set(xlabel="epoch", ylabel="mean training loss", yscale="log", title="Loss")
    accuracy_axes.plot(epochs, [100 * s.train_accuracy for s in history], label="train")
    accuracy_axes.plot(epochs, [100 * s.test_accuracy for s in history], label="test")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    accuracy_axes.legend()
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
    figure.savefig(path, dpi=100)
    plt.close(figure)
