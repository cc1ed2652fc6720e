"""Training and evaluating an MLP classifier: the loops behind ``opreg train`` and ``opreg evaluate``.

Both front ends are supported with one model class: ``engine="tape"`` records on the handout's ``Autograd``
engine, ``engine="tensor"`` on Tensors. The same seed gives the same split, weights, batches and numbers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import cast

import numpy as np

from opreg.datasets import load_data, load_digits, one_hot, train_test_split
from opreg.engine import Autograd
from opreg.nn import MLP, Identity, ReLU, Sigmoid, SoftmaxCrossEntropy, Tanh, load, read_metadata, save
from opreg.optim import SGD, Adam, Optimizer
from opreg.tensor import Tensor, no_grad

#: Called after each mini-batch as ``on_batch(epoch, batch, n_batches, loss)``; epochs and batches count from 1.
BatchCallback = Callable[[int, int, int, float], None]

ACTIVATIONS = {"relu": ReLU, "tanh": Tanh, "sigmoid": Sigmoid}
OPTIMIZERS = ("sgd", "adam")
ENGINES = ("tape", "tensor")
DEFAULT_LR = {"sgd": 0.2, "adam": 0.001}


@dataclass(frozen=True)
class TrainConfig:
    """The settings of a training run; the defaults are those of ``opreg train``.

    ``data`` is a CSV or ``.npz`` file of features and integer labels (see :func:`opreg.datasets.load_data`),
    or ``None`` for the bundled digits. ``lr=None`` takes the optimizer's default (:data:`DEFAULT_LR`).
    """

    hidden: tuple[int, ...] = (128,)
    epochs: int = 50
    batch_size: int = 32
    lr: float | None = None
    momentum: float = 0.0
    optimizer: str = "sgd"
    activation: str = "relu"
    engine: str = "tape"
    seed: int = 0
    test_fraction: float = 0.2
    data: str | None = None

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("optimizer", self.optimizer, OPTIMIZERS),
            ("activation", self.activation, tuple(ACTIVATIONS)),
            ("engine", self.engine, ENGINES),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        if self.epochs < 1 or self.batch_size < 1 or not 0 < self.test_fraction < 1:
            raise ValueError("epochs and batch_size must be at least 1, and test_fraction between 0 and 1")


@dataclass
class EpochStats:
    """One epoch: the mean training loss over its batches, and accuracies after it."""

    loss: float
    train_accuracy: float
    test_accuracy: float


@dataclass
class TrainResult:
    """What a training run produced."""

    model: MLP
    config: TrainConfig
    layer_sizes: list[int]
    history: list[EpochStats] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final(self) -> EpochStats:
        return self.history[-1]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the weights with what ``opreg evaluate`` needs to rebuild the model and the held-out split."""
        save(self.model, path, metadata={"layer_sizes": self.layer_sizes, **asdict(self.config)})


