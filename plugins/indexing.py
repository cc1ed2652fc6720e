"""Indexing: ``x[index]`` (``getitem``), its transpose ``scatter_add``, and ``x`` with ``x[index] = v``
(``setitem``), for every index NumPy takes: integers, slices (any step), ``None``, ``Ellipsis``, integer arrays
and boolean masks, in any combination. The index is an attribute, a constant: it gets no gradient.

The three ops are each other's derivatives, so every backward here composes to any order:

- ``getitem``'s backward is ``scatter_add(g, index, shape=x.shape)``: zeros of ``x``'s shape with ``g`` *added* at
  the positions ``x[index]`` read, so an element read twice (``x[[0, 0]]``) gets both gradients, as
  ``np.add.at`` (and torch's indexing backward) accumulates;
- ``scatter_add``'s backward is ``g[index]``, the gradient read back at those positions;
- ``setitem(x, v, index)`` is ``x`` with ``x[index] = v``, out of place (``t[i] = v`` on a Tensor records it). An
  element that the index names more than once is written once, with the value NumPy's assignment leaves there,
  the last one, in index order; that value alone gets the gradient of the element (the others are overwritten
  and get 0), and ``x`` gets none where it was overwritten. Forward and backward both take the winner from
  :func:`_last_writes`, so they cannot disagree, whatever order NumPy assigns in.

Reading an index as positions in the flattened array (:func:`_positions`) handles every kind of index with one
piece of code: ``np.arange(size).reshape(shape)[index]`` is, by NumPy's own rules, which element of ``x`` each
element of ``x[index]`` is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Register, Sample, hookimpl, linear_jvp, op

#: An index as NumPy takes it: an int, a slice, None, Ellipsis, an array or list, or a tuple of them.
Index = Any


def _as_tuple(index: Index) -> tuple[Any, ...]:
    return index if isinstance(index, tuple) else (index,)


def _is_basic(index: Index) -> bool:
    """Whether ``index`` is basic indexing (ints, slices, None, Ellipsis): each element is read at most once."""
    return all(
        k is None
        or k is Ellipsis
        or isinstance(k, slice)
        or (isinstance(k, int | np.integer) and not isinstance(k, bool))
        for k in _as_tuple(index)
    )


def _positions(shape: tuple[int, ...], index: Index) -> np.ndarray:
    """Which element of an array of ``shape`` (a flat position) each element of ``array[index]`` is."""
    return np.asarray(np.arange(math.prod(shape), dtype=np.intp).reshape(shape)[index])


def _last_writes(positions: np.ndarray) -> np.ndarray:
    """Where in ``positions.ravel()`` each distinct position occurs last: the writes ``x[index] = v`` keeps."""
    flat = positions.reshape(-1)
    if flat.size == 0:
        return np.zeros(0, np.intp)
    _, first_of_reversed = np.unique(flat[::-1], return_index=True)
    return np.asarray(flat.size - 1 - first_of_reversed, dtype=np.intp)


def _getitem(x: np.ndarray, *, index: Index = ()) -> np.ndarray:
    """x[index], as NumPy indexes: a view for basic indexing, a copy otherwise."""
    return np.asarray(x[index])


def _getitem_backward(g: Any, x: Any, *, index: Index) -> tuple[Any]:
    return (op("scatter_add")(g, index=index, shape=x.shape),)


def _scatter_add(g: np.ndarray, *, index: Index = (), shape: tuple[int, ...] = ()) -> np.ndarray:
    """Zeros of ``shape`` with ``g`` added at the positions ``zeros[index]`` reads; a position read several
    times gets the sum (np.add.at): the derivative of ``getitem``."""
    out = np.zeros(shape, dtype=g.dtype)
    if _is_basic(index):  # each position at most once: a plain assignment
        out[index] = g
        return out
    positions = _positions(tuple(shape), index)
    np.add.at(out.reshape(-1), positions.reshape(-1), np.broadcast_to(g, positions.shape).reshape(-1))
    return out


def _value_shape(v: Any, target: tuple[int, ...]) -> tuple[int, ...]:
    """``v``'s shape without the leading size-1 axes beyond ``target``'s rank, which NumPy's assignment drops."""
    extra = max(0, v.ndim - len(target))
    if any(n != 1 for n in v.shape[:extra]):
        raise ValueError(f"could not broadcast input array from shape {v.shape} into shape {target}")
    return tuple(v.shape[extra:])


