"""Splitting an array into pieces: split, array_split, hsplit, vsplit, dsplit, as NumPy's. Each is an op with a
starred output (``outputs=("*pieces",)``): forward returns as many pieces as the split makes, the Tensors of all of
them share one graph node, and backward, given each piece's gradient (zeros for a piece no gradient reached), joins
them back with ``concatenate``, so it composes to any order.

``indices_or_sections`` is an attribute, NumPy's: a number of equal sections (``split`` refuses an uneven one, as
NumPy does; ``array_split`` allows it), or the indices to split at.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Register, Sample, hookimpl

#: Each function and the axis it splits along (None: the one given; hsplit: 1, or 0 for 1-D arrays).
_KINDS = {"split": None, "array_split": None, "hsplit": 1, "vsplit": 0, "dsplit": 2}


def _axis(kind: str, ndim: int, axis: int) -> int:
    fixed = _KINDS[kind]
    if fixed is None:
        return axis
    return 0 if kind == "hsplit" and ndim == 1 else fixed


def _splitting(kind: str) -> tuple[Any, Any]:
    function = getattr(np, kind)
    takes_axis = _KINDS[kind] is None

    if takes_axis:

        def forward(x: np.ndarray, *, indices_or_sections: Any = 2, axis: int = 0) -> tuple[np.ndarray, ...]:
            return tuple(function(x, indices_or_sections, axis=axis))

        def backward(g: tuple[Any, ...], x: Any, *, axis: int) -> tuple[Any]:
            return (onp.concatenate(list(g), axis=axis),)

    else:

        def forward(x: np.ndarray, *, indices_or_sections: Any = 2) -> tuple[np.ndarray, ...]:  # type: ignore[misc]
            return tuple(function(x, indices_or_sections))

        def backward(g: tuple[Any, ...], x: Any) -> tuple[Any]:  # type: ignore[misc]
            return (onp.concatenate(list(g), axis=_axis(kind, x.ndim, 0)),)

    forward.__doc__ = f"np.{kind}: the pieces of x, as a tuple"
    return forward, backward


def _samples(kind: str) -> Any:
    def samples(rng: np.random.Generator) -> list[Sample]:
        n = rng.standard_normal
        if kind in ("split", "array_split"):
            cases = [
                Sample(n((4, 3))),
                Sample(n((2, 6)), indices_or_sections=3, axis=1),
                Sample(n((5, 2)), indices_or_sections=[1, 3], axis=-2),
            ]
            if kind == "array_split":
                cases.append(Sample(n(5), indices_or_sections=3))
            return cases
        shapes = {"hsplit": [(2, 4), (6,)], "vsplit": [(4, 3), (2, 2, 2)], "dsplit": [(2, 1, 4), (1, 2, 2, 3)]}[kind]
        return [Sample(n(shapes[0])), Sample(n(shapes[1]), indices_or_sections=[1])]

    return samples


def _torch_split(kind: str) -> Any:
    def resolve(torch: Any) -> Any:
        if _KINDS[kind] is None:  # np.split's uneven sections are an error in forward before torch is asked
            return lambda x, indices_or_sections=2, axis=0: tuple(torch.tensor_split(x, indices_or_sections, dim=axis))
        function = getattr(torch, kind)
        return lambda x, indices_or_sections=2: tuple(function(x, indices_or_sections))

    return resolve


@hookimpl
def opreg_register_ops(register: Register) -> None:
    for kind in _KINDS:
        forward, backward = _splitting(kind)
        register(
            name=kind,
            inputs=("x",),
            outputs=("*pieces",),
            forward=forward,
            backward=backward,
            sample_inputs=_samples(kind),
            numpy=kind,
            reference=_torch_split(kind),
        )
