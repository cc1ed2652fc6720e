"""Products of arrays beyond ``@``: tensordot, dot (NumPy's N-D rule), inner, vdot, outer, cross and kron.

Every gradient is another product of the same kind (tensordot's is tensordot of ``grad_output`` with the other
operand, cross's a cross product with it), called through :mod:`opreg.numpy`, so each composes to any order.
tensordot's result keeps each operand's free axes in order, then the other's contracted ones in *its* order;
where that differs from the operand's own order, the gradient is transposed back (``np.transpose``'s op). The
flattening products (vdot, outer) reshape their gradients for operands of more than one axis (``np.reshape``'s
op). A 0-d operand of dot or inner multiplies, as NumPy's. kron's output, reshaped with each axis split in two
(a's index, b's index), is the outer product of the operands: each gradient is that reshaped ``grad_output`` times
the other operand, summed over the other's axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Register, Sample, hookimpl, normalize_axes

#: tensordot's ``axes``: how many trailing axes of a meet as many leading axes of b, or two axes (or lists of axes),
#: as a tuple or a list (NumPy takes ``axes=[[1], [0]]`` and ``axes=[-1, 0]`` too).
Axes = int | Sequence[int | Sequence[int]]


def _pairs(axes: Axes, a_ndim: int, b_ndim: int) -> tuple[list[int], list[int]]:
    """``axes`` as two lists of non-negative axes, paired in order, as np.tensordot reads them."""
    if isinstance(axes, int | np.integer):
        n = int(axes)
        if not 0 <= n <= min(a_ndim, b_ndim):
            raise ValueError(f"axes={n} does not fit operands of {a_ndim} and {b_ndim} dimensions")
        return list(range(a_ndim - n, a_ndim)), list(range(n))
    a_axes, b_axes = ([x] if isinstance(x, int | np.integer) else list(x) for x in axes)
    if len(a_axes) != len(b_axes):
        raise ValueError(f"axes pairs {len(a_axes)} axes of a with {len(b_axes)} of b")
    return [int(a) % a_ndim for a in a_axes], [int(b) % b_ndim for b in b_axes]


def _tensordot(a: np.ndarray, b: np.ndarray, *, axes: Axes = 2) -> np.ndarray:
    """Sum of a * b over ``axes`` (an int n: a's last n with b's first n; or two lists of axes, paired)."""
    a_axes, b_axes = _pairs(axes, a.ndim, b.ndim)
    return np.asarray(np.tensordot(a, b, axes=(a_axes, b_axes)))


def _in_order(grad: Any, layout: list[int]) -> Any:
    """``grad``, whose axis k is the operand's axis ``layout[k]``, with its axes in the operand's order."""
    order = [layout.index(k) for k in range(len(layout))]
    return grad if order == sorted(order) else onp.transpose(grad, order)


def contraction_backward(g: Any, a: Any, b: Any, a_axes: list[int], b_axes: list[int]) -> tuple[Any, Any]:
    """The gradients of tensordot(a, b, (a_axes, b_axes)): each tensordot of g with the other operand."""
    a_free = [i for i in range(a.ndim) if i not in a_axes]
    b_free = [i for i in range(b.ndim) if i not in b_axes]
    g_a, g_b = list(range(len(a_free))), list(range(len(a_free), g.ndim))
    grad_a = onp.tensordot(g, b, axes=(tuple(g_b), tuple(b_free)))
    grad_a = _in_order(grad_a, a_free + [a_axes[b_axes.index(j)] for j in sorted(b_axes)])
    grad_b = onp.tensordot(a, g, axes=(tuple(a_free), tuple(g_a)))
    grad_b = _in_order(grad_b, [b_axes[a_axes.index(i)] for i in sorted(a_axes)] + b_free)
    return grad_a, grad_b


def _tensordot_backward(g: Any, a: Any, b: Any, *, axes: Axes) -> tuple[Any, Any]:
    return contraction_backward(g, a, b, *_pairs(axes, a.ndim, b.ndim))


def _dot_axes(a: Any, b: Any) -> tuple[list[int], list[int]]:
    """np.dot's contraction: a's last axis with b's second to last (its only one for a vector)."""
    return [a.ndim - 1], [max(b.ndim - 2, 0)]


