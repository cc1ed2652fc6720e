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
    if len(args) <= len(op.inputs) and kwargs.keys() <= op.attributes.keys():
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
    for parameter, value in list(values[len(op.inputs) :]):
        if signature.parameters[parameter].kind is inspect.Parameter.VAR_KEYWORD:  # np.pad's **kwargs: each by name
            values.remove((parameter, value))
            values.extend(value.items())
    attributes: dict[str, Any] = {}
    for parameter, value in values[len(op.inputs) :]:
        if parameter in op.attributes:
            attributes[parameter] = value
        elif parameter not in signature.parameters or not (  # one given through **kwargs has no default
            value is None or value is signature.parameters[parameter].default
        ):
            raise _unsupported(name, parameter, value, op)
    return [value for _, value in values[: len(op.inputs)]], attributes


def _unsupported(name: str, parameter: str, value: Any, op: OpDef) -> OpUsageError:
    declared = ", ".join(op.attributes) or "none"
    return OpUsageError(
        f"{name}'s {parameter}={value!r} is not supported by {op.describe()}, which implements it on "
        f"Tensors (its attributes: {declared}); leave it out, or compute on tensor.data outside the graph"
    )


@functools.cache
def _signature(function: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):
        return None
