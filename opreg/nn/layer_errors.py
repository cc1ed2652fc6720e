"""What the layers (Dropout, LayerNorm, BatchNorm1d/2d, Embedding) raise, and the checks they share."""

from __future__ import annotations

from typing import Any

import numpy as np

from opreg.engine import Autograd
from opreg.errors import OpregError
from opreg.tensor import Tensor, TensorEngine


class LayerError(OpregError, ValueError):
    """A layer built with an argument it cannot take, or called on an input it cannot take (a ``ValueError``,
    as PyTorch's own for these)."""


class EmbeddingIndexError(LayerError, IndexError):
    """An index given to an :class:`~opreg.nn.Embedding` outside ``[0, num_embeddings)`` (an ``IndexError`` too, as
    PyTorch's): NumPy would read a negative index from the end, a silently wrong row."""


def check_engine(layer: str, autograd_engine: Any) -> None:
    """Refuse what is not an engine where the engine goes: ``BatchNorm1d(16, 1e-3)``, PyTorch's positional eps,
    would otherwise fail later with an unrelated message."""
    if autograd_engine is not None and not isinstance(autograd_engine, Autograd | TensorEngine):
        raise LayerError(
            f"{layer}: autograd_engine must be an opreg.Autograd (or None for Tensors), got {autograd_engine!r}; "
            "pass the other settings by keyword (eps=..., momentum=...)"
        )


def values(x: Any) -> np.ndarray:
    """The array behind ``x``: a Tensor's values, or ``x`` as an array (a constant: nothing is recorded)."""
    return x.data if isinstance(x, Tensor) else np.asarray(x)
