"""opreg.optim against torch.optim: SGD, Adam, AdamW, RMSprop and Adagrad, step by step, on Tensors and on tape-style
parameters; parameter groups, state dicts and zero_grad as torch's.

Every optimizer configuration is run for ten steps on the same starting values and the same gradients in both
libraries, and the parameters are compared after every step. The same configurations then train one MLP built in
the tape style and in the Tensor style (and an equivalent torch model), which must agree.
"""

from __future__ import annotations

import numpy as np
import pytest

import opreg
from opreg.nn import MLP, BoundParameter, Identity, Linear, SoftmaxCrossEntropy
from opreg.optim import SGD, Adagrad, Adam, AdamW, RMSprop

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

#: Added with parameter groups and state dicts: compared step by step, and (a few) in both styles.
NEW_CONFIGS = {
    "sgd-maximize": ("SGD", {"lr": 0.1, "momentum": 0.9, "maximize": True}),
    "adam-amsgrad": ("Adam", {"lr": 0.02, "amsgrad": True}),
    "adam-amsgrad-all": ("Adam", {"lr": 0.01, "betas": (0.5, 0.9), "weight_decay": 0.1, "amsgrad": True}),
    "adam-decoupled": ("Adam", {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    "adamw-amsgrad": ("AdamW", {"lr": 0.02, "weight_decay": 0.1, "amsgrad": True, "maximize": True}),
    "rmsprop-defaults": ("RMSprop", {}),
    "rmsprop": ("RMSprop", {"lr": 0.01, "alpha": 0.9, "eps": 1e-6}),
    "rmsprop-momentum": ("RMSprop", {"lr": 0.01, "momentum": 0.9}),
    "rmsprop-centered": ("RMSprop", {"lr": 0.01, "centered": True}),
    "rmsprop-all": ("RMSprop", {"lr": 0.005, "alpha": 0.8, "weight_decay": 0.1, "momentum": 0.5, "centered": True}),
    "adagrad-defaults": ("Adagrad", {}),
    "adagrad": ("Adagrad", {"lr": 0.1, "lr_decay": 0.05}),
    "adagrad-all": (
        "Adagrad",
        {"lr": 0.1, "lr_decay": 0.01, "weight_decay": 0.1, "initial_accumulator_value": 0.5, "eps": 1e-6},
    ),
}
STYLE_CONFIGS = {**CONFIGS, **{c: NEW_CONFIGS[c] for c in ("adam-amsgrad", "rmsprop-all", "adagrad-all")}}
CONFIGS = {**CONFIGS, **NEW_CONFIGS}
NAMES = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"]

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


@pytest.mark.parametrize("name", NAMES)
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


@pytest.mark.parametrize("name", NAMES)
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


@pytest.mark.parametrize("name", NAMES)
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
@pytest.mark.parametrize(("name", "kwargs"), STYLE_CONFIGS.values(), ids=STYLE_CONFIGS.keys())
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


@pytest.mark.parametrize("name", NAMES)
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
    "rmsprop-negative-alpha": ("RMSprop", {"alpha": -0.1}),
    "rmsprop-negative-momentum": ("RMSprop", {"momentum": -0.1}),
    "rmsprop-negative-eps": ("RMSprop", {"eps": -1e-8}),
    "adagrad-negative-lr-decay": ("Adagrad", {"lr_decay": -0.1}),
    "adagrad-negative-initial-accumulator": ("Adagrad", {"initial_accumulator_value": -1.0}),
    "adagrad-negative-eps": ("Adagrad", {"eps": -1.0}),
}


@needs_torch
@pytest.mark.parametrize(("name", "kwargs"), INVALID.values(), ids=INVALID.keys())
def test_invalid_arguments_raise_value_error(name, kwargs):
    """Arguments torch.optim rejects with ValueError are rejected by opreg.optim with ValueError too."""
    with pytest.raises(ValueError):
        getattr(torch.optim, name)([torch.zeros(2, requires_grad=True)], **kwargs)
    with pytest.raises(ValueError):
        getattr(opreg.optim, name)([opreg.Tensor(np.zeros(2), requires_grad=True)], **kwargs)


@pytest.mark.parametrize("optimizer", [SGD, Adam, AdamW, RMSprop, Adagrad])
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


# --- parameter groups -----------------------------------------------------------------------------------------

GROUP_CONFIGS = {
    "sgd": ("SGD", {"lr": 0.1, "momentum": 0.9}, {"lr": 0.01, "weight_decay": 0.1, "nesterov": True}),
    "adam": ("Adam", {"lr": 0.01}, {"lr": 0.05, "betas": (0.5, 0.9), "amsgrad": True}),
    "adamw": ("AdamW", {"lr": 0.01}, {"weight_decay": 0.5}),
    "rmsprop": ("RMSprop", {"lr": 0.01}, {"momentum": 0.5, "centered": True}),
    # not initial_accumulator_value: torch's Adagrad ignores a group's (see the test below)
    "adagrad": ("Adagrad", {"lr": 0.1}, {"lr_decay": 0.1, "weight_decay": 0.1}),
}
group_params = pytest.mark.parametrize(("name", "defaults", "second"), GROUP_CONFIGS.values(), ids=GROUP_CONFIGS.keys())


def grouped(values, second, module):
    """Parameters 0 and 1 in a group with the defaults, 2 and 3 in one with ``second``'s hyperparameters."""
    if module is torch:
        params = [torch.tensor(v.copy(), requires_grad=True) for v in values]
    else:
        params = [opreg.Tensor(v.copy(), requires_grad=True) for v in values]
    return params, [{"params": params[:2]}, {"params": params[2:], **second}]


def set_gradients(params, t_params, grads):
    for p, t_p, g in zip(params, t_params, grads, strict=True):
        p.grad = g.copy()
        t_p.grad = torch.tensor(g.copy())


@needs_torch
def test_sgd_hyperparameters_changed_between_steps_take_effect_as_torchs():
    """Plain SGD (no momentum, weight decay or maximize) has a path of its own; a group's momentum, weight decay
    and maximize switched on and off between steps, as a user or scheduler does, move between the two paths: the
    momentum buffer starts at the first step with momentum, as torch's, and every step equals torch's."""
    rng = np.random.default_rng(12)
    values, gradients = starting_values(rng), gradient_sequence(rng)
    params, groups = grouped(values, {}, opreg)
    t_params, t_groups = grouped(values, {}, torch)
    optimizer, t_optimizer = SGD(groups, lr=0.1), torch.optim.SGD(t_groups, lr=0.1)
    changes = [{}, {"momentum": 0.9}, {}, {"momentum": 0.0}, {"weight_decay": 0.1}, {"weight_decay": 0.0}]
    changes += [{"maximize": True}, {"maximize": False, "lr": 0.05}, {"momentum": 0.5}, {}]
    for step, (change, grads) in enumerate(zip(changes, gradients, strict=True)):
        for group in [optimizer.param_groups[1], t_optimizer.param_groups[1]]:
            group.update(change)
        set_gradients(params, t_params, grads)
        optimizer.step()
        t_optimizer.step()
        for i, (p, t_p) in enumerate(zip(params, t_params, strict=True)):
            np.testing.assert_allclose(p.data, t_p.detach().numpy(), err_msg=f"{i} after step {step + 1}", **TOL)


@needs_torch
@group_params
def test_parameter_groups_match_torch(name, defaults, second):
    """Two groups with their own hyperparameters, built from a list of dicts, then a group's lr changed by hand
    between steps (as a scheduler does): equal to torch.optim at every step, and the same group keys."""
    rng = np.random.default_rng(7)
    values, gradients = starting_values(rng), gradient_sequence(rng)
    params, groups = grouped(values, second, opreg)
    t_params, t_groups = grouped(values, second, torch)
    optimizer = getattr(opreg.optim, name)(groups, **defaults)
    t_optimizer = getattr(torch.optim, name)(t_groups, **defaults)
    assert len(optimizer.param_groups) == 2
    for group, t_group in zip(optimizer.param_groups, t_optimizer.param_groups, strict=True):
        assert set(group) <= set(t_group)
        assert {k: v for k, v in group.items() if k != "params"} == {k: t_group[k] for k in group if k != "params"}
    for step, grads in enumerate(gradients):
        if step == 5:
            optimizer.param_groups[1]["lr"] *= 0.5
            t_optimizer.param_groups[1]["lr"] *= 0.5
        set_gradients(params, t_params, grads)
        optimizer.step()
        t_optimizer.step()
        for i, (p, t_p) in enumerate(zip(params, t_params, strict=True)):
            np.testing.assert_allclose(p.data, t_p.detach().numpy(), err_msg=f"parameter {i}, step {step}", **TOL)


@needs_torch
@group_params
def test_add_param_group_matches_torch(name, defaults, second):
    """A group added after five steps (as when unfreezing layers) starts its own state then, as in torch."""
    rng = np.random.default_rng(8)
    values, gradients = starting_values(rng), gradient_sequence(rng)
    params, groups = grouped(values, second, opreg)
    t_params, t_groups = grouped(values, second, torch)
    optimizer = getattr(opreg.optim, name)([groups[0]], **defaults)
    t_optimizer = getattr(torch.optim, name)([t_groups[0]], **defaults)
    for step, grads in enumerate(gradients):
        if step == 5:
            optimizer.add_param_group(groups[1])
            t_optimizer.add_param_group(t_groups[1])
            if name == "Adagrad":  # torch's Adagrad makes its state in __init__ only; a later group's by hand
                for p in t_groups[1]["params"]:
                    t_optimizer.state[p] = {
                        "step": torch.tensor(0.0),
                        "sum": torch.full_like(p, t_optimizer.param_groups[1]["initial_accumulator_value"]),
                    }
        set_gradients(params, t_params, grads)
        optimizer.step()
        t_optimizer.step()
        for i, (p, t_p) in enumerate(zip(params, t_params, strict=True)):
            np.testing.assert_allclose(p.data, t_p.detach().numpy(), err_msg=f"parameter {i}, step {step}", **TOL)


def test_named_parameters_give_param_names():
    model = tensor_model()
    optimizer = SGD(model.named_parameters(), lr=0.1)
    assert optimizer.param_groups[0]["param_names"] == [n for n, _ in model.named_parameters()]
    assert optimizer.parameters == model.parameters()


REFUSED_GROUPS = {
    "twice-in-one-group": (lambda a, b: [a, a], ValueError, "given twice"),
    "in-two-groups": (lambda a, b: [{"params": [a]}, {"params": [b, a]}], ValueError, "given twice"),
    "misspelt-hyperparameter": (lambda a, b: [{"params": [a], "learning_rate": 0.1}], ValueError, "no hyperparameter"),
    "a-set": (lambda a, b: [{"params": {a, b}}], TypeError, "not a set"),
    "no-params": (lambda a, b: [{"lr": 0.1}], ValueError, "needs 'params'"),
    "an-array": (lambda a, b: [a.data], TypeError, "Tensor\\(array, requires_grad=True\\)"),
    "a-single-tensor": (lambda a, b: a, TypeError, "not a single Tensor"),
    "a-non-leaf": (lambda a, b: [a * 2], ValueError, "not a leaf"),
    "negative-lr-in-a-group": (lambda a, b: [{"params": [a], "lr": -1.0}], ValueError, "lr must be non-negative"),
}


@pytest.mark.parametrize(("params", "error", "match"), REFUSED_GROUPS.values(), ids=REFUSED_GROUPS.keys())
def test_parameter_groups_that_would_go_wrong_are_refused(params, error, match):
    """A parameter given twice would be stepped twice per step, a misspelt hyperparameter silently ignored (both
    are accepted by torch): here they are errors, as are the inputs torch refuses too."""
    a = opreg.Tensor(np.ones(3), requires_grad=True)
    b = opreg.Tensor(np.ones(2), requires_grad=True)
    with pytest.raises(error, match=match):
        SGD(params(a, b), lr=0.1)


def test_the_same_tape_parameter_from_two_calls_is_one_parameter():
    """model.parameters() makes new BoundParameter objects at each call: still the same parameters."""
    _, model = tape_model()
    optimizer = SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="given twice"):
        optimizer.add_param_group({"params": model.parameters()[:1]})


