"""Undoing NumPy broadcasting in gradients, done once here rather than in every op's backward."""

from __future__ import annotations

import numpy as np


def sum_to_shape(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """Sum ``grad`` over the axes along which an input of ``shape`` was broadcast.

    Returns ``None`` when ``grad`` cannot come from broadcasting an input of ``shape``: that is a wrong gradient,
    and the caller reports it, naming the op.
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra < 0:
        return None
    if extra:  # np.asarray: summing every axis away gives a NumPy scalar, not a 0-d array
        grad = np.asarray(grad.sum(axis=tuple(range(extra))))
    stretched = tuple(axis for axis, n in enumerate(shape) if n == 1 and grad.shape[axis] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad if grad.shape == shape else None
