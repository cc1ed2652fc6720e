"""Selection: ops whose every output element is one input element, chosen by position: sort, partition, diag,
diagonal, trace (a diagonal summed), tril and triu (a triangle kept, the rest 0). (take and take_along_axis, which
choose by indices the user gives, are plugins/indexing.py's.)

Their gradients put ``grad_output`` back where each element came from, adding where one element was chosen
several times. That is the op ``scatter_along``, the adjoint of ``take_along_axis``: each is the other's backward,
so every op here differentiates to any order through the two.

Indices are attributes, not inputs: they are constants (an integer array has no derivative), and an attribute
keeps them integers wherever an op's inputs are converted to the dtype of the computation. Negative indices count
from the end, as in NumPy.

sort and partition send each element's gradient through the permutation that produced the output: sort's is
NumPy's stable sort (``kind="stable"``), so tied values keep their order and the first of equal inputs gets the
gradient of the first of the equal outputs, as ``torch.sort(stable=True)`` does; partition's is
``np.argpartition``'s, and its output is taken through that permutation, so the values and the gradient always
agree (NumPy leaves the order inside each part unspecified).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Register, Sample, along_axis, constant, hookimpl, matrix_ops, normalize_axes, op, shift_axis

Indices = Any  # an integer array, a list of ints or an int (a Tensor's values are taken, never differentiated)


def _index_array(indices: Indices) -> np.ndarray:
    """``indices`` as an integer array; a float or boolean array is refused, as NumPy refuses it."""
    array = np.asarray(constant(indices))
    if array.dtype.kind not in "iu" and array.size:
        raise TypeError(f"indices must be integers, got an array of dtype {array.dtype}")
    return array.astype(np.intp)


def _wrapped(indices: np.ndarray, length: int) -> np.ndarray:
    """``indices`` into an axis of ``length`` made non-negative; one out of range is an IndexError, as NumPy's."""
    if indices.size and (indices.min() < -length or indices.max() >= length):
        bad = indices[(indices < -length) | (indices >= length)].flat[0]
        raise IndexError(f"index {bad} is out of bounds for axis of size {length}")
    return np.where(indices < 0, indices + length, indices)


# --- scatter_along: take_along_axis's adjoint (take_along_axis is plugins/indexing.py's) ---------------------------


def _scatter_add(src: np.ndarray, *, indices: Indices = 0, axis: int = -1, length: int = 0) -> np.ndarray:
    """An array like ``src`` but of ``length`` along ``axis``, zeros, to which each element of ``src`` is added at
    the position ``indices`` gives along ``axis`` (``indices`` broadcasts against ``src``); repeated positions add
    up. torch's ``zeros(...).scatter_add(axis, indices, src)``; the adjoint of take_along_axis."""
    src = np.asarray(src)
    axis = normalize_axes(axis, src.ndim)[0]
    positions = _wrapped(np.broadcast_to(_index_array(indices), src.shape), length)
    shape = list(src.shape)
    shape[axis] = length
    out = np.zeros(shape, dtype=src.dtype)
    grid: list[Any] = list(np.indices(src.shape, sparse=True))
    grid[axis] = positions
    np.add.at(out, tuple(grid), src)
    return out


def _scatter(g: Any, indices: Indices, axis: int, length: int) -> Any:
    """``scatter_along`` through opreg.numpy's namespace (it is no NumPy function, so through its op name)."""
    return op("scatter_along")(g, indices=indices, axis=axis, length=length)


# --- sort and partition ----------------------------------------------------------------------------------------------


def _sort_permutation(x: Any, axis: int | None) -> np.ndarray:
    values = np.asarray(constant(x))
    return np.argsort(values.reshape(-1) if axis is None else values, axis=-1 if axis is None else axis, kind="stable")


