"""Circular functions and angles: sin, cos, tan, arcsin, arccos, arctan, arctan2, hypot, sinc, deg2rad, rad2deg.

One module for the functions of an angle and their inverses, since their derivatives are written with each other
(sin's is cos, tan's is its own output). Each backward is PyTorch's formula, in PyTorch's order of operations
where that decides the last bits (arcsin's ``1 - x * x``, sinc's quotient), written with :mod:`opreg.numpy` and
operators so that it composes to any order. At the ends of a domain the derivative is what the formula gives,
as in PyTorch: arcsin and arccos at +-1 are infinite (NaN where the gradient flowing in is 0), hypot's at (0, 0)
is NaN; arctan2's at (0, 0) is 0 and sinc's at 0 is 0 (its limit), torch's choices.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Register, Sample, away_from_zero, constant, hookimpl


def _unit_interval(rng: np.random.Generator) -> list[Sample]:
    """Inside (-1, 1), away from the ends where the derivative grows without bound."""
    return [Sample(rng.uniform(-0.9, 0.9, (3, 4)))]


def _pair_samples(rng: np.random.Generator) -> list[Sample]:
    """Same shapes and both ways of broadcasting, away from (0, 0)."""
    return [
        Sample(away_from_zero(rng, (3, 4), 0.3), away_from_zero(rng, (3, 4), 0.3)),
        Sample(away_from_zero(rng, (3, 1), 0.3), away_from_zero(rng, (4,), 0.3)),
    ]


def _arcsin_backward(g: Any, x: Any) -> tuple[Any]:
    with np.errstate(divide="ignore"):  # +-1: an infinite derivative, as torch's
        return (g / onp.sqrt(1 - x * x),)


def _arccos_backward(g: Any, x: Any) -> tuple[Any]:
    with np.errstate(divide="ignore"):
        return (-g / onp.sqrt(1 - x * x),)


def _arctan2_backward(g: Any, y: Any, x: Any) -> tuple[Any, Any]:
    """d atan2(y, x) = (x dy - y dx) / (x^2 + y^2); 0 where x^2 + y^2 is 0 (at the origin, or where the squares
    underflow), as torch's: its 1 / (x^2 + y^2) is taken as 0 there.

    The squares are taken in the dtype forward computed in (a float32 y beside a float64 x is float64 there), not
    in each input's own: a float32 square of 1e-37 would be 0.
    """
    common = np.result_type(y.dtype, x.dtype)
    y, x = (v if v.dtype == common else v * np.ones((), common) for v in (y, x))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        denominator = x * x + y * y
        reciprocal = onp.where(constant(denominator) == 0, 0.0, 1 / denominator)  # torch's order, to the last bit
        return g * x * reciprocal, g * -y * reciprocal


def _hypot_backward(g: Any, a: Any, b: Any, *, output: Any) -> tuple[Any, Any]:
    """a / hypot and b / hypot, from the output (no square to overflow); NaN at (0, 0), as torch's."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return g * a / output, g * b / output


def _sinc_backward(g: Any, x: Any) -> tuple[Any]:
    """(pi x cos(pi x) - sin(pi x)) / (pi x^2), torch's formula in torch's order; 0 where pi x^2 is 0 (at 0, the
    limit, and where x^2 underflows), as torch's."""
    with np.errstate(divide="ignore", invalid="ignore", under="ignore"):
        pix = x * math.pi
        squared = x * x * math.pi
        slope = (pix * onp.cos(pix) - onp.sin(pix)) / squared
        return (onp.where(constant(squared) == 0, 0.0, g * slope),)


