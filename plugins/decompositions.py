"""Matrix decompositions: ``slogdet`` (sign and log|det|), ``eigh`` (eigenvalues and eigenvectors of a symmetric
matrix), ``eigvalsh`` (its eigenvalues alone), ``svd`` and ``svdvals`` (singular values), ``qr``. Each works on
stacks of matrices (``(..., m, n)``), as NumPy's ``linalg`` does.

Edge cases, each an error rather than a wrong number:

* ``slogdet``'s backward needs the inverse (the ``inv`` op of plugins/numpy_linalg.py), and so raises NumPy's
  ``LinAlgError`` at a matrix LAPACK finds singular: log|det| of a singular matrix is -inf, and has no
  derivative. A matrix singular only up to rounding gives huge values, as in NumPy and PyTorch: its condition
  number is the user's to watch.
* ``eigh`` and ``eigvalsh`` are NumPy's functions exactly: they read one triangle of the input (``UPLO="L"``, the
  lower, by default; ``"U"`` the upper) as the symmetric matrix it stands for, and ignore the other. Their
  gradient is that function's: the symmetric matrix's gradient G (PyTorch's formula) folded onto the triangle
  read, ``tril(G + G.T) - diag(G)``, and 0 on the triangle ignored. On a symmetric input built symmetrically (``B @
  B.T``, ``(L + L.T) / 2``) that is the same as PyTorch's, which assumes every perturbation symmetric; for one
  that is not (a gradient check's, or a matrix whose upper triangle is its own variable) it is the right one.
  The eigenvectors' derivative divides by the gaps between eigenvalues: where two coincide it is undefined, and
  backward raises unless no gradient reached the eigenvectors. The ascending eigenvalues themselves are not
  differentiable where two coincide either (they cross there); their gradient is then the one the eigenvectors
  LAPACK returned give, as torch's is: exact for any function that treats equal eigenvalues alike (their sum,
  the trace, a norm of them).
* ``svd`` (``U, S, Vh``) is differentiable for ``full_matrices=False`` (any M, N) and for square input; with
  ``full_matrices=True`` and M != N the columns of U past min(M, N) (the rows of Vh past it) are any orthonormal
  completion, with no derivative: backward raises if a gradient reached them, and otherwise is the reduced one
  (only S used, say). The derivative of U and Vh divides by ``s_j^2 - s_i^2``, and for M != N by the singular
  values themselves: it is undefined where two singular values coincide (or, in the rectangular part, one is 0).
  PyTorch returns inf or NaN there; opreg raises, naming the singular values, unless no gradient reached the
  vectors of either value of the pair (all zeros in gU's columns and gVh's rows i and j): the spectral norm's
  gradient ``u_1 v_1^T``, differentiated again, never reaches the other pairs, whose coincidence then does not
  matter (their term is 0 near this matrix too). A term that is 0 at this matrix only, by cancellation, may have a
  limit other than 0, and raises as well. ``hermitian=True`` reads a symmetric matrix (one that is not is an
  error) and computes on its symmetric part.
* ``np.linalg.svd(a, compute_uv=False)`` is ``np.linalg.svdvals(a)``, the op ``svdvals``, whose gradient
  ``U diag(g) Vh`` is finite for any matrix, as eigh's eigenvalues' (PyTorch's too). Where singular values
  coincide (0 among them: a matrix not of full rank) and ``g`` differs across them, it depends on the vectors LAPACK
  picked for them: the sorted singular values have no derivative where two cross, as sort's values where two tie.
  A function of them symmetric in the tied ones (their sum, the nuclear norm; the sum of squares) is unaffected.
* ``qr`` (``Q, R``): modes 'reduced' (the default) and 'complete'. The derivative is PyTorch's (M >= N, and for
  M < N the split A = [X | Y] with X square); it needs R invertible (A of full rank), as the solve in it raises
  otherwise. With mode 'complete' and M > N the columns of Q past N have no derivative: backward raises if a gradient
  reached them. Modes 'r' and 'raw' are refused, naming the mode (R alone: ``np.linalg.qr(a)[1]``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Register, Sample, constant, hookimpl, matrix_ops, op

_inv = op("inv")

#: How far from symmetric (relative to the largest entry) svd's input with ``hermitian=True`` may be: rounding and
#: the finite differences of gradient checks (1e-6) stay inside, a matrix that is not symmetric does not.
SYMMETRY_TOLERANCE = 1e-4


def _mT(x: Any) -> Any:  # NumPy's own name for it
    return onp.matrix_transpose(x)


def _slogdet(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sign, log|det|) of each square matrix, as np.linalg.slogdet; the sign takes no gradient."""
    sign, logabsdet = np.linalg.slogdet(a)
    return np.asarray(sign), np.asarray(logabsdet)


