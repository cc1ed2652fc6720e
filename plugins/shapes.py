"""Shape changes that move no value: reshape, ravel, squeeze, expand_dims, atleast_1d/2d/3d, broadcast_to, and
the axis permutations permute (``np.transpose``), swapaxes, moveaxis and rollaxis.

Each output element is one input element, so each backward applies the inverse change to ``grad_output`` with
these same ops (a reshape back, the inverse permutation), and composes to any order. broadcast_to is the one that
copies an element to several places: its backward is ``g`` itself, which the engine sums back to the input's
shape.

The op ``transpose`` (plugins/linalg.py) swaps the last two axes (``Tensor.T``, the handout's name, NumPy's
``matrix_transpose``); ``np.transpose``, which reverses or permutes every axis, is the op ``permute`` here, the
name contrib_ops gave it before it became a built-in.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Axis, Register, Sample, hookimpl, linear_jvp, normalize_axes, shift_axis

#: A ``shape`` attribute as NumPy takes it: an int or a sequence of ints (one may be -1).
Shape = int | Sequence[int] | None


def _reshape(x: np.ndarray, *, shape: Shape = None) -> np.ndarray:
    """x with a new shape of as many elements (one entry may be -1), as np.reshape; a view where NumPy can."""
    if shape is None:
        raise ValueError("reshape needs the attribute shape, e.g. apply('reshape', x, shape=(2, -1))")
    return np.reshape(x, shape)


def _back_to_shape(g: Any, x: Any) -> tuple[Any]:
    """The backward of every op that only regroups x's elements in C order: g in x's shape."""
    return (onp.reshape(g, x.shape),)


def _ravel(x: np.ndarray) -> np.ndarray:
    """x flattened to 1-D in C order, as np.ravel."""
    return np.ravel(x)


def _atleast(ndim: int) -> Callable[[np.ndarray], np.ndarray]:
    function = {1: np.atleast_1d, 2: np.atleast_2d, 3: np.atleast_3d}[ndim]

    def atleast(x: np.ndarray) -> np.ndarray:
        return np.asarray(function(x))

    atleast.__doc__ = (
        f"x viewed with at least {ndim} dimensions, as np.atleast_{ndim}d of one array (several arrays give a "
        "list, which no op returns: call it once per array)."
    )
    return atleast


def _expand_dims(x: np.ndarray, *, axis: Axis = 0) -> np.ndarray:
    """x with new size-1 axes at ``axis`` (positions in the result), as np.expand_dims."""
    return np.expand_dims(x, axis)  # type: ignore[arg-type]


def _squeeze(x: np.ndarray, *, axis: Axis = None) -> np.ndarray:
    """x without the size-1 axes ``axis`` (None: all of them), as np.squeeze."""
    return np.squeeze(x, axis)


def _squeeze_backward(g: Any, x: Any, *, axis: Axis) -> tuple[Any]:
    squeezed = tuple(i for i, n in enumerate(x.shape) if n == 1) if axis is None else normalize_axes(axis, x.ndim)
    return (onp.expand_dims(g, squeezed),)


def _broadcast_to(x: np.ndarray, *, shape: tuple[int, ...] = ()) -> np.ndarray:
    """x broadcast to ``shape``, as np.broadcast_to: a read-only view."""
    return np.broadcast_to(x, shape)


# --- permutations of the axes ---------------------------------------------------------------------------------------


def _permute_axes(ndim: int, axes: Sequence[int] | None) -> tuple[int, ...]:
    """``axes`` as non-negative ints; None means all of them reversed, as np.transpose."""
    return tuple(reversed(range(ndim))) if axes is None else tuple(operator.index(a) % max(ndim, 1) for a in axes)


def _permute(x: np.ndarray, *, axes: Sequence[int] | None = None) -> np.ndarray:
    """x with its axes reordered: output axis i is input axis axes[i] (None: reversed), as np.transpose."""
    return np.transpose(x, axes)  # NumPy rejects axes that are not a permutation, with its own message


def _inverse(permutation: Sequence[int]) -> tuple[int, ...]:
    """The permutation that undoes ``permutation`` (non-negative axes): argsort of it."""
    return tuple(int(a) for a in np.argsort(permutation))


def _permute_backward(g: Any, x: Any, *, axes: Sequence[int] | None) -> tuple[Any]:
    """The inverse permutation, argsort of the axes: made non-negative first, or argsort would misorder -1."""
    return (onp.transpose(g, _inverse(_permute_axes(x.ndim, axes))),)


def _swapaxes(x: np.ndarray, *, axis1: int = 0, axis2: int = 1) -> np.ndarray:
    """x with axes axis1 and axis2 exchanged, as np.swapaxes (which has no defaults: pass both)."""
    return np.swapaxes(x, axis1, axis2)


def _moveaxis(x: np.ndarray, *, source: int | Sequence[int] = 0, destination: int | Sequence[int] = -1) -> np.ndarray:
    """x with the axes ``source`` moved to the positions ``destination`` (ints or tuples), as np.moveaxis (which
    has no defaults: pass both)."""
    return np.moveaxis(x, source, destination)


def _moveaxis_backward(g: Any, x: Any, *, source: int | Sequence[int], destination: int | Sequence[int]) -> tuple[Any]:
    """The axes moved back from ``destination`` to ``source``."""
    return (onp.moveaxis(g, destination, source),)


def _rollaxis(x: np.ndarray, *, axis: int = -1, start: int = 0) -> np.ndarray:
    """x with axis ``axis`` rolled back until it lies before position ``start``, as np.rollaxis (np.moveaxis is
    NumPy's advice for new code)."""
    return np.rollaxis(x, axis, start)


def _rollaxis_order(ndim: int, axis: int, start: int) -> tuple[int, ...]:
    """The permutation np.rollaxis applies (output axis i is input axis result[i]), by NumPy's own rules: ``start``
    counts positions before the axis is removed."""
    axis = operator.index(axis) % ndim
    start = operator.index(start) + (ndim if start < 0 else 0)
    if axis < start:
        start -= 1
    order = [n for n in range(ndim) if n != axis]
    order.insert(start, axis)
    return tuple(order)


def _rollaxis_backward(g: Any, x: Any, *, axis: int, start: int) -> tuple[Any]:
    return (onp.transpose(g, _inverse(_rollaxis_order(x.ndim, axis, start))),)


def _numpy_permutation(function: Callable[..., np.ndarray], ndim: int, *args: Any) -> tuple[int, ...]:
    """The axis permutation NumPy's ``function`` applies, read off a broadcast view with sizes 1..ndim (no memory):
    for the references, so that they follow NumPy and not this module."""
    return tuple(n - 1 for n in function(np.broadcast_to(0.0, tuple(range(1, ndim + 1))), *args).shape)


# --- samples and references -----------------------------------------------------------------------------------------


def _reshape_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample(rng.standard_normal((2, 3, 4)), shape=(6, 4)),
        Sample(rng.standard_normal((2, 3, 4)), shape=(4, -1)),
        Sample(rng.standard_normal((2, 3, 4)), shape=24),
        Sample(rng.standard_normal((6, 4)), shape=(2, -1, 3)),
        Sample(rng.standard_normal((1,)), shape=()),
        Sample(rng.standard_normal((0, 3)), shape=(3, 0)),
    ]


