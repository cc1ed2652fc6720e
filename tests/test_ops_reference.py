"""Every built-in op against PyTorch: forward values and the gradients of every differentiable input.

PyTorch is the independent reference here: each op's torch counterpart is written out in ``TORCH_OPS`` (in
tests/torch_reference.py) and computed by torch's own autograd, never from opreg's code. A built-in op missing
from that table fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

import opreg
from opreg import testing

from torch_reference import ALL_BUILTIN_OPS, BUILTIN_OPS, REGISTRY, TORCH_OPS, needs_torch, torch, torch_reference

F64 = {"rtol": 1e-10, "atol": 1e-12}
F32 = {"rtol": 2e-5, "atol": 1e-6}


def run_opreg(
    name: str, inputs: Sequence[np.ndarray], g: np.ndarray, attributes: dict | None = None
) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """Forward and backward through a fresh engine: the output and each differentiable input's gradient."""
    engine = opreg.Autograd()
    out = engine.apply(name, *inputs, **(attributes or {}))
    engine.backward(g)
    grads = [
        engine.gradient_buffer.get_param(x) if differentiable else None
        for x, differentiable in zip(inputs, REGISTRY[name].differentiable_for(len(inputs)), strict=True)
    ]
    return out, grads


def run_torch(
    fn: Callable,
    inputs: Sequence[np.ndarray],
    differentiable: Sequence[bool],
    g: np.ndarray,
    attributes: dict | None = None,
) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """The same through torch autograd (inputs copied, so torch cannot see opreg's arrays)."""
    tensors = [torch.tensor(np.array(x), requires_grad=d) for x, d in zip(inputs, differentiable, strict=True)]
    out = fn(*tensors, **(attributes or {}))
    if not any(differentiable):  # dropout_mask: its forward compared, nothing to differentiate
        return out.detach().numpy(), [None] * len(tensors)
    out.backward(torch.tensor(np.array(g)))
    grads = [t.grad.numpy() if d else None for t, d in zip(tensors, differentiable, strict=True)]
    return out.detach().numpy(), grads


def torch_output_shape(name: str, inputs: Sequence[np.ndarray], attributes: dict) -> tuple[int, ...]:
    return tuple(TORCH_OPS[name](*(torch.tensor(np.array(x)) for x in inputs), **attributes).shape)


def compare(
    name: str,
    inputs: Sequence[np.ndarray],
    tol: dict,
    g: np.ndarray | None = None,
    seed: int = 0,
    attributes: dict | None = None,
) -> None:
    """opreg against torch on ``inputs``: output and every differentiable gradient, shape and dtype included."""
    attributes = attributes or {}
    differentiable = REGISTRY[name].differentiable_for(len(inputs))
    if g is None:
        shape = torch_output_shape(name, inputs, attributes)
        g = np.random.default_rng(seed + 1000).standard_normal(shape).astype(np.result_type(*inputs))
    out, grads = run_opreg(name, inputs, g, attributes)
    ref_out, ref_grads = run_torch(torch_reference(name), inputs, differentiable, g, attributes)
    np.testing.assert_allclose(out, ref_out, strict=True, err_msg=f"{name} forward", **tol)
    for position, (grad, ref) in enumerate(zip(grads, ref_grads, strict=True)):
        if differentiable[position]:
            assert grad.shape == inputs[position].shape, f"{name}: gradient {position} has the wrong shape"
            np.testing.assert_allclose(grad, ref, strict=True, err_msg=f"{name} gradient {position}", **tol)


def sample_inputs(name: str, seed: int, dtype: type) -> list[tuple[list[np.ndarray], dict]]:
    """The inputs (as ``dtype`` arrays) and attributes of each of the op's declared samples."""
    samples = REGISTRY[name].samples(np.random.default_rng(seed))
    return [([np.asarray(x, dtype=dtype) for x in s.inputs], dict(s.attributes)) for s in samples]


@needs_torch
def test_builtin_ops_exist():
    """The parametrization below is not vacuous: the built-in plugins registered ops."""
    assert len(ALL_BUILTIN_OPS) >= len(TORCH_OPS) - 1


