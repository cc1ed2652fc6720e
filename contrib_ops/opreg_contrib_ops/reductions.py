"""Reductions over ``axis`` (None for all, an int, or a tuple of ints; negative ones count from the end), each
with ``keepdims``: max and logsumexp (sum and mean are built in), on :mod:`opreg.axes`.

Every backward first restores the reduced axes of ``grad_output`` (and of the output, where it needs it) as
size-1 axes, then broadcasts them to the input's shape: the engine only sums broadcast gradients down, it never
stretches them up.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from opreg import Register, Sample
from opreg.axes import Axis, normalize_axes, reduce, restore_axes
from opreg_contrib_ops._common import float_dtype

# max


def _max(x: np.ndarray, *, axis: Axis, keepdims: bool) -> np.ndarray:
    """Max over axis (None: all); tied maxima share the gradient equally, as in torch.amax."""
    return reduce(np.max, x, axis, keepdims)


def _max_backward(g: np.ndarray, x: np.ndarray, *, axis: Axis, keepdims: bool, output: np.ndarray) -> tuple:
    """grad_output / (number of maxima) at each maximum, 0 elsewhere.

    Splitting evenly (not all to the first maximum, as argmax-based max would) keeps the gradient a symmetric
    function of the input, and is what torch.amax does. The count is taken in the gradient's dtype: an int64
    count would promote a float32 gradient to float64.
    """
    dtype = float_dtype(x)
    axes = normalize_axes(axis, x.ndim)
    is_max = x == restore_axes(output, x, axis, keepdims)
    share = restore_axes(g, x, axis, keepdims) / is_max.sum(axis=axes, keepdims=True, dtype=dtype)
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
    softmax = np.exp(x - restore_axes(output, x, axis, keepdims))
    return ((restore_axes(g, x, axis, keepdims) * softmax).astype(float_dtype(x), copy=False),)


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
