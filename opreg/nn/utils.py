"""Gradient clipping, as ``torch.nn.utils``: ``clip_grad_norm_`` and ``clip_grad_value_``.

Both change the gradients in place (a Tensor's ``.grad``, a tape parameter's ``dW``), between ``backward`` and the
optimizer's step; parameters whose gradient is ``None`` are left out, as in torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from opreg import capture
from opreg.errors import OpregError
from opreg.nn.module import BoundParameter, Parameter
from opreg.tensor import Tensor


class NonFiniteNormError(OpregError, RuntimeError):
    """``clip_grad_norm_(..., error_if_nonfinite=True)`` found a NaN or infinite gradient norm."""


def _gradients(parameters: Parameter | Iterable[Parameter]) -> list[tuple[int, np.ndarray]]:
    if isinstance(parameters, (Tensor, BoundParameter)):
        parameters = [parameters]
    found = []
    for i, p in enumerate(parameters):
        grad = p.grad
        if grad is not None:
            found.append((i, grad))
    return found


def _norm(array: np.ndarray, norm_type: float) -> Any:
    if norm_type == math.inf:
        return np.max(np.abs(array)) if array.size else array.dtype.type(0)
    if norm_type == -math.inf:
        return np.min(np.abs(array)) if array.size else array.dtype.type(math.inf)
    return np.linalg.norm(array.ravel(), ord=norm_type)


def _held(parameters: Parameter | Iterable[Parameter]) -> tuple[Any, ...]:
    """The parameters as a tuple a compiled step can name in its replay: a Tensor itself, a tape parameter as its
    module and attribute names (``parameters()`` makes a new BoundParameter at each call)."""
    if isinstance(parameters, (Tensor, BoundParameter)):
        parameters = [parameters]
    return tuple((p.module, p.name, p.grad_name) if isinstance(p, BoundParameter) else p for p in parameters)


def _bound(held: tuple[Any, ...]) -> list[Parameter]:
    return [BoundParameter(*p) if isinstance(p, tuple) else p for p in held]


def clip_grad_norm_(
    parameters: Parameter | Iterable[Parameter],
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> np.floating[Any]:
    """Scale the gradients so that their norm, taken over all of them as one vector, is at most ``max_norm``; returns
    that norm (before clipping) as a NumPy scalar of the gradients' dtype, as torch's returns a 0-d tensor.

    As torch's: the norm of order ``norm_type`` (``math.inf`` for the largest absolute value) of the gradients'
    norms; every gradient is multiplied by ``min(max_norm / (norm + 1e-6), 1)``. A NaN or infinite norm turns the
    gradients into NaN (as torch's), or with ``error_if_nonfinite=True`` raises :class:`NonFiniteNormError`
    naming the first parameter whose gradient is not finite, changing nothing. No gradient at all: 0.
    In a compiled step the call is replayed (:func:`opreg.capture.replayed`), as an optimizer's step is.
    """
    return _clip_grad_norm(_held(parameters), float(max_norm), float(norm_type), error_if_nonfinite)


@capture.replayed
def _clip_grad_norm(
    held: tuple[Any, ...], max_norm: float, norm_type: float, error_if_nonfinite: bool
) -> np.floating[Any]:
    gradients = _gradients(_bound(held))
    if not gradients:
        return np.float64(0.0)
    norms = np.stack([np.asarray(_norm(g, norm_type)) for _, g in gradients])
    total: np.floating[Any] = _norm(norms, norm_type)
    if error_if_nonfinite and not np.isfinite(total):
        first = next(i for i, g in gradients if not np.all(np.isfinite(g)))
        grad = dict(gradients)[first]
        raise NonFiniteNormError(
            f"the total norm of order {norm_type:g} of the gradients is {total}, so they cannot be clipped: the "
            f"gradient of parameter {first} ({grad.dtype} {grad.shape}) is not finite; find where it comes from "
            "(opreg.detect_anomaly()), or pass error_if_nonfinite=False to scale the gradients by it anyway"
        )
    coefficient = min(max_norm / (float(total) + 1e-6), 1.0)
    for _, grad in gradients:
        grad *= grad.dtype.type(coefficient)
    return total


def clip_grad_value_(parameters: Parameter | Iterable[Parameter], clip_value: float) -> None:
    """Clip every gradient element into ``[-clip_value, clip_value]``, in place, as torch's (replayed in a compiled
    step)."""
    _clip_grad_value(_held(parameters), float(clip_value))


@capture.replayed
def _clip_grad_value(held: tuple[Any, ...], clip_value: float) -> None:
    for _, grad in _gradients(_bound(held)):
        np.clip(grad, -clip_value, clip_value, out=grad)
