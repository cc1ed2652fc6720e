"""Saving a model's parameters to ``.npz`` and loading them back, never through pickle."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np

from opreg.files import atomic_write, read_npz
from opreg.nn.module import ModelFileError, Module

M = TypeVar("M", bound=Module)

#: The archive entry holding :func:`save`'s metadata, as JSON text (a string array needs no pickle).
METADATA_KEY = "__opreg_metadata__"


def save(module: Module, path: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None) -> None:
    """Write ``module.state_dict()`` to ``path`` with ``np.savez`` (one array per parameter name), with optional
    JSON-serialisable ``metadata`` (what is needed to rebuild the model, say). The file at ``path`` is replaced
    whole or not at all (:func:`opreg.files.atomic_write`): a failed save never destroys the previous model."""
    extra = {METADATA_KEY: np.array(json.dumps(dict(metadata)))} if metadata else {}
    with atomic_write(path) as file:  # np.savez given a name would append ".npz" to one that lacks it
        # The checker would match the arrays with savez's allow_pickle: bool too; no parameter has that name
        np.savez(file, **module.state_dict(), **extra)  # type: ignore[arg-type]


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata :func:`save` stored in ``path`` (empty if none); :class:`ModelFileError` if it is not a JSON
    object, as :func:`save` writes it."""
    archive = _read(path)
    if METADATA_KEY not in archive:
        return {}
    try:
        metadata = json.loads(str(archive[METADATA_KEY]))
    except ValueError:
        raise _not_a_model(path, "its metadata is not JSON") from None
    if not isinstance(metadata, dict):
        raise _not_a_model(path, "its metadata is not a JSON object")
    return metadata


def load(module: M, path: str | os.PathLike[str]) -> M:
    """Read a file written by :func:`save` into ``module`` in place (``allow_pickle=False``); returns it.

    A file that is not such an archive, or whose parameters do not fit the module (the first mismatch named),
    raises :class:`ModelFileError` and leaves the module unchanged.
    """
    state = _read(path)
    state.pop(METADATA_KEY, None)
    module.load_state_dict(state)
    return module


def _read(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    try:
        return read_npz(path)
    except (OSError, ValueError) as exc:
        raise _not_a_model(path, str(exc)) from exc


def _not_a_model(path: str | os.PathLike[str], reason: str) -> ModelFileError:
    return ModelFileError(f"{os.fspath(path)!r} is not a model file written by opreg: {reason}")
