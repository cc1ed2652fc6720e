"""Losses: softmax cross-entropy (from logits) and mean squared error, each a 0-d array; binary cross-entropy of
probabilities, and log(sigmoid(x)), elementwise (``opreg.nn.BCELoss`` and ``BCEWithLogitsLoss`` reduce them with
``mean`` or ``sum``).

The other losses of :mod:`opreg.nn.losses` (CrossEntropyLoss, NLLLoss, L1Loss, HuberLoss, BCEWithLogitsLoss, and
MSELoss's ``sum`` and ``none``) are compositions of registered ops; binary cross-entropy is an op of its own
because PyTorch's gradient at probabilities 0 and 1 is not the derivative of the loss it computes there."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Register, Sample, batch_all, constant, divide_by_count, fit_into, hookimpl, op


def _check_same_shape(what: str, a: np.ndarray, b: np.ndarray) -> None:
    """Refuse to broadcast a loss's operands: (N, 1) against (N,) would silently give a wrong loss."""
    if a.shape != b.shape:
        raise ValueError(f"{what} must have the same shape, got {a.shape} and {b.shape}")


def _softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray | np.generic, tuple[Any, Any]]:
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
    if terms.dtype.itemsize >= 4:  # a NumPy scalar, which the engine makes a 0-d array
        return -terms.sum() / batch, (exp, total)
    return (-terms.sum(dtype=np.float32) / batch).astype(terms.dtype), (exp, total)


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


def _softmax_cross_entropy_backward_out(outs: tuple[Any, None], g: np.ndarray, logits: Any, labels: Any) -> None:
    """The backward from what forward saves, recomputed as forward computes it (``saved`` is not given), with the
    division written into the logits' gradient and the three in-place steps done there."""
    if outs[0] is None:
        return
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=-1, keepdims=True)
    grad = outs[0] if exp.dtype == outs[0].dtype else np.empty(exp.shape, exp.dtype)
    np.divide(exp, total, out=grad)
    grad *= labels.sum(axis=-1, keepdims=True)
    grad -= labels
    grad *= divide_by_count(g, logits.size // logits.shape[-1])
    if grad is not outs[0]:
        fit_into(outs[0], grad)


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


def _mse_out(out: np.ndarray, prediction: np.ndarray, target: np.ndarray) -> None:
    """:func:`_mse` into ``out`` (a 0-d array): the mean written there, as ``mean`` divides in place; float16
    (which np.mean sums in float32 and rounds twice) is copied."""
    _check_same_shape("prediction and target", prediction, target)
    diff = prediction - target
    if diff.dtype.itemsize < 4:
        np.copyto(out, _mse(prediction, target))
        return
    np.multiply(diff, diff, out=diff)
    np.mean(diff, out=out)


def _mse_backward_out(outs: tuple[Any, Any], g: np.ndarray, prediction: Any, target: Any) -> None:
    grad = divide_by_count(g * 2 * (prediction - target), prediction.size)
    if outs[0] is not None:
        fit_into(outs[0], grad)
    if outs[1] is not None:
        fit_into(outs[1], -grad)


def _binary_cross_entropy(probability: np.ndarray, target: np.ndarray) -> np.ndarray:
    """-(t log(p) + (1 - t) log(1 - p)) elementwise, each log clamped at -100, as PyTorch's binary_cross_entropy.

    Both operands must lie in [0, 1] (PyTorch's check): a logit or a class index given here would be a silently
    meaningless loss. The arithmetic is in the operands' common dtype, as PyTorch's; the clamp keeps the loss
    finite (at most 100) where p is exactly 0 or 1, which a float32 sigmoid reaches from |x| > 17.
    """
    dtype = np.result_type(probability, target, np.float16)
    p, t = np.asarray(probability, dtype), np.asarray(target, dtype)
    for what, values in (("input (probabilities)", p), ("target", t)):
        if not ((values >= 0) & (values <= 1)).all():
            raise ValueError(f"all elements of {what} should be between 0 and 1 (use BCEWithLogitsLoss for logits)")
    with np.errstate(divide="ignore"):  # log(0) = -inf, clamped to -100 at once
        return np.asarray((t - 1) * np.maximum(np.log1p(-p), -100) - t * np.maximum(np.log(p), -100))


#: PyTorch's floor of p (1 - p) in binary cross-entropy's gradient: the float32 nearest 1e-12, in every dtype.
_BCE_EPSILON = float(np.float32(1e-12))


def _binary_cross_entropy_backward(
    g: Any, probability: Any, target: Any, *, needs_grad: tuple[bool, bool]
) -> tuple[Any, Any]:
    """PyTorch's gradients, also where the log is clamped: (p - t) / max(p (1 - p), 1e-12) for the probability
    (finite, up to about 1e12, at p = 0 or 1, where the clamped loss is flat), and -logit(p) for the target (infinite at
    p = 0 or 1). Written with registered ops: second derivatives are those of these expressions, as PyTorch's.
    """
    floor = _BCE_EPSILON
    grad_p = g * (probability - target) / onp.maximum((1 - probability) * probability, floor) if needs_grad[0] else None
    if not needs_grad[1]:
        return grad_p, None
    with np.errstate(divide="ignore"):  # p = 1: log(1 / 0) = inf, PyTorch's value
        return grad_p, -g * onp.log(probability / (1 - probability))


def _binary_cross_entropy_samples(rng: np.random.Generator) -> list[Sample]:
    """Probabilities away from 0 and 1 (where the clamp and the 1e-12 floor make derivatives jump), targets too
    (finite differences step past a target of 0 or 1, which forward refuses); a target broadcast along the rows.
    Hard targets and the edges are tests/test_losses.py's."""
    return [
        Sample(rng.uniform(0.05, 0.95, (3, 4)), rng.uniform(0.05, 0.95, (3, 4))),
        Sample(rng.uniform(0.05, 0.95, (5,)), rng.uniform(0.05, 0.95, (5,))),
        Sample(rng.uniform(0.05, 0.95, (2, 3)), rng.uniform(0.0, 1.0, (3,))),
    ]


def _torch_binary_cross_entropy(torch: ModuleType) -> Any:
    """torch's binary_cross_entropy with reduction="none", on operands broadcast and promoted first (torch's
    refuses operands of different shapes or dtypes, which an elementwise op takes)."""

    def loss(probability: Any, target: Any) -> Any:
        dtype = torch.promote_types(probability.dtype, target.dtype)
        p, t = torch.broadcast_tensors(probability.to(dtype), target.to(dtype))
        return torch.nn.functional.binary_cross_entropy(p, t, reduction="none")

    return loss


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    """log(sigmoid(x)) = minimum(x, 0) - log1p(exp(-|x|)), as PyTorch's logsigmoid: finite at any x, no exp
    overflows. The log-likelihood of a positive label from its logit: BCEWithLogitsLoss's building block, one op
    so that its derivatives at x = 0 are the smooth function's (composed of minimum and abs, the second derivative
    there would be 0 instead of -1/4)."""
    return np.asarray(np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x))))