def _slogdet_backward(g: tuple[Any, Any], a: Any) -> tuple[Any]:
    """d log|det A| = tr(A^-1 dA): A's gradient is g * A^-T (g[0], the sign's, is None: it takes none)."""
    g_logabsdet = g[1]
    return (onp.expand_dims(g_logabsdet, (-2, -1)) * _mT(_inv(a)),)


def _symmetric_part(a: np.ndarray, what: str) -> np.ndarray:
    """``(a + a^T) / 2`` of square matrices ``a`` that are symmetric up to rounding; an error otherwise (see the
    module's docstring): ``what`` (svd with ``hermitian=True``) reads one triangle, and would differentiate another
    matrix."""
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"{what} needs square matrices (..., n, n), got shape {a.shape}")
    asymmetry = np.abs(a - np.swapaxes(a, -1, -2)).max(initial=0.0)
    if asymmetry > SYMMETRY_TOLERANCE * max(np.abs(a).max(initial=0.0), np.finfo(np.float32).tiny):
        raise ValueError(
            f"{what} differentiates symmetric matrices only, and this one differs from its transpose by up to "
            f"{asymmetry:.3g}; pass (a + a.T) / 2 if that is the matrix meant"
        )
    symmetric: np.ndarray = (a + np.swapaxes(a, -1, -2)) / 2
    return symmetric


def _triangle(uplo: str) -> Any:
    """The function keeping the triangle ``UPLO`` names (with the diagonal)."""
    if uplo not in ("L", "U"):
        raise ValueError(f"UPLO must be 'L' or 'U', not {uplo!r}")
    return onp.tril if uplo == "L" else onp.triu


def _eigh(a: np.ndarray, *, UPLO: str = "L") -> tuple[np.ndarray, np.ndarray]:
    """(eigenvalues ascending, eigenvectors as columns) of the symmetric matrix each input's ``UPLO`` triangle
    stands for, as np.linalg.eigh."""
    _triangle(UPLO)
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"eigh needs square matrices (..., n, n), got shape {a.shape}")
    w, v = np.linalg.eigh(a, UPLO="L" if UPLO == "L" else "U")
    return w, v


def _eigvalsh(a: np.ndarray, *, UPLO: str = "L") -> np.ndarray:
    """The eigenvalues, ascending, as np.linalg.eigvalsh."""
    return _eigh(a, UPLO=UPLO)[0]


def _fold(grad: Any, uplo: str) -> Any:
    """The gradient of the entries of the triangle read, from ``grad``, the gradient with respect to the symmetric
    matrix they stand for: each entry off the diagonal stands for two."""
    eye = np.eye(grad.shape[-1], dtype=constant(grad).dtype)
    return _triangle(uplo)(grad + _mT(grad)) - grad * eye


def _eigh_backward(g: tuple[Any, Any], a: Any, *, UPLO: str, output: tuple[Any, Any]) -> tuple[Any]:
    """PyTorch's formula for a symmetric matrix: its gradient is V (diag(gw) + skew(V^T gV) / E) V^T, with
    E_ij = w_j - w_i off the diagonal; then folded onto the triangle read (see the module's docstring)."""
    gw, gv = g
    w, v = output
    n = a.shape[-1]
    eye = np.eye(n, dtype=np.result_type(constant(w).dtype, np.float32))
    inner = eye * onp.expand_dims(gw, -2)
    if np.any(constant(gv) != 0):
        values = constant(w)
        gaps = np.where(np.eye(n, dtype=bool), np.inf, np.abs(values[..., None, :] - values[..., :, None]))
        scale = max(float(np.abs(values).max(initial=0.0)), 1.0)
        if gaps.size and gaps.min() <= 1e3 * np.finfo(values.dtype).eps * scale:
            raise ValueError(
                "the eigenvectors' derivative is undefined where eigenvalues coincide, and two of these eigenvalues "
                f"are equal to within {gaps.min():.3g}; eigh's gradient needs distinct eigenvalues (the "
                "eigenvalues' own gradient is defined: use only them, or perturb the matrix)"
            )
        vtgv = _mT(v) @ gv
        skew = (vtgv - _mT(vtgv)) / 2
        gaps_w = onp.expand_dims(w, -2) - onp.expand_dims(w, -1) + eye  # 1 on the diagonal: nothing divides by 0
        inner = inner + skew * (1 - eye) / gaps_w
    return (_fold(v @ inner @ _mT(v), UPLO),)