def _torch_reshape(torch: ModuleType) -> Callable[..., Any]:
    return lambda x, shape=None: torch.reshape(x, (shape,) if isinstance(shape, int) else tuple(shape))


def _permute_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample(rng.standard_normal((2, 3, 4))),
        Sample(rng.standard_normal((2, 3, 4)), axes=(1, 2, 0)),
        Sample(rng.standard_normal((2, 3, 4)), axes=(-1, 0, -2)),
        Sample(rng.standard_normal((3, 4)), axes=(1, 0)),
        Sample(rng.standard_normal((2, 0, 4)), axes=(2, 0, 1)),
    ]


def _torch_permute(torch: ModuleType) -> Callable[..., Any]:
    return lambda x, axes=None: x.permute(tuple(reversed(range(x.ndim))) if axes is None else tuple(axes))


def _atleast_samples(rng: np.random.Generator) -> list[Sample]:
    return [Sample(rng.standard_normal(shape)) for shape in [(), (3,), (2, 3), (2, 1, 3), (0,)]]


def _torch_atleast(ndim: int) -> Callable[[ModuleType], Callable[..., Any]]:
    """torch.atleast_3d puts a 1-D input's length in the middle axis and a 2-D input's axes first, as NumPy."""
    return lambda torch: getattr(torch, f"atleast_{ndim}d")


