"""The edge points of the reductions, statistics, running products, products and numpy.linalg ops, each a
documented choice checked exactly: ties in max, min, ptp and the inf-norm (shared evenly, torch's rule), prod and
cumprod with one zero, several zeros and subnormal values (no division by x), std and the 2-norm at 0 (gradient
0, torch's), det of a singular matrix (an error, not a number), float16 counts of ties; and how the NumPy names
are reached: ``np.max(t)``, ``onp.logsumexp``, ``opreg.numpy.linalg.inv``, ``np.linalg.norm(t)``.

Everything else about these ops (each against torch on its samples and on hypothesis' inputs, second
derivatives, finite differences, random graphs) is generated from their declarations by the shared tests.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import opreg
import opreg.numpy as onp
from opreg import Tensor, testing

from torch_reference import needs_torch, torch, torch_reference


def gradient(name: str, x: np.ndarray, g: np.ndarray | float = 1.0, **attributes) -> np.ndarray:
    """The gradient of op ``name`` at ``x`` for ``g`` through Tensors; the tape engine must agree bit for bit."""
    out, (grad,) = testing.run_tensors(name, [x], attributes, np.broadcast_to(g, _shape(name, x, attributes)))
    _, (tape,) = testing.run_engine(name, [x], attributes, np.broadcast_to(g, out.shape).copy())
    np.testing.assert_array_equal(grad, tape, strict=True)
    return grad


def _shape(name: str, x: np.ndarray, attributes: dict) -> tuple[int, ...]:
    return opreg.get_registry()[name].output_of(x, **attributes).shape


TIES = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [3.0, -1.0, 2.0, 1.0]])


def test_max_and_min_split_the_gradient_evenly_among_ties():
    """A row of four equal maxima gives each a quarter; the 3-way global tie a third; min alike."""
    np.testing.assert_array_equal(
        gradient("max", TIES, np.array([2.0, 4.0, 1.0]), axis=1), [[0, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    )
    np.testing.assert_array_equal(gradient("max", TIES, 3.0), [[0, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0]])
    np.testing.assert_array_equal(gradient("min", -TIES, 3.0), [[0, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0]])
    np.testing.assert_array_equal(gradient("ptp", TIES[1:2], axis=1), [[0.0, 0.0, 0.0, 0.0]])  # 1/4 - 1/4


@needs_torch
@pytest.mark.parametrize("name", ["max", "min", "ptp"])
@pytest.mark.parametrize("attributes", [{}, {"axis": 1}, {"axis": (0, 1)}, {"axis": -1, "keepdims": True}], ids=str)
def test_ties_match_torch(name, attributes):
    x = np.concatenate([TIES, -TIES])
    g = np.random.default_rng(0).standard_normal(_shape(name, x, attributes))
    ref_out, ref_grads = testing.run_torch(torch_reference(name), [x], attributes, g, [True])
    testing.check_case(name, [x], attributes, g, (ref_out, ref_grads), scales=[0.0, 0.0], terms=1)


def test_max_over_70000_float16_ties():
    """70,000 tied maxima: each gets 1 / 70,000 (a count taken in float16 would be inf, every share 0)."""
    many = 70_000
    expected = (np.zeros(()), [np.full(many, 1 / many)])
    testing.check_float16("max", [np.zeros(many, np.float16)], {}, expected)


def test_the_inf_norm_shares_among_tied_magnitudes():
    x = np.array([-3.0, 3.0, 1.0, 0.0])
    np.testing.assert_array_equal(gradient("norm", x, 2.0, ord=math.inf), [-1.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(gradient("norm", x, 2.0, ord=1), [-2.0, 2.0, 2.0, 0.0])  # sign, 0 at 0


@pytest.mark.parametrize("name", ["norm", "std"])
def test_the_2_norm_and_std_at_zero_have_gradient_zero(name):
    """No derivative exists there (sqrt at 0); the gradient is 0, torch's choice, not 0 / 0."""
    np.testing.assert_array_equal(gradient(name, np.zeros((2, 3)), axis=1), np.zeros((2, 3)))
    if name == "std":  # every element equal, not only 0
        np.testing.assert_array_equal(gradient(name, np.full((2, 3), 7.0), axis=1), np.zeros((2, 3)))


