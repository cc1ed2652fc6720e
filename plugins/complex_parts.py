"""NumPy's complex-number functions on real input: real, imag, conj (conjugate).

Real code calls them (``np.real(x)`` to drop a zero imaginary part, ``np.conj`` in a formula written for both),
so they are ops: on a real x, real and conj are x itself (gradient g) and imag is 0 (gradient 0). Complex numbers
themselves are out of scope for now: a complex input is refused with an error that says so, rather than
differentiated as if it were real.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Register, hookimpl


def _real_only(x: np.ndarray, name: str) -> None:
    if np.iscomplexobj(x):
        raise TypeError(
            f"{name} of a complex array: opreg differentiates real arrays only (complex numbers are out of scope "
            "for now); pass the real and imaginary parts as separate real arrays"
        )


def _real(x: np.ndarray) -> np.ndarray:
    """x itself (a copy) for real x."""
    _real_only(x, "real")
    return np.array(x, copy=True)


def _imag(x: np.ndarray) -> np.ndarray:
    """Zeros of x's shape and dtype for real x."""
    _real_only(x, "imag")
    return np.zeros_like(x)


def _conj(x: np.ndarray) -> np.ndarray:
    """x itself (a copy) for real x."""
    _real_only(x, "conj")
    return np.array(x, copy=True)


def _zero_gradient(g: Any, x: Any) -> tuple[Any]:
    return (onp.where(np.zeros(x.shape, dtype=bool), g, 0.0),)


def _imag_reference(torch: Any) -> Any:
    """torch.imag refuses real tensors: the imaginary part of x + 0i."""
    return lambda x: torch.imag(torch.complex(x, torch.zeros_like(x)))


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="real",
        inputs=("x",),
        forward=_real,
        backward=lambda g, x: (g,),
        doc="The real part: x itself for real x. Complex input is refused (out of scope for now).",
        numpy="real",
        reference="torch.real",
    )
    register(
        name="imag",
        inputs=("x",),
        forward=_imag,
        backward=_zero_gradient,
        doc="The imaginary part: zeros for real x, gradient 0. Complex input is refused (out of scope for now).",
        numpy="imag",
        reference=_imag_reference,
    )
    register(
        name="conj",
        inputs=("x",),
        forward=_conj,
        backward=lambda g, x: (g,),
        doc="The complex conjugate: x itself for real x. Complex input is refused (out of scope for now).",
        numpy=("conjugate", "conj"),
        reference="torch.conj_physical",
    )
