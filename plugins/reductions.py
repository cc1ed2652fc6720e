"""Reductions over ``axis`` (None for all, an int, or a tuple of ints; negative ones count from the end), each with
``keepdims``: sum, mean, prod, max/amax, min/amin, logsumexp and weighted_logsumexp (scipy's ``b=``, reached as
``opreg.numpy.logsumexp(x, b=w)``).

Built in because every scalar loss ends in one, and ``Tensor.sum()`` / ``Tensor.mean()`` need them. Every backward
first restores the reduced axes of ``grad_output`` (and of the output, where it needs it) as size-1 axes, then lets
them broadcast against the input: the engine only sums broadcast gradients down, it never stretches them up. All
are written with :mod:`opreg.numpy`, operators and constant masks, so they can be differentiated again.

Choices at the edges, each PyTorch's:

- max and min split the gradient evenly among tied extremes (``torch.amax``/``torch.amin``), so the gradient is a
  symmetric function of the input; over an empty axis they have no value, and forward raises as NumPy does.
- prod's gradient is the product of the other elements of the reduced slab, computed without dividing by ``x``
  wherever an output is 0 (one zero, several zeros), subnormal (an underflow) or not finite: there each element's
  product of the others is formed explicitly, at the cost of ``x.size`` times the slab's size in memory.
  Elsewhere it is ``g * (output / x)``, exact to every order because no element of ``x`` is 0.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import (
    Axis,
    Register,
    Sample,
    constant,
    divide_by_count,
    fit_into,
    hookimpl,
    linear_jvp,
    normalize_axes,
    numpy_reduction,
    op,
    over_axes,
    reduce,
    restore_axes,
)


def _spread(g: Any, x: Any, axis: Axis, keepdims: bool) -> Any:
    """``g`` repeated for every element it was reduced from (for an array, a read-only view)."""
    return onp.broadcast_to(restore_axes(g, x, axis, keepdims), shape=x.shape)


def _count(x: Any, axis: Axis) -> int:
    """How many elements each mean averages, as a Python int (for :func:`divide_by_count`)."""
    return math.prod(x.shape[a] for a in normalize_axes(axis, x.ndim))


def axis_samples(rng: np.random.Generator) -> list[Sample]:
    """A 3-D input over every kind of axis: all, an int, a negative int, tuples, and with keepdims."""
    return [Sample(rng.standard_normal((2, 3, 4)), **s) for s in AXIS_SETTINGS]


#: The attribute settings every reduction's samples cover.
AXIS_SETTINGS: list[dict[str, Any]] = [
    {},
    {"axis": 1},
    {"axis": -1},
    {"axis": (0, 2)},
    {"axis": (-1, 0)},
    {"axis": 1, "keepdims": True},
    {"axis": None, "keepdims": True},
]


def distinct(rng: np.random.Generator, shape: tuple[int, ...] = (2, 3, 4)) -> np.ndarray:
    """Values at least 0.2 apart in random order: no ties, and no two swap order within a finite difference."""
    size = math.prod(shape)
    return rng.permutation(size).reshape(shape) * 0.25 - size / 8 + rng.uniform(0.0, 0.05, size=shape)


def _sum(x: np.ndarray, *, axis: Axis = None, keepdims: bool = False) -> np.ndarray:
    """Sum over axis (None: all)."""
    return reduce(np.sum, x, axis, keepdims)


def _mean(x: np.ndarray, *, axis: Axis = None, keepdims: bool = False) -> np.ndarray:
    """Mean over axis (None: all)."""
    return reduce(np.mean, x, axis, keepdims)


def _sum_out(out: np.ndarray, x: np.ndarray, *, axis: Axis = None, keepdims: bool = False) -> None:
    np.sum(x, axis=normalize_axes(axis, x.ndim), keepdims=keepdims, out=out)


def _mean_out(out: np.ndarray, x: np.ndarray, *, axis: Axis = None, keepdims: bool = False) -> None:
    """np.mean's sum then division, into ``out``; float16 (summed in float32, rounded twice) is copied."""
    if x.dtype.kind == "f" and x.dtype.itemsize >= 4:
        np.mean(x, axis=normalize_axes(axis, x.ndim), keepdims=keepdims, out=out)
    else:
        np.copyto(out, _mean(x, axis=axis, keepdims=keepdims))