def _log_sigmoid_backward(g: Any, x: Any) -> tuple[Any]:
    """g * sigmoid(-x), with the registered sigmoid (stable at any x): it differentiates again."""
    return (g * op("sigmoid")(-x),)


def _per_example(batched: Any, a: Any, b: Any, what: str) -> tuple[Any, Any]:
    """Both operands of a loss batched, of one shape, as the loss's forward demands of each example."""
    a, b = batch_all([a, b], batched)
    if np.shape(a) != np.shape(b):
        raise ValueError(f"{what} must have the same shape, got {np.shape(a)[1:]} and {np.shape(b)[1:]}")
    return a, b


def _batch_softmax_cross_entropy(call: Any, batched: Any, logits: Any, labels: Any) -> Any:
    """vmap of softmax_cross_entropy: each example's loss, the mean over its rows of -sum(labels * log_softmax),
    with registered ops (logsumexp's derivatives are the softmax's)."""
    logits, labels = _per_example(batched, logits, constant(labels), "logits and labels")  # labels: no gradient
    size = np.shape(logits)[0]
    rows = max(1, int(np.prod(np.shape(logits)[1:-1])))
    log_softmax = logits - op("logsumexp")(logits, axis=-1, keepdims=True)
    terms = onp.reshape(onp.sum(labels * log_softmax, axis=-1), (size, -1))
    return -onp.sum(terms, axis=1) / rows


def _batch_mse(call: Any, batched: Any, prediction: Any, target: Any) -> Any:
    """vmap of mse: each example's mean of squared differences."""
    prediction, target = _per_example(batched, prediction, target, "prediction and target")
    diff = onp.reshape(prediction - target, (np.shape(prediction)[0], -1))
    return onp.mean(diff * diff, axis=1)


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="softmax_cross_entropy",
        inputs=("logits", "labels"),
        forward=_softmax_cross_entropy,
        backward=_softmax_cross_entropy_backward,
        backward_out=_softmax_cross_entropy_backward_out,
        differentiable=("logits",),
        sample_inputs=_one_hot_sample,
        reference=_torch_softmax_cross_entropy,
        batch=_batch_softmax_cross_entropy,
    )
    register(
        name="mse",
        inputs=("prediction", "target"),
        forward=_mse,
        backward=_mse_backward,
        forward_out=_mse_out,
        backward_out=_mse_backward_out,
        reference="torch.nn.functional.mse_loss",
        batch=_batch_mse,
    )
    register(
        name="log_sigmoid",
        inputs=("x",),
        forward=_log_sigmoid,
        backward=_log_sigmoid_backward,
        reference="torch.nn.functional.logsigmoid",
        batch="elementwise",
    )
    register(
        name="binary_cross_entropy",
        inputs=("probability", "target"),
        forward=_binary_cross_entropy,
        backward=_binary_cross_entropy_backward,
        sample_inputs=_binary_cross_entropy_samples,
        domain=(0.0, 1.0),
        reference=_torch_binary_cross_entropy,
        batch="elementwise",
    )
