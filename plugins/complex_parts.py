"""NumPy's functions of complex numbers, on real input: real, imag, conj (conjugate), real_if_close and angle.

Real code calls them (``np.real(x)`` to drop a zero imaginary part, ``np.conj`` in a formula written for both), so
they are ops: on a real x, real, conj and real_if_close are x itself (gradient g), imag is 0 and angle is 0 or pi
(gradient 0 wherever there is one). Complex numbers themselves are out of scope for now: these ops refuse a complex
input with an error that says so, rather than differentiate it as if it were real (and any recorded op whose
result is complex is refused by the engine).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Register, Sample, hookimpl


def _real_only(x: np.ndarray, name: str) -> np.ndarray:
    if np.iscomplexobj(x):
        raise TypeError(
            f"{name} of a complex array: opreg differentiates real arrays only (complex numbers are not supported "
            "yet); pass the real and imaginary parts as separate real arrays"
        )
    return x


def _real(x: np.ndarray) -> np.ndarray:
    """x itself (a copy) for real x."""
    return np.array(_real_only(x, "real"), copy=True)


def _imag(x: np.ndarray) -> np.ndarray:
    """Zeros of x's shape and dtype for real x."""
    return np.zeros_like(_real_only(x, "imag"))


def _conj(x: np.ndarray) -> np.ndarray:
    """x itself (a copy) for real x."""
    return np.array(_real_only(x, "conj"), copy=True)


def _real_if_close(x: np.ndarray, *, tol: float = 100) -> np.ndarray:
    """x itself for real x, as np.real_if_close (a view, so that the output is an array of its own)."""
    return np.asarray(_real_only(x, "real_if_close")).view()


def _angle(x: np.ndarray, *, deg: bool = False) -> np.ndarray:
    """The angle of x as a complex number, as np.angle: pi (180 with deg) where x < 0 or x is -0.0 (NumPy's
    arctan2(0, -0.0)), 0 elsewhere, NaN at NaN. Its gradient is 0, at 0 too, as torch.angle's on real input."""
    return np.asarray(np.angle(_real_only(x, "angle"), deg))


def _zero_gradient(g: Any, x: Any, **attributes: Any) -> tuple[Any]:
    """Zeros of g's shape and dtype, as an op (where with an all-false mask) so that it composes; never g * 0,
    which is NaN where g is infinite."""
    return (onp.where(np.zeros(g.shape, dtype=bool), g, 0.0),)


def _imag_reference(torch: Any) -> Any:
    """torch.imag refuses real tensors: the imaginary part of x + 0i."""
    return lambda x: torch.imag(torch.complex(x, torch.zeros_like(x)))


def _torch_angle(torch: Any) -> Any:
    """torch.angle of a real tensor is 0 or pi with zero gradient, but 0 at -0.0 where NumPy's is pi: the sign bit
    decides here, as in NumPy."""
    import math

    def angle(x: Any, deg: bool = False) -> Any:
        half_turn = 180.0 if deg else math.pi
        values = torch.where(torch.signbit(x), torch.full_like(x, half_turn), torch.zeros_like(x))
        return torch.where(torch.isnan(x), x, values) + 0.0 * torch.angle(x)

    return angle


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="real",
        inputs=("x",),
        forward=_real,
        backward=lambda g, x: (g,),
        doc="The real part: x itself for real x. Complex input is refused (not supported yet).",
        numpy="real",
        reference="torch.real",
        batch="elementwise",
    )
    register(
        name="imag",
        inputs=("x",),
        forward=_imag,
        backward=_zero_gradient,
        doc="The imaginary part: zeros for real x, gradient 0. Complex input is refused (not supported yet).",
        numpy="imag",
        reference=_imag_reference,
        batch="elementwise",
    )
    register(
        name="conj",
        inputs=("x",),
        forward=_conj,
        backward=lambda g, x: (g,),
        doc="The complex conjugate: x itself for real x. Complex input is refused (not supported yet).",
        numpy=("conjugate", "conj"),
        reference="torch.conj_physical",
        batch="elementwise",
    )
    register(
        name="real_if_close",
        inputs=("x",),
        forward=_real_if_close,
        backward=lambda g, x: (g,),
        sample_inputs=lambda rng: [Sample(rng.standard_normal((3, 4))), Sample(rng.standard_normal(3), tol=1000)],
        numpy="real_if_close",
        reference=lambda torch: lambda x, tol=100: torch.real(x),
    )
    register(
        name="angle",
        inputs=("x",),
        forward=_angle,
        backward=_zero_gradient,
        sample_inputs=lambda rng: [
            Sample(rng.standard_normal((3, 4))),
            Sample(np.array([-2.0, -0.5, 0.5, 3.0]), deg=True),  # 0 and -0.0: tests/test_shape_ops.py
        ],
        numpy="angle",
        reference=_torch_angle,
        batch="elementwise",
    )
