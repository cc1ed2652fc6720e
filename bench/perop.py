"""Per-operation overhead: a chain of elementwise multiplications ``y = y * c`` on a tiny array.

On 1 or 10 elements the arithmetic is negligible, so the time per op is what each library adds around one NumPy
ufunc call: dispatch, recording the operation, and in backward, calling the op's derivative and routing the
gradient. ``c`` is a constant array (it needs no gradient); ``x`` is the input whose gradient backward computes,
seeded with ones of the output's shape.

Each implementation gives a dict of modes, ``"forward"`` (recording, where the library records) and
``"forward+backward"``; NumPy has only the first.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from trainers import autograd

import opreg
from opreg import Tensor

Modes = dict[str, Callable[[], object]]


def numpy_chain(x: np.ndarray, c: np.ndarray, n_ops: int) -> Modes:
    def forward() -> np.ndarray:
        y = x
        for _ in range(n_ops):
            y = y * c
        return y

    return {"forward": forward}


def opreg_tape_chain(x: np.ndarray, c: np.ndarray, n_ops: int) -> Modes:
    """Recorded with ``engine.apply``; ``zero_grad`` ends every call so the tape does not grow across calls.

    ``keep_gradients=False`` and ``dx`` as the first op's ``gradients_to_update`` entry for ``x``: the tape then
    knows that ``x``'s gradient is wanted (in ``dx``) and ``c``'s is not, as the Tensor style knows from
    ``requires_grad``.
    """
    engine = opreg.Autograd(keep_gradients=False)
    dx = np.zeros_like(x)

    def forward() -> np.ndarray:
        y = engine.apply("mul", x, c, gradients_to_update=[dx, None])
        for _ in range(n_ops - 1):
            y = engine.apply("mul", y, c)
        return y

    def forward_only() -> None:
        forward()
        engine.zero_grad()

    def forward_backward() -> None:
        forward()
        engine.backward(1.0, zero_grad=[dx])  # dx zeroed as its gradient lands (a compiled step refuses dx.fill(0))
        engine.zero_grad()

    return {"forward": forward_only, "forward+backward": forward_backward}


def opreg_tensor_chain(x: np.ndarray, c: np.ndarray, n_ops: int) -> Modes:
    leaf = Tensor(x.copy(), requires_grad=True)
    seed = np.ones_like(x)

    def forward() -> Tensor:
        y = leaf
        for _ in range(n_ops):
            y = y * c
        return y

    def forward_backward() -> None:
        forward().backward(seed)
        leaf.grad = None

    return {"forward": forward, "forward+backward": forward_backward}


def torch_chain(x: np.ndarray, c: np.ndarray, n_ops: int) -> Modes:
    leaf = torch.tensor(x, requires_grad=True)
    constant = torch.from_numpy(c)
    seed = torch.ones_like(leaf)

    def forward() -> torch.Tensor:
        y = leaf
        for _ in range(n_ops):
            y = y * constant
        return y

    def forward_backward() -> None:
        forward().backward(seed)
        leaf.grad = None

    return {"forward": forward, "forward+backward": forward_backward}


def autograd_chain(x: np.ndarray, c: np.ndarray, n_ops: int) -> Modes:
    """``make_vjp`` runs the traced forward and returns the backward unrun: "forward" is just that."""

    def chain(y: object) -> object:
        for _ in range(n_ops):
            y = y * c
        return y

    seed = np.ones_like(x)
    traced = autograd.make_vjp(chain)

    def forward_backward() -> None:
        vjp, _ = traced(x)
        vjp(seed)

    return {"forward": lambda: traced(x), "forward+backward": forward_backward}


def compiled_chain(chain: Callable[[np.ndarray, np.ndarray, int], Modes]) -> Callable[..., Modes]:
    """``chain``'s forward+backward through ``opreg.compile`` (a forward alone leaves a graph waiting for its
    backward, which a replay cannot hand out)."""

    def build(x: np.ndarray, c: np.ndarray, n_ops: int) -> Modes:
        return {"forward+backward": opreg.compile(chain(x, c, n_ops)["forward+backward"])}

    return build


def chains() -> dict[str, Callable[[np.ndarray, np.ndarray, int], Modes]]:
    found = {
        "numpy": numpy_chain,
        "opreg tape": opreg_tape_chain,
        "opreg Tensor": opreg_tensor_chain,
        "opreg tape compiled": compiled_chain(opreg_tape_chain),
        "opreg Tensor compiled": compiled_chain(opreg_tensor_chain),
        "torch": torch_chain,
    }
    return found | ({"autograd": autograd_chain} if autograd is not None else {})
