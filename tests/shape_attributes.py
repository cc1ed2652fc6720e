"""hypothesis strategies for the attributes of the shape ops (expand_dims, squeeze, broadcast_to) and of the
indexing ops (getitem, scatter_add, setitem: ``index_for``), given the shape of their input: what the property
tests and the graph fuzzer both draw. Reductions' ``axis`` is
``opreg.testing.axes``.

Imported as ``shape_attributes`` from beside the tests, as ``torch_reference`` is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import strategies as st


def _signed(draw: Callable[..., Any], axis: int, ndim: int) -> int:
    """``axis`` or the same axis counted from the end."""
    return axis - ndim if draw(st.booleans()) else axis


@st.composite
def expand_dims_axis(draw: Callable[..., Any], ndim: int) -> int | tuple[int, ...]:
    """``axis`` for expand_dims of an ``ndim``-D input: an int, or a tuple of 0 to 2 distinct positions in the
    result, in any order, each of either sign."""
    new = draw(st.integers(0, 2))
    out = ndim + new
    chosen = draw(st.lists(st.integers(0, max(out - 1, 0)), min_size=new, max_size=new, unique=True))
    positions = [_signed(draw, p, out) for p in chosen]
    if new == 1 and draw(st.booleans()):
        return positions[0]
    return tuple(positions)


@st.composite
def squeeze_axis(draw: Callable[..., Any], shape: tuple[int, ...]) -> int | tuple[int, ...] | None:
    """``axis`` for squeeze of an input of ``shape``: None (every size-1 axis), one size-1 axis, or a tuple of them
    in any order (maybe empty), each of either sign."""
    ndim = len(shape)
    unit = [i for i, n in enumerate(shape) if n == 1]
    kind = draw(st.sampled_from(["none", "int", "tuple"] if unit else ["none", "tuple"]))
    if kind == "none":
        return None
    if kind == "int":
        return _signed(draw, draw(st.sampled_from(unit)), ndim)
    chosen = draw(st.lists(st.sampled_from(unit), unique=True, max_size=len(unit))) if unit else []
    return tuple(_signed(draw, a, ndim) for a in chosen)


@st.composite
def unit_axes(draw: Callable[..., Any], shape: tuple[int, ...]) -> tuple[int, ...]:
    """``shape`` with some of its axes made 1, so that squeeze has axes to remove."""
    return tuple(1 if draw(st.booleans()) else n for n in shape)


@st.composite
def broadcast_target(
    draw: Callable[..., Any], shape: tuple[int, ...], max_side: int = 3, allow_empty: bool = True
) -> tuple[int, ...]:
    """A shape an input of ``shape`` broadcasts to: 0 to 2 new leading axes, and each size-1 axis stretched to
    any length (0 too, now and then, unless not ``allow_empty``)."""
    low = 0 if allow_empty and draw(st.integers(0, 5)) == 5 else 1
    leading = draw(st.lists(st.integers(low, max_side), max_size=2))
    return (*leading, *(draw(st.integers(low, max_side)) if n == 1 else n for n in shape))


@st.composite
def index_for(draw: Callable[..., Any], shape: tuple[int, ...], negative_steps: bool = True) -> Any:
    """An index of an array of ``shape`` as NumPy takes it, lists standing for arrays (so that it prints as code
    the graph fuzzer can run): per axis an int (either sign), a slice (any bounds; negative steps unless torch,
    which lacks them, is the reference), or an integer list (all of one length, so they broadcast; repeats
    allowed); now and then ``None`` between them, an ``Ellipsis`` for the axes left, or a boolean mask of the
    leading axes. A single entry is given bare, else a tuple."""
    kind = draw(st.sampled_from(["per-axis", "mask"]))
    if kind == "mask" and shape:
        k = draw(st.integers(1, min(2, len(shape))))
        mask = draw(st.lists(st.booleans(), min_size=math.prod(shape[:k]), max_size=math.prod(shape[:k])))
        nested: Any = np.array(mask, dtype=bool).reshape(shape[:k]).tolist()
        return nested if draw(st.booleans()) else (nested, Ellipsis)
    length = draw(st.integers(1, 3))
    entries: list[Any] = []
    axes = len(shape) - draw(st.integers(0, len(shape)))  # how many axes get an entry; the rest are implied
    ellipsis_at = draw(st.integers(0, axes)) if draw(st.booleans()) else None
    for axis in range(axes):
        if ellipsis_at == axis:
            entries.append(Ellipsis)
        if draw(st.integers(0, 5)) == 0:
            entries.append(None)
        n = shape[axis] if ellipsis_at is None or axis < ellipsis_at else shape[axis - axes + len(shape)]
        choices = ["slice", "int", "list"] if n else ["slice"]
        choice = draw(st.sampled_from(choices))
        if choice == "int":
            entries.append(draw(st.integers(-n, n - 1)))
        elif choice == "list":
            entries.append(draw(st.lists(st.integers(-n, n - 1), min_size=length, max_size=length)))
        else:
            bound = st.none() | st.integers(-n - 1, n + 1)
            step = st.none() | st.integers(1, 3) | (st.integers(-3, -1) if negative_steps else st.integers(1, 3))
            entries.append(slice(draw(bound), draw(bound), draw(step)))
    if ellipsis_at == axes:
        entries.append(Ellipsis)
    return entries[0] if len(entries) == 1 and draw(st.booleans()) else tuple(entries)
