"""The Tensor front end against PyTorch: every built-in op through ``opreg.ops``, operators, graphs that reuse
intermediates, deep graphs, ``backward`` and its errors, ``no_grad``, third-party ops and ``opreg.gradcheck``.

PyTorch is the independent reference: each expression is written once and run on opreg Tensors and on torch
tensors (through a small namespace that gives both the same op names), and torch's autograd computes the
reference gradients. Nothing here is computed from opreg's own derivatives.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import opreg
import opreg.numpy as onp
from opreg import EngineStateError, GradcheckError, OpUsageError, Tensor

from torch_reference import ALL_BUILTIN_OPS, BUILTIN_OPS, REGISTRY, TORCH_OPS, F, needs_torch, torch, torch_reference

F64 = {"rtol": 1e-10, "atol": 1e-12}
F32 = {"rtol": 1e-5, "atol": 1e-6}
#: pinv's samples include a rank-deficient matrix (condition number 5e16): its float32 gradient goes through
#: singular values near the cutoff, and NumPy's and torch's float32 SVDs (LAPACK builds, OPENBLAS_CORETYPE)
#: differ there by up to about 1e-5 relative; float64 holds it to 1e-10.
F32_LOOSER = {"pinv": {"rtol": 1e-4, "atol": 1e-5}}

ops = opreg.ops


#: The two libraries an expression runs on: the same op names, and ``const`` for a constant array operand
#: (opreg takes the ndarray itself, so ``ndarray <op> Tensor`` is exercised; torch needs a tensor).
LIB_OPS = ("tanh", "exp", "log", "sigmoid", "relu", "mse", "sum", "mean")
OPREG = SimpleNamespace(
    tensor=lambda a, requires_grad: Tensor(np.array(a), requires_grad=requires_grad),
    const=lambda a: a,
    **{name: getattr(ops, name) for name in LIB_OPS},
)
TORCH = SimpleNamespace(
    tensor=lambda a, requires_grad: torch.tensor(np.array(a), requires_grad=requires_grad),
    const=lambda a: torch.tensor(np.array(a)),
    **{name: TORCH_OPS.get(name) for name in LIB_OPS},
)


def _grad_output(shape: tuple[int, ...], dtype: Any, seed: int) -> np.ndarray:
    return np.random.default_rng(seed + 1000).standard_normal(shape).astype(dtype)


def compare_with_torch(
    fn: Callable[..., Any],
    *arrays: np.ndarray,
    requires_grad: Sequence[bool] | None = None,
    tol: dict = F64,
    seed: int = 0,
    explicit_gradient: bool | None = None,
) -> list[Tensor]:
    """``fn(lib, *tensors)`` on opreg Tensors and on torch tensors: output (values, shape, dtype) and the gradient
    of every input that requires one must agree; inputs that do not require one get no ``.grad``.

    A single-element output is backpropagated with ``backward()`` (no gradient) unless ``explicit_gradient``;
    anything else with a random gradient of its shape. Returns the opreg input Tensors.
    """
    requires_grad = [True] * len(arrays) if requires_grad is None else list(requires_grad)
    mine = [OPREG.tensor(a, r) for a, r in zip(arrays, requires_grad, strict=True)]
    theirs = [TORCH.tensor(a, r) for a, r in zip(arrays, requires_grad, strict=True)]
    out = fn(OPREG, *mine)
    ref = fn(TORCH, *theirs)
    assert isinstance(out, Tensor)
    np.testing.assert_allclose(out.detach().numpy(), ref.detach().numpy(), strict=True, err_msg="forward", **tol)
    assert out.requires_grad and not out.is_leaf
    if explicit_gradient is None:
        explicit_gradient = out.data.size != 1
    if explicit_gradient:
        g = _grad_output(out.shape, out.dtype, seed)
        out.backward(g)
        ref.backward(torch.tensor(g))
    else:
        out.backward()
        ref.backward()
    for position, (x, t) in enumerate(zip(mine, theirs, strict=True)):
        if requires_grad[position]:
            assert x.grad is not None, f"input {position} got no gradient"
            np.testing.assert_allclose(
                x.grad, t.grad.numpy(), strict=True, err_msg=f"gradient of input {position}", **tol
            )
        else:
            assert x.grad is None, f"input {position} does not require a gradient but got one"
    return mine


def _away_from_zero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values in +-[0.5, 2], always an ndarray."""
    return np.asarray(rng.choice([-1.0, 1.0], size=shape) * rng.uniform(0.5, 2.0, size=shape))


