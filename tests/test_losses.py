"""The loss modules against torch.nn's, in float64 to 1e-10, in both styles, for every reduction; the handout's
``SoftmaxCrossEntropy(y, y_hat)`` refusing arguments that cannot be in its order."""

from __future__ import annotations

import numpy as np
import pytest

import opreg
from opreg.nn import SoftmaxCrossEntropy

from torch_reference import needs_torch, torch


def test_softmax_cross_entropy_in_pytorchs_order_is_an_error_not_a_negative_loss():
    """SoftmaxCrossEntropy takes (y, y_hat): called as (logits, target) it used to return a negative loss, and no
    gradient reached the model. Logits are not distributions: the module says which order it expects."""
    rng = np.random.default_rng(0)
    logits = opreg.Tensor(rng.standard_normal((4, 3)), requires_grad=True)
    target = np.eye(3)[[0, 2, 1, 1]]
    with pytest.raises(
        opreg.OpUsageError, match=r"SoftmaxCrossEntropy\(y, y_hat\).*CrossEntropyLoss\(logits, target\)"
    ):
        SoftmaxCrossEntropy()(logits, target)


# --- every loss against torch.nn, both styles, every reduction ------------------------------------------------------

TOL = {"rtol": 1e-10, "atol": 1e-12}
REDUCTIONS = ["mean", "sum", "none"]
STYLES = ["tape", "tensor"]


def _probabilities(rng: np.random.Generator, shape: tuple[int, ...], axis: int = 1) -> np.ndarray:
    e = np.exp(rng.standard_normal(shape))
    return e / e.sum(axis=axis, keepdims=True)


def _cases() -> dict[str, tuple[str, dict, np.ndarray, np.ndarray]]:
    """name -> (module name, keyword options, input, target): inputs of each loss, edges among them."""
    rng = np.random.default_rng(42)
    logits = rng.standard_normal((6, 4)) * 2
    logits[0] = [1e4, -1e4, 0.0, 1e4]  # huge, tied logits: finite
    classes = np.array([0, 1, 3, 1, 2, 1])
    weight = np.array([0.5, 2.0, 1.0, 3.0])
    spatial = rng.standard_normal((3, 4, 2, 5))
    spatial_classes = rng.integers(0, 4, size=(3, 2, 5))
    log_probabilities = np.log(_probabilities(rng, (6, 4)))
    log_probabilities[2, 0] = -np.inf  # log(0) of a class that is not the target: read by nothing
    prediction, target = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    target[0, 0] = prediction[0, 0]  # |d| = 0: L1's kink
    target[1, 1] = prediction[1, 1] - 0.5  # |d| = delta exactly (0.5 is exact in binary): Huber's switch
    probability = rng.uniform(0.05, 0.95, (4, 3))
    probability[0, :2] = [0.0, 1.0]  # the clamp at -100, PyTorch's finite gradient there
    soft = rng.uniform(0.0, 1.0, (4, 3))
    soft[0, :2] = [0.0, 1.0]
    edge_logits = rng.standard_normal((4, 3)) * 3
    edge_logits[0] = [0.0, 1000.0, -1000.0]
    return {
        "cross_entropy": ("CrossEntropyLoss", {}, logits, classes),
        "cross_entropy-weight-ignore": ("CrossEntropyLoss", {"weight": weight, "ignore_index": 1}, logits, classes),
        "cross_entropy-smoothing": (
            "CrossEntropyLoss",
            {"weight": weight, "ignore_index": 3, "label_smoothing": 0.2},
            logits,
            classes,
        ),
        "cross_entropy-spatial": ("CrossEntropyLoss", {"weight": weight}, spatial, spatial_classes),
        "cross_entropy-unbatched": ("CrossEntropyLoss", {}, logits[1], np.array(2)),
        "cross_entropy-probabilities": ("CrossEntropyLoss", {}, logits, _probabilities(rng, (6, 4))),
        "cross_entropy-probabilities-weight-smoothing": (
            "CrossEntropyLoss",
            {"weight": weight, "label_smoothing": 0.1},
            spatial,
            _probabilities(rng, spatial.shape),
        ),
        "nll": ("NLLLoss", {}, log_probabilities, classes),
        "nll-weight-ignore": ("NLLLoss", {"weight": weight, "ignore_index": 2}, log_probabilities, classes),
        "nll-spatial": ("NLLLoss", {}, spatial, spatial_classes),
        "mse": ("MSELoss", {}, prediction, target),
        "l1": ("L1Loss", {}, prediction, target),
        "huber": ("HuberLoss", {"delta": 0.5}, prediction * 2, target * 2),
        "huber-default": ("HuberLoss", {}, prediction * 2, target * 2),
        "bce": ("BCELoss", {}, probability, soft),
        "bce-with-logits": ("BCEWithLogitsLoss", {}, edge_logits, soft),
        "bce-with-logits-pos-weight": (
            "BCEWithLogitsLoss",
            {"pos_weight": np.array([0.5, 2.0, 3.0])},
            edge_logits,
            soft,
        ),
    }


CASES = _cases()


def _torch_options(options: dict) -> dict:
    return {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in options.items()}


def run_opreg(style: str, module: str, options: dict, x: np.ndarray, t: np.ndarray, g: np.ndarray):
    """The loss and the gradients of the input and (a float target) the target, in one style."""
    float_target = t.dtype.kind == "f"
    if style == "tape":
        engine = opreg.Autograd()
        x, t = x.copy(), t.copy()
        loss = getattr(opreg.nn, module)(engine, **options)(x, t)
        engine.backward(g)
        grads = [engine.gradient_buffer.get_param(x), engine.gradient_buffer.get_param(t) if float_target else None]
        return loss, grads
    X = opreg.Tensor(x.copy(), requires_grad=True)
    T = opreg.Tensor(t.copy(), requires_grad=float_target)
    loss = getattr(opreg.nn, module)(**options)(X, T)
    grads = opreg.grad(loss, [X, T] if float_target else [X], g)
    return loss.data, [grad.data for grad in grads] + ([] if float_target else [None])


def run_torch(module: str, options: dict, x: np.ndarray, t: np.ndarray, g: np.ndarray):
    float_target = t.dtype.kind == "f"
    X = torch.tensor(x.copy(), requires_grad=True)
    T = torch.tensor(t.copy(), requires_grad=float_target)
    loss = getattr(torch.nn, module)(**_torch_options(options))(X, T)
    grads = torch.autograd.grad(loss, [X, T] if float_target else [X], torch.tensor(g))
    return loss.detach().numpy(), [grad.numpy() for grad in grads] + ([] if float_target else [None])


@needs_torch
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_loss_matches_torch_nn(case, reduction, style):
    """Each loss, with its options, value and the gradients of the input and of a float target, equal torch.nn's
    in float64 to 1e-10, for every reduction, on the tape and on Tensors."""
    module, options, x, t = CASES[case]
    options = {**options, "reduction": reduction}
    shape = getattr(torch.nn, module)(**_torch_options(options))(torch.tensor(x), torch.tensor(t)).shape
    g = np.random.default_rng(1).standard_normal(tuple(shape))
    expected, expected_grads = run_torch(module, options, x, t, g)
    loss, grads = run_opreg(style, module, options, x, t, g)
    np.testing.assert_allclose(loss, expected, strict=True, err_msg="loss", **TOL)
    assert np.isfinite(loss).all()
    for what, grad, reference in zip(["input", "target"], grads, expected_grads, strict=True):
        if reference is None:
            assert grad is None
        else:
            np.testing.assert_allclose(grad, reference, strict=True, err_msg=f"gradient of the {what}", **TOL)
