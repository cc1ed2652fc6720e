"""Ops whose output is one of their inputs' values, chosen elementwise: abs, fabs, maximum, minimum, fmax, fmin,
clip, nan_to_num.

Their gradients route g to the input that was chosen, through masks computed from the inputs' values (constants:
a mask's derivative is 0), with :mod:`opreg.numpy`'s ``where``, so they compose to any order. Where the choice is
a tie, each follows PyTorch, and each choice is tested:

- abs (and fabs): the gradient at 0.0 and -0.0 is 0, the subgradient torch picks.
- maximum, minimum: a tie gives each input half of g (torch's rule); NaN propagates, and a NaN gives g to both.
- fmax, fmin: NaN is ignored, the other input is chosen and gets g; a tie gives all of g to the first input
  (torch's rule for fmax and fmin, which differs from maximum's).
- clip(x, a_min, a_max): the bounds are inputs, differentiable as torch.clamp's tensor bounds, and broadcast. x
  gets g where a_min <= x <= a_max (at a bound too), a_min where x < a_min < a_max, a_max where x > a_max or
  a_max < a_min (then every output is a_max, as NumPy's and torch's). A bound may be None, as in NumPy: unbounded.
- nan_to_num: g where x is finite; 0 where NaN or an infinity was replaced by a constant.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Register, Sample, away_from_zero, constant, hookimpl


def _abs_backward(g: Any, x: Any) -> tuple[Any]:
    """g * sign(x), from two masks: 0 at exactly 0 and -0.0, as torch (any value in [-1, 1] is a subgradient)."""
    return (g * (x > 0) - g * (x < 0),)


def _maximum_backward(g: Any, a: Any, b: Any) -> tuple[Any, Any]:
    a, b = constant(a), constant(b)
    half = g * 0.5
    return onp.where(a < b, 0.0, onp.where(a == b, half, g)), onp.where(a > b, 0.0, onp.where(a == b, half, g))


def _minimum_backward(g: Any, a: Any, b: Any) -> tuple[Any, Any]:
    a, b = constant(a), constant(b)
    half = g * 0.5
    return onp.where(a > b, 0.0, onp.where(a == b, half, g)), onp.where(a < b, 0.0, onp.where(a == b, half, g))


def _fmax_backward(g: Any, a: Any, b: Any) -> tuple[Any, Any]:
    a, b = constant(a), constant(b)
    first = (a >= b) | np.isnan(b)
    return onp.where(first, g, 0.0), onp.where(first, 0.0, g)


def _fmin_backward(g: Any, a: Any, b: Any) -> tuple[Any, Any]:
    a, b = constant(a), constant(b)
    first = (a <= b) | np.isnan(b)
    return onp.where(first, g, 0.0), onp.where(first, 0.0, g)


def _pair_samples(rng: np.random.Generator) -> list[Sample]:
    """Distinct values (finite differences across a tie would see half of each side), both ways of broadcasting."""
    return [
        Sample(rng.standard_normal((3, 4)), rng.standard_normal((3, 4))),
        Sample(rng.standard_normal((3, 1)), rng.standard_normal((4,))),
    ]


def _is_none(bound: Any) -> bool:
    """A bound given as None (which reaches forward as a 0-d object array when converted)."""
    return bound is None or (
        isinstance(bound, np.ndarray) and bound.dtype == object and bound.shape == () and bound.item() is None
    )


def _clip(x: np.ndarray, a_min: Any, a_max: Any) -> np.ndarray:
    """x limited to [a_min, a_max] elementwise, broadcasting; None leaves that side unbounded."""
    low, high = (None if _is_none(b) else b for b in (a_min, a_max))
    if low is None and high is None:
        return np.array(x, copy=True)
    return np.asarray(np.clip(x, low, high))


def _clip_backward(g: Any, x: Any, a_min: Any, a_max: Any) -> tuple[Any, Any, Any]:
    """torch.clamp's gradients with tensor bounds (see the module's docstring)."""
    low_missing, high_missing = _is_none(a_min), _is_none(a_max)
    values = constant(x)
    low = -np.inf if low_missing else constant(a_min)
    high = np.inf if high_missing else constant(a_max)
    grad_x = onp.where((values >= low) & (values <= high), g, 0.0)
    grad_low = None if low_missing else onp.where((values < low) & (low < high), g, 0.0)
    grad_high = None if high_missing else onp.where((values > high) | (high < low), g, 0.0)
    return grad_x, grad_low, grad_high


def _clip_samples(rng: np.random.Generator) -> list[Sample]:
    """Bounds as 0-d arrays and broadcast against x, values on both sides of each bound (none within 1e-3)."""
    x = away_from_zero(rng, (3, 4), 0.05) * 1.5
    return [
        Sample(x, np.array(-0.5), np.array(0.6)),
        Sample(x, rng.uniform(-1.0, -0.3, (3, 1)), rng.uniform(0.2, 0.9, (4,))),
        Sample(x, np.array(0.5), np.array(-0.5)),  # a_min > a_max: a_max everywhere
    ]


def _clamp_reference(torch: Any) -> Any:
    """torch.clamp with tensor bounds; its output has x's shape, so x is first broadcast against the bounds, as
    NumPy's clip broadcasts all three."""
    return lambda x, a_min, a_max: torch.clamp(torch.broadcast_tensors(x, a_min, a_max)[0], a_min, a_max)


