"""Data for training: the bundled UCI handwritten digits, a user's own CSV or .npz file, and splitting."""

from __future__ import annotations

import gzip
import os
from importlib import resources
from typing import cast

import numpy as np

from opreg.errors import OpregError


class DataFileError(OpregError, ValueError):
    """A data file that opreg cannot read as features and integer labels."""


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 8x8 digit images as float64 features in [0, 1], shape (1797, 64), and int64 labels 0..9.

    Read from the copy bundled in ``opreg/data`` (see its README for source and licence).
    """
    with resources.files("opreg").joinpath("data/digits.csv.gz").open("rb") as raw, gzip.open(raw, "rt") as text:
        table = np.loadtxt(text, delimiter=",")
    return table[:, :-1] / 16.0, table[:, -1].astype(np.int64)


def load_data(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Features (float64) and integer labels (0..K-1) from a user's file.

    A ``.npz`` holds two arrays named ``x`` and ``y`` (or ``features`` and ``labels``); a CSV (optionally gzipped,
    no header) holds one row per example with the label in the last column, as the bundled digits do. Features
    are used as they are: scale them first if their ranges differ widely.
    """
    name = os.fspath(path)
    try:
        if name.endswith(".npz"):
            with np.load(name, allow_pickle=False) as archive:
                keys = next((k for k in (("x", "y"), ("features", "labels")) if set(k) <= set(archive.files)), None)
                if keys is None:
                    raise DataFileError(f"{name!r} must hold arrays 'x' and 'y' (or 'features' and 'labels')")
                features, labels = archive[keys[0]], archive[keys[1]]
        else:
            table = np.loadtxt(name, delimiter=",", ndmin=2)
            features, labels = table[:, :-1], table[:, -1]
    except (OSError, ValueError) as exc:
        if isinstance(exc, DataFileError):
            raise
        raise DataFileError(f"cannot read {name!r} as features and labels: {exc}") from exc
    return _checked(name, np.asarray(features, dtype=np.float64), np.asarray(labels))


def _checked(name: str, features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if features.ndim != 2 or labels.shape != (len(features),) or len(features) < 2:
        raise DataFileError(
            f"{name!r}: expected features of shape (rows, columns) and one label per row, got {features.shape} "
            f"and {labels.shape}"
        )
    if not np.all(np.isfinite(features)):
        raise DataFileError(f"{name!r}: the features contain NaN or infinite values")
    if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
        raise DataFileError(f"{name!r}: labels must be whole numbers 0, 1, 2, ...")
    labels = labels.astype(np.int64)
    if labels.min() < 0:
        raise DataFileError(f"{name!r}: labels must be 0 or more, found {labels.min()}")
    return features, labels


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
    return cast(np.ndarray, np.eye(n_classes, dtype=dtype)[labels])
