"""Losses: softmax cross-entropy (from logits) and mean squared error. Both return a 0-d array."""

from __future__ import annotations

import numpy as np

from opreg import Register, Tensor, hookimpl

#: What a differentiable backward computes on: arrays, or Tensors when it is recorded.
Value = np.ndarray | Tensor


def _check_same_shape(what: str, a: np.ndarray, b: np.ndarray) -> None:
    """Refuse to broadcast a loss's operands: (N, 1) against (N,) would silently give a wrong loss."""
    if a.shape != b.shape:
        raise ValueError(f"{what} must have the same shape, got {a.shape} and {b.shape}")


def _softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, tuple]:
    """Mean over the batch of -sum(labels * log_softmax(logits)); labels are one-hot (or any distribution).

    Saves the exponentials and their row sums, from which backward gets the softmax with one division.
    """
    _check_same_shape("logits and labels", logits, labels)
    batch = logits.size // logits.shape[-1]
    shifted = logits - logits.max(axis=-1, keepdims=True)  # log-sum-exp: no overflow, no log(0)
    exp = np.exp(shifted)
    total = exp.sum(axis=-1, keepdims=True)
    return np.asarray(-(labels * (shifted - np.log(total))).sum() / batch), (exp, total)


def _softmax_cross_entropy_backward(
    g: np.ndarray, logits: np.ndarray, labels: np.ndarray, *, saved: tuple[np.ndarray, np.ndarray]
) -> tuple:
    """softmax * (row sum of labels) - labels, over the batch size: exact for label rows that do not sum to 1."""
    exp, total = saved
    batch = logits.size // logits.shape[-1]
    grad = exp / total  # a new array: saved values stay as they are, for a second backward with retain_graph
    grad *= labels.sum(axis=-1, keepdims=True)
    grad -= labels
    grad *= g / batch  # g is 0-d: one scalar multiplication, in place like the steps above
    return grad, None


def _one_hot_sample(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    logits = rng.standard_normal((4, 5))
    return logits, np.eye(5)[rng.integers(0, 5, size=4)]


def _mse(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Mean over all elements of (prediction - target) ** 2."""
    _check_same_shape("prediction and target", prediction, target)
    diff = prediction - target
    return np.asarray((diff * diff).mean())


def _mse_backward(g: Value, prediction: Value, target: Value) -> tuple:
    """Arrays, or Tensors when backward is recorded: operators alone, so both work (``differentiable_backward``)."""
    grad = g * 2 * (prediction - target) / prediction.size
    return grad, -grad


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="softmax_cross_entropy",
        inputs=("logits", "labels"),
        forward=_softmax_cross_entropy,
        backward=_softmax_cross_entropy_backward,
        saves_for_backward=True,
        differentiable=("logits",),
        sample_inputs=_one_hot_sample,
    )
    register(
        name="mse",
        inputs=("prediction", "target"),
        forward=_mse,
        backward=_mse_backward,
        differentiable_backward=True,
    )