def _sort(
    x: np.ndarray, *, axis: int | None = -1, kind: str | None = None, stable: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """x sorted along ``axis`` (None: flattened), as np.sort. ``kind`` and ``stable`` are accepted and change
    nothing: the values are the same for every algorithm, and the gradient follows the stable sort's
    permutation (ties keep their order)."""
    permutation = _sort_permutation(x, axis)
    source = np.reshape(x, -1) if axis is None else x
    return np.take_along_axis(source, permutation, -1 if axis is None else axis), permutation


def _sort_backward(g: Any, x: Any, *, saved: np.ndarray | None, axis: int | None) -> tuple[Any]:
    permutation = _sort_permutation(x, axis) if saved is None else saved
    if axis is None:
        return (onp.reshape(_scatter(g, permutation, 0, math.prod(x.shape)), x.shape),)
    return (_scatter(g, permutation, axis, x.shape[axis]),)


def _partition_permutation(x: Any, kth: Any, axis: int | None) -> np.ndarray:
    values = np.asarray(constant(x))
    return np.argpartition(values.reshape(-1) if axis is None else values, kth, axis=-1 if axis is None else axis)


def _partition(
    x: np.ndarray, *, kth: int | Sequence[int] = 0, axis: int | None = -1, kind: str = "introselect"
) -> tuple[np.ndarray, np.ndarray]:
    """x with the element that sorted order puts at position ``kth`` (each of them, for several) moved there,
    smaller ones before it and larger ones after, along ``axis`` (None: flattened), as np.partition. The order
    inside each part is np.argpartition's permutation, which the gradient follows too."""
    permutation = _partition_permutation(x, kth, axis)
    source = np.reshape(x, -1) if axis is None else x
    return np.take_along_axis(source, permutation, -1 if axis is None else axis), permutation


def _partition_backward(g: Any, x: Any, *, saved: np.ndarray | None, kth: Any, axis: int | None) -> tuple[Any]:
    permutation = _partition_permutation(x, kth, axis) if saved is None else saved
    if axis is None:
        return (onp.reshape(_scatter(g, permutation, 0, math.prod(x.shape)), x.shape),)
    return (_scatter(g, permutation, axis, x.shape[axis]),)


# --- diagonals and triangles -----------------------------------------------------------------------------------------


def _diagonal_positions(n1: int, n2: int, offset: int) -> np.ndarray:
    """Where the ``offset`` diagonal of an (n1, n2) matrix lies in it flattened: a[i, i + offset] in C order."""
    first_row, first_column = max(-offset, 0), max(offset, 0)
    length = max(0, min(n1 - first_row, n2 - first_column))
    steps = np.arange(length)
    return (first_row + steps) * n2 + first_column + steps


def _on_diagonal(g: Any, shape: tuple[int, ...], offset: int, axis1: int, axis2: int) -> Any:
    """An array of ``shape``, zeros but for ``g`` (the other axes, then the diagonal's) on the ``offset`` diagonal
    of axes ``axis1`` and ``axis2``: np.diagonal's adjoint, with scatter_along and reshapes, so it composes."""
    axis1, axis2 = (normalize_axes(a, len(shape))[0] for a in (axis1, axis2))
    n1, n2 = shape[axis1], shape[axis2]
    rest = tuple(n for i, n in enumerate(shape) if i not in (axis1, axis2))
    positions = _diagonal_positions(n1, n2, offset)
    flat = _scatter(g, positions.reshape((1,) * len(rest) + (-1,)), -1, n1 * n2)
    return onp.moveaxis(onp.reshape(flat, (*rest, n1, n2)), (-2, -1), (axis1, axis2))


def _diagonal(x: np.ndarray, *, offset: int = 0, axis1: int = 0, axis2: int = 1) -> np.ndarray:
    """The ``offset`` diagonal of the matrices in axes axis1 and axis2, as a last axis, as np.diagonal."""
    return np.diagonal(x, offset, axis1, axis2)


def _trace(x: np.ndarray, *, offset: int = 0, axis1: int = 0, axis2: int = 1) -> np.ndarray:
    """The sum of the ``offset`` diagonal of the matrices in axes axis1 and axis2, as np.trace."""
    return np.asarray(np.trace(x, offset, axis1, axis2))


def _trace_backward(g: Any, x: Any, *, offset: int, axis1: int, axis2: int) -> tuple[Any]:
    length = np.diagonal(np.broadcast_to(0.0, x.shape), offset, axis1, axis2).shape[-1]
    spread = onp.broadcast_to(onp.expand_dims(g, -1), (*g.shape, length))
    return (_on_diagonal(spread, x.shape, offset, axis1, axis2),)


def _diag(x: np.ndarray, *, k: int = 0) -> np.ndarray:
    """For a 1-D x, the square matrix with x on its ``k`` diagonal; for a 2-D x, its ``k`` diagonal; as np.diag."""
    if x.ndim not in (1, 2):
        raise ValueError(f"diag takes a 1-D or 2-D array, got {x.ndim}-D")
    return np.diag(x, k)


def _diag_backward(g: Any, x: Any, *, k: int) -> tuple[Any]:
    if x.ndim == 1:
        return (onp.diagonal(g, k),)
    return (_on_diagonal(g, x.shape, k, 0, 1),)


def _triangle_mask(shape: tuple[int, ...], k: int, lower: bool) -> np.ndarray:
    """What np.tril (lower) or np.triu keeps of the last two axes of an array of ``shape``."""
    rows, columns = shape[-2:] if len(shape) >= 2 else (shape[-1], shape[-1])
    below = np.tri(rows, columns, k=k if lower else k - 1, dtype=bool)
    return below if lower else ~below


def _tril(x: np.ndarray, *, k: int = 0) -> np.ndarray:
    """x with the elements above its ``k`` diagonal set to 0 (in the last two axes), as np.tril."""
    return np.tril(x, k)


def _triu(x: np.ndarray, *, k: int = 0) -> np.ndarray:
    """x with the elements below its ``k`` diagonal set to 0 (in the last two axes), as np.triu."""
    return np.triu(x, k)


def _triangle_backward(lower: bool) -> Callable[..., tuple[Any]]:
    def backward(g: Any, x: Any, *, k: int) -> tuple[Any]:
        return (onp.where(_triangle_mask(x.shape, k, lower), g, 0.0),)

    return backward


# --- samples and references ------------------------------------------------------------------------------------------


def _scatter_add_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample(rng.standard_normal((3, 4)), indices=np.array([[0, 0, 4, -1]]), axis=1, length=5),
        Sample(rng.standard_normal((3, 2)), indices=np.array([[1, 1], [0, 1], [1, 1]]), axis=0, length=2),
        Sample(rng.standard_normal(4), indices=np.array([2, 2, 2, 0]), axis=0, length=3),
    ]


