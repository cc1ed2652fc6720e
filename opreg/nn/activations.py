"""Activations: Identity, and ReLU, Sigmoid, Tanh, each one registered op."""

from __future__ import annotations

from opreg.nn.module import Module, Value


class Identity(Module):
    """Returns its input unchanged, recording nothing: the gradient reaches the input as it is."""

    def forward(self, x: Value) -> Value:
        return x


class _OneOp(Module):
    """An activation that is exactly one registered elementwise op, named by ``op``."""

    op: str

    def forward(self, x: Value) -> Value:
        return self.autograd_engine.apply(self.op, x)


class ReLU(_OneOp):
    op = "relu"


class Sigmoid(_OneOp):
    op = "sigmoid"


class Tanh(_OneOp):
    op = "tanh"
