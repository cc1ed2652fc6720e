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
        "bce-weight": ("BCELoss", {"weight": np.array([0.5, 2.0, 1.5])}, probability, soft),
        "bce-with-logits-weight": ("BCEWithLogitsLoss", {"weight": rng.uniform(0.5, 2, (4, 1))}, edge_logits, soft),
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


@needs_torch
@pytest.mark.parametrize("case", ["cross_entropy", "cross_entropy-probabilities", "nll", "bce", "l1"])
def test_loss_matches_torch_nn_in_float32(case):
    """float32 in, float32 loss and gradients, equal torch's at float32 precision."""
    module, options, x, t = CASES[case]
    x = x.astype(np.float32)
    t = t.astype(np.float32) if t.dtype.kind == "f" else t
    g = np.ones((), np.float32)
    expected, expected_grads = run_torch(module, options, x, t, g)
    for style in STYLES:
        loss, grads = run_opreg(style, module, options, x, t, g)
        assert loss.dtype == np.float32 and grads[0].dtype == np.float32
        np.testing.assert_allclose(loss, expected, rtol=2e-6, atol=1e-6, err_msg=style)
        np.testing.assert_allclose(grads[0], expected_grads[0], rtol=2e-5, atol=1e-6, err_msg=style)


def _second_order(library: str, module: str, options: dict, x: np.ndarray, t: np.ndarray, v: np.ndarray):
    """d/dx of <v, dL/dx>: the Hessian of the loss along v, by opreg (Tensors) or torch."""
    if library == "opreg":
        X, T = opreg.Tensor(x.copy(), requires_grad=True), opreg.Tensor(t.copy())
        (first,) = opreg.grad(getattr(opreg.nn, module)(**options)(X, T), [X], create_graph=True)
        (second,) = opreg.grad(opreg.ops.sum(first * v), [X])
        return first.data, second.data
    X, T = torch.tensor(x.copy(), requires_grad=True), torch.tensor(t.copy())
    (first,) = torch.autograd.grad(getattr(torch.nn, module)(**_torch_options(options))(X, T), [X], create_graph=True)
    (second,) = torch.autograd.grad((first * torch.tensor(v)).sum(), [X])
    return first.detach().numpy(), second.numpy()


@needs_torch
@pytest.mark.parametrize(
    "case",
    ["cross_entropy-smoothing", "cross_entropy-probabilities-weight-smoothing", "bce", "bce-with-logits-pos-weight"],
)
def test_second_derivatives_match_torch(case):
    """The losses' gradients differentiate again (opreg.grad with create_graph): Hessian-vector products equal
    torch's. BCE's probabilities are taken away from 0 and 1, where PyTorch's double backward adds its epsilon."""
    module, options, x, t = CASES[case]
    if module == "BCELoss":
        x = np.clip(x, 0.05, 0.95)
    v = np.random.default_rng(3).standard_normal(x.shape)
    mine, theirs = _second_order("opreg", module, options, x, t, v), _second_order("torch", module, options, x, t, v)
    for what, a, b in zip(["first", "second"], mine, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=f"{what} derivatives")
    assert np.abs(theirs[1]).max() > 1e-3  # not vacuous


@needs_torch
def test_every_target_ignored_gives_nan_as_torch():
    """A mean over no target at all is 0 / 0: NaN, as PyTorch's, not a quiet 0."""
    logits, classes = np.ones((2, 3)), np.array([1, 1])
    loss = opreg.nn.CrossEntropyLoss(ignore_index=1)(logits, classes)
    assert np.isnan(loss)
    assert torch.nn.CrossEntropyLoss(ignore_index=1)(torch.tensor(logits), torch.tensor(classes)).isnan()
    assert opreg.nn.CrossEntropyLoss(ignore_index=1, reduction="sum")(logits, classes) == 0