def _positive(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return np.asarray(rng.uniform(0.5, 2.0, size=shape))


# --- 1. every built-in op through opreg.ops.<name> ------------------------------------------------------------------


@needs_torch
def test_builtin_ops_exist():
    """The parametrization below is not vacuous: the built-in plugins registered ops."""
    assert len(ALL_BUILTIN_OPS) >= len(TORCH_OPS) - 1


@needs_torch
def test_torch_table_has_no_stale_entries():
    """Every reference in TORCH_OPS names a registered built-in op (a renamed op would leave a dead entry)."""
    assert sorted(set(TORCH_OPS) - set(ALL_BUILTIN_OPS)) == []


def _run_builtin(name: str, seed: int, dtype: type, tol: dict) -> None:
    """Each sample of op ``name`` through ``opreg.ops.<name>`` on Tensors (the differentiable inputs requiring
    gradients) against torch: output and gradients, values, shapes and dtypes."""
    reference = torch_reference(name)
    op = REGISTRY[name]
    for sample in op.samples(np.random.default_rng(seed)):
        inputs = [np.asarray(x, dtype=dtype) for x in sample.inputs]
        mine = [
            Tensor(x.copy(), requires_grad=d) for x, d in zip(inputs, op.differentiable_for(len(inputs)), strict=True)
        ]
        theirs = [
            torch.tensor(x.copy(), requires_grad=d)
            for x, d in zip(inputs, op.differentiable_for(len(inputs)), strict=True)
        ]
        out = getattr(ops, name)(*mine, **sample.attributes)
        ref = reference(*theirs, **sample.attributes)
        recorded = any(op.differentiable_for(len(inputs)))  # an op with no gradient (dropout_mask) records nothing
        assert isinstance(out, Tensor) and out.requires_grad is recorded and out.is_leaf is not recorded
        expected = np.dtype(sample.attributes.get("dtype") or dtype)  # astype's dtype= sets its output's
        assert out.dtype == expected, f"{name}: {np.dtype(dtype)} inputs gave a {out.dtype} output"
        np.testing.assert_allclose(out.data, ref.detach().numpy(), strict=True, err_msg=f"{name} forward", **tol)
        if not recorded:
            continue
        g = _grad_output(out.shape, expected, seed)
        out.backward(g)
        ref.backward(torch.tensor(g))
        for position, (x, t) in enumerate(zip(mine, theirs, strict=True)):
            if op.differentiable[position]:
                assert x.grad is not None and x.grad.dtype == dtype and x.grad.shape == x.shape
                np.testing.assert_allclose(
                    x.grad, t.grad.numpy(), strict=True, err_msg=f"{name} gradient {position}", **tol
                )
            else:
                assert x.grad is None


@needs_torch
@pytest.mark.parametrize("seed", [0, 1, 2], ids=lambda s: f"seed{s}")
@pytest.mark.parametrize("name", BUILTIN_OPS, ids=str)
def test_builtin_op_on_tensors_matches_torch_float64(name, seed):
    """opreg.ops.<name> on float64 Tensors: forward and every differentiable input's gradient equal torch's."""
    _run_builtin(name, seed, np.float64, F64)


@needs_torch
@pytest.mark.parametrize("name", BUILTIN_OPS, ids=str)
def test_builtin_op_on_tensors_matches_torch_float32(name):
    """float32 Tensors give float32 outputs and float32 gradients, matching torch at float32 tolerance."""
    _run_builtin(name, 7, np.float32, F32_LOOSER.get(name, F32))


@needs_torch
def test_non_differentiable_input_gets_no_gradient_even_if_it_requires_one():
    """softmax_cross_entropy's labels are declared non-differentiable: a labels Tensor requiring grad gets none,
    while the logits' gradient is unaffected."""
    rng = np.random.default_rng(0)
    logits = Tensor(rng.standard_normal((4, 5)), requires_grad=True)
    labels = Tensor(np.eye(5)[rng.integers(0, 5, size=4)], requires_grad=True)
    ops.softmax_cross_entropy(logits, labels).backward()
    assert labels.grad is None
    t = torch.tensor(logits.data.copy(), requires_grad=True)
    torch_reference("softmax_cross_entropy")(t, torch.tensor(labels.data)).backward()
    np.testing.assert_allclose(logits.grad, t.grad.numpy(), strict=True, **F64)


def test_ops_accept_arrays_and_numbers_without_recording():
    """opreg.ops.<name> on plain arrays and numbers returns a plain array, as NumPy would: recording nothing."""
    out = ops.add(np.array([1.0, 2.0]), 3)
    assert type(out) is np.ndarray
    np.testing.assert_array_equal(out, [4.0, 5.0])
    assert ops.tanh(0.0) == 0.0 and type(ops.tanh(0.0)) is np.ndarray


@needs_torch
@pytest.mark.parametrize(
    ("axis", "keepdims"), [(None, False), (0, False), (1, True), (-1, False)], ids=["all", "0", "1-keep", "-1"]
)
def test_contrib_reductions_with_attributes_match_torch(axis, keepdims):
    """Attributes pass through opreg.ops.<name>(x, axis=..., keepdims=...) to a third-party (contrib) op."""
    x = np.random.default_rng(1).standard_normal((3, 4))
    compare_with_torch(lambda lib, x: lib.sum(x * x, axis=axis, keepdims=keepdims) + lib.mean(x), x)
    compare_with_torch(lambda lib, x: lib.mean(lib.tanh(x), axis=axis, keepdims=keepdims), x)


def test_unknown_attribute_is_refused():
    """An attribute the op does not declare is an OpUsageError naming it, not silently ignored."""
    with pytest.raises(OpUsageError, match="dim"):
        ops.sum(Tensor(np.ones((2, 3)), requires_grad=True), dim=1)


# --- Tensor basics ---------------------------------------------------------------------------------------------------


def test_tensor_attributes():
    """.data .shape .dtype .numpy() .item() .is_leaf .requires_grad .grad of a fresh leaf (.numpy() of one that
    requires gradients through .detach(), as in PyTorch)."""
    data = np.arange(6.0).reshape(2, 3)
    x = Tensor(data, requires_grad=True)
    assert x.shape == (2, 3) and x.dtype == np.float64 and x.requires_grad and x.is_leaf and x.grad is None
    np.testing.assert_array_equal(x.detach().numpy(), data)
    assert isinstance(x.detach().numpy(), np.ndarray)
    assert Tensor(2.5).item() == 2.5
    assert Tensor([1, 2], dtype=np.float32).dtype == np.float32
    y = x * 2
    assert y.requires_grad and not y.is_leaf and y.grad is None


@needs_torch
def test_T_transposes_a_matrix_and_mT_swaps_the_last_two_axes_like_torch():
    """.T of a matrix and .mT of a batch are the transpose op, gradients as torch's; .T of a vector is itself, as
    NumPy's (.T of 3-D and more reverses every axis, as NumPy's: test_protocols.py)."""
    rng = np.random.default_rng(2)
    compare_with_torch(lambda lib, x: x.T, rng.standard_normal((3, 4)))
    compare_with_torch(lambda lib, x: x.T @ x, rng.standard_normal((3, 4)))
    x = Tensor(rng.standard_normal((2, 3, 4)))
    assert x.mT.shape == (2, 4, 3)
    np.testing.assert_array_equal(x.mT.numpy(), np.swapaxes(x.numpy(), -1, -2))
    v = Tensor(rng.standard_normal(3))
    assert v.T is v


# --- 2. expressions: diamonds, depth, broadcasting, operators --------------------------------------------------------


DIAMONDS: dict[str, Callable] = {
    "h*h+h": lambda lib, x, w: (lambda h: h * h + h)(x * w),
    "h+h*h": lambda lib, x, w: (lambda h: h + h * h)(x * w),
    "y@y.T": lambda lib, x, w: (lambda y: y @ y.T)((lambda h: h * h + h)(x * w)),
    "y.T@y-y.T@y": lambda lib, x, w: (lambda y: y.T @ y - (y.T @ y) * 0.5)((lambda h: h + h * h)(x * w)),
    "x-reused": lambda lib, x, w: x * x * x + x / (x * x + 1) - x * w,
    "x-x": lambda lib, x, w: x - x + w,
    "x/x": lambda lib, x, w: x / x * w,
    "tanh-both-sides": lambda lib, x, w: (lambda a: a @ a.T + lib.exp(a) @ a.T)(lib.tanh(x @ w.T)),
    "shared-three-ways": lambda lib, x, w: (lambda h: (h + h) * (h - w) + lib.sigmoid(h) / (1 + h * h))(x * w + 1),
    "nested": lambda lib, x, w: (lambda a: (lambda b: b + a * b + a)(a * a - a))(lib.tanh(x) + w),
    "mse-of-diamond": lambda lib, x, w: lib.mse((lambda h: h + h * h)(x @ w.T), x @ x.T),
}


@needs_torch
@pytest.mark.parametrize("name", list(DIAMONDS), ids=str)
def test_expressions_reusing_intermediates_match_torch(name):
    """Intermediates (and leaves) used by several ops get the sum of every path's gradient, whatever the order in
    which the consumers were created or appear as operands."""
    rng = np.random.default_rng(3)
    compare_with_torch(DIAMONDS[name], _away_from_zero(rng, (3, 4)), _away_from_zero(rng, (3, 4)))


def test_diamond_with_the_shared_operand_first():
    """The smallest graph where the shared intermediate is the first operand of the op that also consumes it
    through another op: h + h*h with h = 2x, at x = 1.5 (h = 3), has d/dx = 2 (1 + 2h) = 14, not 2."""
    x = Tensor(np.array(1.5), requires_grad=True)
    h = x * 2.0
    (h + h * h).backward()
    assert x.grad == pytest.approx(14.0)


@needs_torch
def test_chain_of_2000_ops_with_diamonds_matches_torch():
    """2,000 ops, each step reusing the previous result twice (y + tanh(y) * c): no RecursionError, and every
    one of the 2**500 paths is counted, as in torch."""

    def chain(lib, x, w):
        y = x
        for _ in range(500):
            y = y + lib.tanh(y) * w - x * 0.001
        return y

    x = np.random.default_rng(4).standard_normal((2, 3)) * 0.1
    compare_with_torch(chain, x, np.full((2, 3), 0.002), tol={"rtol": 1e-9, "atol": 1e-12})


def test_chain_of_100000_ops_backward():
    """A linear chain 100,000 ops deep: forward and backward without recursion, gradient c**n."""
    n, c = 100_000, 1.0 + 1e-5
    x = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    y = x
    for _ in range(n):
        y = y * c
    y.backward(np.array([1.0, 3.0]))
    np.testing.assert_allclose(x.grad, np.array([1.0, 3.0]) * c**n, rtol=1e-9)
    np.testing.assert_allclose(y.data, x.data * c**n, rtol=1e-9)


BINARY_OPERATORS = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "**": operator.pow,
}

