"""Powers and roots with a fixed exponent: sqrt, cbrt, square, reciprocal (pow, with a differentiable exponent,
is arithmetic.py's).

Each derivative is taken from the output where that is exact and cheaper than recomputing a root: sqrt's is
``1 / (2 output)``, cbrt's ``1 / (3 output^2)``, reciprocal's ``-output^2``. At 0 these are what the formula gives,
as in PyTorch: sqrt's derivative is +inf, reciprocal's output and derivative are infinite, cbrt's derivative is
+inf (its true value; torch, which has no cbrt, gives NaN through ``sign(x) * |x| ** (1/3)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from opreg.plugin import Register, Sample, away_from_zero, hookimpl, positive


def _sqrt_backward(g: Any, x: Any, *, output: Any) -> tuple[Any]:
    with np.errstate(divide="ignore"):  # x == 0: an infinite derivative, as torch's
        return (g / (2 * output),)


def _cbrt_backward(g: Any, x: Any, *, output: Any) -> tuple[Any]:
    with np.errstate(divide="ignore"):
        return (g / (3 * (output * output)),)


def _cbrt_reference(torch: Any) -> Any:
    """torch has no cbrt: the real cube root as sign(x) |x|^(1/3), the same function away from 0."""
    return lambda x: torch.sign(x) * torch.abs(x) ** (1 / 3)


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="sqrt",
        inputs=("x",),
        forward=np.sqrt,
        backward=_sqrt_backward,
        sample_inputs=lambda rng: [Sample(positive(rng))],
        doc="Square root; the gradient 1 / (2 sqrt(x)) is taken from the output, and is inf at 0 as in torch.",
        numpy="sqrt",
        reference="torch.sqrt",
        domain=(0.0, 1e4),
        batch="elementwise",
    )
    register(
        name="cbrt",
        inputs=("x",),
        forward=np.cbrt,
        backward=_cbrt_backward,
        sample_inputs=lambda rng: [Sample(away_from_zero(rng, (3, 4), 0.3))],
        doc="Real cube root, of negative x too; the gradient 1 / (3 cbrt(x)^2) is taken from the output, +inf at 0.",
        numpy="cbrt",
        reference=_cbrt_reference,
        domain=(2.0**-20, 1e4),
        batch="elementwise",
    )
    register(
        name="square",
        inputs=("x",),
        forward=np.square,
        backward=lambda g, x: (g * (2 * x),),
        jvp=lambda t, x: t[0] * (2 * x),
        doc="x * x.",
        numpy="square",
        reference="torch.square",
        domain=(-100.0, 100.0),
        batch="elementwise",
    )
    register(
        name="reciprocal",
        inputs=("x",),
        forward=np.reciprocal,
        backward=lambda g, x, *, output: (g * -(output * output),),
        jvp=lambda t, x, *, output: t[0] * -(output * output),
        sample_inputs=lambda rng: [Sample(away_from_zero(rng, (3, 4), 0.5))],
        doc="1 / x; the gradient -1 / x^2 is taken from the output. Infinite at 0, as torch's.",
        numpy="reciprocal",
        reference="torch.reciprocal",
        batch="elementwise",
    )
