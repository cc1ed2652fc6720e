"""Making an op's gradient fit its input, done once here rather than in every op's backward.

Two things can make a correct gradient differ from its input: forward broadcast the input, so the gradient has
the broadcast shape; or forward promoted the arithmetic (a float32 input beside a float64 one), so the gradient
has the wider dtype. The engine sums the first away and casts the second back, as PyTorch's engine does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import numpy as np


class _HasDtype(Protocol):
    @property
    def dtype(self) -> np.dtype[Any]: ...


def gradient_dtype(x: _HasDtype) -> np.dtype[Any]:
    """The dtype of ``x``'s gradient: ``x``'s own float dtype, float64 for an integer or boolean ``x``. ``x`` is an
    array, or a Tensor when a backward that asks runs recorded (``create_graph``)."""
    return x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)


class _SupportsSum(Protocol):
    # Members read-only; sum is any callable, as ndarray.sum and Tensor.sum take axis and keepdims differently.
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def ndim(self) -> int: ...
    @property
    def sum(self) -> Callable[..., Any]: ...


#: An ndarray, or a Tensor when backward is itself recorded (``opreg.grad(..., create_graph=True)``): anything
#: with ``shape``, ``ndim`` and ``sum(axis=, keepdims=)``.
Summable = TypeVar("Summable", bound=_SupportsSum)


def sum_to_shape(grad: Summable, shape: tuple[int, ...]) -> Summable | None:
    """Sum ``grad`` over the axes along which an input of ``shape`` was broadcast.

    Returns ``None`` when ``grad`` cannot come from broadcasting an input of ``shape``: that is a wrong gradient,
    and the caller reports it, naming the op.
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra < 0:
        return None
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
        if isinstance(grad, np.generic):  # summing every axis of an array away gives a NumPy scalar
            # Summable is ndarray here, which the checker cannot tell from grad being a NumPy scalar
            grad = np.asarray(grad)  # type: ignore[assignment]
    stretched = tuple(axis for axis, n in enumerate(shape) if n == 1 and grad.shape[axis] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad if grad.shape == shape else None


def fit_gradient(grad: np.ndarray, x: np.ndarray) -> np.ndarray | None:
    """``grad`` summed to ``x``'s shape and cast to its gradient dtype; ``None`` if no broadcast explains it."""
    fitted = sum_to_shape(grad, x.shape)
    if fitted is None:
        return None
    dtype = gradient_dtype(x)
    return fitted if fitted.dtype == dtype else fitted.astype(dtype)


def fit_into(out: np.ndarray, grad: Any) -> None:
    """Write ``grad`` fitted to ``out`` (what :func:`fit_gradient` returns for an input of ``out``'s shape and
    gradient dtype) into ``out``, bit for bit: the fitting step of an op's ``backward_out``.

    A gradient of ``out``'s dtype summed over leading axes only, or over stretched axes only, is summed straight
    into ``out`` (``np.sum(g, axis, out=)`` is the reduction ``g.sum(axis)`` is); anything else is fitted as the
    engine fits it and copied.
    """
    if not hasattr(grad, "ndim"):  # a Python number; an array, a NumPy scalar or a traced one (opreg.tracing) as is
        grad = np.asarray(grad)
    extra = grad.ndim - out.ndim
    stretched = tuple(a for a, n in enumerate(out.shape) if n == 1 and extra >= 0 and grad.shape[a + extra] != 1)
    if grad.dtype == out.dtype and extra > 0 and not stretched and grad.shape[extra:] == out.shape:
        np.sum(grad, axis=tuple(range(extra)), out=out)
        return
    if grad.dtype == out.dtype and extra == 0 and stretched and grad.ndim == out.ndim:
        np.sum(grad, axis=stretched, keepdims=True, out=out)
        return
    fitted = sum_to_shape(grad, out.shape)
    if fitted is None:
        raise ValueError(f"a gradient of shape {grad.shape} does not sum to its input's shape {out.shape}")
    np.copyto(out, fitted)


def ufunc_into(out: np.ndarray, ufunc: np.ufunc, *args: Any) -> None:
    """``fit_into(out, ufunc(*args))``, with the ufunc writing straight into ``out`` where its result already has
    ``out``'s shape and dtype: a ``backward_out``'s last step with no temporary array in the usual case."""
    shape, dtype = out.shape, out.dtype
    for a in args:  # operands of out's shape and dtype, the usual case, decided without broadcast_shapes
        if type(a) is not np.ndarray or a.shape != shape or a.dtype != dtype:
            break
    else:
        ufunc(*args, out=out)
        return
    if np.broadcast_shapes(*(np.shape(a) for a in args)) == shape and np.result_type(*args) == dtype:
        ufunc(*args, out=out)
    else:
        fit_into(out, ufunc(*args))
