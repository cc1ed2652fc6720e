"""One function per op that serves arrays and Tensors: what ``opreg.ops``, ``opreg.numpy`` and NumPy's own
dispatch (``np.exp(tensor)``, NEP 13 and 18) call.

On arrays and numbers the function runs the op's forward and returns an array: one dict lookup and one scan of
the arguments over calling forward directly. With a Tensor among the inputs it records, through
:func:`opreg.tensor.call_op`. Positional arguments past the op's inputs set its attributes in declared order, as
NumPy passes them (``np.swapaxes(x, 0, 1)``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from opreg.numpy_arguments import numpy_arguments
from opreg.opdef import OpDef
from opreg.registry import TABLE, generation, op_table, unknown_op_error
from opreg.tensor import call_as_numpy, call_op

#: The functions made so far, and the registry generation they were made from (their names and docs are the op's).
_functions: dict[str, Callable[..., Any]] = {}
_made_from = -1


def op_function(name: str) -> Callable[..., Any]:
    """``f(*inputs, **attributes)`` calling op ``name``: arrays in, array out; a Tensor in, a Tensor out."""
    global _made_from
    if _made_from != generation():
        _functions.clear()
        _made_from = generation()
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
    call.__doc__ = f"{op.doc}\n\nInputs: {op.signature()[1:-1]}. Registered by plugin {op.plugin!r}."
    return call


def _lookup(name: str) -> OpDef:
    op = op_table().get(name)
    if op is None:
        raise unknown_op_error(name)
    return op


def numpy_function(numpy_name: str, name: str) -> Callable[..., Any]:
    """``opreg.numpy.<numpy_name>``: op ``name`` called as NumPy's function is, its arguments read by NumPy's
    signature (:mod:`opreg.numpy_arguments`): ``onp.sum(x, 0)`` sums over axis 0 as ``np.sum(x, 0)`` does."""
    numpy_function: Any = np  # a name this NumPy lacks: None, and the op's own argument order
    for part in numpy_name.split("."):  # "linalg.inv": np.linalg.inv
        numpy_function = getattr(numpy_function, part, None)

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            op = TABLE[name]
        except KeyError:
            op = _lookup(name)
        if op.numpy_call is not None:  # einsum's interleaved form, gradient over several axes, svd's compute_uv
            return call_as_numpy(numpy_function, op, args, kwargs)
        if numpy_function is not None and (len(args) > op.arity or kwargs):  # arity -1: variadic, several outputs
            return call_op(op, *numpy_arguments(numpy_function, op, args, kwargs))
        return call_op(op, args, kwargs)

    call.__name__ = call.__qualname__ = numpy_name
    call.__doc__ = f"numpy.{numpy_name} on arrays and Tensors: op {name!r}.\n\n{op_function(name).__doc__}"
    return call
