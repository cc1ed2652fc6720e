"""hypothesis case strategies for the reductions, statistics, running sums and products, products and
``numpy.linalg`` ops (``STRUCTURED`` in tests/test_properties.py takes them from ``CASES``), with the error bounds
their comparisons with torch use (``error_bounds``).

What each draws, and why:

- prod, cumprod: magnitudes in [1e-3, 1.25], exact zeros often (one zero, several, in one slab): the gradient
  must not divide by x; at most 256 factors of 1.25 stay far inside float32.
- max, min, ptp: half of the elements from five values (-0.0 ties with 0.0), so most extremes are tied: the
  gradient is split evenly, torch's rule; never over an empty axis (no value there).
- var, std: values on a grid of halves, so that a slab's deviation is exactly 0 or at least 0.5 / n: std's
  gradient ``(x - mean) / (n std)`` is ill-conditioned between those (both libraries' rounding of a tiny std
  differs), and exactly 0 at std 0 in both (torch's choice); ``ddof`` 0 or 1 below the count.
- cumsum, cumprod: ``axis`` an int of either sign, or None for inputs of at most one axis (``reverse`` too).
- tensordot: contracted axes anywhere in either operand, paired in any order, as an int or two lists; dot and
  inner: NumPy's shape rules, 0-d operands included; vdot the same shape; outer 0-d or 1-D; cross 3-vectors along
  any axis of either, the rest broadcast, the result along any axis.
- inv, det, solve: ``x + (n + 1) I`` with x in [-1, 1] (diagonally dominant, so far from singular), batched; solve's b
  one vector or (batched) matrices; cholesky: ``B B^T + (n + 1) I``; eigvalsh: the same plus a diagonal spaced
  ``3n`` apart (distinct eigenvalues), either triangle.
- weighted_logsumexp: x and positive weights b of broadcastable shapes, over the broadcast shape's axes.
- norm: a vector norm (one axis, or all with ord None) or a matrix norm (two axes in either order), every ord
  opreg takes, keepdims; values with ties and zeros (the 2-norm of a zero vector, |x| at 0), none below 1e-15
  (torch's 2-norm underflows there, opreg's does not). The norms of singular values (2, -2, 'nuc') take matrices
  with spread singular values (below), moved to the drawn axes: at a tie opreg shares the gradient evenly where
  torch takes LAPACK's vectors (tests/test_decompositions.py checks opreg's choice by hand).
- svdvals, pinv: ``P D Q + E`` with D diagonal of 10, 20, 30, ... (signs and order of rows and columns permuted by
  the permutations P and Q) and E in [-1, 1]: the singular values stay within 4 of D's (Weyl), so they are distinct
  and at least 6, as the singular vectors' derivative (pinv's too) needs; 1 to 4 rows and columns, batched.
- kron: two arrays of 0 to 3 axes of at most 3 each, of any number of axes each.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from opreg import testing
from opreg.testing import Case, CaseStrategy, arrays, floats

REAL = floats(-100.0, 100.0)
LARGE = floats(-1e4, 1e4)
UNIT = floats(-1.0, 1.0)


def ties(dtype: type) -> st.SearchStrategy[float]:
    """Half of the elements from five values (-0.0 ties with 0.0): most extremes are tied."""
    return st.one_of(st.sampled_from([-2.0, -0.0, 0.0, 1.0, 2.0]), REAL(dtype))


def halves(dtype: type) -> st.SearchStrategy[float]:
    return st.integers(-8, 8).map(lambda k: k / 2)


def factors(dtype: type) -> st.SearchStrategy[float]:
    """0.0 often, else a magnitude in [1e-3, 1.25]: no subnormals, where torch's ``g * out / x`` loses the
    digits the underflow took (tests/test_reductions.py checks opreg's exact answers there by hand)."""
    return st.one_of(st.just(0.0), testing.away_from_zero(1e-3, 1.25)(dtype))


@st.composite
def weighted_logsumexp_case(draw: Callable[..., Any], dtype: type) -> Case:
    """x and weights b of mutually broadcastable shapes, b in [0.25, 2] (weights of 0 are the samples' and
    tests/test_numpy_functions.py's: a slab of them only, torch's gradient is 0 * inf there), over the broadcast
    shape's axes in every spelling, with keepdims."""
    x_shape, b_shape = draw(testing.broadcastable_shapes())
    x = draw(arrays(dtype, x_shape, LARGE))
    b = draw(arrays(dtype, b_shape, floats(0.25, 2.0)))
    ndim = max(x.ndim, b.ndim)
    return [x, b], {"axis": draw(testing.axes(ndim), label="axis"), "keepdims": draw(st.booleans(), label="keepdims")}


@st.composite
def statistic_case(draw: Callable[..., Any], dtype: type) -> Case:
    """var, std: a reduction's input and axes, and a ddof below each slab's count."""
    (x,), attributes = draw(testing.reduction(halves)(dtype))
    axis = attributes["axis"]
    count = math.prod(x.shape[a] for a in (range(x.ndim) if axis is None else np.atleast_1d(axis)))
    attributes["ddof"] = draw(st.integers(0, max(0, min(1, count - 1))), label="ddof")
    return [x], attributes


def running(elements: testing.Elements, reverse: bool = False) -> CaseStrategy:
    """cumsum, cumprod: an int axis of either sign, or None for 0-d and 1-D inputs."""

    @st.composite
    def case(draw: Callable[..., Any], dtype: type) -> Case:
        x = draw(arrays(dtype, draw(testing.shapes()), elements))
        choices: list[Any] = list(range(-x.ndim, x.ndim)) + ([None] if x.ndim <= 1 else [])
        attributes: dict[str, Any] = {"axis": draw(st.sampled_from(choices), label="axis")}
        if reverse:
            attributes["reverse"] = draw(st.booleans(), label="reverse")
        return [x], attributes

    return case


def _side(draw: Callable[..., Any], low: int = 1) -> int:
    return draw(st.integers(low, 3))


@st.composite
def tensordot_case(draw: Callable[..., Any], dtype: type) -> Case:
    contracted = [_side(draw) for _ in range(draw(st.integers(0, 2)))]
    a_free = [_side(draw) for _ in range(draw(st.integers(0, 2)))]
    b_free = [_side(draw) for _ in range(draw(st.integers(0, 2)))]
    n = len(contracted)
    if draw(st.booleans(), label="axes as an int"):
        a_shape, b_shape, axes = [*a_free, *contracted], [*contracted, *b_free], n
    else:
        a_order = draw(st.permutations(range(len(a_free) + n)))  # where each axis of a goes
        b_order = draw(st.permutations(range(len(b_free) + n)))
        a_axes, b_axes = list(a_order[:n]), list(b_order[:n])
        a_shape = [0] * (len(a_free) + n)
        b_shape = [0] * (len(b_free) + n)
        for size, i, j in zip(contracted, a_axes, b_axes, strict=True):
            a_shape[i], b_shape[j] = size, size
        for size, i in zip(a_free, a_order[n:], strict=True):
            a_shape[i] = size
        for size, j in zip(b_free, b_order[n:], strict=True):
            b_shape[j] = size
        negative = draw(st.booleans())
        axes = (
            tuple(i - len(a_shape) if negative else i for i in a_axes),
            tuple(j - len(b_shape) if negative else j for j in b_axes),
        )
    a = draw(arrays(dtype, tuple(a_shape), floats(-10.0, 10.0)))
    return [a, draw(arrays(dtype, tuple(b_shape), floats(-10.0, 10.0)))], {"axes": axes}


@st.composite
def dot_case(draw: Callable[..., Any], dtype: type, inner: bool = False) -> Case:
    """np.dot (or np.inner): 0-d to 3-D operands whose contracted axes match."""
    a_shape = draw(testing.shapes(max_dims=3, allow_empty=False))
    b_shape = list(draw(testing.shapes(max_dims=3, allow_empty=False)))
    if a_shape and b_shape:
        b_shape[-1 if inner or len(b_shape) == 1 else -2] = a_shape[-1]
    a = draw(arrays(dtype, a_shape, floats(-10.0, 10.0)))
    return [a, draw(arrays(dtype, tuple(b_shape), floats(-10.0, 10.0)))], {}


@st.composite
def vdot_case(draw: Callable[..., Any], dtype: type) -> Case:
    shape = draw(testing.shapes(min_dims=1, max_dims=3))
    return [draw(arrays(dtype, shape, floats(-10.0, 10.0))), draw(arrays(dtype, shape, floats(-10.0, 10.0)))], {}


@st.composite
def outer_case(draw: Callable[..., Any], dtype: type) -> Case:
    shapes = [draw(testing.shapes(max_dims=1)) for _ in range(2)]
    return [draw(arrays(dtype, s, floats(-10.0, 10.0))) for s in shapes], {}


@st.composite
def cross_case(draw: Callable[..., Any], dtype: type) -> Case:
    """3-vectors along axisa of a and axisb of b (or ``axis`` for both), the other axes broadcast; the result's
    vectors along axisc."""
    batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=3)).input_shapes
    if draw(st.booleans(), label="one axis"):
        shape = batch[0]
        position = draw(st.integers(0, len(shape)))
        full = (*shape[:position], 3, *shape[position:])
        a, b = (draw(arrays(dtype, full, floats(-10.0, 10.0))) for _ in range(2))
        return [a, b], {"axis": position - len(full) if draw(st.booleans()) else position}
    inputs, attributes = [], {}
    for name, shape in zip(("axisa", "axisb"), batch, strict=True):
        position = draw(st.integers(0, len(shape)))
        full = (*shape[:position], 3, *shape[position:])
        inputs.append(draw(arrays(dtype, full, floats(-10.0, 10.0))))
        attributes[name] = position - len(full) if draw(st.booleans()) else position
    out_ndim = len(np.broadcast_shapes(*batch)) + 1
    attributes["axisc"] = draw(st.integers(-out_ndim, out_ndim - 1))
    return inputs, attributes


