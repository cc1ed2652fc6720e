"""Saving a model to ``.npz`` and loading it back, never through pickle.

A file holds the model's state dict (one array per parameter or buffer name), what each op layer is, optional
metadata, and, for a built-in model, its *architecture*: the class's registered name and the keyword arguments of
its constructor (``config()``), as JSON text. :func:`load_model` rebuilds such a model from the file alone;
:func:`load` fills a model one built oneself. Nothing in a file can run code: arrays are read with
``allow_pickle=False``, the JSON with :func:`json.loads`, and a class is looked up by name among those registered
with :func:`register_model` (``MLP``, ``CNN``), never imported.
"""

from __future__ import annotations

import json
import os
import reprlib
from collections.abc import Mapping
from typing import Any, TypeVar, overload

import numpy as np

from opreg.engine import Autograd
from opreg.files import atomic_write, read_npz
from opreg.memory import TooLargeError
from opreg.nn.activations import Identity
from opreg.nn.conv import CNN
from opreg.nn.module import ModelFileError, Module
from opreg.nn.op_module import OpModule
from opreg.nn.sequential import MLP, ArchitectureError
from opreg.tensor import TensorEngine

M = TypeVar("M", bound=Module)
ModuleT = TypeVar("ModuleT", bound=Module)

#: The archive entry holding :func:`save`'s metadata, as JSON text (a string array needs no pickle).
METADATA_KEY = "__opreg_metadata__"

#: The archive entry holding what each op layer of the saved model was (:func:`op_layers`), as JSON text: weights
#: that fit a model with another activation would load into it silently otherwise.
LAYERS_KEY = "__opreg_layers__"

#: The archive entry holding the model's architecture (:func:`architecture_of`), as JSON text.
ARCHITECTURE_KEY = "__opreg_architecture__"

#: The model classes :func:`load_model` can rebuild, by name: each has ``config()``, the JSON keyword arguments of
#: its constructor (which also takes ``autograd_engine=``), and may have a classmethod ``check_config(config)`` that
#: refuses, before anything is built, a config no file of its own would hold (sizes beyond memory, say).
MODEL_CLASSES: dict[str, type[Module]] = {}

#: How :func:`op_layers` records an ``Identity``, which records no op.
IDENTITY = "Identity()"


def save(module: Module, path: str | os.PathLike[str], metadata: Mapping[str, Any] | None = None) -> None:
    """Write ``module.state_dict()`` to ``path`` with ``np.savez`` (one array per parameter name), with optional
    JSON-serialisable ``metadata`` (what is needed to rebuild the model, say), and what each op layer is
    (:func:`op_layers`: ``{"1": "leaky_relu(negative_slope=0.1)"}``), which :func:`load` compares. The file at
    ``path`` is replaced whole or not at all (:func:`opreg.files.atomic_write`): a failed save never destroys the
    previous model. The architecture of a registered model class (:func:`register_model`) is stored too, so
    that :func:`load_model` rebuilds the model from the file alone."""
    extra = {METADATA_KEY: np.array(json.dumps(dict(metadata)))} if metadata else {}
    extra[LAYERS_KEY] = np.array(json.dumps(op_layers(module)))
    extra[ARCHITECTURE_KEY] = np.array(json.dumps(architecture_of(module)))
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


@overload
def load(module: M, path: str | os.PathLike[str]) -> M: ...


@overload
def load(module: str | os.PathLike[str], path: None = None) -> Module: ...


def load(module: Module | str | os.PathLike[str], path: str | os.PathLike[str] | None = None) -> Module:
    """Read a file written by :func:`save` into ``module`` in place (``allow_pickle=False``); returns it.
    ``load(path)`` alone is :func:`load_model(path) <load_model>`: the model rebuilt from the architecture the file
    records.

    A file that is not such an archive, or whose parameters do not fit the module (the first mismatch named), or
    whose op layers differ from the module's (an activation, or its attributes: the weights would fit, and the
    model compute something else), raises :class:`ModelFileError` and leaves the module unchanged. A file
    written before op layers were recorded is compared by its parameters alone.
    """
    if not isinstance(module, Module):
        if path is not None:
            raise TypeError("load(model, path) takes the model first; load(path) rebuilds the model the file records")
        return load_model(module)
    if path is None:
        raise TypeError("load(model, path) needs the path of the file to read into the model")
    return _load_into(module, path)


def _load_into(module: M, path: str | os.PathLike[str], state: dict[str, np.ndarray] | None = None) -> M:
    state = dict(_read(path) if state is None else state)
    state.pop(METADATA_KEY, None)
    state.pop(ARCHITECTURE_KEY, None)
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
    for name, child in module.named_children():
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


