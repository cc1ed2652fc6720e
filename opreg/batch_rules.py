"""Batching rules that many ops share, for ``register(batch=...)`` (re-exported by :mod:`opreg.plugin`).

A rule is ``rule(call, batched, *inputs, **attributes)``: ``call`` runs the op, ``batched`` says per input
whether it carries the batch (on its axis 0), and the result has the batch on axis 0. A rule calls ops only
(``call``, ``opreg.numpy``), never NumPy on values, so that ``grad`` records through it and a nested ``vmap``
batches its calls in turn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from opreg.axes import Axis
from opreg.dispatch import op_function
from opreg.errors import OpUsageError


def shift_axis(axis: Any, ndim: int) -> Any:
    """An axis (or tuple of axes) of a value of ``ndim`` logical axes, as the same axis of its batch (axis 0
    added in front): negative axes counted from the logical end, then moved one place up."""
    if isinstance(axis, tuple | list):
        return tuple(shift_axis(a, ndim) for a in axis)
    axis = int(axis)
    if not -ndim <= axis < ndim:
        raise np.exceptions.AxisError(axis, ndim)
    return axis % ndim + 1


def over_axes(
    call: Callable[..., Any], batched: Sequence[bool], x: Any, *, axis: Axis = None, **attributes: Any
) -> Any:
    """An op of one input over the axes ``axis`` names, every axis for None: reductions (``sum``, ``max``,
    ``var``, ...) and ``flip``. The axes move past the batch; None becomes every logical axis."""
    axes = tuple(range(1, np.ndim(x))) if axis is None else shift_axis(axis, np.ndim(x) - 1)
    return call(x, axis=axes, **attributes)


def along_axis(call: Callable[..., Any], batched: Sequence[bool], x: Any, *, axis: Any = -1, **attributes: Any) -> Any:
    """An op of one input along one axis, over the flattened input for None: ``cumsum``, ``sort``. The axis
    moves past the batch; None flattens each example first."""
    if axis is None:
        return call(op_function("reshape")(x, shape=(np.shape(x)[0], -1)), axis=1, **attributes)
    return call(x, axis=shift_axis(axis, np.ndim(x) - 1), **attributes)


def matrix_ops(minimum_ndim: int) -> Callable[..., Any]:
    """The rule of an op of one input that acts on its last ``minimum_ndim`` axes and stacks over any leading
    ones (a matrix transpose): called on the batch as it is. An example with fewer axes is batched by the loop
    (the batch would become one of the op's axes)."""

    def rule(call: Callable[..., Any], batched: Sequence[bool], x: Any, **attributes: Any) -> Any:
        if np.ndim(x) - 1 < minimum_ndim:
            return loop(call, batched, x, **attributes)
        return call(x, **attributes)

    return rule


def loop(call: Callable[..., Any], batched: Sequence[bool], *inputs: Any, **attributes: Any) -> Any:
    """What an op with no rule gets, for a rule to fall back to: the op on each example, stacked."""
    size = next(np.shape(x)[0] for x, b in zip(inputs, batched, strict=True) if b)
    results = [
        call(*[x[i] if b else x for x, b in zip(inputs, batched, strict=True)], **attributes) for i in range(size)
    ]
    return stack_examples(results, getattr(getattr(call, "func", call), "__name__", "the function"))


def stack_examples(results: Sequence[Any], what: str) -> Any:
    """Per-example results (or tuples of them) stacked along a new axis 0, or an error naming ``what`` where the
    examples' results differ in shape."""
    if results and isinstance(results[0], tuple):
        return tuple(stack_examples(list(parts), what) for parts in zip(*results, strict=True))
    shapes = {tuple(np.shape(r)) for r in results}
    if len(shapes) > 1:
        raise OpUsageError(
            f"vmap: {what} gives results of different shapes for different examples ({sorted(shapes)}), so they "
            "cannot be stacked into one batch; call it outside vmap, on each example"
        )
    return op_function("stack")(*results)


def align(inputs: Sequence[Any], batched: Sequence[bool]) -> list[Any]:
    """Operands of an op that broadcasts elementwise, the batched ones given singleton axes after the batch
    axis up to the highest logical rank among all, so that NumPy's broadcasting from the right pairs their
    logical axes (and the batch axis only with batch axes)."""
    rank = max(np.ndim(x) - b for x, b in zip(inputs, batched, strict=True))
    aligned = []
    for x, b in zip(inputs, batched, strict=True):
        missing = rank - (np.ndim(x) - 1)
        if b and missing > 0:
            shape = tuple(np.shape(x))
            x = op_function("reshape")(x, shape=shape[:1] + (1,) * missing + shape[1:])
        aligned.append(x)
    return aligned


def batch_all(inputs: Sequence[Any], batched: Sequence[bool]) -> list[Any]:
    """Every input batched: an unbatched one repeated along a new axis 0 (a recorded ``broadcast_to``)."""
    size = next(np.shape(x)[0] for x, b in zip(inputs, batched, strict=True) if b)
    return [
        x if b else op_function("broadcast_to")(x, shape=(size, *np.shape(x)))
        for x, b in zip(inputs, batched, strict=True)
    ]
