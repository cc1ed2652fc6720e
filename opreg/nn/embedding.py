"""``Embedding``: a lookup table of vectors read by integer index, as ``torch.nn.Embedding``."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from opreg.engine import Autograd
from opreg.nn.layer_errors import EmbeddingIndexError, LayerError, check_engine, values
from opreg.nn.module import Module, Value
from opreg.random import generator
from opreg.tensor import TensorEngine


class Embedding(Module):
    """``weight`` of shape (num_embeddings, embedding_dim), drawn from N(0, 1) as PyTorch's; called on an integer
    array of any shape, it returns ``weight[indices]``, of shape ``indices.shape + (embedding_dim,)``.

    The lookup is the registered op ``take`` along axis 0, so a row read several times gets the sum of their
    gradients (a scatter-add), and it composes to any order. The indices are a constant: they must be integers
    (a float array is refused even when its values are whole, as PyTorch's) in ``[0, num_embeddings)``; anything
    else is an :class:`EmbeddingIndexError`, since NumPy would read a negative index from the end, a silently
    wrong row. With ``padding_idx`` that row starts at zero and never gets a gradient (it is read as it is,
    as PyTorch's: set it to something else and that is what it returns); a negative ``padding_idx`` counts from
    the end, as PyTorch's.
    """

    parameter_names = (("weight", "dweight"),)

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        autograd_engine: Autograd | TensorEngine | None = None,
        *,
        padding_idx: int | None = None,
        rng: np.random.Generator | None = None,
        dtype: DTypeLike = np.float64,
    ) -> None:
        check_engine("Embedding", autograd_engine)
        for name, size in (("num_embeddings", num_embeddings), ("embedding_dim", embedding_dim)):
            if not isinstance(size, int | np.integer) or isinstance(size, bool) or size < 0:
                raise LayerError(f"Embedding: {name} must be a whole number >= 0, got {size!r}")
        if padding_idx is not None:
            if not isinstance(padding_idx, int | np.integer) or not -num_embeddings <= padding_idx < num_embeddings:
                raise LayerError(
                    f"Embedding({num_embeddings}, {embedding_dim}): padding_idx must be within num_embeddings "
                    f"(from {-num_embeddings} to {num_embeddings - 1}), got {padding_idx!r}"
                )
            padding_idx = int(padding_idx) % num_embeddings
        super().__init__(autograd_engine)
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        self.padding_idx = padding_idx
        weight = generator(rng).standard_normal((self.num_embeddings, self.embedding_dim)).astype(dtype)
        if padding_idx is not None:
            weight[padding_idx] = 0
        self.weight, self.dweight = self.new_parameter(weight)

    def __repr__(self) -> str:
        padding = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"Embedding({self.num_embeddings}, {self.embedding_dim}{padding})"

    def config(self) -> dict[str, Any]:
        return {
            "num_embeddings": self.num_embeddings,
            "embedding_dim": self.embedding_dim,
            "padding_idx": self.padding_idx,
        }

    def check_indices(self, indices: Any) -> np.ndarray:
        """``indices`` as an integer array, if they are integers in ``[0, num_embeddings)``."""
        idx = values(indices)
        if idx.size == 0 and idx.dtype.kind in "fiu":  # np.asarray([]) is float64: nothing is read either way
            return idx.astype(np.intp)
        if idx.dtype.kind not in "iu":
            raise LayerError(
                f"{self!r}: indices must be an integer array, got {idx.dtype} (a float index is refused even when "
                "whole, as in PyTorch; cast it with .astype(int))"
            )
        outside = (idx < 0) | (idx >= self.num_embeddings)
        if outside.any():
            raise EmbeddingIndexError(
                f"{self!r}: index {idx[outside].flat[0]} is out of range; indices must be in [0, "
                f"{self.num_embeddings}) (a negative index does not count from the end here, as in PyTorch)"
            )
        return idx

    def forward(self, indices: Any) -> Value:
        idx = self.check_indices(indices)
        apply = self.autograd_engine.apply
        rows = apply("take", self.weight, indices=idx, axis=0, gradients_to_update=[self.dweight])
        if self.padding_idx is not None:
            padding = idx == self.padding_idx
            if padding.any():  # the padding row as a constant there: its value is read, no gradient flows back
                row = np.array(values(self.weight)[self.padding_idx], copy=True)
                rows = apply("where", padding[..., None], row, rows)
        return rows