#: (kind, shape) of the other operand beside a (3, 4) Tensor x: Tensors that require grad, constant arrays, numbers.
OTHER_OPERANDS = [
    ("tensor", (4,)),
    ("tensor", (1, 4)),
    ("tensor", (3, 1)),
    ("tensor", ()),
    ("tensor", (3, 4)),
    ("tensor", (2, 3, 4)),
    ("array", (4,)),
    ("array", (3, 4)),
    ("array", ()),
    ("array", (2, 1, 4)),
    ("number", None),
    ("int", None),
]


@needs_torch
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("other", OTHER_OPERANDS, ids=lambda o: f"{o[0]}{o[1] if o[1] is not None else ''}")
@pytest.mark.parametrize("symbol", list(BINARY_OPERATORS))
def test_operator_broadcasting_matches_torch(symbol, other, side):
    """x <op> other and other <op> x for every operator, with Tensors of broadcast shapes (bias (n,), (1, n),
    scalars), ndarrays and Python numbers: output, and each Tensor's gradient summed to its own shape."""
    fn = BINARY_OPERATORS[symbol]
    kind, shape = other
    rng = np.random.default_rng(5)
    x = _positive(rng, (3, 4))  # positive: a valid base for ** and far from 0 for /
    if kind == "tensor":
        o = _positive(rng, shape)

        def expression(lib, x, o):
            return fn(x, o) if side == "left" else fn(o, x)

        compare_with_torch(expression, x, o)
        return
    if kind == "array":
        value = _positive(rng, shape)

        def expression(lib, x):
            return fn(x, lib.const(value)) if side == "left" else fn(lib.const(value), x)

    else:
        value = 1.7 if kind == "number" else 2

        def expression(lib, x):
            return fn(x, value) if side == "left" else fn(value, x)

    compare_with_torch(expression, x)