def _square(draw: Callable[..., Any], dtype: type, spd: bool = False) -> np.ndarray:
    n = draw(st.integers(1, 4))
    batch = draw(testing.shapes(max_dims=2, allow_empty=False))
    x = draw(arrays(dtype, (*batch, n, n), UNIT)).astype(np.float64)
    if spd:
        x = x @ np.swapaxes(x, -1, -2)
    return (x + (n + 1) * np.eye(n)).astype(dtype)  # each diagonal element beats its row: far from singular


@st.composite
def square_case(draw: Callable[..., Any], dtype: type) -> Case:
    return [_square(draw, dtype)], {}


@st.composite
def cholesky_case(draw: Callable[..., Any], dtype: type) -> Case:
    return [_square(draw, dtype, spd=True)], {}


@st.composite
def eigvalsh_case(draw: Callable[..., Any], dtype: type) -> Case:
    """A square matrix whose triangles are both far from symmetric matrices with a repeated eigenvalue (the
    diagonal spaced 3n apart beats the rest, at most n in norm), so that the ascending eigenvalues are
    differentiable; eigvalsh reads one triangle (UPLO) as the symmetric matrix it stands for."""
    a = _square(draw, dtype)
    n = a.shape[-1]
    return [(a + np.diag(np.arange(n) * 3.0 * n)).astype(dtype)], {"UPLO": draw(st.sampled_from(["L", "U"]))}


