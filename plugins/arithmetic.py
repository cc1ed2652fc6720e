"""Elementwise arithmetic: add, sub, mul, div, neg, pow, and where. Inputs broadcast; the engine sums gradients
back to each input's shape.

Every backward is written with operators and :mod:`opreg.numpy`, so it runs on Tensors too and can be
differentiated again, to any order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Register, Sample, away_from_zero, fit_into, hookimpl, positive, ufunc_into


def _pow_backward(g: Any, base: Any, exponent: Any, *, output: Any) -> tuple[Any, Any]:
    """torch's pow derivatives, special cases included.

    d/dbase = exponent * base^(exponent - 1), 0 where base == 0 and exponent == 0 (not 0 * 0^-1 = nan);
    d/dexponent = base^exponent * log(base), 0 where base == 0 and exponent >= 0 (the limit from base > 0).
    Each special case puts a base of 1 in place of the 0 before the formula (whose other factor, 0, then gives
    0), rather than a ``where`` choosing 0 after it: that would do for this derivative but not the next, whose
    chain rule multiplies the discarded infinity by 0 (torch's NaN). So x ** 0 at 0 and 0 ** y in y have every
    derivative 0, as they are constant. Where base == 0 and both inputs are differentiable, the mixed second
    derivative d/dbase d/dexponent, infinite or undefined there, comes out 0 (torch's is NaN).
    """
    zero = base == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        grad_base = g * exponent * onp.power(onp.where(zero & (exponent == 0), 1.0, base), exponent - 1)
        grad_exponent = g * output * onp.log(onp.where(zero & (exponent >= 0), 1.0, base))
    return grad_base, grad_exponent


def _pow_samples(rng: np.random.Generator) -> list[Sample]:
    """A positive base (log(base) and base^(e - 1) are smooth there); same shapes and both broadcasting ways."""
    return [
        Sample(positive(rng, (3, 4)), rng.standard_normal((3, 4))),
        Sample(positive(rng, (3, 4)), rng.standard_normal((4,))),
        Sample(positive(rng, (3, 1)), rng.standard_normal((2, 1, 4))),
    ]


def _where_samples(rng: np.random.Generator) -> list[Sample]:
    """A mask of either kind beside same-shaped and broadcast operands."""
    return [
        Sample(rng.random((3, 4)) > 0.5, rng.standard_normal((3, 4)), rng.standard_normal((3, 4))),
        Sample(rng.random((3, 1)) > 0.5, rng.standard_normal((4,)), rng.standard_normal((3, 4))),
    ]


def _add_backward_out(outs: tuple[Any, Any], g: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    for out in outs:
        if out is not None:
            fit_into(out, g)


def _sub_backward_out(outs: tuple[Any, Any], g: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    if outs[0] is not None:
        fit_into(outs[0], g)
    if outs[1] is not None:
        ufunc_into(outs[1], np.negative, g)


def _mul_backward_out(outs: tuple[Any, Any], g: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    if outs[0] is not None:
        ufunc_into(outs[0], np.multiply, g, b)
    if outs[1] is not None:
        ufunc_into(outs[1], np.multiply, g, a)


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="add",
        inputs=("a", "b"),
        forward=np.add,
        forward_out=lambda out, a, b: np.add(a, b, out=out),
        backward_out=_add_backward_out,
        backward=lambda g, a, b: (g, g),
        jvp=lambda t, a, b: t[0] + t[1],
        doc="a + b, broadcasting.",
        numpy="add",
        reference="torch.add",
        batch="elementwise",
    )
    register(
        name="sub",
        inputs=("a", "b"),
        forward=np.subtract,
        forward_out=lambda out, a, b: np.subtract(a, b, out=out),
        backward_out=_sub_backward_out,
        backward=lambda g, a, b: (g, -g),
        jvp=lambda t, a, b: t[0] - t[1],
        doc="a - b, broadcasting.",
        numpy="subtract",
        reference="torch.sub",
        batch="elementwise",
    )
    register(
        name="mul",
        inputs=("a", "b"),
        forward=np.multiply,
        forward_out=lambda out, a, b: np.multiply(a, b, out=out),
        backward_out=_mul_backward_out,
        backward=lambda g, a, b: (g * b, g * a),
        jvp=lambda t, a, b: t[0] * b + a * t[1],
        doc="a * b elementwise, broadcasting.",
        numpy="multiply",
        reference="torch.mul",
        batch="elementwise",
    )
    register(
        name="div",
        inputs=("a", "b"),
        forward=np.divide,
        backward=lambda g, a, b, *, output: (g / b, -g * output / b),  # not a / (b * b): b * b over/underflows
        jvp=lambda t, a, b, *, output: (t[0] - output * t[1]) / b,
        sample_inputs=lambda rng: (rng.standard_normal((3, 4)), away_from_zero(rng, (3, 4), low=0.5)),
        doc="a / b elementwise, broadcasting.",
        numpy=("divide", "true_divide"),
        reference="torch.div",
        domain={"b": (0.5, 2.0)},
        batch="elementwise",
    )
    register(
        name="neg",
        inputs=("x",),
        forward=np.negative,
        backward=lambda g, x: (-g,),
        jvp=lambda t, x: -t[0],
        doc="-x.",
        numpy="negative",
        reference="torch.neg",
        batch="elementwise",
    )
    register(
        name="positive",
        inputs=("x",),
        forward=np.positive,
        backward=lambda g, x: (g,),
        jvp=lambda t, x: t[0],
        doc="+x: a copy; opreg.func records it to give a transform's input a node of its own.",
        numpy="positive",
        reference="torch.positive",
        batch="elementwise",
    )
    register(
        name="pow",
        inputs=("base", "exponent"),
        forward=np.power,
        backward=_pow_backward,
        sample_inputs=_pow_samples,
        doc=(
            "base ** exponent, broadcasting, both differentiable; torch's gradients at base 0 and exponent 0, and "
            "the true second ones there."
        ),
        numpy="power",
        reference="torch.pow",
        domain={"base": (0.5, 2.0)},
        batch="elementwise",
    )
    register(
        name="where",
        inputs=("condition", "x", "y"),
        forward=np.where,
        backward=lambda g, condition, x, y: (None, onp.where(condition, g, 0.0), onp.where(condition, 0.0, g)),
        jvp=lambda t, condition, x, y: onp.where(condition, t[1], t[2]),
        differentiable=("x", "y"),
        sample_inputs=_where_samples,
        doc="x where condition holds, else y, broadcasting all three; condition gets no gradient.",
        numpy="where",
        reference=lambda torch: lambda condition, x, y: torch.where(condition != 0, x, y),
        batch="elementwise",
    )