@needs_torch
@pytest.mark.parametrize(
    ("a_shape", "b_shape"),
    [((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((2, 3, 4), (4, 5)), ((3, 4), (2, 4, 5))],
    ids=str,
)
@pytest.mark.parametrize("b_kind", ["tensor", "array"])
def test_matmul_operator_matches_torch(a_shape, b_shape, b_kind):
    """x @ w and w @ x (reflected, with an ndarray on the left) for 1-D, 2-D and batched operands."""
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    if b_kind == "tensor":
        compare_with_torch(lambda lib, a, b: a @ b, a, b)
    else:
        compare_with_torch(lambda lib, a: a @ lib.const(b), a)
        compare_with_torch(lambda lib, bt: lib.const(a) @ bt, b)


@needs_torch
@pytest.mark.parametrize("exponent", [2, 3, 0.5, -1.5, 1, 0], ids=str)
def test_pow_with_a_number_exponent(exponent):
    """x ** n for Python numbers, on a base of both signs where the power is real (torch's gradient, incl. n=0)."""
    rng = np.random.default_rng(7)
    x = _away_from_zero(rng, (3, 4)) if isinstance(exponent, int) else _positive(rng, (3, 4))
    compare_with_torch(lambda lib, x: x**exponent, x)
    compare_with_torch(lambda lib, x: (x * 2 - 1) ** exponent * x, x)


@needs_torch
def test_pow_with_a_tensor_exponent():
    """x ** y with both Tensors requiring gradients, and 2 ** y (a number base): both gradients as torch's."""
    rng = np.random.default_rng(8)
    x, y = _positive(rng, (3, 4)), rng.standard_normal((3, 4))
    compare_with_torch(lambda lib, x, y: x**y, x, y)
    compare_with_torch(lambda lib, x, y: x ** (y * y) + 2**y, x, y)
    compare_with_torch(lambda lib, x, e: x**e, x, rng.standard_normal(4))  # the exponent is broadcast
    compare_with_torch(lambda lib, x, e: e**x, x, _positive(rng, (3, 1)))  # the base is broadcast


@needs_torch
def test_unary_minus_matches_torch():
    """-x, -x as an operand and -(expression), through the neg op."""
    x = np.random.default_rng(9).standard_normal((3, 4))
    compare_with_torch(lambda lib, x: -x, x)
    compare_with_torch(lambda lib, x: -(2 * -x) * -lib.tanh(-x) - -x, x)


def test_ndarray_on_the_left_returns_a_tensor():
    """ndarray <op> Tensor is handled by the Tensor (reflected operator), never by NumPy element by element."""
    x = Tensor(np.ones((2, 2)), requires_grad=True)
    a = np.full((2, 2), 3.0)
    for result in (a + x, a - x, a * x, a / x, a**x, a @ x):
        assert isinstance(result, Tensor) and result.requires_grad, type(result)


@needs_torch
def test_single_element_backward_without_gradient_matches_torch():
    """A (1, 1) or 0-d loss needs no explicit gradient (it is taken as 1)."""
    rng = np.random.default_rng(10)
    x, w = rng.standard_normal((1, 4)), rng.standard_normal((4, 1))
    compare_with_torch(lambda lib, x, w: lib.tanh(x @ w), x, w, explicit_gradient=False)
    compare_with_torch(lambda lib, x, w: lib.sum(x @ w) * 3, x, w, explicit_gradient=False)


# --- 3. no_grad and detach -------------------------------------------------------------------------------------------


def test_no_grad_records_nothing():
    """Inside no_grad, results of ops on Tensors requiring grad require none, are leaves, and cannot backward."""
    x = Tensor(np.ones(3), requires_grad=True)
    with opreg.no_grad():
        y = ops.tanh(x * 2 + 1)
        z = -y
    for t in (y, z):
        assert not t.requires_grad and t.is_leaf
    with pytest.raises(EngineStateError):
        z.backward(np.ones(3))
    assert x.grad is None
    assert (x * 2).requires_grad  # recording is back on after the block


def test_no_grad_as_a_decorator():
    """@opreg.no_grad() on a function: nothing recorded inside, on every call; recording resumes after."""
    x = Tensor(np.ones(3), requires_grad=True)

    @opreg.no_grad()
    def evaluate(t):
        return ops.exp(t) * 3

    for _ in range(2):
        y = evaluate(x)
        assert not y.requires_grad and y.is_leaf
        assert (x * 3).requires_grad


def test_no_grad_nesting_and_exceptions_restore_the_state():
    """Leaving an inner no_grad keeps the outer one in force; leaving the outer (even by an exception) restores
    recording."""
    x = Tensor(np.ones(2), requires_grad=True)
    with opreg.no_grad():
        with opreg.no_grad():
            assert not (x * 2).requires_grad
        assert not (x * 2).requires_grad
    assert (x * 2).requires_grad
    with pytest.raises(ZeroDivisionError), opreg.no_grad():
        assert not (x * 2).requires_grad
        raise ZeroDivisionError
    assert (x * 2).requires_grad


@needs_torch
def test_detach_cuts_the_graph():
    """x.detach(): same values, no gradient required, a leaf; gradients do not flow through it (vs torch)."""
    x = np.random.default_rng(11).standard_normal((3, 4))
    d = Tensor(x, requires_grad=True).detach()
    assert not d.requires_grad and d.is_leaf and d.grad is None
    np.testing.assert_array_equal(d.numpy(), x)
    y = ops.tanh(Tensor(x, requires_grad=True) * 2)
    assert not y.detach().requires_grad and y.detach().is_leaf
    compare_with_torch(lambda lib, x: x * x.detach() + lib.tanh(x.detach()) * x, x)


# --- 4. backward from non-scalars, and its errors --------------------------------------------------------------------


@needs_torch
def test_backward_from_a_non_scalar_with_an_explicit_gradient_matches_torch():
    """backward(gradient) from a (3, 5) output gives the vector-Jacobian product torch gives."""
    rng = np.random.default_rng(12)
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 5)), rng.standard_normal(5)
    compare_with_torch(lambda lib, x, w, b: lib.tanh(x @ w + b), x, w, b)
    compare_with_torch(lambda lib, x, w, b: (x @ w) * b, x, w, b, requires_grad=[True, True, False])


def test_backward_gradient_may_be_a_tensor():
    """gradient= accepts a Tensor as well as an array."""
    x = Tensor(np.arange(3.0), requires_grad=True)
    (x * 2).backward(Tensor(np.array([1.0, 2.0, 3.0])))
    np.testing.assert_array_equal(x.grad, [2.0, 4.0, 6.0])


def test_backward_without_gradient_from_a_non_scalar_raises():
    """A non-scalar output needs gradient=: OpUsageError naming the shape, and no gradient is written."""
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(OpUsageError, match=r"\(2, 3\)"):
        (x * 2).backward()
    assert x.grad is None


@pytest.mark.parametrize("shape", [(3, 2), (6,), (2, 3, 1), (), (1, 3)], ids=str)
def test_backward_with_a_wrong_shape_gradient_raises(shape):
    """A gradient of any other shape than the output's (even a broadcastable one) is refused."""
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(OpUsageError, match="shape"):
        (x * 2).backward(np.ones(shape))
    assert x.grad is None


def test_backward_on_a_tensor_not_requiring_grad_raises():
    """backward() on a constant, or on a result of constants only, is an EngineStateError."""
    with pytest.raises(EngineStateError):
        Tensor(np.array(1.0)).backward()
    with pytest.raises(EngineStateError):
        (Tensor(np.array(1.0)) * 3).backward()


# --- 5. accumulation and releasing the graph -------------------------------------------------------------------------


@needs_torch
def test_grad_accumulates_over_backward_calls_with_retain_graph():
    """Two backward calls through a retained graph accumulate 2x the single gradient (as in torch)."""
    rng = np.random.default_rng(13)
    x, w = Tensor(rng.standard_normal((3, 4)), requires_grad=True), Tensor(rng.standard_normal(4), requires_grad=True)
    loss = ops.mse(ops.tanh(x * w + w), Tensor(np.zeros((3, 4))))
    loss.backward(retain_graph=True)
    first_x, first_w = x.grad.copy(), w.grad.copy()
    loss.backward(retain_graph=True)
    np.testing.assert_allclose(x.grad, 2 * first_x, rtol=1e-14)
    np.testing.assert_allclose(w.grad, 2 * first_w, rtol=1e-14)
    tx, tw = torch.tensor(x.data.copy(), requires_grad=True), torch.tensor(w.data.copy(), requires_grad=True)
    tloss = F.mse_loss(torch.tanh(tx * tw + tw), torch.zeros(3, 4, dtype=torch.float64))
    tloss.backward(retain_graph=True)
    tloss.backward()
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), **F64)
    np.testing.assert_allclose(w.grad, tw.grad.numpy(), **F64)


