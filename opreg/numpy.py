"""``import opreg.numpy as onp``: differentiable NumPy.

``onp.<name>`` is the registered op that declares it implements NumPy's ``<name>`` (``onp.subtract`` is the op
``sub``); ``opreg.ops.<name>`` is every op by its own name. Given only arrays and numbers it returns what NumPy
would, recording nothing; given a Tensor anywhere among its inputs it records and returns a Tensor. Backwards
written with these functions and Python operators run on Tensors too, so they can be differentiated again, to any
order.

Every other NumPy name is NumPy's own (``onp.float64``, ``onp.ones``, ``onp.pi``, ``onp.random``), so that
``import opreg.numpy as np`` serves a whole program, as ``autograd.numpy`` does. That is safe because a Tensor
protects itself: a NumPy function no op implements, given a Tensor, reaches ``Tensor.__array_function__`` (or
``__array_ufunc__``), which raises an error naming the function, and one that converts its arguments first meets
``Tensor.__array__``, which refuses a Tensor that requires gradients. Nothing computes a Tensor without its
derivative. ``onp.array`` and ``onp.asarray`` are opreg's: given Tensors (nested in lists too) they record a stack.

``onp.linalg.<name>`` is the op that declares ``numpy="linalg.<name>"`` (``onp.linalg.inv``), by the same lookup,
and NumPy's ``numpy.linalg.<name>`` otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opreg.dispatch import numpy_function
from opreg.registry import numpy_op, op_table


def _resolve(name: str, where: dict[str, Any], prefix: str = "") -> Any:
    """The function for NumPy's ``prefix + name``, kept in ``where`` (a namespace's attributes)."""
    if name.startswith("__"):
        raise AttributeError(name)
    op = numpy_op(prefix + name)
    if op is None:  # NumPy's own: a Tensor given to it raises (see the module's docstring)
        import numpy as np  # here, not at the top: this module's attributes are NumPy's names

        namespace = np.linalg if prefix else np
        if not hasattr(namespace, name):
            raise AttributeError(f"neither opreg.numpy nor numpy has {prefix + name!r}")
        return getattr(namespace, name)  # not kept: an op registered later for this name takes it over
    function = numpy_function(prefix + name, op.name)
    # Kept as an attribute, so the next access is a plain one: the function looks its op up by name on every
    # call, so a plugin reloaded or replaced later is still the one called.
    where[name] = function
    return function


def __getattr__(name: str) -> Any:
    if name == "__version__":  # NumPy's, as autograd.numpy's is: code may check it
        import numpy as np

        return np.__version__
    return _resolve(name, globals())


class _Submodule:
    """``opreg.numpy.linalg``: NumPy's ``numpy.linalg.<name>`` functions, the ops declaring ``"linalg.<name>"``."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix

    def __getattr__(self, name: str) -> Any:
        return _resolve(name, self.__dict__, self._prefix)

    def __dir__(self) -> list[str]:
        n = len(self._prefix)
        return sorted({alias[n:] for op in op_table().values() for alias in op.numpy if alias.startswith(self._prefix)})


linalg: Any = _Submodule("linalg.")


def __dir__() -> list[str]:
    return sorted({alias for op in op_table().values() for alias in op.numpy if "." not in alias} | {"linalg"})


def array(object: Any, dtype: Any = None, *, copy: bool | None = True, ndmin: int = 0, **kwargs: Any) -> Any:
    """``np.array`` for Tensors too: a Tensor, or a list or tuple nesting Tensors (``onp.array([x, x + 1])``), gives
    a Tensor in the graph (the Tensors joined by the recorded ``stack`` op, a copy of a lone Tensor), with
    ``dtype`` (a recorded cast between floating dtypes) and ``ndmin``. Anything else is NumPy's ``np.array``.
    ``np.array`` itself cannot do this: NumPy's protocols do not reach it, so it refuses a Tensor that requires
    gradients (``Tensor.__array__``)."""
    from opreg.tensor import Tensor, holds_tensor, stack_sequence

    if isinstance(object, Tensor):
        result = object.copy() if copy else object
    elif type(object) in (list, tuple) and holds_tensor(object):
        result = stack_sequence(object)
    else:
        import numpy as np

        return np.array(object, dtype=dtype, copy=copy, ndmin=ndmin, **kwargs)
    if kwargs:
        raise TypeError(f"opreg.numpy.array of Tensors takes dtype, copy and ndmin, not {', '.join(kwargs)}")
    if dtype is not None:
        result = result.astype(dtype, copy=False)
    if result.ndim < ndmin:
        result = result.reshape((1,) * (ndmin - result.ndim) + result.shape)
    return result


def asarray(a: Any, dtype: Any = None, **kwargs: Any) -> Any:
    """``np.asarray`` for Tensors too: a Tensor is returned as it is (cast if ``dtype`` says), a list nesting
    Tensors is stacked (as :func:`array`), anything else is NumPy's ``np.asarray``."""
    return array(a, dtype, copy=None, **kwargs)


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
    function: Callable[..., Any] = __getattr__(numpy_name)
    return function


#: ``onp.r_[...]``: join along the first axis (NumPy's ``r_``), recorded on Tensors.
r_ = _Joiner(columns=False)
#: ``onp.c_[...]``: join along the last axis, 1-D items as columns (NumPy's ``c_``), recorded on Tensors.
c_ = _Joiner(columns=True)
