"""``Linear``: y = x @ W.T + b, recorded as the registered op ``linear``."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import DTypeLike

from opreg.engine import Autograd
from opreg.nn.module import Module, Value
from opreg.random import generator
from opreg.tensor import TensorEngine


class Linear(Module):
    """A fully connected layer, ``W`` of shape (out, in) and ``b`` of shape (out,).

    Initialised as PyTorch does (uniform in +-1/sqrt(in_features) for both), from ``rng`` or, without one, from
    :func:`opreg.random.generator` (reproducible after ``opreg.manual_seed(n)``). On a tape, ``dW`` and ``db`` receive
    the gradients in place during ``backward``, and all four are plain attributes a user may read and replace, as
    in the handout. On Tensors, ``W`` and ``b`` are Tensors whose ``.grad`` holds the gradient (``dW`` and ``db``
    are ``None``).

    The handout records ``x @ W.T + b`` as three ops (transpose, matmul, add); ``linear`` is the same computation
    as one registered op, because its backward gives ``dW`` in W's own layout with no copy (bench/ measured the
    three-op version's transposed copy at about a tenth of an MNIST-sized step).
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
        rng = generator(rng)
        bound = 1 / math.sqrt(in_features)
        self.W, self.dW = self.new_parameter(rng.uniform(-bound, bound, (out_features, in_features)).astype(dtype))
        self.b, self.db = self.new_parameter(rng.uniform(-bound, bound, out_features).astype(dtype))

    def extra_repr(self) -> str:
        out_features, in_features = np.shape(self.W)
        return f"in_features={in_features}, out_features={out_features}"

    def forward(self, x: Value) -> Value:
        """``x @ W.T + b``, computed in W's dtype: ``x`` of another dtype is converted first
        (:meth:`~opreg.nn.Module.cast_input`, the dtype rule)."""
        x = self.cast_input(x, self.W.dtype)
        return self.autograd_engine.apply("linear", x, self.W, self.b, gradients_to_update=[None, self.dW, self.db])
