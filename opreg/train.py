"""Training a classifier (the handout's MLP, or a small CNN): the settings and the loop behind ``opreg train``
(``opreg evaluate`` is in :mod:`opreg.evaluation`).

Both front ends are supported with one model class: ``engine="tape"`` records on the handout's ``Autograd``
engine, ``engine="tensor"`` on Tensors. The same seed gives the same split, weights, batches and numbers.
"""

from __future__ import annotations

import math
import os
import reprlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any, cast

import numpy as np

from opreg.compiled import compile as opreg_compile
from opreg.datasets import CLASSES, load_data, load_digits, one_hot, train_test_split
from opreg.engine import Autograd
from opreg.errors import OpregError
from opreg.memory import require_memory
from opreg.nn import CNN, MLP, Identity, SoftmaxCrossEntropy, save
from opreg.nn.op_module import check_unary, format_spec, parse_spec
from opreg.optim import SGD, Adam, Optimizer
from opreg.registry import get_registry
from opreg.tensor import Tensor, no_grad

#: Called after each mini-batch as ``on_batch(epoch, batch, n_batches, loss)``; epochs and batches count from 1.
BatchCallback = Callable[[int, int, int, float], None]

#: The activations opreg has modules for; ``activation`` may name any registered unary op (:func:`opreg.nn.unary_ops`).
ACTIVATIONS = ("relu", "tanh", "sigmoid")
OPTIMIZERS = ("sgd", "adam")
ENGINES = ("tape", "tensor")
#: ``mlp``: the handout's MLP (``hidden`` and ``activation`` shape it); ``cnn``: :class:`opreg.nn.CNN`, for square
#: images given as rows of pixels (the digits: 8x8).
MODELS = ("mlp", "cnn")
#: What the model's weights and the data are computed in.
DTYPES = ("float64", "float32")
DEFAULT_LR = {"sgd": 0.2, "adam": 0.001}
#: Settings in which a model trains well when the user gives none (:meth:`TrainConfig.for_model`, ``opreg train
#: --model``): the CNN reaches 98.5% on the held-out digits with Adam at 0.003 in 64-row batches, in 30 epochs.
MODEL_DEFAULTS: dict[str, dict[str, object]] = {
    "mlp": {},
    "cnn": {"optimizer": "adam", "lr": 0.003, "batch_size": 64, "epochs": 30},
}


class ConfigError(OpregError, ValueError):
    """A training setting out of range or of the wrong type, from an option, a caller or a model file."""


class DivergedError(OpregError, FloatingPointError):
    """Training produced a NaN or infinite loss or weights: continuing would only save a model that predicts
    nothing."""