@needs_torch
def test_torch_table_has_no_stale_entries():
    """Every reference in TORCH_OPS names a registered built-in op (a renamed op would leave a dead entry)."""
    assert sorted(set(TORCH_OPS) - set(ALL_BUILTIN_OPS)) == []


@needs_torch
@pytest.mark.parametrize("seed", [0, 1, 2], ids=lambda s: f"seed{s}")
@pytest.mark.parametrize("name", BUILTIN_OPS, ids=str)
def test_op_matches_torch_float64(name, seed):
    """Forward and backward of each built-in op on its own sample inputs equal torch's in float64."""
    torch_reference(name)
    for inputs, attributes in sample_inputs(name, seed, np.float64):
        compare(name, inputs, F64, seed=seed, attributes=attributes)


@needs_torch
@pytest.mark.parametrize("name", BUILTIN_OPS, ids=str)
def test_op_matches_torch_float32(name):
    """float32 in gives float32 out (or the dtype a ``dtype=`` attribute asks for, as astype's) and float32
    gradients, matching torch at float32 tolerances."""
    torch_reference(name)
    for inputs, attributes in sample_inputs(name, 7, np.float32):
        dtype = np.dtype(attributes.get("dtype") or np.float32)
        g = np.ones(torch_output_shape(name, inputs, attributes), dtype)
        out, grads = run_opreg(name, inputs, g, attributes)
        assert out.dtype == dtype
        for x, grad in zip(inputs, grads, strict=True):
            assert grad is None or (grad.dtype == np.float32 and grad.shape == x.shape)
        compare(name, inputs, F32, seed=7, attributes=attributes)


def _away_from_zero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values in +-[0.5, 2], always an ndarray (a 0-d product would be a NumPy scalar, which apply copies)."""
    return np.asarray(rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.5, 2.0, size=shape))


BROADCAST_SHAPES = [
    ((3, 4), (4,)),
    ((3, 4), (1, 4)),
    ((3, 4), (3, 1)),
    ((4,), (3, 4)),
    ((1, 4), (3, 4)),
    ((3, 1), (3, 4)),
    ((3, 1), (1, 4)),
    ((2, 3, 4), (3, 1)),
    ((3, 4), ()),
]


@needs_torch
@pytest.mark.parametrize("shapes", BROADCAST_SHAPES, ids=lambda s: f"{s[0]}-{s[1]}".replace(" ", ""))
@pytest.mark.parametrize("name", ["add", "sub", "mul", "div"])
def test_broadcasting_gradients(name, shapes):
    """Broadcast operands get gradients of their own shape, summed over the broadcast axes as torch does."""
    rng = np.random.default_rng(3)
    inputs = [_away_from_zero(rng, shape) for shape in shapes]
    compare(name, inputs, F64)


@needs_torch
@pytest.mark.parametrize("name", ["add", "sub", "mul", "div"])
def test_same_array_as_both_operands(name):
    """One array used as both inputs accumulates both gradients (x * x -> 2x), as in torch."""
    x = _away_from_zero(np.random.default_rng(4), (3, 4))
    engine = opreg.Autograd()
    engine.apply(name, x, x)
    g = np.random.default_rng(5).standard_normal((3, 4))
    engine.backward(g)
    t = torch.tensor(x.copy(), requires_grad=True)
    TORCH_OPS[name](t, t).backward(torch.tensor(g))
    np.testing.assert_allclose(engine.gradient_buffer.get_param(x), t.grad.numpy(), strict=True, **F64)


MATMUL_SHAPES = [
    ((4,), (4,)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((2, 3, 4), (4, 5)),
    ((3, 4), (2, 4, 5)),
    ((2, 3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (5, 4, 2)),
    ((4,), (2, 4, 5)),
    ((2, 3, 4), (4,)),
]


@needs_torch
@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=lambda s: f"{s[0]}@{s[1]}".replace(" ", ""))
def test_matmul_1d_and_batched(shapes):
    """matmul with 1-D operands and broadcast batch axes: output and both gradients as torch.matmul."""
    rng = np.random.default_rng(6)
    inputs = [rng.standard_normal(shape) for shape in shapes]
    compare("matmul", inputs, F64)


@needs_torch
def test_transpose_batched():
    """transpose swaps only the last two axes of a batched array, and its gradient swaps them back."""
    compare("transpose", [np.random.default_rng(8).standard_normal((2, 3, 4))], F64)


@needs_torch
def test_relu_at_zero():
    """relu's gradient at exactly 0 (and -0.0) is 0, as in torch."""
    x = np.array([[-1.5, 0.0, -0.0, 2.0], [0.0, 3.0, -2.0, 0.0]])
    _, (grad,) = run_opreg("relu", [x], np.ones_like(x))
    np.testing.assert_array_equal(grad, (x > 0).astype(np.float64))
    compare("relu", [x], F64, g=np.full_like(x, 2.5))


