"""opreg.optim.lr_scheduler against torch.optim.lr_scheduler: the learning rates of every step, exactly (==).

Each scheduler runs 50 steps on an opreg optimizer and on a torch optimizer with the same groups; after every step
``get_last_lr()``, each group's ``lr`` (and the momentum OneCycleLR cycles) must be equal, not merely close, since
opreg computes torch's recursive formulas in torch's order. The state dicts are compared too, and a schedule saved
half way and loaded into a fresh scheduler continues identically.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import opreg
from opreg.optim import lr_scheduler

from torch_reference import needs_torch, torch

STEPS = 50

#: (scheduler class name, keyword arguments, optimizer class name, optimizer keyword arguments).
SCHEDULES = {
    "step": ("StepLR", {"step_size": 7, "gamma": 0.5}, "SGD", {"lr": 0.1}),
    "step-defaults": ("StepLR", {"step_size": 3}, "Adam", {"lr": 0.01}),
    "multistep": ("MultiStepLR", {"milestones": [5, 12, 12, 30], "gamma": 0.3}, "SGD", {"lr": 0.1}),
    "exponential": ("ExponentialLR", {"gamma": 0.93}, "SGD", {"lr": 0.1}),
    "cosine": ("CosineAnnealingLR", {"T_max": 20}, "SGD", {"lr": 0.1}),
    "cosine-eta-min": ("CosineAnnealingLR", {"T_max": 13, "eta_min": 1e-3}, "Adam", {"lr": 0.05}),
    "linear": ("LinearLR", {}, "SGD", {"lr": 0.1}),
    "linear-down": ("LinearLR", {"start_factor": 1.0, "end_factor": 0.1, "total_iters": 30}, "SGD", {"lr": 0.1}),
    "linear-up": ("LinearLR", {"start_factor": 0.05, "total_iters": 40}, "AdamW", {"lr": 0.01}),
    "onecycle-sgd": ("OneCycleLR", {"max_lr": 0.5, "total_steps": STEPS}, "SGD", {"lr": 0.1, "momentum": 0.9}),
    "onecycle-adam": ("OneCycleLR", {"max_lr": [0.01, 0.02], "epochs": 5, "steps_per_epoch": 10}, "Adam", {}),
    "onecycle-three-phase-linear": (
        "OneCycleLR",
        {"max_lr": 0.1, "total_steps": STEPS, "three_phase": True, "anneal_strategy": "linear", "pct_start": 0.25},
        "SGD",
        {"lr": 0.1, "momentum": 0.5},
    ),
    "onecycle-no-momentum": (
        "OneCycleLR",
        {"max_lr": 0.1, "total_steps": 60, "cycle_momentum": False, "div_factor": 10.0, "final_div_factor": 100.0},
        "RMSprop",
        {},
    ),
}


def optimizers(name, kwargs):
    """An opreg and a torch optimizer with two groups (the second at a tenth of the learning rate)."""
    a, b = np.ones(3), np.ones(2)
    ours = [opreg.Tensor(a.copy(), requires_grad=True), opreg.Tensor(b.copy(), requires_grad=True)]
    theirs = [torch.tensor(a.copy(), requires_grad=True), torch.tensor(b.copy(), requires_grad=True)]
    second = {"lr": kwargs.get("lr", 0.01) / 10}
    return (
        getattr(opreg.optim, name)([{"params": ours[:1]}, {"params": ours[1:], **second}], **kwargs),
        getattr(torch.optim, name)([{"params": theirs[:1]}, {"params": theirs[1:], **second}], **kwargs),
    )


def assert_same_schedule(ours, theirs, optimizer, t_optimizer, what):
    assert ours.get_last_lr() == theirs.get_last_lr(), what
    for group, t_group in zip(optimizer.param_groups, t_optimizer.param_groups, strict=True):
        assert group["lr"] == t_group["lr"], what
        for key in ("momentum", "betas"):
            if key in group:
                assert group[key] == t_group[key], f"{key}, {what}"


@needs_torch
@pytest.mark.parametrize(
    ("scheduler", "kwargs", "optimizer_name", "optimizer_kwargs"), SCHEDULES.values(), ids=SCHEDULES.keys()
)
def test_schedule_equals_torchs_every_step(scheduler, kwargs, optimizer_name, optimizer_kwargs):
    optimizer, t_optimizer = optimizers(optimizer_name, optimizer_kwargs)
    ours = getattr(lr_scheduler, scheduler)(optimizer, **kwargs)
    theirs = getattr(torch.optim.lr_scheduler, scheduler)(t_optimizer, **kwargs)
    assert_same_schedule(ours, theirs, optimizer, t_optimizer, "after building")
    seen = set()
    for step in range(1, STEPS + 1):
        optimizer.step()
        t_optimizer.step()
        ours.step()
        theirs.step()
        assert_same_schedule(ours, theirs, optimizer, t_optimizer, f"step {step}")
        seen.add(ours.get_last_lr()[0])
    assert len(seen) > 1, "the learning rate never changed"
    assert ours.state_dict() == theirs.state_dict()


@needs_torch
def test_two_schedulers_chain_like_torchs():
    """LinearLR warm-up and ExponentialLR decay on one optimizer, both stepped each epoch: each scales what the
    other left, as torch's chainable schedulers do."""
    optimizer, t_optimizer = optimizers("SGD", {"lr": 0.1})
    ours = [lr_scheduler.LinearLR(optimizer, 0.1, total_iters=10), lr_scheduler.ExponentialLR(optimizer, 0.95)]
    theirs = [
        torch.optim.lr_scheduler.LinearLR(t_optimizer, 0.1, total_iters=10),
        torch.optim.lr_scheduler.ExponentialLR(t_optimizer, 0.95),
    ]
    for step in range(STEPS):
        optimizer.step()
        t_optimizer.step()
        for a, b in zip(ours, theirs, strict=True):
            a.step()
            b.step()
            assert_same_schedule(a, b, optimizer, t_optimizer, f"step {step}")