def test_a_backward_that_raises_names_its_op_and_leaves_every_grad_as_it_was(install_ops):
    install_ops({"name": "broken", "inputs": ("x",), "forward": lambda x: 2 * x, "backward": lambda g, x: (g[[0, 5]],)})
    w, v = Tensor(np.ones(2), requires_grad=True), Tensor(np.ones(2), requires_grad=True)
    loss = (opreg.ops.broken(w) * v).sum()
    with pytest.raises(opreg.OpregError) as raised:
        loss.backward()
    assert type(raised.value).__name__ == "BackwardError"
    assert str(raised.value).startswith("op 'broken' (plugin 'test-plugin'): backward raised IndexError")
    assert isinstance(raised.value.__cause__, IndexError)
    assert w.grad is None and v.grad is None  # v's gradient was computed, and not applied


def test_second_backward_through_a_released_graph_raises():
    """Without retain_graph the graph is released: a second backward raises EngineStateError saying to pass
    retain_graph, and leaves .grad as the first backward made it."""
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    loss = ops.sum(ops.exp(x) * x)
    loss.backward()
    first = x.grad.copy()
    with pytest.raises(EngineStateError, match="retain_graph"):
        loss.backward()
    np.testing.assert_array_equal(x.grad, first)


def test_backward_through_a_released_shared_intermediate_raises():
    """A graph released by one output's backward cannot be reused by another output sharing its intermediates."""
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    h = x * x
    a, b = ops.sum(h + 1), ops.sum(h * 3)
    a.backward()
    with pytest.raises(EngineStateError, match="retain_graph"):
        b.backward()


def test_retain_graph_then_release():
    """retain_graph=True keeps it for one more backward; that one (without it) releases it."""
    x = Tensor(np.array(2.0), requires_grad=True)
    y = x * x * x
    y.backward(retain_graph=True)
    y.backward()
    assert x.grad == pytest.approx(2 * 3 * 4.0)
    with pytest.raises(EngineStateError):
        y.backward()


def test_setting_grad_to_none_resets_accumulation():
    """.grad = None starts accumulation afresh: the next backward gives the single gradient again."""
    x = Tensor(np.array([1.0, -1.0]), requires_grad=True)
    y = ops.sum(x * x * 3)
    y.backward(retain_graph=True)
    y.backward(retain_graph=True)
    np.testing.assert_array_equal(x.grad, [12.0, -12.0])
    x.grad = None
    y.backward()
    np.testing.assert_array_equal(x.grad, [6.0, -6.0])


def test_accumulation_does_not_alias_gradients():
    """add gives one gradient array to both operands: accumulating into one leaf's .grad (in place, as an
    optimizer would) must not change the other's."""
    a, b = Tensor(np.ones(3), requires_grad=True), Tensor(np.ones(3), requires_grad=True)
    (a + b).backward(np.array([1.0, 2.0, 3.0]))
    a.grad *= 10
    np.testing.assert_array_equal(b.grad, [1.0, 2.0, 3.0])


# --- 6. which tensors get gradients ----------------------------------------------------------------------------------


def test_leaves_off_the_path_and_constants_get_no_grad():
    """A leaf requiring grad that does not reach the loss, and constants in the graph, keep .grad None."""
    rng = np.random.default_rng(14)
    x = Tensor(rng.standard_normal((2, 3)), requires_grad=True)
    unused = Tensor(rng.standard_normal((2, 3)), requires_grad=True)
    constant = Tensor(rng.standard_normal((2, 3)))
    side = unused * x  # recorded, but not part of the loss
    loss = ops.sum(x * constant + x)
    loss.backward()
    assert unused.grad is None and constant.grad is None and side.grad is None
    np.testing.assert_allclose(x.grad, constant.data + 1, **F64)


def test_leaf_reaching_the_loss_only_through_a_non_differentiable_input_gets_no_grad():
    """Labels computed from a parameter: that parameter is not differentiated through them."""
    rng = np.random.default_rng(15)
    w = Tensor(rng.standard_normal((2, 3)), requires_grad=True)
    logits = Tensor(rng.standard_normal((2, 3)), requires_grad=True)
    ops.softmax_cross_entropy(logits, ops.sigmoid(w)).backward()
    assert w.grad is None and logits.grad is not None


@pytest.mark.parametrize("data", [[1, 2, 3], np.arange(3, dtype=np.int32), [True, False], 3], ids=str)
def test_integer_and_boolean_tensors_cannot_require_grad(data):
    """Only floating-point Tensors can require gradients."""
    with pytest.raises(OpUsageError, match="floating"):
        Tensor(data, requires_grad=True)


def test_integer_tensor_cannot_be_made_to_require_grad_afterwards():
    """Setting requires_grad = True on an integer Tensor after construction is refused as well (torch raises)."""
    t = Tensor([1, 2, 3])
    with pytest.raises(OpUsageError):
        t.requires_grad = True


@needs_torch
def test_integer_constants_in_a_float_graph():
    """An integer Tensor operand is a constant: the float operand's gradient is as torch's, dtype float."""
    counts = np.arange(1, 13).reshape(3, 4)
    x = np.random.default_rng(16).standard_normal((3, 4))
    compare_with_torch(lambda lib, x, c: x * c + x / c, x, counts, requires_grad=[True, False])


# --- 7. third-party ops through opreg.ops ----------------------------------------------------------------------------


def _softsign(x):
    return x / (1 + np.abs(x))


SOFTSIGN = {
    "name": "softsign",
    "inputs": ("x",),
    "forward": _softsign,
    "backward": lambda g, x: (g / (1 + np.abs(x)) ** 2,),
    "doc": "x / (1 + |x|).",
}


@needs_torch
def test_third_party_op_is_callable_on_tensors_and_differentiates(install_ops):
    """A plugin's op is opreg.ops.<name> as soon as it is registered, and composes with built-ins (vs torch)."""
    assert "softsign" not in dir(ops)
    install_ops(SOFTSIGN, name="softsign-ops")
    assert "softsign" in dir(ops)
    assert {"add", "matmul", "tanh"} <= set(dir(ops))
    OPREG.softsign, TORCH.softsign = ops.softsign, F.softsign
    try:
        rng = np.random.default_rng(17)
        x, w = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
        compare_with_torch(lambda lib, x, w: lib.softsign(x @ w) * lib.softsign(x @ w), x, w)
        compare_with_torch(lambda lib, x, w: lib.mse(lib.softsign(x @ w), lib.tanh(x @ w)), x, w)
    finally:
        del OPREG.softsign, TORCH.softsign


