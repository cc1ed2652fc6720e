"""The layers Dropout, LayerNorm, BatchNorm1d, BatchNorm2d and Embedding against torch.nn's, in float64, both styles.

Each test builds the opreg layer on a tape (arrays; gradients in ``dweight``/``dbias`` and the engine's buffer) or on
Tensors (``.grad``), and torch's module with the same weights, and compares outputs and every gradient to 1e-10, in
train and eval mode; LayerNorm and BatchNorm also to second order (a double backward). Arrays are small: these run
four times in CI.
"""

from __future__ import annotations

import contextlib
import re

import numpy as np
import pytest

import opreg
from opreg import Tensor
from opreg.nn import (
    BatchNorm1d,
    BatchNorm2d,
    Dropout,
    Embedding,
    EmbeddingIndexError,
    LayerError,
    LayerNorm,
    Linear,
    Module,
    ReLU,
    Sequential,
)
from opreg.optim import SGD

from torch_reference import needs_torch, torch

TOL = {"rtol": 1e-10, "atol": 1e-12}
STYLES = ["tape", "tensor"]
needs_buffers = pytest.mark.skipif(
    not hasattr(Module, "buffer_names"), reason="Module's state_dict has no buffers yet (the modules part adds them)"
)


@pytest.fixture
def refused(pytestconfig):
    """``with refused(pattern):`` expects a LayerError whose message matches; for an argument of the wrong type,
    under typeguard (``--typeguard-packages=opreg``, which checks the annotations first) its TypeCheckError."""
    errors: tuple[type[Exception], ...] = (LayerError,)
    if pytestconfig.getoption("typeguard_packages", default=None):
        from typeguard import TypeCheckError

        errors += (TypeCheckError,)

    @contextlib.contextmanager
    def expect(pattern: str):
        with pytest.raises(errors) as raised:
            yield
        if isinstance(raised.value, LayerError):
            assert re.search(pattern, str(raised.value)), str(raised.value)

    return expect


def values(x) -> np.ndarray:
    return x.data if isinstance(x, Tensor) else x


def close(actual, expected, what: str = "") -> None:
    if torch is not None and isinstance(expected, torch.Tensor):
        expected = expected.detach().numpy()
    np.testing.assert_allclose(values(actual), expected, err_msg=what, strict=True, **TOL)


def engine_for(style: str):
    return opreg.Autograd() if style == "tape" else None


def run(layer, engine, x: np.ndarray, g: np.ndarray):
    """The layer's output on ``x``, backpropagating ``g``: (output, gradient of x, {parameter name: gradient})."""
    if engine is not None:
        y = layer(x)
        engine.backward(g)
        dx = engine.gradient_buffer.get_param(x)
        grads = {name: getattr(layer, "d" + name) for name, _ in layer.named_parameters()}
        return y, dx, grads
    t = Tensor(x, requires_grad=True)
    y = layer(t)
    y.backward(g)
    return y, t.grad, {name: p.grad for name, p in layer.named_parameters()}


def run_torch(module, x: np.ndarray, g: np.ndarray):
    t = torch.tensor(x, requires_grad=True)
    y = module(t)
    y.backward(torch.tensor(g))
    return y, t.grad, {name: p.grad for name, p in module.named_parameters()}


def compare(ours, theirs, what: str) -> None:
    (y, dx, grads), (t_y, t_dx, t_grads) = ours, theirs
    close(y, t_y, f"{what}: output")
    close(dx, t_dx, f"{what}: gradient of the input")
    assert sorted(grads) == sorted(t_grads), what
    for name, grad in grads.items():
        close(grad, t_grads[name], f"{what}: gradient of {name}")


def set_parameters(layer, module, rng) -> None:
    """Random values (not the ones/zeros they start at) for every parameter, the same in both layers."""
    for name, parameter in layer.named_parameters():
        parameter.data[...] = rng.standard_normal(parameter.data.shape)
        with torch.no_grad():
            getattr(module, name).copy_(torch.tensor(parameter.data))


# --- LayerNorm -----------------------------------------------------------------------------------------------------