def _sum_backward_out(outs: tuple[Any], g: np.ndarray, x: np.ndarray, *, axis: Axis, keepdims: bool) -> None:
    if outs[0] is not None:
        np.copyto(outs[0], restore_axes(g, x, axis, keepdims))


def _mean_backward_out(outs: tuple[Any], g: np.ndarray, x: np.ndarray, *, axis: Axis, keepdims: bool) -> None:
    """g over the count, broadcast: one division into ``outs[0]`` where ``divide_by_count`` divides by the int."""
    if outs[0] is None:
        return
    if g.dtype == outs[0].dtype and g.dtype.itemsize >= 4:
        np.divide(restore_axes(g, x, axis, keepdims), _count(x, axis), out=outs[0])
    else:
        fit_into(outs[0], divide_by_count(_spread(g, x, axis, keepdims), _count(x, axis)))


# --- prod -------------------------------------------------------------------------------------------------------------


def _prod(x: np.ndarray, *, axis: Axis = None, keepdims: bool = False) -> np.ndarray:
    """Product over axis (None: all); 1 over an empty axis."""
    return reduce(np.prod, x, axis, keepdims)


def others_product(x: Any, axes: tuple[int, ...]) -> Any:
    """For each element of ``x``, the product of the other elements of its slab along ``axes`` (sorted,
    non-negative), with no division: exact where ``x`` has zeros, and differentiable again (through prod).

    A new axis ``j`` follows each reduced axis ``i``; the element where every ``i == j`` is replaced by 1 (a
    constant mask), and the product over the ``i`` axes leaves the ``j`` axes in the reduced axes' places.
    """
    inner = tuple(a + t for t, a in enumerate(axes))  # where the reduced axes end up among the new ones
    outer = tuple(p + 1 for p in inner)
    shape = list(np.expand_dims(np.empty(x.shape, bool), outer).shape)
    mask = np.ones((1,) * len(shape), bool)
    for p, a in zip(inner, axes, strict=True):
        shape[p + 1] = x.shape[a]
        eye_shape = [1] * len(shape)
        eye_shape[p] = eye_shape[p + 1] = x.shape[a]
        mask = mask & np.eye(x.shape[a], dtype=bool).reshape(eye_shape)
    spread = onp.broadcast_to(onp.expand_dims(x, outer), shape=tuple(shape))
    return onp.prod(onp.where(mask, 1.0, spread), axis=inner)


def _prod_backward(g: Any, x: Any, *, axis: Axis, keepdims: bool, output: Any) -> tuple[Any]:
    """g times the product of the other elements: ``output / x`` where that is exact, else :func:`others_product`."""
    g = restore_axes(g, x, axis, keepdims)
    if not divides_exactly(constant(output)):
        return (g * others_product(x, normalize_axes(axis, x.ndim)),)
    return (g * (restore_axes(output, x, axis, keepdims) / x),)


def divides_exactly(values: np.ndarray) -> bool:
    """Whether a product's values (or terms) are all finite and normal: neither 0 (a zero factor), nor an
    underflow, whose lost digits ``output / x`` would not recover (5e-324 / 5e-324 is 1, its product of the
    others 1 too, but a rounded subnormal divides to anything), nor inf."""
    magnitude = np.abs(values)
    return bool(np.all((magnitude >= np.finfo(values.dtype).tiny) & (magnitude <= np.finfo(values.dtype).max)))


# --- max and min ------------------------------------------------------------------------------------------------------