def _setitem(x: np.ndarray, v: np.ndarray, *, index: Index = ()) -> np.ndarray:
    """A copy of x with x[index] = v (v broadcast to x[index]'s shape, cast to x's dtype); where the index names
    an element more than once, the last write stays."""
    positions = _positions(x.shape, index)
    values = np.broadcast_to(np.reshape(v, _value_shape(v, positions.shape)), positions.shape).reshape(-1)
    kept = _last_writes(positions)
    out = x.copy()
    out.reshape(-1)[positions.reshape(-1)[kept]] = values[kept]
    return out


def _setitem_backward(g: Any, x: Any, v: Any, *, index: Index) -> tuple[Any, Any]:
    positions = _positions(x.shape, index)
    kept = _last_writes(positions)
    written = positions.reshape(-1)[kept]
    untouched = np.ones(x.size, dtype=bool)
    untouched[written] = False
    grad_x = g * untouched.reshape(x.shape)
    if kept.size == positions.size:  # every element named once: v's gradient is g read back at the index
        grad_v = g[index]
    else:  # g read once per written element, and placed where the write that stayed came from in v
        read = g[np.unravel_index(written, x.shape)] if x.ndim else g[None][written]
        grad_v = op("scatter_add")(read, index=np.unravel_index(kept, positions.shape), shape=positions.shape)
    extra = v.ndim - positions.ndim
    if extra > 0:  # v had leading size-1 axes that the assignment dropped
        grad_v = onp.expand_dims(grad_v, axis=tuple(range(extra)))
    return grad_x, grad_v


def _normalized(indices: Any, n: int, mode: str) -> np.ndarray:
    """``indices`` into an axis of length ``n`` as non-negative positions, by ``np.take``'s ``mode``: negative ones
    counted from the end ("raise", after forward checked the range), wrapped ("wrap") or clipped ("clip")."""
    idx = np.asarray(indices, dtype=np.intp)
    if mode == "wrap":
        return np.asarray(idx % n) if n else idx
    if mode == "clip":
        return np.asarray(np.clip(idx, 0, max(n - 1, 0)))
    return np.asarray(np.where(idx < 0, idx + n, idx))


def _take(a: np.ndarray, *, indices: Any = None, axis: int | None = None, mode: str = "raise") -> np.ndarray:
    """np.take(a, indices, axis, mode=mode): elements (axis None: of the flattened array) at ``indices``."""
    if indices is None:
        raise ValueError("take needs the attribute indices, e.g. onp.take(x, [0, 2], axis=1)")
    return np.asarray(np.take(a, indices, axis=axis, mode=mode))  # type: ignore[call-overload]


def _take_index(shape: tuple[int, ...], indices: Any, axis: int | None, mode: str) -> Index:
    """The index ``x[index]`` with the elements ``np.take(x, indices, axis, mode)`` reads, in its order."""
    if axis is None:
        return np.unravel_index(_normalized(indices, math.prod(shape), mode), shape)
    axis = axis % len(shape)
    return (*(slice(None),) * axis, _normalized(indices, shape[axis], mode))


def _take_backward(g: Any, a: Any, *, indices: Any, axis: int | None, mode: str) -> tuple[Any]:
    if a.ndim == 0:  # every index reads the one element
        return (onp.sum(g),)
    return (op("scatter_add")(g, index=_take_index(a.shape, indices, axis, mode), shape=a.shape),)


def _take_along_axis(arr: np.ndarray, *, indices: Any = None, axis: int | None = -1) -> np.ndarray:
    """np.take_along_axis(arr, indices, axis): out[..., j, ...] = arr[..., indices[..., j, ...], ...]."""
    if indices is None:
        raise ValueError("take_along_axis needs the attribute indices, e.g. onp.take_along_axis(x, order, axis=1)")
    return np.asarray(np.take_along_axis(arr, np.asarray(indices), axis=axis))


def _along_axis_index(shape: tuple[int, ...], indices: Any, axis: int | None) -> Index:
    """The index ``x[index]`` with the elements ``np.take_along_axis(x, indices, axis)`` reads: ``indices`` along
    ``axis``, every other axis by its own position (NumPy's construction, broadcast)."""
    if axis is None:
        return np.unravel_index(_normalized(indices, math.prod(shape), "raise"), shape)
    axis = axis % len(shape)
    return tuple(
        _normalized(indices, n, "raise")
        if dim == axis
        else np.arange(n).reshape([n if d == dim else 1 for d in range(len(shape))])
        for dim, n in enumerate(shape)
    )


