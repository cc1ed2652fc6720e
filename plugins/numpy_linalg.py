"""NumPy's ``numpy.linalg`` functions of one array output: inv, det, solve, cholesky, norm and pinv, each declaring
``numpy="linalg.<name>"`` (so ``opreg.numpy.linalg.inv`` and ``np.linalg.inv(tensor)`` reach it). Batched
(``..., M, M``) inputs as NumPy's.

Every gradient is written with these same ops and matmul, so it composes to any order:

- inv: ``-inv(A)^T g inv(A)^T`` from the output; det: ``g det(A) inv(A)^T`` (a singular A has a determinant of 0
  and a gradient, its adjugate, that this formula cannot reach: backward then raises, naming the op, rather than
  return a wrong number); solve: ``solve(A^T, g)`` for b and ``-solve(A^T, g) x^T`` for A.
- cholesky factors the symmetric part ``(A + A^T) / 2``, which is A for the symmetric input cholesky is for (NumPy
  reads only the lower triangle; JAX's ``cholesky`` symmetrizes as here). So its gradient is the standard
  symmetric one, PyTorch's: ``L^-T Phi(L^T gL) L^-1`` with Phi symmetrizing the lower triangle, halving the
  diagonal.
- norm: vector norms (``ord`` None or 2, 1, inf, -inf, or any finite p above 1) along an axis or all axes, and
  matrix norms ('fro', 1, -1, inf, -inf, 2, -2, 'nuc') over two axes. At a zero vector the p-norms' gradient is 0,
  and the 1-norm's at a zero element 0 (PyTorch's choices); the max (or min) of ``|x|`` shares the gradient evenly
  among ties, as ``torch.amax``. The 2-norm is computed scaled, as BLAS's nrm2 and torch's: no underflow to 0
  (NumPy's norm of 1e-200 is 0) nor overflow to inf. A p-norm's gradient is ``g sign(x) (|x| / norm)^(p - 1)``,
  bounded by g; p below 1 is refused (not a norm, and its slope at 0 is infinite).
- The matrix norms 2, -2 and 'nuc' are the largest singular value, the smallest and their sum: the gradient is
  ``U diag(w) Vh`` from the svd op (so it composes), w the derivative of that function of the singular values.
  Where it has none, the choice is the same as for the vector norms: singular values tied for the largest (or
  smallest) share it evenly (a subgradient, and the same whatever vectors LAPACK picks for them), and a singular
  value of 0 contributes nothing (as |x| at 0; 'nuc' at a singular matrix: the subgradient of least norm). Tied
  and 0 mean within a thousand roundings of the largest singular value (svd's tolerance: a computed svd of the
  identity rotated is not exactly tied). PyTorch gives LAPACK's vectors' ``u_1 v_1^T`` at a tie, and ``U Vh``
  over every singular value for 'nuc'.
- pinv (the Moore-Penrose pseudo-inverse) differentiates as PyTorch's ``pinv_backward``, from the output and the
  input with matmuls (so it composes): the derivative at constant rank. A full-rank matrix has a neighbourhood of
  full rank; at a rank-deficient one (rank decided by ``rcond`` times the largest singular value) it is the
  derivative along matrices of that rank, as in PyTorch and HIPS autograd: the pseudo-inverse itself jumps where
  the rank changes. ``rtol`` as NumPy's; its default None here means NumPy's default (``rcond`` 1e-15), not the
  ``max(M, N) * eps`` an explicit ``rtol=None`` gives NumPy: pass that value for it. ``hermitian=True`` computes on
  the symmetric part of a matrix that must be symmetric up to rounding, and its gradient is symmetric.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import (
    Register,
    Sample,
    constant,
    divide_by_count,
    hookimpl,
    matrix_ops,
    normalize_axes,
    restore_axes,
)


def _t(x: Any) -> Any:
    return onp.matrix_transpose(x)


# --- inv, det, solve, cholesky ------------------------------------------------------------------------------------


def _inv_backward(g: Any, x: Any, *, output: Any) -> tuple[Any]:
    inverse_t = _t(output)
    return (-(inverse_t @ g @ inverse_t),)


def _det_backward(g: Any, x: Any, *, output: Any) -> tuple[Any]:
    if (constant(output) == 0).any():
        raise ValueError(
            "det's gradient at a singular matrix (determinant 0) is its adjugate, which opreg computes as "
            "det * inv(x)^T only for invertible matrices"
        )
    scale = onp.expand_dims(g * output, (-2, -1))
    return (scale * _t(onp.linalg.inv(x)),)


def _solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x with a @ x = b; b is one vector (M,) or matrices (..., M, K), as NumPy 2 reads it."""
    return np.linalg.solve(a, b)


