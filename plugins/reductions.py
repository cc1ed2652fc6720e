"""Reductions: sum and mean over ``axis`` (None for all, an int or a tuple of ints) with ``keepdims``.

Built in because every scalar loss ends in one, and ``Tensor.sum()`` / ``Tensor.mean()`` need them. The backward
of each restores the reduced axes of ``grad_output`` as size 1 and broadcasts them to the input's shape.
"""

from __future__ import annotations

import math

import numpy as np

from opreg import Register, Sample, hookimpl
from opreg.axes import Axis, normalize_axes, reduce, restore_axes


def _spread(g: np.ndarray, x: np.ndarray, axis: Axis, keepdims: bool) -> np.ndarray:
    """``g`` repeated for every element it was reduced from: a read-only view, which the ops copy (a gradient the
    user may update in place must be an array of its own)."""
    return np.broadcast_to(restore_axes(g, x, axis, keepdims), x.shape)


def _count(x: np.ndarray, axis: Axis) -> int:
    """How many elements each mean averages, as a Python int (an int64 array would promote float32)."""
    return math.prod(x.shape[a] for a in normalize_axes(axis, x.ndim))


def axis_samples(rng: np.random.Generator) -> list[Sample]:
    """A 3-D input over every kind of axis: all, an int, a negative int, tuples, and with keepdims."""
    settings = [{}, {"axis": 1}, {"axis": -1}, {"axis": (0, 2)}, {"axis": (-1, 0)}, {"axis": 1, "keepdims": True}]
    return [Sample(rng.standard_normal((2, 3, 4)), **s) for s in [*settings, {"axis": None, "keepdims": True}]]


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="sum",
        inputs=("x",),
        attributes={"axis": None, "keepdims": False},
        forward=lambda x, *, axis, keepdims: reduce(np.sum, x, axis, keepdims),
        backward=lambda g, x, *, axis, keepdims: (_spread(g, x, axis, keepdims).copy(),),
        sample_inputs=axis_samples,
        doc="Sum over axis (None: all).",
    )
    register(
        name="mean",
        inputs=("x",),
        attributes={"axis": None, "keepdims": False},
        forward=lambda x, *, axis, keepdims: reduce(np.mean, x, axis, keepdims),
        backward=lambda g, x, *, axis, keepdims: (_spread(g, x, axis, keepdims) / _count(x, axis),),
        sample_inputs=axis_samples,
        doc="Mean over axis (None: all).",
    )
