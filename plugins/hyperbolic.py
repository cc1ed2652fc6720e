"""Hyperbolic functions and their inverses: sinh, cosh, arcsinh, arccosh, arctanh (tanh, an activation, lives in
elementwise.py beside sigmoid).

Their derivatives are each other (sinh' = cosh) or algebraic in x, so each backward is one line of
:mod:`opreg.numpy` and operators, PyTorch's formula in PyTorch's order of operations, and composes to any order.
arccosh is defined for x >= 1 and arctanh on (-1, 1): at the ends (x == 1, x == +-1) the derivative is infinite,
as torch's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Register, Sample, hookimpl


def _arccosh_backward(g: Any, x: Any) -> tuple[Any]:
    with np.errstate(divide="ignore"):  # x == 1: an infinite derivative, as torch's
        return (g / onp.sqrt(x * x - 1),)


def _arctanh_backward(g: Any, x: Any) -> tuple[Any]:
    with np.errstate(divide="ignore"):
        return (g / (1 - x * x),)


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="sinh",
        inputs=("x",),
        forward=np.sinh,
        backward=lambda g, x: (g * onp.cosh(x),),
        jvp=lambda t, x: t[0] * onp.cosh(x),
        doc="Hyperbolic sine.",
        numpy="sinh",
        reference="torch.sinh",
        domain=(-5.0, 5.0),
        batch="elementwise",
    )
    register(
        name="cosh",
        inputs=("x",),
        forward=np.cosh,
        backward=lambda g, x: (g * onp.sinh(x),),
        jvp=lambda t, x: t[0] * onp.sinh(x),
        doc="Hyperbolic cosine.",
        numpy="cosh",
        reference="torch.cosh",
        domain=(-5.0, 5.0),
        batch="elementwise",
    )
    register(
        name="arcsinh",
        inputs=("x",),
        forward=np.arcsinh,
        backward=lambda g, x: (g / onp.sqrt(x * x + 1),),
        jvp=lambda t, x: t[0] / onp.sqrt(x * x + 1),
        doc="Inverse hyperbolic sine.",
        numpy="arcsinh",
        reference="torch.asinh",
        domain=(-100.0, 100.0),
        batch="elementwise",
    )
    register(
        name="arccosh",
        inputs=("x",),
        forward=np.arccosh,
        backward=_arccosh_backward,
        sample_inputs=lambda rng: [Sample(rng.uniform(1.2, 3.0, (3, 4)))],
        doc="Inverse hyperbolic cosine, for x >= 1; the derivative is infinite at 1, as in torch.",
        numpy="arccosh",
        reference="torch.acosh",
        domain=(1.0, 100.0),
        batch="elementwise",
    )
    register(
        name="arctanh",
        inputs=("x",),
        forward=np.arctanh,
        backward=_arctanh_backward,
        sample_inputs=lambda rng: [Sample(rng.uniform(-0.9, 0.9, (3, 4)))],
        doc="Inverse hyperbolic tangent on (-1, 1); infinite (with an infinite derivative) at +-1, as in torch.",
        numpy="arctanh",
        reference="torch.atanh",
        domain=(-0.99, 0.99),
        batch="elementwise",
    )
