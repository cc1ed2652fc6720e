"""PyTorch references for the contrib_ops plugin's ops: the one table its PyTorch tests share.

Each entry is written from torch's documentation, never from this package's code, and differentiated by torch's
own autograd. An op the plugin registers without an entry fails every test that asks for it through
:func:`torch_reference`, and an entry naming no op of the plugin fails the stale-entry tests.

The tests import this as ``contrib_torch_reference`` (a name of its own: pytest's default "prepend" import mode puts
this folder and the repository's tests/ on ``sys.path`` side by side when both run in one session).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import opreg

torch = pytest.importorskip("torch")
F = torch.nn.functional

PLUGIN = "contrib_ops"
REGISTRY = opreg.get_registry()
#: Every op the plugin registered.
CONTRIB_OPS = sorted(name for name, op in REGISTRY.items() if op.plugin == PLUGIN)


def numpy_reduction(function: Callable[..., Any]) -> Callable[..., Any]:
    """torch's ``function(x, dim=..., keepdim=...)`` with NumPy's (and opreg's) ``axis`` semantics: None reduces
    every axis (torch.logsumexp has no "all" default), and the empty tuple none (torch reads ``dim=()`` as all)."""

    def reduce(x: Any, *, axis: int | tuple[int, ...] | None, keepdims: bool) -> Any:
        dims = tuple(range(x.ndim)) if axis is None else axis
        return x.clone() if dims == () else function(x, dim=dims, keepdim=keepdims)

    return reduce


def _reshape(x: Any, *, shape: int | tuple[int, ...]) -> Any:
    return torch.reshape(x, (shape,) if isinstance(shape, int) else tuple(shape))


def _permute(x: Any, *, axes: tuple[int, ...] | None) -> Any:
    return x.permute(tuple(reversed(range(x.ndim))) if axes is None else tuple(axes))


#: op name -> the same computation in torch, taking the op's attributes as keywords. Keep complete.
TORCH_OPS: dict[str, Callable[..., Any]] = {
    "softplus": F.softplus,
    "leaky_relu": lambda x, *, negative_slope: F.leaky_relu(x, negative_slope),
    "gelu": lambda x, *, approximate: F.gelu(x, approximate=approximate),
    "sqrt": torch.sqrt,
    "abs": torch.abs,
    "max": numpy_reduction(torch.amax),
    "logsumexp": numpy_reduction(torch.logsumexp),
    "reshape": _reshape,
    "permute": _permute,
    "softmax": lambda x, *, axis: F.softmax(x, dim=axis),
    "log_softmax": lambda x, *, axis: F.log_softmax(x, dim=axis),
    "binary_cross_entropy_with_logits": F.binary_cross_entropy_with_logits,
    "huber": lambda prediction, target, *, delta: F.huber_loss(prediction, target, delta=delta),
}


def torch_reference(name: str) -> Callable[..., Any]:
    """The torch counterpart of the plugin's op ``name``; the calling test fails if there is none."""
    if name not in TORCH_OPS:
        pytest.fail(f"op {name!r} of plugin {PLUGIN!r} has no PyTorch reference; add it to TORCH_OPS in {__name__}")
    return TORCH_OPS[name]
