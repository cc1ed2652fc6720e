"""Arrays changed in place between forward and backward (issue #11, item 1): never a silent wrong gradient.

Edits through opreg's API (``t.data += ...``, an optimizer's step, ``load_state_dict``) raise a version error in
both front ends in the default mode; any other in-place write is caught in checking mode. Rebinding a name
(``t += 1``, ``t.data = t.data + 1``) leaves the recorded arrays alone, and the gradient stays right.
"""

from __future__ import annotations

import numpy as np
import pytest

import opreg
import opreg.numpy as onp
from opreg import ModifiedInPlaceError, Tensor
from opreg.nn import MLP, Identity, Linear, MSELoss
from opreg.optim import SGD

from torch_reference import needs_torch, torch

rng = np.random.default_rng(11)


def test_a_tensor_edited_through_data_after_recording_raises_naming_op_input_and_versions():
    w = Tensor(rng.standard_normal((2, 3)), requires_grad=True)
    c = rng.standard_normal((2, 3))
    loss = (w * c).sum()
    w.data += 1  # the array mul's backward reads for c's gradient... and for nothing of w's: still refused
    with pytest.raises(ModifiedInPlaceError) as raised:
        loss.backward()
    message = str(raised.value)
    assert "op 'mul' (plugin 'opreg_builtins.arithmetic')" in message
    assert "input 0 'a' float64 (2, 3)" in message
    assert "version 0 when recorded, now version 1" in message
    assert w.grad is None  # checked before any backward ran: nothing half-accumulated


def test_an_output_that_backward_reads_edited_after_exp_raises():
    x = Tensor(rng.standard_normal(4), requires_grad=True)
    y = onp.exp(x)
    loss = (y * y).sum()
    y.data += 1  # exp's backward reads its output
    with pytest.raises(ModifiedInPlaceError, match=r"op 'exp' .*: its output float64 \(4,\)"):
        loss.backward()


def test_a_constant_tensor_edited_after_recording_raises():
    """A Tensor that needs no gradient is still read by the backward of the op that used it (mul's)."""
    w = Tensor(rng.standard_normal(3), requires_grad=True)
    c = Tensor(rng.standard_normal(3))
    loss = (w * c).sum()
    c.data *= 2
    with pytest.raises(ModifiedInPlaceError, match=r"input 1 'b'"):
        loss.backward()


def test_a_view_of_an_edited_array_is_edited_too():
    """``w.T`` is a view of ``w.data``; editing ``w`` changes what matmul's backward reads through the view."""
    w = Tensor(rng.standard_normal((3, 2)), requires_grad=True)
    x = rng.standard_normal((4, 2))
    loss = (x @ w.T).sum()
    alias = w.detach()  # the same array, as torch's detach shares its version counter
    alias.data -= 0.5
    assert w.version == alias.version == 1
    with pytest.raises(ModifiedInPlaceError):
        loss.backward()


def test_an_optimizer_step_before_backward_raises_on_tensors():
    model = Linear(3, 2, rng=np.random.default_rng(0))
    optimizer = SGD(model.parameters(), lr=0.1)
    x, target = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    MSELoss()(model(x), target).backward()  # gradients for the step below
    loss = MSELoss()(model(x), target)
    optimizer.step()  # W changes under the recorded linear op
    with pytest.raises(ModifiedInPlaceError, match=r"op 'linear' .*input 1 'weight' float64 \(2, 3\)"):
        loss.backward()


def test_an_optimizer_step_before_backward_raises_on_the_tape():
    engine = opreg.Autograd()
    model = MLP([3, 4, 2], engine, output_activation=Identity, rng=np.random.default_rng(0))
    optimizer = SGD(model.parameters(), lr=0.1)
    x, target = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    engine.apply("mse", model(x), target)
    optimizer.step()
    with pytest.raises(ModifiedInPlaceError, match=r"op 'linear' .*input 1 'weight'"):
        engine.backward(1.0)


def test_load_state_dict_counts_as_an_edit():
    model = Linear(3, 2, rng=np.random.default_rng(0))
    loss = model(rng.standard_normal((4, 3))).sum()
    model.load_state_dict({"W": np.zeros((2, 3)), "b": np.zeros(2)})
    with pytest.raises(ModifiedInPlaceError):
        loss.backward()


