"""The base of every module: it holds the engine its ops are recorded on, and calling it runs ``forward``."""

from __future__ import annotations

from typing import Any

import numpy as np

from opreg.engine import Autograd

#: A parameter and the array its gradient accumulates in, e.g. ``(linear.W, linear.dW)``.
Parameter = tuple[np.ndarray, np.ndarray]


class Module:
    """A piece of a model whose forward records registered ops on ``autograd_engine``."""

    def __init__(self, autograd_engine: Autograd) -> None:
        self.autograd_engine = autograd_engine

    def __call__(self, *args: Any) -> np.ndarray:
        return self.forward(*args)

    def forward(self, *args: Any) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    def parameters(self) -> list[Parameter]:
        """The ``(parameter, gradient)`` pairs of this module and the modules inside it."""
        return []

    def zero_grad(self) -> None:
        """Set the gradient arrays of :meth:`parameters` to zero, in place."""
        for _, grad in self.parameters():
            grad.fill(0)
