"""``MLP``: Linear layers with an activation between them, built from a list of layer sizes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise

import numpy as np
from numpy.typing import DTypeLike

from opreg.engine import Autograd
from opreg.nn.activations import ReLU, Sigmoid
from opreg.nn.linear import Linear
from opreg.nn.module import Module, Parameter


class MLP(Module):
    """``MLP([in, hidden, out], engine)`` is the handout's Linear -> ReLU -> Linear -> Sigmoid.

    More sizes give more layers; ``activation`` goes between Linear layers and ``output_activation`` after the
    last (use ``Identity`` to get logits for ``SoftmaxCrossEntropy``).
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        autograd_engine: Autograd,
        *,
        activation: Callable[[Autograd], Module] = ReLU,
        output_activation: Callable[[Autograd], Module] = Sigmoid,
        rng: np.random.Generator | None = None,
        dtype: DTypeLike = np.float64,
    ) -> None:
        super().__init__(autograd_engine)
        if len(layer_sizes) < 2:
            raise ValueError(f"an MLP needs at least an input and an output size, got {list(layer_sizes)}")
        rng = np.random.default_rng() if rng is None else rng
        self.layers: list[Module] = []
        for n_in, n_out in pairwise(layer_sizes):
            self.layers += [Linear(n_in, n_out, autograd_engine, rng=rng, dtype=dtype), activation(autograd_engine)]
        self.layers[-1] = output_activation(autograd_engine)

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self) -> list[Parameter]:
        return [pair for layer in self.layers for pair in layer.parameters()]
