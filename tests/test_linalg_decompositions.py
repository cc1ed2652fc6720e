"""svd, svdvals, qr, pinv, kron and the matrix norms 2, -2, 'nuc': their NumPy spellings, their edge points and
the choices made there, and HIPS autograd's test cases for them (tests/test_linalg.py, real ones), first and
second order against finite differences.

The generated tests (test_multi_output, test_ops_reference, test_higher_order, test_properties, the graph fuzzer)
compare each op with torch on its samples, where the singular values are distinct; here are the points where
the derivative is undefined or where opreg chose one (ties, zeros, the non-unique columns of full_matrices=True
and of qr's mode 'complete').
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import opreg
import opreg.numpy as onp
from opreg import Tensor
from opreg.errors import BackwardError, OpUsageError


def rotation(rng: np.random.Generator, n: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return q


def gradient(fun: Callable[[Any], Any], x: np.ndarray) -> np.ndarray:
    t = Tensor(x.copy(), requires_grad=True)
    (g,) = opreg.grad(onp.sum(fun(t)), [t])
    return g.data


def check_grads(fun: Callable[[Any], Any], x: np.ndarray, seed: int = 0, eps: float = 1e-6) -> None:
    """HIPS autograd's ``check_grads(fun, modes=["rev"], order=2)``: the gradient of ``<fun(x), g>`` against
    central differences along a random direction, and its derivative (a Hessian-vector product, through
    ``opreg.grad(create_graph=True)``) against differences of the gradient."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal(np.shape(fun(x)))
    v = rng.standard_normal(x.shape)

    def scalar(t: Any) -> Any:
        return onp.sum(fun(t) * g)

    def first(values: np.ndarray, create_graph: bool = False) -> Any:
        t = Tensor(values, requires_grad=True)
        (d,) = opreg.grad(scalar(t), [t], create_graph=create_graph)
        return t, d

    _, d = first(x.copy())
    numeric = (np.sum(fun(x + eps * v) * g) - np.sum(fun(x - eps * v) * g)) / (2 * eps)
    np.testing.assert_allclose(np.sum(d.data * v), numeric, rtol=1e-5, atol=1e-7, err_msg="first order")
    t, d = first(x.copy(), create_graph=True)
    (hv,) = opreg.grad(onp.sum(d * v), [t])
    numeric_hv = (first(x + eps * v)[1].data - first(x - eps * v)[1].data) / (2 * eps)
    np.testing.assert_allclose(hv.data, numeric_hv, rtol=1e-4, atol=1e-6, err_msg="second order")


# --- NumPy's spellings -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 3), (4, 2), (2, 4), (2, 3, 2)])
@pytest.mark.parametrize("full_matrices", [True, False])
def test_svd_on_arrays_is_numpys(shape, full_matrices):
    a = np.random.default_rng(0).standard_normal(shape)
    for mine, numpys in zip(
        onp.linalg.svd(a, full_matrices=full_matrices), np.linalg.svd(a, full_matrices=full_matrices), strict=True
    ):
        np.testing.assert_array_equal(mine, numpys)
    np.testing.assert_array_equal(onp.linalg.svd(a, compute_uv=False), np.linalg.svd(a, compute_uv=False))
    np.testing.assert_array_equal(onp.linalg.svd(a, full_matrices, False), np.linalg.svdvals(a))


def test_svd_without_uv_is_svdvals_on_tensors():
    """np.linalg.svd(t, compute_uv=False) returns one Tensor, the singular values, as NumPy returns one array; its
    gradient is U Vh for their sum."""
    a = np.random.default_rng(1).standard_normal((4, 3))
    t = Tensor(a, requires_grad=True)
    s = np.linalg.svd(t, compute_uv=False)
    assert isinstance(s, Tensor)
    np.testing.assert_allclose(s.data, np.linalg.svdvals(a), rtol=1e-14)
    s.sum().backward()
    u, _, vh = np.linalg.svd(a, full_matrices=False)
    np.testing.assert_allclose(t.grad, u @ vh, rtol=1e-12)
    u_t, s_t, vh_t = np.linalg.svd(t)
    assert (u_t.shape, s_t.shape, vh_t.shape) == ((4, 4), (3,), (3, 3))
    for values in (np.linalg.svd(t, False, False), onp.linalg.svd(t, compute_uv=0), onp.linalg.svdvals(t)):
        assert isinstance(values, Tensor) and values.requires_grad and values.shape == (3,)
    assert len(onp.linalg.svd(t, compute_uv=True)) == 3


