"""Batched values: what ``vmap`` runs a function on, and how every op call on them is batched.

A :class:`Batched` holds a ``value`` whose axis 0 is the batch of one ``vmap`` (its ``level``); the function
sees the rest, the *logical* value (``shape`` is ``value.shape[1:]``). It behaves as an array does (operators,
indexing, ``.sum()``, NumPy's functions through NEP 13 and 18), and every op called on it reaches
:func:`call_batched` (through :class:`opreg.tensor.Interceptor`), which runs the op once on the whole batch:

- by the op's declared rule (``register(batch=...)``): ``"elementwise"`` aligns the batched inputs' axes and
  calls the op once; a function gets the inputs (the batched ones with the batch on axis 0) and returns the
  output with the batch on axis 0;
- for an op with no rule, by a loop over the batch: the op on each example, the results stacked (correct, slow).

Rules call ops on the values, which may be Tensors (``grad`` records through ``vmap``) or Batched values of an
enclosing ``vmap`` (a lower level): those calls are batched in turn, so nested ``vmap`` recurses, one level at a
time. A Batched value of a higher level wraps those of lower levels, and its *physical* value (all the wrappers
stripped) has one leading axis per level, lowest first, then the logical axes.
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from opreg.batch_rules import align, loop, stack_examples
from opreg.dispatch import op_function
from opreg.errors import OpregError, OpUsageError
from opreg.nondifferentiable import NON_DIFFERENTIABLE
from opreg.opdef import ELEMENTWISE, OpDef
from opreg.registry import numpy_op
from opreg.tensor import Interceptor, numpy_call

#: Level numbers: each ``vmap`` call draws a higher one than every ``vmap`` running around it.
_levels = itertools.count(1)


class _Active(threading.local):
    """The ``vmap`` calls running in this thread, outermost first: ``(level, batch size)`` each."""

    def __init__(self) -> None:
        self.levels: list[tuple[int, int]] = []


_active = _Active()


def active_levels() -> tuple[tuple[int, int], ...]:
    """The ``(level, size)`` of every ``vmap`` running ``f`` around this call, outermost (lowest) first."""
    return tuple(_active.levels)


@contextmanager
def batching(size: int) -> Iterator[int]:
    """A new ``vmap`` level of ``size`` examples, active while ``f`` runs."""
    level = next(_levels)
    _active.levels.append((level, size))
    try:
        yield level
    finally:
        _active.levels.pop()


class Batched(Interceptor):
    """A batch of values of one ``vmap``, seen by ``f`` as one of them (see the module's docstring)."""

    __slots__ = ("level", "value")
    __array_priority__ = 1000.0

    def __init__(self, value: Any, level: int) -> None:
        self.value = value
        self.level = level

    @classmethod
    def intercept(cls, op: OpDef, args: Sequence[Any], attributes: Mapping[str, Any]) -> Any:
        return call_batched(op, args, attributes)

    # --- what an array has -------------------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape[1:])

    @property
    def ndim(self) -> int:
        return int(self.value.ndim) - 1

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def dtype(self) -> np.dtype:
        dtype: np.dtype = np.dtype(self.value.dtype)
        return dtype

    @property
    def data(self) -> Any:
        """The values without the graph, as ``Tensor.data``: the same batch, of arrays."""
        return map_physical(lambda physical: getattr(physical, "data", physical), self)

    @property
    def T(self) -> Any:
        return self if self.ndim < 2 else _np_call(np.transpose, self)

    @property
    def mT(self) -> Any:
        return _np_call(np.matrix_transpose, self)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d batched value")
        return self.shape[0]

    def __iter__(self) -> Iterator[Any]:
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return f"Batched(level={self.level}, shape={self.shape}, value={self.value!r})"

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        raise OpUsageError(
            f"vmap: a batched value of shape {self.shape} (one example of a batch) was converted to a NumPy array "
            "(np.asarray, np.array, float(), or a NumPy function no op implements); inside vmap use opreg.numpy "
            "functions and operators, and no Python conditions on values"
        )

    def __bool__(self) -> bool:
        raise OpUsageError(
            "vmap: the truth value of a batched value differs per example, so a Python `if` on it cannot be "
            "batched; use onp.where(condition, a, b)"
        )

    def __float__(self) -> float:
        raise OpUsageError("vmap: float() of a batched value: it has one value per example; keep it an array")

    def item(self) -> Any:
        raise OpUsageError("vmap: .item() of a batched value: it has one value per example; keep it an array")

    # --- NumPy's protocols and ndarray's methods ---------------------------------------------------------------

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        name = ufunc.__name__
        if method == "__call__" and numpy_op(name) is not None:
            return numpy_call(ufunc, name, method, inputs, kwargs)
        if method == "__call__" and name in NON_DIFFERENTIABLE:
            return _elementwise_values(ufunc, inputs, kwargs)
        raise _unbatchable(name if method == "__call__" else f"{name}.{method}")

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        if func is np.shape:
            return self.shape
        if func is np.ndim:
            return self.ndim
        if func is np.size and len(args) + len(kwargs) == 1:
            return self.size
        name = func.__name__
        if getattr(func, "__module__", None) == "numpy.linalg":
            name = f"linalg.{name}"
        if numpy_op(name) is not None:
            return numpy_call(func, func.__name__, "__call__", args, kwargs)
        if name in NON_DIFFERENTIABLE:
            return _loop_values(func, args, kwargs)
        raise _unbatchable(name)

    def reshape(self, *shape: Any) -> Any:
        return _np_call(np.reshape, self, shape[0] if len(shape) == 1 else shape)

    def ravel(self) -> Any:
        return _np_call(np.ravel, self)

    def flatten(self) -> Any:
        return _np_call(np.ravel, self)

    def squeeze(self, axis: Any = None) -> Any:
        return _np_call(np.squeeze, self, axis=axis)

    def transpose(self, *axes: Any) -> Any:
        return _np_call(np.transpose, self, (axes[0] if len(axes) == 1 else axes) or None)

    def swapaxes(self, axis1: int, axis2: int) -> Any:
        return _np_call(np.swapaxes, self, axis1, axis2)

    def astype(self, dtype: Any, copy: bool = True) -> Any:
        return _np_call(np.astype, self, dtype)

    def copy(self) -> Any:
        return _np_call(np.positive, self)

    def clip(self, min: Any = None, max: Any = None) -> Any:
        return _np_call(np.clip, self, min, max)

    def sum(self, axis: Any = None, keepdims: bool = False) -> Any:
        return _np_call(np.sum, self, axis=axis, keepdims=keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Any:
        return _np_call(np.mean, self, axis=axis, keepdims=keepdims)

    def prod(self, axis: Any = None, keepdims: bool = False) -> Any:
        return _np_call(np.prod, self, axis=axis, keepdims=keepdims)

    def max(self, axis: Any = None, keepdims: bool = False) -> Any:
        return _np_call(np.max, self, axis=axis, keepdims=keepdims)

    def min(self, axis: Any = None, keepdims: bool = False) -> Any:
        return _np_call(np.min, self, axis=axis, keepdims=keepdims)

    def var(self, axis: Any = None, ddof: int = 0, keepdims: bool = False) -> Any:
        return _np_call(np.var, self, axis=axis, ddof=ddof, keepdims=keepdims)

    def std(self, axis: Any = None, ddof: int = 0, keepdims: bool = False) -> Any:
        return _np_call(np.std, self, axis=axis, ddof=ddof, keepdims=keepdims)

    def cumsum(self, axis: Any = None) -> Any:
        return _np_call(np.cumsum, self, axis=axis)

    def argmax(self, axis: Any = None) -> Any:
        return _loop_values(np.argmax, (self,), {"axis": axis})

    def argmin(self, axis: Any = None) -> Any:
        return _loop_values(np.argmin, (self,), {"axis": axis})

    def __getitem__(self, index: Any) -> Any:
        return op_function("getitem")(self, index=index)

    def __setitem__(self, index: Any, value: Any) -> None:
        raise OpUsageError(
            "vmap: a batched value cannot be changed in place (b[index] = v); build the result instead "
            "(onp.where, onp.concatenate)"
        )

    # --- operators: each the registered op, batched ------------------------------------------------------------

    def __add__(self, other: Any) -> Any:
        return _op("add", self, other)

    def __radd__(self, other: Any) -> Any:
        return _op("add", other, self)

    def __sub__(self, other: Any) -> Any:
        return _op("sub", self, other)

    def __rsub__(self, other: Any) -> Any:
        return _op("sub", other, self)

    def __mul__(self, other: Any) -> Any:
        return _op("mul", self, other)

    def __rmul__(self, other: Any) -> Any:
        return _op("mul", other, self)

    def __truediv__(self, other: Any) -> Any:
        return _op("div", self, other)

    def __rtruediv__(self, other: Any) -> Any:
        return _op("div", other, self)

    def __matmul__(self, other: Any) -> Any:
        return _op("matmul", self, other)

    def __rmatmul__(self, other: Any) -> Any:
        return _op("matmul", other, self)

    def __pow__(self, other: Any) -> Any:
        return _op("pow", self, other)

    def __rpow__(self, other: Any) -> Any:
        return _op("pow", other, self)

    def __mod__(self, other: Any) -> Any:
        return _np_call(np.mod, self, other)

    def __rmod__(self, other: Any) -> Any:
        return _np_call(np.mod, other, self)

    def __neg__(self) -> Any:
        return _op("neg", self)

    def __pos__(self) -> Any:
        return _op("positive", self)

    def __abs__(self) -> Any:
        return _np_call(np.abs, self)

    def __lt__(self, other: Any) -> Any:
        return _elementwise_values(np.less, (self, other), {})

    def __le__(self, other: Any) -> Any:
        return _elementwise_values(np.less_equal, (self, other), {})

    def __gt__(self, other: Any) -> Any:
        return _elementwise_values(np.greater, (self, other), {})

    def __ge__(self, other: Any) -> Any:
        return _elementwise_values(np.greater_equal, (self, other), {})

    def __eq__(self, other: Any) -> Any:
        return _elementwise_values(np.equal, (self, other), {})

    def __ne__(self, other: Any) -> Any:
        return _elementwise_values(np.not_equal, (self, other), {})

    __hash__ = None  # type: ignore[assignment]


def _unbatchable(name: str) -> OpUsageError:
    return OpUsageError(
        f"vmap: numpy.{name} was called on a batched value, and no registered op implements it, so it can be "
        f"neither batched nor differentiated; use opreg.numpy functions, or register an op declaring "
        f'numpy="{name}" (without a batching rule, vmap loops over the examples)'
    )


def _op(name: str, *args: Any) -> Any:
    return op_function(name)(*args)


def _np_call(function: Any, *args: Any, **kwargs: Any) -> Any:
    """NumPy's ``function`` on a batched value: the op that implements it, as NumPy's dispatch would run it."""
    return numpy_call(function, function.__name__, "__call__", args, kwargs)


# --- the batched call of an op -----------------------------------------------------------------------------------


def call_batched(op: OpDef, args: Sequence[Any], attributes: Mapping[str, Any]) -> Any:
    """Op ``op`` on ``args``, some of them :class:`Batched`: batched at the highest level among them, by the op's
    rule or a loop, its output a Batched value of that level (a tuple of them for several outputs)."""
    attributes = op.bind_attributes(attributes)
    level, size = _level_of([*args, *_batched_in(attributes.values())])
    values = [a.value if isinstance(a, Batched) and a.level == level else a for a in args]
    flags = tuple(isinstance(a, Batched) and a.level == level for a in args)
    rule = op.batch
    try:
        if any(b.level == level for b in _batched_in(attributes.values())):  # a batched index: one per example
            output = _loop_attributes(op, values, flags, size, attributes, level)
        elif rule is None:
            output = loop(op_function(op.name), flags, *values, **attributes)
        elif rule == ELEMENTWISE:
            output = op_function(op.name)(*align(values, flags), **attributes)
        else:
            assert callable(rule)
            output = rule(op_function(op.name), flags, *values, **attributes)
    except OpregError:
        raise
    except Exception as exc:
        shapes = ", ".join(
            f"{op.describe_input(i)} {_describe(a)}" for i, a in enumerate(args) if not isinstance(a, str | None)
        )
        raise OpUsageError(f"vmap: {op.describe()} on {shapes}: {exc}") from exc
    if isinstance(output, tuple):
        return tuple(_wrap(o, level, size, op) for o in output)
    return _wrap(output, level, size, op)


def _batched_in(values: Any) -> list[Batched]:
    """The batched values among ``values`` (attributes: in tuples and lists too)."""
    found: list[Batched] = []
    for v in values:
        if isinstance(v, Batched):
            found.append(v)
        elif type(v) in (list, tuple):
            found += _batched_in(v)
    return found


def _loop_attributes(
    op: OpDef, values: Sequence[Any], flags: Sequence[bool], size: int, attributes: Mapping[str, Any], level: int
) -> Any:
    """The op on each example, with its own attributes where they are batched (``x[i]`` with a batched index)."""

    def example(value: Any, i: int) -> Any:
        if type(value) in (list, tuple):
            return type(value)(example(v, i) for v in value)
        return at_level(value, level, i)

    call = op_function(op.name)
    results = [
        call(
            *[v[i] if b else v for v, b in zip(values, flags, strict=True)],
            **{k: example(v, i) for k, v in attributes.items()},
        )
        for i in range(size)
    ]
    return stack_examples(results, op.describe())


def _describe(x: Any) -> str:
    if isinstance(x, Batched):
        return f"batched {x.dtype} {x.shape} (vmap level {x.level}, {x.value.shape[0]} examples)"
    return f"{np.result_type(x) if not hasattr(x, 'dtype') else x.dtype} {np.shape(x)}"


def _level_of(args: Sequence[Any]) -> tuple[int, int]:
    """The highest level among ``args``' batched values, and its batch size."""
    batched = [a for a in args if isinstance(a, Batched)]
    top = max(batched, key=lambda a: a.level)
    if all(level != top.level for level, _ in _active.levels):
        raise OpUsageError(
            f"vmap: a batched value of shape {top.shape} was used after its vmap returned (kept in a list, a global "
            "or a closure); return it from the vmapped function instead"
        )
    return top.level, int(top.value.shape[0])


def _wrap(output: Any, level: int, size: int, op: OpDef) -> Batched:
    """A rule's output as a Batched value, after checking that it has the batch on axis 0."""
    shape = np.shape(output)
    if not shape or shape[0] != size:
        raise OpUsageError(
            f"vmap: the batching rule of {op.describe()} returned shape {shape}, which lacks the batch of {size} on "
            "axis 0; a rule returns its output with the batch on axis 0 (fix the rule, or leave batch= out for "
            "the loop)"
        )
    return Batched(output, level)


# --- functions without derivatives (comparisons, argmax) on batched values ---------------------------------------


def _elementwise_values(function: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """A NumPy ufunc with no derivative (a comparison) on batched values: aligned and called once."""
    level, _ = _level_of(args)
    flags = [isinstance(a, Batched) and a.level == level for a in args]
    values = [a.value if f else a for a, f in zip(args, flags, strict=True)]
    return Batched(function(*align(values, flags), **kwargs), level)


def _loop_values(function: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """A NumPy function with no derivative (argmax, nonzero) on batched values: called per example, stacked."""
    level, _ = _level_of(args)
    flags = [isinstance(a, Batched) and a.level == level for a in args]
    values = [a.value if f else a for a, f in zip(args, flags, strict=True)]
    return Batched(loop(functools.partial(function, **kwargs), flags, *values), level)


# --- moving between levels: examples, physical values ------------------------------------------------------------


def at_level(x: Any, level: int, i: int) -> Any:
    """Example ``i`` of the batch of ``level`` (the highest level ``x`` has): ``x`` itself if not batched there."""
    if isinstance(x, Batched) and x.level == level:
        return x.value[i]
    return x


def strip(x: Any) -> Any:
    """``x`` with every Batched wrapper removed: its physical value."""
    while isinstance(x, Batched):
        x = x.value
    return x


def to_physical(x: Any, levels: Sequence[tuple[int, int]]) -> Any:
    """``x`` as a value with one leading axis per level of ``levels`` (lowest first), then its logical axes: a
    level ``x`` is not batched at repeats it along that axis (a recorded ``broadcast_to`` for a Tensor)."""
    if not levels:
        if isinstance(x, Batched):
            raise OpUsageError(
                f"vmap: a batched value of shape {x.shape} was used after its vmap returned (kept in a list, a "
                "global or a closure); return it from the vmapped function instead"
            )
        return x
    (level, size), below = levels[-1], levels[:-1]
    if isinstance(x, Batched) and x.level == level:
        return to_physical(x.value, below)
    inner = to_physical(x, below)
    k = len(below)
    shape = tuple(np.shape(inner))
    expanded = op_function("reshape")(inner, shape=(*shape[:k], 1, *shape[k:]))
    return op_function("broadcast_to")(expanded, shape=(*shape[:k], size, *shape[k:]))


def from_physical(x: Any, levels: Sequence[tuple[int, int]]) -> Any:
    """The Batched value whose physical value is ``x`` (leading axes: ``levels``, lowest first)."""
    for level, _ in levels:
        x = Batched(x, level)
    return x


def map_physical(function: Callable[[Any], Any], x: Any) -> Any:
    """``x`` with ``function`` applied to its physical value, the wrappers kept."""
    if isinstance(x, Batched):
        return Batched(map_physical(function, x.value), x.level)
    return function(x)


def levels_of(x: Any) -> tuple[int, ...]:
    """The levels ``x`` is batched at, outermost wrapper first."""
    found = []
    while isinstance(x, Batched):
        found.append(x.level)
        x = x.value
    return tuple(found)
