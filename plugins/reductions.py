"""Reductions: sum and mean over ``axis`` (None for all, an int or a tuple of ints) with ``keepdims``.

Built in because every scalar loss ends in one, and ``Tensor.sum()`` / ``Tensor.mean()`` need them. The backward
of each restores the reduced axes of ``grad_output`` as size 1 and broadcasts them to the input's shape, with
registered ops, so it can be differentiated again.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import (
    Axis,
    Register,
    Sample,
    divide_by_count,
    hookimpl,
    normalize_axes,
    numpy_reduction,
    reduce,
    restore_axes,
)


def _spread(g: Any, x: Any, axis: Axis, keepdims: bool) -> Any:
    """``g`` repeated for every element it was reduced from (for an array, a read-only view)."""
    return onp.broadcast_to(restore_axes(g, x, axis, keepdims), shape=x.shape)


def _count(x: Any, axis: Axis) -> int:
    """How many elements each mean averages, as a Python int (for :func:`divide_by_count`)."""
    return math.prod(x.shape[a] for a in normalize_axes(axis, x.ndim))


def axis_samples(rng: np.random.Generator) -> list[Sample]:
    """A 3-D input over every kind of axis: all, an int, a negative int, tuples, and with keepdims."""
    settings: list[dict[str, Any]] = [
        {},
        {"axis": 1},
        {"axis": -1},
        {"axis": (0, 2)},
        {"axis": (-1, 0)},
        {"axis": 1, "keepdims": True},
        {"axis": None, "keepdims": True},
    ]
    return [Sample(rng.standard_normal((2, 3, 4)), **s) for s in settings]


def _sum(x: np.ndarray, *, axis: Axis = None, keepdims: bool = False) -> np.ndarray:
    """Sum over axis (None: all)."""
    return reduce(np.sum, x, axis, keepdims)


def _mean(x: np.ndarray, *, axis: Axis = None, keepdims: bool = False) -> np.ndarray:
    """Mean over axis (None: all)."""
    return reduce(np.mean, x, axis, keepdims)


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="sum",
        inputs=("x",),
        forward=_sum,
        backward=lambda g, x, *, axis, keepdims: (_spread(g, x, axis, keepdims),),
        sample_inputs=axis_samples,
        numpy="sum",
        reference=numpy_reduction("sum"),
    )
    register(
        name="mean",
        inputs=("x",),
        forward=_mean,
        backward=lambda g, x, *, axis, keepdims: (divide_by_count(_spread(g, x, axis, keepdims), _count(x, axis)),),
        sample_inputs=axis_samples,
        numpy="mean",
        reference=numpy_reduction("mean"),
    )
