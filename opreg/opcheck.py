"""Checking an op's backward against central finite differences, with a report precise enough to act on.

The check runs the op through the engine, as a user would, so broadcasting reduction and gradient routing are
checked too. Tolerances are PyTorch ``gradcheck``'s: ``|analytic - numeric| <= atol + rtol * |numeric|``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from opreg.engine import Autograd
from opreg.errors import GradcheckError
from opreg.registry import OpDef, get_registry


def numeric_gradient(
    op: OpDef, inputs: Sequence[np.ndarray], grad_output: np.ndarray, position: int, eps: float
) -> np.ndarray:
    """Central finite differences of ``sum(grad_output * forward(*inputs))`` with respect to input ``position``."""
    perturbed = [np.array(x, dtype=np.float64) for x in inputs]
    target = perturbed[position]
    gradient = np.zeros_like(target)
    for index in np.ndindex(target.shape):
        original = target[index]
        target[index] = original + eps
        plus = np.sum(grad_output * op.forward(*perturbed))
        target[index] = original - eps
        minus = np.sum(grad_output * op.forward(*perturbed))
        target[index] = original
        gradient[index] = (plus - minus) / (2 * eps)
    return gradient


def analytic_gradients(op: OpDef, inputs: Sequence[np.ndarray], grad_output: np.ndarray) -> list[np.ndarray | None]:
    """The gradient of each input as the engine computes it from the op's backward (``None``: not differentiable)."""
    engine = Autograd()
    engine.apply(op.name, *inputs)
    engine.backward(grad_output)
    return [
        engine.gradient_buffer.get_param(x) if differentiable else None
        for x, differentiable in zip(inputs, op.differentiable, strict=True)
    ]


def check_op(
    op: OpDef | str,
    *,
    seed: int = 0,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
) -> None:
    """Compare ``op``'s analytic gradients with finite differences on its declared sample inputs, in float64.

    Raises :class:`GradcheckError` naming the op, its plugin, the input, the largest absolute and relative
    errors, the worst element's index and both values there.
    """
    if isinstance(op, str):
        op = get_registry()[op]
    rng = np.random.default_rng(seed)
    inputs = [np.array(x, dtype=np.float64) for x in op.sample_inputs(rng)]
    output = np.asarray(op.forward(*inputs))
    grad_output = rng.standard_normal(output.shape)
    for position, analytic in enumerate(analytic_gradients(op, inputs, grad_output)):
        if analytic is None:
            continue
        numeric = numeric_gradient(op, inputs, grad_output, position, eps)
        error = np.abs(analytic - numeric)
        excess = error - (atol + rtol * np.abs(numeric))
        if excess.size and excess.max() > 0:
            worst = tuple(int(i) for i in np.unravel_index(np.argmax(excess), excess.shape))
            relative = error / np.maximum(np.abs(numeric), np.finfo(np.float64).tiny)
            raise GradcheckError(
                f"{op.describe()}: the gradient of {op.describe_input(position)} disagrees with finite differences: "
                f"max abs error {error.max():.3g}, max rel error {relative.max():.3g}; worst at index "
                f"{worst}: analytic {float(analytic[worst])!r}, numeric {float(numeric[worst])!r} "
                f"(eps {eps}, atol {atol}, rtol {rtol})"
            )
