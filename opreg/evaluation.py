"""Scoring a saved model: the function behind ``opreg evaluate``.

Two kinds of file are scored: one saved by ``opreg train --save`` (its metadata records the training settings and
the split, so ``--held-out`` can score the rows training held out), and one saved by :func:`opreg.nn.save` from a
built-in model (an ``MLP``, or any class registered with :func:`opreg.nn.register_model`): it is rebuilt from the
architecture the file records, and scored on every row of the data given (the bundled digits by default).

A model file is input like any other, and anyone can write one. Its metadata is checked as :class:`TrainConfig`
checks options, its sizes against the memory available before anything is allocated, its weights for NaN; and the
data file its metadata names is never opened on the metadata's say-so: the user names the file to score on.
"""

from __future__ import annotations

import os
import reprlib
import shlex
from dataclasses import dataclass, replace

import numpy as np

from opreg.datasets import load_data, load_digits
from opreg.engine import Autograd
from opreg.errors import OpregError, OpUsageError
from opreg.nn import MLP, ModelFileError, Module, load, load_model, read_metadata
from opreg.nn.op_module import parse_spec
from opreg.registry import get_registry
from opreg.tensor import Tensor, no_grad
from opreg.train import (
    ConfigError,
    TrainConfig,
    build_model,
    check_layer_sizes,
    load_split,
    require_model_memory,
)


class EvaluationError(OpregError, ValueError):
    """Data a model cannot be scored on: none named for a model trained on a file, or rows that do not fit it."""


@dataclass
class Evaluation:
    """A saved model's accuracy on some data, and its confusion matrix (rows: true class, columns: predicted)."""

    accuracy: float
    confusion: np.ndarray
    n_examples: int
    source: str


def evaluate(path: str | os.PathLike[str], data: str | None = None, *, held_out: bool = False) -> Evaluation:
    """Load a model saved by ``opreg train --save`` and score it on every row of ``data``, or with ``held_out`` on
    the rows training held out of it (``data`` must then be the file the model was trained on: it is split again
    exactly as training split it). Without ``data``, a model trained on the bundled digits is scored on its
    held-out digits, and one trained on a file is refused, saying which ``data`` to pass."""
    name = os.fspath(path)
    if "layer_sizes" not in read_metadata(name):  # not written by opreg train: a model opreg.nn.save recorded
        return _evaluate_saved_model(name, data, held_out)
    config, layer_sizes = read_model_config(name)
    require_model_memory(
        layer_sizes, rows=0, copies=1, advice=f"; the sizes are the layer_sizes in the metadata of {name!r}"
    )
    model = load(build_model(layer_sizes, config), name)
    _refuse_nonfinite(model, name)
    if data is None and config.data is not None:
        raise EvaluationError(
            f"{name!r} was trained on {reprlib.repr(config.data)}, and opreg opens no file a model file names: pass "
            f"--data {shlex.quote(config.data)} --held-out to score the rows training held out of it, or "
            "--data FILE to score every row of FILE"
        )
    if data is None or held_out:
        _, _, features, labels = load_split(replace(config, data=data))
        source = f"the held-out {config.test_fraction:.0%} of {data or 'the bundled digits'}"
    else:
        features, labels = load_data(data)
        source = data
    return _score(model, features, labels, source)


def _evaluate_saved_model(name: str, data: str | None, held_out: bool) -> Evaluation:
    """A file without training metadata: the model its architecture records (:func:`opreg.nn.load_model`), on
    every row of ``data`` or of the bundled digits (the file records no split to hold out)."""
    if held_out:
        raise EvaluationError(
            f"{name!r} records no split to hold out (it was saved by opreg.nn.save, not by opreg train --save): "
            "leave out --held-out to score every row of --data FILE"
        )
    model = load_model(name)
    _refuse_nonfinite(model, name)
    if data is None:
        features, labels = load_digits()
        if isinstance(model, MLP) and model.layers[0].W.shape[1] != features.shape[1]:
            raise EvaluationError(
                f"{name!r} holds a model that takes {model.layers[0].W.shape[1]} features, not the bundled digits' "
                f"{features.shape[1]}: pass --data FILE to score it on the data it was trained for"
            )
        source = "every bundled digit (the file records no split: rows it was trained on count too)"
    else:
        features, labels = load_data(data)
        source = data
    return _score(model, features, labels, source)


