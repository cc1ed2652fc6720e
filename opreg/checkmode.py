"""Checking mode: validate what every op returns, on every recorded operation.

Off by default and free when off. It is an observer of op calls (:mod:`opreg.observe`): ``with
opreg.checking(): ...`` switches it on for the block in this thread, ``OPREG_CHECK=1`` for the whole process.
Operations recorded while it is on are checked in backward too, even if backward runs after the block.

Checked (:mod:`opreg.contract`): forward returns an array and leaves its inputs alone; backward returns one
gradient per declared input, each ``None`` or an array of the input's dtype and of its (or the broadcast) shape,
and leaves its inputs and ``grad_output`` alone. A violation raises :class:`OpContractError` naming the op, its
plugin and the input.

With ``OPREG_OP_TIMEOUT=seconds`` (or ``checking(timeout=...)``) each forward and backward also runs in a thread
of its own and is given up on after that long: an op that hangs becomes an error naming it and the line it was
stuck on, rather than a process that never returns. Python cannot stop the thread; it is abandoned.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import numpy as np

from opreg import observe, plugin_manager
from opreg.contract import check_gradients, check_output, check_unchanged
from opreg.errors import OpContractError
from opreg.opdef import OpDef

T = TypeVar("T")

CHECK_VAR = "OPREG_CHECK"
TIMEOUT_VAR = "OPREG_OP_TIMEOUT"


def _values(x: Any) -> Any:
    """The array behind ``x``: a recorded backward (``opreg.grad(..., create_graph=True)``) runs on Tensors."""
    data = getattr(x, "data", None)
    return data if isinstance(data, np.ndarray) and not isinstance(x, np.ndarray) else x


class CheckingObserver:
    """The op contract checked around every call; with ``timeout``, each call given up on after that long."""

    #: Records made while it is on keep checksums of what their backward reads (:mod:`opreg.versions`).
    checks_values = True

    def __init__(self, timeout: float | None = None) -> None:
        self.timeout = timeout

    def _within_timeout(self, op: OpDef, what: str, call: Callable[[], T]) -> T:
        if self.timeout is None:
            return call()
        try:
            return plugin_manager.guarded(f"{op.name} {what}", call, self.timeout, TIMEOUT_VAR)
        except TimeoutError as exc:
            raise OpContractError(f"{op.describe()}: {what} {exc}") from None

    def forward(self, op: OpDef, call: Callable[[], Any], inputs: Sequence[Any], attributes: Mapping[str, Any]) -> Any:
        names = [f"forward: {op.describe_input(i)}" for i in range(len(inputs))]
        result = self._within_timeout(op, "forward", lambda: check_unchanged(op, call, inputs, names))
        output = result[0] if op.saves else result
        for each in output if op.multi and isinstance(output, tuple | list) else (output,):
            check_output(op, each)
        return result

    def backward(
        self,
        op: OpDef,
        call: Callable[[], Sequence[Any]],
        grad_output: Any,
        inputs: Sequence[Any],
        output: Any,
        needed: Sequence[Any] | None,
    ) -> Sequence[Any]:
        if op.multi:  # a gradient per output: each checked, None for an output that takes none
            given = [
                (f"backward: grad_output {n!r}", g)
                for n, g in zip(op.output_names(len(grad_output)), grad_output, strict=True)
            ]
        else:
            given = [("backward: grad_output", grad_output)]
        given = [(name, g) for name, g in given if g is not None]
        names = [*(name for name, _ in given), *(f"backward: {op.describe_input(i)}" for i in range(len(inputs)))]
        arrays = [*(_values(g) for _, g in given), *(_values(x) for x in inputs)]
        grads = self._within_timeout(op, "backward", lambda: check_unchanged(op, call, arrays, names))
        if not isinstance(grads, tuple | list):  # one array where a tuple belongs: named as such, not iterated
            check_gradients(op, arrays[len(given) :], grads)
        check_gradients(op, arrays[len(given) :], [None if grad is None else _values(grad) for grad in grads])
        return grads


def checking(timeout: float | None = None) -> AbstractContextManager[None]:
    """Check every op recorded inside the block (see the module docstring); ``timeout`` (seconds; default
    ``OPREG_OP_TIMEOUT``, else none) also gives up on a forward or backward that takes longer, naming the op."""
    return observe.observing(CheckingObserver(_timeout_from_environment() if timeout is None else timeout))


def _timeout_from_environment() -> float | None:
    value = os.environ.get(TIMEOUT_VAR, "").strip()
    return float(value) if value else None


def enabled_by_environment() -> bool:
    """Whether ``OPREG_CHECK`` asks for checking mode for the whole run."""
    return os.environ.get(CHECK_VAR, "").strip().lower() not in ("", "0", "false", "no")


def apply_environment() -> None:
    """Checking mode for every thread if ``OPREG_CHECK`` asks for it, off otherwise: run when opreg is imported."""
    observe.set_process_observers([CheckingObserver(_timeout_from_environment())] if enabled_by_environment() else [])
