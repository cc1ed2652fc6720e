"""``vmap``: a function of one example, run on a batch, as ``torch.func.vmap`` and ``jax.vmap``.

``f`` runs once, on :class:`opreg.func.batching.Batched` values: every op it calls is batched by the op's rule, or
by a loop over the examples for an op that has none (correct, and slow). Nothing is traced ahead and no Python
is run per example, except in those loops.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from opreg.dispatch import op_function
from opreg.errors import OpUsageError
from opreg.func.batching import Batched, batching
from opreg.func.core import describe
from opreg.func.pytree import TreeSpec, tree_flatten, tree_unflatten
from opreg.tensor import Tensor


def vmap(f: Callable[..., Any], in_axes: Any = 0, out_axes: Any = 0) -> Callable[..., Any]:
    """``f`` mapped over an axis of its arguments: ``vmap(f)(xs)[i] == f(xs[i])``.

    ``in_axes`` is an int (the batch axis of every argument), None (not batched), or a tuple with one entry per
    positional argument, each an int, None, or a tree matching that argument. ``out_axes`` places the batch in
    each output (an int, or a tree matching the output); an output that does not depend on the batch is
    repeated. Keyword arguments are passed through unbatched. Composes with ``grad`` and the other transforms:
    ``vmap(grad(loss), in_axes=(None, 0, 0))(params, x, y)`` gives per-example gradients.
    """

    @functools.wraps(f)
    def vmapped(*args: Any, **kwargs: Any) -> Any:
        leaves, spec = tree_flatten(args)
        axes = _leaf_axes(in_axes, args, spec, "in_axes", f)
        size = _batch_size(leaves, axes, f)
        with batching(size) as level:
            batched = [
                x if axis is None else Batched(_move(x, axis, 0), level) for x, axis in zip(leaves, axes, strict=True)
            ]
            output = f(*tree_unflatten(spec, batched), **kwargs)
        out_leaves, out_spec = tree_flatten(output)
        out = _leaf_axes(out_axes, output, out_spec, "out_axes", f, single=True)
        results = [
            _unbatch(o, level, size, axis, i, f) for i, (o, axis) in enumerate(zip(out_leaves, out, strict=True))
        ]
        return tree_unflatten(out_spec, results)

    return vmapped


def _leaf_axes(
    axes: Any, tree: Any, spec: TreeSpec, what: str, f: Callable[..., Any], single: bool = False
) -> list[int | None]:
    """One axis (or None) per leaf of ``tree``: ``axes`` broadcast over it, as torch.func reads in_axes."""
    if axes is None or isinstance(axes, int):
        return [axes] * spec.num_leaves
    if not single:  # in_axes: one entry per positional argument
        if not isinstance(axes, tuple | list) or len(axes) != len(tree):
            raise OpUsageError(
                f"vmap: {what}={axes!r} must be an int, None, or a tuple with one entry per positional argument of "
                f"{describe(f)} ({len(tree)} given)"
            )
        result: list[int | None] = []
        for position, (entry, argument) in enumerate(zip(axes, tree, strict=True)):
            result += _leaf_axes(entry, argument, tree_flatten(argument)[1], f"{what}[{position}]", f, single=True)
        return result
    leaves, axes_spec = tree_flatten(axes)
    if axes_spec != spec or not all(a is None or isinstance(a, int) for a in leaves):
        raise OpUsageError(
            f"vmap: {what}={axes!r} must be an int, None, or a tree of them nested as the value it stands for "
            f"({spec.describe()})"
        )
    return list(leaves)


def _batch_size(leaves: list[Any], axes: list[int | None], f: Callable[..., Any]) -> int:
    """The one batch size of the batched leaves, or an error naming every leaf and its size."""
    sizes = []
    for i, (x, axis) in enumerate(zip(leaves, axes, strict=True)):
        if axis is None:
            continue
        shape = np.shape(x)
        if not -len(shape) <= axis < len(shape):
            raise OpUsageError(
                f"vmap: in_axes gives argument leaf {i} (shape {shape}) the batch axis {axis}, which it does not "
                "have; give None for an argument that is not batched"
            )
        sizes.append((i, shape[axis], axis))
    if not sizes:
        raise OpUsageError(f"vmap: in_axes leaves every argument of {describe(f)} unbatched; batch at least one")
    if len({n for _, n, _ in sizes}) > 1:
        listed = ", ".join(f"argument leaf {i} has {n} along axis {a}" for i, n, a in sizes)
        raise OpUsageError(f"vmap: the batched arguments have different batch sizes: {listed}; they must agree")
    return int(sizes[0][1])


def _move(x: Any, source: int, destination: int) -> Any:
    if source % max(np.ndim(x), 1) == destination % max(np.ndim(x), 1):
        return x
    return op_function("moveaxis")(x, source=source, destination=destination)


def _unbatch(output: Any, level: int, size: int, axis: int | None, i: int, f: Callable[..., Any]) -> Any:
    """An output of ``f`` as the caller gets it: the batch placed on ``axis``; repeated if it does not depend on
    the batch."""
    if isinstance(output, Batched) and output.level == level:
        if axis is None:
            raise OpUsageError(
                f"vmap: out_axes gives output leaf {i} of {describe(f)} None, and it differs per example; give it "
                "an axis"
            )
        return _move(output.value, 0, axis)
    if axis is None:
        return output
    if not isinstance(output, Tensor | Batched | np.ndarray):
        output = np.asarray(output)
    shape = tuple(np.shape(output))
    if isinstance(output, np.ndarray):
        repeated: Any = np.array(np.broadcast_to(output, (size, *shape)))
    else:
        repeated = op_function("broadcast_to")(output, shape=(size, *shape))
    return _move(repeated, 0, axis)
