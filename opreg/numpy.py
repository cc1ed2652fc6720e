"""``import opreg.numpy as onp``: differentiable NumPy.

``onp.<name>`` is the registered op that declares it implements NumPy's ``<name>`` (``onp.subtract`` is the op
``sub``); ``opreg.ops.<name>`` is every op by its own name. Given only arrays and numbers it returns what NumPy
would, recording nothing; given a Tensor anywhere among its inputs it records and returns a Tensor. Backwards
written with these functions and Python operators run on Tensors too, so they can be differentiated again, to any
order.

A name no op implements is an error that says so: opreg never hands a Tensor to a NumPy function that would
compute it without its derivative.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opreg.dispatch import numpy_function
from opreg.registry import numpy_op, op_table


def __getattr__(name: str) -> Callable[..., Any]:
    if name.startswith("__"):
        raise AttributeError(name)
    op = numpy_op(name)
    if op is None:
        raise AttributeError(
            f"opreg.numpy has no {name!r}: no registered op implements numpy.{name}; an op plugin declares it with "
            f'register(..., numpy="{name}")'
        )
    function = numpy_function(name, op.name)
    # Kept as a module attribute, so the next access is a plain one: the function looks its op up by name on every
    # call, so a plugin reloaded or replaced later is still the one called.
    globals()[name] = function
    return function


def __dir__() -> list[str]:
    return sorted({alias for op in op_table().values() for alias in op.numpy})