def test_third_party_op_gradient_is_hand_derived_one(install_ops):
    """cube(x) on a Tensor: d/dx sum(g * x**3) = 3 g x**2, and its output is a recorded non-leaf."""
    install_ops({"name": "cube", "inputs": ("x",), "forward": lambda x: x**3, "backward": lambda g, x: (3 * g * x**2,)})
    x = Tensor(np.array([1.0, -2.0, 0.5]), requires_grad=True)
    y = ops.cube(x)
    assert y.requires_grad and not y.is_leaf
    np.testing.assert_array_equal(y.data, [1.0, -8.0, 0.125])
    y.backward(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(x.grad, [3.0, 24.0, 2.25])


def test_unknown_op_raises_attribute_error_suggesting_close_names(install_ops):
    """opreg.ops.<typo> is an AttributeError (so hasattr works) naming the closest registered ops."""
    install_ops(SOFTSIGN)
    with pytest.raises(AttributeError, match="softsign"):
        _ = ops.softsgin
    with pytest.raises(AttributeError, match="'tanh'"):
        _ = ops.tahn
    with pytest.raises(AttributeError, match="no_such_op"):
        _ = ops.no_such_op
    assert not hasattr(ops, "no_such_op")


def test_op_function_is_named_and_documented(install_ops):
    """opreg.ops.<name> carries the op's name and doc (help() shows them)."""
    install_ops(SOFTSIGN, name="softsign-ops")
    assert ops.softsign.__name__ == "softsign"
    assert "x / (1 + |x|)" in ops.softsign.__doc__ and "softsign-ops" in ops.softsign.__doc__


# --- 8. opreg.gradcheck ----------------------------------------------------------------------------------------------


def test_gradcheck_passes_for_a_composite_function():
    """mse(tanh(x @ w + b), target) passes the finite-difference check and returns True."""
    rng = np.random.default_rng(18)
    x, w, b, t = (rng.standard_normal(s) for s in [(4, 3), (3, 2), (2,), (4, 2)])

    def mse_of_layer(x, w, b, t):
        return ops.mse(ops.tanh(x @ w + b), t)

    assert opreg.gradcheck(mse_of_layer, x, w, b, t) is True


def test_gradcheck_passes_for_expressions_reusing_intermediates():
    """A second, torch-free opinion on the diamonds: every DIAMONDS expression passes gradcheck."""
    rng = np.random.default_rng(19)
    x, w = _away_from_zero(rng, (3, 4)), _away_from_zero(rng, (3, 4))
    for name, fn in DIAMONDS.items():
        try:
            opreg.gradcheck(lambda x, w, fn=fn: fn(OPREG, x, w), x, w)
        except GradcheckError as exc:
            raise AssertionError(f"{name}: {exc}") from None


def test_gradcheck_leaves_the_callers_tensors_alone():
    """gradcheck works on copies: the caller's Tensors get no .grad and keep their values."""
    x = Tensor(np.array([0.5, -1.0]), requires_grad=True)
    before = x.data.copy()
    opreg.gradcheck(lambda x: ops.tanh(x) * x, x)
    assert x.grad is None
    np.testing.assert_array_equal(x.data, before)


def test_gradcheck_fails_on_a_wrong_third_party_op_naming_the_input(install_ops):
    """A wrong backward (d x**3 = 2x**2) used on input 1 only: GradcheckError naming input 1, not input 0."""
    install_ops(
        {"name": "bad_cube", "inputs": ("x",), "forward": lambda x: x**3, "backward": lambda g, x: (2 * g * x**2,)},
        name="buggy-ops",
    )
    rng = np.random.default_rng(20)
    x, w = rng.standard_normal((3, 4)), _away_from_zero(rng, (3, 4))

    def scaled_cube(x, w):
        return ops.tanh(x) * ops.bad_cube(w)

    with pytest.raises(GradcheckError) as failure:
        opreg.gradcheck(scaled_cube, x, w)
    message = str(failure.value)
    assert "input 1" in message and "input 0" not in message
    assert "scaled_cube" in message
    assert "analytic" in message and "numeric" in message


def test_gradcheck_checks_float32_inputs_in_float64():
    """float32 inputs are checked in float64, where the default tolerances are meaningful."""
    x = np.random.default_rng(21).standard_normal((3, 3)).astype(np.float32)
    assert opreg.gradcheck(lambda x: x @ x.T * ops.exp(-x), x)


# --- 9. dtype --------------------------------------------------------------------------------------------------------


@needs_torch
def test_float32_graph_stays_float32_with_python_numbers():
    """A float32 model with Python numbers in every operator position: every intermediate, the loss and every
    gradient are float32, matching torch's float32 computation."""
    rng = np.random.default_rng(22)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in [(4, 3), (3, 2), (2,), (4, 2)]]
    seen: list[np.dtype] = []

    def model(lib, x, w, b, t):
        steps = [x @ w + b]
        steps.append(lib.tanh(steps[-1]) * 0.5 - 1)
        steps.append(2.0 ** steps[-1] + steps[-1] ** 2 - 3 / (2 + lib.sigmoid(steps[-1])))
        steps.append(1 - (-steps[-1]) / 4.0 + steps[-1].T.T * 2)
        steps.append(lib.mse(steps[-1], t) * 0.5 + 1e-3)
        if lib is OPREG:
            seen.extend(s.dtype for s in steps)
        return steps[-1]

    mine = compare_with_torch(model, *arrays, tol={"rtol": 2e-5, "atol": 1e-6})
    assert seen and all(d == np.float32 for d in seen), seen
    assert all(t.grad.dtype == np.float32 for t in mine)


def test_float32_root_with_a_float64_gradient_gives_float32_grads():
    """A float64 gradient= for a float32 output still gives float32 leaf gradients."""
    x = Tensor(np.ones(3, np.float32), requires_grad=True)
    (x * 2.5).backward(np.array([1.0, 2.0, 3.0]))
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, np.array([2.5, 5.0, 7.5], np.float32))


@needs_torch
def test_mixed_precision_gradients_come_back_in_each_leafs_dtype():
    """float32 x with float64 w: float64 arithmetic (as torch promotes), each gradient in its leaf's dtype."""
    rng = np.random.default_rng(23)
    x, w = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((4, 2))
    mx, mw = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
    out = ops.tanh(mx @ mw)
    assert out.dtype == np.float64
    out.backward(np.ones((3, 2)))
    assert mx.grad.dtype == np.float32 and mw.grad.dtype == np.float64
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    torch.tanh(tx.double() @ tw).backward(torch.ones(3, 2, dtype=torch.float64))
    np.testing.assert_allclose(mx.grad, tx.grad.numpy(), strict=True, **F32)
    np.testing.assert_allclose(mw.grad, tw.grad.numpy(), strict=True, rtol=1e-6)


