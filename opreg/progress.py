"""A dependency-free progress bar for training: redrawn in place on a terminal, one line per epoch otherwise."""

from __future__ import annotations

import sys
from typing import TextIO


class EpochProgress:
    """An ``on_batch`` callback that draws ``epoch 3/30 [#####-----] loss 0.1234``.

    On a terminal the line is redrawn after every batch; in a log or a pipe only each finished epoch is written,
    so CI logs stay short.
    """

    def __init__(self, epochs: int, stream: TextIO | None = None, width: int = 30) -> None:
        self.epochs = epochs
        self.stream = sys.stderr if stream is None else stream
        self.width = width
        self.live = self.stream.isatty()
        self._loss_sum = 0.0
        self._open_line = False

    def __call__(self, epoch: int, batch: int, n_batches: int, loss: float) -> None:
        self._loss_sum = loss if batch == 1 else self._loss_sum + loss
        done = batch == n_batches
        if not (self.live or done):
            return
        filled = self.width * batch // n_batches
        bar = "#" * filled + "-" * (self.width - filled)
        line = (
            f"epoch {epoch:>{len(str(self.epochs))}}/{self.epochs} [{bar}] loss {format_loss(self._loss_sum / batch)}"
        )
        self.stream.write(("\r" if self.live else "") + line + ("\n" if done else ""))
        self.stream.flush()
        self._open_line = not done

    def close(self) -> None:
        """End a line left open by a run stopped mid-epoch, so that a message after it starts a line of its own."""
        if self._open_line:
            self.stream.write("\n")
            self.stream.flush()
            self._open_line = False


def format_loss(loss: float) -> str:
    """Four decimals, as a loss is usually read; a diverging one (1e199) in scientific notation, not 200 digits."""
    return f"{loss:.4f}" if abs(loss) < 1e6 else f"{loss:.4g}"
