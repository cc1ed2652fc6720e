"""Activations: Identity, and ReLU, Sigmoid, Tanh, each :class:`OpModule` with its op fixed."""

from __future__ import annotations

from opreg.engine import Autograd
from opreg.nn.module import Module, Value
from opreg.nn.op_module import OpModule
from opreg.tensor import TensorEngine


class Identity(Module):
    """Returns its input unchanged, recording nothing: the gradient reaches the input as it is."""

    def forward(self, x: Value) -> Value:
        return x


class ReLU(OpModule):
    """``OpModule("relu")``: max(x, 0), with gradient 0 at 0 as PyTorch's."""

    op = "relu"

    def __init__(self, autograd_engine: Autograd | TensorEngine | None = None) -> None:
        super().__init__(self.op, autograd_engine)


class Sigmoid(OpModule):
    """``OpModule("sigmoid")``: 1 / (1 + exp(-x))."""

    op = "sigmoid"

    def __init__(self, autograd_engine: Autograd | TensorEngine | None = None) -> None:
        super().__init__(self.op, autograd_engine)


class Tanh(OpModule):
    """``OpModule("tanh")``."""

    op = "tanh"

    def __init__(self, autograd_engine: Autograd | TensorEngine | None = None) -> None:
        super().__init__(self.op, autograd_engine)
