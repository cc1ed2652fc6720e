"""Elementwise arithmetic: add, sub, mul, div, neg, pow. Inputs broadcast; the engine sums gradients back.

All but pow's backwards are expressions in operators alone, so they run on Tensors too and declare
``differentiable_backward``: second derivatives go through them. pow's needs NumPy's where and log.
"""

from __future__ import annotations

import numpy as np

from opreg import Register, Sample, hookimpl


def _away_from_zero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values in +-[0.5, 2]: a divisor far enough from 0 that finite differences stay accurate."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.5, 2.0, size=shape)


def _pow_backward(g: np.ndarray, base: np.ndarray, exponent: np.ndarray, *, output: np.ndarray) -> tuple:
    """torch's pow derivatives, special cases included.

    d/dbase = exponent * base^(exponent - 1), 0 where exponent == 0 (not 0 * 0^-1 = nan at base 0);
    d/dexponent = base^exponent * log(base), 0 where base == 0 and exponent >= 0 (the limit from base > 0).
    The discarded branches of np.where divide by 0 or take log(0): those warnings are silenced, as torch's are.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        grad_base = np.where(exponent == 0, 0.0, g * exponent * np.power(base, exponent - 1))
        grad_exponent = g * np.where((base == 0) & (exponent >= 0), 0.0, output * np.log(base))
    return grad_base, grad_exponent


def _pow_samples(rng: np.random.Generator) -> list[Sample]:
    """A positive base (log(base) and base^(e - 1) are smooth there); same shapes and both broadcasting ways."""
    return [
        Sample(rng.uniform(0.5, 2.0, size=(3, 4)), rng.standard_normal((3, 4))),
        Sample(rng.uniform(0.5, 2.0, size=(3, 4)), rng.standard_normal((4,))),
        Sample(rng.uniform(0.5, 2.0, size=(3, 1)), rng.standard_normal((2, 1, 4))),
    ]


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="add",
        inputs=("a", "b"),
        forward=lambda a, b: a + b,
        backward=lambda g, a, b: (g, g),
        doc="a + b, broadcasting.",
        differentiable_backward=True,
    )
    register(
        name="sub",
        inputs=("a", "b"),
        forward=lambda a, b: a - b,
        backward=lambda g, a, b: (g, -g),
        doc="a - b, broadcasting.",
        differentiable_backward=True,
    )
    register(
        name="mul",
        inputs=("a", "b"),
        forward=lambda a, b: a * b,
        backward=lambda g, a, b: (g * b, g * a),
        doc="a * b elementwise, broadcasting.",
        differentiable_backward=True,
    )
    register(
        name="div",
        inputs=("a", "b"),
        forward=lambda a, b: a / b,
        backward=lambda g, a, b, *, output: (g / b, -g * output / b),  # not a / (b * b): b * b over/underflows
        backward_uses_output=True,
        sample_inputs=lambda rng: (rng.standard_normal((3, 4)), _away_from_zero(rng, (3, 4))),
        doc="a / b elementwise, broadcasting.",
        differentiable_backward=True,
    )
    register(
        name="neg",
        inputs=("x",),
        forward=lambda x: -x,
        backward=lambda g, x: (-g,),
        doc="-x.",
        differentiable_backward=True,
    )
    register(
        name="pow",
        inputs=("base", "exponent"),
        forward=np.power,
        backward=_pow_backward,
        backward_uses_output=True,
        sample_inputs=_pow_samples,
        doc="base ** exponent, broadcasting, both differentiable; torch's gradients at base 0 and exponent 0.",
    )