@dataclass(frozen=True)
class TrainConfig:
    """The settings of a training run; the defaults are those of ``opreg train``.

    ``data`` is a CSV or ``.npz`` file of features and integer labels (see :func:`opreg.datasets.load_data`),
    or ``None`` for the bundled digits. ``lr=None`` takes the optimizer's default (:data:`DEFAULT_LR`).
    ``allow_nonfinite`` trains on past a NaN or infinite loss instead of raising :class:`DivergedError`.
    ``compile`` runs the training step through :func:`opreg.compile` (recorded, then replayed: the same numbers,
    faster); ``False`` runs every step eagerly.
    ``activation`` is any registered unary op, by name or as ``NAME(attribute=value, ...)``
    (``"leaky_relu(negative_slope=0.1)"``); it is kept as :attr:`opreg.nn.OpModule.spec` writes it.
    Every setting is checked here, whether it comes from an option, a caller or a model file's metadata: a
    :class:`ConfigError` names the first one out of range or of the wrong type.
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
    allow_nonfinite: bool = False
    model: str = "mlp"
    dtype: str = "float64"
    compile: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.hidden, list):  # as JSON and callers spell a sequence
            object.__setattr__(self, "hidden", tuple(self.hidden))
        rules: list[tuple[str, bool, str]] = [
            ("hidden", isinstance(self.hidden, tuple) and all(_whole(n, 1) for n in self.hidden), SIZES),
            ("epochs", _whole(self.epochs, 1), "a whole number of at least 1"),
            ("batch_size", _whole(self.batch_size, 1), "a whole number of at least 1"),
            ("lr", self.lr is None or (_finite(self.lr) and self.lr > 0), "a finite number above 0"),
            ("momentum", _finite(self.momentum) and 0 <= self.momentum < 1, "at least 0 and below 1"),
            ("optimizer", self.optimizer in OPTIMIZERS, f"one of {', '.join(OPTIMIZERS)}"),
            ("activation", isinstance(self.activation, str), "the name of a unary op, such as relu"),
            ("engine", self.engine in ENGINES, f"one of {', '.join(ENGINES)}"),
            ("seed", _whole(self.seed, 0), "a whole number of at least 0"),
            ("test_fraction", _finite(self.test_fraction) and 0 < self.test_fraction < 1, "above 0 and below 1"),
            ("data", self.data is None or isinstance(self.data, str), "a file name or None"),
            ("allow_nonfinite", isinstance(self.allow_nonfinite, bool), "True or False"),
            ("model", self.model in MODELS, f"one of {', '.join(MODELS)}"),
            ("dtype", self.dtype in DTYPES, f"one of {', '.join(DTYPES)}"),
            ("compile", isinstance(self.compile, bool), "True or False"),
        ]
        for name, valid, rule in rules:
            if not valid:
                raise ConfigError(f"{name} must be {rule}, got {reprlib.repr(getattr(self, name))}")
        object.__setattr__(self, "activation", check_activation(self.activation))

    @classmethod
    def for_model(cls, model: str = "mlp", **settings: object) -> TrainConfig:
        """The settings for ``model``: :data:`MODEL_DEFAULTS` for it, then ``settings`` (the ones given). The
        CNN's learning rate default is for Adam: given another optimizer, that optimizer's default applies."""
        defaults = dict(MODEL_DEFAULTS.get(model, {}))
        if "optimizer" in settings and "lr" not in settings:
            defaults.pop("lr", None)
        return cls(model=model, **{**defaults, **settings})  # type: ignore[arg-type]

    @property
    def learning_rate(self) -> float:
        """``lr``, or the optimizer's default when it is ``None``."""
        return DEFAULT_LR[self.optimizer] if self.lr is None else self.lr


def check_activation(spec: str) -> str:
    """``spec`` written as :attr:`opreg.nn.OpModule.spec` writes it, if it names a registered unary op with
    attributes it declares; else :class:`ConfigError` saying why (an unknown name with the closest ones)."""
    try:
        op, attributes = parse_spec(spec)
    except OpregError as exc:
        raise ConfigError(f"activation {exc}") from None
    try:
        if attributes or op not in ACTIVATIONS:  # the built-in three need no look-up: importing opreg.train, which
            check_unary(op, attributes)  # makes the default TrainConfig, must not load the plugins
    except OpregError as exc:
        raise ConfigError(f"activation {reprlib.repr(spec)}: {exc}") from None
    return format_spec(op, attributes)


#: What ``hidden`` and a model file's ``layer_sizes`` must be.
SIZES = "a list of whole numbers of at least 1"


