"""Elementwise functions: softplus, leaky_relu, gelu, sqrt, abs.

Each op returns the dtype it was given: constants are Python floats, which NumPy 2 does not let promote a float32
array (``np.float64`` scalars would). Gradients at kinks are PyTorch's, so that a model ported from torch trains
the same.
"""

from __future__ import annotations

import math

import numpy as np

from opreg import Register, Sample
from opreg_contrib_ops._common import away_from_zero, float_dtype, sigmoid

# softplus


def _softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + exp(x)) without overflow, exact for all x (torch returns x itself above 20: up to 2.1e-9 apart)."""
    return np.logaddexp(0, x)


def _softplus_backward(g: np.ndarray, x: np.ndarray) -> tuple[np.ndarray]:
    return (g * sigmoid(x),)


# leaky_relu


def _leaky_relu(x: np.ndarray, *, negative_slope: float) -> np.ndarray:
    """x where x > 0, else negative_slope * x; the gradient at exactly 0 is negative_slope, as in torch."""
    return np.where(x > 0, x, x * float(negative_slope))


def _leaky_relu_backward(g: np.ndarray, x: np.ndarray, *, negative_slope: float) -> tuple[np.ndarray]:
    return (np.where(x > 0, g, g * float(negative_slope)),)


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
    """
    return (0.5 * _erfc(np.asarray(x, dtype=np.float64) * -_SQRT_HALF)).astype(float_dtype(x), copy=False)


def _tanh_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """s = sigmoid(2u) with u = sqrt(2/pi) (x + 0.044715 x^3), so that 1 + tanh(u) = 2s without cancellation."""
    u = _TANH_SCALE * (x + _TANH_CUBIC * x * x * x)
    return u, sigmoid(2.0 * u)


def _gelu(x: np.ndarray, *, approximate: str) -> np.ndarray:
    """x * Phi(x); approximate="tanh": x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2, as torch's gelu."""
    _check_approximate(approximate)
    if approximate == "tanh":
        _, s = _tanh_parts(x)
        return x * s
    return x * _normal_cdf(x)


def _gelu_backward(g: np.ndarray, x: np.ndarray, *, approximate: str) -> tuple[np.ndarray]:
    """Phi(x) + x phi(x), or for tanh: (1 + t) / 2 + x (1 - t^2) / 2 * du/dx, with 1 - t^2 = 4 s (1 - s)."""
    _check_approximate(approximate)
    if approximate == "tanh":
        _, s = _tanh_parts(x)
        du_dx = _TANH_SCALE * (1.0 + 3.0 * _TANH_CUBIC * x * x)
        derivative = s + 2.0 * x * s * (1.0 - s) * du_dx
    else:
        derivative = _normal_cdf(x) + x * (_INV_SQRT_2PI * np.exp(-0.5 * x * x))
    return (g * derivative,)


def _gelu_samples(rng: np.random.Generator) -> list[Sample]:
    return [Sample(rng.standard_normal((3, 4)) * 2.0), Sample(rng.standard_normal((3, 4)) * 2.0, approximate="tanh")]


# sqrt, abs, pow


def _abs_backward(g: np.ndarray, x: np.ndarray) -> tuple[np.ndarray]:
    """g * sign(x): 0 at exactly 0, as torch (any value in [-1, 1] is a subgradient there)."""
    return (g * np.sign(x),)


def _positive(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.uniform(0.5, 2.0, size=shape)


def register_ops(register: Register) -> None:
    register(
        name="softplus",
        inputs=("x",),
        forward=_softplus,
        backward=_softplus_backward,
    )
    register(
        name="leaky_relu",
        inputs=("x",),
        attributes={"negative_slope": 0.01},
        forward=_leaky_relu,
        backward=_leaky_relu_backward,
        sample_inputs=lambda rng: [
            Sample(away_from_zero(rng, (3, 4))),
            Sample(away_from_zero(rng, (3, 4)), negative_slope=0.2),
        ],
    )
    register(
        name="gelu",
        inputs=("x",),
        attributes={"approximate": "none"},
        forward=_gelu,
        backward=_gelu_backward,
        sample_inputs=_gelu_samples,
        doc='x * Phi(x), exact through math.erfc (a Python loop, slow), or approximate="tanh" as torch.',
    )
    register(
        name="sqrt",
        inputs=("x",),
        forward=np.sqrt,
        backward=lambda g, x, *, output: (g / (2 * output),),
        backward_uses_output=True,
        sample_inputs=lambda rng: (_positive(rng, (3, 4)),),
        doc="Square root; the gradient 1 / (2 sqrt(x)) is taken from the output, and is inf at 0 as in torch.",
    )
    register(
        name="abs",
        inputs=("x",),
        forward=np.abs,
        backward=_abs_backward,
        sample_inputs=lambda rng: (away_from_zero(rng, (3, 4)),),
        doc="|x|; the gradient at exactly 0 is 0, as in torch.",
    )