def _torch_scatter_add(torch: ModuleType) -> Callable[..., Any]:
    def scatter_add(src: Any, indices: Any = 0, axis: int = -1, length: int = 0) -> Any:
        index = torch.as_tensor(np.asarray(indices)).expand(src.shape)
        shape = list(src.shape)
        shape[axis] = length
        index = torch.where(index < 0, index + length, index)
        return torch.zeros(shape, dtype=src.dtype).scatter_add(axis, index, src)

    return scatter_add


def _sort_samples(rng: np.random.Generator) -> list[Sample]:
    """Distinct values: where two are equal the sort has no derivative (finite differences see the order flip),
    and the gradient at ties is tests/test_shape_ops.py's to check, against torch's stable sort."""
    return [
        Sample(rng.standard_normal((3, 4))),
        Sample(rng.standard_normal((3, 4)), axis=0),
        Sample(rng.standard_normal((2, 3, 4)), axis=-2),
        Sample(rng.standard_normal((3, 4)), axis=None),
        Sample(rng.standard_normal((3, 5)), axis=0, kind="quicksort"),
        Sample(rng.standard_normal((0, 3)), axis=0),
    ]


def _torch_sort(torch: ModuleType) -> Callable[..., Any]:
    def sort(x: Any, axis: int | None = -1, kind: str | None = None, stable: bool | None = None) -> Any:
        source = x.reshape(-1) if axis is None else x
        return torch.sort(source, dim=-1 if axis is None else axis, stable=True).values

    return sort


def _partition_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample(rng.standard_normal((3, 5)), kth=2),
        Sample(rng.standard_normal((3, 5)), kth=(0, -1), axis=0),
        Sample(rng.standard_normal((2, 3, 4)), kth=1, axis=None),
        Sample(rng.standard_normal((2, 6)), kth=-2, axis=1),
    ]


def _torch_partition(torch: ModuleType) -> Callable[..., Any]:
    """torch has no partition: the values through the permutation np.argpartition gives, gathered (and
    differentiated) by torch. It checks that the gradient follows the values, not NumPy's choice of order."""

    def partition(x: Any, kth: Any = 0, axis: int | None = -1, kind: str = "introselect") -> Any:
        source = x.reshape(-1) if axis is None else x
        dim = -1 if axis is None else axis
        permutation = np.argpartition(source.detach().numpy(), kth, axis=dim)
        return torch.take_along_dim(source, torch.as_tensor(permutation), dim)

    return partition


