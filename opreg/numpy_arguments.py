"""How a call of a NumPy function maps onto the op that implements it: which arguments are the op's inputs, and
which its attributes, read by NumPy's own signature.

``np.sum(t, 0, None)`` passes ``dtype=None`` third, not ``keepdims``: arguments past the inputs are matched by
NumPy's parameter names, never by their position among the op's attributes. A NumPy argument the op has no
attribute for is dropped when it has NumPy's default (``dtype=None``, ``subok=False``), and an error otherwise:
computing without it would answer a different question. Arguments NumPy takes through ``**kwargs`` (np.pad's
``constant_values``) are matched by their names as the others are.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opreg.errors import OpUsageError
from opreg.opdef import OpDef


def numpy_arguments(
    function: Callable[..., Any], op: OpDef, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> tuple[Sequence[Any], Mapping[str, Any]]:
    """``function(*args, **kwargs)`` (a NumPy function ``op`` implements) as ``op``'s inputs and attributes."""
    if len(args) <= op.arity and kwargs.keys() <= op.attributes.keys():  # arity -1: variadic or several outputs
        return args, kwargs  # nothing to translate: the common case
    name = f"numpy.{getattr(function, '__name__', function)}"
    signature = _signature(function)
    if signature is None:
        raise OpUsageError(f"{name} on a Tensor: pass the arguments past its inputs by keyword ({op.describe()})")
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise OpUsageError(f"{name}: {exc}") from None
    values = list(bound.arguments.items())
    if op.variadic:
        return _variadic_arguments(name, signature, op, values)
    return [value for _, value in values[: len(op.inputs)]], _attributes(name, signature, op, values[len(op.inputs) :])


def _variadic_arguments(
    name: str, signature: inspect.Signature, op: OpDef, values: list[tuple[str, Any]]
) -> tuple[Sequence[Any], Mapping[str, Any]]:
    """A variadic op's inputs from NumPy's arguments: the fixed inputs, then the arrays of NumPy's parameter that
    holds them (named as the starred input, else the one after the fixed inputs), a sequence
    (``np.concatenate([a, b])``) or NumPy's own ``*operands``. Leading strings there (``np.einsum("ij,jk",
    a, b)``) are the op's attributes, in declared order. The rest are attributes, as for any op."""
    fixed = len(op.inputs) - 1
    names = [parameter for parameter, _ in values]
    index = names.index(op.inputs[-1]) if op.inputs[-1] in names else fixed
    if index >= len(values):
        raise OpUsageError(f"{name}: no arrays given ({op.describe()} takes {op.signature()})")
    parameter, sequence = values[index]
    given = dict(values)
    inputs: list[Any] = []
    for position, input_name in enumerate(op.inputs[:-1]):  # by NumPy's name where it has one, else by position
        if input_name in given:
            inputs.append(given.pop(input_name))
        elif (
            input_name in signature.parameters
            and signature.parameters[input_name].default is not inspect.Parameter.empty
        ):
            inputs.append(signature.parameters[input_name].default)
        else:
            inputs.append(values[position][1])
            given.pop(values[position][0], None)
    attributes: dict[str, Any] = {}
    if signature.parameters[parameter].kind is inspect.Parameter.VAR_POSITIONAL:
        arrays = list(sequence)
        leading = 0
        while leading < len(arrays) and isinstance(arrays[leading], str):
            leading += 1
        attributes.update(zip(list(op.attributes)[:leading], arrays[:leading], strict=False))
        arrays = arrays[leading:]
    elif isinstance(sequence, list | tuple) or getattr(sequence, "ndim", 0) >= 1:
        arrays = list(sequence)  # an array or a Tensor: its rows, as NumPy iterates it (np.vstack(x))
    else:
        raise OpUsageError(
            f"{name} takes a sequence of arrays as {parameter}, got {type(sequence).__name__}; pass a list or tuple "
            f"({op.describe()})"
        )
    rest = _attributes(name, signature, op, [(p, v) for p, v in values[index + 1 :] if p in given])
    return inputs + arrays, {**attributes, **rest}


def _attributes(name: str, signature: inspect.Signature, op: OpDef, values: list[tuple[str, Any]]) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for parameter, value in values:
        if signature.parameters[parameter].kind is inspect.Parameter.VAR_KEYWORD:
            pairs = list(value.items())
        else:
            pairs = [(parameter, value)]
        for key, given in pairs:
            if key in op.attributes:
                attributes[key] = given
            elif not (given is None or (key in signature.parameters and given is signature.parameters[key].default)):
                declared = ", ".join(op.attributes) or "none"
                raise OpUsageError(
                    f"{name}'s {key}={given!r} is not supported by {op.describe()}, which implements it on "
                    f"Tensors (its attributes: {declared}); leave it out, or compute on tensor.data outside the graph"
                )
    return attributes


@functools.cache
def _signature(function: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):
        return None
