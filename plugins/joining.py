"""Joining arrays: concatenate, stack, hstack, vstack, dstack, column_stack, row_stack, append; and the two ops
their derivatives are written with, ``slice_along`` and ``pad_along`` (each the other's derivative).

The joining ops are variadic (``inputs=("*arrays",)``): ``onp.concatenate([a, b, c], axis=1)`` passes three
inputs, each tracked as any input is, and backward returns one gradient per array: the slice of ``g`` that array
became, reshaped to the array's own shape. That one rule covers every variant, since each only reshapes its
arrays (``atleast_2d``, a new axis) before concatenating them. Integer and boolean arrays among them are constants
(their gradients are dropped by the engine, as for any input).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Register, Sample, batch_all, hookimpl, op, shift_axis


def _slice_along(x: np.ndarray, *, axis: int | None = 0, start: int = 0, stop: int = 0, shape: Any = None) -> Any:
    """``x[start:stop]`` along ``axis`` (None: of ``x`` flattened), reshaped to ``shape`` (None: as sliced)."""
    flat = x.reshape(-1) if axis is None else x
    piece = np.take(flat, np.arange(start, stop), axis=0 if axis is None else axis)
    return piece if shape is None else piece.reshape(shape)


def _slice_along_backward(g: Any, x: Any, *, axis: int | None, start: int) -> tuple[Any]:
    return (onp_pad_along(g, axis=axis, start=start, shape=x.shape),)


def _pad_along(x: np.ndarray, *, axis: int | None = 0, start: int = 0, shape: Any = ()) -> np.ndarray:
    """Zeros of ``shape`` with ``x`` placed from ``start`` along ``axis`` (None: in the flattened order, x
    flattened): ``_slice_along``'s adjoint."""
    out = np.zeros(shape, x.dtype)
    if axis is None:
        out.reshape(-1)[start : start + x.size] = x.reshape(-1)
    else:
        index = [slice(None)] * out.ndim
        index[axis] = slice(start, start + _length(x, axis, shape))
        out[tuple(index)] = x.reshape(out[tuple(index)].shape)
    return out


def _length(x: Any, axis: int | None, shape: Sequence[int]) -> int:
    """How far along ``axis`` of an array of ``shape`` the values of ``x`` (of any shape) reach."""
    if axis is None:
        return int(x.size)
    across = int(np.prod(shape)) // shape[axis] if shape[axis] else 0
    return int(x.size) // across if across else 0


def _pad_along_backward(g: Any, x: Any, *, axis: int | None, start: int) -> tuple[Any]:
    stop = start + _length(x, axis, g.shape)
    return (onp_slice_along(g, axis=axis, start=start, stop=stop, shape=x.shape),)


onp_slice_along = op("slice_along")
onp_pad_along = op("pad_along")


def _pieces(g: Any, arrays: Sequence[Any], joined: Sequence[tuple[int, ...]], axis: int | None) -> tuple[Any, ...]:
    """The gradient of each array joined along ``axis``: its slice of ``g``, in its own shape. ``joined`` holds
    each array's shape as it was joined (after atleast_2d, a new axis, ...)."""
    grads = []
    start = 0
    for x, shape in zip(arrays, joined, strict=True):
        stop = start + (int(np.prod(shape)) if axis is None else shape[axis])
        grads.append(onp_slice_along(g, axis=axis, start=start, stop=stop, shape=x.shape))
        start = stop
    return tuple(grads)


def _concatenate(*arrays: np.ndarray, axis: int | None = 0) -> np.ndarray:
    """The arrays joined along an existing axis (None: flattened first), as np.concatenate."""
    return np.concatenate(arrays, axis=axis)


def _concatenate_backward(g: Any, *arrays: Any, axis: int | None) -> tuple[Any, ...]:
    if axis is None:
        return _pieces(g, arrays, [x.shape for x in arrays], None)
    axis = axis % arrays[0].ndim
    return _pieces(g, arrays, [x.shape for x in arrays], axis)


def _stack(*arrays: np.ndarray, axis: int = 0) -> np.ndarray:
    """The arrays, of one shape, joined along a new axis, as np.stack."""
    return np.stack(arrays, axis=axis)


def _stack_backward(g: Any, *arrays: Any, axis: int) -> tuple[Any, ...]:
    axis = axis % (arrays[0].ndim + 1)
    shapes = [(*x.shape[:axis], 1, *x.shape[axis:]) for x in arrays]
    return _pieces(g, arrays, shapes, axis)


