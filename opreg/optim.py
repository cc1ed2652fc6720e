"""Plain stochastic gradient descent over ``(parameter, gradient)`` pairs, updated in place."""

from __future__ import annotations

from collections.abc import Iterable

from opreg.nn.module import Parameter


class SGD:
    """``p -= lr * grad`` for each pair; ``zero_grad`` zeroes the gradient arrays."""

    def __init__(self, parameters: Iterable[Parameter], lr: float) -> None:
        self.parameters = list(parameters)
        self.lr = lr

    def step(self) -> None:
        for param, grad in self.parameters:
            param -= self.lr * grad

    def zero_grad(self) -> None:
        for _, grad in self.parameters:
            grad.fill(0)