LAYER_NORM_CASES = {
    "(5,)": ((3, 5), 5, {}),
    "(3, 4) on 3-D": ((2, 3, 4), (3, 4), {}),
    "no affine": ((4, 5), 5, {"elementwise_affine": False}),
    "no bias, eps 0.1": ((2, 2, 5), [5], {"bias": False, "eps": 0.1}),
    "1-D input": ((6,), 6, {}),
}


@needs_torch
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("case", LAYER_NORM_CASES.values(), ids=LAYER_NORM_CASES.keys())
def test_layer_norm_matches_torch(case, mode, style):
    shape, normalized_shape, kwargs = case
    rng = np.random.default_rng(0)
    engine = engine_for(style)
    layer = LayerNorm(normalized_shape, engine, **kwargs)
    module = torch.nn.LayerNorm(normalized_shape, dtype=torch.float64, **kwargs)
    set_parameters(layer, module, rng)
    layer.train(mode == "train")
    module.train(mode == "train")
    x, g = rng.standard_normal(shape) * 3 + 1, rng.standard_normal(shape)
    compare(run(layer, engine, x, g), run_torch(module, x, g), f"LayerNorm {case}")


@needs_torch
def test_layer_norm_float32_stays_float32():
    layer = LayerNorm(4, dtype=np.float32)
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    y = layer(Tensor(x, requires_grad=True))
    assert y.dtype == np.float32
    expected = torch.nn.LayerNorm(4)(torch.tensor(x)).detach().numpy()
    np.testing.assert_allclose(y.data, expected, rtol=1e-5, atol=1e-6)


def test_layer_norm_wrong_shape_is_an_error():
    with pytest.raises(LayerError, match=r"expected an input of shape \[\*, 10\], but got one of shape \(3, 5\)"):
        LayerNorm(10)(np.ones((3, 5)))
    with pytest.raises(LayerError, match=r"shape \[\*, 2, 10\]"):
        LayerNorm((2, 10))(np.ones(10))


@needs_torch
def test_layer_norm_empty_batch():
    """An empty batch gives an empty result and zero parameter gradients, as torch, without a NaN warning."""
    layer = LayerNorm(3)
    x = Tensor(np.ones((0, 3)), requires_grad=True)
    y = layer(x)
    assert y.shape == (0, 3)
    np.sum(y).backward()
    np.testing.assert_array_equal(layer.weight.grad, np.zeros(3))


# --- BatchNorm -----------------------------------------------------------------------------------------------------

BATCH_NORM_CASES = {
    "1d (N, C)": (BatchNorm1d, (6, 3), {}),
    "1d (N, C, L)": (BatchNorm1d, (4, 3, 5), {}),
    "2d": (BatchNorm2d, (3, 2, 3, 4), {}),
    "2d momentum None": (BatchNorm2d, (2, 3, 2, 2), {"momentum": None}),
    "1d no affine": (BatchNorm1d, (5, 4), {"affine": False}),
    "1d no bias, eps 0.1, momentum 0.3": (BatchNorm1d, (5, 2, 3), {"bias": False, "eps": 0.1, "momentum": 0.3}),
    "1d untracked": (BatchNorm1d, (5, 3), {"track_running_stats": False}),
    "2d untracked": (BatchNorm2d, (2, 3, 2, 3), {"track_running_stats": False}),
}


def torch_batch_norm(cls, num_features: int, kwargs):
    return getattr(torch.nn, cls.__name__)(num_features, dtype=torch.float64, **kwargs)


def compare_buffers(layer, module, what: str) -> None:
    if not layer.track_running_stats:
        assert layer.running_mean is None and layer.running_var is None and layer.num_batches_tracked is None
        assert module.running_mean is None
        return
    close(layer.running_mean, module.running_mean, f"{what}: running_mean")
    close(layer.running_var, module.running_var, f"{what}: running_var")
    assert layer.num_batches_tracked.dtype == np.int64 and layer.num_batches_tracked.shape == ()
    assert int(layer.num_batches_tracked) == int(module.num_batches_tracked), what