def test_empty_parameter_list_says_where_parameters_come_from():
    class Unregistered(opreg.nn.Module):  # layers made but never assigned: not sub-modules
        def __init__(self):
            super().__init__()
            self.make = lambda: [Linear(2, 2)]

    with pytest.raises(ValueError, match="empty parameter list") as raised:
        Adam(Unregistered().parameters())
    assert "Sequential" in str(raised.value)


# --- zero_grad --------------------------------------------------------------------------------------------------


def test_zero_grad_without_set_to_none_keeps_zero_arrays():
    """set_to_none=False: a Tensor's gradient becomes zeros in place (None stays None), as torch's."""
    params = [opreg.Tensor(np.ones(3), requires_grad=True) for _ in range(2)]
    params[0].grad = np.full(3, 2.0)
    grad = params[0].grad
    SGD(params, lr=0.1).zero_grad(set_to_none=False)
    assert params[0].grad is grad
    np.testing.assert_array_equal(grad, np.zeros(3), strict=True)
    assert params[1].grad is None


def test_zero_grad_replaces_a_read_only_tape_gradient_with_zeros():
    """A dW the engine cannot write into (a user's read-only or broadcast array): zero_grad sets the attribute to a
    new array of zeros, as it does a Tensor's read-only .grad (it raised AttributeError: a BoundParameter's grad
    has no setter)."""
    _, model = tape_model()
    linear = model.layers[0]
    frozen = np.broadcast_to(np.ones(linear.W.shape[1]), linear.W.shape)  # read-only
    linear.dW = frozen
    SGD(model.parameters(), lr=0.1).zero_grad()
    assert linear.dW is not frozen and linear.dW.flags.writeable
    np.testing.assert_array_equal(linear.dW, np.zeros(linear.W.shape), strict=True)
    np.testing.assert_array_equal(frozen, np.ones(linear.W.shape))


