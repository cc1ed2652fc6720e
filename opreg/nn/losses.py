"""Losses, called as ``criterion(y, y_hat)`` (targets first, as in the handout), each one registered op. The ops
take the targets last, as PyTorch's losses do (``softmax_cross_entropy(logits, labels)``, ``mse(y_hat, y)``):
each module swaps them."""

from __future__ import annotations

from opreg.nn.module import Module, Value


class SoftmaxCrossEntropy(Module):
    """Mean over the batch of the cross-entropy between one-hot targets ``y`` and ``softmax(y_hat)``."""

    def forward(self, y: Value, y_hat: Value) -> Value:
        return self.autograd_engine.apply("softmax_cross_entropy", y_hat, y)


class MSELoss(Module):
    """Mean over all elements of ``(y_hat - y) ** 2``."""

    def forward(self, y: Value, y_hat: Value) -> Value:
        return self.autograd_engine.apply("mse", y_hat, y)