@needs_torch
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("case", BATCH_NORM_CASES.values(), ids=BATCH_NORM_CASES.keys())
def test_batch_norm_matches_torch(case, style):
    """Three training steps (outputs, every gradient, the running statistics after each), then one in eval mode."""
    cls, shape, kwargs = case
    rng = np.random.default_rng(2)
    engine = engine_for(style)
    layer = cls(shape[1], engine, **kwargs)
    module = torch_batch_norm(cls, shape[1], kwargs)
    set_parameters(layer, module, rng)
    for step in range(4):
        if step == 3:
            layer.eval()
            module.eval()
            before = None if layer.running_mean is None else layer.running_mean.copy()
        if engine is not None:
            engine.zero_grad()
        layer.zero_grad()
        module.zero_grad()
        x, g = rng.standard_normal(shape) * 2 + step, rng.standard_normal(shape)
        what = f"{cls.__name__} {kwargs} {'eval' if step == 3 else 'train'} step {step}"
        compare(run(layer, engine, x, g), run_torch(module, x, g), what)
        compare_buffers(layer, module, what)
    if before is not None:
        np.testing.assert_array_equal(layer.running_mean, before)  # eval mode leaves the statistics alone


@needs_torch
def test_batch_norm_running_statistics_use_unbiased_variance():
    """After one step from (0, 1) with momentum 1, the running variance is the batch's unbiased variance."""
    x = np.random.default_rng(3).standard_normal((4, 2))
    layer = BatchNorm1d(2, momentum=1.0)
    layer(x)
    np.testing.assert_allclose(layer.running_var, x.var(axis=0, ddof=1), rtol=1e-13)
    np.testing.assert_allclose(layer.running_mean, x.mean(axis=0), rtol=1e-13)


@pytest.mark.parametrize(
    ("cls", "shape", "message"),
    [
        (BatchNorm1d, (1, 3), r"more than 1 value per channel when training, got input of shape \(1, 3\)"),
        (BatchNorm1d, (1, 3, 1), r"more than 1 value per channel"),
        (BatchNorm2d, (1, 3, 1, 1), r"more than 1 value per channel"),
        (BatchNorm1d, (2, 3, 4, 5), r"expected 2-D \(N, C\) or 3-D \(N, C, L\) input, got 4-D input"),
        (BatchNorm2d, (2, 3, 4), r"expected 4-D \(N, C, H, W\) input, got 3-D input"),
        (BatchNorm1d, (4, 4), r"BatchNorm1d\(3\) expects 3 channels \(input axis 1\), got input of shape \(4, 4\)"),
    ],
)
def test_batch_norm_input_errors(cls, shape, message):
    with pytest.raises(LayerError, match=message):
        cls(3)(np.ones(shape))


@needs_torch
def test_batch_norm_batch_of_one_as_torch():
    """torch raises ValueError in training mode; so does opreg (LayerError is a ValueError). In eval mode both
    normalise a single example with the running statistics."""
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        torch.nn.BatchNorm1d(3, dtype=torch.float64)(torch.ones(1, 3, dtype=torch.float64))
    x = np.random.default_rng(4).standard_normal((1, 3))
    layer, module = BatchNorm1d(3).eval(), torch.nn.BatchNorm1d(3, dtype=torch.float64).eval()
    close(layer(x), module(torch.tensor(x)), "eval on one example")
    untracked = BatchNorm1d(3, track_running_stats=False).eval()  # no running statistics: batch ones, so an error
    with pytest.raises(LayerError, match="more than 1 value per channel"):
        untracked(x)


@needs_torch
@pytest.mark.parametrize("style", STYLES)
def test_batch_norm_empty_batch(style):
    """As torch: an empty result, the statistics unchanged, num_batches_tracked counted, parameter gradients 0."""
    engine = engine_for(style)
    layer = BatchNorm1d(3, engine)
    x = np.ones((0, 3))
    module = torch.nn.BatchNorm1d(3, dtype=torch.float64)
    compare(run(layer, engine, x, np.ones((0, 3))), run_torch(module, x, np.ones((0, 3))), "empty batch")
    compare_buffers(layer, module, "empty batch")


