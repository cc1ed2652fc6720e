"""Saving a model's parameters to ``.npz`` and loading them back, never through pickle."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np

from opreg.files import atomic_write, read_npz
from opreg.nn.activations import Identity
from opreg.nn.module import ModelFileError, Module
from opreg.nn.op_module import OpModule

M = TypeVar("M", bound=Module)

#: The archive entry holding :func:`save`'s metadata, as JSON text (a string array needs no pickle).
METADATA_KEY = "__opreg_metadata__"

#: The archive entry holding what each op layer of the saved model was (:func:`op_layers`), as JSON text: weights
#: that fit a model with another activation would load into it silently otherwise.
LAYERS_KEY = "__opreg_layers__"

#: How :func:`op_layers` records an ``Identity``, which records no op.
IDENTITY = "Identity()"


def save(module: Module, path: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None) -> None:
    """Write ``module.state_dict()`` to ``path`` with ``np.savez`` (one array per parameter name), with optional
    JSON-serialisable ``metadata`` (what is needed to rebuild the model, say), and what each op layer is
    (:func:`op_layers`: ``{"1": "leaky_relu(negative_slope=0.1)"}``), which :func:`load` compares. The file at
    ``path`` is replaced whole or not at all (:func:`opreg.files.atomic_write`): a failed save never destroys the
    previous model."""
    extra = {METADATA_KEY: np.array(json.dumps(dict(metadata)))} if metadata else {}
    extra[LAYERS_KEY] = np.array(json.dumps(op_layers(module)))
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

    A file that is not such an archive, or whose parameters do not fit the module (the first mismatch named), or
    whose op layers differ from the module's (an activation, or its attributes: the weights would fit, and the
    model compute something else), raises :class:`ModelFileError` and leaves the module unchanged. A file
    written before op layers were recorded is compared by its parameters alone.
    """
    state = _read(path)
    state.pop(METADATA_KEY, None)
    layers = state.pop(LAYERS_KEY, None)
    module.check_state(state)  # a parameter that does not fit says more about the architecture than a layer
    if layers is not None:
        _check_layers(module, path, layers)
    module.load_state_dict(state)
    return module


def op_layers(module: Module, prefix: str = "") -> dict[str, str]:
    """Each :class:`OpModule` in ``module`` (itself included) by its path, as its :attr:`~OpModule.spec`, and each
    ``Identity`` as ``"Identity()"``: ``{"1": "relu", "3": "Identity()"}`` for ``MLP([4, 8, 3],
    output_activation=Identity)``. Other modules are described by their parameters alone."""
    layers = {}
    if isinstance(module, OpModule):
        layers[prefix.rstrip(".")] = module.spec
    elif isinstance(module, Identity):
        layers[prefix.rstrip(".")] = IDENTITY
    for name, child in module.children():
        layers.update(op_layers(child, f"{prefix}{name}."))
    return layers


def _check_layers(module: Module, path: str | os.PathLike[str], entry: np.ndarray) -> None:
    try:
        saved = json.loads(str(entry))
    except ValueError:
        raise _not_a_model(path, "its record of op layers is not JSON") from None
    if not (isinstance(saved, dict) and all(isinstance(v, str) for v in saved.values())):
        raise _not_a_model(path, "its record of op layers is not a JSON object of strings")
    ours = op_layers(module)
    for name in sorted(saved.keys() | ours.keys(), key=lambda n: [int(p) if p.isdigit() else p for p in n.split(".")]):
        if saved.get(name) != ours.get(name):
            raise ModelFileError(
                f"layer {name!r} is {_describe(saved.get(name))} in {os.fspath(path)!r} but "
                f"{_describe(ours.get(name))} in this {type(module).__name__}: build the model with the layers it "
                "was saved with"
            )


def _describe(layer: str | None) -> str:
    if layer is None:
        return "no op"
    return "Identity" if layer == IDENTITY else f"op {layer}"


def _read(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    try:
        return read_npz(path)
    except (OSError, ValueError) as exc:
        raise _not_a_model(path, str(exc)) from exc


def _not_a_model(path: str | os.PathLike[str], reason: str) -> ModelFileError:
    return ModelFileError(f"{os.fspath(path)!r} is not a model file written by opreg: {reason}")