@st.composite
def solve_case(draw: Callable[..., Any], dtype: type) -> Case:
    a = _square(draw, dtype)
    n = a.shape[-1]
    if draw(st.booleans(), label="b a vector"):
        b_shape: tuple[int, ...] = (n,)
    else:
        k = draw(st.integers(1, 3))
        batch = a.shape[:-2][draw(st.integers(0, a.ndim - 2)) :]  # a's batch axes, or some trailing ones
        b_shape = (*batch, n, k)
    return [a, draw(arrays(dtype, b_shape, floats(-10.0, 10.0)))], {}


def norm_elements(dtype: type) -> st.SearchStrategy[float]:
    """Ties and zeros often, else magnitudes in [1e-15, 100] (squares normal in float32): torch's 2-norm of
    two elements of 1e-191 underflows to 0 (gradient 0), where opreg's, scaled, is right (tests/test_reductions.py
    checks it by hand)."""
    return st.one_of(st.sampled_from([-2.0, -0.0, 0.0, 1.0, 2.0]), testing.away_from_zero(1e-15, 100.0)(dtype))


@st.composite
def norm_case(draw: Callable[..., Any], dtype: type) -> Case:
    x = draw(arrays(dtype, draw(testing.shapes(min_dims=1, allow_empty=False)), norm_elements))
    keepdims = draw(st.booleans(), label="keepdims")
    if x.ndim >= 2 and draw(st.booleans(), label="matrix"):
        axes = draw(st.permutations(range(x.ndim)))[:2]
        axis = tuple(a - x.ndim if draw(st.booleans()) else a for a in axes)
        ord_ = draw(st.sampled_from([None, "fro", 1, -1, math.inf, -math.inf]))
        return [x], {"ord": ord_, "axis": axis, "keepdims": keepdims}
    if draw(st.booleans(), label="every element"):
        return [x], {"axis": None, "keepdims": keepdims}
    axis = draw(st.integers(-x.ndim, x.ndim - 1))
    ord_ = draw(st.sampled_from([None, 2, 1, math.inf, -math.inf, 3, 4.5]))
    return [x], {"ord": ord_, "axis": axis, "keepdims": keepdims}


