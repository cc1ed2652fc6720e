"""The op contract's checks, written once: the engines' errors, checking mode, ``check_op`` and
:mod:`opreg.testing` all use these, with one wording.

An op's forward returns an array and leaves its inputs alone. Its backward returns one gradient per declared
input, each ``None`` or an array of the input's (or the broadcast) shape and float dtype, finite where its inputs
are, and leaves its inputs and ``grad_output`` alone. A gradient handed to a user is an array of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from opreg.errors import OpContractError
from opreg.fit import gradient_dtype, sum_to_shape
from opreg.opdef import OpDef

T = TypeVar("T")


def describe_array(x: Any) -> str:
    """``float64 (3, 4)``: how error messages show an array, or the type of something that is not one."""
    if isinstance(x, np.ndarray | np.generic):
        return f"{x.dtype} {x.shape}"
    return type(x).__name__


def gradient_count_error(op: OpDef, returned: Any) -> OpContractError:
    """A backward that returned not one gradient per input: ``returned``, what it returned. The commonest slip,
    one array where a tuple of one belongs, is named as such."""
    if not isinstance(returned, tuple | list):
        one = "(grad,)" if len(op.inputs) == 1 else f"a tuple of {len(op.inputs)}"
        return OpContractError(
            f"{op.describe()}: backward returned {describe_array(returned)}, not a tuple of gradients, one per input "
            f"{op.inputs}; return {one} (a trailing comma makes a tuple of one: return (g * 2,))"
        )
    return OpContractError(
        f"{op.describe()}: backward returned {len(returned)} gradients for {len(op.inputs)} inputs {op.inputs}"
    )


def gradient_shape_error(
    op: OpDef, position: int, shape: tuple[int, ...], input_shape: tuple[int, ...]
) -> OpContractError:
    """A gradient of ``shape`` for input ``position`` of ``input_shape`` that no broadcast explains."""
    return OpContractError(
        f"{op.describe()}: backward returned a gradient of shape {shape} for {op.describe_input(position)} of shape "
        f"{input_shape}, which broadcasting cannot explain"
    )


def gradient_type_error(op: OpDef, position: int, grad: Any) -> OpContractError:
    """A gradient that is not an array (nor a number, nor None)."""
    return OpContractError(
        f"{op.describe()}: backward returned a {type(grad).__name__} as the gradient of {op.describe_input(position)}"
        "; expected an array or None"
    )


def check_gradients(op: OpDef, inputs: Sequence[np.ndarray], grads: Sequence[Any]) -> None:
    """One gradient per input, each ``None`` or a float array of the input's (or the broadcast) shape.

    When the inputs share one float dtype, each gradient must have it too: a float32 op that returns float64
    gradients computed in float64 (a NumPy scalar such as ``np.sqrt(2.0)`` upcasts), which costs time and memory
    even though the engine casts back. With mixed dtypes, promotion is expected and the engine casts.
    """
    if not isinstance(grads, tuple | list) or len(grads) != len(inputs):
        raise gradient_count_error(op, grads)
    uniform = len({x.dtype for x in inputs if x.dtype.kind == "f"}) <= 1
    for position, (x, grad) in enumerate(zip(inputs, grads, strict=True)):
        if grad is None:
            continue
        if not isinstance(grad, np.ndarray | np.generic):
            raise gradient_type_error(op, position, grad)
        if sum_to_shape(np.asarray(grad), x.shape) is None:
            raise gradient_shape_error(op, position, grad.shape, x.shape)
        expected = gradient_dtype(x)
        if grad.dtype != expected if uniform else grad.dtype.kind != "f":
            raise OpContractError(
                f"{op.describe()}: backward returned dtype {grad.dtype} for {op.describe_input(position)} of dtype "
                f"{x.dtype}; expected {expected}"
            )


def tuple_output_error(op: OpDef, output: tuple[Any, ...] | list[Any]) -> OpContractError:
    """A forward of one output that returned a tuple (``return (x * 2,)``, or ``return y, cache``)."""
    return OpContractError(
        f"{op.describe()}: forward returned a {type(output).__name__} of {len(output)} where an op of one output "
        "returns an array; return the array itself, declare outputs=(...) for an op of several, or, to keep "
        "values for backward, name `saved` as a keyword-only parameter of backward and return (output, saved)"
    )


def check_output(op: OpDef, output: Any) -> None:
    """Forward returned an array (or a NumPy scalar)."""
    if isinstance(output, tuple | list):
        raise tuple_output_error(op, output)
    if not isinstance(output, np.ndarray | np.generic):
        raise OpContractError(f"{op.describe()}: forward returned a {type(output).__name__}, not an array")


def check_unchanged(op: OpDef, call: Callable[[], T], arrays: Sequence[Any], names: Sequence[str]) -> T:
    """``call()``, raising if it modified any of ``arrays`` in place."""
    before = [np.array(x, copy=True) for x in arrays]
    result = call()
    for name, old, new in zip(names, before, arrays, strict=True):
        # equal_nan for numbers only: NumPy's isnan refuses object arrays (clip's None bound arrives as one)
        if not np.array_equal(old, new, equal_nan=old.dtype.kind in "fc"):
            raise OpContractError(f"{op.describe()}: {name} was modified in place")
    return result


def nonfinite(value: Any) -> str | None:
    """``"NaN"`` or ``"infinity"`` if ``value`` holds one, else ``None``."""
    array = np.asarray(value)
    if array.dtype.kind not in "fc" or np.all(np.isfinite(array)):
        return None
    return "NaN" if np.isnan(array).any() else "infinity"


def aliased(array: np.ndarray, others: Sequence[Any]) -> bool:
    """Whether ``array`` shares memory with any of ``others``: a gradient a user may change in place must not."""
    return any(isinstance(o, np.ndarray) and np.shares_memory(array, o) for o in others)
