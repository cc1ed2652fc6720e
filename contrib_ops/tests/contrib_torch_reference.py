"""PyTorch references for the contrib_ops plugin's ops: the one table its PyTorch tests share.

Each op declares its reference beside its forward and backward (``reference=`` in ``register``), written from
torch's documentation, never from this package's code, and differentiated by torch's own autograd. ``TORCH_OPS``
is built from those declarations, as the built-ins' table (tests/torch_reference.py) is, so a new op costs its
declaration and nothing here; an op of the plugin without one fails every test that asks for it through
:func:`torch_reference`.

The tests import this as ``contrib_torch_reference`` (a name of its own: pytest's default "prepend" import mode puts
this folder and the repository's tests/ on ``sys.path`` side by side when both run in one session).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import opreg
import opreg.plugin
from opreg import testing

torch = testing.optional_torch()
#: Marks a test that compares with torch: skipped without it, while the module's other tests run.
needs_torch = pytest.mark.skipif(torch is None, reason="torch is the reference: pip install '.[torch]'")

PLUGIN = "contrib_ops"
REGISTRY = opreg.get_registry()
#: Every op the plugin registered.
CONTRIB_OPS = sorted(name for name, op in REGISTRY.items() if op.plugin == PLUGIN)


def resolve(reference: opreg.plugin.Reference) -> Callable[..., Any]:
    """An op's declared ``reference``: a dotted name from ``torch`` (``"torch.nn.functional.gelu"``), or a function
    given the torch module that returns the function."""
    if callable(reference):
        return reference(torch)
    first, *path = reference.split(".")
    if first != "torch":
        raise ValueError(f"reference {reference!r} does not name a torch function")
    found: Any = torch
    for part in path:
        found = getattr(found, part)
    return found


#: op name -> the same computation in torch, taking the op's attributes as keywords: each op's declared
#: ``reference``.
TORCH_OPS: dict[str, Callable[..., Any]] = {
    name: resolve(REGISTRY[name].reference)
    for name in CONTRIB_OPS
    if torch is not None and REGISTRY[name].reference is not None
}


def torch_reference(name: str) -> Callable[..., Any]:
    """The torch counterpart of the plugin's op ``name``; the calling test fails if there is none (and skips
    without torch)."""
    if torch is None:
        pytest.skip("torch is the reference: pip install '.[torch]'")
    if name not in TORCH_OPS:
        pytest.fail(f"op {name!r} of plugin {PLUGIN!r} has no PyTorch reference; declare reference= in its register()")
    return TORCH_OPS[name]
