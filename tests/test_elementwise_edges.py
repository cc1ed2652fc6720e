"""The elementwise ops at their edge points, each choice PyTorch's and each checked exactly, through both front ends.

The generated tests (test_ops_reference.py, test_higher_order.py, test_properties.py, test_opcheck.py) check every
op on its samples and on drawn values; here are the points where a derivative is a choice or a limit, pinned down:
abs and sign at 0.0 and -0.0, sqrt and log at 0, arcsin and arccos at +-1 (and arccosh, arctanh at their ends),
ties and NaN in maximum, minimum, fmax and fmin, clip at and beyond its bounds (None for one, a_min > a_max),
mod's and fmod's gradients, the zero gradient of the step functions (0 even where g is inf or NaN), nan_to_num's,
and arctan2, hypot and sinc at their singular points. Then what the ops are as NumPy functions (``np.sin(t)``
and every other alias dispatches to them, with NumPy's keywords), float16 as NumPy computes it, integer inputs
as constants, and complex input refused.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import opreg
import opreg.numpy as onp
from opreg import Tensor, testing

from torch_reference import BUILTIN_OPS, ELEMENTWISE, REGISTRY, needs_torch, torch, torch_reference

#: The ops of this part (issue #12's elementwise list), by module.
MODULES = ("complex_parts", "exponential", "hyperbolic", "powers", "piecewise", "rounding", "trigonometric")
OPS = sorted(name for name in BUILTIN_OPS if REGISTRY[name].plugin.split(".")[-1] in MODULES)


def both(name: str, inputs: list[np.ndarray], g: np.ndarray, **attributes) -> list[testing.Result]:
    """The op through the tape engine and through Tensors, warnings of infinities and NaN silenced."""
    results = []
    for run in (testing.run_engine, testing.run_tensors):
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            results.append(run(name, inputs, attributes, g))
    return results


def exactly(name: str, inputs: list[np.ndarray], g: np.ndarray, expected: list[np.ndarray], **attributes) -> None:
    """Each input's gradient is ``expected`` bit for bit (NaN where NaN), by both front ends, and torch's too."""
    for _, grads in both(name, inputs, g, **attributes):
        for grad, want in zip(grads, expected, strict=True):
            np.testing.assert_array_equal(grad, want, strict=True, err_msg=name)
    if torch is not None:
        _, ref = testing.run_torch(torch_reference(name), inputs, attributes, g, REGISTRY[name].differentiable)
        for grad, want in zip(ref, expected, strict=True):
            np.testing.assert_array_equal(grad, want, strict=True, err_msg=f"{name}: torch")


def value(t: Tensor | np.ndarray) -> np.ndarray:
    return t.data if isinstance(t, Tensor) else t


ZEROS = np.array([0.0, -0.0, 1.5, -2.0])


def test_the_ops_are_registered_with_their_numpy_names():
    """Each op of the list under NumPy's names, aliases included."""
    assert len(OPS) == 48, OPS  # complex_parts holds angle and real_if_close too
    names = {alias: name for name in OPS for alias in REGISTRY[name].numpy}
    assert names["abs"] == names["absolute"] == "abs" and names["fabs"] == "fabs"
    assert names["mod"] == names["remainder"] == "mod" and names["round"] == names["around"] == "round"
    assert names["degrees"] == names["rad2deg"] == "rad2deg" and names["radians"] == names["deg2rad"] == "deg2rad"
    assert names["conj"] == names["conjugate"] == "conj"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["abs", "fabs"])
def test_abs_at_zero_and_negative_zero(name, dtype):
    """g * sign(x): 0 at 0.0 and at -0.0, as torch."""
    x = ZEROS.astype(dtype)
    g = np.full(4, 3.0, dtype)
    exactly(name, [x], g, [np.array([0.0, 0.0, 3.0, -3.0], dtype)])