def register_model(cls: type[ModuleT], name: str | None = None) -> type[ModuleT]:
    """Let :func:`save` record models of class ``cls`` (under ``name``, the class's name by default) and
    :func:`load_model` rebuild them; returns ``cls``, so it can decorate the class. ``cls`` must have
    ``config()``. Only this exact class is recorded: a subclass, whose forward may differ, registers itself."""
    name = cls.__name__ if name is None else name
    if not callable(getattr(cls, "config", None)):
        raise TypeError(f"{cls.__name__} has no config() method, which gives the architecture to record")
    if MODEL_CLASSES.get(name, cls) is not cls:
        raise ValueError(f"the model name {name!r} is taken by {MODEL_CLASSES[name].__qualname__}")
    MODEL_CLASSES[name] = cls
    return cls


def architecture_of(module: Module) -> dict[str, Any]:
    """What :func:`save` records of ``module``'s architecture: ``{"class": "MLP", "config": {...}}`` for a registered
    class, else ``{"class": name, "unavailable": why}``, which :func:`load_model` reports."""
    cls = type(module)
    name = next((key for key, value in MODEL_CLASSES.items() if value is cls), None)
    if name is None:
        why = f"{cls.__name__} is not a model class registered with opreg.nn.register_model"
        return {"class": cls.__name__, "unavailable": why}
    try:
        config = module.config()
        json.dumps(config)
    except (ArchitectureError, TypeError, ValueError) as exc:
        return {"class": name, "unavailable": f"its architecture could not be recorded: {exc}"}
    return {"class": name, "config": config}


def load_model(path: str | os.PathLike[str], autograd_engine: Autograd | TensorEngine | None = None) -> Module:
    """The model saved in ``path`` by :func:`save`, rebuilt from the architecture the file records and filled
    with its weights, recording on ``autograd_engine`` (Tensors when ``None``).

    A file without an architecture (saved from a model class of one's own, or by an opreg that did not record
    it), a class not registered here, or an architecture that does not build (or does not fit the weights) is a
    :class:`ModelFileError` saying which; a file that is not a model is one too. Nothing in the file is run.
    """
    name = os.fspath(path)
    state = _read(path)
    entry = state.get(ARCHITECTURE_KEY)
    if entry is None:
        raise ModelFileError(
            f"{name!r} holds weights but no architecture (it was saved from a model class of one's own, or by an "
            "older opreg): build the model and load the weights into it with opreg.nn.load(model, path)"
        )
    try:
        architecture = json.loads(str(entry))
    except (ValueError, RecursionError):
        raise _not_a_model(path, "its architecture is not JSON") from None
    if not (isinstance(architecture, dict) and isinstance(architecture.get("class"), str)):
        raise _not_a_model(path, "its architecture is not a JSON object naming a class")
    class_name = architecture["class"]
    if "unavailable" in architecture:
        raise ModelFileError(
            f"{name!r} holds the weights of a {reprlib.repr(class_name)} but not its architecture: "
            f"{_shorten(architecture['unavailable'])}; build the model and load the weights into "
            "it with opreg.nn.load(model, path)"
        )
    cls = MODEL_CLASSES.get(class_name)
    if cls is None:
        raise ModelFileError(
            f"{name!r} holds a {reprlib.repr(class_name)}, which is not a model class registered here (those are: "
            f"{', '.join(sorted(MODEL_CLASSES))}): register it with opreg.nn.register_model, or build it and use "
            "opreg.nn.load(model, path)"
        )
    config = architecture.get("config")
    if not (isinstance(config, dict) and all(isinstance(k, str) for k in config) and "autograd_engine" not in config):
        raise _not_a_model(path, f"the configuration of its {class_name} is not a JSON object of keyword arguments")
    check = getattr(cls, "check_config", None)
    try:
        if check is not None:
            check(config)
        model = cls(**config, autograd_engine=autograd_engine)
    except TooLargeError:
        raise
    except Exception as exc:  # a file's config reaches a constructor: whatever it raises is the file's fault
        raise ModelFileError(
            f"{name!r}: the architecture it records does not build a model of class {class_name}: {_shorten(exc)}"
        ) from None
    return _load_into(model, path, state)


def _shorten(text: object, limit: int = 400) -> str:
    """``text`` as a string of at most ``limit`` characters: a file's strings end up in messages."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    import zipfile  # here, where a model file is read, rather than by every `import opreg`
    import zlib

    try:
        return read_npz(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError) as exc:
        raise _not_a_model(path, str(exc)) from exc


def _not_a_model(path: str | os.PathLike[str], reason: str) -> ModelFileError:
    return ModelFileError(f"{os.fspath(path)!r} is not a model file written by opreg: {reason}")


register_model(MLP)
register_model(CNN)