def _joined(kind: str, x: Any) -> tuple[int, ...]:
    """``x``'s shape as hstack, vstack, dstack or column_stack join it."""
    shape = tuple(x.shape)
    if kind == "vstack":
        return shape if len(shape) >= 2 else (1, *shape) if shape else (1, 1)
    if kind == "dstack":
        if len(shape) >= 3:
            return shape
        return (1, 1, 1) if not shape else (1, shape[0], 1) if len(shape) == 1 else (*shape, 1)
    if kind == "column_stack":
        return shape if len(shape) >= 2 else (shape[0], 1) if shape else (1, 1)
    return shape if shape else (1,)  # hstack: atleast_1d


_AXIS = {"hstack": 1, "vstack": 0, "dstack": 2, "column_stack": 1}


def _joining(kind: str) -> tuple[Any, Any]:
    function = getattr(np, kind)

    def forward(*arrays: np.ndarray) -> np.ndarray:
        return np.asarray(function(arrays))

    def backward(g: Any, *arrays: Any) -> tuple[Any, ...]:
        shapes = [_joined(kind, x) for x in arrays]
        axis = 0 if kind == "hstack" and len(shapes[0]) == 1 else _AXIS[kind]
        return _pieces(g, arrays, shapes, axis)

    forward.__doc__ = f"np.{kind}: the arrays joined as NumPy's {kind} joins them"
    return forward, backward


def _append(arr: np.ndarray, values: np.ndarray, *, axis: int | None = None) -> np.ndarray:
    """``values`` appended to ``arr`` along ``axis`` (None: both flattened), as np.append."""
    return np.append(arr, values, axis=axis)


def _append_backward(g: Any, arr: Any, values: Any, *, axis: int | None) -> tuple[Any, Any]:
    arrays = (arr, values)
    if axis is None:
        return _pieces(g, arrays, [x.shape for x in arrays], None)
    return _pieces(g, arrays, [x.shape for x in arrays], axis % arr.ndim)


def _torch_joining(name: str) -> Any:
    """torch's hstack, vstack, ...: they take one sequence, where the op takes the arrays."""
    return lambda torch: lambda *arrays: getattr(torch, name)(arrays)


def _torch_concatenate(torch: Any) -> Any:
    def concatenate(*arrays: Any, axis: int | None = 0) -> Any:
        if axis is None:
            return torch.cat([a.reshape(-1) for a in arrays])
        return torch.cat(arrays, dim=axis)

    return concatenate


def _torch_append(torch: Any) -> Any:
    def append(arr: Any, values: Any, axis: int | None = None) -> Any:
        if axis is None:
            return torch.cat([arr.reshape(-1), values.reshape(-1)])
        return torch.cat([arr, values], dim=axis)

    return append


def _torch_slice_along(torch: Any) -> Any:
    def slice_along(x: Any, axis: int | None = 0, start: int = 0, stop: int = 0, shape: Any = None) -> Any:
        piece = x.reshape(-1)[start:stop] if axis is None else x.narrow(axis, start, stop - start)
        return piece if shape is None else piece.reshape(shape)

    return slice_along


def _torch_pad_along(torch: Any) -> Any:
    def pad_along(x: Any, axis: int | None = 0, start: int = 0, shape: Any = ()) -> Any:
        if axis is not None:
            axis = axis % len(shape)
            piece = list(shape)
            piece[axis] = _length(np.empty(tuple(x.shape), bool), axis, shape)
            x = x.reshape(piece)
        if axis is None:
            flat = torch.cat([x.new_zeros(start), x.reshape(-1), x.new_zeros(int(np.prod(shape)) - start - x.numel())])
            return flat.reshape(shape)
        axis = axis % len(shape)
        before = list(shape)
        before[axis] = start
        after = list(shape)
        after[axis] = shape[axis] - start - x.shape[axis]
        return torch.cat([x.new_zeros(before), x, x.new_zeros(after)], dim=axis)

    return pad_along


def _concatenate_samples(rng: np.random.Generator) -> list[Sample]:
    n = rng.standard_normal
    return [
        Sample(n((2, 3)), n((1, 3)), n((3, 3))),
        Sample(n((2, 3)), n((2, 1)), axis=1),
        Sample(n((2, 1, 2)), n((2, 2, 2)), axis=-2),
        Sample(n((2, 2)), n(3), axis=None),
        Sample(n(4)),
    ]


def _stack_samples(rng: np.random.Generator) -> list[Sample]:
    n = rng.standard_normal
    return [Sample(n((2, 3)), n((2, 3))), Sample(n(3), n(3), n(3), axis=1), Sample(n((2, 2)), n((2, 2)), axis=-1)]


