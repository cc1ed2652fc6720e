"""Property-based tests: every contrib_ops op, forward and backward, through both front ends, against PyTorch.

For each op of the plugin and for float32 and float64, hypothesis draws inputs from the op's entry in ``CASES``:
shapes from 0-d to 4-D (sometimes with empty axes), the op's attributes (every spelling of ``axis``, slopes,
deltas, both gelu modes) and values at the edge of each op's domain: ``leaky_relu`` at exactly 0.0 and -0.0,
``softmax`` and ``log_softmax`` with logits up to +-1e4 (hypothesis favours the ends: ties at 1e4 and gaps of
2e4), ``gelu``, ``softplus`` (and around 20) and binary cross-entropy's logits up to +-1e4, ``huber``'s
differences at exactly +-delta and one float either side. None of the ops broadcasts (the losses refuse to, as
torch's do), so two-input cases have one shape. Each case runs through the tape engine and through Tensors
(``opreg.testing.check_case``), and both must equal torch's forward and autograd gradients: values, shapes and
dtypes, inputs unchanged, both front ends bit for bit the same. An op of the plugin without an entry in ``CASES``
fails, as does an entry naming no op of it.

Subgradients, checked exactly against the rule and against torch (``test_*_at_zero``): leaky_relu's gradient at
0.0 and -0.0 is ``negative_slope``, torch's choice. (abs, sqrt, max and logsumexp, once here, are opreg's
built-ins now: tests/test_elementwise_edges.py and tests/test_reductions.py.)

Tolerances are error bounds, as in tests/test_properties.py: ``ERRORS`` says, per op, what a result's rounding
errors are relative to. Ops that round once per element, or never (leaky_relu),
must match to the relative tolerance alone; elementwise ops relative to each element's own size; softmax relative to
1 (its outputs are probabilities, whatever the size of the logits); the rest as a sum of products of their inputs.

Where opreg and torch differ on purpose, the test says so rather than widening a tolerance: softplus is compared
with torch's exact ``logaddexp(x, 0)`` (``F.softplus`` returns x itself above x = 20, up to 2.1e-9 off, which
tests/test_against_torch.py checks). softmax and log_softmax over an empty axis are tested on their own
(``test_softmax_over_an_empty_axis``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opreg import testing
from opreg.testing import Case, CaseStrategy, arrays, floats, same_shape, unary, with_zeros

from contrib_torch_reference import CONTRIB_OPS, REGISTRY, TORCH_OPS, needs_torch, torch

DTYPES = [np.float32, np.float64]

#: Examples per hypothesis test (one per op and dtype, and leaky_relu at zero): about 15 s in all.
EXAMPLES = 100
SETTINGS = settings(
    max_examples=testing.examples(EXAMPLES), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# --- strategies ------------------------------------------------------------------------------------------------------

REAL = floats(-100.0, 100.0)
LARGE = floats(-1e4, 1e4)
UNIT = floats(0.0, 1.0)
SLOPE = st.floats(0.0, 1.0)
APPROXIMATE = st.sampled_from(["none", "tanh"])


def softplus_domain(dtype: type) -> st.SearchStrategy[float]:
    """Up to +-1e4, and often within 40 of 0: around 20, where torch's F.softplus switches to x itself."""
    return st.one_of(LARGE(dtype), floats(-40.0, 40.0)(dtype))


def along_an_axis(elements: testing.Elements) -> CaseStrategy:
    """One input of 1-D to 4-D and an int ``axis`` of either sign, along which it is not empty: softmax's empty
    case is tested on its own."""

    @st.composite
    def case(draw, dtype: type) -> Case:
        shape = list(draw(testing.shapes(min_dims=1)))
        axis = draw(st.integers(-len(shape), len(shape) - 1), label="axis")
        shape[axis] = shape[axis] or draw(st.integers(1, 4))
        return [draw(arrays(dtype, tuple(shape), elements))], {"axis": axis}

    return case


@st.composite
def huber_case(draw, dtype: type) -> Case:
    """Differences at exactly +-delta, one float either side of it, and anywhere within 3 delta. Targets are
    multiples of 1/8 and deltas often powers of 2, so that ``target + delta`` is exact and the difference
    ``prediction - target`` lands on delta itself."""
    delta = draw(st.one_of(st.sampled_from([0.25, 0.5, 1.0, 2.0]), st.floats(0.01, 10.0)), label="delta")
    edge = dtype(delta)
    near = [float(v) for v in (edge, np.nextafter(edge, dtype(0)), np.nextafter(edge, dtype(math.inf)))]
    edges = st.sampled_from([sign * v for v in near for sign in (1.0, -1.0)])
    differences = st.one_of(edges, floats(-3 * delta, 3 * delta)(dtype))
    shape = draw(testing.shapes())
    target = draw(arrays(dtype, shape, lambda _: st.integers(-64, 64).map(lambda k: k / 8)))
    difference = draw(arrays(dtype, shape, lambda _: differences))
    return [np.asarray(target + difference), target], {"delta": delta}


#: op name -> its case strategy. Keep complete: an op of the plugin without an entry fails.
CASES: dict[str, CaseStrategy] = {
    "softplus": unary(softplus_domain),
    "leaky_relu": unary(with_zeros(REAL), negative_slope=SLOPE),
    "gelu": unary(LARGE, approximate=APPROXIMATE),
    "softmax": along_an_axis(LARGE),
    "log_softmax": along_an_axis(LARGE),
    "binary_cross_entropy_with_logits": same_shape(LARGE, UNIT),
    "huber": huber_case,
}

