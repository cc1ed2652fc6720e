"""Reductions over ``axis`` (None for all, an int, or a tuple of ints; negative ones count from the end), each
with ``keepdims``: sum, mean, max, logsumexp.

Every backward first restores the reduced axes of ``grad_output`` (and of the output, where it needs it) as
size-1 axes, then broadcasts them to the input's shape: the engine only sums broadcast gradients down, it never
stretches them up.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from opreg import Register, Sample
from opreg_contrib_ops._common import float_dtype, normalize_axes

Axis = int | tuple[int, ...] | None


def _restore(reduced: np.ndarray, x: np.ndarray, axis: Axis, keepdims: bool) -> np.ndarray:
    """An output-shaped array with the reduced axes back as size 1, so that it broadcasts against ``x``."""
    return reduced if keepdims else np.expand_dims(reduced, normalize_axes(axis, x.ndim))


def _spread(g: np.ndarray, x: np.ndarray, axis: Axis, keepdims: bool) -> np.ndarray:
    """``g`` broadcast to ``x``'s shape as a fresh, writable array of ``x``'s float dtype."""
    return np.broadcast_to(_restore(g, x, axis, keepdims), x.shape).astype(float_dtype(x))


def _reduce(fn: Any, x: np.ndarray, axis: Axis, keepdims: bool) -> np.ndarray:
    """``fn(x, axis=..., keepdims=...)`` with the axes checked first, and a 0-d array rather than a NumPy scalar."""
    return np.asarray(fn(x, axis=normalize_axes(axis, x.ndim), keepdims=keepdims))


# sum and mean


def _sum(x: np.ndarray, *, axis: Axis, keepdims: bool) -> np.ndarray:
    """Sum over axis (None: all); the gradient is grad_output copied to every summed element."""
    return _reduce(np.sum, x, axis, keepdims)


def _mean(x: np.ndarray, *, axis: Axis, keepdims: bool) -> np.ndarray:
    """Mean over axis (None: all); the gradient is grad_output / (number of elements averaged)."""
    return _reduce(np.mean, x, axis, keepdims)


def _count(x: np.ndarray, axis: Axis) -> int:
    """How many elements each mean averages, as a Python int (an int, unlike an int64 array, keeps float32)."""
    return math.prod(x.shape[a] for a in normalize_axes(axis, x.ndim))


# max


def _max(x: np.ndarray, *, axis: Axis, keepdims: bool) -> np.ndarray:
    """Max over axis (None: all); tied maxima share the gradient equally, as in torch.amax."""
    return _reduce(np.max, x, axis, keepdims)


def _max_backward(g: np.ndarray, x: np.ndarray, *, axis: Axis, keepdims: bool, output: np.ndarray) -> tuple:
    """grad_output / (number of maxima) at each maximum, 0 elsewhere.

    Splitting evenly (not all to the first maximum, as argmax-based max would) keeps the gradient a symmetric
    function of the input, and is what torch.amax does. The count is taken in the gradient's dtype: an int64
    count would promote a float32 gradient to float64.
    """
    dtype = float_dtype(x)
    axes = normalize_axes(axis, x.ndim)
    is_max = x == _restore(output, x, axis, keepdims)
    share = _restore(g, x, axis, keepdims) / is_max.sum(axis=axes, keepdims=True, dtype=dtype)
    return (np.where(is_max, share, 0.0).astype(dtype, copy=False),)


# logsumexp


def _logsumexp(x: np.ndarray, *, axis: Axis, keepdims: bool) -> np.ndarray:
    """log(sum(exp(x))) over axis (None: all), shifted by the max so that nothing overflows.

    An infinite max is not subtracted (torch does the same): inf - inf would turn a row of -inf into nan.
    """
    axes = normalize_axes(axis, x.ndim)
    shift = np.max(x, axis=axes, keepdims=True, initial=-math.inf)
    shift = np.where(np.isfinite(shift), shift, 0.0)
    out = np.log(np.sum(np.exp(x - shift), axis=axes, keepdims=True)) + shift
    return np.asarray(out if keepdims else np.squeeze(out, axis=axes))


def _logsumexp_backward(g: np.ndarray, x: np.ndarray, *, axis: Axis, keepdims: bool, output: np.ndarray) -> tuple:
    """grad_output * softmax(x) along axis, with softmax = exp(x - logsumexp(x)) from the output."""
    softmax = np.exp(x - _restore(output, x, axis, keepdims))
    return ((_restore(g, x, axis, keepdims) * softmax).astype(float_dtype(x), copy=False),)


# samples


def _axis_samples(x: Any) -> list[Sample]:
    """Sample ``x`` (3-D) over every kind of axis: all, an int, a negative int, a tuple, and with keepdims."""
    return [
        Sample(x()),
        Sample(x(), axis=1),
        Sample(x(), axis=-1),
        Sample(x(), axis=(0, 2)),
        Sample(x(), axis=(-1, 0)),
        Sample(x(), axis=1, keepdims=True),
        Sample(x(), axis=None, keepdims=True),
        Sample(x(), axis=(0, -1), keepdims=True),
    ]


def _normal_samples(rng: np.random.Generator) -> list[Sample]:
    return _axis_samples(lambda: rng.standard_normal((2, 3, 4)))


def _distinct(rng: np.random.Generator) -> np.ndarray:
    """24 values at least 0.2 apart in random order: no ties, and no two swap order within eps 1e-6."""
    return rng.permutation(24).reshape(2, 3, 4) * 0.25 - 3.0 + rng.uniform(0.0, 0.05, size=(2, 3, 4))


def _reduction(
    register: Register,
    name: str,
    forward: Any,
    backward: Any,
    *,
    sample_inputs: Any = _normal_samples,
    backward_uses_output: bool = False,
) -> None:
    """Register one reduction: input x, attributes axis=None and keepdims=False."""
    register(
        name=name,
        inputs=("x",),
        attributes={"axis": None, "keepdims": False},
        forward=forward,
        backward=backward,
        sample_inputs=sample_inputs,
        backward_uses_output=backward_uses_output,
    )


def register_ops(register: Register) -> None:
    _reduction(
        register,
        "sum",
        _sum,
        lambda g, x, *, axis, keepdims: (_spread(g, x, axis, keepdims),),
    )
    _reduction(
        register,
        "mean",
        _mean,
        lambda g, x, *, axis, keepdims: (_spread(g, x, axis, keepdims) / _count(x, axis),),
    )
    _reduction(
        register,
        "max",
        _max,
        _max_backward,
        backward_uses_output=True,
        sample_inputs=lambda rng: _axis_samples(lambda: _distinct(rng)),
    )
    _reduction(
        register,
        "logsumexp",
        _logsumexp,
        _logsumexp_backward,
        backward_uses_output=True,
    )