def test_no_grad_used_bare_as_a_decorator():
    """@opreg.no_grad without parentheses works like @opreg.no_grad(), as in recent PyTorch."""

    @opreg.no_grad
    def doubled(t):
        return t * 2.0

    x = opreg.Tensor(np.ones(2), requires_grad=True)
    assert not doubled(x).requires_grad
    assert (x * 2.0).requires_grad


def test_no_grad_is_per_thread():
    """One thread inside no_grad does not stop another from recording, as PyTorch's grad mode is per thread."""
    x = opreg.Tensor(np.ones(2), requires_grad=True)
    entered, release = threading.Event(), threading.Event()
    recorded = {}

    def worker():
        with opreg.no_grad():
            entered.set()
            release.wait(5)
            recorded["worker"] = (x * 2.0).requires_grad

    thread = threading.Thread(target=worker)
    thread.start()
    entered.wait(5)
    recorded["main"] = (x * 2.0).requires_grad
    release.set()
    thread.join(5)
    assert recorded == {"worker": False, "main": True}


@needs_torch
def test_sum_and_mean_methods_are_the_registered_ops():
    """Tensor.sum()/mean() with axis and keepdims, against torch."""
    x = np.random.default_rng(21).standard_normal((2, 3, 4))

    def expression(lib, t):
        if lib is OPREG:
            return (t.sum(axis=(0, 2)) * t.mean(axis=1, keepdims=True).sum()).sum()
        return (t.sum(dim=(0, 2)) * t.mean(dim=1, keepdim=True).sum()).sum()

    compare_with_torch(expression, x)


def test_assigned_gradients_are_arrays_of_the_tensors_shape():
    """.grad = value stores an array (a NumPy scalar becomes a 0-d array); a wrong shape is refused."""
    x = Tensor(np.array(1.0), requires_grad=True)
    x.grad = np.float64(2.0)
    assert type(x.grad) is np.ndarray and x.grad.shape == ()
    with pytest.raises(OpUsageError, match=r"a gradient of shape \(2,\) for a tensor of shape \(\)"):
        x.grad = np.ones(2)


def test_a_reused_zero_dimensional_intermediate_accumulates_to_an_array():
    """0-d + 0-d is a NumPy scalar in NumPy; accumulated gradients stay arrays all the way to .grad."""
    x = Tensor(np.array(1.5), requires_grad=True)
    h = x * 2.0
    (h + h * h).backward()
    assert type(x.grad) is np.ndarray and x.grad == pytest.approx(14.0)


def test_matmul_skips_the_gradient_nobody_needs(install_ops):
    """A network's input needs no gradient: matmul's backward is told so and does not compute it."""
    seen = []
    original = opreg.get_registry()["matmul"].backward

    def spying_backward(g, a, b, *, needs_grad):
        seen.append(needs_grad)
        return original(g, a, b, needs_grad=needs_grad)

    install_ops(
        {
            "name": "matmul",
            "inputs": ("a", "b"),
            "forward": np.matmul,
            "backward": spying_backward,
            "backward_uses_needs_grad": True,
            "overrides": True,
        },
        name="spy",
    )
    x, w = Tensor(np.ones((2, 3))), Tensor(np.ones((3, 4)), requires_grad=True)
    (x @ w).sum().backward()
    assert seen == [(False, True)] and x.grad is None and w.grad.shape == (3, 4)


def test_a_leaf_gradient_is_never_an_array_someone_else_holds():
    """The first gradient reaching a leaf is kept without a copy only when nothing else refers to it."""
    seed = np.ones(3)
    x = Tensor(np.arange(3.0), requires_grad=True)
    x.backward(seed)  # the caller's seed itself arrives at the leaf
    (x * 1.0).backward(seed)
    seed[0] = 5.0
    np.testing.assert_array_equal(x.grad, [2.0, 2.0, 2.0])
    a, b = Tensor(np.zeros(2), requires_grad=True), Tensor(np.zeros(2), requires_grad=True)
    (a + b).backward(np.ones(2))  # add passes one array to both leaves
    assert not np.shares_memory(a.grad, b.grad)
    a.grad *= 3.0
    np.testing.assert_array_equal(b.grad, [1.0, 1.0])


# --- opreg.grad and create_graph: gradients as Tensors, differentiable again --------------------------------------


def test_grad_returns_gradients_and_leaves_dot_grad_alone():
    x, unused = Tensor(np.arange(3.0), requires_grad=True), Tensor(np.ones(3), requires_grad=True)
    h = x * x
    gx, gh, gu = opreg.grad(ops.sum(h * 3.0), [x, h, unused])
    np.testing.assert_array_equal(gx.data, 6 * x.data)
    np.testing.assert_array_equal(gh.data, [3.0, 3.0, 3.0])  # an intermediate's gradient too
    assert gu is None and x.grad is None and not gx.requires_grad
    a, b, seed = Tensor(np.zeros(2), requires_grad=True), Tensor(np.zeros(2), requires_grad=True), np.ones(2)
    ga, gb = opreg.grad(a + b, [a, b], seed)  # add hands one array to both
    assert not np.shares_memory(ga.data, gb.data) and not np.shares_memory(ga.data, seed)