@pytest.mark.parametrize("name", ["sign", "floor", "ceil", "trunc", "rint", "round", "imag"])
def test_step_functions_have_a_zero_gradient_even_where_g_is_not_finite(name):
    """Zeros, not g * 0: 0 where g is inf or NaN too, as torch's zeros_like(grad); at 0.0, -0.0 and the jumps."""
    x = np.array([0.0, -0.0, 1.0, -2.5, 0.5, 1.5])
    g = np.array([np.inf, np.nan, -np.inf, 1.0, 2.0, np.nan])
    exactly(name, [x], g, [np.zeros(6)])


@needs_torch
@pytest.mark.parametrize("g", [1.0, -2.0, 0.0])
@pytest.mark.parametrize(
    ("name", "x"),
    [
        ("sqrt", [0.0, -0.0, 4.0]),
        ("log", [0.0, 1.0, 2.0]),
        ("arcsin", [1.0, -1.0, 0.5]),
        ("arccos", [1.0, -1.0, 0.5]),
        ("arccosh", [1.0, 2.0, 1.5]),
        ("arctanh", [1.0, -1.0, 0.5]),
        ("reciprocal", [0.0, -0.0, 2.0]),
        ("log1p", [-1.0, 0.0, 1.0]),
        ("log2", [0.0, 1.0, 2.0]),
        ("log10", [0.0, 1.0, 2.0]),
        ("sinc", [0.0, -0.0, 1e-300]),
    ],
)
def test_derivatives_at_the_ends_of_a_domain_are_torchs(name, x, g):
    """Infinite where the derivative grows without bound (its sign too), NaN where g is 0 there: torch's values,
    output and gradient, by both front ends; sinc's is 0 at 0 (its limit) and where x * x underflows."""
    x = np.array(x)
    gs = np.full(3, g)
    expected_out, (expected,) = testing.run_torch(torch_reference(name), [x], {}, gs, [True])
    for out, (grad,) in both(name, [x], gs):
        np.testing.assert_allclose(out, expected_out, rtol=1e-14, err_msg=name)  # inf and NaN exactly
        np.testing.assert_allclose(grad, expected, rtol=1e-14, err_msg=name)


def test_sqrt_at_zero_is_infinite():
    (_, (grad,)), _ = both("sqrt", [np.array([0.0, 4.0])], np.array([1.0, 1.0]))
    np.testing.assert_array_equal(grad, [np.inf, 0.25])


def test_cbrt_of_negative_values_and_at_zero():
    """The real cube root, odd; its derivative 1 / (3 cbrt(x)^2) is +inf at 0 (torch has no cbrt: its reference,
    sign(x) |x|^(1/3), gives NaN there, so 0 is checked here rather than against it)."""
    x = np.array([-8.0, 0.0, -0.0, 27.0])
    for out, (grad,) in both("cbrt", [x], np.ones(4)):
        np.testing.assert_array_equal(out, [-2.0, 0.0, -0.0, 3.0])
        np.testing.assert_allclose(grad, [1 / 12, np.inf, np.inf, 1 / 27], rtol=1e-15)


@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_maximum_and_minimum_split_a_tie_in_half(name):
    """A tie gives each input half of g (torch's rule); NaN propagates, and a NaN gives both inputs g."""
    a = np.array([1.0, 2.0, 3.0, np.nan, 0.0, np.nan])
    b = np.array([1.0, 3.0, 2.0, 1.0, -0.0, np.nan])
    g = np.full(6, 2.0)
    bigger = name == "maximum"
    exactly(
        name,
        [a, b],
        g,
        [
            np.array([1.0, 0.0 if bigger else 2.0, 2.0 if bigger else 0.0, 2.0, 1.0, 2.0]),
            np.array([1.0, 2.0 if bigger else 0.0, 0.0 if bigger else 2.0, 2.0, 1.0, 2.0]),
        ],
    )