def _dot_backward(g: Any, a: Any, b: Any) -> tuple[Any, Any]:
    if a.ndim == 0 or b.ndim == 0:
        return g * b, g * a
    return contraction_backward(g, a, b, *_dot_axes(a, b))


def _inner_backward(g: Any, a: Any, b: Any) -> tuple[Any, Any]:
    if a.ndim == 0 or b.ndim == 0:
        return g * b, g * a
    return contraction_backward(g, a, b, [a.ndim - 1], [b.ndim - 1])


def _as_shape(x: Any, shape: tuple[int, ...]) -> Any:
    """``x`` (of as many elements) in ``shape``: unchanged if it has it, else through np.reshape's op."""
    if tuple(x.shape) == tuple(shape):
        return x
    if x.ndim == 1 and len(shape) == 0:
        return onp.squeeze(x, 0)
    if x.ndim == 0 and len(shape) == 1:
        return onp.expand_dims(x, 0)
    return onp.reshape(x, shape)


def _vdot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sum of a * b over every element, both flattened (they need as many elements, not one shape)."""
    return np.asarray(np.vdot(a, b))


def _vdot_backward(g: Any, a: Any, b: Any) -> tuple[Any, Any]:
    return g * _as_shape(b, a.shape), g * _as_shape(a, b.shape)


def _outer(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """out[i, j] = a.ravel()[i] * b.ravel()[j]."""
    return np.outer(a, b)


def _outer_backward(g: Any, a: Any, b: Any) -> tuple[Any, Any]:
    a_flat, b_flat = _as_shape(a, (a.size,)), _as_shape(b, (b.size,))
    return _as_shape(g @ b_flat, a.shape), _as_shape(a_flat @ g, b.shape)


def _cross_axes(a: Any, b: Any, out_ndim: int, axes: tuple[Any, Any, Any, Any]) -> tuple[int, int, int]:
    """axisa, axisb and axisc as negative axes of a, b and the output (``axis`` overrides all three), so that they
    point to the same axis in any array these broadcast with."""
    axisa, axisb, axisc, axis = axes
    if axis is not None:
        axisa = axisb = axisc = axis
    return (
        normalize_axes(axisa, a.ndim)[0] - a.ndim,
        normalize_axes(axisb, b.ndim)[0] - b.ndim,
        normalize_axes(axisc, out_ndim)[0] - out_ndim,
    )


def _cross(
    a: np.ndarray, b: np.ndarray, *, axisa: int = -1, axisb: int = -1, axisc: int = -1, axis: int | None = None
) -> np.ndarray:
    """The cross product of 3-vectors along axisa of a and axisb of b, placed along axisc (``axis``: all three),
    the other axes broadcast. NumPy 2 deprecated 2-vectors; opreg refuses them."""
    for name, x, ax in (("a", a, axisa if axis is None else axis), ("b", b, axisb if axis is None else axis)):
        if x.ndim == 0 or x.shape[normalize_axes(ax, x.ndim)[0]] != 3:
            raise ValueError(f"cross takes vectors of 3 elements; {name} has shape {x.shape} along axis {ax}")
    return np.cross(a, b, axisa=axisa, axisb=axisb, axisc=axisc, axis=axis)


def _cross_backward(g: Any, a: Any, b: Any, *, axisa: int, axisb: int, axisc: int, axis: int | None) -> tuple[Any, Any]:
    """<g, a x b> = <a, b x g> = <b, g x a>."""
    ka, kb, kc = _cross_axes(a, b, g.ndim, (axisa, axisb, axisc, axis))
    return onp.cross(b, g, axisa=kb, axisb=kc, axisc=ka), onp.cross(g, a, axisa=kc, axisb=ka, axisc=kb)


def _kron_layout(a: Any, b: Any) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """kron's shapes, the lower-dimensional operand's with leading 1s (NumPy's rule): a's as (a0, 1, a1, 1, ...),
    b's as (1, b0, 1, b1, ...), and the output's as (a0, b0, a1, b1, ...)."""
    ndim = max(a.ndim, b.ndim)
    a_shape = (1,) * (ndim - a.ndim) + tuple(a.shape)
    b_shape = (1,) * (ndim - b.ndim) + tuple(b.shape)
    a_split = tuple(d for pair in zip(a_shape, (1,) * ndim, strict=True) for d in pair)
    b_split = tuple(d for pair in zip((1,) * ndim, b_shape, strict=True) for d in pair)
    g_split = tuple(d for pair in zip(a_shape, b_shape, strict=True) for d in pair)
    return a_split, b_split, g_split


def _kron(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The Kronecker product: the block of a[i, j, ...] is a[i, j, ...] * b; operands of N dimensions, the one
    with fewer taking leading 1s."""
    return np.asarray(np.kron(a, b))


def _kron_backward(g: Any, a: Any, b: Any) -> tuple[Any, Any]:
    a_split, b_split, g_split = _kron_layout(a, b)
    blocks = _as_shape(g, g_split)
    ndim = len(g_split) // 2
    grad_a = onp.sum(blocks * _as_shape(b, b_split), axis=tuple(range(1, 2 * ndim, 2)))
    grad_b = onp.sum(blocks * _as_shape(a, a_split), axis=tuple(range(0, 2 * ndim, 2)))
    return _as_shape(grad_a, a.shape), _as_shape(grad_b, b.shape)


# --- samples and references ---------------------------------------------------------------------------------------


def _tensordot_samples(rng: np.random.Generator) -> list[Sample]:
    n = rng.standard_normal
    return [
        Sample(n((2, 3, 4)), n((3, 4, 2))),
        Sample(n((2, 3)), n((3, 4)), axes=1),
        Sample(n((2, 3)), n(4), axes=0),
        Sample(n((2, 3, 4)), n((4, 2, 3)), axes=((1, 0), (2, 1))),
        Sample(n((3, 4)), n((2, 3)), axes=((0,), (1,))),
        Sample(n((2, 3, 4)), n((4, 3, 2)), axes=((-1, 1), (0, 1))),
    ]


def _dot_samples(rng: np.random.Generator) -> list[Sample]:
    n = rng.standard_normal
    return [
        Sample(n((3, 4)), n((4, 2))),
        Sample(n(4), n(4)),
        Sample(n((2, 3, 4)), n(4)),
        Sample(n((2, 3)), n((2, 3, 4))),
        Sample(n(3), n((2, 3, 4))),
        Sample(n(()), n((2, 3))),
    ]


def _inner_samples(rng: np.random.Generator) -> list[Sample]:
    n = rng.standard_normal
    return [Sample(n(4), n(4)), Sample(n((2, 4)), n((3, 4))), Sample(n((2, 3, 4)), n(4)), Sample(n((2, 3)), n(()))]


def _cross_samples(rng: np.random.Generator) -> list[Sample]:
    n = rng.standard_normal
    return [
        Sample(n(3), n(3)),
        Sample(n((4, 3)), n(3)),
        Sample(n((3, 2)), n((2, 3)), axisa=0),
        Sample(n((3, 2)), n((4, 1, 3)), axisa=0, axisc=1),
        Sample(n((2, 3)), n((2, 3)), axis=1),
    ]


def _kron_samples(rng: np.random.Generator) -> list[Sample]:
    n = rng.standard_normal
    return [
        Sample(n((2, 3)), n((3, 2))),
        Sample(n(3), n((2, 2))),
        Sample(n((2, 1, 2)), n(3)),
        Sample(n(()), n((2, 2))),
        Sample(n(2), n(())),
    ]


def _torch_tensordot(torch: Any) -> Any:
    def tensordot(a: Any, b: Any, axes: Axes = 2) -> Any:
        a_axes, b_axes = _pairs(axes, a.ndim, b.ndim)
        return torch.tensordot(a, b, dims=(a_axes, b_axes))

    return tensordot


def _torch_dot(torch: Any) -> Any:
    def dot(a: Any, b: Any) -> Any:
        if a.ndim == 0 or b.ndim == 0:
            return a * b
        return torch.tensordot(a, b, dims=([a.ndim - 1], [max(b.ndim - 2, 0)]))

    return dot


def _torch_cross(torch: Any) -> Any:
    def cross(a: Any, b: Any, axisa: int = -1, axisb: int = -1, axisc: int = -1, axis: int | None = None) -> Any:
        if axis is not None:
            axisa = axisb = axisc = axis
        a, b = torch.broadcast_tensors(torch.movedim(a, axisa, -1), torch.movedim(b, axisb, -1))
        product = torch.linalg.cross(a, b, dim=-1)
        return torch.movedim(product, -1, axisc)

    return cross


def _torch_kron(torch: Any) -> Any:
    """torch.kron's definition in torch (the outer product with the axes interleaved): torch.kron itself raises on
    some views of its inputs (a stack, transposed), where its backward cannot view its gradient."""

    def kron(a: Any, b: Any) -> Any:
        n = max(a.ndim, b.ndim)
        a = a.reshape((1,) * (n - a.ndim) + tuple(a.shape))
        b = b.reshape((1,) * (n - b.ndim) + tuple(b.shape))
        outer = a.reshape([d for k in a.shape for d in (k, 1)]) * b.reshape([d for k in b.shape for d in (1, k)])
        return outer.reshape([x * y for x, y in zip(a.shape, b.shape, strict=True)])

    return kron


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="tensordot",
        inputs=("a", "b"),
        forward=_tensordot,
        backward=_tensordot_backward,
        sample_inputs=_tensordot_samples,
        numpy="tensordot",
        reference=_torch_tensordot,
    )
    register(
        name="dot",
        inputs=("a", "b"),
        forward=lambda a, b: np.asarray(np.dot(a, b)),
        backward=_dot_backward,
        sample_inputs=_dot_samples,
        doc="np.dot: a's last axis against b's second to last (its only one for 1-D b); a 0-d operand multiplies.",
        numpy="dot",
        reference=_torch_dot,
    )
    register(
        name="inner",
        inputs=("a", "b"),
        forward=lambda a, b: np.asarray(np.inner(a, b)),
        backward=_inner_backward,
        sample_inputs=_inner_samples,
        doc="np.inner: the last axes of a and b against each other; a 0-d operand multiplies.",
        numpy="inner",
        reference="torch.inner",
    )
    register(
        name="vdot",
        inputs=("a", "b"),
        forward=_vdot,
        backward=_vdot_backward,
        sample_inputs=lambda rng: [
            Sample(rng.standard_normal(4), rng.standard_normal(4)),
            Sample(rng.standard_normal((2, 3)), rng.standard_normal((2, 3))),
        ],
        numpy="vdot",
        reference=lambda torch: lambda a, b: torch.vdot(a.reshape(-1), b.reshape(-1)),
    )
    register(
        name="outer",
        inputs=("a", "b"),
        forward=_outer,
        backward=_outer_backward,
        sample_inputs=lambda rng: [
            Sample(rng.standard_normal(3), rng.standard_normal(4)),
            Sample(rng.standard_normal(()), rng.standard_normal(2)),
        ],
        numpy="outer",
        reference=lambda torch: lambda a, b: torch.outer(a.reshape(-1), b.reshape(-1)),
    )
    register(
        name="cross",
        inputs=("a", "b"),
        forward=_cross,
        backward=_cross_backward,
        sample_inputs=_cross_samples,
        numpy="cross",
        reference=_torch_cross,
    )
    register(
        name="kron",
        inputs=("a", "b"),
        forward=_kron,
        backward=_kron_backward,
        sample_inputs=_kron_samples,
        numpy="kron",
        reference=_torch_kron,
    )