def _solve_backward(g: Any, a: Any, b: Any, *, output: Any) -> tuple[Any, Any]:
    vector = b.ndim == 1
    g2 = onp.expand_dims(g, -1) if vector else g
    x2 = onp.expand_dims(output, -1) if vector else output
    grad_b = onp.linalg.solve(_t(a), g2)
    grad_a = -(grad_b @ _t(x2))
    return grad_a, onp.squeeze(grad_b, -1) if vector else grad_b


def _cholesky(a: np.ndarray) -> np.ndarray:
    """The lower triangular L with L @ L^T = (A + A^T) / 2: A itself for a symmetric A."""
    return np.linalg.cholesky((a + np.swapaxes(a, -1, -2)) / 2)


def _cholesky_backward(g: Any, a: Any, *, output: Any) -> tuple[Any]:
    """PyTorch's (and Murray's) formula: ``L^-T Phi(L^T gL) L^-1``, Phi(X) = (tril(X) + tril(X, -1)^T) / 2.

    The triangles are constant masks, the triangular solves general ones (onp.linalg.solve), so it composes."""
    n = a.shape[-1]
    lower, strictly_lower = np.tril(np.ones((n, n), bool)), np.tril(np.ones((n, n), bool), -1)
    product = _t(output) @ g
    phi = (onp.where(lower, product, 0.0) + _t(onp.where(strictly_lower, product, 0.0))) * 0.5
    left = onp.linalg.solve(_t(output), phi)  # L^-T Phi
    return (_t(onp.linalg.solve(_t(output), _t(left))),)  # (L^-T (L^-T Phi)^T)^T = L^-T Phi L^-1


# --- norm -------------------------------------------------------------------------------------------------------------

VECTOR_ORDS = (None, 2, 1, math.inf, -math.inf)
MATRIX_ORDS = (None, "fro", 1, -1, math.inf, -math.inf, 2, -2, "nuc")
#: The matrix norms of the singular values: the largest, the smallest, their sum.
SINGULAR_ORDS = (2, -2, "nuc")


def _p_norm(ord: Any) -> bool:
    """Whether ``ord`` is a vector p-norm's p other than 1 and 2: a finite real number above 1 (below it,
    ``sum(|x|^p)^(1/p)`` is not a norm, and its slope at x_i = 0 is infinite)."""
    return bool(
        isinstance(ord, int | float | np.integer | np.floating)
        and not isinstance(ord, bool)
        and math.isfinite(ord)
        and ord > 1
    )


def _norm_kind(x: Any, ord: Any, axis: Any) -> tuple[str, tuple[int, ...]]:
    """("vector" or "matrix", the reduced axes, as NumPy reads them), refusing what opreg does not differentiate."""
    if axis is None:
        if ord is None:
            return "vector", tuple(range(x.ndim))  # the 2-norm of every element, whatever the shape
        if x.ndim not in (1, 2):
            raise ValueError(f"norm with ord={ord!r} and axis=None needs a 1-D or 2-D input, not {x.ndim}-D")
        axis = tuple(range(x.ndim))
    axes = (axis,) if isinstance(axis, int | np.integer) else tuple(axis)
    if len(axes) == 1:
        if ord not in VECTOR_ORDS and not _p_norm(ord):
            raise ValueError(f"opreg's vector norm takes ord in {VECTOR_ORDS} or a finite number above 1, not {ord!r}")
        return "vector", normalize_axes(axes, x.ndim)
    if len(axes) == 2:
        if ord not in MATRIX_ORDS:
            raise ValueError(f"opreg's matrix norm takes ord in {MATRIX_ORDS}, not {ord!r}")
        row, col = (a % x.ndim for a in axes)
        normalize_axes(axes, x.ndim)  # out of bounds or repeated: NumPy's error
        return "matrix", (row, col)
    raise ValueError(f"norm takes one axis (a vector norm) or two (a matrix norm), not axis={axis!r}")


