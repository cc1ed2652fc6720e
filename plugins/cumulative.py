"""Running sums and products along one axis: cumsum and cumprod (``axis=None``: along the flattened input, as
NumPy's).

cumsum's gradient is the running sum of ``grad_output`` taken from the other end; the op has an attribute NumPy's
lacks, ``reverse=False``, so that its backward is cumsum again (and so composes, to any order). cumprod's
gradient at ``x_j`` is ``sum over i >= j of g_i * prod(x_k for k <= i, k != j)``: the reversed running sum of
``g * output`` divided by ``x_j`` where the output and the nonzero terms ``g * output`` are finite and normal (then
no ``x`` is 0, and the quotient is exact to every order); where one is 0 (a zero in ``x``), subnormal (an
underflow, whose lost digits no division recovers) or not finite, every product of the others is formed
explicitly, with no division, at the cost of ``x.size`` times the axis' length in memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Register, Sample, along_axis, constant, hookimpl, normalize_axes


def _along(x: np.ndarray, axis: int | None) -> tuple[np.ndarray, int]:
    """x, flattened where axis is None, and the axis (non-negative) the running operation goes along."""
    if axis is None:
        return x.reshape(-1), 0
    return x, normalize_axes(axis, x.ndim)[0]


def _flat(x: Any) -> Any:
    """``x`` as 1-D (its elements in C order), for axis=None."""
    if x.ndim == 1:
        return x
    if x.ndim == 0:
        return onp.expand_dims(x, 0)
    return onp.reshape(x, (-1,))


def _unflat(grad: Any, x: Any) -> Any:
    """A gradient of the flattened input, in ``x``'s shape."""
    if x.ndim == 1:
        return grad
    if x.ndim == 0:
        return onp.squeeze(grad, 0)
    return onp.reshape(grad, x.shape)


def _cumsum(x: np.ndarray, *, axis: int | None = None, reverse: bool = False) -> np.ndarray:
    """Running sum along axis (None: the flattened input); ``reverse=True`` sums from the end (opreg's
    addition: cumsum's own gradient)."""
    x, a = _along(x, axis)
    if reverse:
        return np.flip(np.cumsum(np.flip(x, a), axis=a), a)
    return np.cumsum(x, axis=a)


def _cumsum_backward(g: Any, x: Any, *, axis: int | None, reverse: bool) -> tuple[Any]:
    grad = onp.cumsum(g, axis=0 if axis is None else axis, reverse=not reverse)
    return (_unflat(grad, x) if axis is None else grad,)


def _cumprod(x: np.ndarray, *, axis: int | None = None) -> np.ndarray:
    """Running product along axis (None: the flattened input)."""
    x, a = _along(x, axis)
    return np.cumprod(x, axis=a)


def _others_running_product(g: Any, x: Any, a: int) -> Any:
    """``sum over i >= j of g_i * prod(x_k for k <= i, k != j)`` for each ``j`` along axis ``a``, with no
    division: a new axis ``j`` after ``a``; x_j replaced by 1 in copy j (a constant mask), the running product
    along ``a`` of each copy, weighted by g_i for i >= j and summed over ``a``, which leaves ``j`` in its place."""
    n = x.shape[a]
    shape = list(x.shape)
    shape.insert(a + 1, n)
    pair = [1] * len(shape)
    pair[a] = pair[a + 1] = n
    same = np.eye(n, dtype=bool).reshape(pair)
    later = (np.arange(n)[:, None] >= np.arange(n)[None, :]).reshape(pair)  # i >= j
    copies = onp.where(same, 1.0, onp.broadcast_to(onp.expand_dims(x, a + 1), shape=tuple(shape)))
    products = onp.cumprod(copies, axis=a)
    return onp.sum(onp.where(later, onp.expand_dims(g, a + 1) * products, 0.0), axis=a)


def _normal(values: np.ndarray) -> bool:
    """Whether every value is finite and normal: not 0 (a zero factor) and not an underflow, whose lost digits a
    division by ``x`` would not recover."""
    magnitude = np.abs(values)
    return bool(np.all((magnitude >= np.finfo(values.dtype).tiny) & (magnitude <= np.finfo(values.dtype).max)))


def _cumprod_backward(g: Any, x: Any, *, axis: int | None, output: Any) -> tuple[Any]:
    flat = axis is None
    xs, a = (_flat(x), 0) if flat else (x, normalize_axes(axis, x.ndim)[0])
    terms = constant(output) * constant(g)
    if _normal(constant(output)) and _normal(terms[terms != 0]):
        grad = onp.cumsum(g * output, axis=a, reverse=True) / xs
    else:
        grad = _others_running_product(g, xs, a)
    return (_unflat(grad, x) if flat else grad,)


def _cumsum_samples(rng: np.random.Generator) -> list[Sample]:
    settings: list[dict[str, Any]] = [{"axis": 0}, {"axis": -1}, {"axis": 1, "reverse": True}]
    samples = [Sample(rng.standard_normal((2, 3, 4)), **s) for s in settings]
    return [*samples, Sample(rng.standard_normal(5)), Sample(rng.standard_normal(5), reverse=True)]


def _cumprod_samples(rng: np.random.Generator) -> list[Sample]:
    """Values away from 0 along every kind of axis; then one zero and two zeros along the axis, and a zero in a
    flattened input, where the gradient must not divide by x."""

    def signs(shape: tuple[int, ...]) -> np.ndarray:
        return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.5, 1.5, shape)

    x = signs((3, 4))
    x[0, 1] = 0.0
    x[1, 0] = x[1, 2] = 0.0
    flat = signs((5,))
    flat[2] = 0.0
    return [
        Sample(signs((2, 3, 4)), axis=1),
        Sample(signs((2, 3, 4)), axis=-1),
        Sample(signs((4,))),
        Sample(x, axis=1),
        Sample(x, axis=0),
        Sample(flat),
    ]


def _torch_cumsum(torch: Any) -> Any:
    def cumsum(x: Any, axis: int | None = None, reverse: bool = False) -> Any:
        x, dim = (x.reshape(-1), 0) if axis is None else (x, axis)
        return torch.cumsum(x.flip(dim), dim=dim).flip(dim) if reverse else torch.cumsum(x, dim=dim)

    return cumsum


def _torch_cumprod(torch: Any) -> Any:
    def cumprod(x: Any, axis: int | None = None) -> Any:
        x, dim = (x.reshape(-1), 0) if axis is None else (x, axis)
        return torch.cumprod(x, dim=dim)

    return cumprod


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="cumsum",
        inputs=("x",),
        forward=_cumsum,
        backward=_cumsum_backward,
        sample_inputs=_cumsum_samples,
        numpy="cumsum",
        reference=_torch_cumsum,
        batch=along_axis,
    )
    register(
        name="cumprod",
        inputs=("x",),
        forward=_cumprod,
        backward=_cumprod_backward,
        sample_inputs=_cumprod_samples,
        numpy="cumprod",
        reference=_torch_cumprod,
        batch=along_axis,
    )
