"""Datasets and batches, as ``torch.utils.data``: :class:`TensorDataset` and :class:`DataLoader`, over NumPy arrays.

Batches are tuples of NumPy arrays, not Tensors: data is a constant (no gradient flows to it), and every opreg
model takes arrays in both styles (a Tape module needs them; a Tensor module accepts them). So
``for x, y in DataLoader(TensorDataset(features, labels), batch_size=32, shuffle=True, seed=0)`` gives ``x`` of
shape ``(32, ...)`` and ``y`` of shape ``(32,)``.

This folder also holds the bundled digits (``digits.csv.gz``, see README.md here), read by :mod:`opreg.datasets`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from opreg.random import generator

__all__ = ["DataLoader", "Dataset", "TensorDataset", "default_collate"]


class Dataset(Protocol):
    """What a DataLoader reads: ``len(dataset)`` items, ``dataset[i]`` each (an array, a number, or a tuple or
    dict of them)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int, /) -> Any: ...


class TensorDataset:
    """Arrays of one length (their first dimension), item ``i`` being the tuple of their rows ``i``, as torch's.

    Each is converted with ``np.asarray`` (so lists and Tensors that require no gradient are accepted) and keeps its
    dtype. Arrays of different lengths, or a 0-d array, are an error naming them.
    """

    def __init__(self, *arrays: Any) -> None:
        if not arrays:
            raise ValueError("TensorDataset needs at least one array (features, and labels, say)")
        converted = [np.asarray(a) for a in arrays]
        for i, a in enumerate(converted):
            if a.ndim == 0:
                raise ValueError(
                    f"TensorDataset: array {i} is a single number (0-d); each array needs one row per item"
                )
        lengths = [len(a) for a in converted]
        if len(set(lengths)) > 1:
            odd = next(i for i, n in enumerate(lengths) if n != lengths[0])
            raise ValueError(
                f"TensorDataset needs arrays of one length (rows along the first axis): array 0 has {lengths[0]} "
                f"rows but array {odd} has {lengths[odd]}; item i is row i of every array"
            )
        self.arrays: tuple[np.ndarray, ...] = tuple(converted)

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, index: Any) -> tuple[np.ndarray, ...]:
        return tuple(a[index] for a in self.arrays)


def default_collate(items: Sequence[Any]) -> Any:
    """One batch from a list of items: arrays and numbers stacked along a new first axis; tuples, lists and dicts
    of them collated field by field (a tuple of batches, a dict of batches)."""
    first = items[0]
    if isinstance(first, dict):
        return {key: default_collate([item[key] for item in items]) for key in first}
    if isinstance(first, (tuple, list)):
        if any(len(item) != len(first) for item in items):
            raise ValueError(
                f"the items of a batch have different numbers of fields: {sorted({len(i) for i in items})}"
            )
        return tuple(default_collate(list(fields)) for fields in zip(*items, strict=True))
    arrays = [np.asarray(item) for item in items]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(
            f"the items of a batch have different shapes {sorted(shapes)}, so they cannot be stacked into one array; "
            "make every item the same shape, or pass collate_fn= to batch them your way"
        )
    return np.stack(arrays)


class DataLoader:
    """Batches of ``batch_size`` items of ``dataset``, in order or, with ``shuffle``, in a new random order each
    time it is iterated (each epoch); ``drop_last`` leaves out a last, smaller batch.

    Reproducible: ``seed=n`` (or ``generator=np.random.default_rng(n)``) gives the same batches, epoch after epoch,
    in every run; the loader draws each epoch's order from that generator, and without either from opreg's default
    generator (:func:`opreg.random.generator`), which ``opreg.manual_seed(n)`` seeds. ``len(loader)`` is the number of
    batches. A :class:`TensorDataset` is batched by indexing its arrays with the batch's indices at once;
    any other dataset item by item, stacked by ``collate_fn`` (:func:`default_collate`).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        *,
        generator: np.random.Generator | None = None,
        seed: int | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a whole number of at least 1, got {batch_size!r}")
        if generator is not None and seed is not None:
            raise ValueError(
                "DataLoader takes generator= or seed=, not both (seed=n is generator=np.random.default_rng(n))"
            )
        if generator is not None and not isinstance(generator, np.random.Generator):
            raise TypeError(f"DataLoader: generator must be a numpy.random.Generator, got {type(generator).__name__}")
        if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
            raise TypeError(
                f"DataLoader reads a dataset with len() and [i] (a TensorDataset, say), not a {type(dataset).__name__}"
            )
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.collate_fn = collate_fn
        if generator is None and seed is not None:
            generator = np.random.default_rng(seed)
        self.generator = generator

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self) -> np.ndarray:
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        return generator(self.generator).permutation(n)

    def __iter__(self) -> Iterator[Any]:
        order = self._order()
        stop = len(self) * self.batch_size
        dataset = self.dataset
        for first in range(0, min(stop, len(order)), self.batch_size):
            indices = order[first : first + self.batch_size]
            if isinstance(dataset, TensorDataset) and self.collate_fn is None:
                yield dataset[indices]
            else:
                items = [dataset[int(i)] for i in indices]
                yield (self.collate_fn or default_collate)(items)
