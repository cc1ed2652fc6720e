"""What the tape engine accepts from its caller: arrays, not Tensors, and with ``add_operation`` an output its op
could have produced.

``add_operation`` records an output the caller computed, and backward trusts it: exp, sigmoid, tanh and div read
their output, so a wrong one gives a wrong gradient, and an output recorded twice sends its gradient back twice.
What costs nothing is always checked (:func:`check_added`): a Tensor or a list, an array already on the tape, and
for an op that declares a NumPy ufunc (``numpy="exp"``) the shape and dtype NumPy's rules give. Forward runs again
only where it runs anyway (an op that saves for backward) or in checking mode, which compares the values too
(:func:`check_recomputed`).
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Any

import numpy as np

from opreg.calls import as_arrays
from opreg.contract import describe_array
from opreg.errors import OpUsageError
from opreg.opdef import OpDef
from opreg.tensor import Tensor, holds_tensor


def tensor_error(op: OpDef, what: str) -> OpUsageError:
    """A Tensor given to the tape engine, which records arrays (NumPy would make an object array of it)."""
    return OpUsageError(
        f"{op.describe()}: {what} is a Tensor, and Autograd records arrays; run the op on Tensors instead "
        f"(operators, opreg.ops.{op.name}, or opreg.numpy) and call backward() on the result, or pass tensor.data "
        "to record its values on this tape"
    )


def refuse_tensors(op: OpDef, inputs: Sequence[Any]) -> None:
    for position, x in enumerate(inputs):
        if isinstance(x, Tensor) or (type(x) in (list, tuple) and holds_tensor(x)):
            raise tensor_error(op, op.describe_input(position))


def check_added(op: OpDef, inputs: Sequence[Any], output: Any, on_tape: Sequence[Container[int]]) -> None:
    """What ``add_operation`` can check of ``output`` without running forward; ``on_tape`` are containers of the
    ids of the arrays the tape already has."""
    refuse_tensors(op, inputs)
    if isinstance(output, Tensor):
        raise tensor_error(op, "the output")
    if op.multi:
        raise OpUsageError(
            f"{op.describe()} has several outputs {op.outputs}; record it with apply(), which runs forward and "
            "returns them"
        )
    if not isinstance(output, np.ndarray | np.generic):
        raise OpUsageError(
            f"{op.describe()}: the output is a {type(output).__name__}, not an array; pass the array forward computed"
        )
    for position, x in enumerate(inputs):
        if x is output:  # apply's outputs never are: run_forward returns a fresh array object
            raise OpUsageError(
                f"{op.describe()}: the output is the same array object as {op.describe_input(position)}; "
                "record a view (output.view()) or a copy"
            )
    if any(id(output) in arrays for arrays in on_tape):
        raise OpUsageError(
            f"{op.describe()}: the output {describe_array(output)} is already on this tape, as the output of an "
            "earlier operation or an input of one; record each array once, as the output of the op that computed "
            "it, before any operation that uses it"
        )
    if output.dtype.kind == "f" and all(
        type(x) is np.ndarray and x.shape == output.shape and x.dtype == output.dtype for x in inputs
    ):
        return  # what every ufunc gives for inputs of one shape and float dtype: the common case, decided cheaply
    expected = _ufunc_result(op, inputs)
    if expected is not None:
        _check_kind(op, output, *expected)


def check_recomputed(op: OpDef, output: Any, recomputed: np.ndarray, values: bool) -> None:
    """``output`` against forward's own ``recomputed`` output: shape and dtype, and with ``values`` (checking
    mode) the values, to the square root of the dtype's precision (the caller may sum in another order)."""
    _check_kind(op, output, recomputed.shape, recomputed.dtype)
    if not values:
        return
    given = np.asarray(output)
    tolerance = np.finfo(given.dtype).eps ** 0.5 if given.dtype.kind in "fc" else 0.0
    if np.allclose(given, recomputed, rtol=tolerance, atol=tolerance, equal_nan=True):
        return
    worst = np.unravel_index(np.argmax(np.abs(given - recomputed)), given.shape) if given.ndim else ()
    raise OpUsageError(
        f"{op.describe()}: the output given to add_operation differs from what forward computes from the inputs "
        f"(at index {tuple(int(i) for i in worst)}: {given[worst].item()} given, {recomputed[worst].item()} "
        "computed); record the array forward computed, with the attributes it was computed with"
    )


def _check_kind(op: OpDef, output: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
    if output.shape != shape or output.dtype != dtype:
        raise OpUsageError(
            f"{op.describe()}: the output is {describe_array(output)}, but forward gives {dtype} {shape} for these "
            "inputs; record the array forward computed from them"
        )


def _ufunc_result(op: OpDef, inputs: Sequence[Any]) -> tuple[tuple[int, ...], np.dtype] | None:
    """The shape and dtype an op implementing a NumPy ufunc gives, by NumPy's broadcasting and type rules; None
    for any other op (a generalized ufunc such as matmul has a signature of its own)."""
    ufunc = getattr(np, op.numpy[0], None) if op.numpy else None
    if not isinstance(ufunc, np.ufunc) or ufunc.signature is not None or ufunc.nin != len(inputs):
        return None
    arrays = as_arrays(inputs)
    with np.errstate(all="ignore"):
        dtype = ufunc(*(np.ones((), x.dtype) for x in arrays)).dtype
    return np.broadcast_shapes(*(x.shape for x in arrays)), dtype