def _refuse_nonfinite(model: Module, name: str) -> None:
    bad = next((key for key, value in model.state_dict().items() if not np.isfinite(value).all()), None)
    if bad is not None:
        raise ModelFileError(
            f"{name!r}: parameter {bad!r} holds NaN or infinite values: the training that saved it diverged, and "
            "the model predicts nothing"
        )


def read_model_config(path: str) -> tuple[TrainConfig, list[int]]:
    """The settings and layer sizes ``opreg train --save`` stored in ``path``'s metadata, checked as options are:
    :class:`ModelFileError` if there are none, or if they are not what opreg train writes."""
    metadata = read_metadata(path)
    if not metadata:
        raise ModelFileError(
            f"{path!r} holds no training metadata: opreg evaluate scores models saved by opreg train --save "
            "(opreg.nn.save without metadata= saves the weights alone)"
        )
    _require_activation_op(path, metadata)
    fields = {key: metadata[key] for key in TrainConfig.__dataclass_fields__ if key in metadata}
    try:
        return TrainConfig(**{**fields, "engine": "tensor"}), check_layer_sizes(metadata.get("layer_sizes"))
    except ConfigError as exc:
        raise ModelFileError(f"{path!r} has metadata that opreg train did not write: {exc}") from None


def _require_activation_op(path: str, metadata: dict[str, object]) -> None:
    """:class:`ModelFileError` if the model's activation op is not registered here, naming the op and, from the
    ``activation_op`` record :meth:`opreg.train.TrainResult.save` writes, the plugin and package that provide it.
    Anything else wrong with the activation is :class:`TrainConfig`'s to report."""
    activation = metadata.get("activation")
    try:
        name = parse_spec(activation)[0] if isinstance(activation, str) else None
    except OpUsageError:
        return
    if name is None or name in get_registry():
        return
    record = metadata.get("activation_op")
    source = record if isinstance(record, dict) and record.get("name") == name else {}
    plugin, distribution = source.get("plugin"), source.get("distribution")
    if isinstance(distribution, str) and distribution.split():
        package = distribution.split()[0]
        where = (
            f"it came from plugin {reprlib.repr(plugin)} of {reprlib.repr(distribution)[1:-1]}: install "
            f"{package} (pip install {shlex.quote(package)}), or if it is installed, `opreg plugins` says why it "
            "was skipped"
        )
    elif isinstance(plugin, str) and plugin.startswith("opreg_builtins."):
        where = f"it is opreg's built-in plugin {plugin!r}'s, which was skipped: `opreg plugins` says why"
    elif isinstance(plugin, str):
        where = (
            f"it came from plugin {reprlib.repr(plugin)}, which the program that trained the model registered "
            "itself (opreg.register_plugin), not from an installed package: register that plugin before loading"
        )
    else:
        where = "the file does not say which package provides it: `opreg ops` lists the ops installed here"
    raise ModelFileError(f"{path!r} was trained with the activation op {name!r}, which is not registered here: {where}")


def _score(model: Module, features: np.ndarray, labels: np.ndarray, source: str) -> Evaluation:
    if isinstance(model, MLP):  # the width it takes is known before anything runs
        n_inputs = model.layers[0].W.shape[1]
        if features.shape[1] != n_inputs:
            raise EvaluationError(f"{source} has {features.shape[1]} feature columns, but the model takes {n_inputs}")
    try:
        with no_grad():
            outputs = model(features)
    except (OpregError, ValueError) as exc:
        raise EvaluationError(f"the model cannot score {source}: {exc}") from None
    finally:
        if isinstance(model.autograd_engine, Autograd):
            model.autograd_engine.zero_grad()
    values = np.asarray(outputs.data if isinstance(outputs, Tensor) else outputs)
    if values.ndim != 2 or len(values) != len(labels):
        raise EvaluationError(
            f"the model gives outputs of shape {values.shape} for the {len(labels)} rows of {source}, not one score "
            "per class for each row"
        )
    n_classes = values.shape[1]
    if labels.max() >= n_classes:
        raise EvaluationError(
            f"{source} has label {labels.max()}, but the model has outputs for classes 0..{n_classes - 1} only: is "
            "it the data the model was trained for?"
        )
    predictions = values.argmax(axis=1)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    return Evaluation(float((predictions == labels).mean()), confusion, len(labels), source)