# --- state dicts ------------------------------------------------------------------------------------------------


def torch_state_values(value):
    return float(value) if value.ndim == 0 else value.numpy()


@needs_torch
@config_params
def test_state_dict_has_torchs_layout(name, kwargs):
    """After a few steps (some parameters without gradients): the same parameter numbers with state, the same
    state names and values, and the same groups (opreg's keys are torch's, torch has more: foreach, fused...)."""
    rng = np.random.default_rng(9)
    values, gradients = starting_values(rng), gradient_sequence(rng)
    gradients[0][1] = None
    for grads in gradients[:3]:
        grads[3] = None
    params, groups = grouped(values, {"lr": 0.005}, opreg)
    t_params, t_groups = grouped(values, {"lr": 0.005}, torch)
    optimizer = getattr(opreg.optim, name)(groups, **kwargs)
    t_optimizer = getattr(torch.optim, name)(t_groups, **kwargs)
    for grads in gradients[:3]:
        for p, t_p, g in zip(params, t_params, grads, strict=True):
            p.grad = None if g is None else g.copy()
            t_p.grad = None if g is None else torch.tensor(g.copy())
        optimizer.step()
        t_optimizer.step()
    state, t_state = optimizer.state_dict(), t_optimizer.state_dict()
    assert set(state) == {"state", "param_groups"}
    assert list(state["state"]) == sorted(t_state["state"])
    for index, entry in state["state"].items():
        assert set(entry) == set(t_state["state"][index]), f"parameter {index}"
        for key, value in entry.items():
            expected = torch_state_values(t_state["state"][index][key])
            np.testing.assert_allclose(value, expected, err_msg=f"{key} of parameter {index}", **TOL)
    for group, t_group in zip(state["param_groups"], t_state["param_groups"], strict=True):
        assert set(group) <= set(t_group)
        assert group == {key: t_group[key] for key in group}


