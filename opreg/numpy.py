"""``import opreg.numpy as onp``: differentiable NumPy.

``onp.<name>`` is the registered op that declares it implements NumPy's ``<name>`` (``onp.subtract`` is the op
``sub``); ``opreg.ops.<name>`` is every op by its own name. Given only arrays and numbers it returns what NumPy
would, recording nothing; given a Tensor anywhere among its inputs it records and returns a Tensor. Backwards
written with these functions and Python operators run on Tensors too, so they can be differentiated again, to any
order.

A name no op implements is an error that says so: opreg never hands a Tensor to a NumPy function that would
compute it without its derivative.

``onp.linalg.<name>`` is the op that declares ``numpy="linalg.<name>"`` (``onp.linalg.inv``), by the same lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opreg.dispatch import numpy_function
from opreg.registry import numpy_op, op_table


def _resolve(name: str, where: dict[str, Any], prefix: str = "") -> Callable[..., Any]:
    """The function for NumPy's ``prefix + name``, kept in ``where`` (a namespace's attributes)."""
    if name.startswith("__"):
        raise AttributeError(name)
    op = numpy_op(prefix + name)
    if op is None:
        raise AttributeError(
            f"opreg.numpy has no {prefix + name!r}: no registered op implements numpy.{prefix}{name}; an op plugin "
            f'declares it with register(..., numpy="{prefix}{name}")'
        )
    function = numpy_function(prefix + name, op.name)
    # Kept as an attribute, so the next access is a plain one: the function looks its op up by name on every
    # call, so a plugin reloaded or replaced later is still the one called.
    where[name] = function
    return function


def __getattr__(name: str) -> Callable[..., Any]:
    return _resolve(name, globals())


class _Submodule:
    """``opreg.numpy.linalg``: NumPy's ``numpy.linalg.<name>`` functions, the ops declaring ``"linalg.<name>"``."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix

    def __getattr__(self, name: str) -> Callable[..., Any]:
        return _resolve(name, self.__dict__, self._prefix)

    def __dir__(self) -> list[str]:
        n = len(self._prefix)
        return sorted({alias[n:] for op in op_table().values() for alias in op.numpy if alias.startswith(self._prefix)})


linalg: Any = _Submodule("linalg.")


def __dir__() -> list[str]:
    return sorted({alias for op in op_table().values() for alias in op.numpy if "." not in alias} | {"linalg"})
