"""The shape, rearrangement and selection ops (plugins/shapes.py, rearrange.py, selection.py, differences.py,
complex_parts.py) where the generated tests do not look: the edge choices each makes, and its NumPy names.

- each declared NumPy name is that NumPy function: on every sample, NumPy's own function gives the op's output,
  and called on a Tensor it runs the op, recorded;
- ties in sort get the gradient through NumPy's stable permutation (torch's ``sort(stable=True)``'s), 0.0 and -0.0
  included; partition's gradient follows its values; a repeated index gets every copy's gradient;
- angle is NumPy's at 0, -0.0, infinities and NaN, with gradient 0 everywhere;
- what is refused, and how: the gradient op over several axes (np.gradient takes them), complex input, pad's
  modes that compute new values, indices out of bounds.

The ops' first and second derivatives on their samples are tests/test_opcheck.py's, test_ops_reference.py's and
test_higher_order.py's; on drawn inputs test_properties.py's and test_graph_fuzz.py's.
"""

from __future__ import annotations

import numpy as np
import pytest

import opreg
from opreg import Tensor

from torch_reference import REGISTRY, needs_torch, torch

PLUGINS = {f"opreg_builtins.{m}" for m in ("shapes", "rearrange", "selection", "differences", "complex_parts")}
NUMPY_NAMES = sorted((alias, name) for name, op in REGISTRY.items() if op.plugin in PLUGINS for alias in op.numpy)


def _numpy_call(alias: str, inputs: tuple, attributes: dict) -> tuple[tuple, dict]:
    """The sample as NumPy's function takes it: gradient's spacing is NumPy's ``*varargs``."""
    if alias == "gradient":
        attributes = dict(attributes)
        spacing = attributes.pop("varargs")
        return (*inputs, *(spacing if isinstance(spacing, tuple) else (spacing,))), attributes
    if alias == "pad" and attributes.get("mode") != "constant":  # NumPy refuses constant_values there
        return inputs, {k: v for k, v in attributes.items() if k != "constant_values"}
    if alias == "diff":  # None is opreg's "no value"; NumPy has its own
        return inputs, {k: v for k, v in attributes.items() if v is not None}
    return inputs, attributes


def test_every_shape_op_declares_its_numpy_name():
    assert len(NUMPY_NAMES) >= 32  # take and take_along_axis are indexing's


@pytest.mark.parametrize(("alias", "name"), NUMPY_NAMES, ids=[f"np.{a}" for a, _ in NUMPY_NAMES])
def test_a_declared_numpy_name_is_that_numpy_function(alias, name):
    function = getattr(np, alias)
    for sample in REGISTRY[name].samples(np.random.default_rng(0)):
        expected = REGISTRY[name].output_of(*sample.inputs, **sample.attributes)
        args, kwargs = _numpy_call(alias, sample.inputs, sample.attributes)
        np.testing.assert_array_equal(np.asarray(function(*args, **kwargs)), expected, strict=True)
        tensors = [Tensor(np.asarray(x, np.float64), requires_grad=True) for x in args[: len(sample.inputs)]]
        recorded = function(*tensors, *args[len(sample.inputs) :], **kwargs)
        assert isinstance(recorded, Tensor) and recorded.requires_grad, alias
        np.testing.assert_array_equal(recorded.data, expected, strict=True)


def _tape_gradient(name: str, x: np.ndarray, g: np.ndarray, **attributes) -> tuple[np.ndarray, np.ndarray]:
    engine = opreg.Autograd()
    out = engine.apply(name, x, **attributes)
    engine.backward(g)
    return out, engine.gradient_buffer.get_param(x)


@needs_torch
@pytest.mark.parametrize("axis", [-1, 0, None])
def test_sort_gives_tied_values_the_gradient_in_stable_order_as_torch(axis):
    """Equal values (0.0 and -0.0 among them) are differentiable nowhere; the gradient picks the stable sort's
    permutation: the first of equal inputs gets the first equal output's gradient, as torch.sort(stable=True)."""
    x = np.array([[1.0, 0.0, 1.0, -0.0, 0.0, 1.0], [2.0, 2.0, -1.0, 2.0, -1.0, 0.0]])
    g = np.arange(12.0).reshape(2, 6) if axis is not None else np.arange(12.0)
    out, grad = _tape_gradient("sort", x, g, axis=axis)
    t = torch.tensor(x, requires_grad=True)
    source = t.reshape(-1) if axis is None else t
    values = torch.sort(source, dim=-1 if axis is None else axis, stable=True).values
    values.backward(torch.tensor(g))
    np.testing.assert_array_equal(out, values.detach().numpy(), strict=True)
    np.testing.assert_array_equal(grad, t.grad.numpy(), strict=True)
    if axis == -1:  # written out: row 0's zeros keep their order, 0.0 (1), -0.0 (3), 0.0 (4), then the ones 0, 2, 5
        np.testing.assert_array_equal(grad[0], [3.0, 0.0, 4.0, 1.0, 2.0, 5.0])
        assert not np.signbit(out[0, 0]) and np.signbit(out[0, 1])


@needs_torch
def test_sort_of_long_rows_of_ties_follows_torchs_stable_sort():
    """Rows long enough that NumPy's default sort is not stable (short ones it insertion-sorts, which is)."""
    x = np.random.default_rng(5).integers(-1, 2, (2, 64)).astype(float) * np.where(np.arange(64) % 3, 1.0, -1.0)
    g = np.random.default_rng(6).standard_normal((2, 64))
    _, grad = _tape_gradient("sort", x, g)
    t = torch.tensor(x, requires_grad=True)
    torch.sort(t, dim=-1, stable=True).values.backward(torch.tensor(g))
    np.testing.assert_array_equal(grad, t.grad.numpy(), strict=True)


