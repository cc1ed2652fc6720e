"""opreg.optim against torch.optim: SGD, Adam and AdamW, step by step, on Tensors and on tape-style parameters.

Every optimizer configuration is run for ten steps on the same starting values and the same gradients in both
libraries, and the parameters are compared after every step. The same configurations then train one MLP built in
the tape style and in the Tensor style (and an equivalent torch model), which must agree.
"""

from __future__ import annotations

import numpy as np
import pytest

import opreg
from opreg.nn import MLP, BoundParameter, Identity, Linear, SoftmaxCrossEntropy
from opreg.optim import SGD, Adam, AdamW

from torch_reference import needs_torch, torch

TOL = {"rtol": 1e-10, "atol": 1e-12}
TOL32 = {"rtol": 2e-5, "atol": 1e-6}
STEPS = 10
SHAPES = [(3, 4), (4,), (2, 3, 2), ()]

#: (optimizer class name, keyword arguments): the same names in opreg.optim and torch.optim take the same keywords.
CONFIGS = {
    "sgd": ("SGD", {"lr": 0.1}),
    "sgd-momentum": ("SGD", {"lr": 0.1, "momentum": 0.9}),
    "sgd-momentum-dampening": ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3}),
    "sgd-nesterov": ("SGD", {"lr": 0.1, "momentum": 0.8, "nesterov": True}),
    "sgd-weight-decay": ("SGD", {"lr": 0.1, "weight_decay": 0.05}),
    "sgd-nesterov-weight-decay": ("SGD", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.1, "nesterov": True}),
    "sgd-all": ("SGD", {"lr": 0.1, "momentum": 0.5, "dampening": 0.5, "weight_decay": 0.05}),
    "adam-defaults": ("Adam", {}),
    "adam": ("Adam", {"lr": 0.01}),
    "adam-weight-decay": ("Adam", {"lr": 0.01, "weight_decay": 0.1}),
    "adam-betas-eps": ("Adam", {"lr": 0.02, "betas": (0.5, 0.9), "eps": 1e-3}),
    "adam-all": ("Adam", {"lr": 0.01, "betas": (0.0, 0.99), "eps": 1e-6, "weight_decay": 0.05}),
    "adamw-defaults": ("AdamW", {}),
    "adamw": ("AdamW", {"lr": 0.01, "weight_decay": 0.1}),
    "adamw-no-decay": ("AdamW", {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-4, "weight_decay": 0.0}),
    "adamw-strong-decay": ("AdamW", {"lr": 0.05, "betas": (0.7, 0.9), "weight_decay": 0.5}),
}

config_params = pytest.mark.parametrize(("name", "kwargs"), CONFIGS.values(), ids=CONFIGS.keys())


def make_pair(name: str, kwargs: dict, opreg_params, torch_params):
    return getattr(opreg.optim, name)(opreg_params, **kwargs), getattr(torch.optim, name)(torch_params, **kwargs)


def starting_values(rng, dtype=np.float64) -> list[np.ndarray]:
    return [rng.standard_normal(shape).astype(dtype) for shape in SHAPES]


def gradient_sequence(rng, dtype=np.float64) -> list[list[np.ndarray]]:
    """STEPS lists of gradients, one per parameter, of varied scale (Adam's normalisation must be exercised)."""
    return [
        [(rng.standard_normal(shape) * 10.0 ** rng.uniform(-2, 1)).astype(dtype) for shape in SHAPES]
        for _ in range(STEPS)
    ]


def run_side_by_side(name, kwargs, values, gradients, tol) -> list[opreg.Tensor]:
    """Step both optimizers through ``gradients`` (``None`` entries: no gradient that step), comparing every step."""
    params = [opreg.Tensor(v.copy(), requires_grad=True) for v in values]
    arrays = [p.data for p in params]
    t_params = [torch.tensor(v.copy(), requires_grad=True) for v in values]
    optimizer, t_optimizer = make_pair(name, kwargs, params, t_params)
    for step, grads in enumerate(gradients):
        for p, t_p, g in zip(params, t_params, grads, strict=True):
            p.grad = None if g is None else g.copy()
            t_p.grad = None if g is None else torch.tensor(g.copy())
        optimizer.step()
        t_optimizer.step()
        for i, (p, t_p, g) in enumerate(zip(params, t_params, grads, strict=True)):
            what = f"parameter {i} {SHAPES[i]} after step {step + 1}"
            np.testing.assert_allclose(p.data, t_p.detach().numpy(), strict=True, err_msg=what, **tol)
            if g is not None:
                np.testing.assert_array_equal(p.grad, g, err_msg=f"{what}: step() changed .grad", strict=True)
    for p, array in zip(params, arrays, strict=True):
        assert p.data is array, "step() must update .data in place, not replace it"
    return params