#: softplus's reference: torch's exact log(1 + exp(x)). F.softplus (TORCH_OPS) switches to x itself above x = 20.
REFERENCES = {**TORCH_OPS, "softplus": lambda x: torch.logaddexp(x, torch.zeros_like(x))}


def case_strategy(name: str, dtype: type) -> st.SearchStrategy[Case]:
    if name not in CASES or name not in TORCH_OPS:
        pytest.fail(
            f"op {name!r} of contrib_ops has no property test; add it to CASES ({__name__}) and declare its reference="
        )
    return CASES[name](dtype)


# --- running and error bounds ----------------------------------------------------------------------------------------


def run_torch(name: str, inputs: Sequence[np.ndarray], attributes: dict, g: np.ndarray | None):
    return testing.run_torch(REFERENCES[name], inputs, attributes, g, REGISTRY[name].differentiable)


#: Ops that round at most once per element, the same way in both libraries: the relative tolerance alone.
EXACT = {"leaky_relu"}


def error_bounds(
    name: str, inputs: Sequence[np.ndarray], attributes: dict, g: np.ndarray
) -> tuple[list[Any], int | None]:
    """``scales`` and ``terms`` for ``check_case``: what the output's and each gradient's rounding errors are
    relative to, and how many terms a result sums (None: check_case's default, the largest array's size)."""
    x, gg = np.abs(inputs[0].astype(np.float64)), np.abs(g.astype(np.float64))
    if name in EXACT:
        return [0.0] * (1 + len(inputs)), 1
    if name in ("softplus", "gelu"):  # elementwise: each element's own size (gelu: torch's 1 + erf cancels)
        size = np.maximum(1.0, x)
        return [size, gg * size], 1
    if name == "softmax":  # probabilities: errors relative to 1 and to g, over the terms of one row
        return [1.0, max(1.0, float(gg.max(initial=0.0)))], inputs[0].shape[attributes["axis"]]
    if name == "log_softmax":
        return testing.error_scales(inputs, g), inputs[0].shape[attributes["axis"]]
    return testing.error_scales(inputs, g), None


def check_against_torch(name: str, inputs: list[np.ndarray], attributes: dict, g: np.ndarray) -> None:
    scales, terms = error_bounds(name, inputs, attributes, g)
    testing.check_case(name, inputs, attributes, g, run_torch(name, inputs, attributes, g), scales=scales, terms=terms)


def nonzero_g(dtype: type, shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    """A gradient to backpropagate with no zero in it: a zero would hide a wrong subgradient or share."""
    return arrays(dtype, shape, lambda d: st.one_of(floats(-2.0, -0.5)(d), floats(0.5, 2.0)(d)))


# --- the properties ---------------------------------------------------------------------------------------------------


def test_contrib_ops_are_found():
    """The parametrization over the registry is not vacuous: the plugin is installed and loaded."""
    assert (
        sorted(
            ["binary_cross_entropy_with_logits", "gelu", "huber", "leaky_relu", "log_softmax", "softmax", "softplus"]
        )
        == CONTRIB_OPS
    ), CONTRIB_OPS


def test_no_stale_entries():
    """Every entry of CASES names an op of the plugin (a renamed op leaves a dead entry)."""
    assert sorted(set(CASES) - set(CONTRIB_OPS)) == []


@needs_torch
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", CONTRIB_OPS)
@SETTINGS
@given(data=st.data())
def test_op_matches_torch(name, dtype, data):
    """Forward and backward of every contrib op on drawn inputs and attributes, through the tape engine and Tensors,
    equal torch's: values, shapes and dtypes; inputs unchanged; both front ends bit for bit the same."""
    inputs, attributes = data.draw(case_strategy(name, dtype), label="inputs, attributes")
    ref_out, _ = run_torch(name, inputs, attributes, None)
    g = data.draw(arrays(dtype, ref_out.shape, floats(-2.0, 2.0)), label="g")
    check_against_torch(name, inputs, attributes, g)


@needs_torch
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", ["leaky_relu"])
@SETTINGS
@given(data=st.data())
def test_subgradient_at_zero(name, dtype, data):
    """At exactly 0.0 and -0.0, leaky_relu's gradient is g * negative_slope (the x <= 0 branch), through both
    front ends, bit for bit as torch's."""
    shape = data.draw(testing.shapes(min_dims=1, allow_empty=False), label="shape")
    x = data.draw(arrays(dtype, shape, with_zeros(floats(-3.0, 3.0))), label="x")
    x.flat[0] = data.draw(st.sampled_from([0.0, -0.0]), label="x[0]")  # at least one zero
    g = data.draw(nonzero_g(dtype, shape), label="g")
    slope = data.draw(SLOPE, label="negative_slope")
    attributes, expected = {"negative_slope": slope}, np.where(x > 0, g, g * dtype(slope))
    _, (ref,) = run_torch(name, [x], attributes, g)
    np.testing.assert_array_equal(ref, expected, strict=True, err_msg="torch")
    for front_end, run in [("tape engine", testing.run_engine), ("Tensors", testing.run_tensors)]:
        _, (grad,) = run(name, [x], attributes, g)
        np.testing.assert_array_equal(grad, expected, strict=True, err_msg=front_end)


@needs_torch
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_over_an_empty_axis(name):
    """Over an axis of length 0 (a batch of rows with no classes) the result is empty, as torch's. opreg raised
    here once: its forward took the max along the axis, which NumPy refuses on an empty axis."""
    x = np.zeros((3, 0))
    ref, _ = run_torch(name, [x], {"axis": -1}, None)
    assert ref.shape == (3, 0)
    for run in (testing.run_engine, testing.run_tensors):
        out, (grad,) = run(name, [x], {"axis": -1}, np.zeros((3, 0)))
        assert out.shape == grad.shape == (3, 0)
