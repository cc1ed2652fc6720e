"""Saving a model's parameters to ``.npz`` and loading them back, never through pickle."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np

from opreg.nn.module import ModelFileError, Module

M = TypeVar("M", bound=Module)

#: The archive entry holding :func:`save`'s metadata, as JSON text (a string array needs no pickle).
METADATA_KEY = "__opreg_metadata__"


def save(module: Module, path: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None) -> None:
    """Write ``module.state_dict()`` to ``path`` with ``np.savez`` (one array per parameter name), with optional
    JSON-serialisable ``metadata`` (what is needed to rebuild the model, say)."""
    extra = {METADATA_KEY: np.array(json.dumps(dict(metadata)))} if metadata else {}
    with open(path, "wb") as file:  # np.savez given a name would append ".npz" to one that lacks it
        # The checker would match the arrays with savez's allow_pickle: bool too; no parameter has that name
        np.savez(file, **module.state_dict(), **extra)  # type: ignore[arg-type]


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata :func:`save` stored in ``path`` (empty if none)."""
    archive = _read(path)
    return json.loads(str(archive[METADATA_KEY])) if METADATA_KEY in archive else {}


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
        with open(path, "rb") as file:  # NumPy would call any other file pickled and suggest allow_pickle: never
            if file.read(4) != b"PK\x03\x04":
                raise ValueError("it is not an .npz (zip) archive")
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array, not an .npz archive of named parameters")
        with archive:
            state = {name: archive[name] for name in archive.files}
        strays = [name for name, value in state.items() if not isinstance(value, np.ndarray)]
        if strays:
            raise ValueError(f"its entry {strays[0]!r} is not an array")
        return state
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelFileError(f"{os.fspath(path)!r} is not a model file written by opreg: {exc}") from exc
