"""Convolution and pooling: the layers against torch.nn's with the same weights, in both styles; the edge choices
of the ops (max pool's ties, NaNs, windows of padding); the CNN's one-step gradients against torch's; and the CNN
training on the digits (quickly here; the full claim with OPREG_SLOW_TESTS=1).

The ops themselves (conv2d, max_pool2d, avg_pool2d, unfold, fold) are checked by the suite's generated tests from
their declarations: finite differences to second order (test_opcheck), torch on their samples and on drawn cases
(test_ops_reference, test_properties), second derivatives against torch (test_higher_order), random graphs
(test_graph_fuzz).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

import opreg
import opreg.nn as nn
from opreg import Tensor
from opreg.cli import main
from opreg.train import ConfigError, TrainConfig, train

from torch_reference import needs_torch, torch

STYLES = ["tape", "tensor"]


def _engine(style: str) -> opreg.Autograd | None:
    return opreg.Autograd() if style == "tape" else None


def run(module: nn.Module, x: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The module's output on ``x``, and the gradients of ``sum(output * g)`` for x and each parameter by name."""
    engine = module.autograd_engine
    if isinstance(engine, opreg.Autograd):
        out = module(x)
        engine.backward(g)
        dx = engine.gradient_buffer.get_param(x)
        return out, dx, {name: p.grad.copy() for name, p in module.named_parameters()}
    t = Tensor(x, requires_grad=True)
    out = module(t)
    out.backward(g)
    return out.data, t.grad, {name: p.grad for name, p in module.named_parameters()}


def run_torch(module, x: np.ndarray, g: np.ndarray):
    t = torch.tensor(x, requires_grad=True)
    out = module(t)
    out.backward(torch.tensor(g))
    return out.detach().numpy(), t.grad.numpy(), {n: p.grad.numpy() for n, p in module.named_parameters()}


def copy_weights(ours: nn.Module, theirs) -> None:
    """torch's parameters from ours, in order (our Linear's W and b are its weight and bias)."""
    with torch.no_grad():
        for (_, p), q in zip(ours.named_parameters(), theirs.parameters(), strict=True):
            q.copy_(torch.tensor(p.data))


LAYERS = [
    ("Conv2d(2, 4, 3)", lambda e: nn.Conv2d(2, 4, 3, autograd_engine=e), lambda: torch.nn.Conv2d(2, 4, 3)),
    (
        "Conv2d(4, 6, (3, 2), stride=2, padding=1, dilation=(1, 2), groups=2, bias=False)",
        lambda e: nn.Conv2d(
            4, 6, (3, 2), stride=2, padding=1, dilation=(1, 2), groups=2, bias=False, autograd_engine=e
        ),
        lambda: torch.nn.Conv2d(4, 6, (3, 2), stride=2, padding=1, dilation=(1, 2), groups=2, bias=False),
    ),
    ("MaxPool2d(2)", lambda e: nn.MaxPool2d(2, autograd_engine=e), lambda: torch.nn.MaxPool2d(2)),
    (
        "MaxPool2d(3, 1, 1, 2)",
        lambda e: nn.MaxPool2d(3, 1, 1, 2, autograd_engine=e),
        lambda: torch.nn.MaxPool2d(3, 1, 1, 2),
    ),
    ("AvgPool2d(2)", lambda e: nn.AvgPool2d(2, autograd_engine=e), lambda: torch.nn.AvgPool2d(2)),
    (
        "AvgPool2d(3, 2, 1, count_include_pad=False)",
        lambda e: nn.AvgPool2d(3, 2, 1, count_include_pad=False, autograd_engine=e),
        lambda: torch.nn.AvgPool2d(3, 2, 1, count_include_pad=False),
    ),
    ("Flatten()", lambda e: nn.Flatten(autograd_engine=e), lambda: torch.nn.Flatten()),
    ("Flatten(0, 2)", lambda e: nn.Flatten(0, 2, autograd_engine=e), lambda: torch.nn.Flatten(0, 2)),
]