def train_a_few_steps(name, kwargs, style, steps, seed=0, state=None):
    """A model and optimizer (built afresh, loaded from ``state`` when given) after ``steps`` training steps."""
    engine, model = tape_model(seed) if style == "tape" else (None, tensor_model(seed))
    optimizer = getattr(opreg.optim, name)(model.parameters(), **kwargs)
    if state is not None:
        model.load_state_dict(state[0])
        optimizer.load_state_dict(state[1])
    criterion = SoftmaxCrossEntropy(engine)
    for step in range(*steps):
        x, y = classification_data(300 + step)
        optimizer.zero_grad()
        if engine is not None:
            engine.zero_grad()
            criterion(y, model(x))
            engine.backward(1.0)
        else:
            criterion(y, model(x)).backward()
        optimizer.step()
    return model, optimizer


@pytest.mark.parametrize("style", ["tape", "tensor"])
@pytest.mark.parametrize(("name", "kwargs"), STYLE_CONFIGS.values(), ids=STYLE_CONFIGS.keys())
def test_state_dict_round_trip_resumes_bit_for_bit(name, kwargs, style):
    """Train 4 steps, save model and optimizer, train 3 more; a fresh model and optimizer (other initial weights)
    loaded from the save and trained the same 3 steps end bit for bit equal. Steps after the save do not change
    the saved state (it is a copy)."""
    model, optimizer = train_a_few_steps(name, kwargs, style, (0, 4))
    saved = (model.state_dict(), optimizer.state_dict())
    snapshot = repr(saved[1])
    for step in range(4, 7):
        x, y = classification_data(300 + step)
        optimizer.zero_grad()
        if isinstance(model.autograd_engine, opreg.Autograd):
            model.autograd_engine.zero_grad()
            SoftmaxCrossEntropy(model.autograd_engine)(y, model(x))
            model.autograd_engine.backward(1.0)
        else:
            SoftmaxCrossEntropy()(y, model(x)).backward()
        optimizer.step()
    assert repr(saved[1]) == snapshot, "a later step changed the saved state"
    resumed, _ = train_a_few_steps(name, kwargs, style, (4, 7), seed=1, state=saved)
    for (pname, p), q in zip(model.named_parameters(), resumed.parameters(), strict=True):
        np.testing.assert_array_equal(q.data, p.data, err_msg=pname, strict=True)