def _norm(x: np.ndarray, *, ord: Any = None, axis: Any = None, keepdims: bool = False) -> np.ndarray:
    """np.linalg.norm: vector norms (ord None/2, 1, inf, -inf) and matrix norms ('fro', 1, -1, inf, -inf).

    The 2-norm (and 'fro') is scaled by the largest magnitude first, as BLAS's nrm2 and torch compute it: NumPy's
    ``sqrt(sum(x * x))`` is 0 for x = 1e-200 and inf for 1e200, and a norm of 0 would get gradient 0 where the
    true one is x / |x|. So are the other p-norms, whose ``|x|^p`` underflows sooner."""
    kind, axes = _norm_kind(x, ord, axis)
    two = ord in (None, 2, "fro") and (kind, ord) != ("matrix", 2)
    if x.size and np.issubdtype(x.dtype, np.floating) and (two or (kind == "vector" and _p_norm(ord))):
        scale = np.max(np.abs(x), axis=axes, keepdims=True)
        if np.isfinite(scale).all():
            safe = np.where(scale == 0, 1, scale)
            if two:
                out = scale * np.sqrt(np.sum(np.square(x / safe), axis=axes, keepdims=True))
            else:  # |x|^p underflows long before |x| does (1e-15 ** 3 in float32): scaled as the 2-norm
                p = float(ord)
                out = scale * np.sum(np.abs(x / safe) ** p, axis=axes, keepdims=True) ** (1 / p)
            return np.asarray(out if keepdims else np.squeeze(out, axis=axes))
    return np.asarray(np.linalg.norm(x, ord=ord, axis=axis, keepdims=keepdims))


def _shared(g: Any, values: np.ndarray, extreme: np.ndarray, axes: tuple[int, ...]) -> Any:
    """g split evenly among the elements of ``values`` equal to their ``extreme`` along ``axes``, 0 elsewhere."""
    chosen = values == extreme
    return onp.where(chosen, divide_by_count(g, chosen.sum(axis=axes, keepdims=True)), 0.0)


def _norm_backward(g: Any, x: Any, *, ord: Any, axis: Any, keepdims: bool, output: Any) -> tuple[Any]:
    kind, axes = _norm_kind(x, ord, axis)
    g = restore_axes(g, x, axes, keepdims)
    if kind == "matrix" and ord in SINGULAR_ORDS:
        return (_singular_norm_backward(g, x, ord, axes),)
    sign = np.sign(constant(x))  # a constant: |x| = x * sign, whose derivative is sign (0 at 0)
    magnitude = np.abs(constant(x))
    if (kind == "vector" and ord in (None, 2)) or (kind == "matrix" and ord in (None, "fro")):
        norm = restore_axes(output, x, axes, keepdims)
        zero = constant(norm) == 0
        return (onp.where(zero, 0.0, g / onp.where(zero, 1.0, norm)) * x,)
    if kind == "vector" and ord == 1:
        return (g * sign,)
    if kind == "vector" and _p_norm(ord):  # g sign(x) (|x| / norm)^(p - 1), 0 at a zero vector (as the 2-norm's)
        norm = restore_axes(output, x, axes, keepdims)
        zero = constant(norm) == 0
        ratio = onp.abs(x) / onp.where(zero, 1.0, norm)
        return (onp.where(zero, 0.0, g * ratio ** (float(ord) - 1)) * sign,)
    if kind == "vector":  # inf, -inf: the largest or smallest |x|
        pick = np.max if ord > 0 else np.min
        return (_shared(g, magnitude, pick(magnitude, axis=axes, keepdims=True), axes) * sign,)
    row, col = axes  # ord 1 / -1: columns' sums (over rows), their max / min; inf / -inf: rows' sums
    summed, picked = (row, col) if ord in (1, -1) else (col, row)
    sums = magnitude.sum(axis=summed, keepdims=True)
    pick = np.max if ord > 0 else np.min
    return (_shared(g, sums, pick(sums, axis=picked, keepdims=True), (picked,)) * sign,)