@needs_torch
def test_hessian_vector_products_match_torch():
    """Second derivatives through every op that declares a differentiable backward, against torch's."""
    rng = np.random.default_rng(3)
    x0, v, c = rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), rng.standard_normal(4)
    y0 = rng.standard_normal((3, 4))

    def f(x, lib):
        if lib is torch:
            y = torch.tanh(x) * x * x / (torch.exp(x) + 2.0) - torch.sigmoid(x * torch.tensor(c))
            return F.mse_loss(-torch.log(y * y + 1.0) + x, torch.tensor(y0))
        y = ops.tanh(x) * x * x / (ops.exp(x) + 2.0) - ops.sigmoid(x * c)
        return ops.mse(-ops.log(y * y + 1.0) + x, y0)

    x = Tensor(x0, requires_grad=True)
    (g,) = opreg.grad(f(x, opreg), [x], create_graph=True)
    assert g.requires_grad
    ops.sum(g * v).backward()
    xt = torch.tensor(x0, requires_grad=True)
    (gt,) = torch.autograd.grad(f(xt, torch), [xt], create_graph=True)
    (gt * torch.tensor(v)).sum().backward()
    np.testing.assert_allclose(g.data, gt.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(x.grad, xt.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_create_graph_through_a_numpy_backward_is_refused_naming_the_op(install_ops):
    """A backward that calls a NumPy function no op implements cannot be differentiated: an error names the op and
    the function, rather than a second derivative that silently misses a term. (np.heaviside: no op implements
    it; np.sin and np.cos are built-in ops now.)"""
    install_ops(
        {
            "name": "ramp",
            "inputs": ("x",),
            "forward": lambda x: x * np.heaviside(x, 0.5),
            "backward": lambda g, x: (g * np.heaviside(x, 0.5),),
        },
        name="numpy-ops",
    )
    x = Tensor(np.ones((2, 2)), requires_grad=True)
    (first,) = opreg.grad(ops.ramp(x), [x], np.ones((2, 2)))  # first order: NumPy code is fine
    np.testing.assert_allclose(first.data, 1.0)
    refused = r"op 'ramp' \(plugin 'numpy-ops'\): create_graph=True.*numpy.heaviside"
    with pytest.raises(opreg.NotComposableError, match=refused):
        opreg.grad(ops.ramp(x), [x], np.ones((2, 2)), create_graph=True)


def test_create_graph_works_in_checking_and_anomaly_modes():
    """Both modes wrap every op; a backward recorded on Tensors goes through the wrappers as well."""
    x = Tensor(np.array([0.3, -1.2, 2.0]), requires_grad=True)
    with opreg.checking(), opreg.detect_anomaly():
        (g,) = opreg.grad(ops.mse(ops.tanh(x * x), np.zeros(3)), [x], create_graph=True)
        ops.mse(g, np.zeros(3)).backward()
    reference = Tensor(x.data, requires_grad=True)
    (g_plain,) = opreg.grad(ops.mse(ops.tanh(reference * reference), np.zeros(3)), [reference], create_graph=True)
    ops.mse(g_plain, np.zeros(3)).backward()
    np.testing.assert_array_equal(x.grad, reference.grad)


def test_comparisons_give_constant_masks_and_are_never_quietly_true():
    """t < 0 is a plain boolean array of the values (a mask has no gradient); a mask of several elements has no
    truth value, so ``t in [other]`` raises instead of answering True for a different tensor."""
    x = Tensor(np.array([-1.0, 2.0]), requires_grad=True)
    mask = (x > 0) & ~(x == 5.0) | (x < -3.0)
    assert type(mask) is np.ndarray and mask.dtype == np.bool_
    np.testing.assert_array_equal(mask, [False, True])
    assert x in [x]
    with pytest.raises(ValueError, match="ambiguous"):
        _ = x in [Tensor(np.zeros(2))]
    (ops.mul(x, x > 0)).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 1.0])


def test_numpy_comparisons_on_tensors_give_constant_masks():
    """NumPy's comparison and logical ufuncs (array < tensor calls np.less) have no derivative: they run on the
    values and give a plain boolean array, as the operators do."""
    t = Tensor(np.array([1.0, -1.0]), requires_grad=True)
    for mask in [np.zeros(2) < t, np.greater(t, 0), np.logical_and(t > 0, True), np.isfinite(t), np.equal(t, 1.0)]:
        assert type(mask) is np.ndarray and mask.dtype == np.bool_
    np.testing.assert_array_equal(np.zeros(2) < t, [True, False])
    with pytest.raises(OpUsageError, match=r"numpy.heaviside was called on a Tensor"):
        np.heaviside(t, 0.5)


@pytest.mark.parametrize("function", [np.sum, np.mean], ids=lambda f: f.__name__)
def test_numpy_positional_arguments_are_read_by_numpys_signature(function):
    """np.sum(a, axis, dtype, out, keepdims): the third positional argument is dtype, not keepdims. A valid NumPy
    call with dtype=None gives NumPy's result on a Tensor too (it failed with keepdims=None), as does
    opreg.numpy's function of that name; an argument the op cannot honour (dtype=float32) is refused by name."""
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(function(Tensor(x, requires_grad=True), 0, None).data, function(x, 0, None))
    np.testing.assert_array_equal(
        getattr(onp, function.__name__)(x, 0, None, keepdims=True), function(x, 0, None, keepdims=True)
    )
    with pytest.raises(
        OpUsageError, match=rf"numpy.{function.__name__}'s dtype=<class 'numpy.float32'> is not supported"
    ):
        function(Tensor(x), 0, np.float32)


def test_gradient_dtype_takes_a_tensor_under_typeguard():
    """A backward may call gradient_dtype(x) on its input, which is a Tensor when the backward is differentiated:
    it works (Tensor has dtype), and its hint must say so, as restore_axes's does."""
    from typeguard import typechecked

    import opreg.plugin

    x = Tensor(np.ones(3, np.float32), requires_grad=True)
    assert typechecked(opreg.plugin.restore_axes)(x, x, 0, True) is x
    assert typechecked(opreg.plugin.gradient_dtype)(x) == np.float32


@pytest.mark.parametrize(
    "loss",
    [
        lambda a, b: (a + b).sum(),
        lambda a, b: ((a + b) * 2.0).sum(),
        lambda a, b: ops.mse(a + b, np.zeros(3)),
        lambda a, b: (a - b).mean(),
    ],
    ids=["sum", "scaled-sum", "mse", "mean"],
)
def test_a_gradient_made_in_the_graph_reaching_two_leaves_gives_each_its_own(loss):
    """add and sub hand one gradient array, made by the ops after them, to both operands: each leaf's .grad must be
    a writable array of its own, so that an optimizer's in-place update of one leaves the other alone."""
    a, b = Tensor(np.ones(3), requires_grad=True), Tensor(np.ones(3), requires_grad=True)
    loss(a, b).backward()
    expected = b.grad.copy()
    assert not np.shares_memory(a.grad, b.grad)
    a.grad *= 10
    np.testing.assert_array_equal(b.grad, expected)


@needs_torch
def test_unary_plus_is_a_recorded_copy_as_torch() -> None:
    x = Tensor(np.array([1.5, -2.0]), requires_grad=True)
    y = +x
    assert y is not x and y.requires_grad
    (y * y).sum().backward()
    xt = torch.tensor([1.5, -2.0], dtype=torch.float64, requires_grad=True)
    ((+xt) * (+xt)).sum().backward()
    np.testing.assert_allclose(x.grad, xt.grad.numpy(), rtol=0, atol=1e-12)