@pytest.mark.parametrize("name", ["fmax", "fmin"])
def test_fmax_and_fmin_ignore_nan_and_give_a_tie_to_the_first_input(name):
    """NaN is not chosen: the other input gets g (both NaN: the first); a tie gives all of g to a (torch's rule)."""
    a = np.array([1.0, 2.0, 3.0, np.nan, 5.0, np.nan])
    b = np.array([1.0, 3.0, 2.0, 1.0, np.nan, np.nan])
    bigger = name == "fmax"
    first = np.array([1.0, 0.0 if bigger else 1.0, 1.0 if bigger else 0.0, 0.0, 1.0, 1.0])
    exactly(name, [a, b], np.ones(6), [first, 1.0 - first])
    out = getattr(onp, name)(a, b)
    np.testing.assert_array_equal(out, [1.0, 3.0 if bigger else 2.0, 3.0 if bigger else 2.0, 1.0, 5.0, np.nan])


def test_clip_at_and_beyond_its_bounds():
    """x gets g inside [a_min, a_max] and at either bound; a bound gets g where x is beyond it; with
    a_min > a_max every output is a_max, which gets every g (torch.clamp's rules)."""
    x = np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 0.3, -0.3])
    low = np.array([-0.5, -0.5, -0.5, -0.5, -0.5, 0.5, 0.5])
    high = np.array([0.5, 0.5, 0.5, 0.5, 0.5, -0.5, -0.5])
    exactly(
        "clip",
        [x, low, high],
        np.ones(7),
        [np.array([0.0, 1, 1, 1, 0, 0, 0]), np.array([1.0, 0, 0, 0, 0, 0, 0]), np.array([0.0, 0, 0, 0, 1, 1, 1])],
    )
    np.testing.assert_array_equal(onp.clip(x, low, high), np.clip(x, low, high))