def _max(x: np.ndarray, *, axis: Axis = None, keepdims: bool = False) -> np.ndarray:
    """Max over axis (None: all); tied maxima share the gradient equally, as in torch.amax."""
    return reduce(np.max, x, axis, keepdims)


def _min(x: np.ndarray, *, axis: Axis = None, keepdims: bool = False) -> np.ndarray:
    """Min over axis (None: all); tied minima share the gradient equally, as in torch.amin."""
    return reduce(np.min, x, axis, keepdims)


def extreme_share(g: Any, x: Any, output: Any, axis: Axis, keepdims: bool) -> Any:
    """grad_output / (number of extremes) at each element equal to the reduction's output, 0 elsewhere.

    Splitting evenly (not all to the first extreme, as argmax-based max would) keeps the gradient a symmetric
    function of the input, and is what torch.amax and torch.amin do. Which elements are extremes is a comparison,
    a constant mask; their count is a constant too, an integer array (float16 cannot count past 65,504 ties).
    """
    is_extreme = constant(x) == restore_axes(constant(output), x, axis, keepdims)
    count = is_extreme.sum(axis=normalize_axes(axis, x.ndim), keepdims=True)
    return onp.where(is_extreme, divide_by_count(restore_axes(g, x, axis, keepdims), count), 0.0)


def _extreme_backward(g: Any, x: Any, *, axis: Axis, keepdims: bool, output: Any) -> tuple[Any]:
    return (extreme_share(g, x, output, axis, keepdims),)


# --- logsumexp --------------------------------------------------------------------------------------------------------


def _logsumexp(x: np.ndarray, *, axis: Axis = None, keepdims: bool = False) -> np.ndarray:
    """log(sum(exp(x))) over axis (None: all), as scipy.special.logsumexp, shifted by the max so that nothing
    overflows. An infinite max is not subtracted (torch does the same): inf - inf would turn a row of -inf into
    nan. Over an empty axis it is -inf, the log of an empty sum."""
    axes = normalize_axes(axis, x.ndim)
    shift = np.max(x, axis=axes, keepdims=True, initial=-math.inf)
    shift = np.where(np.isfinite(shift), shift, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - shift), axis=axes, keepdims=True)) + shift
    return np.asarray(out if keepdims else np.squeeze(out, axis=axes))


def _logsumexp_backward(g: Any, x: Any, *, axis: Axis, keepdims: bool, output: Any) -> tuple[Any]:
    """grad_output * softmax(x) along axis, with softmax = exp(x - logsumexp(x)) from the output."""
    return (restore_axes(g, x, axis, keepdims) * onp.exp(x - restore_axes(output, x, axis, keepdims)),)


# --- logsumexp with weights (scipy.special.logsumexp's b=) -----------------------------------------------------------


def _weighted_logsumexp(x: np.ndarray, b: np.ndarray, *, axis: Axis = None, keepdims: bool = False) -> np.ndarray:
    """log(sum(b * exp(x))) over axis (None: all), as scipy.special.logsumexp(x, axis, b=b, keepdims=keepdims).

    x and b are broadcast together, and shifted by the max of the x whose weight is not 0
    (a weight of 0 leaves its x out, even an infinite one, as scipy does). A negative weighted sum, whose log is
    not real, is an error (scipy's return_sign=True, the sign apart, is not supported); a sum of 0 (every weight 0)
    gives -inf, the log of an empty sum."""
    x, b = np.broadcast_arrays(x, b)
    axes = normalize_axes(axis, x.ndim)
    counted = np.where(b == 0, -math.inf, x)
    shift = np.max(counted, axis=axes, keepdims=True, initial=-math.inf)
    shift = np.where(np.isfinite(shift), shift, 0.0)
    total = np.sum(b * np.exp(counted - shift), axis=axes, keepdims=True)
    if (total < 0).any():
        raise ValueError(
            "logsumexp with weights b: the weighted sum of exp(x) is negative, and its log is not real; scipy's "
            "return_sign=True would return its sign, which opreg does not support: use weights b >= 0"
        )
    with np.errstate(divide="ignore"):
        out = np.log(total) + shift
    return np.asarray(out if keepdims else np.squeeze(out, axis=axes))


