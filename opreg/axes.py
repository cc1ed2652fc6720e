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


def reduce(function: Any, x: np.ndarray, axis: Axis, keepdims: bool) -> np.ndarray:
    """``function(x, axis=..., keepdims=...)`` with the axes checked first, and a 0-d array, not a NumPy scalar."""
    return np.asarray(function(x, axis=normalize_axes(axis, x.ndim), keepdims=keepdims))
