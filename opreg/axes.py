"""Helpers for ops that reduce over axes (sum, mean, max, ...): the ``axis``/``keepdims`` conventions, once.

Public for plugin authors: the built-in reductions and contrib_ops use exactly these.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

#: An ``axis`` attribute: ``None`` for all axes, an int, or a tuple of ints; negative ones count from the end.
Axis = int | tuple[int, ...] | None


def normalize_axes(axis: Any, ndim: int) -> tuple[int, ...]:
    """``axis`` as sorted non-negative axes (``None``: all). A bad axis raises ``ValueError`` in NumPy's words,
    so that it fails in forward, where the engine names the op."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int | np.integer) else tuple(axis)
    normalized = []
    for a in axes:
        a = operator.index(a)
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of bounds for an array of dimension {ndim}")
        normalized.append(a % ndim)
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"repeated axis in {axis!r}")
    return tuple(sorted(normalized))


#: An array, or a Tensor when a backward runs recorded (``create_graph``): anything ``np.expand_dims`` takes, by
#: NumPy's own dispatch (NEP 18) for a Tensor.
Values = Any


def restore_axes(reduced: Values, x: Values, axis: Axis, keepdims: bool) -> Values:
    """A reduction's output (or its gradient) with the reduced axes back as size 1, so it broadcasts against
    ``x``. A reduction's backward starts here: the engine sums broadcast gradients down, never stretches up."""
    return reduced if keepdims else np.expand_dims(reduced, normalize_axes(axis, x.ndim))


def divide_by_count(values: Values, count: Any) -> Values:
    """``values / count``, where ``count`` (an int, or an integer array: tied maxima) is how many elements a mean
    or a loss averaged: its gradient's scale.

    NumPy would take the count in ``values``' dtype, and float16 cannot hold a count above 65,504 (it becomes inf,
    and every gradient 0) nor every one above 2,048. So the division is done in float32 at least and rounded once
    to ``values``' dtype, as PyTorch computes float16 ops. A Tensor (a backward differentiated, ``create_graph``)
    keeps the float32 quotient: no op casts a recorded value down.
    """
    dtype = values.dtype
    if type(count) is int and dtype.itemsize >= 4:  # a Python int keeps float32 and float64 as they are
        return values / count
    quotient = values / np.asarray(count, dtype=np.promote_types(dtype, np.float32))
    if dtype.itemsize >= 4 or not isinstance(quotient, np.ndarray | np.generic):
        return quotient
    return np.asarray(quotient).astype(dtype)


def reduce(function: Any, x: np.ndarray, axis: Axis, keepdims: bool) -> np.ndarray:
    """``function(x, axis=..., keepdims=...)`` with the axes checked first, and a 0-d array, not a NumPy scalar."""
    return np.asarray(function(x, axis=normalize_axes(axis, x.ndim), keepdims=keepdims))
