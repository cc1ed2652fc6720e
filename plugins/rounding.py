"""Step functions: floor, ceil, trunc, round, sign, and the remainders mod (NumPy's remainder) and fmod.

The first five are constant between their jumps, so their gradient is zero everywhere, at the jumps too, as
PyTorch's: a zero gradient, not a missing one, so that a Tensor's ``.grad`` is zeros as torch's is. It is built
with ``where`` on a constant mask rather than as ``g * 0``, so that it stays 0 where the incoming gradient is
infinite or NaN (torch's is zeros there too), and it composes to any order.

The remainders are ``a - b * q`` with a piecewise-constant quotient ``q``: ``floor(a / b)`` for mod (the result
takes b's sign, as Python's ``%``), ``trunc(a / b)`` for fmod (a's sign, as C's). Their gradients are PyTorch's,
g for a and ``-g * q`` for b; ``q`` is computed from the inputs' values as a constant (its derivative is 0).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Register, Sample, away_from_zero, constant, hookimpl


def _zero_gradient(g: Any, x: Any) -> tuple[Any]:
    """Zeros of x's shape: 0 even where g is inf or NaN."""
    return (onp.where(np.zeros(x.shape, dtype=bool), g, 0.0),)


def _round(x: np.ndarray, *, decimals: int = 0) -> np.ndarray:
    """Round half to even, to ``decimals`` decimal places (negative: tens, hundreds), as np.round and torch.round."""
    return np.asarray(np.round(x, decimals))


def _remainder_backward(g: Any, a: Any, b: Any) -> tuple[Any, Any]:
    with np.errstate(divide="ignore", invalid="ignore"):  # b == 0: NaN, as torch's
        quotient = np.floor_divide(constant(a), constant(b))
    return g, -g * quotient


def _fmod_backward(g: Any, a: Any, b: Any) -> tuple[Any, Any]:
    with np.errstate(divide="ignore", invalid="ignore"):
        quotient = np.trunc(constant(a) / constant(b))
    return g, -g * quotient


def _steps(rng: np.random.Generator) -> list[Sample]:
    """Values off the jumps (finite differences across one would be 1 / eps)."""
    return [Sample(np.floor(rng.uniform(-4, 4, (3, 4))) + rng.uniform(0.1, 0.4, (3, 4)))]


def _round_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample(np.floor(rng.uniform(-4, 4, (3, 4))) + rng.uniform(0.1, 0.4, (3, 4))),
        Sample(rng.uniform(-40, 40, (3, 4)), decimals=-1),
        Sample(rng.uniform(-4, 4, (3, 4)), decimals=2),
    ]


def _remainder_samples(rng: np.random.Generator) -> list[Sample]:
    """Dividends of either sign, several periods of the divisor, with broadcasting; divisors of either sign."""
    return [
        Sample(rng.uniform(-6, 6, (3, 4)), away_from_zero(rng, (3, 4), 0.5)),
        Sample(rng.uniform(-6, 6, (3, 4)), away_from_zero(rng, (4,), 0.5)),
    ]


@hookimpl
def opreg_register_ops(register: Register) -> None:
    for name, forward, reference, doc in (
        ("floor", np.floor, "torch.floor", "The largest integer <= x"),
        ("ceil", np.ceil, "torch.ceil", "The smallest integer >= x"),
        ("trunc", np.trunc, "torch.trunc", "x rounded toward 0"),
        ("rint", np.rint, "torch.round", "x rounded to the nearest integer, half to even"),
    ):
        register(
            name=name,
            inputs=("x",),
            forward=forward,
            backward=_zero_gradient,
            sample_inputs=_steps,
            doc=f"{doc}; its gradient is 0 everywhere, as torch's.",
            numpy=name,
            reference=reference,
            batch="elementwise",
        )
    register(
        name="round",
        inputs=("x",),
        forward=_round,
        backward=_zero_gradient,
        sample_inputs=_round_samples,
        doc="x rounded half to even to `decimals` places; its gradient is 0 everywhere, as torch's.",
        numpy=("round", "around"),
        reference="torch.round",
        batch="elementwise",
    )
    register(
        name="sign",
        inputs=("x",),
        forward=np.sign,
        backward=_zero_gradient,
        sample_inputs=lambda rng: [Sample(away_from_zero(rng))],
        doc="-1, 0 or 1 by the sign of x (0 for 0.0 and -0.0); its gradient is 0 everywhere, as torch's.",
        numpy="sign",
        reference="torch.sign",
        batch="elementwise",
    )
    register(
        name="mod",
        inputs=("a", "b"),
        forward=np.remainder,
        backward=_remainder_backward,
        sample_inputs=_remainder_samples,
        doc="a - b * floor(a / b), with b's sign (Python's %); gradients g and -g * floor(a / b), as torch's.",
        numpy=("remainder", "mod"),
        reference="torch.remainder",
        batch="elementwise",
    )
    register(
        name="fmod",
        inputs=("a", "b"),
        forward=np.fmod,
        backward=_fmod_backward,
        sample_inputs=_remainder_samples,
        doc="a - b * trunc(a / b), with a's sign (C's fmod); gradients g and -g * trunc(a / b), as torch's.",
        numpy="fmod",
        reference="torch.fmod",
        batch="elementwise",
    )