@needs_torch
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize(("what", "ours", "theirs"), LAYERS, ids=[layer[0] for layer in LAYERS])
def test_layer_matches_torch_with_the_same_weights(what, ours, theirs, style):
    """Output, input gradient and parameter gradients equal torch.nn's to 1e-10 (float64); the repr is torch's."""
    rng = np.random.default_rng(0)
    module, reference = ours(_engine(style)), theirs().double()
    copy_weights(module, reference)
    x = rng.standard_normal((2, 4 if "groups" in what else 2, 7, 6))
    with torch.no_grad():
        g = rng.standard_normal(tuple(reference(torch.tensor(x)).shape))
    out, dx, grads = run(module, x, g)
    ref_out, ref_dx, ref_grads = run_torch(reference, x, g)
    np.testing.assert_allclose(out, ref_out, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-10, atol=1e-10)
    for (name, grad), ref in zip(grads.items(), ref_grads.values(), strict=True):
        np.testing.assert_allclose(grad, ref, rtol=1e-10, atol=1e-10, err_msg=name)
    assert repr(module) == repr(reference)


@needs_torch
def test_unflatten_matches_torch():
    x = np.arange(24.0).reshape(2, 12)
    for style in STYLES:
        out = nn.Unflatten(1, (3, 2, 2), autograd_engine=_engine(style))(x)
        expected = torch.nn.Unflatten(1, (3, 2, 2))(torch.tensor(x)).numpy()
        np.testing.assert_array_equal(np.asarray(getattr(out, "data", out)), expected)
    assert repr(nn.Unflatten(1, (3, 2, 2))) == repr(torch.nn.Unflatten(1, (3, 2, 2)))


@needs_torch
def test_conv2d_is_initialised_as_torch_does():
    """uniform(+-1/sqrt(fan_in)) for weight and bias, fan_in = in/groups * kh * kw (kaiming uniform, a = sqrt(5))."""
    conv = nn.Conv2d(8, 16, (3, 2), groups=2, rng=np.random.default_rng(0))
    bound = 1 / np.sqrt(4 * 3 * 2)
    torch.manual_seed(0)
    reference = torch.nn.Conv2d(8, 16, (3, 2), groups=2).double()
    for ours, theirs in [(conv.weight.data, reference.weight), (conv.bias.data, reference.bias)]:
        assert ours.shape == tuple(theirs.shape)
        assert np.abs(ours).max() <= bound and float(theirs.detach().abs().max()) <= bound
        assert np.abs(ours).max() > 0.8 * bound  # the whole range is used
    assert conv.weight.data.dtype == np.float64
    assert nn.Conv2d(1, 2, 3, dtype=np.float32).weight.data.dtype == np.float32


def test_conv2d_without_bias_has_only_a_weight():
    for style in STYLES:
        conv = nn.Conv2d(2, 3, 2, bias=False, autograd_engine=_engine(style))
        assert [name for name, _ in conv.named_parameters()] == ["weight"] and conv.bias is None


# --- the ops' edge choices --------------------------------------------------------------------------------------------


def _max_pool_gradient(x: np.ndarray, **attributes) -> tuple[np.ndarray, np.ndarray]:
    t = Tensor(x, requires_grad=True)
    out = opreg.ops.max_pool2d(t, **attributes)
    out.backward(np.ones(out.shape))
    return out.data, t.grad


@needs_torch
@pytest.mark.parametrize(
    "x",
    [
        np.zeros((1, 1, 4, 4)),  # every window a tie
        np.array([[[[1.0, 2, 2, 1], [2, 2, 1, 1], [0, 0, 0, 0], [0, 0, 3, 3]]]]),
        np.full((1, 1, 3, 3), -np.inf),  # padding (-inf) is never chosen
        np.array([[[[np.nan, 1.0, np.nan], [2.0, np.nan, 0.0], [1.0, 1.0, 1.0]]]]),  # the last NaN of a window
    ],
    ids=["zeros", "ties", "all -inf", "NaNs"],
)
@pytest.mark.parametrize("attributes", [{"kernel_size": 2}, {"kernel_size": 3, "stride": 1, "padding": 1}])
def test_max_pool_gives_a_window_gradient_to_the_element_torch_does(x, attributes):
    """Ties: the first maximum in the window's row-major order takes it all (not split, unlike amax's); NaN: the
    last NaN; padding never: exactly torch's choices, so each element's gradient counts the windows choosing it."""
    if min(x.shape[2:]) < attributes["kernel_size"]:
        pytest.skip("the kernel does not fit")
    out, grad = _max_pool_gradient(x, **attributes)
    t = torch.tensor(x, requires_grad=True)
    ref = torch.nn.functional.max_pool2d(t, **attributes)
    ref.backward(torch.ones_like(ref))
    np.testing.assert_array_equal(out, ref.detach().numpy())
    np.testing.assert_array_equal(grad, t.grad.numpy())