def test_sort_and_partition_send_each_gradient_to_the_element_that_moved_there():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, (3, 7)).astype(float)
    g = rng.standard_normal((3, 7))
    for name, attributes in [("sort", {}), ("partition", {"kth": 3}), ("partition", {"kth": (0, -1), "axis": 0})]:
        out, grad = _tape_gradient(name, x, g, **attributes)
        axis = attributes.get("axis", -1)
        moved = np.argsort(x, axis, kind="stable") if name == "sort" else np.argpartition(x, attributes["kth"], axis)
        np.testing.assert_array_equal(out, np.take_along_axis(x, moved, axis))
        expected = np.zeros_like(x)
        np.put_along_axis(expected, moved, g, axis)  # a permutation: each position written once
        np.testing.assert_array_equal(grad, expected)
        np.testing.assert_array_equal(np.sort(out, axis), np.sort(x, axis))


@pytest.mark.parametrize(
    ("name", "attributes", "expected"),
    [
        ("take", {"indices": [0, 0, 3, -1]}, [2.0, 0.0, 0.0, 2.0]),
        ("take_along_axis", {"indices": [3, 3, 3], "axis": 0}, [0.0, 0.0, 0.0, 3.0]),
        ("repeat", {"repeats": [2, 0, 1, 3]}, [2.0, 0.0, 1.0, 3.0]),
        ("tile", {"reps": 3}, [3.0, 3.0, 3.0, 3.0]),
        ("pad", {"pad_width": (2, 3), "mode": "edge"}, [3.0, 1.0, 1.0, 4.0]),
        ("pad", {"pad_width": (3, 2), "mode": "wrap"}, [2.0, 3.0, 2.0, 2.0]),
    ],
)
def test_an_element_used_several_times_gets_every_copys_gradient(name, attributes, expected):
    x = np.array([1.0, 2.0, 3.0, 4.0])
    _, grad = _tape_gradient(name, x, np.ones(REGISTRY[name].output_of(x, **attributes).shape), **attributes)
    np.testing.assert_array_equal(grad, expected, strict=True)


@pytest.mark.parametrize("deg", [False, True])
def test_angle_of_real_numbers_is_numpys_with_gradient_zero(deg):
    """0 at 0.0, pi (180) at -0.0 and below 0 (NumPy's arctan2(0, x)), NaN at NaN; the gradient is exactly 0,
    also where grad_output is infinite (never g * 0)."""
    x = np.array([-2.0, -0.0, 0.0, 3.0, np.inf, -np.inf, np.nan])
    out, grad = _tape_gradient("angle", x, np.array([1.0, 2.0, np.inf, -1.0, 1.0, 1.0, 1.0]), deg=deg)
    np.testing.assert_array_equal(out, np.angle(x, deg), strict=True)
    np.testing.assert_array_equal(grad, np.zeros(7), strict=True)


def test_real_if_close_of_real_numbers_is_the_identity():
    x = Tensor(np.array([1.5, -2.0]), requires_grad=True)
    y = np.real_if_close(x)
    y.backward(np.array([3.0, 4.0]))
    np.testing.assert_array_equal(x.grad, [3.0, 4.0])
    assert y.data is not x.data


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda t: opreg.ops.gradient(t), r"the op gradient differentiates along one axis, and axis=None of a 2-D"),
        (lambda t: opreg.ops.gradient(t, axis=(0, 1)), r"axis=\(0, 1\) of a 2-D array is several; np.gradient"),
        (lambda t: np.gradient(t, 1.0, 2.0, 3.0), r"as numpy.gradient: .* one spacing per axis \(2\), got 3"),
        (lambda t: np.pad(t, 1, mode="mean"), r"pad's mode 'mean' computes new values"),
        (lambda t: np.take(t, [6]), r"index 6 is out of bounds for axis 0 with size 6"),
        (lambda t: np.take_along_axis(t, np.array([[0.5]]), 1), r"`indices` must be an integer array"),
        (lambda t: np.diag(t[None] if False else np.expand_dims(t, 0)), r"diag takes a 1-D or 2-D array, got 3-D"),
    ],
)
def test_what_the_shape_ops_refuse(call, message):
    t = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(opreg.OpUsageError, match=message):
        call(t)


@pytest.mark.parametrize("name", ["real_if_close", "angle"])
def test_complex_input_is_refused(name):
    with pytest.raises(opreg.OpUsageError, match=f"{name} of a complex array: .* not supported yet"):
        getattr(opreg.ops, name)(np.array([1.0 + 2.0j]))


def test_gradient_of_one_axis_accepts_numpys_spacings():
    """A scalar spacing and coordinates, positionally as NumPy takes them; several axes are one call each."""
    f = np.random.default_rng(1).standard_normal((4, 5))
    t = Tensor(f, requires_grad=True)
    coordinates = np.array([0.0, 0.5, 1.5, 1.75, 3.0])
    np.testing.assert_array_equal(np.gradient(t, 0.5, axis=0).data, np.gradient(f, 0.5, axis=0))
    np.testing.assert_array_equal(
        np.gradient(t, coordinates, axis=1, edge_order=2).data, np.gradient(f, coordinates, axis=1, edge_order=2)
    )