def test_the_2_norm_neither_underflows_nor_overflows():
    """Scaled as BLAS's nrm2 and torch's: NumPy's sqrt(sum(x * x)) is 0 at 1e-200 (and its gradient would be 0,
    not x / |x| = -1) and inf at 1e200 (found by the graph fuzzer against torch)."""
    np.testing.assert_array_equal(gradient("norm", np.array([[-1e-200]])), [[-1.0]])
    tiny = np.full(2, 8.75528235e-192)  # torch.linalg.norm: 0, and gradient [0, 0]
    np.testing.assert_allclose(gradient("norm", tiny), [0.5**0.5, 0.5**0.5], rtol=1e-15)
    np.testing.assert_allclose(onp.linalg.norm(np.array([3e200, 4e200])), 5e200, rtol=1e-15)
    np.testing.assert_allclose(onp.linalg.norm(np.array([3e-200, 4e-200])), 5e-200, rtol=1e-15)


def _others(x: np.ndarray) -> np.ndarray:
    """The product of the other elements of each row, by hand."""
    return np.array([[np.prod(np.delete(row, j)) for j in range(len(row))] for row in x])


def test_prod_with_one_zero_and_several_zeros():
    """No division by x: one zero gets the product of the others and the rest 0; two zeros give 0 everywhere."""
    x = np.array([[2.0, 0.0, 3.0, 4.0], [0.0, 5.0, 0.0, 1.0], [1.5, 2.0, -1.0, 0.5]])
    grad = gradient("prod", x, axis=1)
    np.testing.assert_array_equal(grad, _others(x))
    np.testing.assert_array_equal(grad[0], [0.0, 24.0, 0.0, 0.0])
    np.testing.assert_array_equal(grad[1], [0.0, 0.0, 0.0, 0.0])


def test_prod_and_cumprod_of_subnormals_are_exact():
    """``g * out / x`` would lose the digits an underflow took: at [5e-324, 1] prod's gradient is [1, 5e-324], and
    cumprod's at [5e-324, 0] (g = 0.5) is [0.5, 0.5 * 5e-324] (torch's cumprod gives 0 for the first)."""
    tiny = np.nextafter(0.0, 1.0)
    np.testing.assert_array_equal(gradient("prod", np.array([tiny, 1.0])), [1.0, tiny])
    np.testing.assert_array_equal(gradient("cumprod", np.array([tiny, 0.0]), 0.5, axis=0), [0.5, 0.0])
    x = np.array([0.5, tiny, 3.0])
    expected = [1 + tiny + 3 * tiny, 0.5 + 0.5 * 3, 0.5 * tiny]  # sum over i >= j of prod(x_k, k <= i, k != j)
    np.testing.assert_allclose(gradient("cumprod", x, axis=0), expected, rtol=1e-15)


def test_cumprod_with_zeros_gives_every_product_of_the_others():
    x = np.array([2.0, 0.0, 3.0, 0.0, 5.0])
    expected = [sum(np.prod(np.delete(x[: i + 1], j)) for i in range(j, 5)) for j in range(5)]
    np.testing.assert_array_equal(gradient("cumprod", x), expected)
    assert expected[1] == 2.0 + 6.0 and expected[3] == 0.0


def test_second_derivatives_of_prod_at_a_zero():
    """d2 prod / dx_i dx_j is the product of the rest, nonzero beside a single zero: the zero path composes."""
    x = Tensor(np.array([2.0, 0.0, 3.0]), requires_grad=True)
    (first,) = opreg.grad(onp.prod(x), [x], create_graph=True)
    np.testing.assert_array_equal(first.data, [0.0, 6.0, 0.0])
    (second,) = opreg.grad(onp.sum(first * np.eye(3)[1]), [x])  # d/dx of d prod / dx_1 = x_0 * x_2
    np.testing.assert_array_equal(second.data, [3.0, 0.0, 2.0])


def test_det_of_a_singular_matrix_raises_in_backward():
    """det is 0 and its gradient the adjugate, which ``det * inv(A)^T`` cannot reach: an error naming inv, not a
    number."""
    x = Tensor(np.array([[1.0, 2.0], [2.0, 4.0]]), requires_grad=True)
    y = onp.linalg.det(x)
    assert float(y.data) == 0.0
    with pytest.raises(opreg.BackwardError, match="op 'det'.*gradient at a singular matrix"):
        y.backward()


def test_cholesky_factors_the_symmetric_part():
    a = np.array([[4.0, 1.0], [1.0, 3.0]])
    np.testing.assert_allclose(onp.linalg.cholesky(a), np.linalg.cholesky(a), rtol=1e-15)
    skewed = a + np.array([[0.0, 0.5], [-0.5, 0.0]])  # the same symmetric part
    np.testing.assert_array_equal(onp.linalg.cholesky(skewed), onp.linalg.cholesky(a))


# --- how the names are reached ---------------------------------------------------------------------------------------