@needs_torch
def test_the_handout_pattern_steps_after_backward_and_matches_torch():
    """backward, then the optimizer's step in place, then zero_grad: every step's gradient as torch's."""
    w0 = rng.standard_normal((2, 3))
    x, target = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    engine = opreg.Autograd()
    model = Linear(3, 2, engine, rng=np.random.default_rng(0))
    model.W[...] = w0
    model.b[...] = 0
    optimizer = SGD(model.parameters(), lr=0.1)
    tw = torch.tensor(w0, requires_grad=True)
    tb = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    reference = torch.optim.SGD([tw, tb], lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        engine.zero_grad()
        engine.apply("mse", model(x), target)
        engine.backward(1.0)
        engine.gradient_buffer.get_param(target)  # keep_gradients: the buffer stays readable after the step
        optimizer.step()
        reference.zero_grad()
        torch.nn.functional.mse_loss(torch.from_numpy(x) @ tw.T + tb, torch.from_numpy(target)).backward()
        np.testing.assert_allclose(model.dW, tw.grad.numpy())
        reference.step()
    np.testing.assert_allclose(model.W, tw.detach().numpy())


def test_a_retained_graph_after_a_step_raises():
    w = Tensor(rng.standard_normal(3), requires_grad=True)
    loss = (w * w).sum()
    loss.backward(retain_graph=True)
    SGD([w], lr=0.1).step()
    with pytest.raises(ModifiedInPlaceError):
        loss.backward()


@needs_torch
def test_rebinding_is_not_an_edit_and_the_gradient_stays_right():
    """``t += 1`` rebinds t to a new Tensor (Tensor has no in-place operators), and ``t.data = t.data + 1``
    gives it a new array: the recorded arrays are untouched, and the gradient is the recorded graph's."""
    values = rng.standard_normal(3)
    w = Tensor(values.copy(), requires_grad=True)
    t = w * w
    t += 1
    loss = (t * t).sum()
    w.data = w.data + 5  # a new array; mul's node holds the old one
    loss.backward()
    tw = torch.tensor(values, requires_grad=True)
    ((tw * tw + 1) ** 2).sum().backward()
    np.testing.assert_allclose(w.grad, tw.grad.numpy())
    assert w.version == 0


def test_raw_numpy_writes_on_tensor_data_are_caught_in_checking_mode():
    w = Tensor(rng.standard_normal(3), requires_grad=True)
    with opreg.checking():
        loss = (w * w).sum()
    w.data[0] = 100.0  # no counter sees this
    with pytest.raises(ModifiedInPlaceError, match=r"op 'mul' .*input 0 'a' float64 \(3,\).*its values differ"):
        loss.backward()


def test_a_tape_input_divided_in_place_is_caught_in_checking_mode():
    engine = opreg.Autograd()
    x, w = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    with opreg.checking():
        engine.apply("mul", x, w)
        x /= 2
        with pytest.raises(ModifiedInPlaceError, match=r"op 'mul' .*input 0 'a' float64 \(2, 3\)"):
            engine.backward(1.0)


def test_a_tape_output_edited_after_exp_is_caught_in_checking_mode():
    engine = opreg.Autograd()
    x = rng.standard_normal(3)
    with opreg.checking():
        y = engine.apply("exp", x)
        engine.apply("sum", y)
    y += 1
    with pytest.raises(ModifiedInPlaceError, match=r"op 'exp' .*its output float64 \(3,\)"):
        engine.backward(1.0)


def test_the_default_tape_does_not_see_raw_numpy_writes():
    """What README documents: without checking mode, a raw NumPy write on a recorded array goes unseen (the
    gradient then uses the new values, as the handout's engine does)."""
    engine = opreg.Autograd()
    x, w = rng.standard_normal(3), rng.standard_normal(3)
    dw = np.zeros(3)
    engine.apply("mul", x, w, gradients_to_update=[None, dw])
    x /= 2
    if opreg.observe.current():  # OPREG_CHECK=1: the same write is caught
        with pytest.raises(ModifiedInPlaceError):
            engine.backward(1.0)
        return
    engine.backward(1.0)
    np.testing.assert_allclose(dw, x)