# --- batching rules (vmap): the batch is axis 0, so every axis an attribute names moves one place up ----------------


def _dims(shape: Any) -> tuple[int, ...]:
    return (shape,) if isinstance(shape, int) else tuple(shape)


def _batch_reshape(call: Callable[..., Any], batched: Sequence[bool], x: Any, *, shape: Shape = None) -> Any:
    return call(x, shape=shape if shape is None else (np.shape(x)[0], *_dims(shape)))


def _batch_ravel(call: Callable[..., Any], batched: Sequence[bool], x: Any) -> Any:
    return onp.reshape(x, (np.shape(x)[0], -1))


def _batch_expand_dims(call: Callable[..., Any], batched: Sequence[bool], x: Any, *, axis: Axis = 0) -> Any:
    return call(x, axis=shift_axis(axis, np.ndim(x) - 1 + len(_dims(axis))))


def _batch_squeeze(call: Callable[..., Any], batched: Sequence[bool], x: Any, *, axis: Axis = None) -> Any:
    logical = np.shape(x)[1:]
    axes = tuple(i for i, n in enumerate(logical) if n == 1) if axis is None else axis
    return call(x, axis=shift_axis(axes, len(logical)))


def _batch_broadcast_to(call: Callable[..., Any], batched: Sequence[bool], x: Any, *, shape: Any = ()) -> Any:
    size, logical, target = np.shape(x)[0], tuple(np.shape(x)[1:]), _dims(shape)
    if len(logical) < len(target):
        x = onp.reshape(x, (size,) + (1,) * (len(target) - len(logical)) + logical)
    return call(x, shape=(size, *target))


def _batch_permute(
    call: Callable[..., Any], batched: Sequence[bool], x: Any, *, axes: Sequence[int] | None = None
) -> Any:
    ndim = np.ndim(x) - 1
    order = tuple(reversed(range(ndim))) if axes is None else tuple(axes)
    return call(x, axes=(0, *shift_axis(order, ndim)))


def _batch_swapaxes(
    call: Callable[..., Any], batched: Sequence[bool], x: Any, *, axis1: int = 0, axis2: int = 1
) -> Any:
    ndim = np.ndim(x) - 1
    return call(x, axis1=shift_axis(axis1, ndim), axis2=shift_axis(axis2, ndim))