@needs_torch
def test_a_pytorch_style_loop_trains():
    """CrossEntropyLoss(logits, target) with integer classes, Adam and Tensors, as a PyTorch user writes it: the loss
    falls (SoftmaxCrossEntropy in this order trained nothing)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((32, 5))
    classes = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    model = opreg.nn.MLP([5, 8, 2], output_activation=opreg.nn.Identity, rng=np.random.default_rng(0))
    optimizer = opreg.optim.Adam(model.parameters(), lr=0.05)
    criterion = opreg.nn.CrossEntropyLoss()
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = criterion(model(x), classes)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.data))
    assert losses[-1] < 0.5 * losses[0]


# --- the handout's SoftmaxCrossEntropy(y, y_hat): what cannot be in its order ---------------------------------------

ORDER = r"SoftmaxCrossEntropy\(y, y_hat\) takes the labels first.*CrossEntropyLoss\(logits, target\)"


@pytest.mark.parametrize(
    ("y", "y_hat", "problem"),
    [
        (np.array([0, 2, 1]), np.ones((3, 3)), r"y of shape \(3,\) cannot be the integer class indices"),
        (np.eye(3)[:2], np.ones((3, 3)), r"y of shape \(2, 3\) cannot be the labels of y_hat of shape \(3, 3\)"),
        (np.array([[0.5, -0.5, 1.0]]), np.ones((1, 3)), "has negative values"),
        (np.array([[0.2, 0.2, 0.2]]), np.ones((1, 3)), "has rows that do not sum to 1 .one sums to 0.6."),
        (np.array([[0.2, 0.3, np.nan]]), np.ones((1, 3)), "not finite"),
        (np.array([[0.2, 0.3, 0.5]]), np.array([[0.0, 1.0, 0.0]]), "is not one-hot while y_hat is"),
    ],
    ids=["indices", "shapes", "negative", "sums", "nan", "swapped-probabilities"],
)
def test_softmax_cross_entropy_refuses_what_cannot_be_labels(y, y_hat, problem):
    for engine in [opreg.Autograd(), None]:
        with pytest.raises(opreg.OpUsageError, match=ORDER + ".*" + problem):
            SoftmaxCrossEntropy(engine)(y, y_hat)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_softmax_cross_entropy_takes_one_hot_and_smoothed_labels(dtype):
    """One-hot rows, and probabilities rounded in the labels' dtype (smoothed labels), are labels."""
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((5, 7)).astype(dtype)
    smoothed = (np.eye(7)[rng.integers(0, 7, 5)] * 0.9 + 0.1 / 7).astype(dtype)
    for labels in [np.eye(7, dtype=dtype)[rng.integers(0, 7, 5)], smoothed, np.eye(7, dtype=np.int64)[[0, 1, 2, 3, 4]]]:
        assert np.isfinite(SoftmaxCrossEntropy()(labels, logits)) and SoftmaxCrossEntropy()(labels, logits) > 0


def _at_tolerance(dtype, tolerance: float, inside: bool) -> np.ndarray:
    """A one-class row summing to the last value of ``dtype`` within ``tolerance`` of 1, or the first beyond it."""
    value, up = np.array(1.0 + tolerance, dtype), np.array(np.inf, dtype)
    while float(value) - 1.0 > tolerance:  # rounded up: a step or two down
        value = np.nextafter(value, -up)
    while float(np.nextafter(value, up)) - 1.0 <= tolerance:
        value = np.nextafter(value, up)
    return np.array([[value if inside else np.nextafter(value, up)]], dtype)


LOGITS = np.array([[-0.5, 2.0, 0.25], [1.5, -1.0, 0.0]])