def _diagonal_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample(rng.standard_normal((4, 4))),
        Sample(rng.standard_normal((3, 5)), offset=2),
        Sample(rng.standard_normal((5, 3)), offset=-1),
        Sample(rng.standard_normal((2, 3, 4)), offset=1, axis1=2, axis2=0),
        Sample(rng.standard_normal((2, 3, 4)), axis1=-1, axis2=-2),
        Sample(rng.standard_normal((3, 3)), offset=5),
    ]


def _torch_diagonal(torch: ModuleType) -> Callable[..., Any]:
    return lambda x, offset=0, axis1=0, axis2=1: torch.diagonal(x, offset, axis1, axis2)


def _torch_trace(torch: ModuleType) -> Callable[..., Any]:
    return lambda x, offset=0, axis1=0, axis2=1: torch.diagonal(x, offset, axis1, axis2).sum(-1)


def _diag_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample(rng.standard_normal(3)),
        Sample(rng.standard_normal(3), k=2),
        Sample(rng.standard_normal(2), k=-1),
        Sample(rng.standard_normal((4, 4))),
        Sample(rng.standard_normal((3, 5)), k=1),
        Sample(rng.standard_normal((5, 3)), k=-2),
    ]


def _triangle_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample(rng.standard_normal((4, 4))),
        Sample(rng.standard_normal((3, 5)), k=1),
        Sample(rng.standard_normal((2, 5, 3)), k=-1),
        Sample(rng.standard_normal((3, 3)), k=-5),
    ]


def _batch_axis_pair(call: Callable[..., Any], batched: Sequence[bool], x: Any, **attributes: Any) -> Any:
    """vmap of diagonal and trace: their two axes moved past the batch."""
    ndim = np.ndim(x) - 1
    axes = {name: shift_axis(attributes[name], ndim) for name in ("axis1", "axis2")}
    return call(x, **{**attributes, **axes})


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="scatter_along",
        inputs=("src",),
        forward=_scatter_add,
        backward=lambda g, src, *, indices, axis: (onp.take_along_axis(g, indices, axis),),
        sample_inputs=_scatter_add_samples,
        reference=_torch_scatter_add,
    )
    register(
        name="sort",
        inputs=("x",),
        forward=_sort,
        backward=_sort_backward,
        sample_inputs=_sort_samples,
        numpy="sort",
        reference=_torch_sort,
        batch=along_axis,
    )
    register(
        name="partition",
        inputs=("x",),
        forward=_partition,
        backward=_partition_backward,
        sample_inputs=_partition_samples,
        numpy="partition",
        reference=_torch_partition,
        batch=along_axis,
    )
    register(
        name="diagonal",
        inputs=("x",),
        forward=_diagonal,
        backward=lambda g, x, *, offset, axis1, axis2: (_on_diagonal(g, x.shape, offset, axis1, axis2),),
        sample_inputs=_diagonal_samples,
        numpy="diagonal",
        reference=_torch_diagonal,
        batch=_batch_axis_pair,
    )
    register(
        name="trace",
        inputs=("x",),
        forward=_trace,
        backward=_trace_backward,
        sample_inputs=_diagonal_samples,
        numpy="trace",
        reference=_torch_trace,
        batch=_batch_axis_pair,
    )
    register(
        name="diag",
        inputs=("x",),
        forward=_diag,
        backward=_diag_backward,
        sample_inputs=_diag_samples,
        numpy="diag",
        reference=lambda torch: lambda x, k=0: torch.diag(x, k),
    )
    register(
        name="tril",
        inputs=("x",),
        forward=_tril,
        backward=_triangle_backward(lower=True),
        sample_inputs=_triangle_samples,
        numpy="tril",
        reference=lambda torch: lambda x, k=0: torch.tril(x, k),
        batch=matrix_ops(2),
    )
    register(
        name="triu",
        inputs=("x",),
        forward=_triu,
        backward=_triangle_backward(lower=False),
        sample_inputs=_triangle_samples,
        numpy="triu",
        reference=lambda torch: lambda x, k=0: torch.triu(x, k),
        batch=matrix_ops(2),
    )
