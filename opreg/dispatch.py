"""One function per op that serves arrays and Tensors: what ``opreg.ops``, ``opreg.numpy`` and NumPy's own
dispatch (``np.exp(tensor)``, NEP 13 and 18) call.

On arrays and numbers the function runs the op's forward and returns an array: one dict lookup and one scan of
the arguments over calling forward directly. With a Tensor among the inputs it records, through
:func:`opreg.tensor.apply_op`. Positional arguments past the op's inputs set its attributes in declared order, as
NumPy passes them (``np.swapaxes(x, 0, 1)``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from opreg import observe, registry
from opreg.calls import as_arrays, run_forward
from opreg.errors import OpUsageError
from opreg.opdef import OpDef
from opreg.registry import TABLE, op_table, unknown_op_error
from opreg.tensor import Tensor, apply_op

_functions: dict[str, Callable[..., Any]] = {}


def op_function(name: str) -> Callable[..., Any]:
    """``f(*inputs, **attributes)`` calling op ``name``: arrays in, array out; a Tensor in, a Tensor out."""
    function = _functions.get(name)
    if function is None:
        op = op_table().get(name)
        if op is None:
            raise unknown_op_error(name)
        function = _functions[name] = _make(name, op)
    return function


def _make(name: str, op: OpDef) -> Callable[..., Any]:
    def call(*args: Any, **attributes: Any) -> Any:
        try:
            op = TABLE[name]
        except KeyError:
            op = _lookup(name)
        return call_op(op, args, attributes)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"{op.doc}\n\nInputs: {', '.join(op.inputs)}. Registered by plugin {op.plugin!r}."
    return call


def _lookup(name: str) -> OpDef:
    op = op_table().get(name)
    if op is None:
        raise unknown_op_error(name)
    return op


def call_op(op: OpDef, args: Sequence[Any], attributes: Mapping[str, Any]) -> Any:
    """Op ``op`` on ``args``: its output array, or a Tensor (recorded as needed) when any input is a Tensor."""
    n = len(op.inputs)
    if len(args) > n:
        args, attributes = _positional_attributes(op, args, attributes)
    convert = False
    for x in args:
        if type(x) is not np.ndarray:
            if isinstance(x, Tensor):
                return apply_op(op, args, attributes)
            convert = True
    if attributes or op.attributes:
        attributes = op.bind_attributes(attributes)
    if convert:
        args = as_arrays(args)
    return run_forward(op, args, attributes, observe.current() if observe.active else ())[0]


def _positional_attributes(
    op: OpDef, args: Sequence[Any], attributes: Mapping[str, Any]
) -> tuple[Sequence[Any], Mapping[str, Any]]:
    """Arguments past the inputs, as the attributes they stand for, in declared order."""
    n = len(op.inputs)
    names = list(op.attributes)
    extra = args[n:]
    if len(extra) > len(names):
        raise OpUsageError(
            f"{op.describe()} takes {n} inputs {op.inputs} and the attributes {tuple(names)}, got {len(args)} "
            "positional arguments"
        )
    given = dict(zip(names, extra, strict=False))
    twice = sorted(given.keys() & attributes.keys())
    if twice:
        raise OpUsageError(f"{op.describe()}: attribute {', '.join(twice)} given by position and by keyword")
    return args[:n], {**given, **attributes}


def numpy_op(numpy_name: str) -> OpDef | None:
    """The op that declares it implements NumPy's ``numpy_name`` (``numpy="subtract"``), else None.

    Only a declaration counts, never a name that happens to match: the built-in ``transpose`` swaps the last two
    axes, where ``np.transpose`` reverses them all."""
    table = op_table()
    op_name = _numpy_index(table).get(numpy_name)
    return None if op_name is None else table.get(op_name)


_index: tuple[int, dict[str, str]] = (-1, {})


def _numpy_index(table: Mapping[str, OpDef]) -> dict[str, str]:
    """NumPy name -> op name, rebuilt when the registry reloads."""
    global _index
    if _index[0] != registry.generation():
        _index = (registry.generation(), {alias: op.name for op in table.values() for alias in op.numpy})
    return _index[1]


def numpy_call(function: Any, name: str, method: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """NumPy's ``function`` called with a Tensor among ``args``: the op that implements it, recorded.

    A ufunc whose every result is boolean (a comparison, ``isfinite``) has no derivative and runs on the values.
    Anything else no op implements raises, naming the function: computing it without its derivative would give a
    wrong gradient with no error.
    """
    op = numpy_op(name) if method == "__call__" and not kwargs.get("out") else None
    if op is not None:
        return call_op(op, args, {k: v for k, v in kwargs.items() if k != "out"})
    if (
        isinstance(function, np.ufunc)
        and method == "__call__"
        and all(t[-function.nout :] == "?" * function.nout for t in function.types)
    ):
        return Tensor(function(*(x.data if isinstance(x, Tensor) else x for x in args), **kwargs))
    where = f"numpy.{name}" + ("" if method == "__call__" else f".{method}")
    raise OpUsageError(
        f"{where} was called on a Tensor, and no registered op implements it, so its derivative is unknown; use "
        f"opreg.numpy functions, call it on tensor.data (leaving the graph), or register an op declaring "
        f'numpy="{name}"'
    )