def _nan_to_num(
    x: np.ndarray, *, nan: float = 0.0, posinf: float | None = None, neginf: float | None = None
) -> np.ndarray:
    """NaN replaced by ``nan``, infinities by ``posinf`` and ``neginf`` (None: the dtype's largest finite value)."""
    return np.asarray(np.nan_to_num(x, nan=nan, posinf=posinf, neginf=neginf))


def _nan_to_num_backward(g: Any, x: Any) -> tuple[Any]:
    return (onp.where(np.isfinite(constant(x)), g, 0.0),)


def _nan_to_num_samples(rng: np.random.Generator) -> list[Sample]:
    """Finite values (the gradient checks vary inputs by finite differences, which NaN defeats): NaN and the
    infinities are tests/test_elementwise_edges.py's and the property tests' (EDGES)."""
    return [Sample(rng.standard_normal((3, 4))), Sample(rng.standard_normal((3, 4)), nan=1.5, posinf=9.0, neginf=-9.0)]


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="abs",
        inputs=("x",),
        forward=np.abs,
        backward=_abs_backward,
        sample_inputs=lambda rng: [Sample(away_from_zero(rng))],
        doc="|x|; the gradient at 0.0 and -0.0 is 0, as in torch.",
        numpy=("absolute", "abs"),
        reference="torch.abs",
        batch="elementwise",
    )
    register(
        name="fabs",
        inputs=("x",),
        forward=np.fabs,
        backward=_abs_backward,
        sample_inputs=lambda rng: [Sample(away_from_zero(rng))],
        doc="|x| as a float (NumPy's fabs); the gradient at 0.0 and -0.0 is 0, as abs's.",
        numpy="fabs",
        reference="torch.abs",
        batch="elementwise",
    )
    register(
        name="maximum",
        inputs=("a", "b"),
        forward=np.maximum,
        backward=_maximum_backward,
        sample_inputs=_pair_samples,
        doc="The larger of a and b, broadcasting; NaN if either is. A tie gives each half of the gradient (torch).",
        numpy="maximum",
        reference="torch.maximum",
        batch="elementwise",
    )
    register(
        name="minimum",
        inputs=("a", "b"),
        forward=np.minimum,
        backward=_minimum_backward,
        sample_inputs=_pair_samples,
        doc="The smaller of a and b, broadcasting; NaN if either is. A tie gives each half of the gradient (torch).",
        numpy="minimum",
        reference="torch.minimum",
        batch="elementwise",
    )
    register(
        name="fmax",
        inputs=("a", "b"),
        forward=np.fmax,
        backward=_fmax_backward,
        sample_inputs=_pair_samples,
        doc="The larger of a and b, ignoring NaN, broadcasting. A tie gives the whole gradient to a (torch).",
        numpy="fmax",
        reference="torch.fmax",
        batch="elementwise",
    )
    register(
        name="fmin",
        inputs=("a", "b"),
        forward=np.fmin,
        backward=_fmin_backward,
        sample_inputs=_pair_samples,
        doc="The smaller of a and b, ignoring NaN, broadcasting. A tie gives the whole gradient to a (torch).",
        numpy="fmin",
        reference="torch.fmin",
        batch="elementwise",
    )
    register(
        name="clip",
        inputs=("x", "a_min", "a_max"),
        forward=_clip,
        backward=_clip_backward,
        sample_inputs=_clip_samples,
        doc="x limited to [a_min, a_max], broadcasting; the bounds are differentiable inputs (None: unbounded). "
        "x's gradient passes at the bounds too; with a_min > a_max every output is a_max (torch.clamp's rules).",
        numpy="clip",
        reference=_clamp_reference,
        batch="elementwise",
    )
    register(
        name="nan_to_num",
        inputs=("x",),
        forward=_nan_to_num,
        backward=_nan_to_num_backward,
        sample_inputs=_nan_to_num_samples,
        doc="NaN and infinities replaced by finite numbers; the gradient is g where x is finite, else 0 (torch).",
        numpy="nan_to_num",
        reference="torch.nan_to_num",
        batch="elementwise",
    )