def _take_along_axis_backward(g: Any, arr: Any, *, indices: Any, axis: int | None) -> tuple[Any]:
    return (op("scatter_add")(g, index=_along_axis_index(arr.shape, indices, axis), shape=arr.shape),)


# --- torch references ---------------------------------------------------------------------------------------------


def _flat_positions(torch: ModuleType, shape: tuple[int, ...], index: Index) -> Any:
    """The flat positions ``index`` reads in an array of ``shape``, as a torch int64 tensor of the result's shape.

    NumPy's index rules are the definition, applied to positions only (a constant); torch's own indexing differs
    where an int meets an integer array (``x[None, 0, None, [0, 0]]``: NumPy moves the broadcast axes first, torch
    does not) and lacks negative steps, so the references index torch's flattened tensor with these positions,
    and torch's autograd differentiates that."""
    return torch.from_numpy(_positions(tuple(shape), index).astype(np.int64))


def _torch_getitem(torch: ModuleType) -> Callable[..., Any]:
    return lambda x, index=(): x.reshape(-1)[_flat_positions(torch, tuple(x.shape), index)]


def _torch_scatter_add(torch: ModuleType) -> Callable[..., Any]:
    def scatter_add(g: Any, index: Index = (), shape: tuple[int, ...] = ()) -> Any:
        where = _flat_positions(torch, tuple(shape), index).reshape(-1)
        total = torch.zeros(math.prod(shape), dtype=g.dtype).index_add(0, where, g.reshape(-1))
        return total.reshape(tuple(shape))

    return scatter_add


def _torch_setitem(torch: ModuleType) -> Callable[..., Any]:
    def setitem(x: Any, v: Any, index: Index = ()) -> Any:
        where = _flat_positions(torch, tuple(x.shape), index)
        out = x.reshape(-1).clone()
        out[where.reshape(-1)] = torch.broadcast_to(torch.as_tensor(v, dtype=x.dtype), tuple(where.shape)).reshape(-1)
        return out.reshape(tuple(x.shape))

    return setitem


def _torch_take(torch: ModuleType) -> Callable[..., Any]:
    def take(a: Any, indices: Any = None, axis: int | None = None, mode: str = "raise") -> Any:
        if axis is None:
            flat = _normalized(indices, math.prod(a.shape), mode)
            return torch.take(a, torch.from_numpy(flat.astype(np.int64)))
        k = axis % a.ndim
        idx = _normalized(indices, a.shape[k], mode)
        picked = a.index_select(k, torch.from_numpy(idx.reshape(-1).astype(np.int64)))
        return picked.reshape((*a.shape[:k], *idx.shape, *a.shape[k + 1 :]))

    return take


def _torch_take_along_axis(torch: ModuleType) -> Callable[..., Any]:
    def take_along_axis(arr: Any, indices: Any = None, axis: int | None = -1) -> Any:
        n = math.prod(arr.shape) if axis is None else arr.shape[axis]
        idx = torch.from_numpy(_normalized(indices, n, "raise").astype(np.int64))
        return torch.take_along_dim(arr, idx, dim=axis)

    return take_along_axis


# --- samples ------------------------------------------------------------------------------------------------------

#: Indexes of a (3, 4, 5) array: each kind alone and in the combinations NumPy allows.
INDEXES: tuple[Index, ...] = (
    1,
    -1,
    (slice(None), 2),
    (slice(1, None), slice(None, None, 2), -2),
    (slice(None, None, -1), slice(3, 0, -2)),
    (None, Ellipsis, 0),
    (Ellipsis, None),
    np.array([0, 2, 0]),
    (slice(None), np.array([[1, 1], [3, 0]])),
    (np.array([0, 2]), slice(1, 3), np.array([4, 4])),
    np.array([True, False, True]),
    (Ellipsis, np.array([True, False, True, True, False])),
)


def _getitem_samples(rng: np.random.Generator) -> list[Sample]:
    return [Sample(rng.standard_normal((3, 4, 5)), index=index) for index in INDEXES]


def _scatter_add_samples(rng: np.random.Generator) -> list[Sample]:
    shape = (3, 4, 5)
    return [
        Sample(rng.standard_normal(np.empty(shape)[index].shape), index=index, shape=shape)
        for index in INDEXES[::2] + INDEXES[7:9]
    ]


