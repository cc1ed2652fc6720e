"""Everything an op plugin imports, in one small module: ``from opreg.plugin import hookimpl, Register, Sample``.

The built-in plugins import from here and from :mod:`opreg.numpy` only, exactly as a third-party package does.

- :data:`hookimpl` marks the ``opreg_register_ops(register)`` hook; :class:`Register` types ``register``.
- :class:`Sample` is one set of inputs (and attribute values) for the gradient checks; :func:`standard_normal`,
  :func:`positive` and :func:`away_from_zero` draw the usual ones.
- :func:`normalize_axes`, :func:`restore_axes` and :func:`reduce` hold NumPy's ``axis``/``keepdims``
  conventions for reductions, and :func:`divide_by_count` a mean's scale (float16 cannot count past 65,504);
  :func:`gradient_dtype` is the dtype a gradient must have.
- :func:`fit_into` and :func:`ufunc_into` write a gradient fitted to its input into a given array, as the engine
  fits it: the last step of an op's ``backward_out`` (``register(forward_out=, backward_out=)``).
- :func:`op` is a registered op by its own name, as a function of arrays and Tensors (``opreg.ops.<name>``), for a
  backward that calls an op with no NumPy name (``getitem``'s calls ``scatter_add``, sort's ``scatter_along``).
- :func:`linear_jvp` is the ``jvp`` rule of an op linear in its one input (a reshape, a sum): the op itself,
  applied to the tangent.
- :func:`over_axes`, :func:`along_axis`, :func:`align`, :func:`matrix_ops`, :func:`loop`, :func:`batch_all` and
  :func:`shift_axis` are the common batching rules (``register(batch=...)``) and their parts
  (:mod:`opreg.batch_rules`).
- :func:`constant` is a value with the graph cut off (a softmax's shift), :func:`contiguous` a memory layout
  for speed: neither changes a value, so neither changes a derivative.
- :func:`generator` is the generator a random op draws from when given none (``opreg.manual_seed`` seeds it).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from opreg.axes import Axis, divide_by_count, normalize_axes, reduce, restore_axes
from opreg.batch_rules import align, along_axis, batch_all, loop, matrix_ops, over_axes, shift_axis
from opreg.dispatch import op_function
from opreg.fit import fit_into, gradient_dtype, ufunc_into
from opreg.hookspecs import Register, hookimpl
from opreg.opdef import Domain, Reference, Sample, SampleInputs
from opreg.random import generator
from opreg.tensor import Interceptor

__all__ = [
    "Axis",
    "Domain",
    "Reference",
    "Register",
    "Sample",
    "SampleInputs",
    "align",
    "along_axis",
    "away_from_zero",
    "batch_all",
    "constant",
    "contiguous",
    "divide_by_count",
    "fit_into",
    "generator",
    "gradient_dtype",
    "hookimpl",
    "linear_jvp",
    "loop",
    "matrix_ops",
    "normalize_axes",
    "numpy_reduction",
    "op",
    "over_axes",
    "positive",
    "reduce",
    "restore_axes",
    "shift_axis",
    "standard_normal",
    "ufunc_into",
]


def standard_normal(rng: np.random.Generator, shape: tuple[int, ...] = (3, 4)) -> np.ndarray:
    """Standard normal values: the default sample of an op defined everywhere."""
    return rng.standard_normal(shape)


def positive(rng: np.random.Generator, shape: tuple[int, ...] = (3, 4), low: float = 0.5) -> np.ndarray:
    """Values in [low, 2]: inside a logarithm's or a square root's domain, far enough from 0 for finite
    differences to stay accurate."""
    return rng.uniform(low, 2.0, size=shape)


def away_from_zero(rng: np.random.Generator, shape: tuple[int, ...] = (3, 4), low: float = 0.1) -> np.ndarray:
    """Values in +-[low, 2]: a divisor, or finite differences (eps 1e-6) that never straddle a kink at 0."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(low, 2.0, size=shape)


def constant(x: Any) -> np.ndarray | Any:
    """``x``'s values, with no derivative: a Tensor's array, an array itself. For quantities whose derivative is
    zero or cancels, such as the shift that keeps a softmax from overflowing."""
    data = getattr(x, "data", x)
    if isinstance(data, Interceptor):  # a batched value (vmap): its values, batched as they are
        return data
    return data if isinstance(data, np.ndarray) and not isinstance(x, np.ndarray) else np.asarray(x)


def contiguous(x: Any) -> Any:
    """``x`` in C order if it is an array (adding a transposed view into a parameter's gradient walks memory
    against its layout); a Tensor as it is."""
    return np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x


def op(name: str) -> Callable[..., Any]:
    """Registered op ``name`` as a function, as ``opreg.ops.<name>``: arrays in, an array out; a Tensor in, a
    Tensor out, recorded. How a backward calls an op that implements no NumPy function, and so is not in
    ``opreg.numpy`` (the joining ops' ``slice_along``); looked up when called, so it may name an op the same
    plugin registers."""

    def call(*args: Any, **attributes: Any) -> Any:
        return op_function(name)(*args, **attributes)

    call.__name__ = call.__qualname__ = name
    return call


def linear_jvp(name: str) -> Callable[..., Any]:
    """The ``jvp`` rule of op ``name`` when it is linear in its one input (reshapes, transposes, flips, sums): the
    output's tangent is the op applied to the input's, with the same attributes."""
    function = op(name)

    def jvp(tangents: tuple[Any, ...], x: Any, **attributes: Any) -> Any:
        return function(tangents[0], **attributes)

    return jvp


def numpy_reduction(name: str) -> Callable[[ModuleType], Callable[..., Any]]:
    """A ``reference=`` for a reduction: torch's ``name(x, dim=..., keepdim=...)`` with NumPy's ``axis``
    semantics (None reduces every axis; the empty tuple reduces none, where torch reads ``dim=()`` as all)."""

    def resolve(torch: ModuleType) -> Callable[..., Any]:
        function = getattr(torch, name)

        def reduce_like_numpy(x: Any, axis: Axis = None, keepdims: bool = False) -> Any:
            dims = tuple(range(x.ndim)) if axis is None else axis
            return x.clone() if dims == () else function(x, dim=dims, keepdim=keepdims)

        return reduce_like_numpy

    return resolve