def test_svd_hermitian_reads_a_symmetric_matrix():
    rng = np.random.default_rng(2)
    q = rotation(rng, 3)
    a = (q * np.array([2.0, -1.0, 0.5])) @ q.T
    for mine, numpys in zip(onp.linalg.svd(a, hermitian=True), np.linalg.svd(a, hermitian=True), strict=True):
        np.testing.assert_allclose(mine, numpys, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(onp.linalg.svd(a, compute_uv=False, hermitian=True), [2.0, 1.0, 0.5], rtol=1e-12)
    with pytest.raises(OpUsageError, match="svd with hermitian=True differentiates symmetric matrices only"):
        opreg.ops.svd(Tensor(np.triu(a), requires_grad=True), hermitian=True)


# --- svd's undefined derivatives -------------------------------------------------------------------------------------


def test_svd_full_matrices_of_a_rectangle_differentiates_what_is_unique():
    """full_matrices=True of a 4x2 matrix: U's last two columns are any completion. A loss of S and of U's first
    two columns has the reduced svd's gradient; one that reaches the completion is an error."""
    a = np.random.default_rng(3).standard_normal((4, 2))

    def loss(full: bool) -> tuple[Any, Any]:
        t = Tensor(a.copy(), requires_grad=True)
        u, s, vh = np.linalg.svd(t, full_matrices=full)
        return t, onp.sum(s * s) + onp.sum(u[:, :2] ** 3) + onp.sum(vh**3)

    t_full, full = loss(True)
    t_reduced, reduced = loss(False)
    np.testing.assert_allclose(opreg.grad(full, [t_full])[0].data, opreg.grad(reduced, [t_reduced])[0].data)
    t = Tensor(a.copy(), requires_grad=True)
    u, _, _ = np.linalg.svd(t)
    with pytest.raises(BackwardError, match=r"columns of U \(rows of Vh\) past the first 2.*full_matrices=False"):
        onp.sum(u[:, 3]).backward()


def test_svd_of_coinciding_singular_values_raises_where_the_vectors_matter():
    """The identity rotated: every singular value 1. S's gradient is defined (U Vh for the sum); one through the
    vectors divides by s_j^2 - s_i^2 = 0, an error rather than PyTorch's inf or NaN."""
    rng = np.random.default_rng(4)
    a = rotation(rng, 3) @ np.diag([2.0, 1.0, 1.0]) @ rotation(rng, 3)
    t = Tensor(a, requires_grad=True)
    _, s, _ = np.linalg.svd(t)
    s.sum().backward()
    u, _, vh = np.linalg.svd(a)
    np.testing.assert_allclose(t.grad, u @ vh, rtol=1e-12)
    t = Tensor(a, requires_grad=True)
    u_t, _, _ = np.linalg.svd(t)
    with pytest.raises(BackwardError, match=r"singular values 1 and 2 coincide \(1 and 1\)"):
        onp.sum(u_t[:, 1:] ** 3).backward()


def test_svd_coinciding_singular_values_the_loss_never_reaches_do_not_matter():
    """A loss of the first singular pair alone (u_1, v_1) never reaches the pair (1, 2), however equal their
    singular values: its gradient is defined, and so is the spectral norm's second derivative (its gradient
    u_1 v_1^T reaches the other vectors with weight exactly 0). The first pair's own gradient, differentiated
    again, reaches every column of U, and raises."""
    rng = np.random.default_rng(5)
    left, right = rotation(rng, 3), rotation(rng, 3)
    a = left @ np.diag([3.0, 1.0, 1.0]) @ right
    direction = rng.standard_normal((3, 3))

    def first_pair(t: Any) -> Any:
        u, _, vh = np.linalg.svd(t)
        return u[:, 0] * (vh[0] @ np.array([1.0, -2.0, 0.5]))  # sign-invariant: u_1 and v_1 flip together

    numeric = (first_pair(a + 1e-6 * direction) - first_pair(a - 1e-6 * direction)).sum() / 2e-6
    np.testing.assert_allclose(np.sum(gradient(first_pair, a) * direction), numeric, rtol=1e-6)
    check_grads(lambda t: onp.linalg.norm(t, 2), a)
    t = Tensor(a, requires_grad=True)
    (first,) = opreg.grad(onp.sum(first_pair(t)), [t], create_graph=True)
    with pytest.raises(BackwardError, match=r"singular values 1 and 2 coincide"):
        onp.sum(first * direction).backward()


def test_svd_of_a_rectangle_not_of_full_rank_raises_where_the_vectors_matter():
    a = np.outer(np.arange(1.0, 5.0), [1.0, 2.0, 0.5])  # 4x3 of rank 1: two singular values 0
    t = Tensor(a, requires_grad=True)
    u, _, _ = np.linalg.svd(t, full_matrices=False)
    with pytest.raises(BackwardError, match="coincide|not of full rank"):
        onp.sum(u**3).backward()


# --- qr ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["r", "raw"])
def test_qr_refuses_the_modes_it_does_not_return_q_and_r_for(mode):
    with pytest.raises(OpUsageError, match=f"qr's mode='{mode}' is not supported"):
        np.linalg.qr(Tensor(np.eye(3), requires_grad=True), mode=mode)


@pytest.mark.parametrize("shape", [(4, 2), (2, 4), (3, 3), (2, 3, 2)])
@pytest.mark.parametrize("mode", ["reduced", "complete"])
def test_qr_on_arrays_is_numpys(shape, mode):
    a = np.random.default_rng(6).standard_normal(shape)
    for mine, numpys in zip(onp.linalg.qr(a, mode=mode), np.linalg.qr(a, mode=mode), strict=True):
        np.testing.assert_array_equal(mine, numpys)


def test_qr_complete_of_a_tall_matrix_differentiates_what_is_unique():
    a = np.random.default_rng(7).standard_normal((4, 2))

    def loss(mode: str) -> tuple[Any, Any]:
        t = Tensor(a.copy(), requires_grad=True)
        q, r = np.linalg.qr(t, mode=mode)
        return t, onp.sum(q[:, :2] ** 3) + onp.sum(r**3)

    t_complete, complete = loss("complete")
    t_reduced, reduced = loss("reduced")
    np.testing.assert_allclose(opreg.grad(complete, [t_complete])[0].data, opreg.grad(reduced, [t_reduced])[0].data)
    t = Tensor(a.copy(), requires_grad=True)
    q, _ = np.linalg.qr(t, mode="complete")
    with pytest.raises(BackwardError, match="columns of Q past the first 2.*use mode='reduced'"):
        onp.sum(q).backward()


@pytest.mark.parametrize("shape", [(5, 3), (3, 3), (3, 5), (2, 4, 3)])
def test_qr_first_and_second_order(shape):
    a = np.random.default_rng(8).standard_normal(shape)
    check_grads(lambda t: np.linalg.qr(t)[0], a)
    check_grads(lambda t: np.linalg.qr(t)[1], a)


# --- the matrix norms of singular values ------------------------------------------------------------------------------


def test_spectral_norm_at_tied_singular_values_shares_the_gradient_evenly():
    """||A||_2 of A = L diag(2, 2, 1) R: the largest singular value is tied, and the gradient is the even share
    L diag(1/2, 1/2, 0) R, whatever vectors LAPACK picks (PyTorch: LAPACK's u_1 v_1^T); the smallest (-2) of
    diag(3, 1, 1) likewise."""
    rng = np.random.default_rng(9)
    left, right = rotation(rng, 3), rotation(rng, 3)
    np.testing.assert_allclose(
        gradient(lambda t: onp.linalg.norm(t, 2), left @ np.diag([2.0, 2.0, 1.0]) @ right),
        left @ np.diag([0.5, 0.5, 0.0]) @ right,
        atol=1e-12,
    )
    np.testing.assert_allclose(
        gradient(lambda t: onp.linalg.norm(t, -2), left @ np.diag([3.0, 1.0, 1.0]) @ right),
        left @ np.diag([0.0, 0.5, 0.5]) @ right,
        atol=1e-12,
    )
    np.testing.assert_allclose(gradient(lambda t: onp.linalg.norm(t, 2), np.eye(4)), np.eye(4) / 4, atol=1e-15)


def test_singular_value_norms_at_zero_singular_values_take_the_least_subgradient():
    """A singular value of 0 contributes nothing: the nuclear norm of a singular matrix has gradient U_r Vh_r over
    its nonzero singular values (the subgradient of least norm), and the spectral norm of the zero matrix and
    the smallest singular value of a singular matrix have gradient 0, as |x| at 0."""
    rng = np.random.default_rng(10)
    left, right = rotation(rng, 3), rotation(rng, 3)
    singular = left @ np.diag([2.0, 1.0, 0.0]) @ right
    np.testing.assert_allclose(
        gradient(lambda t: onp.linalg.norm(t, "nuc"), singular), left @ np.diag([1.0, 1.0, 0.0]) @ right, atol=1e-12
    )
    np.testing.assert_array_equal(gradient(lambda t: onp.linalg.norm(t, -2), singular), np.zeros((3, 3)))
    np.testing.assert_array_equal(gradient(lambda t: onp.linalg.norm(t, 2), np.zeros((2, 3))), np.zeros((2, 3)))


def test_singular_value_norms_over_any_two_axes():
    x = np.random.default_rng(11).standard_normal((3, 2, 4))
    for ord_ in (2, -2, "nuc"):
        for axis in ((0, 2), (2, 0), (-1, 1)):
            np.testing.assert_allclose(onp.linalg.norm(x, ord_, axis), np.linalg.norm(x, ord_, axis), rtol=1e-14)
            check_grads(lambda t, o=ord_, a=axis: onp.linalg.norm(t, o, a, keepdims=True), x)


# --- pinv, kron ------------------------------------------------------------------------------------------------------


def test_pinv_hips_cases():
    """HIPS autograd's test_pinv: rectangular matrices, stacked, and pinv(x^T x) of fixed low rank (the derivative
    at constant rank: x^T x stays of x's rank, the cutoff well above rounding)."""
    rng = np.random.default_rng(12)
    for m in range(2, 8):
        check_grads(np.linalg.pinv, rng.standard_normal((5, m)))
        check_grads(np.linalg.pinv, rng.standard_normal((2, 5, m)))
    for m in range(6, 8):  # x^T x of rank 5 < m
        check_grads(lambda x: np.linalg.pinv(np.swapaxes(x, -1, -2) @ x, rcond=1e-8), rng.standard_normal((5, m)))
        check_grads(lambda x: np.linalg.pinv(np.swapaxes(x, -1, -2) @ x, rcond=1e-8), rng.standard_normal((2, 5, m)))


def test_pinv_hermitian():
    rng = np.random.default_rng(13)
    b = rng.standard_normal((3, 3))
    a = b @ b.T - 2 * np.eye(3)
    np.testing.assert_allclose(onp.linalg.pinv(a, hermitian=True), np.linalg.pinv(a, hermitian=True), rtol=1e-12)
    check_grads(lambda t: np.linalg.pinv((t + t.T) / 2, hermitian=True), a)


@pytest.mark.parametrize(
    ("a_shape", "b_shape"), [((2, 3), (3, 2)), ((3,), (2, 2)), ((2, 1, 2), (3,)), ((), (2, 2)), ((2,), ()), ((), ())]
)
def test_kron_is_numpys_and_differentiates(a_shape, b_shape):
    rng = np.random.default_rng(14)
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    np.testing.assert_array_equal(onp.kron(a, b), np.kron(a, b))
    opreg.gradcheck(np.kron, a, b)
    check_grads(lambda t: np.kron(t, b) * np.kron(t, b), a)


# --- HIPS autograd's svd cases ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 5), (4, 3, 5), (3, 3), (4, 3, 3), (5, 3), (4, 5, 3)])
def test_svd_hips_cases(shape):
    """HIPS autograd's test_svd_{wide,square,tall}_{2d,3d}: u, s and v of the reduced svd, first and second order
    (finite differences follow LAPACK's signs, which are locally constant)."""
    x = np.random.default_rng(15).standard_normal(shape)
    for index in range(3):
        check_grads(lambda t, i=index: np.linalg.svd(t, full_matrices=False)[i], x)


@pytest.mark.parametrize("shape", [(5, 3), (4, 5, 3)])
def test_svd_only_s_hips_cases(shape):
    x = np.random.default_rng(16).standard_normal(shape)
    check_grads(lambda t: np.linalg.svd(t, full_matrices=False, compute_uv=False), x)


def test_nuclear_norm_hips_cases():
    rng = np.random.default_rng(17)
    check_grads(lambda t: np.linalg.norm(t, ord="nuc"), rng.standard_normal((6, 5)))
    check_grads(lambda t: np.linalg.norm(t, ord="nuc", axis=(0, 1)), rng.standard_normal((6, 5, 4)))


@pytest.mark.parametrize("ord_", [2, 3, 4])
def test_vector_norm_ord_hips_cases(ord_):
    """HIPS autograd's test_vector_norm_ord: p-norms of a vector, p = 2, 3, 4; and p = 3 at a zero element and at
    the zero vector, where the gradient is 0 (the 2-norm's choice, PyTorch's)."""
    check_grads(lambda t: np.linalg.norm(t, ord=ord_), np.random.default_rng(18).standard_normal(6))
    np.testing.assert_allclose(
        gradient(lambda t: np.linalg.norm(t, ord=3), np.array([0.0, 1.0, -2.0])),
        np.array([0.0, 1.0, -4.0]) / 9 ** (2 / 3),
        rtol=1e-14,
    )
    np.testing.assert_array_equal(gradient(lambda t: np.linalg.norm(t, ord=3), np.zeros(3)), np.zeros(3))


@pytest.mark.parametrize("ord", [3, 4.5])
def test_a_p_norm_of_tiny_values_does_not_underflow(ord):
    """|x|^p underflows long before |x| (1e-15 ** 3 is below float32's smallest normal): the p-norm is scaled by
    the largest magnitude first, as the 2-norm is, so its value and gradient stay exact (the gradient of the
    p-norm of one element is its sign; it was 0.80 before, with no error)."""
    x = Tensor(np.array([1e-15], np.float32), requires_grad=True)
    n = opreg.ops.norm(x, ord=ord, axis=0)
    n.backward()
    assert n.data == np.float32(1e-15)
    np.testing.assert_allclose(x.grad, [1.0], rtol=1e-6)
