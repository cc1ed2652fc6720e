"""Checking mode: validate what every op returns, on every recorded operation.

Off by default and free when off: switching it on replaces each op in the table with one whose forward and
backward are wrapped in checks, once, so the engine's hot path never tests a flag. Switch it on for a whole run
with ``OPREG_CHECK=1``, or for a block with ``with opreg.checking(): ...``. Operations recorded while it is on
are checked in backward too, even if backward runs after the block.

Checked: forward returns an array and leaves its inputs alone; backward returns one gradient per declared input,
each ``None`` or an array of the input's dtype and of its (or the broadcast) shape, and leaves its inputs and
``grad_output`` alone. A violation raises :class:`OpContractError` naming the op, its plugin and the input.

With ``OPREG_OP_TIMEOUT=seconds`` (or ``checking(timeout=...)``) each forward and backward also runs in a thread
of its own and is given up on after that long: an op that hangs becomes an error naming it and the line it was
stuck on, rather than a process that never returns. Python cannot stop the thread; it is abandoned.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from opreg import plugin_manager
from opreg.calls import gradient_count_error, gradient_shape_error
from opreg.errors import OpContractError
from opreg.fit import gradient_dtype, sum_to_shape
from opreg.opdef import OpDef
from opreg.registry import ops_replaced
from opreg.tensor import Tensor

CHECK_VAR = "OPREG_CHECK"
TIMEOUT_VAR = "OPREG_OP_TIMEOUT"


def check_unchanged(op: OpDef, call: Callable[[], Any], arrays: Sequence[Any], names: Sequence[str]) -> Any:
    """``call()``, raising if it modified any of ``arrays`` (or Tensors' arrays) in place."""
    before = [np.array(_values(x), copy=True) for x in arrays]
    result = call()
    for name, old, new in zip(names, before, arrays, strict=True):
        if not np.array_equal(old, _values(new), equal_nan=True):
            raise OpContractError(f"{op.describe()}: {name} was modified in place")
    return result


def _values(x: Any) -> Any:
    """The array behind ``x``: a recorded backward (``opreg.grad(..., create_graph=True)``) runs on Tensors."""
    return x.data if isinstance(x, Tensor) else x


def check_gradients(op: OpDef, inputs: Sequence[np.ndarray], grads: Sequence[Any]) -> None:
    """One gradient per input, each ``None`` or a float array of the input's (or the broadcast) shape.

    When the inputs share one float dtype, each gradient must have it too: a float32 op that returns float64
    gradients computed in float64 (a NumPy scalar such as ``np.sqrt(2.0)`` upcasts), which costs time and memory
    even though the engine casts back. With mixed dtypes, promotion is expected and the engine casts.
    """
    uniform = len({x.dtype for x in inputs if x.dtype.kind == "f"}) <= 1
    if len(grads) != len(inputs):
        raise gradient_count_error(op, len(grads))
    for position, (x, grad) in enumerate(zip(inputs, grads, strict=True)):
        if grad is None:
            continue
        where = f"{op.describe()}: backward returned"
        name = op.describe_input(position)
        if not isinstance(grad, np.ndarray | np.generic):
            raise OpContractError(
                f"{where} a {type(grad).__name__} as the gradient of {name}; expected an array or None"
            )
        if sum_to_shape(np.asarray(grad), x.shape) is None:
            raise gradient_shape_error(op, position, grad.shape, x.shape)
        expected = gradient_dtype(x)
        if grad.dtype != expected if uniform else grad.dtype.kind != "f":
            raise OpContractError(f"{where} dtype {grad.dtype} for {name} of dtype {x.dtype}; expected {expected}")


def _checked(op: OpDef, timeout: float | None = None) -> OpDef:
    inputs_named = [f"{op.describe_input(i)}" for i in range(len(op.inputs))]

    def within_timeout(what: str, call: Callable[[], Any]) -> Any:
        if timeout is None:
            return call()
        try:
            return plugin_manager.guarded(f"{op.name} {what}", call, timeout, TIMEOUT_VAR)
        except TimeoutError as exc:
            raise OpContractError(f"{op.describe()}: {what} {exc}") from None

    def forward(*inputs: Any, **attributes: Any) -> Any:
        names = [f"forward: {n}" for n in inputs_named]
        result = within_timeout(
            "forward", lambda: check_unchanged(op, lambda: op.forward(*inputs, **attributes), inputs, names)
        )
        output = result[0] if op.saves_for_backward else result
        if not isinstance(output, np.ndarray | np.generic):
            raise OpContractError(f"{op.describe()}: forward returned a {type(output).__name__}, not an array")
        return result

    def backward(grad_output: Any, *inputs: Any, **keywords: Any) -> Any:
        names = ["backward: grad_output", *(f"backward: {n}" for n in inputs_named)]
        arrays = [grad_output, *inputs]

        def run() -> Any:
            return check_unchanged(op, lambda: op.backward(grad_output, *inputs, **keywords), arrays, names)

        grads = within_timeout("backward", run)
        check_gradients(op, [_values(x) for x in inputs], [_values(grad) for grad in grads])
        return grads

    return dataclasses.replace(op, forward=forward, backward=backward)


def checked_table(table: dict[str, OpDef]) -> dict[str, OpDef]:
    """``table`` with every op wrapped in the checks, with the timeout ``OPREG_OP_TIMEOUT`` sets, if any."""
    timeout = _timeout_from_environment()
    return {name: _checked(op, timeout) for name, op in table.items()}


def checking(timeout: float | None = None) -> AbstractContextManager[None]:
    """Check every op recorded inside the block (see the module docstring); ``timeout`` (seconds; default
    ``OPREG_OP_TIMEOUT``, else none) also gives up on a forward or backward that takes longer, naming the op."""
    timeout = _timeout_from_environment() if timeout is None else timeout
    return ops_replaced(lambda op: _checked(op, timeout))


def _timeout_from_environment() -> float | None:
    value = os.environ.get(TIMEOUT_VAR, "").strip()
    return float(value) if value else None


def enabled_by_environment() -> bool:
    """Whether ``OPREG_CHECK`` asks for checking mode for the whole run."""
    return os.environ.get(CHECK_VAR, "").strip().lower() not in ("", "0", "false", "no")