def test_a_dilated_window_of_padding_only_sends_its_gradient_nowhere():
    """Its output is -inf and depends on no input (PyTorch sends the gradient to an element outside the window)."""
    x = np.array([[[[-1.0], [-2.0]]]])
    out, grad = _max_pool_gradient(x, kernel_size=(1, 2), stride=1, padding=(0, 1), dilation=(1, 2))
    np.testing.assert_array_equal(out, np.full((1, 1, 2, 1), -np.inf))
    np.testing.assert_array_equal(grad, np.zeros_like(x))


def test_conv2d_second_derivatives_reach_the_input_and_weight():
    """A gradient penalty through conv2d differentiates its backward (unfold, fold, matmul), to torch's values in
    tests/test_higher_order.py; here, that it runs through a whole CNN on Tensors."""
    rng = np.random.default_rng(0)
    model = nn.CNN(16, 3, channels=(2,), rng=rng)
    x = Tensor(rng.standard_normal((2, 16)), requires_grad=True)
    loss = opreg.ops.softmax_cross_entropy(model(x), np.eye(3)[[0, 2]])
    (gx,) = opreg.grad(loss, [x], create_graph=True)
    (gx * gx).sum().backward()
    assert all(p.grad is not None and np.isfinite(p.grad).all() for p in model.parameters())


# --- the CNN ----------------------------------------------------------------------------------------------------------


