"""The ``dropout_mask`` op (plugins/dropout.py) and ``opreg.nn.Dropout``, which multiplies its input by that mask:
the numbers of the mask Dropout drew in Python before it was an op, the rng semantics, gradients to any order and in
forward mode through the constant mask, the ``draws`` declaration. The replay of a compiled step with dropout is
tests/test_compile.py's; the layer against torch is tests/test_layers.py's."""

from __future__ import annotations

import numpy as np
import pytest

import opreg
from opreg.errors import GradcheckError, OpUsageError, RegistrationError
from opreg.nn import Dropout
from opreg.opcheck import check_op

from torch_reference import NO_GRADIENT_OPS

OP = opreg.get_registry()["dropout_mask"]


def python_mask(rng: np.random.Generator, shape: tuple[int, ...], p: float, dtype: type) -> np.ndarray:
    """The mask ``Dropout.mask`` drew before dropout was an op."""
    keep = rng.random(shape) >= p
    return keep.astype(dtype) * np.asarray(1 / (1 - p), dtype=dtype)


@pytest.mark.parametrize("style", ["tape", "tensor"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_the_numbers_of_the_mask_drawn_in_python(p, dtype, style):
    """The same generator state gives the same output, bit for bit, and leaves the generator in the same state."""
    x = np.random.default_rng(0).standard_normal((6, 7)).astype(dtype)
    ours, theirs = np.random.default_rng(3), np.random.default_rng(3)
    engine = opreg.Autograd() if style == "tape" else None
    for _ in range(3):
        y = Dropout(p, engine, rng=ours)(x if engine else opreg.Tensor(x))
        y = y if engine else y.data
        assert y.dtype == dtype
        assert np.array_equal(y, x * python_mask(theirs, x.shape, p, dtype))
    assert ours.random() == theirs.random()


def test_the_mask_is_declared_to_draw_and_to_take_no_gradient():
    """The derivative harnesses leave out the built-ins with no gradient: dropout_mask alone, so that a new op
    declared so by mistake is not silently left out of them."""
    assert OP.draws and not any(OP.differentiable)
    assert not opreg.get_registry()["mul"].draws
    assert NO_GRADIENT_OPS == ["dropout_mask"]


def test_the_samples_masks_keep_some_elements_and_drop_others():
    """The checks are meaningful: each sample's seeded mask has both values (p=1 drops every element, p=0 none)."""
    for sample in OP.samples(np.random.default_rng(0)):
        (x,) = sample.inputs
        seed, p = sample.attributes["rng"], sample.attributes["p"]
        assert isinstance(seed, int)
        expected = (
            np.full(x.shape, 1.0 - p) if p in (0, 1) else python_mask(np.random.default_rng(seed), x.shape, p, float)
        )
        mask = OP.forward(x, **sample.attributes)
        np.testing.assert_array_equal(mask, expected)
        kept = np.count_nonzero(mask)
        assert kept == {0.0: mask.size, 1.0: 0}.get(p, kept) and (p in (0, 1) or 0 < kept < mask.size)


def test_check_op_checks_the_forward_of_an_op_with_no_gradient():
    report = check_op("dropout_mask")
    assert len(report.samples) == 4
    assert all("derivatives: none (no input is differentiable)" in s.checks for s in report.samples)
    assert all(any(c.startswith("forward:") for c in s.checks) for s in report.samples)


def test_check_op_catches_samples_without_a_seed(install_ops):
    """A generator in a sample draws a new mask at each call: the forward check says to give it a seed."""
    install_ops(
        {
            "name": "unseeded_mask",
            "inputs": ("x",),
            "forward": OP.forward,
            "backward": OP.backward,
            "differentiable": (),
            "draws": True,
            "sample_inputs": lambda rng: [opreg.plugin.Sample(rng.standard_normal((3, 4)), p=0.5, rng=rng)],
        },
        name="unseeded-ops",
    )
    with pytest.raises(GradcheckError, match="not deterministic.*fixed seed"):
        check_op("unseeded_mask")


def test_draws_must_be_a_bool(install_ops):
    with pytest.raises(RegistrationError, match="draws= says whether forward draws random numbers"):
        install_ops(
            {"name": "odd", "inputs": ("x",), "forward": np.negative, "backward": lambda g, x: (-g,), "draws": 1},
            name="odd-ops",
        )


@pytest.mark.parametrize("style", ["tape", "tensor"])
def test_the_gradient_is_g_times_the_mask_the_forward_drew(style):
    """One draw per call: the gradient is g times the mask of the output's own call, not of a new draw."""
    x = np.random.default_rng(1).standard_normal((5, 6)) + 4  # far from 0
    g = np.random.default_rng(3).standard_normal(x.shape)
    mask = python_mask(np.random.default_rng(2), x.shape, 0.5, np.float64)
    layer = Dropout(0.5, opreg.Autograd() if style == "tape" else None, rng=np.random.default_rng(2))
    if style == "tape":
        engine = layer.autograd_engine
        np.testing.assert_array_equal(layer(x), x * mask)
        engine.backward(g)
        gradient = engine.gradient_buffer.get_param(x)
    else:
        t = opreg.Tensor(x, requires_grad=True)
        layer(t).backward(g)
        gradient = t.grad.data
    np.testing.assert_array_equal(gradient, g * mask)


def test_no_rng_draws_from_the_default_generator_at_each_call():
    """``rng=None`` is looked up when the op runs: after ``opreg.manual_seed``, its new generator."""
    x = np.ones((4, 5))
    opreg.manual_seed(9)
    first = opreg.ops.dropout_mask(opreg.Tensor(x)).data
    opreg.manual_seed(9)
    assert np.array_equal(opreg.ops.dropout_mask(opreg.Tensor(x)).data, first)
    assert np.array_equal(first, python_mask(np.random.default_rng(9), x.shape, 0.5, np.float64))
    opreg.manual_seed(9)
    assert np.array_equal(Dropout(0.5)(opreg.Tensor(x)).data, x * first)


def test_a_seed_draws_the_same_mask_at_every_call():
    x = np.random.default_rng(4).standard_normal((3, 4))
    layer = Dropout(0.5, rng=7)
    assert np.array_equal(OP.forward(x, p=0.5, rng=7), OP.forward(x, p=0.5, rng=7))
    assert np.array_equal(OP.forward(x, p=0.5, rng=7), python_mask(np.random.default_rng(7), x.shape, 0.5, float))
    assert np.array_equal(layer(opreg.Tensor(x)).data, layer(opreg.Tensor(x)).data)


def test_an_integer_input_gets_a_float64_mask():
    assert OP.forward(np.arange(6).reshape(2, 3), p=0.5, rng=1).dtype == np.float64
    assert OP.forward(np.ones(3, np.float32), p=0.5, rng=1).dtype == np.float32


def test_a_generators_mask_differentiates_to_second_order():
    """The mask is a constant input of mul: a backward differentiated again multiplies by the same mask."""
    x = opreg.Tensor(np.random.default_rng(4).standard_normal((3, 4)) + 4, requires_grad=True)
    y = Dropout(0.5, rng=np.random.default_rng(5))(x)
    mask = python_mask(np.random.default_rng(5), x.shape, 0.5, np.float64)
    (gx,) = opreg.grad((y * y * y).sum(), [x], create_graph=True)  # 3 x^2 mask^3
    (gxx,) = opreg.grad(gx.sum(), [x])
    np.testing.assert_array_equal(gx.data, 3 * (x.data * mask) ** 2 * mask)
    np.testing.assert_allclose(gxx.data, 6 * x.data * mask**3, rtol=1e-15)


def test_forward_mode_through_a_generators_mask():
    x = np.random.default_rng(4).standard_normal((3, 4))
    t = np.random.default_rng(6).standard_normal((3, 4))
    layer = Dropout(0.5, rng=np.random.default_rng(5))
    _, tangent = opreg.func.jvp(lambda v: layer(v), (x,), (t,))
    np.testing.assert_array_equal(tangent.data, t * python_mask(np.random.default_rng(5), x.shape, 0.5, np.float64))


@pytest.mark.filterwarnings("ignore:invalid value encountered in multiply:RuntimeWarning")
def test_p_1_gives_x_times_0_and_a_zero_gradient():
    """torch's: zeros, NaN where x is infinite; the gradient 0."""
    x = opreg.Tensor(np.array([1.0, -2.0, np.inf]), requires_grad=True)
    y = Dropout(1.0)(x)
    np.testing.assert_array_equal(y.data, [0.0, -0.0, np.nan])
    y.backward(np.ones(3))
    np.testing.assert_array_equal(x.grad.data, np.zeros(3))


@pytest.mark.parametrize(
    ("attributes", "message"),
    [({"p": 1.5}, "between 0 and 1"), ({"p": True}, "between 0 and 1"), ({"rng": 0.5}, "whole-number seed")],
)
def test_attributes_out_of_range(attributes, message):
    with pytest.raises(OpUsageError, match=message):
        opreg.ops.dropout_mask(opreg.Tensor(np.ones(3)), **attributes)


def test_the_mask_of_a_0d_input_is_an_array_as_forward_declares():
    """NumPy's arithmetic on 0-d values gives a NumPy scalar; forward is declared to return an array (typeguard,
    which CI runs over random programs, holds it to that)."""
    mask = opreg.get_registry()["dropout_mask"].forward(np.array(0.0), p=0.25, rng=0)
    assert type(mask) is np.ndarray and mask.shape == ()