def _singular_weights(values: np.ndarray, ord: Any) -> np.ndarray:
    """The derivative of norm ``ord`` (2, -2, 'nuc') with respect to each singular value (``values``, descending,
    along the last axis): 1 for each, for 'nuc'; for 2 and -2 an even share among those tied for the largest or
    smallest; 0 for a singular value of 0. Tied and 0 are within a thousand roundings of the largest singular
    value, the tolerance of svd's own check (see the module's docstring)."""
    tolerance = 1e3 * np.finfo(values.dtype).eps * values.max(axis=-1, keepdims=True, initial=0.0)
    nonzero = values > tolerance
    if ord == "nuc":
        every: np.ndarray = nonzero.astype(values.dtype)
        return every
    extreme = values[..., :1] if ord == 2 else values[..., -1:]
    chosen = (np.abs(values - extreme) <= tolerance) & nonzero
    counts = np.maximum(chosen.sum(axis=-1, keepdims=True), 1)
    weights: np.ndarray = chosen / counts.astype(values.dtype)
    return weights.astype(values.dtype)


def _singular_norm_backward(g: Any, x: Any, ord: Any, axes: tuple[int, ...]) -> Any:
    """``g U diag(w) Vh`` of each matrix (over ``axes``, moved last and back), w :func:`_singular_weights`."""
    row, col = axes
    matrices = onp.moveaxis(x, (row, col), (-2, -1))
    u, s, vh = onp.linalg.svd(matrices, full_matrices=False)
    weights = _singular_weights(constant(s), ord)
    grad = (u * weights[..., None, :]) @ vh * onp.moveaxis(g, (row, col), (-2, -1))
    return onp.moveaxis(grad, (-2, -1), (row, col))


# --- pinv -------------------------------------------------------------------------------------------------------------


def _pinv(a: np.ndarray, *, rcond: Any = None, hermitian: bool = False, rtol: Any = None) -> np.ndarray:
    """The Moore-Penrose pseudo-inverse of each matrix (..., M, N) -> (..., N, M), as np.linalg.pinv: singular
    values up to ``rcond`` (or ``rtol``) times the largest count as 0."""
    if a.ndim < 2:
        raise ValueError(f"pinv needs matrices (..., m, n), got shape {a.shape}")
    if hermitian:
        a = _checked_symmetric_part(a)
    if rtol is not None:
        return np.linalg.pinv(a, rcond=rcond, hermitian=hermitian, rtol=rtol)
    return np.linalg.pinv(a, rcond=rcond, hermitian=hermitian)


def _checked_symmetric_part(a: np.ndarray) -> np.ndarray:
    """``(a + a^T) / 2`` of matrices symmetric up to rounding (1e-4 of the largest entry, as eigh's check)."""
    if a.shape[-1] != a.shape[-2]:
        raise ValueError(f"pinv with hermitian=True needs square matrices, got shape {a.shape}")
    asymmetry = np.abs(a - np.swapaxes(a, -1, -2)).max(initial=0.0)
    if asymmetry > 1e-4 * max(np.abs(a).max(initial=0.0), np.finfo(np.float32).tiny):
        raise ValueError(
            f"pinv with hermitian=True differentiates symmetric matrices only, and this one differs from its "
            f"transpose by up to {asymmetry:.3g}; pass (a + a.T) / 2 if that is the matrix meant"
        )
    symmetric: np.ndarray = (a + np.swapaxes(a, -1, -2)) / 2
    return symmetric


def _pinv_backward(g: Any, a: Any, *, output: Any, hermitian: bool) -> tuple[Any]:
    """PyTorch's ``pinv_backward``: the derivative of A+ at constant rank, from A+ and A (the products ordered to
    keep the smaller dimension inside)."""
    if hermitian:
        a = (a + _t(a)) / 2
    m, n = a.shape[-2], a.shape[-1]
    p, ph, gh = output, _t(output), _t(g)
    if m <= n:
        k = gh @ p
        k_ph = k @ ph
        grad = -_t(p @ k) + k_ph - (a @ p) @ k_ph + (ph @ p) @ (gh - k @ a)
    else:
        k = p @ gh
        ph_k = ph @ k
        grad = -_t(k @ p) + (gh - a @ k) @ p @ ph + ph_k - ph_k @ p @ a
    return ((grad + _t(grad)) / 2 if hermitian else grad,)


