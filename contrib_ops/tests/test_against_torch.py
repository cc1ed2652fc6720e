"""Every op of the contrib_ops plugin against PyTorch: forward values and the gradient of every differentiable
input, on every sample the op declares (attributes included), in float64 and in float32.

PyTorch is the independent reference: each op declares its counterpart (``reference=``), which
contrib_torch_reference.py resolves into ``TORCH_OPS``, and torch's own autograd differentiates it, never this
package's code. An op registered by the plugin without a reference fails.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib.metadata import version
from typing import Any

import numpy as np
import pytest

import opreg
from opreg import plugin_manager, testing

from contrib_torch_reference import CONTRIB_OPS, PLUGIN, REGISTRY, TORCH_OPS, needs_torch, torch, torch_reference

F64 = {"rtol": 1e-10, "atol": 1e-12}
F32 = {"rtol": 1e-5, "atol": 1e-6}
TOLERANCES = {np.float64: F64, np.float32: F32}
#: NumPy raises instead of warning on these inside the stability tests: nothing may overflow or take log(0).
STRICT = {"over": "raise", "divide": "raise", "invalid": "raise"}


def run_opreg(
    name: str, inputs: Sequence[np.ndarray], attributes: Mapping[str, Any], g: np.ndarray | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray | None]]:
    """Forward and backward through a fresh engine: the output, the grad_output used (random of the output's
    shape and dtype unless given) and each differentiable input's gradient."""
    engine = opreg.Autograd()
    out = engine.apply(name, *inputs, **attributes)
    if g is None:
        g = np.random.default_rng(seed + 1000).standard_normal(out.shape).astype(out.dtype)
    engine.backward(g)
    grads = [
        engine.gradient_buffer.get_param(x) if differentiable else None
        for x, differentiable in zip(inputs, REGISTRY[name].differentiable, strict=True)
    ]
    return out, g, grads


def run_torch(
    name: str, inputs: Sequence[np.ndarray], attributes: Mapping[str, Any], g: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """The same through torch autograd (inputs copied, so torch cannot see opreg's arrays)."""
    differentiable = REGISTRY[name].differentiable
    tensors = [torch.tensor(np.array(x), requires_grad=d) for x, d in zip(inputs, differentiable, strict=True)]
    out = torch_reference(name)(*tensors, **attributes)
    out.backward(torch.tensor(np.array(g)))
    return out.detach().numpy(), [t.grad.numpy() if d else None for t, d in zip(tensors, differentiable, strict=True)]


def compare(
    name: str,
    inputs: Sequence[np.ndarray],
    attributes: Mapping[str, Any],
    tol: Mapping[str, float],
    g: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """opreg against torch: the output and every differentiable gradient, values, shapes and dtypes.

    Attributes not given take the op's declared defaults, for torch as for opreg.
    """
    torch_reference(name)
    attributes = dict(REGISTRY[name].bind_attributes(attributes))
    where = f"{name}{opreg.Sample(*inputs, **attributes).describe()}"
    out, g, grads = run_opreg(name, inputs, attributes, g, seed)
    ref_out, ref_grads = run_torch(name, inputs, attributes, g)
    np.testing.assert_allclose(out, ref_out, strict=True, err_msg=f"{where}: forward", **tol)
    for position, (grad, ref) in enumerate(zip(grads, ref_grads, strict=True)):
        if ref is not None:
            assert grad.shape == inputs[position].shape, f"{where}: gradient {position} has the wrong shape"
            np.testing.assert_allclose(grad, ref, strict=True, err_msg=f"{where}: gradient {position}", **tol)
    return out, grads


# The plugin and the table


def test_the_plugin_is_loaded_from_its_distribution():
    """Installed, the entry point loads as plugin contrib_ops of opreg-contrib-ops 0.1.0, and is not skipped."""
    info = plugin_manager.plugin_infos_by_name()[PLUGIN]
    assert (info.status, info.distribution, info.version, info.reason) == ("loaded", "opreg-contrib-ops", "0.1.0", "")


@needs_torch
def test_every_op_declares_a_torch_reference():
    """Every op of the plugin declares ``reference=``, and it resolves to a function of torch's."""
    assert sorted(set(CONTRIB_OPS) - set(TORCH_OPS)) == []
    assert all(callable(TORCH_OPS[name]) for name in CONTRIB_OPS)


@pytest.mark.parametrize("name", CONTRIB_OPS)
def test_every_attribute_is_exercised_by_the_samples(name):
    """Each declared attribute takes a value other than its default in some sample, and every op has a doc."""
    op = REGISTRY[name]
    assert op.doc.strip(), f"{name} has no doc"
    samples = op.samples(np.random.default_rng(0))
    for attribute, default in op.attributes.items():
        values = [sample.attributes[attribute] for sample in samples]
        assert any(v != default for v in values), f"{name}: no sample sets {attribute} (default {default!r})"


# Every op, every sample, against torch


@needs_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: d.__name__)
@pytest.mark.parametrize("seed", [0, 1], ids=lambda s: f"seed{s}")
@pytest.mark.parametrize("name", CONTRIB_OPS)
def test_op_matches_torch(name, seed, dtype):
    """Forward and every gradient equal torch's on each sample; float32 stays float32 throughout."""
    torch_reference(name)
    for sample in REGISTRY[name].samples(np.random.default_rng(seed)):
        inputs = [np.asarray(x, dtype=dtype) for x in sample.inputs]
        out, grads = compare(name, inputs, sample.attributes, TOLERANCES[dtype], seed=seed)
        assert out.dtype == dtype
        assert all(grad is None or grad.dtype == dtype for grad in grads)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", CONTRIB_OPS)
def test_check_op_passes(name, seed):
    """opreg's own checks (contract, no mutation, finite differences) pass on every sample."""
    opreg.check_op(name, seed=seed)


# Stability, kinks and ties


@needs_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: d.__name__)
def test_softplus_at_extreme_inputs(dtype):
    """softplus(+-1000) is finite, with no overflow on the way, and equals torch's (which is x itself above 20)."""
    x = np.array([-1000.0, -100.0, -30.0, -1.0, 0.0, 1.0, 30.0, 100.0, 1000.0], dtype=dtype)
    with np.errstate(**STRICT):
        out, grads = compare("softplus", [x], {}, TOLERANCES[dtype], g=np.ones_like(x))
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(grads[0]))
    assert out[-1] == 1000.0 and out[0] >= 0.0