def test_loaded_hyperparameters_replace_the_current_ones():
    """As torch's: the saved groups' lr etc. come back (a scheduler's change survives a restart)."""
    params = [opreg.Tensor(np.ones(2), requires_grad=True)]
    saved = SGD(params, lr=0.5, momentum=0.9).state_dict()
    optimizer = SGD([opreg.Tensor(np.ones(2), requires_grad=True)], lr=0.1)
    optimizer.load_state_dict(saved)
    assert optimizer.param_groups[0]["lr"] == 0.5
    assert optimizer.param_groups[0]["momentum"] == 0.9


def test_loaded_state_is_cast_to_the_parameters_dtype():
    params32 = [opreg.Tensor(np.ones(3, dtype=np.float32), requires_grad=True)]
    p = opreg.Tensor(np.ones(3), requires_grad=True)
    p.grad = np.ones(3)
    optimizer = Adam([p])
    optimizer.step()
    float32 = Adam(params32)
    float32.load_state_dict(optimizer.state_dict())
    assert float32.state[params32[0]]["exp_avg"].dtype == np.float32


def refused_state(optimizer_name):
    p = opreg.Tensor(np.ones(3), requires_grad=True)
    p.grad = np.ones(3)
    optimizer = getattr(opreg.optim, optimizer_name)(
        [p], lr=0.1, **({"momentum": 0.9} if optimizer_name == "SGD" else {})
    )
    optimizer.step()
    return optimizer.state_dict()


