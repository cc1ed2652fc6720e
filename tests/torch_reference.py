"""PyTorch references for the built-in ops: the one table the tests that compare opreg with torch share.

Each op declares its reference beside its forward and backward (``reference=`` in ``register``), written from
torch's documentation, never from opreg's code, and differentiated by torch's own autograd: that is what makes
torch an independent reference. A built-in op without one fails every test that asks for it through
:func:`torch_reference`.

The test modules import this as ``torch_reference``: tests/ has no ``__init__.py``, so pytest (in its default
"prepend" import mode) puts tests/ on ``sys.path`` before importing them, from the repository root or anywhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import opreg
import opreg.plugin

torch = pytest.importorskip("torch")
F = torch.nn.functional

REGISTRY = opreg.get_registry()
#: Every op a built-in plugin (``opreg_builtins.*``) registered.
BUILTIN_OPS = sorted(name for name, op in REGISTRY.items() if op.plugin.startswith("opreg_builtins"))


def resolve(reference: opreg.plugin.Reference) -> Callable[..., Any]:
    """An op's declared ``reference``: a dotted name from ``torch`` (``"torch.nn.functional.mse_loss"``), or a
    function given the torch module that returns the function."""
    if callable(reference):
        return reference(torch)
    first, *path = reference.split(".")
    if first != "torch":
        raise ValueError(f"reference {reference!r} does not name a torch function")
    found: Any = torch
    for part in path:
        found = getattr(found, part)
    return found


#: op name -> the same computation in torch, taking the op's attributes as keywords: each built-in op's declared
#: ``reference``, so a new op costs its declaration and nothing here.
TORCH_OPS: dict[str, Callable[..., Any]] = {
    name: resolve(REGISTRY[name].reference) for name in BUILTIN_OPS if REGISTRY[name].reference is not None
}


def torch_reference(name: str) -> Callable[..., Any]:
    """The torch counterpart of built-in op ``name``; the calling test fails if there is none."""
    if name not in TORCH_OPS:
        pytest.fail(f"built-in op {name!r} has no PyTorch reference; declare reference= in its register() call")
    return TORCH_OPS[name]
