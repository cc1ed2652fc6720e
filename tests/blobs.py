"""Small data sets for training tests: a run on them takes milliseconds."""

from __future__ import annotations

import numpy as np


def blobs(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well separated Gaussian blobs in 2-D, labels 0..2: any working classifier gets them nearly all right."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    centres = np.array([[0.0, 3.0], [3.0, -2.0], [-3.0, -2.0]])
    return centres[labels] + 0.5 * rng.standard_normal((n, 2)), labels