# --- samples ----------------------------------------------------------------------------------------------------------


def _well_conditioned(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Square matrices far from singular: standard normal plus 3 on the diagonal."""
    return rng.standard_normal(shape) + 3 * np.eye(shape[-1])


def _positive_definite(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    b = rng.standard_normal(shape)
    return b @ np.swapaxes(b, -1, -2) + shape[-1] * np.eye(shape[-1])


def _solve_samples(rng: np.random.Generator) -> list[Sample]:
    n = rng.standard_normal
    a, batch = _well_conditioned(rng, (3, 3)), _well_conditioned(rng, (2, 3, 3))
    return [
        Sample(a, n(3)),
        Sample(a, n((3, 2))),
        Sample(batch, n(3)),
        Sample(batch, n((2, 3, 4))),
        Sample(a, n((2, 3, 1))),
        Sample(_well_conditioned(rng, (2, 2, 2)), n((2, 2))),  # b (2, 2): a matrix to NumPy 2, not 2 vectors
    ]


def _norm_samples(rng: np.random.Generator) -> list[Sample]:
    """Values distinct in magnitude (no ties of |x| nor of sums of |x|, no zeros) for every ord and axis."""
    magnitude = rng.permutation(24).reshape(2, 3, 4) * 0.25 + 0.5 + rng.uniform(0.0, 0.1, (2, 3, 4))
    x = rng.choice([-1.0, 1.0], (2, 3, 4)) * magnitude
    settings: list[dict[str, Any]] = [
        {},
        {"axis": 1},
        {"axis": -1, "ord": 1, "keepdims": True},
        {"axis": 0, "ord": math.inf},
        {"axis": 2, "ord": -math.inf},
        {"axis": 1, "ord": 3},
        {"axis": -1, "ord": 2.5, "keepdims": True},
        {"axis": (0, 2)},
        {"axis": (2, 1), "ord": "fro", "keepdims": True},
        {"axis": (1, 2), "ord": 1},
        {"axis": (2, 0), "ord": -1},
        {"axis": (1, 2), "ord": math.inf},
        {"axis": (-1, -2), "ord": -math.inf, "keepdims": True},
    ]
    samples = [Sample(x, **s) for s in settings]
    return [
        *samples,
        Sample(x[0], ord=1),
        Sample(x[0, 0], ord=math.inf),
        Sample(x[0], ord="fro"),
        Sample(_spread(rng, 3, 4), ord=2),
        Sample(_spread(rng, 2, 3, 4), ord=-2, axis=(2, 1)),
        Sample(np.moveaxis(_spread(rng, 3, 2, 4), 0, 1), ord="nuc", axis=(0, 2), keepdims=True),
    ]


def _spread(rng: np.random.Generator, *shape: int, symmetric: bool = False) -> np.ndarray:
    """Matrices of ``shape`` whose singular values are spread apart (1, 2, 3, ... plus up to 0.3): the derivative
    of the singular vectors divides by their differences, and for rectangular ones by the values themselves.
    ``symmetric``: square ones, of eigenvalues of alternating signs."""
    m, n = shape[-2:]
    k = min(m, n)
    u, _ = np.linalg.qr(rng.standard_normal((*shape[:-2], m, k)))
    v, _ = np.linalg.qr(rng.standard_normal((*shape[:-2], n, k)))
    s = np.arange(k, 0, -1) + rng.uniform(0.0, 0.3, (*shape[:-2], k))
    if symmetric:
        v = u * (-1.0) ** np.arange(k)
    matrices: np.ndarray = (u * s[..., None, :]) @ np.swapaxes(v, -1, -2)
    return matrices


def _pinv_samples(rng: np.random.Generator) -> list[Sample]:
    n = rng.standard_normal
    low_rank = n((4, 2)) @ n((2, 3))  # rank 2: the derivative at constant rank
    return [
        Sample(n((3, 3)) + 2 * np.eye(3)),
        Sample(n((4, 2))),
        Sample(n((2, 2, 3))),
        Sample(low_rank, rcond=1e-4),  # the cutoff above rounding and finite differences (rank 2 for both)
        Sample(_spread(rng, 3, 3, symmetric=True), hermitian=True),
    ]


def _torch_pinv(torch: Any) -> Any:
    def pinv(a: Any, rcond: Any = None, hermitian: bool = False, rtol: Any = None) -> Any:
        cutoff = rcond if rcond is not None else rtol if rtol is not None else 1e-15
        return torch.linalg.pinv((a + a.mT) / 2 if hermitian else a, rtol=cutoff, hermitian=hermitian)

    return pinv


def _torch_norm(torch: Any) -> Any:
    """torch.linalg.norm; a vector p-norm (p not 1, 2, inf) of a floating vector scaled by its largest magnitude
    first, as opreg's forward computes it: torch's ``|x|^p`` underflows (1e-15 ** 4.5 in float32), and its gradient
    is then NaN where the norm is not 0."""

    def norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:
        vector = x.ndim == 1 or isinstance(axis, int)
        if not (vector and _p_norm(ord) and x.is_floating_point() and x.numel()):
            return torch.linalg.norm(x, ord=ord, dim=axis, keepdim=keepdims)
        dim = 0 if axis is None else axis
        scale = x.detach().abs().amax(dim=dim, keepdim=True)
        scale = torch.where(scale == 0, torch.ones_like(scale), scale)
        scaled = torch.linalg.norm(x / scale, ord=ord, dim=dim, keepdim=True) * scale
        return scaled if keepdims else scaled.squeeze(dim)

    return norm


def _torch_solve(torch: Any) -> Any:
    """torch.linalg.solve reads b of shape a.shape[:-1] as vectors, NumPy 2 only a 1-D b: a matrix b is first
    broadcast to a's batch axes, which torch cannot mistake for vectors."""

    def solve(a: Any, b: Any) -> Any:
        if b.ndim == 1:
            return torch.linalg.solve(a, b)
        batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        return torch.linalg.solve(a, b.expand(*batch, *b.shape[-2:]))

    return solve


def _torch_cholesky(torch: Any) -> Any:
    return lambda a: torch.linalg.cholesky((a + a.mT) / 2)


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="inv",
        inputs=("x",),
        forward=np.linalg.inv,
        backward=_inv_backward,
        sample_inputs=lambda rng: [Sample(_well_conditioned(rng, (3, 3))), Sample(_well_conditioned(rng, (2, 4, 4)))],
        doc="The inverse of a square matrix (or of each in a batch).",
        numpy="linalg.inv",
        reference="torch.linalg.inv",
        batch=matrix_ops(2),
    )
    register(
        name="det",
        inputs=("x",),
        forward=lambda x: np.asarray(np.linalg.det(x)),
        backward=_det_backward,
        sample_inputs=lambda rng: [Sample(_well_conditioned(rng, (3, 3))), Sample(_well_conditioned(rng, (2, 2, 2)))],
        doc="The determinant of a square matrix (or of each in a batch); backward needs it invertible.",
        numpy="linalg.det",
        reference="torch.linalg.det",
        batch=matrix_ops(2),
    )
    register(
        name="solve",
        inputs=("a", "b"),
        forward=_solve,
        backward=_solve_backward,
        sample_inputs=_solve_samples,
        numpy="linalg.solve",
        reference=_torch_solve,
    )
    register(
        name="cholesky",
        inputs=("a",),
        forward=_cholesky,
        backward=_cholesky_backward,
        sample_inputs=lambda rng: [Sample(_positive_definite(rng, (3, 3))), Sample(_positive_definite(rng, (2, 4, 4)))],
        numpy="linalg.cholesky",
        reference=_torch_cholesky,
        batch=matrix_ops(2),
    )
    register(
        name="norm",
        inputs=("x",),
        forward=_norm,
        backward=_norm_backward,
        sample_inputs=_norm_samples,
        numpy="linalg.norm",
        reference=_torch_norm,
    )
    register(
        name="pinv",
        inputs=("a",),
        forward=_pinv,
        backward=_pinv_backward,
        sample_inputs=_pinv_samples,
        numpy="linalg.pinv",
        reference=_torch_pinv,
        batch=matrix_ops(2),
    )