def _batch_moveaxis(
    call: Callable[..., Any], batched: Sequence[bool], x: Any, *, source: Any = 0, destination: Any = -1
) -> Any:
    ndim = np.ndim(x) - 1
    return call(x, source=shift_axis(source, ndim), destination=shift_axis(destination, ndim))


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="reshape",
        inputs=("x",),
        forward=_reshape,
        backward=_back_to_shape,
        jvp=linear_jvp("reshape"),
        sample_inputs=_reshape_samples,
        doc="x with a new shape (required attribute shape; one entry may be -1), as np.reshape in C order.",
        numpy="reshape",
        reference=_torch_reshape,
        batch=_batch_reshape,
    )
    register(
        name="ravel",
        inputs=("x",),
        forward=_ravel,
        backward=_back_to_shape,
        jvp=linear_jvp("ravel"),
        sample_inputs=lambda rng: [Sample(rng.standard_normal(s)) for s in [(2, 3, 4), (), (0, 2)]],
        numpy="ravel",
        reference="torch.ravel",
        batch=_batch_ravel,
    )
    for ndim in (1, 2, 3):
        register(
            name=f"atleast_{ndim}d",
            inputs=("x",),
            forward=_atleast(ndim),
            backward=_back_to_shape,
            sample_inputs=_atleast_samples,
            numpy=f"atleast_{ndim}d",
            reference=_torch_atleast(ndim),
        )
    register(
        name="expand_dims",
        inputs=("x",),
        forward=_expand_dims,
        backward=lambda g, x, *, axis: (onp.squeeze(g, axis),),
        jvp=linear_jvp("expand_dims"),
        sample_inputs=lambda rng: [Sample(rng.standard_normal((3, 4)), axis=a) for a in (0, -1, (0, 2))],
        numpy="expand_dims",
        reference=lambda torch: lambda x, axis=0: x.reshape(np.expand_dims(np.empty(x.shape), axis).shape),
        batch=_batch_expand_dims,
    )
    register(
        name="squeeze",
        inputs=("x",),
        forward=_squeeze,
        backward=_squeeze_backward,
        jvp=linear_jvp("squeeze"),
        sample_inputs=lambda rng: [Sample(rng.standard_normal((3, 1, 4, 1)), axis=a) for a in (None, 1, (-1, 1))],
        numpy="squeeze",
        reference=lambda torch: lambda x, axis=None: x.reshape(np.squeeze(np.empty(x.shape), axis).shape),
        batch=_batch_squeeze,
    )
    register(
        name="broadcast_to",
        inputs=("x",),
        forward=_broadcast_to,
        backward=lambda g, x: (g,),  # the engine sums the broadcast axes back to x's shape
        jvp=linear_jvp("broadcast_to"),
        sample_inputs=lambda rng: [
            Sample(rng.standard_normal((3, 1)), shape=(2, 3, 4)),
            Sample(rng.standard_normal(4), shape=(3, 4)),
        ],
        numpy="broadcast_to",
        reference=lambda torch: lambda x, shape=(): x.broadcast_to(shape),
        batch=_batch_broadcast_to,
    )
    register(
        name="permute",
        inputs=("x",),
        forward=_permute,
        backward=_permute_backward,
        jvp=linear_jvp("permute"),
        sample_inputs=_permute_samples,
        numpy="transpose",
        reference=_torch_permute,
        batch=_batch_permute,
    )
    register(
        name="swapaxes",
        inputs=("x",),
        forward=_swapaxes,
        backward=lambda g, x, *, axis1, axis2: (onp.swapaxes(g, axis1, axis2),),
        jvp=linear_jvp("swapaxes"),
        sample_inputs=lambda rng: [
            Sample(rng.standard_normal((2, 3, 4)), axis1=a, axis2=b) for a, b in [(0, 2), (-1, 1), (1, 1)]
        ],
        numpy="swapaxes",
        reference=lambda torch: lambda x, axis1=0, axis2=1: torch.swapaxes(x, axis1, axis2),
        batch=_batch_swapaxes,
    )
    register(
        name="moveaxis",
        inputs=("x",),
        forward=_moveaxis,
        backward=_moveaxis_backward,
        jvp=linear_jvp("moveaxis"),
        sample_inputs=lambda rng: [
            Sample(rng.standard_normal((2, 3, 4, 5)), source=s, destination=d)
            for s, d in [(0, -1), (-1, 1), ((0, 1), (-1, 0)), ((3, 0), (1, 2))]
        ],
        numpy="moveaxis",
        reference=lambda torch: lambda x, source=0, destination=-1: torch.movedim(x, source, destination),
        batch=_batch_moveaxis,
    )
    register(
        name="rollaxis",
        inputs=("x",),
        forward=_rollaxis,
        backward=_rollaxis_backward,
        jvp=linear_jvp("rollaxis"),
        sample_inputs=lambda rng: [
            Sample(rng.standard_normal((2, 3, 4, 5)), axis=a, start=s) for a, s in [(3, 1), (-1, 0), (1, 4), (2, -2)]
        ],
        numpy="rollaxis",
        reference=lambda torch: (
            lambda x, axis=-1, start=0: x.permute(_numpy_permutation(np.rollaxis, x.ndim, axis, start))
        ),
    )
