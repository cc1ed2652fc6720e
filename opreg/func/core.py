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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from opreg.errors import OpUsageError
from opreg.func.batching import Batched, active_levels, from_physical, map_physical, strip, to_physical
from opreg.tensor import Tensor, _grad_mode, apply
from opreg.versions import numbers


class _Depth(threading.local):
    """How many transforms are running ``f`` in this thread: inside one, results stay in the graph."""

    value = 0


_depth = _Depth()


@contextmanager
def tracing() -> Iterator[None]:
    """Run ``f`` of a transform: ops record (whatever ``no_grad`` is around, as ``torch.func`` does), and an inner
    transform knows that it is nested."""
    previous = _grad_mode.enabled
    _grad_mode.enabled = True
    _depth.value += 1
    try:
        yield
    finally:
        _depth.value -= 1
        _grad_mode.enabled = previous


def nested() -> bool:
    """Whether a transform is running ``f`` around this call: then derivatives are recorded and stay Tensors."""
    return _depth.value > 0


def draw_floor() -> int:
    """A node number lower than every node made from now on (see the module's docstring)."""
    return next(numbers)


def lift(x: Any, transform: str, where: str) -> Any:
    """``x`` as a Tensor of its own that requires gradients: a fresh leaf for an array or number, the recorded
    ``positive`` op of a Tensor that requires gradients (so that an enclosing transform's graph reaches through it).
    An integer, boolean or complex input has no derivative here, which is an error naming it.

    Inside ``vmap`` the Tensor is made batched at every active ``vmap`` level, an input
    that is not batched at one being repeated along it first: each example differentiates its own copy, so a
    gradient is per example, never the sum over the batch that one shared leaf would get."""
    levels = active_levels()
    if levels or isinstance(x, Batched):
        return from_physical(_leaf(to_physical(x, levels), transform, where), levels)
    return _leaf(x, transform, where)


def _leaf(x: Any, transform: str, where: str) -> Tensor:
    data = x._data if isinstance(x, Tensor) else np.asarray(x)
    if data.dtype.kind != "f":
        raise OpUsageError(
            f"{transform}: {where} is an array of {data.dtype} {data.shape}, which has no derivative; pass floats "
            "(x.astype(float)), or leave it out of argnums"
        )
    if isinstance(x, Tensor) and x.requires_grad:
        return apply("positive", x)
    return Tensor(data, requires_grad=True)


def keeps_graph(values: Sequence[Any]) -> bool:
    """Whether derivatives must be recorded: inside another transform, or for a caller's Tensors that require
    gradients (whose graph the results then reach)."""
    return nested() or any(isinstance(strip(v), Tensor) and strip(v).requires_grad for v in values)


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
    """``argnums`` as a tuple of positions in range, or an error naming the transform."""
    numbers_ = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    if not numbers_ or not all(isinstance(a, int) for a in numbers_):
        raise OpUsageError(f"{transform}: argnums must be an int or a non-empty tuple of ints, got {argnums!r}")
    for a in numbers_:
        if not -n_args <= a < n_args:
            raise OpUsageError(
                f"{transform}: argnums={argnums!r} names argument {a}, and the function was given {n_args} "
                "positional arguments"
            )
    return tuple(a % n_args for a in numbers_)


def describe(function: Callable[..., Any]) -> str:
    """``f`` by its name, for error messages."""
    return getattr(function, "__qualname__", None) or repr(function)