def _weighted_logsumexp_backward(g: Any, x: Any, b: Any, *, axis: Axis, keepdims: bool, output: Any) -> tuple[Any, Any]:
    """d out / d b = exp(x - out) and d out / d x = b * exp(x - out), from the output, in the broadcast shape (the
    engine sums each back to its input's). Where the weighted sum is 0 (every weight 0, out -inf) the result does
    not depend on x: x's gradient is 0 there (b * exp(x - out) would be 0 * inf), b's is +inf (log's slope at 0)."""
    axes = normalize_axes(axis, max(x.ndim, b.ndim))
    if not keepdims:
        g, output = onp.expand_dims(g, axes), onp.expand_dims(output, axes)
    grad_b = g * onp.exp(x - output)
    empty = constant(output) == -math.inf
    with np.errstate(invalid="ignore"):  # inf * 0 where empty, replaced
        grad_x = onp.where(empty, 0.0, grad_b * b) if empty.any() else grad_b * b
    if grad_b.shape != grad_x.shape:  # b broadcast beyond x: its gradient is per element of the broadcast shape
        grad_b = onp.broadcast_to(grad_b, grad_x.shape)
    return grad_x, grad_b


def _numpy_logsumexp(
    call: Any, a: Any, axis: Axis = None, b: Any = None, keepdims: bool = False, return_sign: bool = False
) -> Any:
    """scipy.special.logsumexp's signature: without ``b`` the op logsumexp, with it weighted_logsumexp."""
    if return_sign:
        raise ValueError(
            "logsumexp's return_sign=True (the sign of a weighted sum that may be negative) is not supported; use "
            "weights b >= 0 and leave return_sign out"
        )
    if b is None:
        return call(a, axis=axis, keepdims=keepdims)
    return op("weighted_logsumexp")(a, b, axis=axis, keepdims=keepdims)


def _weighted_samples(rng: np.random.Generator) -> list[Sample]:
    """Weights of x's shape and broadcast ones, some exactly 0, over every kind of axis."""
    x = rng.standard_normal((2, 3, 4))
    b = rng.uniform(0.25, 2.0, (2, 3, 4))
    b[0, 1, 2] = b[1, 0, 0] = 0.0
    return [
        Sample(x, b),
        Sample(x, b, axis=1),
        Sample(x, rng.uniform(0.25, 2.0, (3, 1)), axis=(0, 2), keepdims=True),
        Sample(x[0], rng.uniform(0.25, 2.0, (2, 3, 4)), axis=-1),
        Sample(x, np.asarray(0.5), axis=(-1, 0)),
    ]


def _torch_weighted_logsumexp(torch: Any) -> Any:
    """scipy.special.logsumexp with b=, written in torch from scipy's definition: log(sum(b * exp(x - m))) + m,
    m the max of x where b is not 0 (a constant; finite x here)."""

    def logsumexp(x: Any, b: Any, axis: Axis = None, keepdims: bool = False) -> Any:
        x, b = torch.broadcast_tensors(x, b)
        dims = normalize_axes(axis, x.ndim)
        counted = torch.where(b == 0, -math.inf, x)
        if not counted.numel():  # torch.amax has no value over nothing: the sum is 0 whatever the shift
            shift = torch.zeros((), dtype=x.dtype)
        else:
            shift = torch.amax(counted.detach(), dim=dims, keepdim=True) if dims else counted.detach()
        shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
        terms = b * torch.exp(x - shift)  # x, not counted: b's derivative at 0 is exp(x - out), not 0
        out = torch.log(torch.sum(terms, dim=dims, keepdim=True) if dims else terms) + shift
        return out if keepdims or not dims else out.squeeze(dims)

    return logsumexp


