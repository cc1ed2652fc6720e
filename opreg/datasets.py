"""Data for training: the bundled UCI handwritten digits, a user's own CSV or .npz file, and splitting."""

from __future__ import annotations

import gzip
import itertools
import os
from importlib import resources
from typing import cast

import numpy as np

from opreg.errors import OpregError
from opreg.files import NPY_MAGIC, ZIP_MAGIC, read_npz

#: How labels are written: what a message about labels reminds.
CLASSES = "0, 1, 2, ..."
#: The dtype kinds that are real numbers (bool, integers, floats): what features and labels may be.
REAL = "biuf"


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
    are used as they are: scale them first if their ranges differ widely. Anything else, or anything that is not
    real numbers and whole labels, raises :class:`DataFileError` saying what to write instead.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as file:
            binary = file.read(len(NPY_MAGIC)).startswith((NPY_MAGIC, ZIP_MAGIC))
        if binary or name.endswith(".npz"):
            features, labels = _from_npz(name, read_npz(name))
        else:
            table = np.loadtxt(name, delimiter=",", ndmin=2)
            features, labels = table[:, :-1], table[:, -1]
    except (OSError, ValueError) as exc:
        if isinstance(exc, DataFileError):
            raise
        raise DataFileError(f"cannot read {name!r} as features and labels: {exc}") from exc
    return _checked(name, features, labels)


def _from_npz(name: str, archive: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    keys = next((k for k in (("x", "y"), ("features", "labels")) if set(k) <= set(archive)), None)
    if keys is None:
        raise DataFileError(
            f"{name!r} must hold arrays 'x' and 'y' (or 'features' and 'labels'): np.savez(file, x=..., y=...)"
        )
    features, labels = (archive[key] for key in keys)
    if features.dtype.kind not in REAL:
        advice = ": give the real and imaginary parts separate columns (np.real, np.imag)" if _complex(features) else ""
        raise DataFileError(
            f"{name!r}: {keys[0]!r} holds {features.dtype} {_kind(features)}; opreg trains on real numbers{advice}"
        )
    if labels.dtype.kind not in REAL:
        raise DataFileError(
            f"{name!r}: {keys[1]!r} holds {labels.dtype} {_kind(labels)}; labels are the class numbers {CLASSES}, "
            "as np.unique(y, return_inverse=True)[1] numbers any labels"
        )
    return features.astype(np.float64), labels


def _kind(array: np.ndarray) -> str:
    return "numbers" if _complex(array) else "values, not numbers"


def _complex(array: np.ndarray) -> bool:
    return array.dtype.kind == "c"


def _checked(name: str, features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if features.ndim != 2 or labels.shape != (len(features),) or len(features) < 2:
        raise DataFileError(
            f"{name!r}: expected features of shape (rows, columns) and one label per row, got {features.shape} "
            f"and {labels.shape}"
        )
    if features.shape[1] == 0:
        raise DataFileError(f"{name!r} has no feature columns, only labels: give each row its features, then its label")
    if not np.all(np.isfinite(features)):
        raise DataFileError(f"{name!r}: the features contain NaN or infinite values")
    if labels.dtype.kind == "f" and not np.all(np.isfinite(labels) & (labels == np.round(labels))):
        raise DataFileError(f"{name!r}: labels must be whole numbers {CLASSES}")
    if labels.min() < 0:
        raise DataFileError(f"{name!r}: labels must be 0 or more, found {labels.min()}")
    if labels.max() > np.iinfo(np.int64).max:
        raise DataFileError(f"{name!r}: labels are the class numbers {CLASSES}, found {labels.max()}")
    return features, labels.astype(np.int64)


def train_test_split(
    features: np.ndarray, labels: np.ndarray, *, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle with ``rng`` and hold out ``test_fraction`` of the rows: (x_train, y_train, x_test, y_test); each
    part has a row at least, or :class:`DataFileError` says how many rows are needed."""
    n_test = round(len(features) * test_fraction)
    if not 0 < n_test < len(features):
        needed = next(n for n in itertools.count(2) if 0 < round(n * test_fraction) < n)
        raise DataFileError(
            f"{len(features)} rows are too few to hold out {test_fraction:.0%} for testing and train on the rest: "
            f"give at least {needed}"
        )
    order = rng.permutation(len(features))
    test, train = order[:n_test], order[n_test:]
    return features[train], labels[train], features[test], labels[test]


def one_hot(labels: np.ndarray, n_classes: int, dtype: np.dtype | type = np.float64) -> np.ndarray:
    """Integer labels as one-hot rows, the form ``softmax_cross_entropy`` takes."""
    return cast(np.ndarray, np.eye(n_classes, dtype=dtype)[labels])