PLATEAU = {
    "min-rel": {"patience": 2},
    "min-abs-cooldown": {"threshold_mode": "abs", "threshold": 0.05, "patience": 1, "cooldown": 2, "factor": 0.5},
    "max-rel-min-lr": {"mode": "max", "patience": 0, "factor": 0.5, "min_lr": [0.02, 0.0]},
    "max-abs-eps": {"mode": "max", "threshold_mode": "abs", "patience": 1, "eps": 0.01},
}


@needs_torch
@pytest.mark.parametrize("kwargs", PLATEAU.values(), ids=PLATEAU.keys())
def test_reduce_lr_on_plateau_equals_torchs(kwargs):
    """A metric that improves, stalls, wobbles and improves again, 50 epochs."""
    optimizer, t_optimizer = optimizers("SGD", {"lr": 0.1})
    ours = lr_scheduler.ReduceLROnPlateau(optimizer, **kwargs)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(t_optimizer, **kwargs)
    rng = np.random.default_rng(0)
    metrics = np.concatenate([np.linspace(1, 0.5, 10), 0.5 + 0.02 * rng.standard_normal(30), np.linspace(0.5, 0.2, 10)])
    for step, metric in enumerate(metrics):
        ours.step(float(metric))
        theirs.step(float(metric))
        assert_same_schedule(ours, theirs, optimizer, t_optimizer, f"epoch {step}")
    assert ours.get_last_lr() != [0.1, 0.01], "never reduced"
    assert ours.state_dict() == theirs.state_dict()


