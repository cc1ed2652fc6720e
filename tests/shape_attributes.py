"""hypothesis strategies for the attributes of the shape ops (expand_dims, squeeze, broadcast_to, and every op of
plugins/shapes.py, rearrange.py, selection.py, differences.py and complex_parts.py through
:func:`shape_op_attributes`) and of the indexing ops (getitem, scatter_add, setitem: ``index_for``), given the
shape of their input: what the property tests and the graph fuzzer both draw. Reductions' ``axis`` is
``opreg.testing.axes``.

Imported as ``shape_attributes`` from beside the tests, as ``torch_reference`` is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp


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


#: The ops whose attributes :func:`shape_op_attributes` draws: the property tests and the graph fuzzer take them
#: from here.
SHAPE_OPS = [
    "reshape",
    "ravel",
    "atleast_1d",
    "atleast_2d",
    "atleast_3d",
    "permute",
    "swapaxes",
    "moveaxis",
    "rollaxis",
    "flip",
    "fliplr",
    "flipud",
    "rot90",
    "roll",
    "tile",
    "repeat",
    "pad",
    "scatter_along",
    "sort",
    "partition",
    "diagonal",
    "trace",
    "diag",
    "tril",
    "triu",
    "diff",
    "gradient",
]


# --- the attributes of the shape, rearrangement and selection ops (plugins/shapes.py, rearrange.py, selection.py,
# differences.py), given their input's shape; None where the op cannot take an input of that shape ---------------


def _factors(n: int) -> list[int]:
    factors, p = [], 2
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors


@st.composite
def reshape_target(draw: Callable[..., Any], shape: tuple[int, ...]) -> int | tuple[int, ...]:
    """A shape of as many elements, 0-d to 4-D: the size's prime factors spread over random axes, one of them -1 at
    times, a bare int for a 1-D target at times; an empty input goes to any shape with a 0 in it."""
    size = math.prod(shape)
    if size == 0:
        target = [draw(st.integers(1, 3)) for _ in range(draw(st.integers(1, 3)))]
        target[draw(st.integers(0, len(target) - 1))] = 0
    else:
        target = [1] * draw(st.integers(0 if size == 1 else 1, 4))
        for factor in _factors(size):
            target[draw(st.integers(0, len(target) - 1))] *= factor
        if target and draw(st.booleans()):
            target[draw(st.integers(0, len(target) - 1))] = -1
    return target[0] if len(target) == 1 and draw(st.booleans()) else tuple(target)


@st.composite
def permutation(draw: Callable[..., Any], ndim: int) -> tuple[int, ...] | None:
    """None (reverse the axes), or a permutation of them, each axis counted from either end."""
    if draw(st.booleans()):
        return None
    return tuple(_signed(draw, a, ndim) for a in draw(st.permutations(range(ndim))))


def _axis(draw: Callable[..., Any], ndim: int) -> int:
    return _signed(draw, draw(st.integers(0, ndim - 1)), ndim)


def _distinct_axes(draw: Callable[..., Any], ndim: int, most: int) -> tuple[int, ...]:
    chosen = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=min(most, ndim), unique=True))
    return tuple(_signed(draw, a, ndim) for a in chosen)


@st.composite
def shape_op_attributes(draw: Callable[..., Any], name: str, shape: tuple[int, ...]) -> dict[str, Any] | None:
    """Attributes for op ``name`` on an input of ``shape``, drawn over every spelling the op takes (negative axes,
    tuples, None); None if the op takes no input of that shape."""
    ndim = len(shape)
    if name in ("ravel", "atleast_1d", "atleast_2d", "atleast_3d", "real_if_close"):
        return {}
    if name == "reshape":
        return {"shape": draw(reshape_target(shape))}
    if name == "permute":
        return {"axes": draw(permutation(ndim))}
    if name in ("flipud", "fliplr"):
        return {} if ndim >= (1 if name == "flipud" else 2) else None
    if name == "angle":
        return {"deg": draw(st.booleans())}
    if ndim == 0 and name not in ("tile", "repeat", "pad", "take"):
        return {} if name == "flip" else None
    if name == "swapaxes":
        return {"axis1": _axis(draw, ndim), "axis2": _axis(draw, ndim)}
    if name == "moveaxis":
        source = _distinct_axes(draw, ndim, 3)
        destination = _distinct_axes(draw, ndim, len(source))
        if len(destination) != len(source):
            return None
        if len(source) == 1 and draw(st.booleans()):
            return {"source": source[0], "destination": destination[0]}
        return {"source": source, "destination": destination}
    if name == "rollaxis":
        return {"axis": _axis(draw, ndim), "start": draw(st.integers(-ndim, ndim))}
    if name == "flip":
        return draw(st.sampled_from([{}, {"axis": _axis(draw, ndim)}, {"axis": _distinct_axes(draw, ndim, 3)}]))
    if name == "rot90":
        if ndim < 2:
            return None
        first, second = draw(st.lists(st.integers(0, ndim - 1), min_size=2, max_size=2, unique=True))
        return {"k": draw(st.integers(-5, 5)), "axes": (_signed(draw, first, ndim), _signed(draw, second, ndim))}
    if name == "roll":
        if draw(st.booleans()):
            return {"shift": draw(st.integers(-6, 6))}
        axis = tuple(_axis(draw, ndim) for _ in range(draw(st.integers(1, 3))))  # repeats add up
        shift = tuple(draw(st.integers(-6, 6)) for _ in axis)
        return {"shift": shift[0], "axis": axis[0]} if len(axis) == 1 else {"shift": shift, "axis": axis}
    if name == "tile":
        reps = tuple(draw(st.integers(0, 3)) for _ in range(draw(st.integers(1, 4))))
        return {"reps": reps[0] if len(reps) == 1 and draw(st.booleans()) else reps}
    if name == "repeat":
        axis = draw(st.one_of(st.none(), st.integers(-ndim, ndim - 1))) if ndim else None
        length = math.prod(shape) if axis is None else shape[axis]
        if draw(st.booleans()):
            return {"repeats": draw(st.integers(0, 3)), "axis": axis}
        return {"repeats": tuple(draw(st.integers(0, 3)) for _ in range(length)), "axis": axis}
    if name == "pad":
        mode = draw(st.sampled_from(["constant", "edge", "reflect", "symmetric", "wrap"]))
        if mode != "constant" and 0 in shape:
            mode = "constant"
        widest = {"reflect": lambda n: n - 1, "symmetric": lambda n: n, "wrap": lambda n: n}.get(mode, lambda n: 3)
        widths = tuple(
            (draw(st.integers(0, min(widest(n), 3))), draw(st.integers(0, min(widest(n), 3)))) for n in shape
        )
        attributes: dict[str, Any] = {"pad_width": widths if shape else draw(st.integers(0, 3)), "mode": mode}
        if mode == "constant" and draw(st.booleans()):
            attributes["constant_values"] = draw(st.sampled_from([0.0, 1.5, -2.0]))
        return attributes
    if name in ("take", "take_along_axis", "scatter_along"):
        return draw(_index_attributes(name, shape))
    if name in ("sort", "partition"):
        axis = draw(st.one_of(st.none(), st.integers(-ndim, ndim - 1)))
        length = math.prod(shape) if axis is None else shape[axis]
        if name == "sort":
            return {"axis": axis}
        if length == 0:
            return None
        kth = draw(st.lists(st.integers(-length, length - 1), min_size=1, max_size=2, unique=True))
        return {"axis": axis, "kth": kth[0] if len(kth) == 1 else tuple(kth)}
    if name in ("diagonal", "trace"):
        if ndim < 2:
            return None
        first, second = draw(st.lists(st.integers(0, ndim - 1), min_size=2, max_size=2, unique=True))
        return {
            "offset": draw(st.integers(-4, 4)),
            "axis1": _signed(draw, first, ndim),
            "axis2": _signed(draw, second, ndim),
        }
    if name == "diag":
        return {"k": draw(st.integers(-3, 3))} if ndim in (1, 2) else None
    if name in ("tril", "triu"):
        return {"k": draw(st.integers(-4, 4))} if ndim >= 2 else None
    if name == "diff":
        axis = _axis(draw, ndim)
        attributes = {"n": draw(st.integers(0, 3)), "axis": axis}
        joined = list(shape)
        joined[axis] = draw(st.integers(1, 2))
        for key in ("prepend", "append"):
            kind = draw(st.sampled_from(["none", "scalar", "array"]))
            if kind == "scalar":
                attributes[key] = 0.5
            elif kind == "array":
                attributes[key] = np.full(joined, -1.25)
        return attributes
    if name == "gradient":
        axis = _axis(draw, ndim)
        edge_order = draw(st.integers(1, 2))
        if shape[axis] < edge_order + 1:
            return None
        attributes = {"axis": axis if ndim > 1 or draw(st.booleans()) else None, "edge_order": edge_order}
        spacing = draw(st.sampled_from(["none", "scalar", "coordinates"]))
        if spacing == "scalar":
            attributes["varargs"] = (draw(st.sampled_from([0.5, 2.0, 0.25])),)
        elif spacing == "coordinates":
            steps = draw(st.lists(st.sampled_from([0.5, 1.0, 1.5]), min_size=shape[axis], max_size=shape[axis]))
            attributes["varargs"] = (np.cumsum(steps),)
        return attributes
    raise AssertionError(f"no attribute strategy for op {name!r}")


@st.composite
def _index_attributes(draw: Callable[..., Any], name: str, shape: tuple[int, ...]) -> dict[str, Any] | None:
    """Indices (repeated ones, negative ones) and an axis for take, take_along_axis and scatter_along."""
    ndim = len(shape)
    if name == "take":
        axis = draw(st.one_of(st.none(), st.integers(-ndim, ndim - 1))) if ndim else None
        length = math.prod(shape) if axis is None else shape[axis]
        mode = draw(st.sampled_from(["raise", "wrap", "clip"]))
        if length == 0:
            mode = "raise"
        index_shape = draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=0 if length == 0 else 1, max_side=3))
        if length == 0:
            index_shape = (*index_shape[:-1], 0) if index_shape else (0,)
        low, high = (-length, length - 1) if mode == "raise" else (-2 * length - 1, 2 * length + 1)
        indices = draw(hnp.arrays(np.int64, index_shape, elements=st.integers(low, max(high, low))))
        return {"indices": indices, "axis": axis, "mode": mode}
    if ndim == 0:
        return None
    axis = draw(st.integers(-ndim, ndim - 1))
    length = shape[axis]
    if name == "scatter_along":
        length = draw(st.integers(1, 4))
    elif length == 0:
        return None
    index_shape = tuple(n if draw(st.booleans()) else 1 for n in shape)
    index_shape = tuple(draw(st.integers(0, 4)) if a == axis % ndim else n for a, n in enumerate(index_shape))
    if name == "scatter_along":
        index_shape = tuple(n if draw(st.booleans()) or a == axis % ndim else 1 for a, n in enumerate(shape))
    indices = draw(hnp.arrays(np.int64, index_shape, elements=st.integers(-length, length - 1)))
    attributes = {"indices": indices, "axis": axis}
    return attributes | {"length": length} if name == "scatter_along" else attributes
