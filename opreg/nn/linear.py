"""``Linear``: y = x @ W.T + b, recorded as the registered ops transpose, matmul and add."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import DTypeLike

from opreg.engine import Autograd
from opreg.nn.module import Module, Parameter


class Linear(Module):
    """A fully connected layer, ``W`` of shape (out, in) and ``b`` of shape (out,).

    Initialised as PyTorch does (uniform in +-1/sqrt(in_features) for both). ``dW`` and ``db`` receive the
    gradients in place during ``backward``; all four are plain attributes a user may read and replace.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        autograd_engine: Autograd,
        *,
        rng: np.random.Generator | None = None,
        dtype: DTypeLike = np.float64,
    ) -> None:
        super().__init__(autograd_engine)
        rng = np.random.default_rng() if rng is None else rng
        bound = 1 / math.sqrt(in_features)
        self.W = rng.uniform(-bound, bound, (out_features, in_features)).astype(dtype)
        self.b = rng.uniform(-bound, bound, out_features).astype(dtype)
        self.dW = np.zeros_like(self.W)
        self.db = np.zeros_like(self.b)

    def forward(self, x: np.ndarray) -> np.ndarray:
        engine = self.autograd_engine
        weight_t = engine.apply("transpose", self.W, gradients_to_update=[self.dW])
        return engine.apply("add", engine.apply("matmul", x, weight_t), self.b, gradients_to_update=[None, self.db])

    def parameters(self) -> list[Parameter]:
        return [(self.W, self.dW), (self.b, self.db)]
