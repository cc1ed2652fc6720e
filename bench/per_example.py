"""Per-example gradients of the digits MLP's loss: one gradient per example of a batch, not their sum.

What differential privacy (clipping each example's gradient) and gradient-noise studies need. Four ways side by
side, each returning ``{name: (batch, *shape)}`` arrays for the weights ``W0, b0, W1, b1``:

- ``numpy``: hand-written, the reference: the backward of each example written out, the weights' gradients as
  batched outer products;
- ``opreg loop``: one ``opreg.grad`` per example (64 backward passes);
- ``opreg vmap``: ``opreg.func.vmap(opreg.func.grad(loss), in_axes=(None, 0, 0))``;
- ``torch loop`` and ``torch.func vmap``: the same two in PyTorch.

Every implementation's gradients are compared with the reference before anything is timed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from numpy_reference import init_params

import opreg
import opreg.func
import opreg.numpy as onp
from opreg import Tensor

LAYERS, BATCH = [64, 128, 10], 64
NAMES = ("W0", "b0", "W1", "b1")
PerExample = Callable[[], dict[str, np.ndarray]]


def data(seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The digits MLP's weights, a batch of inputs and one-hot targets, float64."""
    rng = np.random.default_rng(seed)
    params = dict(zip(NAMES, init_params(LAYERS, rng, np.dtype("float64")), strict=True))
    x = rng.standard_normal((BATCH, LAYERS[0]))
    y = np.eye(LAYERS[-1])[rng.integers(0, LAYERS[-1], BATCH)]
    return params, x, y


def loss(params: dict[str, Any], x: Any, y: Any) -> Any:
    """One example's softmax cross-entropy: ``x`` of shape (64,), ``y`` one-hot (10,)."""
    h = onp.maximum(x @ params["W0"].T + params["b0"], 0.0)
    z = h @ params["W1"].T + params["b1"]
    return opreg.ops.logsumexp(z) - onp.sum(z * y)


def numpy_reference(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> PerExample:
    def per_example() -> dict[str, np.ndarray]:
        pre = x @ params["W0"].T + params["b0"]
        h = np.maximum(pre, 0.0)
        z = h @ params["W1"].T + params["b1"]
        p = np.exp(z - z.max(axis=1, keepdims=True))
        dz = p / p.sum(axis=1, keepdims=True) - y
        dh = (dz @ params["W1"]) * (pre > 0)
        return {
            "W0": dh[:, :, None] * x[:, None, :],
            "b0": dh,
            "W1": dz[:, :, None] * h[:, None, :],
            "b1": dz,
        }

    return per_example


def opreg_loop(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> PerExample:
    def per_example() -> dict[str, np.ndarray]:
        rows: dict[str, list[np.ndarray]] = {name: [] for name in NAMES}
        for i in range(len(x)):
            tensors = {name: Tensor(p, requires_grad=True) for name, p in params.items()}
            grads = opreg.grad(loss(tensors, x[i], y[i]), list(tensors.values()))
            for name, g in zip(NAMES, grads, strict=True):
                rows[name].append(g.data)
        return {name: np.stack(r) for name, r in rows.items()}

    return per_example


def opreg_vmap(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> PerExample:
    per_example_grad = opreg.func.vmap(opreg.func.grad(loss), in_axes=(None, 0, 0))
    return lambda: per_example_grad(params, x, y)


def _torch_loss(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    h = torch.relu(x @ params["W0"].T + params["b0"])
    z = h @ params["W1"].T + params["b1"]
    return torch.logsumexp(z, 0) - (z * y).sum()


def torch_loop(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> PerExample:
    tp = {name: torch.from_numpy(p) for name, p in params.items()}
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def per_example() -> dict[str, np.ndarray]:
        rows: dict[str, list[torch.Tensor]] = {name: [] for name in NAMES}
        for i in range(len(tx)):
            leaves = {name: p.detach().requires_grad_() for name, p in tp.items()}
            grads = torch.autograd.grad(_torch_loss(leaves, tx[i], ty[i]), list(leaves.values()))
            for name, g in zip(NAMES, grads, strict=True):
                rows[name].append(g)
        return {name: torch.stack(r).numpy() for name, r in rows.items()}

    return per_example


def torch_vmap(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> PerExample:
    tp = {name: torch.from_numpy(p) for name, p in params.items()}
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    per_example_grad = torch.func.vmap(torch.func.grad(_torch_loss), in_dims=(None, 0, 0))

    def per_example() -> dict[str, np.ndarray]:
        return {name: g.numpy() for name, g in per_example_grad(tp, tx, ty).items()}

    return per_example


def implementations(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> dict[str, PerExample]:
    """Each way of computing the per-example gradients, by the bench's column names (``numpy`` the reference)."""
    return {
        "numpy": numpy_reference(params, x, y),
        "opreg loop": opreg_loop(params, x, y),
        "opreg vmap": opreg_vmap(params, x, y),
        "torch loop": torch_loop(params, x, y),
        "torch.func vmap": torch_vmap(params, x, y),
    }


def check(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Every implementation against the hand-written reference: the largest error relative to each array's largest
    entry; exits on a mismatch (above 1e-10), naming the implementation and weight."""
    found = implementations(params, x, y)
    reference = found.pop("numpy")()
    errors = {}
    for name, per_example in found.items():
        result, worst = per_example(), 0.0
        for weight in NAMES:
            got = np.asarray(result[weight])
            if got.shape != reference[weight].shape:
                raise SystemExit(
                    f"{name}: per-example gradient of {weight} has shape {got.shape}, not {reference[weight].shape}"
                )
            scale = float(np.abs(reference[weight]).max())
            worst = max(worst, float(np.abs(got - reference[weight]).max()) / scale)
        if worst > 1e-10:
            raise SystemExit(f"{name}: per-example gradients differ from the reference (relative error {worst:.2e})")
        errors[name] = worst
    return errors
