"""Statistics over ``axis`` with ``keepdims``: var and std (with ``ddof``), and ptp (max - min).

var's gradient is ``2 (x - mean) / (N - ddof)``, std's ``(x - mean) / ((N - ddof) std)``: both written with
:mod:`opreg.numpy` on the input and the output, so they compose. Choices at the edges, each PyTorch's:

- std where every element of a slab is equal (std 0) has no derivative (sqrt at 0); its gradient there is 0, as
  ``torch.std``'s (and the 2-norm's at a zero vector), not 0 / 0. var's is 0 anyway.
- ``N - ddof <= 0`` gives NumPy's values (inf or NaN, with NumPy's warning) and a gradient of inf or NaN.
- ptp splits the gradient evenly among tied maxima and among tied minima, as max and min do; a slab whose
  elements are all equal gets ``g / n - g / n = 0`` for each.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import (
    Axis,
    Register,
    Sample,
    constant,
    divide_by_count,
    hookimpl,
    normalize_axes,
    over_axes,
    reduce,
    restore_axes,
)


def _statistic(torch_name: str) -> Any:
    """A ``reference=``: torch.var or torch.std with NumPy's axis and ddof (``correction``); over no axis at all
    (``axis=()``, which torch reads as every axis), each element alone: var 0 / (1 - ddof)."""

    def resolve(torch: Any) -> Any:
        function = getattr(torch, torch_name)

        def statistic(x: Any, axis: Axis = None, ddof: float = 0, keepdims: bool = False) -> Any:
            dims = tuple(range(x.ndim)) if axis is None else axis
            if dims == ():
                return (x - x) / (1 - ddof)
            return function(x, dim=dims, correction=ddof, keepdim=keepdims)

        return statistic

    return resolve


def _divisor(x: Any, axis: Axis, ddof: float) -> Any:
    """N - ddof, never below 0 (NumPy's rule): a Python int where it is one (float16 keeps its precision)."""
    n = int(np.prod([x.shape[a] for a in normalize_axes(axis, x.ndim)], dtype=np.int64))
    divisor = max(n - ddof, 0)
    return int(divisor) if float(divisor).is_integer() else np.asarray(divisor)


def _var(x: np.ndarray, *, axis: Axis = None, ddof: float = 0, keepdims: bool = False) -> np.ndarray:
    """Variance over axis (None: all): the mean of squared deviations, divided by N - ddof instead of N."""
    return np.asarray(np.var(x, axis=normalize_axes(axis, x.ndim), ddof=ddof, keepdims=keepdims))


def _std(x: np.ndarray, *, axis: Axis = None, ddof: float = 0, keepdims: bool = False) -> np.ndarray:
    """Standard deviation over axis (None: all): sqrt of var with the same ddof."""
    return np.asarray(np.std(x, axis=normalize_axes(axis, x.ndim), ddof=ddof, keepdims=keepdims))


def _deviation(x: Any, axis: Axis) -> Any:
    return x - onp.mean(x, axis=normalize_axes(axis, x.ndim), keepdims=True)


def _var_backward(g: Any, x: Any, *, axis: Axis, ddof: float, keepdims: bool) -> tuple[Any]:
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = divide_by_count(restore_axes(g, x, axis, keepdims) * _deviation(x, axis), _divisor(x, axis, ddof))
    return (scaled * 2,)


def _std_backward(g: Any, x: Any, *, axis: Axis, ddof: float, keepdims: bool, output: Any) -> tuple[Any]:
    std = restore_axes(output, x, axis, keepdims)
    zero = constant(std) == 0  # every element of the slab equal: gradient 0, torch's choice
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = restore_axes(g, x, axis, keepdims) * _deviation(x, axis) / onp.where(zero, 1.0, std)
        return (onp.where(zero, 0.0, divide_by_count(spread, _divisor(x, axis, ddof))),)


def _ptp(x: np.ndarray, *, axis: Axis = None, keepdims: bool = False) -> np.ndarray:
    """max - min over axis (None: all), as np.ptp ("peak to peak")."""
    return reduce(np.ptp, x, axis, keepdims)


def _ptp_backward(g: Any, x: Any, *, axis: Axis, keepdims: bool) -> tuple[Any]:
    """g shared evenly among the maxima, minus g shared evenly among the minima (as max and min do)."""
    axes = normalize_axes(axis, x.ndim)
    data = constant(x)
    g = restore_axes(g, x, axis, keepdims)
    is_max = data == data.max(axis=axes, keepdims=True)
    is_min = data == data.min(axis=axes, keepdims=True)
    up = divide_by_count(g, is_max.sum(axis=axes, keepdims=True))
    down = divide_by_count(g, is_min.sum(axis=axes, keepdims=True))
    return (onp.where(is_max, up, 0.0) - onp.where(is_min, down, 0.0),)


def _samples(rng: np.random.Generator) -> list[Sample]:
    settings: list[dict[str, Any]] = [
        {},
        {"axis": 1},
        {"axis": -1, "ddof": 1},
        {"axis": (0, 2), "keepdims": True},
        {"axis": (-1, 0), "ddof": 2},
        {"axis": None, "ddof": 1, "keepdims": True},
    ]
    return [Sample(rng.standard_normal((2, 3, 4)), **s) for s in settings]


def _ptp_samples(rng: np.random.Generator) -> list[Sample]:
    settings: list[dict[str, Any]] = [{}, {"axis": 1}, {"axis": (-1, 0)}, {"axis": 2, "keepdims": True}]
    distinct = rng.permutation(24).reshape(2, 3, 4) * 0.25 + rng.uniform(0.0, 0.05, size=(2, 3, 4))
    return [Sample(distinct, **s) for s in settings]


def _torch_ptp(torch: Any) -> Any:
    def ptp(x: Any, axis: Axis = None, keepdims: bool = False) -> Any:
        dims = tuple(range(x.ndim)) if axis is None else axis
        if dims == ():
            return x - x
        return torch.amax(x, dim=dims, keepdim=keepdims) - torch.amin(x, dim=dims, keepdim=keepdims)

    return ptp


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="var",
        inputs=("x",),
        forward=_var,
        backward=_var_backward,
        sample_inputs=_samples,
        numpy="var",
        reference=_statistic("var"),
        batch=over_axes,
    )
    register(
        name="std",
        inputs=("x",),
        forward=_std,
        backward=_std_backward,
        sample_inputs=_samples,
        numpy="std",
        reference=_statistic("std"),
        batch=over_axes,
    )
    register(
        name="ptp",
        inputs=("x",),
        forward=_ptp,
        backward=_ptp_backward,
        sample_inputs=_ptp_samples,
        numpy="ptp",
        reference=_torch_ptp,
        batch=over_axes,
    )