@pytest.mark.parametrize(
    ("y", "y_hat", "problem"),
    [
        (np.eye(3)[[0, 2]], np.array([[0.0, 2.0, 0.0], [0.0, 0.0, 3.0]]), None),  # logits of a relu: 0 first
        (np.eye(3)[[0, 2]], np.array([[1.0, 0.0, 2.0], [0.5, 0.0, 0.5]]), None),  # 1 first, not one-hot
        (np.full((2, 3), 1 / 3), np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), None),  # 0s and 1s, a row of two 1s
        (np.eye(3)[[0, 2]], np.eye(3)[[1, 2]], None),  # both one-hot: nothing to tell
        (np.full((2, 3), 1 / 3), np.eye(3)[[1, 2]].astype(complex), None),  # complex logits are never labels
        (np.eye(3, dtype=np.int64)[[0, 2]], LOGITS, None),
        (np.eye(3, dtype=bool)[[0, 2]], LOGITS, None),
        (np.array([[-0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), LOGITS, None),  # -0.0 is not negative
        (np.eye(3)[[[0, 2], [1, 1]]], np.zeros((2, 2, 3)), None),  # (batch, time, classes)
        (_at_tolerance(np.float64, 1.5e-8, True), np.array([[-1.0]]), None),
        (_at_tolerance(np.float32, 3.5e-4, True), np.array([[-1.0]], np.float32), None),
        (_at_tolerance(np.float16, 1e-3, True), np.array([[-1.0]], np.float16), None),
        (_at_tolerance(np.float64, 1.5e-8, False), np.array([[-1.0]]), "do not sum to 1"),
        (_at_tolerance(np.float32, 3.5e-4, False), np.array([[-1.0]], np.float32), "do not sum to 1"),
        (_at_tolerance(np.float16, 1e-3, False), np.array([[-1.0]], np.float16), "do not sum to 1"),
        (np.full((2, 3), 1 / 3), np.eye(3)[[0, 2]], "is not one-hot while y_hat is"),  # y_hat's first value 1
        (np.full((2, 3), 1 / 3), np.eye(3)[[1, 2]], "is not one-hot while y_hat is"),  # y_hat's first value 0
        (np.array([[0.0, 1.0, np.inf]]), np.ones((1, 3)), "not finite"),
        (np.array([[2.0, 0.0, -np.inf]]), np.ones((1, 3)), "not finite"),
        (np.array([[0.5, 0.5, 0.0], [0.2, 0.0, 0.7]]), LOGITS, r"do not sum to 1 \(one sums to 0.9\)"),
        (np.array([[1.5, -0.5, 0.0]]), np.ones((1, 3)), r"negative values \(the smallest -0.5\)"),
        (np.array([[0, 2, -1]]), np.ones((1, 3)), r"negative values \(the smallest -1\)"),
    ],
)
@pytest.mark.parametrize("rows", [1, 40], ids=["few-rows", "many-rows"])
def test_softmax_cross_entropy_tells_labels_at_the_edges(y, y_hat, problem, rows):
    """What the check's fast path decides by a shortcut (y_hat's first value, the sums' distance from 1 by the
    dtype's tolerance, at its last representable value and the next) is what the full check decides, on a few
    rows and on many (the distance is found two ways)."""
    y, y_hat = np.concatenate([y] * rows), np.concatenate([y_hat] * rows)
    for logits in [y_hat, opreg.Tensor(y_hat)]:
        if problem is None:
            SoftmaxCrossEntropy.check_order(y, logits)
        else:
            with pytest.raises(opreg.OpUsageError, match=ORDER + ".*" + problem):
                SoftmaxCrossEntropy.check_order(y, logits)


# --- what each loss refuses --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "arguments", "message"),
    [
        (lambda: opreg.nn.CrossEntropyLoss(), (np.ones((3, 4)), np.array([0.0, 1.0, 2.0])), r"convert them with"),
        (
            lambda: opreg.nn.CrossEntropyLoss(),
            (np.ones((3, 4)), np.array([0, 4, 1])),
            r"target 4 is out of bounds for 4",
        ),
        (lambda: opreg.nn.NLLLoss(), (np.ones((3, 4)), np.array([0, -1, 1])), r"target -1 is out of bounds"),
        (lambda: opreg.nn.NLLLoss(), (np.ones((3, 4)), np.array([[0], [1], [1]])), r"have shape \(3,\), got \(3, 1\)"),
        (lambda: opreg.nn.CrossEntropyLoss(), (np.ones((3, 4)), np.ones((3, 5)) / 5), "of the input's shape"),
        (lambda: opreg.nn.CrossEntropyLoss(weight=np.ones(3)), (np.ones((3, 4)), np.array([0, 1, 2])), "3 entries"),
        (lambda: opreg.nn.MSELoss(reduction="sum"), (np.ones((4, 1)), np.ones(4)), "the same shape"),
        (lambda: opreg.nn.L1Loss(), (np.ones((4, 1)), np.ones(4)), r"same shape, got \(4, 1\) and \(4,\)"),
        (lambda: opreg.nn.BCELoss(), (np.array([0.5, 1.5]), np.array([0.0, 1.0])), "between 0 and 1"),
        (lambda: opreg.nn.BCELoss(), (np.array([0.5, 0.5]), np.array([0.0, 2.0])), "target should be between 0 and 1"),
        (lambda: opreg.nn.CrossEntropyLoss(reduction="avg"), (), "reduction must be one of 'mean', 'sum', 'none'"),
        (lambda: opreg.nn.CrossEntropyLoss(np.ones(4)), (), "first argument is the autograd engine"),
        (lambda: opreg.nn.CrossEntropyLoss(label_smoothing=1.5), (), "between 0 and 1"),
        (lambda: opreg.nn.HuberLoss(delta=0.0), (), "delta must be positive"),
        (lambda: opreg.nn.NLLLoss(weight=np.ones((2, 2))), (), "1-D float array"),
        (lambda: opreg.nn.BCELoss(weight=np.ones(4)), (np.ones((2, 3)) / 2, np.ones((2, 3))), "does not broadcast"),
    ],
)
def test_losses_refuse_what_they_cannot_compute(build, arguments, message):
    with pytest.raises(opreg.OpUsageError, match=message):
        build()(*arguments)


def test_repr_shows_the_options_that_differ_from_pytorchs_defaults():
    assert repr(opreg.nn.CrossEntropyLoss()) == "CrossEntropyLoss()"
    assert repr(opreg.nn.CrossEntropyLoss(reduction="sum", ignore_index=0, label_smoothing=0.1)) == (
        "CrossEntropyLoss(reduction='sum', ignore_index=0, label_smoothing=0.1)"
    )
    assert repr(opreg.nn.HuberLoss(delta=2.0)) == "HuberLoss(delta=2.0)"


@pytest.mark.parametrize("name", ["binary_cross_entropy", "log_sigmoid"])
def test_the_loss_ops_pass_check_op(name):
    """Their gradients against finite differences, to second order, on every declared sample."""
    report = opreg.check_op(name)
    assert report.samples and all(s.comparisons for s in report.samples)


@needs_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_of_one_unbatched_example_with_probabilities(reduction):
    """Input (C,) and a probability target (C,): class axis 0, as PyTorch's."""
    rng = np.random.default_rng(8)
    x, t = rng.standard_normal(5), _probabilities(rng, (5,), axis=0)
    options = {"reduction": reduction, "label_smoothing": 0.3}
    expected, expected_grads = run_torch("CrossEntropyLoss", options, x, t, np.ones(()))
    for style in STYLES:
        loss, grads = run_opreg(style, "CrossEntropyLoss", options, x, t, np.ones(()))
        np.testing.assert_allclose(loss, expected, strict=True, **TOL)
        for grad, reference in zip(grads, expected_grads, strict=True):
            np.testing.assert_allclose(grad, reference, strict=True, **TOL)
