"""Scoring a model saved by ``opreg train --save``: the function behind ``opreg evaluate``.

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

from opreg.datasets import load_data
from opreg.errors import OpregError, OpUsageError
from opreg.nn import CNN, MLP, ModelFileError, load, read_metadata
from opreg.nn.op_module import parse_spec
from opreg.registry import get_registry
from opreg.train import (
    ConfigError,
    TrainConfig,
    build_model,
    check_layer_sizes,
    load_split,
    predict,
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
    config, layer_sizes = read_model_config(name)
    require_model_memory(
        layer_sizes, rows=0, copies=1, advice=f"; the sizes are the layer_sizes in the metadata of {name!r}"
    )
    model = load(build_model(layer_sizes, config), name)
    bad = next((key for key, value in model.state_dict().items() if not np.isfinite(value).all()), None)
    if bad is not None:
        raise ModelFileError(
            f"{name!r}: parameter {bad!r} holds NaN or infinite values: the training that saved it diverged, and "
            "the model predicts nothing"
        )
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
    return _score(model, layer_sizes, features, labels, source)


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


def _score(
    model: MLP | CNN, layer_sizes: list[int], features: np.ndarray, labels: np.ndarray, source: str
) -> Evaluation:
    n_classes = layer_sizes[-1]
    if features.shape[1] != layer_sizes[0]:
        raise EvaluationError(f"{source} has {features.shape[1]} feature columns, but the model takes {layer_sizes[0]}")
    if labels.max() >= n_classes:
        raise EvaluationError(
            f"{source} has label {labels.max()}, but the model has outputs for classes 0..{n_classes - 1} only: is "
            "it the data the model was trained for?"
        )
    predictions = predict(model, features)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    return Evaluation(float((predictions == labels).mean()), confusion, len(labels), source)
