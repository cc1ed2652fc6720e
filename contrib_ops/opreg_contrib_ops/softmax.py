"""softmax and log_softmax along one axis (attribute ``axis``, default -1, the class axis).

Both subtract the max along the axis first: exp never overflows, and the largest term is exp(0) = 1, so the sum
is never 0 and its log never -inf. Both backwards work from the output (backward names ``output``), with
:mod:`opreg.numpy` and operators, so they can be differentiated again: on Tensors the output is recorded too.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Register, Sample


def _shifted(x: np.ndarray, axis: int) -> np.ndarray:
    """x minus its max along axis; an infinite max is not subtracted (inf - inf is nan), as in torch. An empty
    axis has no max (``initial`` makes it -inf, so nothing is subtracted), and gives an empty result, as in torch."""
    shift = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
    return x - np.where(np.isfinite(shift), shift, 0.0)


def _softmax(x: np.ndarray, *, axis: int = -1) -> np.ndarray:
    """exp(x) / sum(exp(x)) along axis, shifted by the max so that large logits do not overflow."""
    e = np.exp(_shifted(x, axis))
    return e / np.sum(e, axis=axis, keepdims=True)


def _softmax_backward(g: Any, x: Any, *, axis: int, output: Any) -> tuple[Any]:
    """y * (g - sum(g * y)) along axis: the Jacobian diag(y) - y y^T applied without forming it."""
    return (output * (g - onp.sum(g * output, axis=axis, keepdims=True)),)


def _log_softmax(x: np.ndarray, *, axis: int = -1) -> np.ndarray:
    """x - logsumexp(x) along axis: finite where log(softmax(x)) would give log(0) = -inf."""
    shifted = _shifted(x, axis)
    if not x.shape[axis]:  # nothing to normalise: the empty result, without log(0)'s warning
        return shifted
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _log_softmax_backward(g: Any, x: Any, *, axis: int, output: Any) -> tuple[Any]:
    """g - softmax * sum(g) along axis, with softmax = exp(output)."""
    return (g - onp.exp(output) * onp.sum(g, axis=axis, keepdims=True),)


def _samples(rng: np.random.Generator) -> list[Sample]:
    """The default last axis on a matrix, then every axis of a 3-D array, counted both ways."""
    return [
        Sample(rng.standard_normal((3, 4)) * 2.0),
        Sample(rng.standard_normal((2, 3, 4)) * 2.0, axis=0),
        Sample(rng.standard_normal((2, 3, 4)) * 2.0, axis=1),
        Sample(rng.standard_normal((2, 3, 4)) * 2.0, axis=-2),
        Sample(rng.standard_normal((5,)) * 2.0, axis=0),
    ]


def register_ops(register: Register) -> None:
    register(
        name="softmax",
        inputs=("x",),
        forward=_softmax,
        backward=_softmax_backward,
        sample_inputs=_samples,
        reference=lambda torch: lambda x, axis=-1: torch.softmax(x, dim=axis),
    )
    register(
        name="log_softmax",
        inputs=("x",),
        forward=_log_softmax,
        backward=_log_softmax_backward,
        sample_inputs=_samples,
        reference=lambda torch: lambda x, axis=-1: torch.log_softmax(x, dim=axis),
    )
