"""Matrix decompositions: ``slogdet`` (sign and log|det|), ``eigh`` (eigenvalues and eigenvectors of a symmetric
matrix) and ``eigvalsh`` (its eigenvalues alone). Each works on stacks of matrices (``(..., n, n)``), as NumPy's
``linalg`` does.

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
"""

from __future__ import annotations

from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Register, Sample, constant, hookimpl, op

_inv = op("inv")


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
    )