def _whole(value: object, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class EpochStats:
    """One epoch: the mean training loss over its batches, and accuracies after it."""

    loss: float
    train_accuracy: float
    test_accuracy: float


@dataclass
class TrainResult:
    """What a training run produced."""

    model: MLP | CNN
    config: TrainConfig
    layer_sizes: list[int]
    history: list[EpochStats] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    training_seconds: float = 0.0  # in training steps alone, not evaluation

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.training_seconds if self.training_seconds else 0.0

    @property
    def final(self) -> EpochStats:
        return self.history[-1]

    @property
    def description(self) -> str:
        """The model in a few words: ``MLP 64-128-10 (relu)``, ``CNN 64-16-32-10``."""
        if isinstance(self.model, CNN):
            return f"CNN {'-'.join(map(str, [self.layer_sizes[0], *self.model.channels, self.layer_sizes[-1]]))}"
        return f"MLP {'-'.join(map(str, self.layer_sizes))} ({self.config.activation})"

    def save(self, path: str | os.PathLike[str]) -> None:
        """Save the weights with what ``opreg evaluate`` needs to rebuild the model and the held-out split, and
        where the activation's op came from (``activation_op``: its plugin and package), so that a file whose op
        is not installed where it is loaded says what to install."""
        op = get_registry()[parse_spec(self.config.activation)[0]]
        source = {"name": op.name, "plugin": op.plugin, "distribution": op.distribution}
        metadata = {"layer_sizes": self.layer_sizes, **asdict(self.config), "activation_op": source}
        save(self.model, path, metadata=metadata)


def load_split(config: TrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The data ``config`` names, split as a run with ``config.seed`` splits it."""
    features, labels = load_digits() if config.data is None else load_data(config.data)
    rng = np.random.default_rng(config.seed)
    return train_test_split(features, labels, test_fraction=config.test_fraction, rng=rng)


def build_model(layer_sizes: list[int], config: TrainConfig, rng: np.random.Generator | None = None) -> MLP | CNN:
    """``config.model`` for ``layer_sizes`` (features, hidden sizes, classes; a CNN takes the first and last)."""
    engine = Autograd(keep_gradients=False) if config.engine == "tape" else None
    if config.model == "cnn":
        return CNN(layer_sizes[0], layer_sizes[-1], autograd_engine=engine, rng=rng, dtype=config.dtype)
    return MLP(
        layer_sizes, engine, activation=config.activation, output_activation=Identity, rng=rng, dtype=config.dtype
    )


def predict(model: MLP | CNN, features: np.ndarray) -> np.ndarray:
    """The class with the largest output for each row, recording nothing that outlives the call."""
    with no_grad():
        outputs = model(features)
    if isinstance(model.autograd_engine, Autograd):
        model.autograd_engine.zero_grad()
    return cast(np.ndarray, np.asarray(outputs.data if isinstance(outputs, Tensor) else outputs).argmax(axis=1))


def accuracy(model: MLP | CNN, features: np.ndarray, labels: np.ndarray) -> float:
    return float((predict(model, features) == labels).mean())


def make_optimizer(model: MLP | CNN, config: TrainConfig) -> Optimizer:
    if config.optimizer == "adam":
        return Adam(model.parameters(), lr=config.learning_rate)
    return SGD(model.parameters(), lr=config.learning_rate, momentum=config.momentum)


def train(config: TrainConfig = TrainConfig(), on_batch: BatchCallback | None = None) -> TrainResult:
    """Train ``MLP([features, *hidden, classes])`` (or ``CNN(features, classes)``) with softmax cross-entropy, in
    ``config.dtype`` (the data converted to it); see :class:`TrainConfig`.

    Raises :class:`opreg.memory.TooLargeError` before allocating a model this machine cannot hold, and
    :class:`DivergedError` at the first NaN or infinite loss (or weights, after an epoch) unless
    ``config.allow_nonfinite``.
    """
    start = time.perf_counter()
    x_train, y_train, x_test, y_test = load_split(config)
    x_train, x_test = x_train.astype(config.dtype), x_test.astype(config.dtype)
    rng = np.random.default_rng([config.seed, 1])  # weights and batch order; the split has its own stream
    classes = int(max(y_train.max(), y_test.max())) + 1
    hidden = config.hidden if config.model == "mlp" else ()
    layer_sizes = [x_train.shape[1], *hidden, classes]
    _require_training_memory(layer_sizes, config, rows=len(x_train))
    model = build_model(layer_sizes, config, rng)
    criterion = SoftmaxCrossEntropy(model.autograd_engine if config.engine == "tape" else None)
    optimizer = make_optimizer(model, config)
    targets = one_hot(y_train, layer_sizes[-1]).astype(config.dtype)
    result = TrainResult(model, config, layer_sizes)
    n_batches = -(-len(x_train) // config.batch_size)
    step = step_function(model, criterion, optimizer)
    if config.compile:
        step = opreg_compile(step)
    # The loop finds NaN and infinity itself and says where: NumPy's warnings would only say it first, less well.
    with np.errstate(over="ignore", invalid="ignore"):
        for epoch in range(1, config.epochs + 1):
            order = rng.permutation(len(x_train))
            total = 0.0
            for batch, first in enumerate(range(0, len(x_train), config.batch_size), start=1):
                rows = order[first : first + config.batch_size]
                started = time.perf_counter()
                loss = float(step(x_train[rows], targets[rows]))
                result.training_seconds += time.perf_counter() - started
                result.steps += 1
                if not (math.isfinite(loss) or config.allow_nonfinite):
                    raise _diverged(f"the training loss is {loss} at epoch {epoch}, batch {batch}", config, x_train)
                total += loss * len(rows)
                if on_batch is not None:
                    on_batch(epoch, batch, n_batches, loss)
            if not (config.allow_nonfinite or all(np.isfinite(p.data).all() for p in model.parameters())):
                raise _diverged(f"the weights are NaN or infinite after epoch {epoch}", config, x_train)
            model.eval()
            result.history.append(
                EpochStats(total / len(x_train), accuracy(model, x_train, y_train), accuracy(model, x_test, y_test))
            )
            model.train()
    result.seconds = time.perf_counter() - start
    return result


def _require_training_memory(layer_sizes: list[int], config: TrainConfig, rows: int) -> None:
    """Training holds each weight, its gradient and the optimizer's state for it (Adam's two moments, SGD's
    momentum buffer), and the outputs of every layer for the training rows, when it scores them."""
    if config.model == "cnn":
        side = math.isqrt(layer_sizes[0])
        if side * side != layer_sizes[0] or side < 4:
            raise ConfigError(
                f"--model cnn takes square images of at least 4x4 pixels, one per row; the data has "
                f"{layer_sizes[0]} feature columns, which are not (use --model mlp)"
            )
        # scoring a split runs the first convolution on every row at once: 9 columns and 16 channels per pixel
        nbytes = np.dtype(config.dtype).itemsize * rows * layer_sizes[0] * (9 + 2 * 16)
        require_memory(nbytes, f"a CNN on {rows} images of {side}x{side}", "; train on fewer rows", estimate=True)
        return
    state = {"adam": 2, "sgd": 1 if config.momentum else 0}[config.optimizer]
    advice = (
        f": its sizes are the {layer_sizes[0]} feature columns, the hidden layers and the number of classes, the "
        f"largest label + 1; use smaller hidden layers, or give labels as the class numbers {CLASSES}"
    )
    require_model_memory(layer_sizes, rows=rows, copies=2 + state, advice=advice)


def _diverged(what: str, config: TrainConfig, features: np.ndarray) -> DivergedError:
    return DivergedError(
        f"{what}: training diverged (learning rate {config.learning_rate:g}, largest feature "
        f"{np.abs(features).max():.3g}); lower --lr or scale the features, or pass --allow-nonfinite "
        "(allow_nonfinite=True) to train on regardless"
    )


def require_model_memory(layer_sizes: Sequence[int], *, rows: int, copies: int, advice: str) -> None:
    """Refuse, before anything is allocated, an MLP this machine cannot hold: ``copies`` of its weights (values,
    gradients, optimizer state) and every layer's outputs for ``rows`` rows at once, as accuracy over a whole split
    computes them. An estimate, there to stop sizes from a typo or a stray label, and to say where they came from.
    """
    weights = sum((n_in + 1) * n_out for n_in, n_out in pairwise(layer_sizes))
    outputs = rows * sum(layer_sizes[1:])
    nbytes = np.dtype(np.float64).itemsize * (copies * weights + outputs)
    require_memory(nbytes, f"MLP {'-'.join(map(str, layer_sizes))}", advice, estimate=True)


def check_layer_sizes(sizes: object) -> list[int]:
    """``sizes`` if it is an MLP's layer sizes (inputs, hidden layers, classes), else :class:`ConfigError`."""
    if not (isinstance(sizes, list) and len(sizes) >= 2 and all(_whole(n, 1) for n in sizes)):
        raise ConfigError(f"layer_sizes must be {SIZES}, two at least, got {reprlib.repr(sizes)}")
    return sizes


def train_step(
    model: MLP | CNN, criterion: SoftmaxCrossEntropy, optimizer: Optimizer, x: np.ndarray, y: np.ndarray
) -> float:
    """One optimizer step on a batch ``(x, y)`` (one-hot ``y``), in the model's style (tape or Tensors); returns
    the batch loss. What :func:`train` runs per batch, for a loop of one's own."""
    return float(step_function(model, criterion, optimizer)(x, y))


def step_function(
    model: MLP | CNN, criterion: SoftmaxCrossEntropy, optimizer: Optimizer
) -> Callable[[np.ndarray, np.ndarray], Any]:
    """``step(x, y)``: one optimizer step on a batch, returning the loss (an array on a tape, a Tensor otherwise)
    without reading it, so that :func:`opreg.compile` can replay it."""
    engine = model.autograd_engine

    def step(x: np.ndarray, y: np.ndarray) -> Any:
        if isinstance(engine, Autograd):
            engine.zero_grad()
            loss = criterion(y, model(x))
            engine.backward(1.0, zero_grad=optimizer.parameters)  # dW zeroed as the gradients land: one pass
        else:
            optimizer.zero_grad()
            loss = criterion(y, model(x))
            loss.backward()
        optimizer.step()
        return loss

    return step