@needs_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: d.__name__)
def test_binary_cross_entropy_with_logits_at_extreme_logits(dtype):
    """Logits of +-1000, right and wrong: a finite loss (about 1000 per wrong one) and finite gradients."""
    logits = np.array([[-1000.0, 1000.0, -1000.0, 1000.0], [-50.0, 0.0, 50.0, 1000.0]], dtype=dtype)
    targets = np.array([[0.0, 1.0, 1.0, 0.0], [0.3, 0.5, 0.7, 1.0]], dtype=dtype)
    with np.errstate(**STRICT):
        out, grads = compare("binary_cross_entropy_with_logits", [logits, targets], {}, TOLERANCES[dtype], g=dtype(1))
    assert np.isfinite(out) and 2000.0 / 8 < out < 2100.0 / 8
    assert all(np.all(np.isfinite(grad)) for grad in grads)


def _huge_logits(dtype: type) -> np.ndarray:
    rng = np.random.default_rng(9)
    logits = rng.standard_normal((4, 2, 4)) * 1e4
    logits[0] = 1e4  # all tied at a huge value
    logits[1, 0] = [-1e4, -1e4, 1e4, -1e4]
    logits[1, 1] = -1e4
    return logits.astype(dtype)


@needs_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: d.__name__)
@pytest.mark.parametrize(
    ("name", "attributes"),
    [
        ("softmax", {}),
        ("softmax", {"axis": 0}),
        ("log_softmax", {}),
        ("log_softmax", {"axis": 1}),
    ],
    ids=str,
)
def test_huge_logits_stay_finite(name, attributes, dtype):
    """Logits of size 1e4 (ties, large gaps, negatives): finite outputs and gradients, equal to torch's."""
    x = _huge_logits(dtype)
    with np.errstate(**STRICT):
        out, (grad,) = compare(name, [x], attributes, TOLERANCES[dtype])
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(grad))


@needs_torch
@needs_torch
def test_leaky_relu_at_zero():
    """At exactly 0 (and -0.0), leaky_relu's gradient is negative_slope, as in torch."""
    x = np.array([[-1.5, 0.0, -0.0, 2.0], [0.0, 3.0, -2.0, -0.0]])
    g = np.full_like(x, 2.5)
    _, (grad,) = compare("leaky_relu", [x], {"negative_slope": 0.2}, F64, g=g)
    np.testing.assert_array_equal(grad, np.where(x > 0, 2.5, 0.5))
    compare("leaky_relu", [x], {"negative_slope": 0.01}, F64, g=g)


