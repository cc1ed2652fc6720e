"""Elementwise arithmetic: add, sub, mul, div, neg. Inputs broadcast; the engine sums gradients back."""

from __future__ import annotations

import numpy as np

from opreg import Register, hookimpl


def _away_from_zero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values in +-[0.5, 2]: a divisor far enough from 0 that finite differences stay accurate."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.5, 2.0, size=shape)


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="add",
        inputs=("a", "b"),
        forward=lambda a, b: a + b,
        backward=lambda g, a, b: (g, g),
        doc="a + b, broadcasting.",
    )
    register(
        name="sub",
        inputs=("a", "b"),
        forward=lambda a, b: a - b,
        backward=lambda g, a, b: (g, -g),
        doc="a - b, broadcasting.",
    )
    register(
        name="mul",
        inputs=("a", "b"),
        forward=lambda a, b: a * b,
        backward=lambda g, a, b: (g * b, g * a),
        doc="a * b elementwise, broadcasting.",
    )
    register(
        name="div",
        inputs=("a", "b"),
        forward=lambda a, b: a / b,
        backward=lambda g, a, b: (g / b, -g * a / (b * b)),
        sample_inputs=lambda rng: (rng.standard_normal((3, 4)), _away_from_zero(rng, (3, 4))),
        doc="a / b elementwise, broadcasting.",
    )
    register(
        name="neg",
        inputs=("x",),
        forward=lambda x: -x,
        backward=lambda g, x: (-g,),
        doc="-x.",
    )
