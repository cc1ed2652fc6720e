"""Losses: softmax cross-entropy (from logits) and mean squared error. Both return a 0-d array."""

from __future__ import annotations

import numpy as np

from opreg import Register, hookimpl


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    """log(softmax(logits)) along the last axis via log-sum-exp: no overflow, no log(0)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _check_same_shape(what: str, a: np.ndarray, b: np.ndarray) -> None:
    """Refuse to broadcast a loss's operands: (N, 1) against (N,) would silently give a wrong loss."""
    if a.shape != b.shape:
        raise ValueError(f"{what} must have the same shape, got {a.shape} and {b.shape}")


def _softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mean over the batch of -sum(labels * log_softmax(logits)); labels are one-hot (or any distribution)."""
    _check_same_shape("logits and labels", logits, labels)
    batch = logits.size // logits.shape[-1]
    return np.asarray(-(labels * _log_softmax(logits)).sum() / batch)


def _softmax_cross_entropy_backward(g: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> tuple:
    """softmax * (row sum of labels) - labels, over the batch size: exact for label rows that do not sum to 1."""
    batch = logits.size // logits.shape[-1]
    softmax = np.exp(logits - logits.max(axis=-1, keepdims=True))
    softmax /= softmax.sum(axis=-1, keepdims=True)
    softmax *= labels.sum(axis=-1, keepdims=True)
    softmax -= labels
    softmax *= g / batch  # g is 0-d: one scalar multiplication, done last, in place like the steps above
    return softmax, None


def _one_hot_sample(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    logits = rng.standard_normal((4, 5))
    return logits, np.eye(5)[rng.integers(0, 5, size=4)]


def _mse(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Mean over all elements of (prediction - target) ** 2."""
    _check_same_shape("prediction and target", prediction, target)
    diff = prediction - target
    return np.asarray((diff * diff).mean())


def _mse_backward(g: np.ndarray, prediction: np.ndarray, target: np.ndarray) -> tuple:
    grad = g * 2 * (prediction - target) / prediction.size
    return grad, -grad


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="softmax_cross_entropy",
        inputs=("logits", "labels"),
        forward=_softmax_cross_entropy,
        backward=_softmax_cross_entropy_backward,
        differentiable=("logits",),
        sample_inputs=_one_hot_sample,
    )
    register(
        name="mse",
        inputs=("prediction", "target"),
        forward=_mse,
        backward=_mse_backward,
    )