@needs_torch
@config_params
def test_matches_torch_every_step(name, kwargs):
    """Ten steps on four parameters (matrix, vector, 3-d, 0-d) with the same gradients: equal to torch.optim."""
    rng = np.random.default_rng(0)
    values, gradients = starting_values(rng), gradient_sequence(rng)
    params = run_side_by_side(name, kwargs, values, gradients, TOL)
    for p, v in zip(params, values, strict=True):
        assert p.data.dtype == np.float64
        assert not np.allclose(p.data, v), "the parameters did not move"


@needs_torch
@config_params
def test_missing_gradients_are_skipped_like_torch(name, kwargs):
    """A parameter whose .grad is None on some steps is skipped then (no decay, no momentum, no Adam step count),
    exactly as torch.optim does; the comparison continues on the later steps where its gradient is back."""
    rng = np.random.default_rng(1)
    values, gradients = starting_values(rng), gradient_sequence(rng)
    for step in range(4):
        gradients[step][0] = None  # no gradient for the first steps, then gradients
    for step in (5, 6):
        gradients[step][1] = None  # a gap in the middle
    gradients[3] = [None] * len(SHAPES)  # a step with no gradient at all
    for step in range(STEPS):
        gradients[step][3] = None  # never a gradient
    params = run_side_by_side(name, kwargs, values, gradients, TOL)
    np.testing.assert_array_equal(params[3].data, values[3], strict=True)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_parameter_without_gradient_is_untouched(name):
    """With weight decay and momentum (which would otherwise move it), a parameter with .grad None stays put."""
    kwargs = {"lr": 0.1, "weight_decay": 0.5} | ({"momentum": 0.9} if name == "SGD" else {})
    rng = np.random.default_rng(2)
    moving = opreg.Tensor(rng.standard_normal(5), requires_grad=True)
    still = opreg.Tensor(rng.standard_normal(5), requires_grad=True)
    before_moving, before_still = moving.data.copy(), still.data.copy()
    optimizer = getattr(opreg.optim, name)([moving, still], **kwargs)
    for _ in range(3):
        moving.grad = rng.standard_normal(5)
        optimizer.step()
    assert still.grad is None
    np.testing.assert_array_equal(still.data, before_still, strict=True)
    assert not np.allclose(moving.data, before_moving)


FLOAT32_CONFIGS = ["sgd-nesterov-weight-decay", "adam-all", "adamw"]


@needs_torch
@pytest.mark.parametrize(("name", "kwargs"), [CONFIGS[c] for c in FLOAT32_CONFIGS], ids=FLOAT32_CONFIGS)
def test_float32_parameters_stay_float32(name, kwargs):
    """float32 parameters and gradients: updated in float32 (never promoted to float64) and close to torch's float32."""
    rng = np.random.default_rng(3)
    values, gradients = starting_values(rng, np.float32), gradient_sequence(rng, np.float32)
    params = run_side_by_side(name, kwargs, values, gradients, TOL32)
    for p in params:
        assert p.data.dtype == np.float32


# --- zero_grad -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_zero_grad_sets_tensor_gradients_to_none(name):
    rng = np.random.default_rng(4)
    params = [opreg.Tensor(rng.standard_normal(3), requires_grad=True) for _ in range(3)]
    params[0].grad = rng.standard_normal(3)
    params[1].grad = np.zeros(3)
    optimizer = getattr(opreg.optim, name)(params, lr=0.1)
    optimizer.zero_grad()
    assert [p.grad for p in params] == [None, None, None]


def tape_model(seed: int = 0, dtype=np.float64):
    engine = opreg.Autograd()
    return engine, MLP([4, 8, 3], engine, output_activation=Identity, rng=np.random.default_rng(seed), dtype=dtype)


def tensor_model(seed: int = 0, dtype=np.float64):
    return MLP([4, 8, 3], output_activation=Identity, rng=np.random.default_rng(seed), dtype=dtype)


