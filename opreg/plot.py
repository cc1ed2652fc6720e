"""Learning curves of a training run as a PNG: matplotlib is an optional extra (``pip install 'opreg[plot]'``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from opreg.errors import OpregError
from opreg.files import atomic_write, check_writable
from opreg.train import EpochStats


def check_can_plot(path: str | os.PathLike[str]) -> None:
    """Raise :class:`OpregError` unless :func:`plot_history` can write ``path``: matplotlib installed, a format
    it writes, a writable place. ``opreg train --plot`` asks before training, not after it."""
    _pyplot()
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    if _format(path) not in formats:
        choices = ", ".join(formats)
        raise OpregError(
            f"matplotlib cannot write .{_format(path)} files: end the plot's name in .png, or in {choices}"
        )
    check_writable(path)


def plot_history(history: Sequence[EpochStats], path: str | os.PathLike[str]) -> None:
    """Loss, and train and test accuracy, per epoch, side by side, saved to ``path`` (whole, or not at all: see
    :func:`opreg.files.atomic_write`) in the format its suffix names; PNG without one."""
    plt = _pyplot()
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
    try:
        with atomic_write(path) as file:
            figure.savefig(file, format=_format(path), dpi=100)
    finally:
        plt.close(figure)


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display is needed, or opened
        import matplotlib.pyplot as plt
    except ImportError:
        raise OpregError("plotting needs matplotlib, an optional extra: pip install 'opreg[plot]'") from None
    return plt


def _format(path: str | os.PathLike[str]) -> str:
    """The format ``path``'s suffix names (``curves.svg``: svg), as matplotlib reads it from a file name."""
    return os.path.splitext(os.fspath(path))[1][1:].lower() or "png"
