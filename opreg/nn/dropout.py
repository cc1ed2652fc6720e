"""``Dropout``: inverted dropout, as ``torch.nn.Dropout``."""

from __future__ import annotations

from typing import Any

import numpy as np

from opreg.engine import Autograd
from opreg.nn.layer_errors import LayerError, check_engine, values
from opreg.nn.module import Module, Value
from opreg.random import generator
from opreg.tensor import TensorEngine


class Dropout(Module):
    """In training mode, each element is zeroed with probability ``p`` and the others are scaled by
    ``1 / (1 - p)`` (inverted dropout), so that nothing changes in eval mode, where the layer is the identity.

    The mask is a constant drawn at each call from ``rng`` when given, else from the default generator
    (:func:`opreg.random.generator`: seeded by ``opreg.manual_seed``), and recorded as one ``mul``, so the
    gradient is ``g * mask``.
    Edge cases as PyTorch: ``p=0`` returns the input itself; ``p=1`` returns ``x * 0`` (zeros, NaN where ``x``
    is infinite or NaN), whose gradient is 0. ``p`` outside [0, 1] is a :class:`LayerError`.
    """

    def __init__(
        self,
        p: float = 0.5,
        autograd_engine: Autograd | TensorEngine | None = None,
        *,
        rng: np.random.Generator | None = None,
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

    def mask(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A new mask for an input of ``shape``: 0 with probability ``p``, else ``1 / (1 - p)`` (in ``dtype``)."""
        keep = generator(self.rng).random(shape) >= self.p
        mask: np.ndarray = keep.astype(dtype) * np.asarray(1 / (1 - self.p), dtype=dtype)
        return mask

    def forward(self, x: Value) -> Value:
        if not self.training or self.p == 0:
            return x
        data = values(x)
        dtype = data.dtype if data.dtype.kind == "f" else np.dtype(np.float64)
        if self.p == 1:
            return self.autograd_engine.apply("mul", x, np.zeros((), dtype))
        return self.autograd_engine.apply("mul", x, self.mask(data.shape, dtype))