REFUSED_STATES = {
    "other-group-count": (
        lambda: [{"params": [opreg.Tensor(np.ones(3))]}, {"params": [opreg.Tensor(np.ones(1))]}],
        "Adam",
        "1 parameter groups but this Adam has 2",
    ),
    "other-group-size": (
        lambda: [opreg.Tensor(np.ones(3)), opreg.Tensor(np.ones(1))],
        "Adam",
        r"hold \[1\] parameters",
    ),
    "other-shape": (
        lambda: [opreg.Tensor(np.ones(4))],
        "Adam",
        "has shape \\(3,\\) but the parameter has shape \\(4,\\)",
    ),
    "other-optimizer": (lambda: [opreg.Tensor(np.ones(3))], "SGD", "'exp_avg', which SGD does not keep"),
}


@pytest.mark.parametrize(("params", "target", "match"), REFUSED_STATES.values(), ids=REFUSED_STATES.keys())
def test_a_state_that_does_not_fit_is_refused_and_nothing_changes(params, target, match):
    saved = refused_state("Adam")
    optimizer = getattr(opreg.optim, target)(params(), lr=0.3)
    before = repr(optimizer.state_dict())
    with pytest.raises(ValueError, match=match):
        optimizer.load_state_dict(saved)
    assert repr(optimizer.state_dict()) == before


def test_adagrad_uses_each_groups_initial_accumulator_value():
    """A group's own initial_accumulator_value starts its sums, as a group's hyperparameters override the
    defaults. torch 2.13's Adagrad starts every sum from the constructor's value instead, ignoring the group's:
    opreg does not copy that."""
    a, b = (opreg.Tensor(np.ones(2), requires_grad=True) for _ in range(2))
    optimizer = Adagrad([{"params": [a]}, {"params": [b], "initial_accumulator_value": 3.0}], lr=0.1)
    np.testing.assert_array_equal(optimizer.state[a]["sum"], np.zeros(2), strict=True)
    np.testing.assert_array_equal(optimizer.state[b]["sum"], np.full(2, 3.0), strict=True)
    a.grad, b.grad = np.ones(2), np.ones(2)
    optimizer.step()
    np.testing.assert_allclose(b.data, 1 - 0.1 * 1 / (np.sqrt(4.0) + 1e-10), **TOL)


def test_adagrad_state_exists_before_the_first_step():
    """As torch's Adagrad: every parameter has its sum (initial_accumulator_value) from the start."""
    params = [opreg.Tensor(np.ones(2), requires_grad=True)]
    state = Adagrad(params, initial_accumulator_value=0.25).state_dict()["state"]
    assert list(state) == [0]
    assert state[0]["step"] == 0
    np.testing.assert_array_equal(state[0]["sum"], np.full(2, 0.25), strict=True)


def test_step_calls_the_closure_and_returns_its_loss():
    p = opreg.Tensor(np.ones(2), requires_grad=True)
    optimizer = SGD([p], lr=0.5)

    def closure():
        optimizer.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    loss = optimizer.step(closure)
    assert float(loss) == 2.0
    np.testing.assert_array_equal(p.data, np.zeros(2), strict=True)


