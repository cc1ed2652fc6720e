"""Matrix functions with several outputs: ``slogdet`` (sign and log|det|), ``eigh`` (eigenvalues and
eigenvectors of a symmetric matrix). Each works on stacks of matrices (``(..., n, n)``), as NumPy's ``linalg``
does.

Edge cases, each an error rather than a wrong number:

* ``slogdet``'s backward needs the inverse (the ``inv`` op of plugins/numpy_linalg.py), and so raises NumPy's
  ``LinAlgError`` at a matrix LAPACK finds singular: log|det| of a singular matrix is -inf, and has no
  derivative. A matrix singular only up to rounding gives huge values, as in NumPy and PyTorch: its condition
  number is the user's to watch.
* ``eigh`` differentiates the eigenvalues of a *symmetric* matrix. NumPy's eigh reads one triangle only, so a
  non-symmetric input would give eigenvalues of another matrix than the one given, with a gradient that is right
  for neither: forward raises on an input further than 1e-4 of its largest entry from symmetric (finite
  differences and rounding stay well inside), and computes on the symmetric part ``(A + A.T) / 2``, so that the
  gradient is that of a function of every entry. The eigenvectors' derivative divides by the gaps between
  eigenvalues: where two coincide it is undefined, and backward raises unless no gradient reached the
  eigenvectors (the eigenvalues' derivative is defined regardless).
"""

from __future__ import annotations

from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Register, Sample, constant, hookimpl, op

_inv = op("inv")

#: How far from symmetric (relative to the largest entry) an input to eigh may be: rounding and the finite
#: differences of gradient checks (1e-6) stay inside, a matrix that is not symmetric does not.
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


def _eigh(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(eigenvalues ascending, eigenvectors as columns) of each symmetric matrix, as np.linalg.eigh; a matrix
    that is not symmetric is an error (see the module's docstring)."""
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"eigh needs square matrices (..., n, n), got shape {a.shape}")
    asymmetry = np.abs(a - np.swapaxes(a, -1, -2)).max(initial=0.0)
    if asymmetry > SYMMETRY_TOLERANCE * max(np.abs(a).max(initial=0.0), np.finfo(np.float32).tiny):
        raise ValueError(
            f"eigh differentiates symmetric matrices only, and this one differs from its transpose by up to "
            f"{asymmetry:.3g}; pass (a + a.T) / 2 if that is the matrix meant"
        )
    w, v = np.linalg.eigh((a + np.swapaxes(a, -1, -2)) / 2)
    return w, v


def _eigh_backward(g: tuple[Any, Any], a: Any, *, output: tuple[Any, Any]) -> tuple[Any]:
    """PyTorch's formula for a symmetric matrix: A's gradient is V (diag(gw) + skew(V^T gV) / E) V^T, with
    E_ij = w_j - w_i off the diagonal, then its symmetric part (forward reads (A + A.T) / 2)."""
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
    grad = v @ inner @ _mT(v)
    return ((grad + _mT(grad)) / 2,)


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


def _torch_eigh(torch: Any) -> Any:
    """torch's eigh, each eigenvector's sign flipped to NumPy's: the sign of an eigenvector is arbitrary, and
    LAPACK's choice may differ between the two (a constant factor of +-1, so the derivatives are unchanged)."""

    def eigh(a: Any) -> tuple[Any, Any]:
        symmetric = (a + a.mT) / 2
        w, v = torch.linalg.eigh(symmetric)
        numpy_v = np.linalg.eigh(symmetric.detach().numpy())[1]
        flip = np.where(np.sum(v.detach().numpy() * numpy_v, axis=-2, keepdims=True) < 0, -1.0, 1.0)
        return w, v * torch.tensor(flip, dtype=v.dtype)

    return eigh


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
        sample_inputs=lambda rng: [Sample(_symmetric(rng, 3, 3)), Sample(_symmetric(rng, 2, 2, 2))],
        numpy="linalg.eigh",
        reference=_torch_eigh,
    )