def _setitem_samples(rng: np.random.Generator) -> list[Sample]:
    """No index names an element twice here: torch's choice among repeated writes is unspecified (tests check
    repeats against finite differences)."""
    x = rng.standard_normal((3, 4, 5))
    return [
        Sample(x, rng.standard_normal((2, 4, 5)), index=np.array([2, 0])),  # first: x and v do not broadcast
        Sample(x, rng.standard_normal((4, 5)), index=0),
        Sample(x, rng.standard_normal(5), index=(slice(None), 1)),  # broadcast over the first axis
        Sample(x, rng.standard_normal(()), index=(Ellipsis, slice(1, 3))),
        Sample(x, rng.standard_normal((2, 1)), index=(np.array([0, 1]), slice(2, 3), np.array([4, 0]))),
        Sample(x, rng.standard_normal(()), index=np.array([True, False, True])),
    ]


def _batch_getitem(call: Callable[..., Any], batched: Sequence[bool], x: Any, *, index: Index = ()) -> Any:
    """vmap of ``x[index]``: ``x[:, *index]``. Where the index's arrays are apart (``x[[0, 1], :, [2, 3]]``)
    NumPy puts their axes first, in front of the batch too, so they are moved back behind it."""
    items = _as_tuple(index)
    result = call(x, index=(slice(None), *items))
    arrays = [isinstance(i, np.ndarray | list) for i in items]
    if any(arrays):
        advanced = [k for k, i in enumerate(items) if arrays[k] or isinstance(i, int | np.integer)]
        if advanced[-1] - advanced[0] + 1 != len(advanced):
            shapes = [
                (np.count_nonzero(i),) if np.asarray(i).dtype == bool else np.shape(i)
                for i, a in zip(items, arrays, strict=True)
                if a
            ]
            result = onp.moveaxis(result, len(np.broadcast_shapes(*shapes)), 0)
    return result


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="getitem",
        inputs=("x",),
        forward=_getitem,
        backward=_getitem_backward,
        jvp=linear_jvp("getitem"),
        sample_inputs=_getitem_samples,
        doc="x[index] for any index NumPy takes (t[...] on a Tensor); an element read twice gets both gradients.",
        reference=_torch_getitem,
        batch=_batch_getitem,
    )
    register(
        name="scatter_add",
        inputs=("g",),
        forward=_scatter_add,
        backward=lambda gg, g, *, index: (gg[index],),
        sample_inputs=_scatter_add_samples,
        doc="Zeros of shape with g added at the positions zeros[index] reads, repeats summed (np.add.at): "
        "getitem's derivative.",
        reference=_torch_scatter_add,
    )
    register(
        name="setitem",
        inputs=("x", "v"),
        forward=_setitem,
        backward=_setitem_backward,
        sample_inputs=_setitem_samples,
        doc="A copy of x with x[index] = v (t[index] = v on a Tensor records it). An element the index names twice "
        "keeps the last write, which alone gets its gradient.",
        reference=_torch_setitem,
    )
    register(
        name="take",
        inputs=("a",),
        forward=_take,
        backward=_take_backward,
        sample_inputs=lambda rng: [
            Sample(rng.standard_normal((3, 4, 5)), indices=np.array([0, 2, 2, -1])),
            Sample(rng.standard_normal((3, 4, 5)), indices=np.array([[1, -1], [0, 0]]), axis=1),
            Sample(rng.standard_normal((3, 4, 5)), indices=3, axis=-1),
            Sample(rng.standard_normal((3, 4)), indices=np.array([5, -7, 1]), axis=0, mode="wrap"),
            Sample(rng.standard_normal((3, 4)), indices=np.array([10, -3, 2]), axis=1, mode="clip"),
        ],
        doc="np.take(a, indices, axis, mode): the elements at indices along axis (None: of the flattened array); "
        "an element taken twice gets both gradients.",
        numpy="take",
        reference=_torch_take,
    )
    register(
        name="take_along_axis",
        inputs=("arr",),
        forward=_take_along_axis,
        backward=_take_along_axis_backward,
        sample_inputs=lambda rng: [
            Sample(rng.standard_normal((3, 4)), indices=np.array([[0, 3], [1, 1], [-1, 2]]), axis=1),
            Sample(rng.standard_normal((3, 4)), indices=np.array([[2, 0, 0, 1]]), axis=0),
            Sample(rng.standard_normal((2, 3, 4)), indices=np.zeros((2, 3, 2), dtype=int) + 3, axis=-1),
            Sample(rng.standard_normal((3, 4)), indices=np.array([11, 0, 0]), axis=None),
        ],
        doc="np.take_along_axis(arr, indices, axis): arr read at indices along axis (the result of argsort, say); "
        "an element read twice gets both gradients.",
        numpy="take_along_axis",
        reference=_torch_take_along_axis,
    )