def test_batch_norm_buffers_are_declared():
    layer = BatchNorm2d(4)
    assert layer.buffer_names == ("running_mean", "running_var", "num_batches_tracked")
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]
    assert all(type(getattr(layer, name)) is np.ndarray for name in layer.buffer_names)
    untracked = BatchNorm2d(4, track_running_stats=False, affine=False)
    assert untracked.buffer_names == () and untracked.named_parameters() == []


@needs_buffers
@pytest.mark.parametrize("style", STYLES)
def test_batch_norm_state_dict_has_the_buffers(style):
    """The running statistics are saved after the parameters, with torch's names, and loaded back."""
    layer = BatchNorm1d(2, engine_for(style))
    layer(np.random.default_rng(5).standard_normal((4, 2)))
    state = layer.state_dict()
    assert list(state) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    fresh = BatchNorm1d(2, engine_for(style))
    fresh.load_state_dict(state)
    for name in layer.buffer_names:
        np.testing.assert_array_equal(getattr(fresh, name), getattr(layer, name))
    torch_module = torch.nn.BatchNorm1d(2, dtype=torch.float64) if torch is not None else None
    if torch_module is not None:
        assert list(torch_module.state_dict()) == list(state)


@needs_torch
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("which", ["LayerNorm", "BatchNorm1d"])
def test_constant_rows_and_channels(which, style):
    """Where the variance is 0 (a constant row for LayerNorm, a constant channel for BatchNorm) the output is the
    bias and the gradients finite: eps keeps sqrt(var + eps) away from 0, as in torch."""
    rng = np.random.default_rng(16)
    x, g = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    if which == "LayerNorm":
        x[1] = 2.5
    else:
        x[:, 2] = -1.0
    engine = engine_for(style)
    layer = LayerNorm(3, engine) if which == "LayerNorm" else BatchNorm1d(3, engine)
    module = getattr(torch.nn, which)(3, dtype=torch.float64)
    set_parameters(layer, module, rng)
    ours = run(layer, engine, x, g)
    assert all(np.isfinite(values(a)).all() for a in (ours[0], ours[1], *ours[2].values()))
    compare(ours, run_torch(module, x, g), f"{which} with zero variance")


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_batch_norm_keeps_its_dtype(dtype):
    layer = BatchNorm2d(2, dtype=dtype)
    x = np.random.default_rng(17).standard_normal((3, 2, 2, 2)).astype(dtype)
    y = layer(Tensor(x, requires_grad=True))
    assert y.dtype == dtype and layer.running_mean.dtype == dtype and layer.weight.dtype == dtype
    reference = (x - x.mean(axis=(0, 2, 3), keepdims=True)) / np.sqrt(x.var(axis=(0, 2, 3), keepdims=True) + 1e-5)
    np.testing.assert_allclose(y.data, reference, rtol=1e-2 if dtype == np.float16 else 1e-5, atol=1e-2)


# --- second order: LayerNorm and BatchNorm against torch's double backward -----------------------------------------

SECOND_ORDER_CASES = {
    "LayerNorm": (LayerNorm, torch.nn.LayerNorm if torch else None, (3, 4), 4),
    "BatchNorm1d": (BatchNorm1d, torch.nn.BatchNorm1d if torch else None, (5, 3), 3),
    "BatchNorm2d": (BatchNorm2d, torch.nn.BatchNorm2d if torch else None, (2, 2, 2, 3), 2),
}


