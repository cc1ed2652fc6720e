"""opreg.nn.utils.clip_grad_norm_ and clip_grad_value_ against torch.nn.utils, on Tensors and tape parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest

import opreg
from opreg.nn import MLP, Identity, NonFiniteNormError, SoftmaxCrossEntropy, clip_grad_norm_, clip_grad_value_

from torch_reference import needs_torch, torch

TOL = {"rtol": 1e-10, "atol": 1e-12}
SHAPES = [(3, 4), (4,), (2, 3, 2), ()]


def with_gradients(scale: float, dtype=np.float64, missing=()):
    """opreg and torch parameters with the same gradients (None for the indices in ``missing``)."""
    rng = np.random.default_rng(0)
    ours, theirs = [], []
    for i, shape in enumerate(SHAPES):
        value = rng.standard_normal(shape).astype(dtype)
        grad = (scale * rng.standard_normal(shape)).astype(dtype)
        p, t = opreg.Tensor(value.copy(), requires_grad=True), torch.tensor(value.copy(), requires_grad=True)
        if i not in missing:
            p.grad, t.grad = grad.copy(), torch.tensor(grad.copy())
        ours.append(p)
        theirs.append(t)
    return ours, theirs


def assert_same_gradients(ours, theirs, tol=TOL):
    for i, (p, t) in enumerate(zip(ours, theirs, strict=True)):
        if t.grad is None:
            assert p.grad is None
        else:
            np.testing.assert_allclose(p.grad, t.grad.numpy(), err_msg=f"parameter {i}", strict=True, **tol)


NORMS = {
    "l2-clipped": (2.0, 1.0, 10.0),
    "l2-not-clipped": (2.0, 100.0, 0.1),
    "l1": (1.0, 0.5, 1.0),
    "inf": (math.inf, 0.1, 1.0),
    "l3": (3.0, 1.0, 2.0),
    "l-half": (0.5, 5.0, 1.0),
    "int-norm-type": (2, 1.0, 10.0),
}


@needs_torch
@pytest.mark.parametrize(("norm_type", "max_norm", "scale"), NORMS.values(), ids=NORMS.keys())
@pytest.mark.parametrize("missing", [(), (1,)], ids=["all", "one-without-gradient"])
def test_clip_grad_norm_matches_torch(norm_type, max_norm, scale, missing):
    ours, theirs = with_gradients(scale, missing=missing)
    total = clip_grad_norm_(ours, max_norm, norm_type=norm_type)
    t_total = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    assert isinstance(total, np.float64)
    np.testing.assert_allclose(total, t_total.item(), **TOL)
    assert_same_gradients(ours, theirs)


@needs_torch
def test_clip_grad_norm_float32_stays_float32():
    ours, theirs = with_gradients(10.0, np.float32)
    total = clip_grad_norm_(ours, 1.0)
    t_total = torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    assert total.dtype == np.float32 and all(p.grad.dtype == np.float32 for p in ours)
    np.testing.assert_allclose(total, t_total.item(), rtol=1e-6)
    assert_same_gradients(ours, theirs, {"rtol": 1e-6, "atol": 1e-7})


@needs_torch
@pytest.mark.parametrize("clip_value", [0.1, 1.0, 100.0])
def test_clip_grad_value_matches_torch(clip_value):
    ours, theirs = with_gradients(3.0, missing=(2,))
    assert clip_grad_value_(ours, clip_value) is None
    torch.nn.utils.clip_grad_value_(theirs, clip_value)
    assert_same_gradients(ours, theirs, {"rtol": 0, "atol": 0})


@needs_torch
def test_nonfinite_norm_makes_nan_gradients_as_torch_or_raises_when_asked():
    ours, theirs = with_gradients(1.0)
    ours[2].grad[0, 0, 0] = theirs[2].grad[0, 0, 0] = np.inf
    before = [p.grad.copy() for p in ours]
    with pytest.raises(NonFiniteNormError, match=r"the gradient of parameter 2 \(float64 \(2, 3, 2\)\) is not finite"):
        clip_grad_norm_(ours, 1.0, error_if_nonfinite=True)
    for p, b in zip(ours, before, strict=True):
        np.testing.assert_array_equal(p.grad, b, strict=True)  # nothing changed
    with pytest.warns(RuntimeWarning, match="invalid value"):  # NumPy's, for inf * 0
        total = clip_grad_norm_(ours, 1.0)
    t_total = torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    assert total == t_total.item() == math.inf
    for p, t in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(np.isnan(p.grad), np.isnan(t.grad.numpy()))


def test_no_gradients_gives_zero():
    params = [opreg.Tensor(np.ones(2), requires_grad=True)]
    assert clip_grad_norm_(params, 1.0) == 0.0
    assert clip_grad_norm_([], 1.0) == 0.0


def test_single_tensor_and_tape_parameters():
    """A single Tensor is accepted, as torch's; tape parameters (dW arrays) are clipped in place."""
    p = opreg.Tensor(np.ones(4), requires_grad=True)
    p.grad = np.full(4, 3.0)
    assert clip_grad_norm_(p, 1.0) == 6.0
    np.testing.assert_allclose(np.linalg.norm(p.grad), 1.0, rtol=1e-5)

    engine = opreg.Autograd()
    model = MLP([4, 8, 3], engine, output_activation=Identity, rng=np.random.default_rng(0))
    x, y = np.random.default_rng(1).standard_normal((5, 4)) * 10, np.eye(3)[[0, 1, 2, 0, 1]]
    SoftmaxCrossEntropy(engine)(y, model(x))
    engine.backward(1.0)
    arrays = [p.grad for p in model.parameters()]
    total = clip_grad_norm_(model.parameters(), 0.01)
    assert total > 0.01
    assert all(p.grad is a for p, a in zip(model.parameters(), arrays, strict=True)), "a gradient array was replaced"
    clipped = math.sqrt(sum(float(np.sum(p.grad**2)) for p in model.parameters()))
    np.testing.assert_allclose(clipped, 0.01, rtol=1e-4)