def load_split(config: TrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The data ``config`` names, split as a run with ``config.seed`` splits it."""
    features, labels = load_digits() if config.data is None else load_data(config.data)
    rng = np.random.default_rng(config.seed)
    return train_test_split(features, labels, test_fraction=config.test_fraction, rng=rng)


def build_model(layer_sizes: list[int], config: TrainConfig, rng: np.random.Generator | None = None) -> MLP:
    engine = Autograd(keep_gradients=False) if config.engine == "tape" else None
    activation = ACTIVATIONS[config.activation]
    return MLP(layer_sizes, engine, activation=activation, output_activation=Identity, rng=rng)


def predict(model: MLP, features: np.ndarray) -> np.ndarray:
    """The class with the largest output for each row, recording nothing that outlives the call."""
    with no_grad():
        outputs = model(features)
    if isinstance(model.autograd_engine, Autograd):
        model.autograd_engine.zero_grad()
    return cast(np.ndarray, np.asarray(outputs.data if isinstance(outputs, Tensor) else outputs).argmax(axis=1))


def accuracy(model: MLP, features: np.ndarray, labels: np.ndarray) -> float:
    return float((predict(model, features) == labels).mean())


def make_optimizer(model: MLP, config: TrainConfig) -> Optimizer:
    lr = DEFAULT_LR[config.optimizer] if config.lr is None else config.lr
    if config.optimizer == "adam":
        return Adam(model.parameters(), lr=lr)
    return SGD(model.parameters(), lr=lr, momentum=config.momentum)


def train(config: TrainConfig = TrainConfig(), on_batch: BatchCallback | None = None) -> TrainResult:
    """Train ``MLP([features, *hidden, classes])`` with softmax cross-entropy; see :class:`TrainConfig`."""
    start = time.perf_counter()
    x_train, y_train, x_test, y_test = load_split(config)
    rng = np.random.default_rng([config.seed, 1])  # weights and batch order; the split has its own stream
    layer_sizes = [x_train.shape[1], *config.hidden, int(max(y_train.max(), y_test.max())) + 1]
    model = build_model(layer_sizes, config, rng)
    criterion = SoftmaxCrossEntropy(model.autograd_engine if config.engine == "tape" else None)
    optimizer = make_optimizer(model, config)
    targets = one_hot(y_train, layer_sizes[-1])
    result = TrainResult(model, config, layer_sizes)
    n_batches = -(-len(x_train) // config.batch_size)
    for epoch in range(1, config.epochs + 1):
        order = rng.permutation(len(x_train))
        total = 0.0
        for batch, first in enumerate(range(0, len(x_train), config.batch_size), start=1):
            rows = order[first : first + config.batch_size]
            loss = train_step(model, criterion, optimizer, x_train[rows], targets[rows])
            total += loss * len(rows)
            if on_batch is not None:
                on_batch(epoch, batch, n_batches, loss)
        model.eval()
        result.history.append(
            EpochStats(total / len(x_train), accuracy(model, x_train, y_train), accuracy(model, x_test, y_test))
        )
        model.train()
    result.seconds = time.perf_counter() - start
    return result


def train_step(model: MLP, criterion: SoftmaxCrossEntropy, optimizer: Optimizer, x: np.ndarray, y: np.ndarray) -> float:
    """One optimizer step on a batch ``(x, y)`` (one-hot ``y``), in the model's style (tape or Tensors); returns
    the batch loss. What :func:`train` runs per batch, for a loop of one's own."""
    optimizer.zero_grad()
    engine = model.autograd_engine
    if isinstance(engine, Autograd):
        engine.zero_grad()
        loss = criterion(y, model(x))
        engine.backward(1.0)
    else:
        loss = criterion(y, model(x))
        loss.backward()
    optimizer.step()
    return float(loss)


@dataclass
class Evaluation:
    """A saved model's accuracy on some data, and its confusion matrix (rows: true class, columns: predicted)."""

    accuracy: float
    confusion: np.ndarray
    n_examples: int
    source: str


def evaluate(path: str | os.PathLike[str], data: str | None = None) -> Evaluation:
    """Load a model saved by ``opreg train --save`` and score it: on ``data`` (every row), or else on the
    held-out part of the data it was trained on, split again exactly as training split it."""
    metadata = read_metadata(path)
    fields = {name: metadata[name] for name in TrainConfig.__dataclass_fields__ if name in metadata}
    config = TrainConfig(**{**fields, "hidden": tuple(fields.get("hidden", ())), "engine": "tensor"})
    layer_sizes = list(metadata["layer_sizes"])
    model = load(build_model(layer_sizes, config), path)
    if data is None:
        _, _, features, labels = load_split(config)
        source = f"the held-out {config.test_fraction:.0%} of {config.data or 'the bundled digits'}"
    else:
        features, labels = load_data(data)
        source = data
    n_classes = max(int(labels.max()) + 1, layer_sizes[-1])
    predictions = predict(model, features)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    return Evaluation(float((predictions == labels).mean()), confusion, len(labels), source)
