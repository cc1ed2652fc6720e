"""``Linear``: y = x @ W.T + b, recorded as the registered ops transpose, matmul and add."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import DTypeLike

from opreg.engine import Autograd
from opreg.nn.module import Module, Value
from opreg.tensor import TensorEngine


class Linear(Module):
    """A fully connected layer, ``W`` of shape (out, in) and ``b`` of shape (out,).

    Initialised as PyTorch does (uniform in +-1/sqrt(in_features) for both). On a tape, ``dW`` and ``db`` receive
    the gradients in place during ``backward``, and all four are plain attributes a user may read and replace, as
    in the handout. On Tensors, ``W`` and ``b`` are Tensors whose ``.grad`` holds the gradient (``dW`` and ``db``
    are ``None``).
    """

    parameter_names = (("W", "dW"), ("b", "db"))

    def __init__(
        self,
        in_features: int,
        out_features: int,
        autograd_engine: Autograd | TensorEngine | None = None,
        *,
        rng: np.random.Generator | None = None,
        dtype: DTypeLike = np.float64,
    ) -> None:
        super().__init__(autograd_engine)
        rng = np.random.default_rng() if rng is None else rng
        bound = 1 / math.sqrt(in_features)
        self.W, self.dW = self.new_parameter(rng.uniform(-bound, bound, (out_features, in_features)).astype(dtype))
        self.b, self.db = self.new_parameter(rng.uniform(-bound, bound, out_features).astype(dtype))

    def forward(self, x: Value) -> Value:
        engine = self.autograd_engine
        weight_t = engine.apply("transpose", self.W, gradients_to_update=[self.dW])
        return engine.apply("add", engine.apply("matmul", x, weight_t), self.b, gradients_to_update=[None, self.db])
