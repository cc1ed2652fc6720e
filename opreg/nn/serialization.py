"""Saving a model's parameters to ``.npz`` and loading them back, never through pickle."""

from __future__ import annotations

import os
import zipfile

import numpy as np

from opreg.nn.module import ModelFileError, Module


def save(module: Module, path: str | os.PathLike[str]) -> None:
    """Write ``module.state_dict()`` to ``path`` with ``np.savez`` (one array per parameter name)."""
    np.savez(path, **module.state_dict())


def load(module: Module, path: str | os.PathLike[str]) -> Module:
    """Read a file written by :func:`save` into ``module`` in place (``allow_pickle=False``); returns it.

    A file that is not such an archive, or whose parameters do not fit the module (the first mismatch named),
    raises :class:`ModelFileError` and leaves the module unchanged.
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            state = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelFileError(f"{os.fspath(path)!r} is not a model file written by opreg: {exc}") from exc
    module.load_state_dict(state)
    return module