@needs_torch
@pytest.mark.parametrize("case", SECOND_ORDER_CASES.values(), ids=SECOND_ORDER_CASES.keys())
def test_second_order_matches_torch(case):
    """loss = sum(layer(x) * u); the gradients of sum(grad_x * v) + sum(grad_weight * w), in x, weight and bias."""
    cls, torch_cls, shape, features = case
    rng = np.random.default_rng(6)
    layer, module = cls(features), torch_cls(features, dtype=torch.float64)
    set_parameters(layer, module, rng)
    x, u, v = (rng.standard_normal(shape) for _ in range(3))
    w = rng.standard_normal(layer.weight.shape)

    t = Tensor(x, requires_grad=True)
    dx, dw = opreg.grad(np.sum(layer(t) * u), [t, layer.weight], create_graph=True)
    (np.sum(dx * v) + np.sum(dw * w)).backward()

    t_x = torch.tensor(x, requires_grad=True)
    t_dx, t_dw = torch.autograd.grad((module(t_x) * torch.tensor(u)).sum(), [t_x, module.weight], create_graph=True)
    ((t_dx * torch.tensor(v)).sum() + (t_dw * torch.tensor(w)).sum()).backward()

    close(dx, t_dx, "first order, x")
    close(dw, t_dw, "first order, weight")
    close(t.grad, t_x.grad, "second order, x")
    close(layer.weight.grad, module.weight.grad, "second order, weight")
    # the gradients do not depend on the bias: torch leaves its .grad None, opreg too (or zeros)
    assert module.bias.grad is None
    assert layer.bias.grad is None or not np.any(layer.bias.grad)


# --- Dropout -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
def test_dropout_is_the_identity_in_eval_mode_and_at_p_0(style):
    x = np.random.default_rng(7).standard_normal((3, 4))
    assert Dropout(0.5, engine_for(style)).eval()(x) is x
    assert Dropout(0.0, engine_for(style))(x) is x  # torch returns its input itself at p=0 too


@needs_torch
@pytest.mark.parametrize("style", STYLES)
def test_dropout_p_1_as_torch(style):
    """Zeros, NaN where the input is infinite or NaN (x * 0, as torch), and a zero gradient."""
    x = np.array([[1.0, -2.0], [np.inf, np.nan]])
    g = np.ones((2, 2))
    engine = engine_for(style)
    with np.errstate(invalid="ignore"):  # inf * 0: NumPy's warning, the value as torch's
        ours = run(Dropout(1.0, engine), engine, x, g)
    compare(ours, run_torch(torch.nn.Dropout(1.0), x, g), "Dropout(p=1)")


@needs_torch
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("p", [0.2, 0.5, 0.9])
def test_dropout_in_training_mode(p, style):
    """With a fixed mask: the output is x * mask and the gradient g * mask, as torch's multiplication by that mask;
    the mask takes the values torch's does (0 and 1 / (1 - p)), and the same rng seed gives the same mask."""
    rng = np.random.default_rng(8)
    x, g = rng.standard_normal((4, 5)) + 5, rng.standard_normal((4, 5))  # x far from 0: the mask is y / x
    engine = engine_for(style)
    layer = Dropout(p, engine, rng=np.random.default_rng(9))
    y, dx, grads = run(layer, engine, x, g)
    mask = values(y) / x
    kept = np.isclose(mask, 1 / (1 - p), rtol=1e-14)
    assert np.all(kept | (mask == 0)) and kept.any() and not kept.all()
    assert grads == {}
    t_x = torch.tensor(x, requires_grad=True)
    t_y = t_x * torch.tensor(np.where(kept, 1 / (1 - p), 0.0))
    t_y.backward(torch.tensor(g))
    close(y, t_y, "output")
    close(dx, t_x.grad, "gradient")
    torch_values = np.unique(torch.nn.Dropout(p)(torch.ones(200, dtype=torch.float64)).numpy())
    np.testing.assert_allclose(np.unique(mask.round(12)), torch_values.round(12), rtol=1e-12)
    again = Dropout(p, rng=np.random.default_rng(9))(x)
    np.testing.assert_array_equal(values(again), values(y))


def test_dropout_mask_statistics():
    """About p of the elements are dropped, independently at each call."""
    layer = Dropout(0.3, rng=np.random.default_rng(10))
    first, second = layer(np.ones(20000)), layer(np.ones(20000))
    assert abs(np.mean(values(first) == 0) - 0.3) < 0.02
    assert not np.array_equal(values(first), values(second))
    assert values(first).dtype == np.float64
    assert Dropout(0.5)(np.ones(4, np.float32)).dtype == np.float32


