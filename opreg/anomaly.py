"""``opreg.detect_anomaly()``: stop at the first op whose forward or backward produces NaN or infinity.

Like checking mode, it swaps each op in the table for a wrapped one when it is switched on, once, so the default
path pays nothing. Inside the block every op's output and every gradient it returns is checked; the error names
the op, its plugin, the op's position among those recorded in the block, and, for a backward, the stack of the
forward call that recorded it (the line of the user's code that the NaN came from), as PyTorch's does.
"""

from __future__ import annotations

import dataclasses
import traceback
import weakref
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from opreg.errors import OpregError
from opreg.opdef import OpDef
from opreg.registry import ops_replaced


class AnomalyError(OpregError, FloatingPointError):
    """An op produced NaN or infinity while :func:`detect_anomaly` was on."""


def _bad(value: Any) -> str | None:
    """``"NaN"`` or ``"infinity"`` if ``value`` holds one, else ``None``."""
    array = np.asarray(value)
    if array.dtype.kind not in "fc" or np.all(np.isfinite(array)):
        return None
    return "NaN" if np.isnan(array).any() else "infinity"


class _Recorder:
    """The forward calls made in one detect_anomaly block: their positions, and their stacks for backward."""

    def __init__(self) -> None:
        self.count = 0
        self.calls: dict[int, tuple[weakref.ref, int, list[str]]] = {}

    def forward(self, op: OpDef, output: Any) -> None:
        self.count += 1
        if isinstance(output, np.ndarray):
            stack = traceback.format_list(traceback.extract_stack()[:-3])  # up to the caller of apply
            self.calls[id(output)] = (weakref.ref(output), self.count, stack)
        problem = _bad(output)
        if problem:
            raise AnomalyError(f"{op.describe()}, op #{self.count} recorded, returned {problem} from forward")

    def backward(self, op: OpDef, output: Any, grads: Any, needed: Any) -> None:
        for position, grad in enumerate(grads):
            problem = None if grad is None or (needed is not None and needed[position] is None) else _bad(grad)
            if problem:
                ref, count, stack = self.calls.get(id(output), (None, None, []))
                recorded = f"op #{count} recorded" if ref is not None and ref() is output else "an op"
                raise AnomalyError(
                    f"{op.describe()}, {recorded}, returned {problem} from backward as the gradient of "
                    f"{op.describe_input(position)}. Its forward was called from:\n" + "".join(stack)
                )


def _watched(op: OpDef, recorder: _Recorder) -> OpDef:
    def forward(*inputs: Any, **attributes: Any) -> Any:
        result = op.forward(*inputs, **attributes)
        recorder.forward(op, result[0] if op.saves_for_backward else result)
        return result

    def after_backward(output: Any, grads: Any, needed: Any) -> None:
        recorder.backward(op, output, grads, needed)

    return dataclasses.replace(op, forward=forward, after_backward=after_backward)


def detect_anomaly() -> AbstractContextManager[None]:
    """Raise :class:`AnomalyError` at the first NaN or infinity an op produces inside the block."""
    recorder = _Recorder()
    return ops_replaced(lambda op: _watched(op, recorder))