def test_numpy_names_dispatch_to_the_ops():
    x = np.array([[1.0, 4.0], [2.0, 3.0]])
    t = Tensor(x, requires_grad=True)
    for function, expected in [
        (np.max, np.max(x)),
        (np.amin, np.amin(x)),
        (np.prod, np.prod(x)),
        (np.var, np.var(x)),
        (np.linalg.inv, np.linalg.inv(x)),
        (np.linalg.det, np.linalg.det(x)),
        (np.linalg.norm, np.linalg.norm(x)),
    ]:
        result = function(t)
        assert isinstance(result, Tensor) and result.requires_grad, function.__name__
        np.testing.assert_allclose(result.data, expected, rtol=1e-14, err_msg=function.__name__)
    np.testing.assert_allclose(np.linalg.norm(t, 1, 0).data, np.linalg.norm(x, 1, 0))  # NumPy's order
    np.testing.assert_allclose(np.std(t, 0, ddof=1).data, np.std(x, 0, ddof=1))
    np.testing.assert_allclose(np.linalg.solve(t, np.ones(2)).data, np.linalg.solve(x, np.ones(2)))


def test_opreg_numpy_linalg_mirrors_numpy_linalg():
    x = np.array([[2.0, 1.0], [1.0, 3.0]])
    np.testing.assert_allclose(onp.linalg.inv(x), np.linalg.inv(x), rtol=1e-15)
    np.testing.assert_allclose(onp.linalg.norm(x, "fro"), np.linalg.norm(x, "fro"), rtol=1e-14)
    assert {"inv", "det", "solve", "cholesky", "norm"} <= set(dir(onp.linalg))
    assert "linalg" in dir(onp)
    assert onp.linalg.eigvals is np.linalg.eigvals  # no op implements it: NumPy's own, which refuses a Tensor
    for eigvals in (onp.linalg.eigvals, np.linalg.eigvals):
        with pytest.raises(opreg.OpUsageError, match=r"numpy\.linalg\.eigvals was called on a Tensor"):
            eigvals(Tensor(x, requires_grad=True))
    with pytest.raises(AttributeError, match="neither opreg.numpy nor numpy has 'linalg.no_such_function'"):
        onp.linalg.no_such_function  # noqa: B018


def test_logsumexp_is_opreg_numpy_logsumexp():
    """scipy.special.logsumexp's semantics (axis, keepdims), under opreg.numpy although NumPy has no such name."""
    x = np.array([[1e4, 1e4, -1e4], [0.0, -np.inf, 1.0]])
    np.testing.assert_allclose(onp.logsumexp(x, axis=1), [1e4 + np.log(2), np.log(1 + np.e)], rtol=1e-15)
    np.testing.assert_array_equal(onp.logsumexp(np.full(3, -np.inf)), -np.inf)
    assert onp.logsumexp(x, axis=0, keepdims=True).shape == (1, 3)


def test_unsupported_norms_say_so():
    with pytest.raises(opreg.OpUsageError, match="matrix norm takes ord in .*'nuc'\\), not 3"):
        onp.linalg.norm(np.eye(2), 3)
    with pytest.raises(opreg.OpUsageError, match="vector norm takes ord .* or a finite number above 1, not 0.5"):
        onp.linalg.norm(np.ones(3), 0.5)
    np.testing.assert_allclose(onp.linalg.norm(np.ones(3), 3), 3 ** (1 / 3), rtol=1e-15)  # any p above 1
    with pytest.raises(opreg.OpUsageError, match="cross takes vectors of 3 elements"):
        onp.cross(np.ones(2), np.ones(2))


@pytest.mark.parametrize(
    ("name", "attributes", "problem"),
    [
        ("max", {"axis": 2}, "axis 2 is out of bounds"),
        ("prod", {"axis": (1, -1)}, "repeated axis"),
        ("var", {"axis": 3}, "axis 3 is out of bounds"),
        ("cumsum", {"axis": 2}, "axis 2 is out of bounds"),
    ],
)
def test_bad_axes_are_errors_naming_the_op(name, attributes, problem):
    with pytest.raises(opreg.OpUsageError, match=f"op '{name}'.*{problem}"):
        opreg.Autograd().apply(name, np.ones((2, 3)), **attributes)


@needs_torch
def test_reduction_gradients_are_writable_arrays():
    """A broadcast view of grad_output would be read-only: a caller updating a gradient in place would fail."""
    x = np.random.default_rng(4).standard_normal((3, 4))
    for name in ("max", "min", "prod", "logsumexp", "var", "std", "ptp", "norm"):
        _, (grad,) = testing.run_engine(name, [x], {"axis": 1}, np.ones(3))
        assert grad.flags.writeable, name
    assert torch is not None
