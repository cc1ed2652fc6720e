"""Training an MLP classifier with the tape engine: the loop behind ``opreg train``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from opreg.datasets import load_digits, one_hot, train_test_split
from opreg.engine import Autograd
from opreg.nn import MLP, Identity, SoftmaxCrossEntropy
from opreg.optim import SGD

#: Called after each mini-batch as ``on_batch(epoch, batch, n_batches, loss)``; epochs and batches count from 1.
BatchCallback = Callable[[int, int, int, float], None]


@dataclass
class TrainResult:
    """What a training run produced: the model, the mean loss of each epoch, accuracies and wall time."""

    model: MLP
    epoch_losses: list[float] = field(default_factory=list)
    train_accuracy: float = 0.0
    test_accuracy: float = 0.0
    seconds: float = 0.0


def accuracy(model: MLP, features: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose largest output is the label. Records ops on the model's engine and clears them."""
    predictions = model(features).argmax(axis=1)
    model.autograd_engine.zero_grad()
    return float((predictions == labels).mean())


@dataclass(frozen=True)
class TrainConfig:
    """The settings of a digits training run; the defaults are those of ``opreg train``."""

    hidden: tuple[int, ...] = (128,)
    epochs: int = 50
    batch_size: int = 32
    lr: float = 0.2
    seed: int = 0
    test_fraction: float = 0.2


def train_digits(config: TrainConfig = TrainConfig(), on_batch: BatchCallback | None = None) -> TrainResult:
    """Train ``MLP([64, *hidden, 10])`` (ReLU, softmax cross-entropy, SGD) on the bundled digits.

    The same ``config.seed`` gives the same split, initial weights, batch order and so the same numbers.
    """
    start = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    features, labels = load_digits()
    x_train, y_train, x_test, y_test = train_test_split(features, labels, test_fraction=config.test_fraction, rng=rng)
    targets = one_hot(y_train, 10)

    engine = Autograd()
    model = MLP([features.shape[1], *config.hidden, 10], engine, output_activation=Identity, rng=rng)
    criterion = SoftmaxCrossEntropy(engine)
    optimizer = SGD(model.parameters(), lr=config.lr)
    result = TrainResult(model)
    n_batches = -(-len(x_train) // config.batch_size)
    for epoch in range(1, config.epochs + 1):
        order = rng.permutation(len(x_train))
        total = 0.0
        for batch, first in enumerate(range(0, len(x_train), config.batch_size), start=1):
            rows = order[first : first + config.batch_size]
            optimizer.zero_grad()
            engine.zero_grad()
            loss = criterion(targets[rows], model(x_train[rows]))
            engine.backward(1.0)
            optimizer.step()
            total += float(loss) * len(rows)
            if on_batch is not None:
                on_batch(epoch, batch, n_batches, float(loss))
        result.epoch_losses.append(total / len(x_train))
    result.train_accuracy = accuracy(model, x_train, y_train)
    result.test_accuracy = accuracy(model, x_test, y_test)
    result.seconds = time.perf_counter() - start
    return result