def classification_data(seed: int, n: int = 10):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 4)), np.eye(3)[rng.integers(0, 3, size=n)]


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_zero_grad_zeroes_tape_gradients_in_place(name):
    """Tape style: zero_grad fills each dW/db with zeros, keeping the very arrays the engine writes into."""
    engine, model = tape_model()
    x, y = classification_data(5)
    SoftmaxCrossEntropy(engine)(y, model(x))
    engine.backward(1.0)
    linears = [layer for layer in model.layers if isinstance(layer, Linear)]
    gradient_arrays = [array for linear in linears for array in (linear.dW, linear.db)]
    assert all(np.any(array != 0) for array in gradient_arrays), "backward left a gradient at zero"
    optimizer = getattr(opreg.optim, name)(model.parameters(), lr=0.1)
    optimizer.zero_grad()
    after = [array for linear in linears for array in (linear.dW, linear.db)]
    assert all(a is b for a, b in zip(after, gradient_arrays, strict=True)), "zero_grad replaced a gradient array"
    assert all(not np.any(array) for array in after)
    assert all(p.grad is g for p, g in zip(optimizer.parameters, gradient_arrays, strict=True))


# --- the tape style and the Tensor style with each optimizer ---------------------------------------------------


def torch_copy(model: MLP):
    """A torch nn.Sequential of Linear/ReLU holding copies of an opreg MLP's [4, 8, 3] weights."""
    linears = [layer for layer in model.layers if isinstance(layer, Linear)]
    t_linears = []
    for linear in linears:
        W = linear.W.data if isinstance(linear.W, opreg.Tensor) else linear.W
        b = linear.b.data if isinstance(linear.b, opreg.Tensor) else linear.b
        t_linear = torch.nn.Linear(W.shape[1], W.shape[0], dtype=torch.float64)
        with torch.no_grad():
            t_linear.weight.copy_(torch.tensor(W))
            t_linear.bias.copy_(torch.tensor(b))
        t_linears.append(t_linear)
    return torch.nn.Sequential(t_linears[0], torch.nn.ReLU(), t_linears[1])


@needs_torch
@config_params
def test_tape_and_tensor_styles_step_identically(name, kwargs):
    """The same MLP in both styles, each with its own optimizer (BoundParameters vs Tensors), ten training steps
    on the same batches: bit-identical parameters after every step, and both equal to torch."""
    engine, tape = tape_model()
    tensors = tensor_model()
    t_model = torch_copy(tape)
    tape_params, tensor_params = tape.parameters(), tensors.parameters()
    assert all(isinstance(p, BoundParameter) for p in tape_params)
    assert all(isinstance(p, opreg.Tensor) for p in tensor_params)
    tape_opt = getattr(opreg.optim, name)(tape_params, **kwargs)
    tensor_opt = getattr(opreg.optim, name)(tensor_params, **kwargs)
    t_opt = getattr(torch.optim, name)(t_model.parameters(), **kwargs)
    tape_criterion, tensor_criterion = SoftmaxCrossEntropy(engine), SoftmaxCrossEntropy()
    initial = [p.data.copy() for p in tape_params]
    for step in range(STEPS):
        x, y = classification_data(100 + step)
        tape_opt.zero_grad()
        engine.zero_grad()
        tape_criterion(y, tape(x))
        engine.backward(1.0)
        tape_opt.step()

        tensor_opt.zero_grad()
        tensor_criterion(y, tensors(x)).backward()
        tensor_opt.step()

        t_opt.zero_grad()
        torch.nn.CrossEntropyLoss()(t_model(torch.tensor(x)), torch.tensor(y.argmax(axis=1))).backward()
        t_opt.step()

        t_params = [p.detach().numpy() for p in t_model.parameters()]
        for (pname, p), q, t_p in zip(tape.named_parameters(), tensor_params, t_params, strict=True):
            what = f"{pname} after step {step + 1}"
            np.testing.assert_array_equal(p.data, q.data, err_msg=f"{what}: tape vs Tensor style", strict=True)
            np.testing.assert_allclose(p.data, t_p, err_msg=f"{what}: vs torch", strict=True, **TOL)
    assert all(not np.allclose(a, p.data) for a, p in zip(initial, tape_params, strict=True)), "nothing moved"


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_float32_models_in_both_styles(name):
    """A float32 MLP trained in either style stays float32 (weights and gradients) and the styles agree exactly."""
    engine, tape = tape_model(dtype=np.float32)
    tensors = tensor_model(dtype=np.float32)
    tape_opt = getattr(opreg.optim, name)(tape.parameters(), lr=0.05)
    tensor_opt = getattr(opreg.optim, name)(tensors.parameters(), lr=0.05)
    for step in range(5):
        x, y = (a.astype(np.float32) for a in classification_data(200 + step))
        tape_opt.zero_grad()
        engine.zero_grad()
        SoftmaxCrossEntropy(engine)(y, tape(x))
        engine.backward(1.0)
        tape_opt.step()
        tensor_opt.zero_grad()
        SoftmaxCrossEntropy()(y, tensors(x)).backward()
        tensor_opt.step()
    for p, q in zip(tape.parameters(), tensors.parameters(), strict=True):
        assert p.data.dtype == p.grad.dtype == q.data.dtype == q.grad.dtype == np.float32
        np.testing.assert_array_equal(p.data, q.data, strict=True)


