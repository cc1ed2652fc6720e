"""Reductions over ``axis`` (None for all, an int, or a tuple of ints; negative ones count from the end), each
with ``keepdims``: max and logsumexp (sum and mean are built in), with :mod:`opreg.plugin`'s axis helpers.

Every backward first restores the reduced axes of ``grad_output`` (and of the output, where it needs it) as
size-1 axes, then lets them broadcast against the input: the engine only sums broadcast gradients down, it never
stretches them up. Both backwards are written with :mod:`opreg.numpy`, operators and comparisons, so they can be
differentiated again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import (
    Axis,
    Register,
    Sample,
    constant,
    divide_by_count,
    normalize_axes,
    numpy_reduction,
    reduce,
    restore_axes,
)

# max


def _max(x: np.ndarray, *, axis: Axis = None, keepdims: bool = False) -> np.ndarray:
    """Max over axis (None: all); tied maxima share the gradient equally, as in torch.amax."""
    return reduce(np.max, x, axis, keepdims)


def _max_backward(g: Any, x: Any, *, axis: Axis, keepdims: bool, output: Any) -> tuple[Any]:
    """grad_output / (number of maxima) at each maximum, 0 elsewhere.

    Splitting evenly (not all to the first maximum, as argmax-based max would) keeps the gradient a symmetric
    function of the input, and is what torch.amax does. Which elements are maxima is a comparison, a constant
    mask; their count is a constant too, an integer array (float16 cannot count past 65,504 ties).
    """
    is_max = x == restore_axes(output, x, axis, keepdims)
    count = constant(is_max).sum(axis=normalize_axes(axis, x.ndim), keepdims=True)
    return (onp.where(is_max, divide_by_count(restore_axes(g, x, axis, keepdims), count), 0.0),)


# logsumexp


def _logsumexp(x: np.ndarray, *, axis: Axis = None, keepdims: bool = False) -> np.ndarray:
    """log(sum(exp(x))) over axis (None: all), shifted by the max so that nothing overflows.

    An infinite max is not subtracted (torch does the same): inf - inf would turn a row of -inf into nan.
    """
    axes = normalize_axes(axis, x.ndim)
    shift = np.max(x, axis=axes, keepdims=True, initial=-math.inf)
    shift = np.where(np.isfinite(shift), shift, 0.0)
    out = np.log(np.sum(np.exp(x - shift), axis=axes, keepdims=True)) + shift
    return np.asarray(out if keepdims else np.squeeze(out, axis=axes))


def _logsumexp_backward(g: Any, x: Any, *, axis: Axis, keepdims: bool, output: Any) -> tuple[Any]:
    """grad_output * softmax(x) along axis, with softmax = exp(x - logsumexp(x)) from the output."""
    return (restore_axes(g, x, axis, keepdims) * onp.exp(x - restore_axes(output, x, axis, keepdims)),)


# samples


def _axis_samples(x: Callable[[], np.ndarray]) -> list[Sample]:
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


def register_ops(register: Register) -> None:
    register(
        name="max",
        inputs=("x",),
        forward=_max,
        backward=_max_backward,
        sample_inputs=lambda rng: _axis_samples(lambda: _distinct(rng)),
        numpy=("max", "amax"),
        reference=numpy_reduction("amax"),
    )
    register(
        name="logsumexp",
        inputs=("x",),
        forward=_logsumexp,
        backward=_logsumexp_backward,
        sample_inputs=_normal_samples,
        reference=numpy_reduction("logsumexp"),
    )
