"""``select``: each element from the first choice whose condition holds there, else from ``default``, as
np.select(condlist, choicelist, default).

A variadic op, ``inputs=("condlist", "default", "*choicelist")``: the conditions are one input (NumPy's list of
boolean arrays, stacked; nonzero numbers count as true, as ``where``'s condition does), a constant with no
gradient; ``default`` and each choice are differentiable, and each gets ``g`` where it was picked, 0 elsewhere,
summed back to its shape where it was broadcast. ``np.select(conds, choices, default)`` on Tensors maps onto it by
NumPy's parameter names. Conditions of different shapes cannot be stacked: broadcast them first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Register, Sample, constant, hookimpl


def _picked(condlist: Any, count: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Where each choice is picked (its condition holds, no earlier one does), and where the default is: masks,
    constants."""
    conditions = np.asarray(constant(condlist)) != 0
    if len(conditions) != count:
        raise ValueError(f"select got {len(conditions)} conditions for {count} choices; they must pair up")
    masks = []
    taken = np.zeros(conditions.shape[1:], bool)
    for condition in conditions:  # 0-d conditions iterate as NumPy scalars: asarray keeps them arrays
        masks.append(np.asarray(condition & ~taken))
        taken = taken | condition
    return masks, np.asarray(~taken)


def _select(condlist: np.ndarray, default: np.ndarray, *choicelist: np.ndarray) -> np.ndarray:
    """The first choice whose condition holds at each element, else default."""
    _picked(condlist, len(choicelist))
    conditions = [np.asarray(c) != 0 for c in condlist]
    return np.asarray(np.select(conditions, list(choicelist), default))


def _select_backward(g: Any, condlist: Any, default: Any, *choicelist: Any) -> tuple[Any, ...]:
    masks, rest = _picked(condlist, len(choicelist))
    return (None, onp.where(rest, g, 0.0), *(onp.where(mask, g, 0.0) for mask in masks))


def _samples(rng: np.random.Generator) -> list[Sample]:
    n = rng.standard_normal
    x = n((3, 4))
    return [
        Sample(np.stack([x > 0.5, x < -0.5]), n((3, 4)), n((3, 4)), n((3, 4))),
        Sample(np.stack([x > 0, x > -1, x > -2]), n(()), n((3, 4)), n((1, 4)), n(4)),
        Sample((x > 0)[None], n((3, 1)), n((3, 4))),
    ]


def _torch_select(torch: Any) -> Any:
    def select(condlist: Any, default: Any, *choicelist: Any) -> Any:
        out = default
        for condition, choice in reversed(list(zip(condlist, choicelist, strict=True))):
            out = torch.where(condition != 0, choice, out)
        shape = torch.broadcast_shapes(*(c.shape for c in condlist), default.shape, *(c.shape for c in choicelist))
        return out.expand(shape) if out.shape != shape else out

    return select


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="select",
        inputs=("condlist", "default", "*choicelist"),
        differentiable=("default", "choicelist"),
        forward=_select,
        backward=_select_backward,
        sample_inputs=_samples,
        numpy="select",
        reference=_torch_select,
    )
