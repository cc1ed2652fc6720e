"""PyTorch references for the built-in ops: the one table the tests that compare opreg with torch share.

Each entry is written from torch's documentation, never from opreg's code, and differentiated by torch's own
autograd: that is what makes torch an independent reference. A built-in op without an entry fails every test that
asks for it through :func:`torch_reference`, and an entry naming no built-in op fails the stale-entry tests.

The test modules import this as ``torch_reference``: tests/ has no ``__init__.py``, so pytest (in its default
"prepend" import mode) puts tests/ on ``sys.path`` before importing them, from the repository root or anywhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import opreg

torch = pytest.importorskip("torch")
F = torch.nn.functional

REGISTRY = opreg.get_registry()
#: Every op a built-in plugin (``opreg_builtins.*``) registered.
BUILTIN_OPS = sorted(name for name, op in REGISTRY.items() if op.plugin.startswith("opreg_builtins"))


def numpy_dims(x: Any, axis: int | tuple[int, ...] | None) -> int | tuple[int, ...]:
    """opreg's ``axis=None`` (every axis) as torch's explicit ``dim``."""
    return tuple(range(x.ndim)) if axis is None else axis


def numpy_reduction(function: Callable[..., Any]) -> Callable[..., Any]:
    """torch's ``function(x, dim=..., keepdim=...)`` with NumPy's (and opreg's) ``axis`` semantics: None reduces
    every axis, and the empty tuple reduces none, where torch reads ``dim=()`` as every axis."""

    def reduce(x: Any, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Any:
        dims = numpy_dims(x, axis)
        if dims == ():
            return x.clone()
        return function(x, dim=dims, keepdim=keepdims)

    return reduce


def softmax_cross_entropy(logits: Any, labels: Any) -> Any:
    """torch's cross_entropy with probability targets (the mean over the batch), over every leading (batch) axis."""
    classes = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, classes), labels.reshape(-1, classes))


#: op name -> the same computation in torch, taking the op's attributes as keywords. Keep complete.
TORCH_OPS: dict[str, Callable[..., Any]] = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": torch.div,
    "neg": torch.neg,
    "pow": torch.pow,
    "log": torch.log,
    "exp": torch.exp,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "matmul": torch.matmul,
    "linear": lambda x, weight, bias: F.linear(x, weight) + bias,  # opreg's bias may be any shape that broadcasts
    "transpose": lambda x: x.mT,
    "softmax_cross_entropy": softmax_cross_entropy,
    "mse": F.mse_loss,
    "sum": numpy_reduction(torch.sum),
    "mean": numpy_reduction(torch.mean),
}


def torch_reference(name: str) -> Callable[..., Any]:
    """The torch counterpart of built-in op ``name``; the calling test fails if there is none."""
    if name not in TORCH_OPS:
        pytest.fail(f"built-in op {name!r} has no PyTorch reference; add it to TORCH_OPS in {__name__}")
    return TORCH_OPS[name]
