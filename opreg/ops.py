"""``opreg.ops.<name>``: every registered op as a function of arrays, numbers and Tensors.

Given only arrays and numbers, a function runs the op's forward and returns an array, recording nothing; given a
Tensor anywhere among its inputs, it records and returns a Tensor. So one function written with them (a backward,
say) serves plain arrays and Tensors, and can be differentiated again. Looked up in the registry when asked for,
never listed by hand, so ops from third-party plugins are here too: ``opreg.ops.softplus(x)`` with contrib_ops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opreg.dispatch import op_function
from opreg.errors import UnknownOpError
from opreg.registry import op_table


def __getattr__(name: str) -> Callable[..., Any]:
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        return op_function(name)
    except UnknownOpError as exc:
        raise AttributeError(str(exc)) from None


def __dir__() -> list[str]:
    return sorted(op_table())