def test_repr_lists_the_groups():
    text = repr(SGD([opreg.Tensor(np.ones(2), requires_grad=True)], lr=0.5))
    assert text.startswith("SGD (\nParameter Group 0\n") and "    lr: 0.5\n" in text


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_updates_a_large_parameter_a_piece_at_a_time_with_the_same_bits(dtype):
    """``data -= lr * grad`` made whole would need a temporary of the parameter's size, on top of everything a
    step holds at its end; made a piece at a time it needs one piece, and gives the same bits."""
    import tracemalloc

    from opreg.optim.optimizers import PIECE

    rng = np.random.default_rng(0)
    data = rng.standard_normal((3 * PIECE // 8 + 1, 8)).astype(dtype)  # 3 pieces and a part
    p = opreg.Tensor(data.copy(), requires_grad=True)
    p.grad = rng.standard_normal(data.shape).astype(dtype)
    expected = data - 0.1 * p.grad
    optimizer = SGD([p], lr=0.1)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        optimizer.step()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert p.data.tobytes() == expected.tobytes()
    assert peak < data.nbytes / 2


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_plain_sgd_updates_by_numpys_own_product_with_the_python_float(dtype):
    """Plain SGD multiplies by lr given once per step as an array of the gradients' dtype: bit for bit what
    ``data -= lr * grad`` gives with the Python float (NEP 50 converts it to that dtype), in a group whose
    parameters have two dtypes."""
    rng = np.random.default_rng(0)
    params = [opreg.Tensor(rng.standard_normal(5).astype(dtype), requires_grad=True) for _ in range(2)]
    params.insert(1, opreg.Tensor(rng.standard_normal(3), requires_grad=True))  # float64 between them
    grads = [rng.standard_normal(p.shape).astype(p.dtype) * 100 for p in params]
    expected = [p.data.copy() for p in params]
    for data, grad in zip(expected, grads, strict=True):
        data -= 0.0123 * grad
    for p, grad in zip(params, grads, strict=True):
        p.grad = grad.copy()
    SGD(params, lr=0.0123).step()
    for p, want in zip(params, expected, strict=True):
        assert p.data.dtype == want.dtype and p.data.tobytes() == want.tobytes()


@pytest.mark.parametrize(
    ("optimizer", "settings"),
    [
        (SGD, {"momentum": 0.9, "weight_decay": 0.01}),
        (SGD, {"momentum": 0.9, "nesterov": True, "maximize": True}),
        (Adam, {"weight_decay": 0.01}),
        (Adam, {"amsgrad": True, "maximize": True}),
        (AdamW, {}),
        (RMSprop, {"momentum": 0.5, "centered": True, "weight_decay": 0.01}),
        (RMSprop, {}),
        (Adagrad, {"lr_decay": 0.1, "weight_decay": 0.01}),
    ],
)
def test_every_update_of_a_large_parameter_is_made_in_pieces_with_the_same_bits(optimizer, settings, monkeypatch):
    """Every optimizer updates a large parameter a piece at a time: the bits of the update made whole, over steps
    (state buffers included), with temporaries of a piece rather than of the parameter. Whole, Adam's made four
    parameter-sized arrays per step, memory malloc gave back and faulted in again at every step."""
    import tracemalloc

    from opreg.optim import optimizers

    rng = np.random.default_rng(0)
    data = rng.standard_normal((3 * optimizers.PIECE // 8 + 1, 8)).astype(np.float32)  # 3 pieces and a part
    grads = [rng.standard_normal(data.shape).astype(np.float32) for _ in range(3)]

    def run(piece: int) -> tuple[bytes, int]:
        monkeypatch.setattr(optimizers, "PIECE", piece)
        p = opreg.Tensor(data.copy(), requires_grad=True)
        stepper = optimizer([p], lr=0.01, **settings)
        peak = 0
        for step, grad in enumerate(grads):
            p.grad = grad.copy()
            tracemalloc.start()
            try:
                stepper.step()
                if step:  # the first step's state buffers are made whole: not counted
                    peak = max(peak, tracemalloc.get_traced_memory()[1])
            finally:
                tracemalloc.stop()
        return p.data.tobytes(), peak

    piece = optimizers.PIECE
    whole, whole_peak = run(1 << 62)
    pieces, peak = run(piece)
    assert pieces == whole
    assert peak <= 4 * piece * data.itemsize + 65536  # a few temporaries of a piece (RMSprop centered: four)
    assert 2 * peak < whole_peak