@pytest.mark.parametrize("p", [-0.1, 1.5, "0.5", True])
def test_dropout_probability_out_of_range(p, refused):
    with refused("dropout probability has to be between 0 and 1"):
        Dropout(p)


# --- Embedding -----------------------------------------------------------------------------------------------------


@needs_torch
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize(
    ("indices", "padding_idx"),
    [
        (np.array([3, 1, 3, 3, 0]), None),  # repeated rows: their gradients add up
        (np.array([[1, 2, 2], [0, 4, 1]]), None),
        (np.array([[1, 2, 2], [0, 4, 1]]), 1),
        (np.array([4, 0, 4, 2]), -1),  # -1 is row 4
        (np.array([2, 3], dtype=np.int32), 0),  # padding not read
        (np.array(3), None),  # a single index: one row
    ],
)
def test_embedding_matches_torch(indices, padding_idx, style):
    rng = np.random.default_rng(11)
    engine = engine_for(style)
    layer = Embedding(5, 3, engine, padding_idx=padding_idx, rng=rng)
    module = torch.nn.Embedding(5, 3, padding_idx=padding_idx, dtype=torch.float64)
    if padding_idx is not None:
        np.testing.assert_array_equal(values(layer.weight)[padding_idx], np.zeros(3))
        values(layer.weight)[padding_idx] = 7.0  # read as it is, and still no gradient (as torch)
    with torch.no_grad():
        module.weight.copy_(torch.tensor(values(layer.weight)))
    g = rng.standard_normal((*indices.shape, 3))
    weight_grads = {}
    if engine is not None:
        y = layer(indices)
        engine.backward(g)
        weight_grads = layer.dweight
    else:
        y = layer(indices)
        y.backward(g)
        weight_grads = layer.weight.grad
    t_y = module(torch.from_numpy(indices))
    t_y.backward(torch.tensor(g))
    close(y, t_y, "output")
    close(weight_grads, module.weight.grad, "gradient of the weight")


def test_embedding_initialisation():
    """N(0, 1), as torch's init.normal_; rng= makes it reproducible; the padding row starts at zero."""
    weight = values(Embedding(400, 50, rng=np.random.default_rng(12)).weight)
    assert abs(weight.mean()) < 0.02 and abs(weight.std() - 1) < 0.02
    again = values(Embedding(400, 50, rng=np.random.default_rng(12)).weight)
    np.testing.assert_array_equal(weight, again)
    assert Embedding(3, 2, dtype=np.float32).weight.dtype == np.float32


@pytest.mark.parametrize("bad", [np.array([0, 5]), np.array([[1], [-1]]), [7]])
def test_embedding_index_out_of_range(bad):
    layer = Embedding(5, 2)
    with pytest.raises(EmbeddingIndexError, match=r"Embedding\(5, 2\): index -?\d is out of range; indices must be"):
        layer(bad)
    with pytest.raises(IndexError):  # as torch's IndexError
        layer(bad)


@pytest.mark.parametrize("bad", [np.array([1.0, 2.0]), np.array([True, False])])
def test_embedding_refuses_non_integer_indices(bad):
    with pytest.raises(LayerError, match=r"indices must be an integer array, got (float64|bool)"):
        Embedding(5, 2)(bad)


def test_embedding_empty_and_tensor_indices():
    layer = Embedding(5, 2)
    assert layer(np.array([], dtype=np.int64)).shape == (0, 2)
    assert layer([]).shape == (0, 2)
    np.testing.assert_array_equal(values(layer(Tensor(np.array([1, 1])))), values(layer.weight)[[1, 1]])


@pytest.mark.parametrize("padding_idx", [5, -6, 1.0])
def test_embedding_padding_idx_out_of_range(padding_idx, refused):
    with refused("padding_idx must be within num_embeddings"):
        Embedding(5, 2, padding_idx=padding_idx)


