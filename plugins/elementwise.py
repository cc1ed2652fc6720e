"""Elementwise functions: log, exp, relu, sigmoid, tanh.

exp, sigmoid and tanh take ``output`` in backward: their derivatives are cheapest in terms of the output, which
the engine passes instead of having it recomputed. Every backward is written with operators alone (relu's mask
is a comparison, a constant), so each can be differentiated again.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Register, away_from_zero, hookimpl, positive


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), computed as exp(-log(1 + exp(-x))) so that no intermediate overflows."""
    return np.asarray(np.exp(-np.logaddexp(0, -x)))  # asarray: a 0-d x would give a NumPy scalar


def _exp_backward(g: Any, x: Any, *, output: Any) -> tuple[Any]:
    return (g * output,)


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="log",
        inputs=("x",),
        forward=np.log,
        backward=lambda g, x: (g / x,),
        jvp=lambda t, x: t[0] / x,
        sample_inputs=lambda rng: (positive(rng),),
        doc="Natural logarithm; defined for x > 0.",
        numpy="log",
        reference="torch.log",
        domain=(0.5, 2.0),
        batch="elementwise",
    )
    register(
        name="exp",
        inputs=("x",),
        forward=np.exp,
        backward=_exp_backward,
        jvp=lambda t, x, *, output: t[0] * output,
        doc="e ** x.",
        numpy="exp",
        reference="torch.exp",
        domain=(-5.0, 5.0),
        batch="elementwise",
    )
    register(
        name="relu",
        inputs=("x",),
        forward=lambda x: np.maximum(x, 0),
        # where, not g * (x > 0): a NaN or infinite gradient arriving where x <= 0 stops here, as PyTorch's
        backward=lambda g, x: (onp.where(x > 0, g, 0.0),),
        jvp=lambda t, x: onp.where(x > 0, t[0], 0.0),
        sample_inputs=lambda rng: (away_from_zero(rng),),
        doc="max(x, 0); the gradient at exactly 0 is 0, as in PyTorch.",
        reference="torch.relu",
        batch="elementwise",
    )
    register(
        name="sigmoid",
        inputs=("x",),
        forward=_sigmoid,
        backward=lambda g, x, *, output: (g * output * (1 - output),),
        jvp=lambda t, x, *, output: t[0] * output * (1 - output),
        doc="1 / (1 + exp(-x)), without overflow for large |x|.",
        reference="torch.sigmoid",
        batch="elementwise",
    )
    register(
        name="tanh",
        inputs=("x",),
        forward=np.tanh,
        backward=lambda g, x, *, output: (g * (1 - output * output),),
        jvp=lambda t, x, *, output: t[0] * (1 - output * output),
        doc="Hyperbolic tangent.",
        numpy="tanh",
        reference="torch.tanh",
        batch="elementwise",
    )
