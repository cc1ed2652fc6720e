"""``opreg.detect_anomaly()``: stop at the first op whose forward or backward produces NaN or infinity.

An observer of op calls (:mod:`opreg.observe`), on for the block in this thread; the default path pays nothing.
Inside the block every op's output and every gradient it returns is checked; the error names the op, its plugin,
the op's position among those recorded in the block, and, for a backward, the stack of the forward call that
recorded it (the line of the user's code that the NaN came from), as PyTorch's does.
"""

from __future__ import annotations

import traceback
import weakref
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from opreg import observe
from opreg.contract import nonfinite
from opreg.errors import OpregError
from opreg.opdef import OpDef


class AnomalyError(OpregError, FloatingPointError):
    """An op produced NaN or infinity while :func:`detect_anomaly` was on."""


class AnomalyObserver:
    """The forward calls made in one detect_anomaly block: their positions, and their stacks for backward."""

    def __init__(self) -> None:
        self.count = 0
        self.calls: dict[int, tuple[weakref.ref[np.ndarray], int, list[str]]] = {}

    def forward(self, op: OpDef, call: Callable[[], Any], inputs: Sequence[Any], attributes: Mapping[str, Any]) -> Any:
        result = call()
        output = result[0] if op.saves else result
        self.count += 1
        if isinstance(output, np.ndarray):
            stack = traceback.format_list(traceback.extract_stack()[:-4])  # up to the caller of apply
            self.calls[id(output)] = (weakref.ref(output), self.count, stack)
        problem = next(filter(None, map(nonfinite, output)), None) if op.multi else nonfinite(output)
        if problem:
            raise AnomalyError(f"{op.describe()}, op #{self.count} recorded, returned {problem} from forward")
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
        grads = call()
        output = getattr(output, "data", output) if not isinstance(output, np.ndarray) else output
        for position, grad in enumerate(grads):
            if grad is None or (needed is not None and needed[position] is None):
                continue
            problem = nonfinite(grad if isinstance(grad, np.ndarray) else getattr(grad, "data", grad))
            if problem:
                ref, count, stack = self.calls.get(id(output), (None, None, []))
                recorded = f"op #{count} recorded" if ref is not None and ref() is output else "an op"
                raise AnomalyError(
                    f"{op.describe()}, {recorded}, returned {problem} from backward as the gradient of "
                    f"{op.describe_input(position)}. Its forward was called from:\n" + "".join(stack)
                )
        return grads


def detect_anomaly() -> AbstractContextManager[None]:
    """Raise :class:`AnomalyError` at the first NaN or infinity an op produces inside the block."""
    return observe.observing(AnomalyObserver())
