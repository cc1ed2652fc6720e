"""``Dropout``: inverted dropout, as ``torch.nn.Dropout``."""

from __future__ import annotations

from typing import Any

import numpy as np

from opreg.engine import Autograd
from opreg.nn.layer_errors import LayerError, check_engine
from opreg.nn.module import Module, Value
from opreg.tensor import Tensor, TensorEngine


class Dropout(Module):
    """In training mode, each element is zeroed with probability ``p`` and the others are scaled by
    ``1 / (1 - p)`` (inverted dropout), so that nothing changes in eval mode, where the layer is the identity.

    ``x * mask``, the mask drawn by the op ``dropout_mask`` (plugins/dropout.py) at each call, from ``rng`` when
    given (a Generator, or a whole-number seed: the same mask every call), else from the default generator
    (:func:`opreg.random.generator`: seeded by ``opreg.manual_seed``). The mask is a constant input of ``mul``, so
    the gradient is ``g * mask`` to any order, in forward mode too. Drawn by an op, the mask is drawn again by a
    replay of a compiled step (:func:`opreg.compile`), from the same generator, as the eager step draws it.
    Edge cases as PyTorch: ``p=0`` returns the input itself; ``p=1`` returns ``x * 0`` (zeros, NaN where ``x``
    is infinite or NaN), whose gradient is 0. ``p`` outside [0, 1] is a :class:`LayerError`.
    """

    def __init__(
        self,
        p: float = 0.5,
        autograd_engine: Autograd | TensorEngine | None = None,
        *,
        rng: np.random.Generator | int | None = None,
    ) -> None:
        check_engine("Dropout", autograd_engine)
        if not isinstance(p, int | float) or isinstance(p, bool) or not 0 <= p <= 1:
            raise LayerError(f"dropout probability has to be between 0 and 1, but got {p!r}")
        super().__init__(autograd_engine)
        self.p = float(p)
        self.rng = rng

    def __repr__(self) -> str:
        return f"Dropout(p={self.p})"

    def config(self) -> dict[str, Any]:
        return {"p": self.p}

    def forward(self, x: Value) -> Value:
        if not self.training or self.p == 0:
            return x
        engine = self.autograd_engine
        # drawn from a Tensor's values, outside the graph: no gradient is computed for the mask, only g * mask
        mask = engine.apply("dropout_mask", x.data if isinstance(x, Tensor) else x, p=self.p, rng=self.rng)
        return engine.apply("mul", x, mask)