@needs_torch
@pytest.mark.parametrize(
    ("scheduler", "kwargs", "optimizer_name", "optimizer_kwargs"), SCHEDULES.values(), ids=SCHEDULES.keys()
)
def test_state_dict_round_trip_continues_the_schedule(scheduler, kwargs, optimizer_name, optimizer_kwargs):
    """Saved after 20 steps (optimizer and scheduler) and loaded into fresh ones: the next 30 steps equal those of
    the run that went on, and torch's."""
    optimizer, t_optimizer = optimizers(optimizer_name, optimizer_kwargs)
    ours = getattr(lr_scheduler, scheduler)(optimizer, **kwargs)
    theirs = getattr(torch.optim.lr_scheduler, scheduler)(t_optimizer, **kwargs)
    for _ in range(20):
        optimizer.step()
        t_optimizer.step()
        ours.step()
        theirs.step()
    saved = (optimizer.state_dict(), ours.state_dict())
    resumed_optimizer, _ = optimizers(optimizer_name, optimizer_kwargs)
    resumed = getattr(lr_scheduler, scheduler)(resumed_optimizer, **kwargs)
    resumed_optimizer.load_state_dict(saved[0])
    resumed.load_state_dict(saved[1])
    for step in range(20, STEPS):
        t_optimizer.step()
        resumed_optimizer.step()
        theirs.step()
        resumed.step()
        assert_same_schedule(resumed, theirs, resumed_optimizer, t_optimizer, f"step {step + 1}")


def simple_optimizer(lr=0.1):
    return opreg.optim.SGD([opreg.Tensor(np.ones(2), requires_grad=True)], lr=lr)


def test_stepping_the_scheduler_before_the_optimizer_warns():
    scheduler = lr_scheduler.StepLR(simple_optimizer(), step_size=2)
    with pytest.warns(UserWarning, match=r"before optimizer.step\(\)"):
        scheduler.step()


def test_no_warning_in_the_right_order():
    optimizer = simple_optimizer()
    scheduler = lr_scheduler.StepLR(optimizer, step_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optimizer.step()
        scheduler.step()


def test_onecycle_beyond_its_steps_is_an_error():
    optimizer = simple_optimizer()
    scheduler = lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=3, cycle_momentum=False)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    with pytest.raises(ValueError, match="stepped 4 times but its cycle has 3 steps"):
        scheduler.step()


REFUSED = {
    "step-size-zero": (lambda: lr_scheduler.StepLR(simple_optimizer(), 0), ValueError, "step_size"),
    "t-max-zero": (lambda: lr_scheduler.CosineAnnealingLR(simple_optimizer(), 0), ValueError, "T_max"),
    "linear-start-zero": (lambda: lr_scheduler.LinearLR(simple_optimizer(), 0.0), ValueError, "start_factor"),
    "onecycle-without-length": (lambda: lr_scheduler.OneCycleLR(simple_optimizer(), 0.1), ValueError, "total_steps"),
    "onecycle-momentum-of-adagrad": (
        lambda: lr_scheduler.OneCycleLR(opreg.optim.Adagrad([opreg.Tensor(np.ones(1))]), 0.1, 5),
        ValueError,
        "cycle_momentum=False",
    ),
    "plateau-factor-one": (
        lambda: lr_scheduler.ReduceLROnPlateau(simple_optimizer(), factor=1.0),
        ValueError,
        "factor",
    ),
    "plateau-mode": (lambda: lr_scheduler.ReduceLROnPlateau(simple_optimizer(), mode="best"), ValueError, "mode"),
    "resume-without-initial-lr": (
        lambda: lr_scheduler.StepLR(simple_optimizer(), 2, last_epoch=3),
        KeyError,
        "initial_lr",
    ),
}


@pytest.mark.parametrize(("build", "error", "match"), REFUSED.values(), ids=REFUSED.keys())
def test_invalid_schedules_are_refused(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_a_scheduler_of_something_else_is_refused(pytestconfig):
    if pytestconfig.getoption("typeguard_packages", default=None):
        pytest.skip("under typeguard, an argument of the wrong type is refused by typeguard first")
    with pytest.raises(TypeError, match="schedules an opreg.optim optimizer, not a object"):
        lr_scheduler.StepLR(object(), 2)
