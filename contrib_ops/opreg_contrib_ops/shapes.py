"""Shape changes: reshape (attribute ``shape``) and permute (attribute ``axes``). Values are untouched, so each
backward applies the inverse change to ``grad_output``, with the op itself, and can be differentiated again.

permute is not called transpose: the built-ins own that name (it swaps the last two axes), and two plugins may
not register one name. permute is ``np.transpose`` exactly (its forward is ``np.transpose(x, axes)``, axes=None
included), so it declares ``numpy="transpose"``: ``np.transpose(tensor)`` and ``opreg.numpy.transpose`` run it.
reshape declares no NumPy name: it takes neither ``order=`` nor ``copy=``, and needs ``shape``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np

import opreg.numpy as onp
import opreg.ops
from opreg.plugin import Register, Sample

Shape = int | Sequence[int] | None


def _reshape(x: np.ndarray, *, shape: Shape = None) -> np.ndarray:
    """x with a new shape of as many elements (one entry may be -1), as np.reshape; a view where NumPy can."""
    if shape is None:
        raise ValueError("reshape needs the attribute shape, e.g. apply('reshape', x, shape=(2, -1))")
    return np.reshape(x, shape)


def _permute_axes(ndim: int, axes: Sequence[int] | None) -> tuple[int, ...]:
    """``axes`` as non-negative ints; None means all of them reversed, as np.transpose."""
    return tuple(reversed(range(ndim))) if axes is None else tuple(operator.index(a) % ndim for a in axes)


def _permute(x: np.ndarray, *, axes: Sequence[int] | None = None) -> np.ndarray:
    """x with its axes reordered: output axis i is input axis axes[i] (None: reversed), as np.transpose."""
    return np.transpose(x, axes)  # NumPy rejects axes that are not a permutation, with its own message


def _permute_backward(g: Any, x: Any, *, axes: Sequence[int] | None) -> tuple[Any]:
    """The inverse permutation, argsort of the axes: made non-negative first, or argsort would misorder -1."""
    inverse = tuple(int(a) for a in np.argsort(_permute_axes(x.ndim, axes)))
    return (onp.transpose(g, axes=inverse),)


def _torch_reshape(torch: ModuleType) -> Callable[..., Any]:
    return lambda x, shape=None: torch.reshape(x, (shape,) if isinstance(shape, int) else tuple(shape))


def _torch_permute(torch: ModuleType) -> Callable[..., Any]:
    return lambda x, axes=None: x.permute(tuple(reversed(range(x.ndim))) if axes is None else tuple(axes))


def _reshape_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample(rng.standard_normal((2, 3, 4)), shape=(6, 4)),
        Sample(rng.standard_normal((2, 3, 4)), shape=(4, -1)),
        Sample(rng.standard_normal((2, 3, 4)), shape=(-1,)),
        Sample(rng.standard_normal((2, 3, 4)), shape=24),
        Sample(rng.standard_normal((2, 3, 4)), shape=(2, 2, 3, 2)),
        Sample(rng.standard_normal((6, 4)), shape=(2, -1, 3)),
        Sample(rng.standard_normal((1,)), shape=()),
    ]


def _permute_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample(rng.standard_normal((2, 3, 4))),
        Sample(rng.standard_normal((2, 3, 4)), axes=(1, 2, 0)),
        Sample(rng.standard_normal((2, 3, 4)), axes=(-1, 0, -2)),
        Sample(rng.standard_normal((3, 4)), axes=(1, 0)),
        Sample(rng.standard_normal((2, 3, 4, 5)), axes=(0, 2, 3, 1)),
    ]


def register_ops(register: Register) -> None:
    register(
        name="reshape",
        inputs=("x",),
        forward=_reshape,
        backward=lambda g, x: (opreg.ops.reshape(g, shape=x.shape),),
        sample_inputs=_reshape_samples,
        doc="x with a new shape (required attribute shape; one entry may be -1), as np.reshape.",
        reference=_torch_reshape,
    )
    register(
        name="permute",
        inputs=("x",),
        forward=_permute,
        backward=_permute_backward,
        sample_inputs=_permute_samples,
        numpy="transpose",
        reference=_torch_permute,
    )
