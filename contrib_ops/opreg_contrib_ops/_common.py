"""What the op modules share that :mod:`opreg.plugin` does not have. Not part of the package's interface."""

from __future__ import annotations

import numpy as np


def check_same_shape(what: str, a: np.ndarray, b: np.ndarray) -> None:
    """Refuse to broadcast a loss's operands, as torch does: (N, 1) against (N,) would silently give a wrong loss."""
    if a.shape != b.shape:
        raise ValueError(f"{what} must have the same shape, got {a.shape} and {b.shape}")
