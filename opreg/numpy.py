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


class _Joiner:
    """``r_`` and ``c_``: NumPy's index tricks, on arrays and Tensors. ``onp.r_[a, 0.0, 1:4]`` joins along the
    first axis, ``onp.c_[a, b]`` along the last (1-D items as columns); slices are ranges (``1:4``, or
    ``0:1:5j`` for five points), numbers 1-element arrays. Joining runs the recorded ``concatenate`` (or
    ``column_stack``) op, so a Tensor among the items gives a Tensor with its gradient. NumPy's string directives
    (``r_['0,2', ...]``) and matrix results are not supported: an error says so."""

    def __init__(self, columns: bool) -> None:
        self.columns = columns

    def __getitem__(self, key: Any) -> Any:
        import numpy as np  # here, not at the top: this module's attributes are NumPy's names

        from opreg.tensor import Tensor

        items = key if isinstance(key, tuple) else (key,)
        if items and isinstance(items[0], str):
            raise TypeError(
                f"opreg.numpy.{'c_' if self.columns else 'r_'} does not take NumPy's string directives "
                f"({items[0]!r}); use opreg.numpy.concatenate or stack with axis="
            )
        arrays: list[Any] = []
        for item in items:
            if isinstance(item, slice):
                arrays.append(np.r_[item])
            elif isinstance(item, Tensor):
                arrays.append(_function("expand_dims")(item, 0) if item.ndim == 0 else item)
            elif np.ndim(item) == 0:
                arrays.append(np.atleast_1d(item))
            else:
                arrays.append(item)
        if self.columns:
            if all(getattr(a, "ndim", 1) <= 2 for a in arrays):
                return _function("column_stack")(arrays)
            return _function("concatenate")(arrays, axis=-1)
        return _function("concatenate")(arrays, axis=0)


def _function(numpy_name: str) -> Callable[..., Any]:
    return __getattr__(numpy_name)


#: ``onp.r_[...]``: join along the first axis (NumPy's ``r_``), recorded on Tensors.
r_ = _Joiner(columns=False)
#: ``onp.c_[...]``: join along the last axis, 1-D items as columns (NumPy's ``c_``), recorded on Tensors.
c_ = _Joiner(columns=True)