def torch_cnn(model: nn.CNN):
    """The same network in torch.nn, with our weights."""
    side = int(np.sqrt(model.features))
    layers = [torch.nn.Unflatten(1, (1, side, side))]
    previous = 1
    for count in model.channels:
        layers += [torch.nn.Conv2d(previous, count, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
        previous = count
        side //= 2
    layers += [torch.nn.Flatten(), torch.nn.Linear(previous * side * side, model.classes)]
    reference = torch.nn.Sequential(*layers).double()
    copy_weights(model, reference)
    return reference


@needs_torch
@pytest.mark.parametrize("style", STYLES)
def test_cnn_one_step_gradients_match_torch(style):
    """The loss and every parameter's gradient after one step on a batch of digits equal torch's to 1e-8."""
    from opreg.datasets import load_digits

    features, labels = load_digits()
    x, y = features[:32], labels[:32]
    model = nn.CNN(autograd_engine=_engine(style), rng=np.random.default_rng(0))
    reference = torch_cnn(model)
    criterion = nn.SoftmaxCrossEntropy(model.autograd_engine if style == "tape" else None)
    targets = np.eye(10)[y]
    if style == "tape":
        loss = criterion(targets, model(x))
        model.autograd_engine.backward(1.0)
    else:
        loss = criterion(targets, model(x))
        loss.backward()
    ref_loss = torch.nn.functional.cross_entropy(reference(torch.tensor(x)), torch.tensor(y))
    ref_loss.backward()
    np.testing.assert_allclose(float(loss), ref_loss.item(), rtol=1e-10)
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=1e-8, atol=1e-10, err_msg=name)


def test_cnn_config_rebuilds_the_architecture():
    model = nn.CNN(36, 4, channels=(3,), dtype=np.float32)
    config = model.config()
    assert config == {"features": 36, "classes": 4, "channels": [3], "dtype": "float32"}
    rebuilt = nn.CNN(**config)
    assert repr(rebuilt) == repr(model)
    assert {k: (v.shape, v.dtype) for k, v in rebuilt.state_dict().items()} == {
        k: (v.shape, v.dtype) for k, v in model.state_dict().items()
    }


def test_a_cnn_saved_with_nn_save_is_rebuilt_and_evaluated(tmp_path, capsys):
    """opreg.nn.save records the CNN's architecture; load_model rebuilds it (same outputs), opreg evaluate scores it,
    and manual_seed makes its initial weights reproducible."""
    opreg.manual_seed(3)
    model = nn.CNN(channels=(4,))
    opreg.manual_seed(3)
    again = nn.CNN(channels=(4,))
    assert all(np.array_equal(a.data, b.data) for a, b in zip(model.parameters(), again.parameters(), strict=True))
    path = str(tmp_path / "cnn.npz")
    nn.save(model, path)
    rebuilt = nn.load_model(path)
    assert isinstance(rebuilt, nn.CNN) and rebuilt.config() == model.config()
    x = np.random.default_rng(0).random((5, 64))
    np.testing.assert_array_equal(rebuilt(x).data, model(x).data)
    assert main(["evaluate", path]) == 0
    assert "accuracy" in capsys.readouterr().out


def test_a_cnn_file_claiming_an_impossible_size_is_refused_before_building():
    with pytest.raises(opreg.errors.OpregError, match="CNN with channels"):
        nn.CNN.check_config({"channels": [10**9, 10**9]})
    with pytest.raises(nn.ArchitectureError, match="whole numbers"):
        nn.CNN.check_config({"channels": ["16"]})


def test_a_cnn_of_images_that_are_not_square_is_refused(tmp_path):
    with pytest.raises(ValueError, match="60 features are not such an image"):
        nn.CNN(features=60)
    path = tmp_path / "three_features.csv"
    rows = np.c_[np.random.default_rng(0).random((20, 3)), np.arange(20) % 2]
    np.savetxt(path, rows, delimiter=",", fmt=["%.6f"] * 3 + ["%d"])
    with pytest.raises(ConfigError, match="--model cnn takes square images of at least 4x4 pixels"):
        train(TrainConfig(model="cnn", data=str(path), epochs=1))


# --- training ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("engine", "dtype"), [("tape", "float64"), ("tensor", "float32")])
def test_the_cnn_learns_the_digits_in_two_epochs(engine, dtype):
    """CI's cheap check: two epochs (about a second) take the held-out accuracy from chance to over 70%, in both
    styles, in float64 and float32."""
    result = train(TrainConfig.for_model("cnn", epochs=2, engine=engine, dtype=dtype))
    assert result.final.test_accuracy > 0.7
    assert result.history[-1].loss < result.history[0].loss
    assert all(p.data.dtype == np.dtype(dtype) for p in result.model.parameters())


@pytest.mark.skipif(not os.environ.get("OPREG_SLOW_TESTS"), reason="trains for 20-40 s; OPREG_SLOW_TESTS=1 runs it")
def test_opreg_train_model_cnn_reaches_98_5_percent_in_under_a_minute(capsys):
    start = time.perf_counter()
    assert main(["train", "--model", "cnn", "--quiet"]) == 0
    elapsed = time.perf_counter() - start
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("CNN 64-16-32-10, adam, tape engine")
    accuracy = float(out.splitlines()[-1].removeprefix("test accuracy: ").rstrip("%")) / 100
    assert accuracy >= 0.985, out
    assert elapsed < 60, f"{elapsed:.1f} s"


def test_model_defaults_apply_to_what_is_not_given():
    """--model cnn brings its own optimizer, learning rate, batch size and epochs; a setting given wins, and an
    optimizer given brings that optimizer's default learning rate. The MLP's defaults are TrainConfig's."""
    cnn = TrainConfig.for_model("cnn")
    assert (cnn.optimizer, cnn.learning_rate, cnn.batch_size, cnn.epochs) == ("adam", 0.003, 64, 30)
    assert TrainConfig.for_model("cnn", epochs=3).epochs == 3
    assert TrainConfig.for_model("cnn", optimizer="sgd").learning_rate == 0.2
    assert TrainConfig.for_model("mlp") == TrainConfig()


def test_a_saved_cnn_in_float32_is_evaluated(tmp_path, capsys):
    """opreg train --model cnn --dtype float32 --save, then opreg evaluate: the model is rebuilt from the file's
    settings and scores the held-out digits as training did."""
    path = str(tmp_path / "cnn.npz")
    assert main(["train", "--model", "cnn", "--dtype", "float32", "--epochs", "1", "--save", path, "--quiet"]) == 0
    trained = capsys.readouterr().out
    assert trained.splitlines()[0] == "CNN 64-16-32-10, adam, tape engine, 1 epochs, float32"
    assert main(["evaluate", path]) == 0
    evaluated = capsys.readouterr().out
    assert evaluated.split()[1] == trained.splitlines()[-1].split()[-1]  # the same accuracy