@needs_torch
def test_embedding_second_order():
    """tanh of the looked-up rows: second derivatives through take and where reach the weight, as torch."""
    rng = np.random.default_rng(13)
    layer = Embedding(4, 2, padding_idx=0, rng=rng)
    module = torch.nn.Embedding(4, 2, padding_idx=0, dtype=torch.float64)
    with torch.no_grad():
        module.weight.copy_(torch.tensor(layer.weight.data))
    idx, v = np.array([0, 2, 2, 3]), rng.standard_normal((4, 2))
    (dw,) = opreg.grad(np.sum(np.tanh(layer(idx)) ** 2), [layer.weight], create_graph=True)
    np.sum(dw * v).backward()
    (t_dw,) = torch.autograd.grad(
        (torch.tanh(module(torch.from_numpy(idx))) ** 2).sum(), [module.weight], create_graph=True
    )
    (t_dw * torch.tensor(v)).sum().backward()
    close(dw, t_dw, "first order")
    close(layer.weight.grad, module.weight.grad, "second order")


# --- repr, config, and the layers in a model -----------------------------------------------------------------------


@needs_torch
@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (lambda: LayerNorm(10), lambda nn: nn.LayerNorm(10)),
        (lambda: LayerNorm((3, 4), eps=1e-3, elementwise_affine=False), lambda nn: nn.LayerNorm((3, 4), 1e-3, False)),
        (lambda: BatchNorm1d(16), lambda nn: nn.BatchNorm1d(16)),
        (
            lambda: BatchNorm2d(3, momentum=None, affine=False, track_running_stats=False),
            lambda nn: nn.BatchNorm2d(3, momentum=None, affine=False, track_running_stats=False),
        ),
        (lambda: BatchNorm1d(4, bias=False, eps=0.01), lambda nn: nn.BatchNorm1d(4, eps=0.01, bias=False)),
        (lambda: Embedding(10, 3), lambda nn: nn.Embedding(10, 3)),
        (lambda: Embedding(10, 3, padding_idx=-1), lambda nn: nn.Embedding(10, 3, padding_idx=-1)),
    ],
)
def test_repr_as_torch(ours, theirs):
    assert repr(ours()) == repr(theirs(torch.nn))


def test_dropout_repr_and_configs():
    """Dropout's repr is torch's without inplace (opreg has no in-place dropout); config() rebuilds each layer."""
    assert repr(Dropout(0.2)) == "Dropout(p=0.2)"
    for layer in [Dropout(0.2), LayerNorm((3, 4), bias=False), BatchNorm2d(5, momentum=None), Embedding(4, 2)]:
        assert repr(type(layer)(**layer.config())) == repr(layer)


def test_a_float_where_the_engine_goes(refused):
    """torch's positional eps (BatchNorm1d(16, 1e-3)) is refused: opreg's second argument is the engine."""
    with refused(r"BatchNorm1d: autograd_engine must be an opreg.Autograd \(or None"):
        BatchNorm1d(16, 1e-3)


def mlp_pair(style: str):
    """Linear -> BatchNorm1d -> ReLU -> Dropout(p=0) -> Linear -> LayerNorm, and torch's with the same weights."""
    rng = np.random.default_rng(14)
    engine = engine_for(style)
    model = Sequential(
        Linear(4, 6, engine, rng=rng),
        BatchNorm1d(6, engine),
        ReLU(engine),
        Dropout(0.0, engine),
        Linear(6, 3, engine, rng=rng),
        LayerNorm(3, engine),
    )
    nn = torch.nn
    t_model = nn.Sequential(
        nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.0), nn.Linear(6, 3), nn.LayerNorm(3)
    ).double()
    with torch.no_grad():
        for layer, t_layer in zip(model.layers, t_model, strict=True):
            if isinstance(layer, Linear):
                t_layer.weight.copy_(torch.tensor(values(layer.W)))
                t_layer.bias.copy_(torch.tensor(values(layer.b)))
            elif layer.named_parameters():
                t_layer.weight.copy_(torch.tensor(rng.standard_normal(values(layer.weight).shape)))
                values(layer.weight)[...] = t_layer.weight.numpy()
    return engine, model, t_model


