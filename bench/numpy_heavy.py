"""A NumPy-heavy function differentiated: a Gaussian process's negative log marginal likelihood.

The kind of code a researcher writes with ``np.*`` and wants the gradient of: an RBF kernel matrix from pairwise
squared distances, a linear solve and a log-determinant. ``gp_nll`` is written once against a NumPy namespace; opreg
runs it with plain ``numpy`` on Tensors (NumPy's own dispatch, NEP 13 and 18, finds the registered ops), HIPS
autograd with ``autograd.numpy``. PyTorch has other names (``dim=``, ``torch.linalg``), so it has its own copy of the
formula. The gradient is with respect to the inputs ``X`` and the three log hyperparameters.

NumPy's row is the function's forward alone (NumPy has no backward), as in the per-op rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from trainers import anp, autograd

import opreg
from opreg import Tensor

N_POINTS, N_FEATURES = 64, 3


def data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs ``X``, targets ``y`` and the log hyperparameters (length scale, signal scale, noise)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N_POINTS, N_FEATURES))
    y = np.sin(X.sum(axis=1)) + 0.1 * rng.standard_normal(N_POINTS)
    return X, y, np.array([0.0, 0.0, -2.0])


def gp_nll(xp: Any, X: Any, y: Any, log_l: Any, log_s: Any, log_noise: Any) -> Any:
    """0.5 y^T K^-1 y + 0.5 log|K| (the constant dropped) with K = s^2 exp(-|xi - xj|^2 / (2 l^2)) + noise I."""
    n = X.shape[0]
    sq = xp.sum(X * X, axis=1)
    d2 = sq[:, None] + sq[None, :] - 2 * (X @ X.T)
    K = xp.exp(2 * log_s) * xp.exp(-0.5 * d2 / xp.exp(2 * log_l)) + xp.exp(log_noise) * np.eye(n)
    alpha = xp.linalg.solve(K, y)
    _, logdet = xp.linalg.slogdet(K)
    return 0.5 * xp.sum(y * alpha) + 0.5 * logdet


def _torch_gp_nll(X: Any, y: Any, log_l: Any, log_s: Any, log_noise: Any) -> Any:
    n = X.shape[0]
    sq = (X * X).sum(dim=1)
    d2 = sq[:, None] + sq[None, :] - 2 * (X @ X.T)
    K = torch.exp(2 * log_s) * torch.exp(-0.5 * d2 / torch.exp(2 * log_l)) + torch.exp(log_noise) * torch.eye(
        n, dtype=X.dtype
    )
    alpha = torch.linalg.solve(K, y)
    _, logdet = torch.linalg.slogdet(K)
    return 0.5 * (y * alpha).sum() + 0.5 * logdet


Gradient = Callable[[], list[np.ndarray]]


def numpy_forward(X: np.ndarray, y: np.ndarray, theta: np.ndarray) -> Callable[[], object]:
    return lambda: gp_nll(np, X, y, *theta)


def opreg_gradient(X: np.ndarray, y: np.ndarray, theta: np.ndarray) -> Gradient:
    """``np.*`` on opreg Tensors, differentiated with ``opreg.grad``."""

    def gradient() -> list[np.ndarray]:
        inputs = [Tensor(X, requires_grad=True), *(Tensor(t, requires_grad=True) for t in theta)]
        loss = gp_nll(np, inputs[0], y, *inputs[1:])
        return [g.data for g in opreg.grad(loss, inputs)]

    return gradient


def autograd_gradient(X: np.ndarray, y: np.ndarray, theta: np.ndarray) -> Gradient | None:
    if autograd is None:
        return None
    grad = autograd.grad(lambda args: gp_nll(anp, args[0], y, *args[1:]))

    def gradient() -> list[np.ndarray]:
        return [np.asarray(g) for g in grad([X, *theta])]

    return gradient


def torch_gradient(X: np.ndarray, y: np.ndarray, theta: np.ndarray) -> Gradient:
    y_t = torch.from_numpy(y)

    def gradient() -> list[np.ndarray]:
        inputs = [torch.tensor(X, requires_grad=True), *(torch.tensor(t, requires_grad=True) for t in theta)]
        loss = _torch_gp_nll(inputs[0], y_t, *inputs[1:])
        return [g.numpy() for g in torch.autograd.grad(loss, inputs)]

    return gradient


def implementations(X: np.ndarray, y: np.ndarray, theta: np.ndarray) -> dict[str, Callable[[], object]]:
    """The NumPy forward (the ratios' reference) and each library's gradient, by the bench's column names."""
    found: dict[str, Callable[[], object] | None] = {
        "numpy": numpy_forward(X, y, theta),
        "opreg Tensor": opreg_gradient(X, y, theta),
        "torch": torch_gradient(X, y, theta),
        "autograd": autograd_gradient(X, y, theta),
    }
    return {name: fn for name, fn in found.items() if fn is not None}


def check(X: np.ndarray, y: np.ndarray, theta: np.ndarray) -> float:
    """opreg's gradient against PyTorch's: the largest error relative to each array's largest entry; exits on a
    mismatch, as the training-step check does."""
    mine, theirs = opreg_gradient(X, y, theta)(), torch_gradient(X, y, theta)()
    worst = 0.0
    for a, b in zip(mine, theirs, strict=True):
        scale = float(np.abs(b).max())
        worst = max(worst, float(np.abs(a - b).max()) / scale)
    if worst > 1e-8:
        raise SystemExit(f"the GP gradient differs from PyTorch's (relative error {worst:.2e})")
    return worst
