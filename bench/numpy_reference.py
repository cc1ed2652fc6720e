"""The reference every ratio is measured against: one MLP training step written by hand in NumPy.

Linear -> ReLU -> ... -> Linear, softmax cross-entropy averaged over the batch (one-hot targets), the backward
pass by hand, and plain SGD updating the weights in place. No tape, no bookkeeping, nothing kept between steps;
the input gradient of the first layer, which nothing needs, is not computed.

Weights are laid out as PyTorch and opreg lay them out: ``[W0, b0, W1, b1, ...]`` with ``W`` of shape
``(out, in)`` and ``b`` of shape ``(out,)``. Only Python number constants are used, so float32 weights and data
stay float32 throughout (NEP 50).
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def init_params(layer_sizes: list[int], rng: np.random.Generator, dtype: np.dtype) -> list[np.ndarray]:
    """``[W0, b0, W1, b1, ...]`` uniform in +-1/sqrt(in), as PyTorch and opreg initialise a Linear layer."""
    params = []
    for n_in, n_out in itertools.pairwise(layer_sizes):
        bound = 1 / math.sqrt(n_in)
        params.append(rng.uniform(-bound, bound, (n_out, n_in)).astype(dtype))
        params.append(rng.uniform(-bound, bound, n_out).astype(dtype))
    return params


def train_step(params: list[np.ndarray], x: np.ndarray, y: np.ndarray, lr: float) -> np.ndarray:
    """One SGD step on the batch ``(x, y)`` (``y`` one-hot), updating ``params`` in place; returns the loss."""
    weights, biases = params[0::2], params[1::2]
    last = len(weights) - 1

    layer_inputs = [x]  # the input of each Linear layer, kept for its backward
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        z = layer_inputs[-1] @ w.T + b
        if i < last:
            layer_inputs.append(np.maximum(z, 0.0))

    n = x.shape[0]
    shifted = z - z.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=1, keepdims=True)
    loss = -(y * (shifted - np.log(total))).sum() / n

    dz = (exp / total - y) / n  # d loss / d logits
    grads = []
    for i in range(last, -1, -1):
        grads.append((dz.T @ layer_inputs[i], dz.sum(axis=0)))
        if i > 0:
            dz = (dz @ weights[i]) * (layer_inputs[i] > 0)  # through Linear i, then through the ReLU before it

    for w, b, (dw, db) in zip(weights, biases, reversed(grads), strict=True):
        w -= lr * dw
        b -= lr * db
    return loss
