"""Losses averaged over all elements, as torch's default reduction="mean": binary cross-entropy from logits, and
the Huber loss. Both return a 0-d array, and refuse operands of different shapes (as torch does) rather than
broadcast them into a silently wrong loss. Both backwards are written with registered ops (``opreg.ops.sigmoid``,
:mod:`opreg.numpy`'s ``where``), operators and comparisons, so they can be differentiated again.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import opreg.numpy as onp
import opreg.ops
from opreg.plugin import Register, Sample, divide_by_count
from opreg_contrib_ops._common import check_same_shape

# binary cross-entropy with logits


def _bce_with_logits(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Mean of -t log(sigmoid(x)) - (1 - t) log(1 - sigmoid(x)), from logits, finite for any |x|.

    Written as max(x, 0) - x t + log(1 + exp(-|x|)): no exp overflows, and no log(0) at |x| = 1000 where
    sigmoid itself rounds to 0 or 1.
    """
    check_same_shape("logits and targets", logits, targets)
    return np.asarray(np.mean(np.maximum(logits, 0) - logits * targets + np.log1p(np.exp(-np.abs(logits)))))


def _bce_with_logits_backward(g: Any, logits: Any, targets: Any) -> tuple[Any, Any]:
    """(sigmoid(x) - t) / n for the logits; -x / n for the targets (soft labels can be learned, as in torch)."""
    n = logits.size
    return divide_by_count(g * (opreg.ops.sigmoid(logits) - targets), n), divide_by_count(g * -logits, n)


def _bce_samples(rng: np.random.Generator) -> list[Sample]:
    """Soft targets in (0, 1); the loss is smooth in both inputs everywhere, so no point needs avoiding."""
    return [
        Sample(rng.standard_normal((3, 4)) * 3.0, rng.uniform(0.0, 1.0, size=(3, 4))),
        Sample(rng.standard_normal((5,)) * 3.0, rng.integers(0, 2, size=(5,)).astype(np.float64)),
    ]


# Huber


def _check_delta(delta: float) -> float:
    delta = float(delta)  # a Python float: an np.float64 delta would promote float32 operands
    if not delta > 0:
        raise ValueError(f"delta must be positive, got {delta}")
    return delta


def _huber(prediction: np.ndarray, target: np.ndarray, *, delta: float = 1.0) -> np.ndarray:
    """Mean of d^2 / 2 where |d| < delta, else delta (|d| - delta / 2), d = prediction - target (torch's huber_loss).

    Quadratic near 0, linear in the tails: one outlier's gradient is at most delta / n.
    """
    delta = _check_delta(delta)
    check_same_shape("prediction and target", prediction, target)
    diff = prediction - target
    size = np.abs(diff)
    return np.asarray(np.mean(np.where(size < delta, 0.5 * diff * diff, delta * (size - 0.5 * delta))))


def _huber_backward(g: Any, prediction: Any, target: Any, *, delta: float) -> tuple[Any, Any]:
    """clip(d, -delta, delta) / n for the prediction, its negative for the target.

    The clip is two masks: d itself strictly inside (-delta, delta), +-delta from there on. At |d| = delta both
    give delta, and the second derivative is then torch's, 0: the quadratic part is |d| < delta, as in forward.
    """
    delta = _check_delta(delta)
    diff = prediction - target
    clipped = onp.where(diff >= delta, delta, onp.where(diff <= -delta, -delta, diff))
    grad = divide_by_count(g * clipped, prediction.size)
    return grad, -grad


def _huber_samples(rng: np.random.Generator) -> list[Sample]:
    """Differences in both regimes, none within 20% of +-delta, where the second derivative jumps."""

    def sample(delta: float) -> Sample:
        target = rng.standard_normal((3, 4))
        size = np.where(rng.random((3, 4)) < 0.5, rng.uniform(0.05, 0.8, (3, 4)), rng.uniform(1.25, 3.0, (3, 4)))
        return Sample(target + delta * size * rng.choice([-1.0, 1.0], size=(3, 4)), target, delta=delta)

    return [sample(1.0), sample(0.5), sample(2.0)]


def register_ops(register: Register) -> None:
    register(
        name="binary_cross_entropy_with_logits",
        inputs=("logits", "targets"),
        forward=_bce_with_logits,
        backward=_bce_with_logits_backward,
        sample_inputs=_bce_samples,
        reference="torch.nn.functional.binary_cross_entropy_with_logits",
    )
    register(
        name="huber",
        inputs=("prediction", "target"),
        forward=_huber,
        backward=_huber_backward,
        sample_inputs=_huber_samples,
        reference="torch.nn.functional.huber_loss",
    )
