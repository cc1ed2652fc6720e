"""Elementwise functions: log, exp, relu, sigmoid, tanh.

exp, sigmoid and tanh declare ``backward_uses_output``: their derivatives are cheapest in terms of the output,
which the engine passes to backward instead of having it recomputed. All but relu's backwards are expressions in
operators alone and declare ``differentiable_backward`` (relu's compares, which Tensors do not record).
"""

from __future__ import annotations

import numpy as np

from opreg import Register, hookimpl


def _positive(rng: np.random.Generator) -> tuple[np.ndarray]:
    return (rng.uniform(0.5, 2.0, size=(3, 4)),)


def _off_kink(rng: np.random.Generator) -> tuple[np.ndarray]:
    """Values in +-[0.1, 2]: finite differences straddling relu's kink at 0 would be meaningless."""
    return (rng.choice([-1.0, 1.0], size=(3, 4)) * rng.uniform(0.1, 2.0, size=(3, 4)),)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), computed as exp(-log(1 + exp(-x))) so that no intermediate overflows."""
    return np.asarray(np.exp(-np.logaddexp(0, -x)))  # asarray: a 0-d x would give a NumPy scalar


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="log",
        inputs=("x",),
        forward=np.log,
        backward=lambda g, x: (g / x,),
        sample_inputs=_positive,
        doc="Natural logarithm; defined for x > 0.",
        differentiable_backward=True,
    )
    register(
        name="exp",
        inputs=("x",),
        forward=np.exp,
        backward=lambda g, x, *, output: (g * output,),
        backward_uses_output=True,
        doc="e ** x.",
        differentiable_backward=True,
    )
    register(
        name="relu",
        inputs=("x",),
        forward=lambda x: np.maximum(x, 0),
        backward=lambda g, x: (g * (x > 0),),
        sample_inputs=_off_kink,
        doc="max(x, 0); the gradient at exactly 0 is 0, as in PyTorch.",
    )
    register(
        name="sigmoid",
        inputs=("x",),
        forward=_sigmoid,
        backward=lambda g, x, *, output: (g * output * (1 - output),),
        backward_uses_output=True,
        doc="1 / (1 + exp(-x)), without overflow for large |x|.",
        differentiable_backward=True,
    )
    register(
        name="tanh",
        inputs=("x",),
        forward=np.tanh,
        backward=lambda g, x, *, output: (g * (1 - output * output),),
        backward_uses_output=True,
        doc="Hyperbolic tangent.",
        differentiable_backward=True,
    )
