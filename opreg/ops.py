"""``opreg.ops.<name>``: every registered op as a function on Tensors (and arrays, and numbers).

Looked up in the registry when asked for, never listed by hand, so ops from third-party plugins are here too:
``opreg.ops.matmul(x, w)``, ``opreg.ops.sum(x, axis=1)`` with contrib_ops installed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opreg.errors import UnknownOpError
from opreg.registry import op_table
from opreg.tensor import op_function


def __getattr__(name: str) -> Callable[..., Any]:
    if name.startswith("__"):
        raise AttributeError(name)
    try:
        return op_function(name)
    except UnknownOpError as exc:
        raise AttributeError(str(exc)) from None


def __dir__() -> list[str]:
    return sorted(op_table())