def _prod_samples(rng: np.random.Generator) -> list[Sample]:
    """Every kind of axis, values away from 0 (and so from a kink of the finite differences); then one zero and
    several zeros in a slab, where the gradient must not divide by x."""
    samples = [
        Sample(rng.choice([-1.0, 1.0], (2, 3, 4)) * rng.uniform(0.5, 1.5, (2, 3, 4)), **s) for s in AXIS_SETTINGS
    ]
    x = rng.uniform(0.5, 1.5, (3, 4))
    x[0, 1] = 0.0  # one zero in row 0
    x[1, 0] = x[1, 2] = 0.0  # two zeros in row 1
    return [*samples, Sample(x, axis=1), Sample(x), Sample(x, axis=(0, 1), keepdims=True)]


def _torch_prod(torch: Any) -> Any:
    """torch.prod reduces one dim at a time: NumPy's axis None, int or tuple, as successive products."""

    def prod(x: Any, axis: Axis = None, keepdims: bool = False) -> Any:
        axes = normalize_axes(axis, x.ndim)
        for a in axes:
            x = torch.prod(x, dim=a, keepdim=True)
        return x if keepdims or not axes else torch.squeeze(x, dim=axes)

    return prod


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="sum",
        inputs=("x",),
        forward=_sum,
        forward_out=_sum_out,
        backward_out=_sum_backward_out,
        backward=lambda g, x, *, axis, keepdims: (_spread(g, x, axis, keepdims),),
        jvp=linear_jvp("sum"),
        sample_inputs=axis_samples,
        numpy="sum",
        reference=numpy_reduction("sum"),
        batch=over_axes,
    )
    register(
        name="mean",
        inputs=("x",),
        forward=_mean,
        forward_out=_mean_out,
        backward_out=_mean_backward_out,
        backward=lambda g, x, *, axis, keepdims: (divide_by_count(_spread(g, x, axis, keepdims), _count(x, axis)),),
        jvp=linear_jvp("mean"),
        sample_inputs=axis_samples,
        numpy="mean",
        reference=numpy_reduction("mean"),
        batch=over_axes,
    )
    register(
        name="prod",
        inputs=("x",),
        forward=_prod,
        backward=_prod_backward,
        sample_inputs=_prod_samples,
        numpy="prod",
        reference=_torch_prod,
        batch=over_axes,
    )
    register(
        name="max",
        inputs=("x",),
        forward=_max,
        backward=_extreme_backward,
        sample_inputs=lambda rng: [Sample(distinct(rng), **s) for s in AXIS_SETTINGS],
        numpy=("max", "amax"),
        reference=numpy_reduction("amax"),
        batch=over_axes,
    )
    register(
        name="min",
        inputs=("x",),
        forward=_min,
        backward=_extreme_backward,
        sample_inputs=lambda rng: [Sample(distinct(rng), **s) for s in AXIS_SETTINGS],
        numpy=("min", "amin"),
        reference=numpy_reduction("amin"),
        batch=over_axes,
    )
    register(
        name="logsumexp",
        inputs=("x",),
        forward=_logsumexp,
        backward=_logsumexp_backward,
        sample_inputs=axis_samples,
        numpy="logsumexp",  # not NumPy's: scipy.special.logsumexp, reached as opreg.numpy.logsumexp
        numpy_call=_numpy_logsumexp,  # scipy's signature; with b=, weighted_logsumexp
        reference=numpy_reduction("logsumexp"),
        batch=over_axes,
    )
    register(
        name="weighted_logsumexp",
        inputs=("x", "b"),
        forward=_weighted_logsumexp,
        backward=_weighted_logsumexp_backward,
        sample_inputs=_weighted_samples,
        reference=_torch_weighted_logsumexp,
    )