# --- arguments -------------------------------------------------------------------------------------------------

INVALID = {
    "sgd-negative-lr": ("SGD", {"lr": -0.1}),
    "adam-negative-lr": ("Adam", {"lr": -1e-3}),
    "adamw-negative-lr": ("AdamW", {"lr": -1e-3}),
    "sgd-negative-weight-decay": ("SGD", {"lr": 0.1, "weight_decay": -0.1}),
    "adam-negative-weight-decay": ("Adam", {"weight_decay": -0.1}),
    "sgd-nesterov-without-momentum": ("SGD", {"lr": 0.1, "nesterov": True}),
    "sgd-nesterov-with-dampening": ("SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.1, "nesterov": True}),
    "adam-beta1-one": ("Adam", {"betas": (1.0, 0.999)}),
    "adam-beta2-one": ("Adam", {"betas": (0.9, 1.0)}),
    "adam-negative-beta1": ("Adam", {"betas": (-0.1, 0.999)}),
    "adamw-beta2-above-one": ("AdamW", {"betas": (0.9, 1.5)}),
}


@needs_torch
@pytest.mark.parametrize(("name", "kwargs"), INVALID.values(), ids=INVALID.keys())
def test_invalid_arguments_raise_value_error(name, kwargs):
    """Arguments torch.optim rejects with ValueError are rejected by opreg.optim with ValueError too."""
    with pytest.raises(ValueError):
        getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)], **kwargs)
    with pytest.raises(ValueError):
        getattr(opreg.optim, name)([opreg.Tensor(np.zeros(2), requires_grad=True)], **kwargs)


@pytest.mark.parametrize("optimizer", [SGD, Adam, AdamW])
@pytest.mark.parametrize("empty", [list, tuple, lambda: iter(())], ids=["list", "tuple", "iterator"])
def test_empty_parameter_list_raises_value_error(optimizer, empty):
    with pytest.raises(ValueError, match="empty parameter list"):
        optimizer(empty(), lr=0.1)


BOUNDARY = {
    "sgd-zero-lr": ("SGD", {"lr": 0.0}),
    "sgd-nesterov": ("SGD", {"lr": 0.1, "momentum": 0.5, "nesterov": True}),
    "sgd-dampening-without-momentum": ("SGD", {"lr": 0.1, "dampening": 0.5}),
    "adam-zero-betas": ("Adam", {"betas": (0.0, 0.0)}),
    "adamw-zero-weight-decay": ("AdamW", {"weight_decay": 0.0}),
}


@needs_torch
@pytest.mark.parametrize(("name", "kwargs"), BOUNDARY.values(), ids=BOUNDARY.keys())
def test_boundary_arguments_are_accepted(name, kwargs):
    """Valid edge values (accepted by torch.optim) are accepted, and a step with them runs."""
    getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)], **kwargs)
    p = opreg.Tensor(np.ones(2), requires_grad=True)
    optimizer = getattr(opreg.optim, name)([p], **kwargs)
    p.grad = np.ones(2)
    optimizer.step()
    assert np.all(np.isfinite(p.data))


TORCH_ONLY_CHECKS = {
    "adam-negative-eps": ("Adam", {"eps": -1e-8}),
    "adamw-negative-eps": ("AdamW", {"eps": -1.0}),
    "sgd-negative-momentum": ("SGD", {"lr": 0.1, "momentum": -0.5}),
}


@needs_torch
@pytest.mark.parametrize(("name", "kwargs"), TORCH_ONLY_CHECKS.values(), ids=TORCH_ONLY_CHECKS.keys())
def test_torch_rejects_negative_eps_and_momentum(name, kwargs):
    """The premise of the next test: these arguments are invalid in torch.optim."""
    with pytest.raises(ValueError):
        getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)], **kwargs)


@pytest.mark.parametrize(("name", "kwargs"), TORCH_ONLY_CHECKS.values(), ids=TORCH_ONLY_CHECKS.keys())
def test_negative_eps_and_momentum_raise_value_error(name, kwargs):
    with pytest.raises(ValueError):
        getattr(opreg.optim, name)([opreg.Tensor(np.zeros(2), requires_grad=True)], **kwargs)