@needs_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sigmoid_extreme_inputs(dtype):
    """sigmoid at +-1000 (and near its float limits) is finite, with finite gradients equal to torch's."""
    x = np.array([-1000.0, -100.0, -40.0, 0.0, 40.0, 100.0, 1000.0], dtype=dtype)
    g = np.ones_like(x)
    with np.errstate(invalid="raise"):
        out, (grad,) = run_opreg("sigmoid", [x], g)
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(grad))
    compare("sigmoid", [x], F64 if dtype == np.float64 else F32, g=g)


@needs_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_cross_entropy_huge_logits(dtype):
    """Logits of size 1e4 (ties, large gaps, negatives) give a finite loss and gradient equal to torch's."""
    rng = np.random.default_rng(9)
    logits = rng.standard_normal((5, 4)) * 1e4
    logits[0] = 1e4  # all tied at a huge value
    logits[1] = [-1e4, -1e4, 1e4, -1e4]
    labels = np.eye(4)[rng.integers(0, 4, size=5)]
    labels[1] = np.eye(4)[0]  # the correct class has the hugely smaller logit: loss ~ 2e4
    logits, labels = logits.astype(dtype), labels.astype(dtype)
    out, (grad, _) = run_opreg("softmax_cross_entropy", [logits, labels], np.asarray(1.0, dtype))
    assert np.isfinite(out) and np.all(np.isfinite(grad))
    compare("softmax_cross_entropy", [logits, labels], F64 if dtype == np.float64 else F32, g=np.asarray(3.0, dtype))


@needs_torch
def test_pow_at_base_zero_and_exponent_zero():
    """torch's special cases: d/dexponent is 0 at base 0 with exponent >= 0, d/dbase is 0 at exponent 0;
    otherwise inf and nan land where torch puts them (0 ** -1, log of a negative base)."""
    base = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0, -2.0, 1.5])
    exponent = np.array([0.0, 0.5, 1.0, 2.0, 3.0, -1.0, 0.0, 2.0, -0.5])
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 ** -1 = inf in forward, and log(-2), are deliberate
        out, (grad_base, grad_exponent) = run_opreg("pow", [base, exponent], np.ones_like(base))
    ref_out, (ref_base, ref_exponent) = run_torch(torch.pow, [base, exponent], [True, True], np.ones_like(base))
    np.testing.assert_allclose(out, ref_out, **F64)
    np.testing.assert_allclose(grad_base, ref_base, **F64)
    np.testing.assert_allclose(grad_exponent, ref_exponent, **F32)  # torch takes log(base) in float32
    np.testing.assert_array_equal(grad_exponent[:5], 0.0)
    np.testing.assert_array_equal(grad_base[[0, 6]], 0.0)


@needs_torch
def test_pow_with_a_float32_base_and_a_float64_exponent():
    """The arithmetic is float64, as in torch; each gradient comes back in its input's dtype."""
    rng = np.random.default_rng(3)
    base = rng.uniform(0.5, 2.0, (3, 4)).astype(np.float32)
    exponent = rng.standard_normal((3, 4))
    out, (grad_base, grad_exponent) = run_opreg("pow", [base, exponent], np.ones((3, 4)))
    assert (out.dtype, grad_base.dtype, grad_exponent.dtype) == (np.float64, np.float32, np.float64)
    _, (ref_base, ref_exponent) = run_torch(torch.pow, [base, exponent], [True, True], np.ones((3, 4)))
    np.testing.assert_allclose(grad_base, ref_base, **F32)
    np.testing.assert_allclose(grad_exponent, ref_exponent, **F32)  # torch takes log(base) in float32


