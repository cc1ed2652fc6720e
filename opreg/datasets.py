"""The bundled UCI handwritten digits, and a reproducible train/test split."""

from __future__ import annotations

import gzip
from importlib import resources

import numpy as np


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 8x8 digit images as float64 features in [0, 1], shape (1797, 64), and int64 labels 0..9.

    Read from the copy bundled in ``opreg/data`` (see its README for source and licence).
    """
    with resources.files("opreg").joinpath("data/digits.csv.gz").open("rb") as raw, gzip.open(raw, "rt") as text:
        table = np.loadtxt(text, delimiter=",")
    return table[:, :-1] / 16.0, table[:, -1].astype(np.int64)


def train_test_split(
    features: np.ndarray, labels: np.ndarray, *, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle with ``rng`` and hold out ``test_fraction`` of the rows: (x_train, y_train, x_test, y_test)."""
    order = rng.permutation(len(features))
    n_test = round(len(features) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return features[train], labels[train], features[test], labels[test]


def one_hot(labels: np.ndarray, n_classes: int, dtype: np.dtype | type = np.float64) -> np.ndarray:
    """Integer labels as one-hot rows, the form ``softmax_cross_entropy`` takes."""
    return np.eye(n_classes, dtype=dtype)[labels]