@needs_torch
def test_huber_at_and_around_delta():
    """Differences at and just inside +-delta take torch's branch, and the tails' gradient is +-delta / n."""
    target = np.zeros(9)
    prediction = np.array([-1.0, -0.5, -0.4999, -0.25, 0.0, 0.25, 0.4999, 0.5, 1.0])
    _, (grad, _) = compare("huber", [prediction, target], {"delta": 0.5}, F64, g=np.array(1.0))
    np.testing.assert_allclose(grad, np.clip(prediction, -0.5, 0.5) / 9, rtol=1e-15)


@needs_torch
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_in_the_tails(approximate):
    """Large |x|, where 1 + erf(x / sqrt 2) (torch's form) cancels: values and gradients still match torch."""
    x = np.array([-40.0, -10.0, -8.0, -5.0, -3.0, 3.0, 5.0, 8.0, 10.0, 40.0])
    compare("gelu", [x], {"approximate": approximate}, F64, g=np.ones_like(x))
    compare("gelu", [x.astype(np.float32)], {"approximate": approximate}, F32, g=np.ones(10, np.float32))


def test_a_float32_input_gets_float32_gradients_from_a_float64_consumer():
    """sum's float32 input gets a float32 gradient although the product after sum computes in float64."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    engine = opreg.Autograd()
    engine.apply("mul", engine.apply("sum", x, axis=0), rng.standard_normal(4))
    engine.backward(1.0)
    assert engine.gradient_buffer.get_param(x).dtype == np.float32


# Errors name the op, the plugin and the installed package


def _usage_error(name: str, *inputs: np.ndarray, **attributes: Any) -> str:
    with pytest.raises(opreg.OpUsageError) as failure:
        opreg.Autograd().apply(name, *inputs, **attributes)
    message = str(failure.value)
    assert f"op {name!r} (plugin {PLUGIN!r} of opreg-contrib-ops {version('opreg-contrib-ops')})" in message
    return message


@pytest.mark.parametrize(
    ("name", "inputs", "attributes", "problem"),
    [
        pytest.param("gelu", [np.ones(3)], {"approximate": "erf"}, "must be 'none' or 'tanh'", id="gelu-mode"),
        pytest.param("huber", [np.ones(3), np.ones(3)], {"delta": 0.0}, "must be positive", id="huber-delta"),
        pytest.param("huber", [np.ones(3), np.ones((3, 1))], {}, "the same shape", id="huber-shape"),
        pytest.param("binary_cross_entropy_with_logits", [np.ones(3), np.ones(4)], {}, "the same shape", id="bce"),
    ],
)
def test_bad_calls_are_errors_naming_the_op(name, inputs, attributes, problem):
    assert problem in _usage_error(name, *inputs, **attributes)


#: More elements than float16's largest finite value (65,504): counted in float16, they are inf.
MANY = 70_000


def _float16_cases() -> dict[str, tuple[list[np.ndarray], dict, tuple]]:
    """Per op, float16 inputs of MANY elements, its attributes, and its output and gradients (for a gradient of
    ones) computed in float64 from those same values."""
    rng = np.random.default_rng(16)
    x = (rng.standard_normal(MANY) * 2).astype(np.float16)
    target = rng.standard_normal(MANY).astype(np.float16)
    soft = rng.uniform(0.0, 1.0, MANY).astype(np.float16)
    x64, d = x.astype(np.float64), x.astype(np.float64) - target
    huber = np.asarray(np.where(np.abs(d) < 1.0, 0.5 * d * d, np.abs(d) - 0.5).mean())
    bce = np.asarray((np.maximum(x64, 0) - x64 * soft + np.log1p(np.exp(-np.abs(x64)))).mean())
    return {
        "huber": ([x, target], {}, (huber, [np.clip(d, -1.0, 1.0) / MANY, -np.clip(d, -1.0, 1.0) / MANY])),
        "binary_cross_entropy_with_logits": (
            [x, soft],
            {},
            (bce, [(1 / (1 + np.exp(-x64)) - soft) / MANY, -x64 / MANY]),
        ),
    }


@pytest.mark.parametrize("name", ["huber", "binary_cross_entropy_with_logits"])
def test_float16_over_more_elements_than_float16_can_count(name):
    """float16 losses over 70,000 elements: every gradient as computed in float64,
    and float16 (a count of the elements, taken in float16, is inf: every gradient was 0)."""
    inputs, attributes, expected = _float16_cases()[name]
    testing.check_float16(name, inputs, attributes, expected)