def spread_matrices(draw: Callable[..., Any], dtype: type, batch_dims: int = 2) -> np.ndarray:
    """Matrices (batch..., m, n) with singular values within 4 of 10, 20, 30, ...: see the module's docstring."""
    m, n = draw(st.integers(1, 4), label="m"), draw(st.integers(1, 4), label="n")
    batch = draw(testing.shapes(max_dims=batch_dims, allow_empty=False))
    k = min(m, n)
    base = np.zeros((m, n))
    signs = draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=k, max_size=k))
    base[np.arange(k), np.arange(k)] = 10.0 * np.arange(1, k + 1) * np.array(signs)
    base = base[draw(st.permutations(range(m)))][:, draw(st.permutations(range(n)))]
    noise = draw(arrays(dtype, (*batch, m, n), UNIT)).astype(np.float64)
    return (base + noise).astype(dtype)


@st.composite
def svdvals_case(draw: Callable[..., Any], dtype: type) -> Case:
    return [spread_matrices(draw, dtype)], {}


@st.composite
def pinv_case(draw: Callable[..., Any], dtype: type) -> Case:
    return [spread_matrices(draw, dtype)], {}


@st.composite
def singular_norm_case(draw: Callable[..., Any], dtype: type) -> Case:
    """Matrix norms 2, -2, 'nuc' of spread matrices, their two axes moved anywhere (either sign, either order)."""
    x = spread_matrices(draw, dtype)
    ndim = x.ndim
    rows, columns = draw(st.permutations(range(ndim)))[:2]
    x = np.moveaxis(x, (-2, -1), (rows, columns))
    axis = tuple(a - ndim if draw(st.booleans()) else a for a in (rows, columns))
    ord_ = draw(st.sampled_from([2, -2, "nuc"]))
    return [x], {"ord": ord_, "axis": axis, "keepdims": draw(st.booleans(), label="keepdims")}


@st.composite
def kron_case(draw: Callable[..., Any], dtype: type) -> Case:
    shapes = [draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=draw(testing.min_sides()), max_side=3))]
    shapes.append(draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3)))
    return [draw(arrays(dtype, shape, REAL)) for shape in shapes], {}


CASES: dict[str, CaseStrategy] = {
    "prod": testing.reduction(factors),
    "max": testing.reduction(ties, allow_empty=False),
    "min": testing.reduction(ties, allow_empty=False),
    "ptp": testing.reduction(ties, allow_empty=False),
    "logsumexp": testing.reduction(LARGE),
    "weighted_logsumexp": weighted_logsumexp_case,
    "var": statistic_case,
    "std": statistic_case,
    "cumsum": running(REAL, reverse=True),
    "cumprod": running(factors),
    "tensordot": tensordot_case,
    "dot": dot_case,
    "inner": lambda dtype: dot_case(dtype, inner=True),
    "vdot": vdot_case,
    "outer": outer_case,
    "cross": cross_case,
    "inv": square_case,
    "det": square_case,
    "solve": solve_case,
    "cholesky": cholesky_case,
    "eigvalsh": eigvalsh_case,
    "norm": lambda dtype: st.one_of(norm_case(dtype), singular_norm_case(dtype)),
    "svdvals": svdvals_case,
    "pinv": pinv_case,
    "kron": kron_case,
}
