"""Elementwise functions: softplus, leaky_relu, gelu (sqrt and abs, NumPy functions, are opreg built-ins now).

Each op returns the dtype it was given: constants are Python floats, which NumPy 2 does not let promote a float32
array (``np.float64`` scalars would). Gradients at kinks are PyTorch's, so that a model ported from torch trains
the same.

Every backward is written with registered ops (``opreg.ops.sigmoid``, :mod:`opreg.numpy`), operators and
comparisons (masks, which are constants), so it runs on Tensors too and can be differentiated again, except
gelu's exact one: it evaluates the normal CDF with ``math.erfc``, element by element, and no op computes erfc.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import opreg.numpy as onp
import opreg.ops
from opreg.plugin import Register, Sample, away_from_zero, gradient_dtype

# softplus


def _softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + exp(x)) without overflow, exact for all x (torch returns x itself above 20: up to 2.1e-9 apart)."""
    return np.logaddexp(0, x)


def _softplus_backward(g: Any, x: Any) -> tuple[Any]:
    return (g * opreg.ops.sigmoid(x),)


# leaky_relu


def _leaky_relu(x: np.ndarray, *, negative_slope: float = 0.01) -> np.ndarray:
    """x where x > 0, else negative_slope * x; the gradient at exactly 0 is negative_slope, as in torch."""
    return np.where(x > 0, x, x * float(negative_slope))


def _leaky_relu_backward(g: Any, x: Any, *, negative_slope: float) -> tuple[Any]:
    return (onp.where(x > 0, g, g * float(negative_slope)),)


# gelu

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_TANH_SCALE = math.sqrt(2.0 / math.pi)  # torch's kBeta
_TANH_CUBIC = 0.044715  # torch's kKappa
_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def _check_approximate(approximate: str) -> None:
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    """Phi(x) = erfc(-x / sqrt 2) / 2, via math.erfc element by element (a Python loop: exact, not fast).

    erfc rather than torch's 1 + erf(x / sqrt 2): the latter cancels to 0 for x below about -8, erfc does not.
    Arrays only: no registered op computes erfc, so on a Tensor (gelu's backward differentiated again) this raises,
    and opreg reports gelu's exact backward as not composable.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"the normal CDF is computed with math.erfc on arrays, not on a {type(x).__name__}")
    return (0.5 * _erfc(x.astype(np.float64, copy=False) * -_SQRT_HALF)).astype(gradient_dtype(x), copy=False)


def _tanh_sigmoid(x: Any) -> Any:
    """s = sigmoid(2u) with u = sqrt(2/pi) (x + 0.044715 x^3), so that 1 + tanh(u) = 2s without cancellation."""
    return opreg.ops.sigmoid(2.0 * _TANH_SCALE * (x + _TANH_CUBIC * x * x * x))


def _gelu(x: np.ndarray, *, approximate: str = "none") -> np.ndarray:
    """x * Phi(x); approximate="tanh": x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2, as torch's gelu."""
    _check_approximate(approximate)
    return x * (_tanh_sigmoid(x) if approximate == "tanh" else _normal_cdf(x))


def _gelu_backward(g: Any, x: Any, *, approximate: str) -> tuple[Any]:
    """Phi(x) + x phi(x), or for tanh: (1 + t) / 2 + x (1 - t^2) / 2 * du/dx, with 1 - t^2 = 4 s (1 - s).

    The tanh form is built from registered ops and composes; the exact form needs Phi, which only math.erfc
    computes, so it serves first derivatives only.
    """
    _check_approximate(approximate)
    if approximate == "tanh":
        s = _tanh_sigmoid(x)
        du_dx = _TANH_SCALE * (1.0 + 3.0 * _TANH_CUBIC * x * x)
        return (g * (s + 2.0 * x * s * (1.0 - s) * du_dx),)
    return (g * (_normal_cdf(x) + x * (_INV_SQRT_2PI * onp.exp(-0.5 * x * x))),)


def _gelu_samples(rng: np.random.Generator) -> list[Sample]:
    return [Sample(rng.standard_normal((3, 4)) * 2.0), Sample(rng.standard_normal((3, 4)) * 2.0, approximate="tanh")]


def register_ops(register: Register) -> None:
    register(
        name="softplus",
        inputs=("x",),
        forward=_softplus,
        backward=_softplus_backward,
        reference="torch.nn.functional.softplus",
    )
    register(
        name="leaky_relu",
        inputs=("x",),
        forward=_leaky_relu,
        backward=_leaky_relu_backward,
        sample_inputs=lambda rng: [Sample(away_from_zero(rng)), Sample(away_from_zero(rng), negative_slope=0.2)],
        reference="torch.nn.functional.leaky_relu",
    )
    register(
        name="gelu",
        inputs=("x",),
        forward=_gelu,
        backward=_gelu_backward,
        sample_inputs=_gelu_samples,
        doc='x * Phi(x), exact through math.erfc (a Python loop, slow), or approximate="tanh" as torch.',
        reference="torch.nn.functional.gelu",
    )
