"""Helpers shared by the op modules: dtypes, shapes and sample inputs. Not part of the package's interface."""

from __future__ import annotations

import numpy as np


def float_dtype(x: np.ndarray) -> np.dtype:
    """The dtype opreg expects of ``x``'s gradient: ``x``'s own float dtype, float64 for integers."""
    return np.result_type(x, np.float32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) as exp(-log(1 + exp(-x))): no intermediate overflows for large |x|."""
    return np.exp(-np.logaddexp(0, -x))


def check_same_shape(what: str, a: np.ndarray, b: np.ndarray) -> None:
    """Refuse to broadcast a loss's operands, as torch does: (N, 1) against (N,) would silently give a wrong loss."""
    if a.shape != b.shape:
        raise ValueError(f"{what} must have the same shape, got {a.shape} and {b.shape}")


def away_from_zero(rng: np.random.Generator, shape: tuple[int, ...], low: float = 0.1) -> np.ndarray:
    """Values in +-[low, 2]: finite differences with eps 1e-6 never straddle a kink at 0."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(low, 2.0, size=shape)