@pytest.mark.parametrize("name", ["sum", "mean"])
def test_reduction_gradients_are_writable_arrays_of_their_own(name):
    """A broadcast view of grad_output would be read-only: a caller updating the gradient in place would fail."""
    x = np.random.default_rng(4).standard_normal((3, 4))
    _, (grad,) = run_opreg(name, [x], np.ones(3), {"axis": 1})
    assert grad.flags.writeable and grad.flags.owndata


@pytest.mark.parametrize("name", ["sum", "mean"])
def test_reduction_samples_cover_every_kind_of_axis(name):
    """None, a non-negative int, a negative int and a tuple, each kept or dropped."""
    axes = [s.attributes["axis"] for s in REGISTRY[name].samples(np.random.default_rng(0))]
    assert None in axes and any(isinstance(a, tuple) for a in axes)
    assert any(isinstance(a, int) and a >= 0 for a in axes) and any(isinstance(a, int) and a < 0 for a in axes)


@pytest.mark.parametrize(
    ("x_shape", "weight_shape", "bias_shape", "problem"),
    [
        ((2, 3), (4, 3, 1), (4,), r"weight must be 2-D \(out_features, in_features\), got shape \(4, 3, 1\)"),
        ((2, 3), (4, 3), (5, 1, 4), r"bias of shape \(5, 1, 4\) does not broadcast to x @ weight.T's shape \(2, 4\)"),
        ((2, 3), (4, 5), (4,), r"shapes \(2,3\) and \(5,4\) not aligned"),
    ],
)
def test_linear_refuses_shapes_it_cannot_differentiate(x_shape, weight_shape, bias_shape, problem):
    """A bias that widened the output would make x's and W's gradients meaningless: refused, naming the shapes."""
    inputs = [np.ones(x_shape), np.ones(weight_shape), np.ones(bias_shape)]
    with pytest.raises(
        opreg.OpUsageError, match=r"op 'linear' \(plugin 'opreg_builtins.linalg'\): forward failed.*" + problem
    ):
        opreg.ops.linear(*inputs)


#: More elements than float16's largest finite value (65,504): counted in float16, they are inf.
MANY = 70_000


def _float16_losses_and_means() -> dict[str, tuple[list[np.ndarray], dict, tuple]]:
    """Per op, float16 inputs over MANY elements (or rows), its attributes, and its output and gradients (for a
    gradient of ones) computed in float64 from those same values."""
    rng = np.random.default_rng(16)
    x, target = (rng.standard_normal((2, MANY)).astype(np.float16) for _ in range(2))
    x64, diff = x.astype(np.float64), x.astype(np.float64) - target
    logits = (rng.standard_normal((MANY, 2)) * 3).astype(np.float16)
    labels = np.eye(2, dtype=np.float16)[rng.integers(0, 2, MANY)]
    log_softmax = logits - np.log(np.exp(logits.astype(np.float64)).sum(axis=1, keepdims=True))
    return {
        "mean": ([x], {}, (np.asarray(x64.mean()), [np.full(x.shape, 1 / x.size)])),
        "mean-axis": ([x], {"axis": 1}, (x64.mean(axis=1), [np.full(x.shape, 1 / MANY)])),
        "mse": ([x, target], {}, (np.asarray((diff * diff).mean()), [2 * diff / diff.size, -2 * diff / diff.size])),
        "softmax_cross_entropy": (
            [logits, labels],
            {},
            (np.asarray(-(labels * log_softmax).sum() / MANY), [(np.exp(log_softmax) - labels) / MANY, None]),
        ),
    }


@pytest.mark.parametrize("case", ["mean", "mean-axis", "mse", "softmax_cross_entropy"])
def test_float16_means_and_losses_over_more_elements_than_float16_can_count(case):
    """float16 mean, mse and softmax cross-entropy over 70,000 elements (rows): the loss and every gradient as
    computed in float64, and float16 (the count of elements, taken in float16, was inf: every gradient 0)."""
    inputs, attributes, expected = _float16_losses_and_means()[case]
    testing.check_float16(case.split("-")[0], inputs, attributes, expected)