def _joining_samples(kind: str) -> Any:
    def samples(rng: np.random.Generator) -> list[Sample]:
        n = rng.standard_normal
        cases = {
            "hstack": [Sample(n((2, 3)), n((2, 1))), Sample(n(3), n(2)), Sample(n(()), n(2))],
            "vstack": [Sample(n((2, 3)), n((1, 3))), Sample(n(3), n(3)), Sample(n(3), n((2, 3)))],
            "dstack": [Sample(n((2, 3)), n((2, 3))), Sample(n(3), n((1, 3, 2))), Sample(n((2, 2, 1)), n((2, 2, 2)))],
            "column_stack": [Sample(n(3), n((3, 2))), Sample(n(2), n(2))],
        }
        return cases[kind]

    return samples


def _append_samples(rng: np.random.Generator) -> list[Sample]:
    n = rng.standard_normal
    return [Sample(n((2, 3)), n(2)), Sample(n((2, 3)), n((1, 3)), axis=0), Sample(n((2, 2)), n((2, 3)), axis=-1)]


def _slice_samples(rng: np.random.Generator) -> list[Sample]:
    n = rng.standard_normal
    return [
        Sample(n((4, 3)), axis=0, start=1, stop=3),
        Sample(n((2, 5)), axis=-1, start=0, stop=2, shape=(4,)),
        Sample(n((2, 3)), axis=None, start=2, stop=5, shape=(3, 1)),
    ]


def _pad_samples(rng: np.random.Generator) -> list[Sample]:
    n = rng.standard_normal
    return [
        Sample(n((2, 3)), axis=0, start=1, shape=(4, 3)),
        Sample(n((2, 2)), axis=-1, start=1, shape=(2, 4)),
        Sample(n((3, 1)), axis=None, start=2, shape=(2, 3)),
        Sample(n(4), axis=1, start=1, shape=(2, 4)),
    ]


def _batch_stack(call: Callable[..., Any], batched: Sequence[bool], *arrays: Any, axis: int = 0) -> Any:
    """vmap of stack: every array batched, the new axis placed past the batch."""
    arrays_ = batch_all(arrays, batched)
    return call(*arrays_, axis=shift_axis(axis, np.ndim(arrays_[0])))


def _batch_concatenate(call: Callable[..., Any], batched: Sequence[bool], *arrays: Any, axis: int | None = 0) -> Any:
    """vmap of concatenate: every array batched, joined along the axis past the batch (each example flattened
    first for axis=None)."""
    arrays_ = batch_all(arrays, batched)
    if axis is None:
        return call(*[onp.reshape(a, (np.shape(a)[0], -1)) for a in arrays_], axis=1)
    return call(*arrays_, axis=shift_axis(axis, np.ndim(arrays_[0]) - 1))


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="concatenate",
        inputs=("*arrays",),
        forward=_concatenate,
        backward=_concatenate_backward,
        sample_inputs=_concatenate_samples,
        numpy="concatenate",
        reference=_torch_concatenate,
        batch=_batch_concatenate,
    )
    register(
        name="stack",
        inputs=("*arrays",),
        forward=_stack,
        backward=_stack_backward,
        sample_inputs=_stack_samples,
        numpy="stack",
        reference=lambda torch: lambda *arrays, axis=0: torch.stack(arrays, dim=axis),
        batch=_batch_stack,
    )
    for kind in ("hstack", "vstack", "dstack", "column_stack"):
        forward, backward = _joining(kind)
        register(
            name=kind,
            inputs=("*arrays",),
            forward=forward,
            backward=backward,
            sample_inputs=_joining_samples(kind),
            # row_stack is NumPy's old name of vstack (deprecated in NumPy 2.0, still there)
            numpy=("vstack", "row_stack") if kind == "vstack" else kind,
            reference=_torch_joining(kind),
        )
    register(
        name="append",
        inputs=("arr", "values"),
        forward=_append,
        backward=_append_backward,
        sample_inputs=_append_samples,
        numpy="append",
        reference=_torch_append,
    )
    register(
        name="slice_along",
        inputs=("x",),
        forward=_slice_along,
        backward=_slice_along_backward,
        sample_inputs=_slice_samples,
        reference=_torch_slice_along,
        doc="x[start:stop] along axis (None: of x flattened), reshaped to shape: how joined arrays get their gradients",
    )
    register(
        name="pad_along",
        inputs=("x",),
        forward=_pad_along,
        backward=_pad_along_backward,
        sample_inputs=_pad_samples,
        reference=_torch_pad_along,
        doc="zeros of shape with x placed from start along axis (None: flattened): slice_along's derivative",
    )