@needs_torch
@pytest.mark.parametrize("style", STYLES)
def test_layers_train_in_a_model_like_torch(style):
    """Five SGD steps in train mode (batch statistics), then eval mode (running statistics): same losses, weights
    and running statistics as torch; train()/eval() reach the layers through Sequential."""
    engine, model, t_model = mlp_pair(style)
    optimizer = SGD(model.parameters(), lr=0.1)
    t_optimizer = torch.optim.SGD(t_model.parameters(), lr=0.1)
    rng = np.random.default_rng(15)
    for step in range(5):
        x, target = rng.standard_normal((8, 4)), rng.standard_normal((8, 3))
        optimizer.zero_grad()
        if engine is not None:
            engine.zero_grad()
            loss = engine.apply("mse", model(x), target)
            engine.backward(1.0)
        else:
            loss = opreg.ops.mse(model(x), target)
            loss.backward()
        optimizer.step()
        t_optimizer.zero_grad()
        t_loss = torch.nn.functional.mse_loss(t_model(torch.tensor(x)), torch.tensor(target))
        t_loss.backward()
        t_optimizer.step()
        close(loss, t_loss, f"loss at step {step}")
    names = [name for name, _ in model.named_parameters()]
    assert names[2:4] == ["1.weight", "1.bias"] and names[-2:] == ["5.weight", "5.bias"]
    for (name, parameter), t_parameter in zip(model.named_parameters(), t_model.parameters(), strict=True):
        close(parameter.data, t_parameter, f"{name} after 5 steps")
    close(model.layers[1].running_mean, t_model[1].running_mean, "running_mean")
    model.eval()
    t_model.eval()
    assert not model.layers[1].training and not model.layers[3].training
    x = rng.standard_normal((3, 4))
    close(model(x), t_model(torch.tensor(x)), "eval output")


@pytest.mark.parametrize(
    "make", [lambda: LayerNorm(4), lambda: BatchNorm1d(4, track_running_stats=False)], ids=["LayerNorm", "BatchNorm1d"]
)
def test_third_order_against_finite_differences(make):
    """h(x) = d/dx sum(d/dx sum(layer(x) * u) * v), recorded with create_graph; the gradient of sum(h(x) * w)
    (a third derivative) equals central differences of it: the layers compose beyond second order."""
    rng = np.random.default_rng(18)
    layer = make()
    for _, parameter in layer.named_parameters():
        parameter.data[...] = rng.standard_normal(parameter.data.shape)
    x0, u, v, w = (rng.standard_normal((3, 4)) for _ in range(4))

    def h(x: Tensor) -> Tensor:
        (dx,) = opreg.grad(np.sum(layer(x) * u), [x], create_graph=True)
        (ddx,) = opreg.grad(np.sum(dx * v), [x], create_graph=True)
        return ddx

    x = Tensor(x0, requires_grad=True)
    np.sum(h(x) * w).backward()
    numeric, step = np.zeros_like(x0), 1e-5
    for i in np.ndindex(x0.shape):
        plus, minus = x0.copy(), x0.copy()
        plus[i] += step
        minus[i] -= step
        f_plus = np.sum(h(Tensor(plus, requires_grad=True)).data * w)
        f_minus = np.sum(h(Tensor(minus, requires_grad=True)).data * w)
        numeric[i] = (f_plus - f_minus) / (2 * step)
    np.testing.assert_allclose(x.grad, numeric, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "make",
    [lambda e: opreg.nn.LayerNorm(4, e, dtype=np.float32), lambda e: opreg.nn.BatchNorm1d(4, e, dtype=np.float32)],
)
@pytest.mark.parametrize("tape", [False, True])
def test_a_float32_norm_layer_computes_in_float32_given_float64(make, tape):
    """The dtype rule (Module.cast_input): a layer computes in its parameters' dtype, the input converted first."""
    engine = opreg.Autograd() if tape else None
    x = np.random.default_rng(0).standard_normal((3, 4))
    y = make(engine)(x)
    assert (y.dtype if tape else y.data.dtype) == np.float32