def test_clip_with_one_bound_none_as_numpy():
    """np.clip(t, None, 1) on a Tensor: unbounded below; the missing bound gets no gradient."""
    x = Tensor(np.array([-3.0, 0.5, 2.0]), requires_grad=True)
    y = np.clip(x, None, 1.0)
    assert isinstance(y, Tensor)
    np.testing.assert_array_equal(y.data, [-3.0, 0.5, 1.0])
    y.backward(np.ones(3))
    np.testing.assert_array_equal(x.grad, [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(onp.clip(np.array([-3.0, 2.0]), -1.0, None), [-1.0, 2.0])


@pytest.mark.parametrize("name", ["mod", "fmod"])
def test_remainder_gradients(name):
    """g for a; -g * floor(a / b) (mod) or -g * trunc(a / b) (fmod) for b, of either sign; at b == 0, NaN or an
    infinity as torch's."""
    a = np.array([5.5, -5.5, 5.5, -5.5, 0.25, 5.0])
    b = np.array([2.0, 2.0, -2.0, -2.0, 1.0, 0.0])
    quotient = np.floor(a[:5] / b[:5]) if name == "mod" else np.trunc(a[:5] / b[:5])
    exactly(name, [a, b], np.ones(6), [np.ones(6), np.r_[-quotient, -np.inf]])


def test_nan_to_num_passes_the_gradient_where_x_is_finite():
    """g where x is finite, 0 where a NaN or an infinity was replaced (torch's rule); NumPy's keywords."""
    x = np.array([1.0, np.nan, np.inf, -np.inf, -2.0])
    exactly("nan_to_num", [x], np.full(5, 2.0), [np.array([2.0, 0.0, 0.0, 0.0, 2.0])], nan=1.0, posinf=5.0)
    t = Tensor(x, requires_grad=True)
    np.testing.assert_array_equal(
        np.nan_to_num(t, nan=1.0, posinf=5.0).data, [1.0, 1.0, 5.0, np.finfo(np.float64).min, -2.0]
    )


def test_arctan2_and_hypot_at_the_origin():
    """arctan2's gradient at (0, 0) is 0 (torch masks it); hypot's is NaN (0 / 0, torch's too)."""
    zero = np.zeros(2)
    exactly("arctan2", [zero, zero], np.ones(2), [np.zeros(2), np.zeros(2)])
    exactly("hypot", [zero, zero], np.ones(2), [np.full(2, np.nan), np.full(2, np.nan)])


def test_broadcast_binary_ops_sum_gradients_to_each_input():
    """(3, 1) against (4,): each gradient has its input's shape, the sum over the axes it was broadcast along."""
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.5, 2, (3, 1)), -rng.uniform(0.5, 2, (4,))
    for name in ["arctan2", "hypot", "logaddexp", "logaddexp2", "maximum", "minimum", "fmax", "fmin", "mod", "fmod"]:
        for _, (ga, gb) in both(name, [a, b], np.ones((3, 4))):
            assert ga.shape == (3, 1) and gb.shape == (4,), name
        t = Tensor(a, requires_grad=True)
        (grad,) = opreg.grad(onp.sum(getattr(onp, REGISTRY[name].numpy[0])(t, b)), [t])
        np.testing.assert_array_equal(value(grad), ga, err_msg=name)


# --- as NumPy functions -----------------------------------------------------------------------------------------


ALIASES = sorted((alias, name) for name in OPS for alias in REGISTRY[name].numpy)


@pytest.mark.parametrize(("alias", "name"), ALIASES, ids=[f"np.{a}" for a, _ in ALIASES])
def test_numpy_functions_on_tensors_run_the_op(alias, name):
    """``np.<alias>(tensor, ...)`` (a ufunc through NEP 13, a function through NEP 18), with the sample's
    attributes as NumPy's keywords, records the op: NumPy's own values, and the op's gradient."""
    function = getattr(np, alias)
    for sample in REGISTRY[name].samples(np.random.default_rng(0)):
        expected = function(*sample.inputs, **sample.attributes)
        tensors = [Tensor(x, requires_grad=True) for x in sample.inputs]
        out = function(*tensors, **sample.attributes)
        assert isinstance(out, Tensor) and out.requires_grad, alias
        np.testing.assert_array_equal(out.data, expected, strict=True, err_msg=alias)
        np.testing.assert_array_equal(getattr(onp, alias)(*sample.inputs, **sample.attributes), expected)
        grads = opreg.grad(onp.sum(out), tensors)
        _, reference = testing.run_engine(name, list(sample.inputs), sample.attributes, np.ones(out.shape))
        for grad, want in zip(grads, reference, strict=True):
            np.testing.assert_array_equal(value(grad), want, err_msg=alias)


def test_second_derivative_through_numpy_calls():
    """np.sin(np.sin(t)) differentiated twice with opreg.grad(create_graph=True): the closed form."""
    x = np.array([0.3, -1.2, 2.0])
    t = Tensor(x, requires_grad=True)
    (first,) = opreg.grad(np.sum(np.sin(np.sin(t))), [t], create_graph=True)
    np.testing.assert_allclose(first.data, np.cos(np.sin(x)) * np.cos(x), rtol=1e-14)
    (second,) = opreg.grad(np.sum(first), [t])
    expected = -np.sin(np.sin(x)) * np.cos(x) ** 2 - np.cos(np.sin(x)) * np.sin(x)
    np.testing.assert_allclose(value(second), expected, rtol=1e-13)


# --- dtypes ----------------------------------------------------------------------------------------------------------


FLOAT16 = sorted(name for name in OPS if name in ELEMENTWISE)


@pytest.mark.parametrize("name", FLOAT16)
def test_float16_as_numpy_computes_it(name):
    """float16 inputs give a float16 output, as NumPy's, and float16 gradients, each within a few float16 roundings
    of the same op in float64 on the same values."""
    for sample in REGISTRY[name].samples(np.random.default_rng(1)):
        inputs = [np.asarray(x, np.float16) for x in sample.inputs]
        wide = [x.astype(np.float64) for x in inputs]
        expected_out = REGISTRY[name].output_of(*inputs, **sample.attributes)
        _, expected = testing.run_engine(name, wide, sample.attributes, np.ones(expected_out.shape))
        for out, grads in both(name, inputs, np.ones(expected_out.shape, np.float16), **sample.attributes):
            assert out.dtype == np.float16
            np.testing.assert_array_equal(out, expected_out, err_msg=f"{name}: not NumPy's float16 value")
            for grad, want in zip(grads, expected, strict=True):
                assert grad.dtype == np.float16, name
                scale = max(1.0, float(np.abs(want[np.isfinite(want)]).max(initial=0.0)))
                np.testing.assert_allclose(grad, want, rtol=4e-3, atol=4e-3 * scale, err_msg=name)


def test_integer_and_boolean_inputs_are_constants():
    """An integer or boolean operand beside a float Tensor gets no gradient and changes nothing in the float
    one's; on arrays of integers the ops compute what NumPy does."""
    t = Tensor(np.array([0.5, 2.0, 3.0]), requires_grad=True)
    k = np.array([1, 2, 4])
    y = onp.sum(onp.maximum(t, k) + onp.hypot(t, k) + onp.mod(t, k) + onp.clip(t, np.array([False, True, True]), k))
    y.backward()
    expected = np.array([0.0, 0.5, 0.0]) + np.array([0.5, 2.0, 3.0]) / np.hypot([0.5, 2.0, 3.0], k) + 1 + 1
    np.testing.assert_allclose(t.grad, expected, rtol=1e-15)
    for name in ["sin", "sqrt", "floor", "sign", "abs", "square", "exp2"]:
        np.testing.assert_array_equal(getattr(onp, name)(k), getattr(np, name)(k), strict=True, err_msg=name)


def test_complex_input_is_refused_with_an_error_that_says_so():
    """Complex numbers are out of scope for now: real, imag and conj refuse them rather than take the real part."""
    for name in ["real", "imag", "conj"]:
        with pytest.raises(opreg.OpUsageError, match="complex numbers are not supported yet"):
            getattr(onp, name)(np.array([1 + 2j]))
    assert math.isclose(float(onp.real(np.array(2.5))), 2.5)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_pow_at_its_special_points_to_any_order(order: int) -> None:
    """x ** 0 and 0 ** y (y > 0) are constant in x and y, so every derivative is 0, as torch's are; not NaN from
    0 * inf, which a ``where`` chosen after the formula gives at the second order (HIPS autograd's
    test_power_arg0 and test_power_arg1_zero)."""

    def derivative(f, at: float) -> float:
        x = Tensor(at, requires_grad=True)
        out = f(x)
        for _ in range(order):
            (out,) = opreg.grad(out, [x], create_graph=True)
        return float(out.data)

    with np.errstate(all="ignore"):
        assert derivative(lambda x: np.power(x, 0.0), 0.0) == 0.0
        assert derivative(lambda y: np.power(0.0, y), 0.7) == 0.0
        assert derivative(lambda y: np.power(np.zeros(()), y), 0.0) == 0.0  # 0 ** 0 = 1 for all y >= 0 near 0+
    if torch is not None:
        x = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
        out = torch.pow(x, 0.0)
        for _ in range(order):  # torch knows the derivative is constant: from then on no graph, and 0
            out = torch.autograd.grad(out, [x], create_graph=True)[0] if out.requires_grad else torch.zeros(())
        assert float(out) == 0.0


@needs_torch
def test_relu_stops_a_nan_gradient_where_its_input_is_not_positive_as_torch():
    """hypot's gradient at (0, 0) is NaN (as torch's); through relu at 0 it must become 0, as torch's where-based
    backward makes it, not NaN * 0. The graph fuzzer found it: [nan] against torch's [0.0]."""
    engine = opreg.Autograd()
    x, y = np.array([0.0, 2.0]), np.zeros(2)
    engine.apply("sum", engine.apply("hypot", y, engine.apply("relu", x)))
    engine.backward(1.0)
    tx = torch.tensor(x, requires_grad=True)
    torch.hypot(torch.tensor(y), torch.relu(tx)).sum().backward()
    np.testing.assert_array_equal(engine.gradient_buffer.get_param(x), tx.grad.numpy())
