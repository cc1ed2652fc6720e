"""One MLP training step in each implementation, all starting from the same weights and using the same batch.

A step is forward, softmax cross-entropy (mean over the batch, one-hot targets), backward, the SGD update in
place, and whatever zeroing of gradients the library needs. Each builder copies the weights it is given, so
trainers never share state, and returns a :class:`Trainer`: ``step()`` runs one step, ``weights()`` returns the
current ``[W0, b0, W1, b1, ...]`` as NumPy arrays in the reference's ``(out, in)`` layout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy_reference
import torch

import opreg
from opreg.nn import MLP, Identity, SoftmaxCrossEntropy
from opreg.optim import SGD

try:
    import autograd
    import autograd.numpy as anp
except ImportError:  # the suite runs without it and says so
    autograd = anp = None

AUTOGRAD_MISSING = "HIPS autograd is not installed (pip install autograd): its rows are skipped"


@dataclass
class Trainer:
    name: str
    step: Callable[[], object]
    weights: Callable[[], list[np.ndarray]]


Builder = Callable[[list[np.ndarray], np.ndarray, np.ndarray, float], Trainer]


def numpy_trainer(params: list[np.ndarray], x: np.ndarray, y: np.ndarray, lr: float) -> Trainer:
    own = [p.copy() for p in params]
    return Trainer("numpy", lambda: numpy_reference.train_step(own, x, y, lr), lambda: own)


def _opreg_mlp(params: list[np.ndarray], engine: opreg.Autograd | None) -> MLP:
    sizes = [params[0].shape[1]] + [w.shape[0] for w in params[0::2]]
    model = MLP(sizes, engine, output_activation=Identity, rng=np.random.default_rng(0), dtype=params[0].dtype)
    names = [name for name, _ in model.named_parameters()]  # 0.W, 0.b, 2.W, ...: the reference's order
    model.load_state_dict(dict(zip(names, params, strict=True)))  # copies
    return model


def opreg_tape_trainer(params: list[np.ndarray], x: np.ndarray, y: np.ndarray, lr: float) -> Trainer:
    """The handout's style: arrays on an ``opreg.Autograd`` tape, gradients landing in each layer's dW/db.

    ``keep_gradients=False``, as ``opreg train`` does it: only dW and db are wanted; and as it does, the optimizer's
    zero_grad is handed to backward, which zeroes dW and db as the gradients land (one pass over them, not a fill
    and then an addition).
    """
    engine = opreg.Autograd(keep_gradients=False)
    model = _opreg_mlp(params, engine)
    criterion = SoftmaxCrossEntropy(engine)
    optimizer = SGD(model.parameters(), lr=lr)

    def step() -> None:
        criterion(y, model(x))
        engine.backward(1.0, zero_grad=optimizer.parameters)  # dW, db: the first gradient is written, not added
        optimizer.step()
        engine.zero_grad()  # forget the tape now rather than at the next step: it holds no activations between steps

    return Trainer("opreg tape", step, lambda: [p.data for p in model.parameters()])


def opreg_tensor_trainer(params: list[np.ndarray], x: np.ndarray, y: np.ndarray, lr: float) -> Trainer:
    """Tensors recording their own graph; parameters are Tensors with ``.grad``."""
    model = _opreg_mlp(params, None)
    criterion = SoftmaxCrossEntropy(None)
    optimizer = SGD(model.parameters(), lr=lr)

    def step() -> None:
        optimizer.zero_grad()
        criterion(y, model(x)).backward()
        optimizer.step()

    return Trainer("opreg Tensor", step, lambda: [p.data for p in model.parameters()])


def compiled(builder: Builder) -> Builder:
    """``builder``'s step through ``opreg.compile``: recorded on its first calls, replayed after (the suite's
    warm-up makes the recordings before anything is timed)."""

    def build(params: list[np.ndarray], x: np.ndarray, y: np.ndarray, lr: float) -> Trainer:
        trainer = builder(params, x, y, lr)
        return Trainer(f"{trainer.name} compiled", opreg.compile(trainer.step), trainer.weights)

    build.__name__ = f"{builder.__name__}_compiled"
    return build


def torch_trainer(params: list[np.ndarray], x: np.ndarray, y: np.ndarray, lr: float) -> Trainer:
    """PyTorch CPU eager; ``cross_entropy`` with probability targets is the same loss as the reference's."""
    layers: list[torch.nn.Module] = []
    for w, b in zip(params[0::2], params[1::2], strict=True):
        linear = torch.nn.Linear(w.shape[1], w.shape[0], dtype=torch.from_numpy(w).dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(w))
            linear.bias.copy_(torch.from_numpy(b))
        layers += [linear, torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    inputs, targets = torch.from_numpy(x), torch.from_numpy(y)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)

    def step() -> None:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs), targets).backward()
        optimizer.step()

    return Trainer("torch", step, lambda: [p.detach().numpy() for p in model.parameters()])


def _autograd_loss(params: list, x: np.ndarray, y: np.ndarray) -> object:
    """The reference's forward and loss in ``autograd.numpy``, for ``autograd.grad`` to differentiate."""
    h = x
    for i in range(0, len(params), 2):
        if i:
            h = anp.maximum(h, 0.0)
        h = anp.dot(h, params[i].T) + params[i + 1]
    shifted = h - anp.max(h, axis=1, keepdims=True)
    log_probs = shifted - anp.log(anp.sum(anp.exp(shifted), axis=1, keepdims=True))
    return -anp.sum(y * log_probs) / x.shape[0]


def autograd_trainer(params: list[np.ndarray], x: np.ndarray, y: np.ndarray, lr: float) -> Trainer:
    """HIPS autograd: ``grad`` of a loss function of the flat parameter list, then SGD in place."""
    own = [p.copy() for p in params]
    gradient = autograd.grad(_autograd_loss)

    def step() -> None:
        for p, g in zip(own, gradient(own, x, y), strict=True):
            p -= lr * g

    return Trainer("autograd", step, lambda: own)


def builders() -> list[Builder]:
    """Every implementation that can run here, the reference first."""
    found = [
        numpy_trainer,
        opreg_tape_trainer,
        opreg_tensor_trainer,
        compiled(opreg_tape_trainer),
        compiled(opreg_tensor_trainer),
        torch_trainer,
    ]
    return found + ([autograd_trainer] if autograd is not None else [])