def _eigvalsh_backward(g: Any, a: Any, *, UPLO: str) -> tuple[Any]:
    """d w_k = v_k^T dA v_k: the symmetric matrix's gradient is V diag(g) V^T, with V from the eigh op (so that the
    derivative can be differentiated again); folded onto the triangle read."""
    _, v = onp.linalg.eigh(a, UPLO=UPLO)
    return (_fold((v * onp.expand_dims(g, -2)) @ _mT(v), UPLO),)


# --- svd, svdvals --------------------------------------------------------------------------------------------------


def _matrices(a: np.ndarray, what: str) -> None:
    if a.ndim < 2:
        raise ValueError(f"{what} needs matrices (..., m, n), got shape {a.shape}")


def _svd(
    a: np.ndarray, *, full_matrices: bool = True, hermitian: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U, S, Vh) with A = U diag(S) Vh, S descending, as np.linalg.svd (``compute_uv=False``: the op svdvals)."""
    _matrices(a, "svd")
    if hermitian:
        a = _symmetric_part(a, "svd with hermitian=True")
    u, s, vh = np.linalg.svd(a, full_matrices=full_matrices, hermitian=hermitian)
    return u, s, vh


def _numpy_svd(call: Any, a: Any, full_matrices: bool = True, compute_uv: bool = True, hermitian: bool = False) -> Any:
    """np.linalg.svd's signature: ``compute_uv=False`` returns the singular values alone, one array where the
    other calls return three, as np.linalg.svdvals does: the op svdvals (an op's outputs are fixed)."""
    if not compute_uv:
        return op("svdvals")(a, hermitian=hermitian)
    return call(a, full_matrices=full_matrices, hermitian=hermitian)


def _svdvals(a: np.ndarray, *, hermitian: bool = False) -> np.ndarray:
    """The singular values of each matrix, descending: np.linalg.svdvals, and np.linalg.svd with compute_uv=False
    (``hermitian=True``: of a symmetric matrix, as svd's)."""
    _matrices(a, "svdvals")
    if hermitian:
        a = _symmetric_part(a, "svdvals with hermitian=True")
    return np.asarray(np.linalg.svd(a, compute_uv=False, hermitian=hermitian))


def _svdvals_backward(g: Any, a: Any, *, hermitian: bool) -> tuple[Any]:
    """d s_i = u_i^T dA v_i: A's gradient is U diag(g) Vh, from the reduced svd (recorded, so it composes)."""
    u, _, vh = onp.linalg.svd(a, full_matrices=False, hermitian=hermitian)
    grad = (u * onp.expand_dims(g, -2)) @ vh
    return ((grad + _mT(grad)) / 2 if hermitian else grad,)


def singular_tolerance(values: np.ndarray) -> np.ndarray:
    """Per matrix (``values``: its singular values along the last axis, kept as an axis of 1), how close two
    singular values may be before they count as equal, and how small one before it counts as 0: a thousand
    roundings of the largest."""
    largest = np.abs(values).max(axis=-1, keepdims=True, initial=0.0)
    tolerance: np.ndarray = 1e3 * np.finfo(values.dtype).eps * largest
    return tolerance


def _undefined(detail: str) -> ValueError:
    return ValueError(
        f"svd's gradient through U and Vh is undefined here: {detail}; the singular values' own gradient is "
        "defined (use S alone, or np.linalg.svdvals), or perturb the matrix"
    )


def _svd_backward(
    g: tuple[Any, Any, Any], a: Any, *, output: tuple[Any, Any, Any], full_matrices: bool, hermitian: bool
) -> tuple[Any]:
    """PyTorch's ``svd_backward`` (see the module's docstring), written with registered ops."""
    gu, gs, gvh = g
    u, s, vh = output
    m, n = a.shape[-2], a.shape[-1]
    k = min(m, n)
    if full_matrices and m != n:
        if np.any(constant(gu)[..., :, k:] != 0) or np.any(constant(gvh)[..., k:, :] != 0):
            raise ValueError(
                f"svd with full_matrices=True of {m}x{n} matrices: a gradient reached the columns of U (rows of Vh) "
                f"past the first {k}, which are any orthonormal completion and have no derivative; use "
                "full_matrices=False"
            )
        u, gu, vh, gvh = u[..., :, :k], gu[..., :, :k], vh[..., :k, :], gvh[..., :k, :]
    grad = _svd_grad(gu, gs, gvh, u, s, vh, m, n)
    return ((grad + _mT(grad)) / 2 if hermitian else grad,)


def _svd_grad(gu: Any, gs: Any, gvh: Any, u: Any, s: Any, vh: Any, m: int, n: int) -> Any:
    """A's gradient from the reduced factors' gradients:
    ``U [(skew(U^T gU) S + S skew(Vh gVh^T)) / E + diag(gS)] Vh``, E_ij = s_j^2 - s_i^2, plus for M > N
    ``(I - U U^T) gU S^-1 Vh`` and for M < N ``U S^-1 gVh (I - Vh^T Vh)``."""
    uses_u, uses_v = bool(np.any(constant(gu) != 0)), bool(np.any(constant(gvh) != 0))
    if not (uses_u or uses_v):
        return (u * onp.expand_dims(gs, -2)) @ vh
    values = constant(s)
    k = values.shape[-1]
    eye = np.eye(k, dtype=bool)
    tolerance = singular_tolerance(values)
    numerator: Any = 0.0
    if uses_u:
        ugu = _mT(u) @ gu
        numerator = numerator + (ugu - _mT(ugu)) * onp.expand_dims(s, -2)
    if uses_v:
        vgv = vh @ _mT(gvh)
        numerator = numerator + onp.expand_dims(s, -1) * (vgv - _mT(vgv))
    # Where two singular values coincide the term divides 0 by 0 (or more by 0), and its limit is not known from
    # this point alone: it is 0 only for a pair whose vectors no gradient reached (a column of gU and a row of
    # gVh that are all zeros, for every matrix near this one), and undefined otherwise.
    reached = np.any(constant(gu) != 0, axis=-2) | np.any(constant(gvh) != 0, axis=-1)
    gaps = np.abs(values[..., None, :] - values[..., :, None])
    coincide = ~eye & (gaps <= tolerance[..., None])
    if np.any(coincide & (reached[..., :, None] | reached[..., None, :])):
        close = np.nonzero(coincide & (reached[..., :, None] | reached[..., None, :]))
        i, j = int(close[-2][0]), int(close[-1][0])
        where = tuple(int(c[0]) for c in close[:-2])
        raise _undefined(
            f"singular values {i} and {j} coincide ({values[(*where, i)]:.6g} and {values[(*where, j)]:.6g}), and "
            "the derivative of their vectors divides by s_j^2 - s_i^2"
        )
    squares = s * s
    differences = onp.expand_dims(squares, -2) - onp.expand_dims(squares, -1)
    skip = eye | coincide  # the diagonal (0 / 1, PyTorch's) and coinciding pairs no gradient reached
    inner = onp.where(skip, 0.0, numerator / onp.where(skip, 1.0, differences))
    inner = inner + eye * onp.expand_dims(gs, -2)
    small = values <= tolerance
    if m > n and uses_u:
        if np.any(small[..., None, :] & (constant(gu) != 0)):
            raise _undefined(
                f"a singular value is 0 (a {m}x{n} matrix not of full rank), and for {m}x{n} matrices the derivative "
                "divides by the singular values"
            )
        scaled = gu / onp.expand_dims(onp.where(small, 1.0, s), -2)
        grad = u @ inner + scaled - u @ (_mT(u) @ scaled)
        return grad @ vh
    if m < n and uses_v:
        if np.any(small[..., :, None] & (constant(gvh) != 0)):
            raise _undefined(
                f"a singular value is 0 (a {m}x{n} matrix not of full rank), and for {m}x{n} matrices the derivative "
                "divides by the singular values"
            )
        scaled = gvh / onp.expand_dims(onp.where(small, 1.0, s), -1)
        grad = inner @ vh + scaled - (scaled @ _mT(vh)) @ vh
        return u @ grad
    return u @ inner @ vh


# --- qr ----------------------------------------------------------------------------------------------------------

QR_MODES = ("reduced", "complete")


def _qr(a: np.ndarray, *, mode: str = "reduced") -> tuple[np.ndarray, np.ndarray]:
    """(Q, R) with A = Q R, Q orthonormal columns and R upper triangular, as np.linalg.qr; modes 'reduced' and
    'complete' ('r' and 'raw' are refused: see the module's docstring)."""
    if mode not in QR_MODES:
        raise ValueError(
            f"qr's mode={mode!r} is not supported: opreg's qr returns (Q, R) with mode 'reduced' or 'complete' "
            "(R alone is np.linalg.qr(a)[1]; 'raw' Householder reflectors have no derivative)"
        )
    _matrices(a, "qr")
    q, r = np.linalg.qr(a, mode="complete" if mode == "complete" else "reduced")
    return q, r


def _qr_tall_backward(gq: Any, gr: Any, q: Any, r: Any) -> Any:
    """A's gradient for M >= N, reduced (PyTorch's): ``(gQ + Q copyutl(gR R^T - Q^T gQ)) R^-T``, where copyutl
    mirrors the upper triangle onto the lower, the diagonal kept once."""
    n = r.shape[-1]
    upper, strictly_upper = np.triu(np.ones((n, n), bool)), np.triu(np.ones((n, n), bool), 1)
    product = gr @ _mT(r) - _mT(q) @ gq
    mirrored = onp.where(upper, product, 0.0) + _mT(onp.where(strictly_upper, product, 0.0))
    total = q @ mirrored + gq
    return _mT(onp.linalg.solve(r, _mT(total)))  # total R^-T


def _qr_backward(g: tuple[Any, Any], a: Any, *, output: tuple[Any, Any], mode: str) -> tuple[Any]:
    gq, gr = g
    q, r = output
    m, n = a.shape[-2], a.shape[-1]
    if m > n and mode == "complete":
        if np.any(constant(gq)[..., :, n:] != 0):
            raise ValueError(
                f"qr with mode='complete' of {m}x{n} matrices: a gradient reached the columns of Q past the first "
                f"{n}, which are any orthonormal completion and have no derivative; use mode='reduced'"
            )
        q, gq, r, gr = q[..., :, :n], gq[..., :, :n], r[..., :n, :], gr[..., :n, :]  # R's rows past n are 0
    if m >= n:
        return (_qr_tall_backward(gq, gr, q, r),)
    # M < N: A = [X | Y] with X = Q R[:, :m] square and R[:, m:] = Q^T Y
    y, gr_y = a[..., :, m:], gr[..., :, m:]
    grad_x = _qr_tall_backward(gq + y @ _mT(gr_y), gr[..., :, :m], q, r[..., :, :m])
    return (onp.concatenate([grad_x, q @ gr_y], axis=-1),)


# --- samples and references -----------------------------------------------------------------------------------------


def _distinct_singular_values(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Matrices of ``shape`` whose singular values are spread apart (1, 2, 3, ... plus up to 0.3)."""
    m, n = shape[-2:]
    k = min(m, n)
    u, _ = np.linalg.qr(rng.standard_normal((*shape[:-2], m, k)))
    v, _ = np.linalg.qr(rng.standard_normal((*shape[:-2], n, k)))
    s = np.arange(k, 0, -1) + rng.uniform(0.0, 0.3, (*shape[:-2], k))
    matrices: np.ndarray = (u * s[..., None, :]) @ np.swapaxes(v, -1, -2)
    return matrices


def _signed_symmetric(rng: np.random.Generator) -> np.ndarray:
    """A symmetric 3x3 matrix of eigenvalues -2.5, 1.5 and 0.5 (each within 0.1): of either sign, and distinct in
    magnitude (its singular values)."""
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    w = np.array([-2.5, 1.5, 0.5]) + rng.uniform(-0.1, 0.1, 3)
    a: np.ndarray = (q * w) @ q.T
    symmetric: np.ndarray = (a + a.T) / 2
    return symmetric


def _svd_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample(_distinct_singular_values(rng, 3, 3)),
        Sample(_distinct_singular_values(rng, 4, 2), full_matrices=False),
        Sample(_distinct_singular_values(rng, 2, 2, 3), full_matrices=False),
        Sample(_signed_symmetric(rng), hermitian=True),
    ]


def _svdvals_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample(_distinct_singular_values(rng, 3, 3)),
        Sample(_distinct_singular_values(rng, 2, 4, 2)),
        Sample(_distinct_singular_values(rng, 2, 3)),
        Sample(_signed_symmetric(rng), hermitian=True),
    ]


def _qr_samples(rng: np.random.Generator) -> list[Sample]:
    n = rng.standard_normal
    return [
        Sample(n((3, 3)) + 2 * np.eye(3)),
        Sample(n((4, 2))),
        Sample(n((2, 3, 2))),
        Sample(n((2, 4))),
        Sample(n((2, 2, 3)), mode="complete"),
    ]


def _square(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Well-conditioned square matrices: the identity times 3 plus normals."""
    n = shape[-1]
    return 3 * np.eye(n) + rng.standard_normal(shape) * 0.5


def _symmetric(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Symmetric matrices with eigenvalues spread apart (at least 0.5 between any two)."""
    n = shape[-1]
    q, _ = np.linalg.qr(rng.standard_normal(shape))
    w = np.arange(n) * 1.5 + rng.uniform(-0.5, 0.5, shape[:-1])
    a: np.ndarray = (q * w[..., None, :]) @ np.swapaxes(q, -1, -2)
    symmetric: np.ndarray = (a + np.swapaxes(a, -1, -2)) / 2
    return symmetric


def _torch_slogdet(torch: Any) -> Any:
    return lambda a: tuple(torch.linalg.slogdet(a))


def _torch_symmetric(torch: Any, a: Any, uplo: str) -> Any:
    """The symmetric matrix NumPy's eigh reads from ``a``'s ``uplo`` triangle, in torch (so that torch's gradient
    is that of NumPy's function too)."""
    if uplo == "L":
        return torch.tril(a) + torch.tril(a, -1).mT
    return torch.triu(a) + torch.triu(a, 1).mT


def _torch_eigh(torch: Any) -> Any:
    """torch's eigh, each eigenvector's sign flipped to NumPy's: the sign of an eigenvector is arbitrary, and
    LAPACK's choice may differ between the two (a constant factor of +-1, so the derivatives are unchanged)."""

    def eigh(a: Any, UPLO: str = "L") -> tuple[Any, Any]:
        symmetric = _torch_symmetric(torch, a, UPLO)
        w, v = torch.linalg.eigh(symmetric)
        numpy_v = _eigh(a.detach().numpy(), UPLO=UPLO)[1]
        flip = np.where(np.sum(v.detach().numpy() * numpy_v, axis=-2, keepdims=True) < 0, -1.0, 1.0)
        return w, v * torch.tensor(flip, dtype=v.dtype)

    return eigh


def _torch_eigvalsh(torch: Any) -> Any:
    return lambda a, UPLO="L": torch.linalg.eigvalsh(_torch_symmetric(torch, a, UPLO))


def _eigh_samples(rng: np.random.Generator) -> list[Sample]:
    """Symmetric matrices, and one that is not (only its upper triangle is read, with UPLO="U")."""
    return [
        Sample(_symmetric(rng, 3, 3)),
        Sample(_symmetric(rng, 2, 2, 2)),
        Sample(np.triu(_symmetric(rng, 3, 3)) + np.tril(rng.standard_normal((3, 3)), -1), UPLO="U"),
    ]


def _aligned(torch: Any, u: Any, vh: Any, numpy_u: np.ndarray) -> tuple[Any, Any]:
    """torch's singular (or Q's) vectors with each column's sign flipped to NumPy's: LAPACK's sign is arbitrary
    and may differ between the two (a constant factor of +-1 on a column of U and the same row of Vh, so the
    derivatives are unchanged)."""
    k = numpy_u.shape[-1]
    flip = np.where(np.sum(u.detach().numpy()[..., :, :k] * numpy_u, axis=-2) < 0, -1.0, 1.0)
    signs = torch.tensor(flip, dtype=u.dtype)
    if vh is None:
        return u * signs[..., None, :], None
    return u * signs[..., None, :], vh * signs[..., :, None]


def _torch_svd(torch: Any) -> Any:
    def svd(a: Any, full_matrices: bool = True, hermitian: bool = False) -> tuple[Any, Any, Any]:
        if hermitian:
            a = (a + a.mT) / 2
        u, s, vh = torch.linalg.svd(a, full_matrices=full_matrices)
        numpy_u = np.linalg.svd(a.detach().numpy(), full_matrices=full_matrices, hermitian=hermitian)[0]
        u, vh = _aligned(torch, u, vh, numpy_u)
        return u, s, vh

    return svd


def _torch_svdvals(torch: Any) -> Any:
    def svdvals(a: Any, hermitian: bool = False) -> Any:
        return torch.linalg.svdvals((a + a.mT) / 2 if hermitian else a)

    return svdvals


def _torch_qr(torch: Any) -> Any:
    def qr(a: Any, mode: str = "reduced") -> tuple[Any, Any]:
        q, r = torch.linalg.qr(a, mode=mode)
        flip = np.where(np.sum(q.detach().numpy() * _qr(a.detach().numpy(), mode=mode)[0], axis=-2) < 0, -1.0, 1.0)
        signs = torch.tensor(flip, dtype=q.dtype)
        return q * signs[..., None, :], r * signs[..., :, None]

    return qr


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="slogdet",
        inputs=("a",),
        outputs=("sign", "logabsdet"),
        differentiable_outputs=("logabsdet",),
        forward=_slogdet,
        backward=_slogdet_backward,
        sample_inputs=lambda rng: [
            Sample(_square(rng, 3, 3)),
            Sample(-_square(rng, 2, 3, 3)),
            Sample(_square(rng, 1, 1)),
        ],
        numpy="linalg.slogdet",
        reference=_torch_slogdet,
        batch=matrix_ops(2),
    )
    register(
        name="eigh",
        inputs=("a",),
        outputs=("eigenvalues", "eigenvectors"),
        forward=_eigh,
        backward=_eigh_backward,
        sample_inputs=_eigh_samples,
        numpy="linalg.eigh",
        reference=_torch_eigh,
        batch=matrix_ops(2),
    )
    register(
        name="eigvalsh",
        inputs=("a",),
        forward=_eigvalsh,
        backward=_eigvalsh_backward,
        sample_inputs=_eigh_samples,
        doc="The eigenvalues of a symmetric matrix (its UPLO triangle), ascending, as np.linalg.eigvalsh.",
        numpy="linalg.eigvalsh",
        reference=_torch_eigvalsh,
        batch=matrix_ops(2),
    )
    register(
        name="svd",
        inputs=("a",),
        outputs=("U", "S", "Vh"),
        forward=_svd,
        backward=_svd_backward,
        sample_inputs=_svd_samples,
        numpy="linalg.svd",
        numpy_call=_numpy_svd,  # compute_uv=False: the op svdvals
        reference=_torch_svd,
        batch=matrix_ops(2),
    )
    register(
        name="svdvals",
        inputs=("a",),
        forward=_svdvals,
        backward=_svdvals_backward,
        sample_inputs=_svdvals_samples,
        numpy="linalg.svdvals",
        reference=_torch_svdvals,
        batch=matrix_ops(2),
    )
    register(
        name="qr",
        inputs=("a",),
        outputs=("Q", "R"),
        forward=_qr,
        backward=_qr_backward,
        sample_inputs=_qr_samples,
        numpy="linalg.qr",
        reference=_torch_qr,
        batch=matrix_ops(2),
    )