def _sinc_samples(rng: np.random.Generator) -> list[Sample]:
    return [Sample(away_from_zero(rng, (3, 4), 0.2) * 2)]


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="sin",
        inputs=("x",),
        forward=np.sin,
        backward=lambda g, x: (g * onp.cos(x),),
        jvp=lambda t, x: t[0] * onp.cos(x),
        doc="Sine, elementwise.",
        numpy="sin",
        reference="torch.sin",
        domain=(-10.0, 10.0),
        batch="elementwise",
    )
    register(
        name="cos",
        inputs=("x",),
        forward=np.cos,
        backward=lambda g, x: (g * -onp.sin(x),),
        jvp=lambda t, x: t[0] * -onp.sin(x),
        doc="Cosine, elementwise.",
        numpy="cos",
        reference="torch.cos",
        domain=(-10.0, 10.0),
        batch="elementwise",
    )
    register(
        name="tan",
        inputs=("x",),
        forward=np.tan,
        backward=lambda g, x, *, output: (g * (1 + output * output),),
        jvp=lambda t, x, *, output: t[0] * (1 + output * output),
        sample_inputs=lambda rng: [Sample(rng.uniform(-1.2, 1.2, (3, 4)))],
        doc="Tangent; the derivative 1 + tan^2 is taken from the output. Defined between the poles at +-pi/2.",
        numpy="tan",
        reference="torch.tan",
        domain=(-1.5, 1.5),
        batch="elementwise",
    )
    register(
        name="arcsin",
        inputs=("x",),
        forward=np.arcsin,
        backward=_arcsin_backward,
        sample_inputs=_unit_interval,
        doc="Inverse sine on [-1, 1]; the derivative is infinite at +-1, as in torch.",
        numpy="arcsin",
        reference="torch.asin",
        domain=(-1.0, 1.0),
        batch="elementwise",
    )
    register(
        name="arccos",
        inputs=("x",),
        forward=np.arccos,
        backward=_arccos_backward,
        sample_inputs=_unit_interval,
        doc="Inverse cosine on [-1, 1]; the derivative is -infinite at +-1, as in torch.",
        numpy="arccos",
        reference="torch.acos",
        domain=(-1.0, 1.0),
        batch="elementwise",
    )
    register(
        name="arctan",
        inputs=("x",),
        forward=np.arctan,
        backward=lambda g, x: (g / (1 + x * x),),
        jvp=lambda t, x: t[0] / (1 + x * x),
        doc="Inverse tangent.",
        numpy="arctan",
        reference="torch.atan",
        batch="elementwise",
    )
    register(
        name="arctan2",
        inputs=("y", "x"),
        forward=np.arctan2,
        backward=_arctan2_backward,
        sample_inputs=_pair_samples,
        doc="The angle of the point (x, y), broadcasting; its gradient is 0 at (0, 0), as in torch.",
        numpy="arctan2",
        reference="torch.atan2",
        batch="elementwise",
    )
    register(
        name="hypot",
        inputs=("a", "b"),
        forward=np.hypot,
        backward=_hypot_backward,
        sample_inputs=_pair_samples,
        doc="sqrt(a^2 + b^2) without overflow, broadcasting; its gradient is NaN at (0, 0), as in torch.",
        numpy="hypot",
        reference="torch.hypot",
        batch="elementwise",
    )
    register(
        name="sinc",
        inputs=("x",),
        forward=np.sinc,
        backward=_sinc_backward,
        sample_inputs=_sinc_samples,
        doc="sin(pi x) / (pi x), 1 at 0 (NumPy's normalized sinc); the derivative at 0 is 0, its limit.",
        numpy="sinc",
        reference="torch.sinc",
        domain=(-4.0, 4.0),
        batch="elementwise",
    )
    register(
        name="deg2rad",
        inputs=("x",),
        forward=np.deg2rad,
        backward=lambda g, x: (g * (math.pi / 180),),
        jvp=lambda t, x: t[0] * (math.pi / 180),
        doc="Degrees to radians: x * pi / 180.",
        numpy=("deg2rad", "radians"),
        reference="torch.deg2rad",
        batch="elementwise",
    )
    register(
        name="rad2deg",
        inputs=("x",),
        forward=np.rad2deg,
        backward=lambda g, x: (g * (180 / math.pi),),
        jvp=lambda t, x: t[0] * (180 / math.pi),
        doc="Radians to degrees: x * 180 / pi.",
        numpy=("rad2deg", "degrees"),
        reference="torch.rad2deg",
        batch="elementwise",
    )
