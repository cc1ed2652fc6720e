"""A matrix product whose inner dimension is 1 (a batch of one through ``linear``, a matrix-vector product's
matrix gradient) is differentiated as an outer product, a broadcast multiply: NumPy's ``@`` is several times
slower there. The values must be those ``@`` gives, and the backward must still compose (it is recorded as ``mul``
on Tensors); torch and finite differences check the batch-of-one sample of ``linear`` with every other op's."""

from __future__ import annotations

import numpy as np
import pytest

import opreg
from opreg import Tensor

from torch_reference import needs_torch, torch


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_batch_of_one_lands_the_outer_product_in_dw_exactly(dtype):
    """dW after zero-filling and one backward holds exactly what ``g.T @ x`` added into it used to, zeros' signs
    included (the product lands on +0.0 either way)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 7)).astype(dtype)
    x[0, :3] = 0.0  # products -0.0 where g < 0: the landing must give +0.0, as g.T @ x did
    W, b = rng.standard_normal((5, 7)).astype(dtype), rng.standard_normal(5).astype(dtype)
    dW, db = np.zeros_like(W), np.zeros_like(b)
    engine = opreg.Autograd()
    engine.apply("linear", x, W, b, gradients_to_update=[None, dW, db])
    g = rng.standard_normal((1, 5)).astype(dtype)
    engine.backward(g)
    expected = np.zeros_like(W)
    expected += g.T @ x
    assert dW.dtype == dtype
    assert dW.tobytes() == expected.tobytes()


def test_the_outer_product_is_recorded_as_a_multiply_and_differentiates_again():
    rng = np.random.default_rng(1)
    x = Tensor(rng.standard_normal((1, 3)), requires_grad=True)
    W = Tensor(rng.standard_normal((4, 3)), requires_grad=True)
    b = Tensor(rng.standard_normal(4), requires_grad=True)
    (grad_w,) = opreg.grad((opreg.ops.linear(x, W, b) ** 2).sum(), [W], create_graph=True)
    assert grad_w._node.op.name == "mul"  # not matmul: the slow form at batch one
    np.testing.assert_array_equal(grad_w.data, 2 * (x.data @ W.data.T + b.data).T * x.data)


@needs_torch
def test_a_matrix_vector_products_gradients_against_torch():
    """``A @ v``: A's gradient is the outer product of g and v (inner dimension 1), to first and second order."""
    rng = np.random.default_rng(2)
    a, v, w = rng.standard_normal((4, 3)), rng.standard_normal(3), rng.standard_normal(4)

    def loss(a, v):
        return (np.tanh(a @ v) * w).sum() if isinstance(a, Tensor) else (torch.tanh(a @ v) * torch.tensor(w)).sum()

    ta, tv = torch.tensor(a, requires_grad=True), torch.tensor(v, requires_grad=True)
    t_ga, t_gv = torch.autograd.grad(loss(ta, tv), [ta, tv], create_graph=True)
    t_second = torch.autograd.grad((t_ga**2).sum(), [ta, tv])
    oa, ov = Tensor(a, requires_grad=True), Tensor(v, requires_grad=True)
    ga, gv = opreg.grad(loss(oa, ov), [oa, ov], create_graph=True)
    second = opreg.grad((ga**2).sum(), [oa, ov])
    for mine, theirs in zip([ga, gv, *second], [t_ga, t_gv, *t_second], strict=True):
        np.testing.assert_allclose(
            np.asarray(getattr(mine, "data", mine)), theirs.detach().numpy(), rtol=1e-10, atol=1e-12
        )
