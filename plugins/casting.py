"""``astype``: a change of floating dtype (float16, float32, float64), recorded, its gradient cast back to the input's
dtype.

To an integer or boolean dtype a cast has no derivative (it is a step function, constant almost everywhere), so
``Tensor.astype(int)`` gives a constant Tensor of the values, as an index or a mask, and this op refuses such a
target rather than pretend to differentiate it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Register, Sample, hookimpl


def _astype(x: np.ndarray, *, dtype: Any = "float64", copy: bool = True) -> np.ndarray:
    """x in ``dtype``, always a new array (``copy`` is NumPy's keyword; a recorded output never shares memory)."""
    target = np.dtype(dtype)
    if target.kind != "f":
        raise TypeError(
            f"astype to {target} has no derivative (the cast is a step function); Tensor.astype({target}) gives the "
            "values as a constant, outside the graph"
        )
    return x.astype(target)


def _astype_backward(g: Any, x: Any, *, dtype: Any, copy: bool) -> tuple[Any]:
    return (onp.astype(g, x.dtype),)


def _samples(rng: np.random.Generator) -> list[Sample]:
    """Up from float32 and within float64: exact casts, so finite differences see the identity they are."""
    return [
        Sample(rng.standard_normal((3, 4)).astype(np.float32), dtype="float64"),
        Sample(rng.standard_normal(5), dtype=np.float64),
    ]


def _torch_astype(torch: Any) -> Any:
    return lambda x, dtype="float64", copy=True: x.to(getattr(torch, np.dtype(dtype).name))


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="astype",
        inputs=("x",),
        forward=_astype,
        backward=_astype_backward,
        sample_inputs=_samples,
        doc="x cast to another floating dtype; the gradient is g cast back to x's dtype.",
        numpy="astype",
        reference=_torch_astype,
        batch="elementwise",
    )
