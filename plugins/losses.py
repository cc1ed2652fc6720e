"""Losses: softmax cross-entropy (from logits) and mean squared error. Both return a 0-d array."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Register, constant, divide_by_count, hookimpl


def _check_same_shape(what: str, a: np.ndarray, b: np.ndarray) -> None:
    """Refuse to broadcast a loss's operands: (N, 1) against (N,) would silently give a wrong loss."""
    if a.shape != b.shape:
        raise ValueError(f"{what} must have the same shape, got {a.shape} and {b.shape}")


def _softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, tuple[Any, Any]]:
    """Mean over the batch of -sum(labels * log_softmax(logits)); labels are one-hot (or any distribution).

    Saves the exponentials and their row sums, from which backward gets the softmax with one division. The sum
    is taken in float32 at least (a float16 sum may pass 65,504) and the loss returned in the terms' dtype; one
    sum and one division, where ``np.mean`` costs microseconds of Python on a small batch.
    """
    _check_same_shape("logits and labels", logits, labels)
    batch = logits.size // logits.shape[-1]
    shifted = logits - logits.max(axis=-1, keepdims=True)  # log-sum-exp: no overflow, no log(0)
    exp = np.exp(shifted)
    total = exp.sum(axis=-1, keepdims=True)
    terms = labels * (shifted - np.log(total))
    if terms.dtype.itemsize >= 4:
        return np.asarray(-terms.sum() / batch), (exp, total)
    return np.asarray(-terms.sum(dtype=np.float32) / batch, dtype=terms.dtype), (exp, total)


def _softmax_cross_entropy_backward(
    g: Any, logits: Any, labels: Any, *, saved: tuple[Any, Any] | None
) -> tuple[Any, None]:
    """softmax * (row sum of labels) - labels, over the batch size: exact for label rows that do not sum to 1.

    ``saved`` is None when this backward is itself differentiated: the softmax is then computed again from the
    logits with registered ops (the shift by the row max is a constant, whose derivative cancels).
    """
    batch = logits.size // logits.shape[-1]
    if saved is None:
        exp = onp.exp(logits - constant(logits).max(axis=-1, keepdims=True))
        softmax = exp / onp.sum(exp, axis=-1, keepdims=True)
        return (softmax * onp.sum(labels, axis=-1, keepdims=True) - labels) * divide_by_count(g, batch), None
    exp, total = saved
    grad = exp / total  # a new array: saved values stay as they are, for a second backward with retain_graph
    grad *= labels.sum(axis=-1, keepdims=True)
    grad -= labels
    grad *= divide_by_count(g, batch)  # g is 0-d: one scalar multiplication, in place like the steps above
    return grad, None


def _one_hot_sample(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    logits = rng.standard_normal((4, 5))
    return logits, np.eye(5)[rng.integers(0, 5, size=4)]


def _torch_softmax_cross_entropy(torch: ModuleType) -> Any:
    """torch's cross_entropy with probability targets (the mean over the batch), over every leading axis."""

    def loss(logits: Any, labels: Any) -> Any:
        classes = logits.shape[-1]
        return torch.nn.functional.cross_entropy(logits.reshape(-1, classes), labels.reshape(-1, classes))

    return loss


def _mse(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Mean over all elements of (prediction - target) ** 2."""
    _check_same_shape("prediction and target", prediction, target)
    diff = prediction - target
    return np.asarray((diff * diff).mean())


def _mse_backward(g: Any, prediction: Any, target: Any) -> tuple[Any, Any]:
    grad = divide_by_count(g * 2 * (prediction - target), prediction.size)
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
        reference=_torch_softmax_cross_entropy,
    )
    register(
        name="mse",
        inputs=("prediction", "target"),
        forward=_mse,
        backward=_mse_backward,
        reference="torch.nn.functional.mse_loss",
    )
