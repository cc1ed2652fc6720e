"""What every transform of :mod:`opreg.func` shares: making a transform's inputs into Tensors of its own, and
handing results back.

Transforms nest (``jacfwd(jacrev(f))``, ``vmap(grad(f))``) by running on the one Tensor graph: a transform makes
each input it differentiates a fresh node (a leaf for an array, the recorded ``positive`` op of a Tensor that an
enclosing transform follows), runs ``f`` while ops record, and differentiates from the outputs back to those
nodes alone. Inside an enclosing transform, or when the caller passed Tensors that require gradients, the
derivatives are recorded too (``create_graph``), so the enclosing transform differentiates them again. At the
top level, on arrays, results are plain arrays and nothing is kept.

The number drawn when the inputs are made is the *floor*: nodes numbered below it existed before the inputs, so
none of them depends on an input, and the backward pass does not walk them (an inner ``grad`` does not walk the
enclosing transform's graph).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from opreg.errors import OpUsageError
from opreg.func.batching import Batched, active_levels, from_physical, map_physical, strip, to_physical
from opreg.func.pytree import TreeSpec, tree_unflatten
from opreg.tensor import Tensor, _grad_mode, apply
from opreg.versions import numbers


class _Depth(threading.local):
    """How many transforms are running ``f`` in this thread: inside one, results stay in the graph."""

    value = 0


_depth = _Depth()


class tracing:
    """``with tracing():`` runs ``f`` of a transform: ops record (whatever ``no_grad`` is around, as ``torch.func``
    does), and an inner transform knows that it is nested. A class rather than a generator: it runs on every call
    of every transform, and costs a third as much."""

    __slots__ = ("_previous",)

    def __enter__(self) -> None:
        self._previous = _grad_mode.enabled
        _grad_mode.enabled = True
        _depth.value += 1

    def __exit__(self, *exc_info: object) -> None:
        _depth.value -= 1
        _grad_mode.enabled = self._previous


def nested() -> bool:
    """Whether a transform is running ``f`` around this call: then derivatives are recorded and stay Tensors."""
    return _depth.value > 0


def draw_floor() -> int:
    """A node number lower than every node made from now on (see the module's docstring)."""
    return next(numbers)


def lift(x: Any, transform: str, where: str) -> Any:
    """``x`` as a Tensor of its own that requires gradients: a fresh leaf for an array or number, the recorded
    ``positive`` op of a Tensor that requires gradients (so that an enclosing transform's graph reaches through it).
    Under ``no_grad`` a Tensor is a fresh leaf too: as in ``torch.func``, ``no_grad`` around a transform leaves its
    own derivatives be and keeps the enclosing graph from seeing them. An integer, boolean or complex input has no
    derivative here, and an object that is not an array is no input, each an error naming it.

    Inside ``vmap`` the Tensor is made batched at every active ``vmap`` level, an input that is not batched at one
    being repeated along it first: each example differentiates its own copy, so a gradient is per example, never
    the sum over the batch that one shared leaf would get."""
    levels = active_levels()
    if levels or isinstance(x, Batched):
        return from_physical(_leaf(to_physical(x, levels), transform, where), levels)
    return _leaf(x, transform, where)


def _leaf(x: Any, transform: str, where: str) -> Tensor:
    data = x if type(x) is np.ndarray else x._data if isinstance(x, Tensor) else np.asarray(x)
    if data.dtype.kind != "f":
        if data.dtype.kind == "O":
            raise OpUsageError(
                f"{transform}: {where} is a {type(x).__name__}, neither an array nor a tuple, list, named tuple or "
                "dict of arrays (subclasses are not taken apart); convert it (dict(d)), or keep it out of the "
                "differentiated arguments (argnums, or a closure)"
            )
        raise OpUsageError(
            f"{transform}: {where} is an array of {data.dtype} {data.shape}, which has no derivative; pass floats "
            "(x.astype(float)), or keep it out of the differentiated arguments (argnums, or a closure)"
        )
    if isinstance(x, Tensor) and x._requires_grad and _grad_mode.enabled:
        return apply("positive", x)
    leaf = Tensor.__new__(Tensor)  # Tensor(data, requires_grad=True) without its checks, made above: per input
    leaf._data, leaf._grad, leaf._node, leaf._requires_grad = data, None, None, True
    return leaf


def keeps_graph(values: Sequence[Any]) -> bool:
    """Whether derivatives must be recorded: inside another transform, or for a caller's Tensors that require
    gradients (whose graph the results then reach); never under ``no_grad``, whose results stay out of graphs."""
    return _grad_mode.enabled and (
        nested() or any(isinstance(strip(v), Tensor) and strip(v)._requires_grad for v in values)
    )


def gives_tensors(values: Sequence[Any]) -> bool:
    """Whether results are handed back as Tensors: inside another transform, or when the caller passed any."""
    return nested() or any(isinstance(strip(v), Tensor) for v in values)


def lower(value: Any, tensors: bool) -> Any:
    """A result as the caller gets it: the Tensor itself when ``tensors``, its array otherwise (inside a batched
    value's wrappers, for a result batched by ``vmap``)."""
    if isinstance(value, Batched):
        return map_physical(lambda physical: lower(physical, tensors), value)
    if tensors:
        return value if isinstance(value, Tensor) else Tensor(value)
    return value._data if isinstance(value, Tensor) else np.asarray(value)


def zeros_like(x: Tensor) -> np.ndarray:
    """The derivative with respect to ``x`` of something that does not depend on it."""
    return np.zeros(x.shape, dtype=x.dtype)


def argnums_tuple(argnums: int | Sequence[int], n_args: int, transform: str) -> tuple[int, ...]:
    """``argnums`` as a tuple of distinct positions in range, or an error naming the transform. A position named
    twice would make two inputs of one argument, and the first would silently get a gradient of zeros."""
    if type(argnums) is int and -n_args <= argnums < n_args:  # the common case, on every call
        return (argnums % n_args,)
    numbers_ = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    if not numbers_ or not all(isinstance(a, int) and not isinstance(a, bool) for a in numbers_):
        raise OpUsageError(
            f"{transform}: argnums must be an int or a non-empty tuple of ints, got {argnums!r}; e.g. argnums=(0, 2)"
        )
    for a in numbers_:
        if not -n_args <= a < n_args:
            raise OpUsageError(
                f"{transform}: argnums={argnums!r} names argument {a}, and the function was given {n_args} "
                "positional arguments; count them from 0 (from -1 at the end), keyword arguments are not differentiated"
            )
    positions = tuple(a % n_args for a in numbers_)
    if len(set(positions)) != len(positions):
        raise OpUsageError(
            f"{transform}: argnums={argnums!r} names an argument twice; name each once (its gradient is the same)"
        )
    return positions


def describe(function: Callable[..., Any]) -> str:
    """``f`` by its name, for error messages."""
    return getattr(function, "__qualname__", None) or repr(function)


def of_arguments(
    f: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any], positions: Sequence[int]
) -> Callable[..., Any]:
    """``f`` as a function of the arguments at ``positions`` alone, the others fixed: what a Jacobian
    transform differentiates."""

    def of_chosen(*values: Any) -> Any:
        new_args = list(args)
        for a, v in zip(positions, values, strict=True):
            new_args[a] = v
        return f(*new_args, **kwargs)

    return of_chosen


def nest_jacobian(blocks: list[list[Any]], in_spec: TreeSpec, out_spec: TreeSpec, one_argument: bool) -> Any:
    """A Jacobian's blocks (per output leaf, per input leaf) nested as ``torch.func`` nests them: as the output,
    then as the arguments (their tuple, or the one argument's tree when ``argnums`` was an int)."""
    per_output = []
    for row in blocks:
        tree = tree_unflatten(in_spec, row)
        per_output.append(tree[0] if one_argument else tree)
    return tree_unflatten(out_spec, per_output)
