"""``Sequential``: modules applied one after another; ``MLP`` builds one from a list of layer sizes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from opreg.engine import Autograd
from opreg.nn.activations import ReLU, Sigmoid
from opreg.nn.linear import Linear
from opreg.nn.module import Module
from opreg.tensor import TensorEngine

Engine = Autograd | TensorEngine | None


class Sequential(Module):
    """``Sequential(Linear(...), ReLU(...), ...)``: each module's output is the next one's input.

    The modules must record on one engine; parameters are named by position (``"0.W"``), as in PyTorch.
    """

    def __init__(self, *layers: Module) -> None:
        engines = {id(layer.autograd_engine) for layer in layers}
        if len(engines) > 1:
            raise ValueError("the modules of a Sequential must all record on the same engine")
        super().__init__(layers[0].autograd_engine if layers else None)
        self.layers = list(layers)

    def children(self) -> list[tuple[str, Module]]:
        return [(str(i), layer) for i, layer in enumerate(self.layers)]

    def forward(self, x: Any) -> Any:
        for layer in self.layers:
            x = layer(x)
        return x


class MLP(Sequential):
    """``MLP([in, hidden, out], engine)`` is the handout's Linear -> ReLU -> Linear -> Sigmoid.

    More sizes give more layers; ``activation`` goes between Linear layers and ``output_activation`` after the
    last (use ``Identity`` to get logits for ``SoftmaxCrossEntropy``). Without an engine, it works on Tensors.
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        autograd_engine: Engine = None,
        *,
        activation: Callable[[Engine], Module] = ReLU,
        output_activation: Callable[[Engine], Module] = Sigmoid,
        rng: np.random.Generator | None = None,
        dtype: DTypeLike = np.float64,
    ) -> None:
        if len(layer_sizes) < 2:
            raise ValueError(f"an MLP needs at least an input and an output size, got {list(layer_sizes)}")
        rng = np.random.default_rng() if rng is None else rng
        layers: list[Module] = []
        for n_in, n_out in pairwise(layer_sizes):
            layers += [Linear(n_in, n_out, autograd_engine, rng=rng, dtype=dtype), activation(autograd_engine)]
        layers[-1] = output_activation(autograd_engine)
        super().__init__(*layers)
