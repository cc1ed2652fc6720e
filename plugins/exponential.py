"""Exponentials and logarithms beyond e's (exp and log, which the activations use, live in elementwise.py):
exp2, expm1, log2, log10, log1p, logaddexp, logaddexp2.

Each derivative is taken from the output where that is cheaper and exact (exp2's is ``output * ln 2``), and
written with :mod:`opreg.numpy` and operators so that it composes to any order. The logaddexp pair take torch's
``g / (1 + exp(b - a))``: accurate for inputs of any size (``b - a`` is exact for close inputs, where
``exp(a - output)`` would carry the rounding error of a large output), 0 where ``exp`` overflows, g where the other
input is -inf, and NaN only where both are the same infinity.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Register, Sample, hookimpl, positive

_LN2 = math.log(2.0)
_LN10 = math.log(10.0)


def _logaddexp_backward(g: Any, a: Any, b: Any) -> tuple[Any, Any]:
    """The softmax weights of a and b, 1 / (1 + exp(b - a)) and 1 / (1 + exp(a - b)), as torch's."""
    with np.errstate(over="ignore"):  # a weight of 0: exp(b - a) is inf where a is far below b
        return g / (1 + onp.exp(b - a)), g / (1 + onp.exp(a - b))


def _logaddexp2_backward(g: Any, a: Any, b: Any) -> tuple[Any, Any]:
    """As logaddexp's, in base 2: 1 / (1 + 2^(b - a)) and 1 / (1 + 2^(a - b)), as torch's."""
    with np.errstate(over="ignore"):
        return g / (1 + onp.exp2(b - a)), g / (1 + onp.exp2(a - b))


def _pair_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample(rng.standard_normal((3, 4)) * 3, rng.standard_normal((3, 4)) * 3),
        Sample(rng.standard_normal((3, 1)) * 3, rng.standard_normal((4,)) * 3),
    ]


def _log_samples(rng: np.random.Generator) -> list[Sample]:
    return [Sample(positive(rng))]


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="exp2",
        inputs=("x",),
        forward=np.exp2,
        backward=lambda g, x, *, output: (g * output * _LN2,),
        jvp=lambda t, x, *, output: t[0] * output * _LN2,
        doc="2 ** x; the derivative output * ln 2 is taken from the output.",
        numpy="exp2",
        reference="torch.exp2",
        domain=(-8.0, 8.0),
        batch="elementwise",
    )
    register(
        name="expm1",
        inputs=("x",),
        forward=np.expm1,
        backward=lambda g, x, *, output: (g * (output + 1),),
        jvp=lambda t, x, *, output: t[0] * (output + 1),
        doc="exp(x) - 1, accurate near 0; the derivative output + 1 is taken from the output.",
        numpy="expm1",
        reference="torch.expm1",
        domain=(-5.0, 5.0),
        batch="elementwise",
    )
    register(
        name="log2",
        inputs=("x",),
        forward=np.log2,
        backward=lambda g, x: (g / (x * _LN2),),
        jvp=lambda t, x: t[0] / (x * _LN2),
        sample_inputs=_log_samples,
        doc="Base-2 logarithm; defined for x > 0.",
        numpy="log2",
        reference="torch.log2",
        domain=(0.5, 2.0),
        batch="elementwise",
    )
    register(
        name="log10",
        inputs=("x",),
        forward=np.log10,
        backward=lambda g, x: (g / (x * _LN10),),
        jvp=lambda t, x: t[0] / (x * _LN10),
        sample_inputs=_log_samples,
        doc="Base-10 logarithm; defined for x > 0.",
        numpy="log10",
        reference="torch.log10",
        domain=(0.5, 2.0),
        batch="elementwise",
    )
    register(
        name="log1p",
        inputs=("x",),
        forward=np.log1p,
        backward=lambda g, x: (g / (x + 1),),
        jvp=lambda t, x: t[0] / (x + 1),
        sample_inputs=lambda rng: [Sample(rng.uniform(-0.5, 2.0, (3, 4)))],
        doc="log(1 + x), accurate near 0; defined for x > -1.",
        numpy="log1p",
        reference="torch.log1p",
        domain=(-0.5, 2.0),
        batch="elementwise",
    )
    register(
        name="logaddexp",
        inputs=("a", "b"),
        forward=np.logaddexp,
        backward=_logaddexp_backward,
        sample_inputs=_pair_samples,
        doc="log(exp(a) + exp(b)) without overflow, broadcasting.",
        numpy="logaddexp",
        reference="torch.logaddexp",
        batch="elementwise",
    )
    register(
        name="logaddexp2",
        inputs=("a", "b"),
        forward=np.logaddexp2,
        backward=_logaddexp2_backward,
        sample_inputs=_pair_samples,
        doc="log2(2^a + 2^b) without overflow, broadcasting.",
        numpy="logaddexp2",
        reference="torch.logaddexp2",
        batch="elementwise",
    )
