"""Property-based tests: every built-in op, forward and backward, through both front ends, against PyTorch.

For each built-in op (each op whose plugin is ``opreg_builtins.*``) and for float32 and float64, hypothesis draws
inputs from the op's entry in ``CASES``: shapes from 0-d to 4-D, every broadcasting pattern the op allows (binary
elementwise ops draw a mutually broadcastable pair of shapes, sometimes with empty axes), matmul's shape families
(1-D @ 1-D, 1-D @ N-D, N-D @ 1-D, 2-D @ 2-D, batched with broadcast batch axes), ``sum``/``mean`` with every
kind of axis (None, an int, a negative int, a tuple in any order, the empty tuple) and ``keepdims``, and values
near the edge of each op's domain: ``log`` down to the smallest normal float, ``div`` by divisors down to 2**-20
in magnitude, ``pow`` of a positive base, ``exp`` up to where it overflows, ``sigmoid``/``tanh`` at +-1e4, ``relu``
at exactly 0.0 and -0.0. The same case then runs through the tape engine (``Autograd().apply`` + ``backward(g)``
+ ``gradient_buffer.get_param``) and through Tensors (``opreg.ops.<name>`` + ``.backward(g)`` + ``.grad``), and
both must equal torch's forward and autograd gradients: values, shapes and dtypes; both must leave the inputs
unchanged and agree bit for bit, and each Tensor ``.grad`` must be an array of its own. Binary ops also run with
one float32 and one float64 operand. A built-in op without an entry in ``CASES`` fails, as does an entry for an op
that is not a built-in.

relu's subgradient at 0: opreg's relu has gradient 0 at x == 0, for 0.0 and -0.0 alike, the choice PyTorch makes;
``test_relu_subgradient_at_zero_is_zero`` checks it exactly.

Tolerances are error bounds, not fudge factors: ``rtol`` is 2e-5 for float32 and 1e-10 for float64, and ``atol``
grows with the number of terms a result sums and with their magnitude (a float32 sum of 256 terms of size 100
cannot be exact), so a wrong derivative (a wrong sign, a missing factor, a gradient summed over the wrong axis)
still fails.

Two opreg bugs found while writing these properties (tape gradients aliasing each other and the seed; div's
gradient over- or underflowing in ``b * b``) are fixed, and the tests at the end keep them fixed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import opreg
from opreg import Tensor

torch = pytest.importorskip("torch")
F = torch.nn.functional

REGISTRY = opreg.get_registry()
BUILTIN_OPS = sorted(name for name, op in REGISTRY.items() if op.plugin.startswith("opreg_builtins"))
DTYPES = [np.float32, np.float64]

#: Per dtype: relative tolerance, and the absolute floor below which values count as equal.
RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-10}
ATOL = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}

#: Examples per hypothesis test (42 of them: 17 ops x 2 dtypes, 6 mixed-dtype, 2 relu): about 20 s in all.
EXAMPLES = 100
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- torch references (written from torch's documentation, never from opreg's code) -------------------------------


def _dims(x, axis):
    """opreg's axis=None (all axes) as torch's explicit dim."""
    return tuple(range(x.ndim)) if axis is None else axis


def _reduction(function):
    """torch's sum/mean with NumPy's axis semantics. ``axis=()`` reduces nothing in NumPy (and opreg), while torch
    reads ``dim=()`` as every axis, so the empty tuple is the identity here."""

    def reduce(x, *, axis, keepdims):
        dims = _dims(x, axis)
        if dims == ():
            return x.clone()
        return function(x, dim=dims, keepdim=keepdims)

    return reduce


def _torch_softmax_cross_entropy(logits, labels):
    """torch's cross_entropy with probability targets, over every leading (batch) axis."""
    classes = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, classes), labels.reshape(-1, classes))


#: op name -> the same computation in torch.
TORCH_OPS: dict[str, Callable[..., Any]] = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": torch.div,
    "neg": torch.neg,
    "pow": torch.pow,
    "log": torch.log,
    "exp": torch.exp,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "matmul": torch.matmul,
    "transpose": lambda x: x.mT,
    "softmax_cross_entropy": _torch_softmax_cross_entropy,
    "mse": F.mse_loss,
    "sum": _reduction(torch.sum),
    "mean": _reduction(torch.mean),
}


# --- strategies ------------------------------------------------------------------------------------------------------

#: A drawn case: the op's inputs and its attributes.
Case = tuple[list[np.ndarray], dict[str, Any]]
#: An op's entry in CASES: dtype -> strategy of cases.
CaseStrategy = Callable[[type], st.SearchStrategy[Case]]


def _bound(value: float, dtype: type, inward: float) -> float:
    """``value`` as the nearest float of ``dtype`` on the side of ``inward`` (hypothesis wants exact bounds)."""
    rounded = dtype(value)
    if (rounded - value) * (inward - value) < 0:
        rounded = np.nextafter(rounded, dtype(inward))
    return float(rounded)


def floats(lo: float, hi: float) -> Callable[[type], st.SearchStrategy[float]]:
    """Element strategy factory: finite floats of the dtype in [lo, hi] (hypothesis favours the ends)."""

    def elements(dtype: type) -> st.SearchStrategy[float]:
        width = np.finfo(dtype).bits
        return st.floats(_bound(lo, dtype, hi), _bound(hi, dtype, lo), width=width)

    return elements


def away_from_zero(smallest: float, largest: float) -> Callable[[type], st.SearchStrategy[float]]:
    """Either sign, magnitude in [smallest, largest]: a divisor near 0 but not 0."""
    positive, negative = floats(smallest, largest), floats(-largest, -smallest)
    return lambda dtype: st.one_of(positive(dtype), negative(dtype))


def with_zeros(inner: Callable[[type], st.SearchStrategy[float]]) -> Callable[[type], st.SearchStrategy[float]]:
    """``inner``, plus exactly 0.0 and -0.0 often: relu's kink."""
    return lambda dtype: st.one_of(st.sampled_from([0.0, -0.0]), inner(dtype))


REAL = floats(-100.0, 100.0)
LARGE = floats(-1e4, 1e4)
DIVISOR = away_from_zero(2.0**-20, 100.0)
POSITIVE_BASE = floats(2.0**-10, 16.0)
EXPONENT = floats(-4.0, 4.0)
UNIT = floats(0.0, 1.0)


def log_domain(dtype: type) -> st.SearchStrategy[float]:
    """Positive, from the smallest normal float (where 1/x is still finite) up."""
    return floats(float(np.finfo(dtype).tiny), 1e30)(dtype)


def exp_domain(dtype: type) -> st.SearchStrategy[float]:
    """As large as exp stays finite (with room for a gradient of 2), as negative as it stays normal."""
    top = math.floor(math.log(float(np.finfo(dtype).max) / 2))
    return floats(-top, top)(dtype)


def arrays(dtype: type, shape: tuple[int, ...], elements) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.dtype(dtype), shape, elements=elements(dtype))


@st.composite
def min_sides(draw) -> int:
    """1 mostly; 0 (empty axes allowed) about one time in six."""
    return 0 if draw(st.integers(0, 5)) == 5 else 1


@st.composite
def shapes(draw, min_dims: int = 0, max_dims: int = 4) -> tuple[int, ...]:
    return draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=draw(min_sides()), max_side=4))


def unary(elements, min_dims: int = 0) -> CaseStrategy:
    @st.composite
    def case(draw, dtype: type) -> Case:
        return [draw(arrays(dtype, draw(shapes(min_dims=min_dims)), elements))], {}

    return case


def binary(first, second) -> CaseStrategy:
    """Two inputs of any mutually broadcastable shapes (0-d to 4-D, either one broadcast, or both)."""

    @st.composite
    def case(draw, dtype: type) -> Case:
        pair = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=4, min_side=draw(min_sides()), max_side=4))
        a_shape, b_shape = pair.input_shapes
        return [draw(arrays(dtype, a_shape, first)), draw(arrays(dtype, b_shape, second))], {}

    return case


def same_shape(first, second) -> CaseStrategy:
    """Two inputs of one shape: what the losses accept (they refuse to broadcast)."""

    @st.composite
    def case(draw, dtype: type) -> Case:
        shape = draw(shapes())
        return [draw(arrays(dtype, shape, first)), draw(arrays(dtype, shape, second))], {}

    return case


@st.composite
def matmul_case(draw, dtype: type) -> Case:
    """Each operand 1-D or batched matrices; the batch axes of the two broadcast against each other."""
    batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=3))
    low = draw(min_sides())
    m, k, n = (draw(st.integers(low, 4)) for _ in range(3))
    a_shape = (k,) if draw(st.booleans()) else (*batch.input_shapes[0], m, k)
    b_shape = (k,) if draw(st.booleans()) else (*batch.input_shapes[1], k, n)
    return [draw(arrays(dtype, a_shape, floats(-10.0, 10.0))), draw(arrays(dtype, b_shape, floats(-10.0, 10.0)))], {}


@st.composite
def axes(draw, ndim: int) -> int | tuple[int, ...] | None:
    """None, an int (either sign), or a tuple of distinct axes in any order, each either sign (maybe empty)."""
    kinds = ["none", "tuple", "int"] if ndim else ["none", "tuple"]
    kind = draw(st.sampled_from(kinds))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    if ndim == 0:
        return ()
    chosen = draw(st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim))
    return tuple(a - ndim if draw(st.booleans()) else a for a in chosen)


@st.composite
def reduction_case(draw, dtype: type) -> Case:
    x = draw(arrays(dtype, draw(shapes()), REAL))
    return [x], {"axis": draw(axes(x.ndim)), "keepdims": draw(st.booleans())}


@st.composite
def softmax_cross_entropy_case(draw, dtype: type) -> Case:
    """Logits (*batch, classes), 1-D to 4-D; labels one-hot, or any non-negative rows (not summing to 1)."""
    batch = draw(shapes(max_dims=3))
    classes = draw(st.integers(1, 5))
    logits = draw(arrays(dtype, (*batch, classes), REAL))
    if draw(st.booleans()):
        hot = draw(arrays(np.int64, batch, lambda _: st.integers(0, classes - 1)))
        labels = np.eye(classes, dtype=dtype)[hot]
    else:
        labels = draw(arrays(dtype, (*batch, classes), UNIT))
    return [logits, labels], {}


#: op name -> its case strategy. Keep complete: a built-in op without an entry fails.
CASES: dict[str, CaseStrategy] = {
    "add": binary(REAL, REAL),
    "sub": binary(REAL, REAL),
    "mul": binary(REAL, REAL),
    "div": binary(REAL, DIVISOR),
    "pow": binary(POSITIVE_BASE, EXPONENT),
    "neg": unary(LARGE),
    "log": unary(log_domain),
    "exp": unary(exp_domain),
    "relu": unary(with_zeros(REAL)),
    "sigmoid": unary(LARGE),
    "tanh": unary(LARGE),
    "matmul": matmul_case,
    "transpose": unary(REAL, min_dims=2),
    "sum": reduction_case,
    "mean": reduction_case,
    "mse": same_shape(REAL, REAL),
    "softmax_cross_entropy": softmax_cross_entropy_case,
}


def case_strategy(name: str, dtype: type) -> st.SearchStrategy[Case]:
    if name not in CASES or name not in TORCH_OPS:
        pytest.fail(f"built-in op {name!r} has no property test; add it to CASES and TORCH_OPS in {__name__}")
    return CASES[name](dtype)


# --- running one case three ways ------------------------------------------------------------------------------------


def run_torch(name: str, inputs: Sequence[np.ndarray], attributes: dict, g: np.ndarray | None):
    """torch's output, and its gradient for each differentiable input (None for the others).

    Inputs of mixed dtypes are first cast, inside torch's graph, to the dtype NumPy promotes them to: torch's own
    rule differs for 0-d tensors (0-d float64 + float32 is float32 there) and its matmul refuses mixed dtypes.
    """
    differentiable = REGISTRY[name].differentiable
    tensors = [torch.tensor(x.copy(), requires_grad=d) for x, d in zip(inputs, differentiable, strict=True)]
    common = getattr(torch, np.result_type(*inputs).name)
    out = TORCH_OPS[name](*(t.to(common) for t in tensors), **attributes)
    if g is None:
        return out.detach().numpy(), None
    out.backward(torch.tensor(g.copy()))
    return out.detach().numpy(), [t.grad.numpy() if d else None for t, d in zip(tensors, differentiable, strict=True)]


def run_engine(name: str, inputs: Sequence[np.ndarray], attributes: dict, g: np.ndarray):
    engine = opreg.Autograd()
    out = engine.apply(name, *inputs, **attributes)
    engine.backward(g)
    buffer = engine.gradient_buffer
    grads = []
    for x, differentiable in zip(inputs, REGISTRY[name].differentiable, strict=True):
        if differentiable:
            grads.append(buffer.get_param(x))
        else:
            assert not buffer.is_in_memory(x), f"{name}: the engine tracks a non-differentiable input"
            grads.append(None)
    return out, grads


def run_tensors(name: str, inputs: Sequence[np.ndarray], attributes: dict, g: np.ndarray):
    """Every input requires grad; the non-differentiable ones (labels) must still get none."""
    tensors = [Tensor(x, requires_grad=True) for x in inputs]
    out = getattr(opreg.ops, name)(*tensors, **attributes)
    assert isinstance(out, Tensor) and out.requires_grad and not out.is_leaf
    out.backward(g)
    for t, differentiable in zip(tensors, REGISTRY[name].differentiable, strict=True):
        assert differentiable or t.grad is None, f"{name}: a non-differentiable input got a gradient"
    return out.numpy(), [t.grad for t in tensors]


def error_scales(name: str, inputs: Sequence[np.ndarray], g: np.ndarray) -> list[Any]:
    """The magnitude of the terms each result sums, for the forward output then each input's gradient: a
    scalar bound, or per element where the terms' sizes vary wildly (div by a small divisor, pow)."""
    wide = [np.abs(x.astype(np.float64)) for x in inputs]
    big = [max(1.0, float(w.max(initial=0.0))) for w in wide]
    big_g = max(1.0, float(np.abs(g.astype(np.float64)).max(initial=0.0)))
    generic = big_g * math.prod(big)
    if name == "div":
        a, b = wide
        gg = np.abs(g.astype(np.float64))
        return [0.0, _summed(gg / b, a.shape), _summed(gg * a / (b * b), b.shape)]
    if name == "pow":
        base, exponent = wide
        gg = np.abs(g.astype(np.float64))
        out = np.power(base, inputs[1].astype(np.float64))
        d_base = gg * exponent * np.power(base, inputs[1].astype(np.float64) - 1)
        d_exponent = gg * out * np.abs(np.log(base))
        return [0.0, _summed(d_base, base.shape), _summed(d_exponent, exponent.shape)]
    return [math.prod(big)] + [generic] * len(inputs)


def _summed(terms: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``terms`` (of the broadcast shape) summed onto an input of ``shape``."""
    extra = terms.ndim - len(shape)
    terms = terms.sum(axis=tuple(range(extra))) if extra else terms
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and terms.shape[i] != 1)
    return terms.sum(axis=stretched, keepdims=True) if stretched else terms


def assert_close(
    actual: np.ndarray, expected: np.ndarray, scale: Any, terms: int, what: str, precision: Any = None
) -> None:
    """Same shape and dtype; infinities and NaNs where torch has them; elsewhere within rtol plus an absolute
    error of ``16 * terms * eps * scale`` (a sum of ``terms`` terms of size ``scale``, in two summation orders),
    for the dtype ``precision`` (default: the result's own; float32 when any input was float32)."""
    assert isinstance(actual, np.ndarray), f"{what}: a {type(actual).__name__}, not an array"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, torch's is {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype}, torch's is {expected.dtype}"
    dtype = np.dtype(precision or actual.dtype)
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(actual[~finite], expected[~finite], err_msg=f"{what}: non-finite values differ")
    a, e = actual[finite].astype(np.float64), expected[finite].astype(np.float64)
    scale = np.broadcast_to(np.asarray(scale, np.float64), expected.shape)[finite]
    atol = ATOL[dtype] + 16 * terms * np.finfo(dtype).eps * scale
    bad = ~(np.abs(a - e) <= atol + RTOL[dtype] * np.abs(e))
    if bad.any():
        worst = np.argmax(np.where(bad, np.abs(a - e) - atol - RTOL[dtype] * np.abs(e), -np.inf))
        raise AssertionError(
            f"{what}: {bad.sum()} of {bad.size} elements differ from torch's; worst: {a[worst]!r} against "
            f"{e[worst]!r} (allowed {atol[worst] + RTOL[dtype] * abs(e[worst]):.3g})\nopreg: {actual!r}\n"
            f"torch: {expected!r}"
        )


def check_against_torch(name: str, inputs: list[np.ndarray], attributes: dict, g: np.ndarray) -> None:
    """Forward and backward through the tape engine and through Tensors, each against torch."""
    originals = [x.copy() for x in inputs]
    ref_out, ref_grads = run_torch(name, inputs, attributes, g)
    scales = error_scales(name, inputs, g)
    terms = max(1, g.size, *(x.size for x in inputs))
    precision = min((x.dtype for x in inputs), key=lambda d: d.itemsize)
    results = {}
    for front_end, run in [("tape engine", run_engine), ("Tensors", run_tensors)]:
        with warnings.catch_warnings(), np.errstate(all="ignore"):  # a mean of nothing is nan, as torch's
            warnings.simplefilter("ignore", RuntimeWarning)
            out, grads = run(name, inputs, attributes, g)
        assert_close(out, ref_out, scales[0], terms, f"{name} forward ({front_end})", precision)
        for position, (grad, ref) in enumerate(zip(grads, ref_grads, strict=True)):
            if ref is not None:
                what = f"{name} gradient {position} ({front_end})"
                assert_close(grad, ref, scales[1 + position], terms, what, precision)
        results[front_end] = grads
        if front_end == "Tensors":  # each .grad an array of its own (the tape engine's may not be: see test_bug_*)
            own = [grad for grad in grads if grad is not None]
            for i, grad in enumerate(own):
                others = [g, *inputs, *own[:i], *own[i + 1 :]]
                assert not any(np.shares_memory(grad, other) for other in others), f"{name}: .grad aliases"
        for x, original in zip(inputs, originals, strict=True):
            np.testing.assert_array_equal(x, original, strict=True, err_msg=f"{name} modified an input")
    for engine_grad, tensor_grad in zip(results["tape engine"], results["Tensors"], strict=True):
        if engine_grad is not None:  # one code path (opreg.calls) computes both: bit for bit the same
            np.testing.assert_array_equal(engine_grad, tensor_grad, strict=True)


# --- the properties ---------------------------------------------------------------------------------------------------


def test_builtin_ops_are_found():
    """The parametrization over the registry is not vacuous."""
    assert len(BUILTIN_OPS) >= 17, BUILTIN_OPS


def test_no_stale_entries():
    """Every entry of CASES and TORCH_OPS names a registered built-in op (a renamed op leaves a dead entry)."""
    assert sorted((set(CASES) | set(TORCH_OPS)) - set(BUILTIN_OPS)) == []


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", BUILTIN_OPS)
@SETTINGS
@given(data=st.data())
def test_op_matches_torch(name, dtype, data):
    """Forward and backward of every built-in op on drawn inputs, through the tape engine and Tensors, equal
    torch's: values, shapes and dtypes; inputs unchanged; both front ends bit for bit the same."""
    inputs, attributes = data.draw(case_strategy(name, dtype), label="inputs, attributes")
    ref_out, _ = run_torch(name, inputs, attributes, None)
    g = data.draw(arrays(dtype, ref_out.shape, floats(-2.0, 2.0)), label="g")
    check_against_torch(name, inputs, attributes, g)


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "pow", "matmul"])
@SETTINGS
@given(data=st.data())
def test_binary_op_with_mixed_dtypes_matches_torch(name, data):
    """One operand float32, the other float64: the arithmetic and the output are float64 (as in NumPy and torch),
    and each gradient comes back in its own input's dtype, equal to torch's at float32 tolerances."""
    inputs, attributes = data.draw(case_strategy(name, np.float64), label="inputs, attributes")
    narrow = data.draw(st.integers(0, 1), label="float32 input")
    inputs[narrow] = inputs[narrow].astype(np.float32)
    ref_out, _ = run_torch(name, inputs, attributes, None)
    assert ref_out.dtype == np.float64
    g = data.draw(arrays(np.float64, ref_out.shape, floats(-2.0, 2.0)), label="g")
    check_against_torch(name, inputs, attributes, g)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@SETTINGS
@given(data=st.data())
def test_relu_subgradient_at_zero_is_zero(dtype, data):
    """relu's gradient is g where x > 0 and exactly 0 elsewhere, at 0.0 and at -0.0 too (torch's choice), through
    both front ends; the forward output is never negative."""
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=4, max_side=4))
    x = data.draw(arrays(dtype, shape, with_zeros(floats(-3.0, 3.0))), label="x")
    x.flat[0] = data.draw(st.sampled_from([0.0, -0.0]), label="x[0]")  # at least one zero
    g = data.draw(arrays(dtype, shape, floats(-2.0, 2.0)), label="g")
    g = np.where(g == 0, dtype(1.0), g)  # a zero g would hide a wrong subgradient
    for front_end, run in [("tape engine", run_engine), ("Tensors", run_tensors)]:
        out, (grad,) = run("relu", [x], {}, g)
        assert not (out < 0).any(), f"{front_end}: relu gave a negative value"
        np.testing.assert_array_equal(grad, np.where(x > 0, g, dtype(0.0)), strict=True, err_msg=front_end)
        assert (grad[x == 0] == 0).all(), f"{front_end}: relu's gradient at 0 is not 0"
    _, (ref,) = run_torch("relu", [x], {}, g)
    np.testing.assert_array_equal(grad, ref, strict=True, err_msg="torch")


# --- opreg bugs the properties found, fixed -----------------------------------------------------------------------


def test_tape_engine_gradients_alias_neither_each_other_nor_the_seed():
    """add's backward returns grad_output itself for both inputs, and the tape engine stores it as it is, so
    ``get_param(a) is get_param(b) is g``: scaling one gradient in place (clipping) changes the other parameter's
    gradient and the caller's seed. Tensors copy a leaf's gradient (tests/test_tensor.py checks they do not alias);
    the tape engine should too. sub (input a) and transpose (a view of g) alias the seed the same way.

    Repro: a, b, g = np.ones(3), np.ones(3), np.full(3, 2.0); e = opreg.Autograd(); e.apply("add", a, b);
    e.backward(g); e.gradient_buffer.get_param(a)[:] = 0  ->  get_param(b) and g are all zeros.
    """
    a, b, g = np.ones(3), np.ones(3), np.full(3, 2.0)
    engine = opreg.Autograd()
    engine.apply("add", a, b)
    engine.backward(g)
    engine.gradient_buffer.get_param(a)[:] = 0.0
    np.testing.assert_array_equal(engine.gradient_buffer.get_param(b), [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(g, [2.0, 2.0, 2.0])


@pytest.mark.parametrize(
    ("dtype", "a", "b"),
    [(np.float32, 1e-30, 1e-23), (np.float32, 1e37, 1e20), (np.float64, 1e-300, 1e-170)],
    ids=["f32-underflow", "f32-overflow", "f64-underflow"],
)
def test_div_gradient_of_the_divisor_does_not_overflow(dtype, a, b):
    """div's backward computes d/db as ``-g * a / (b * b)``: ``b * b`` underflows to 0 (or overflows to inf)
    although the gradient ``-a / b**2`` is a normal float, which torch's ``-g * (a / b) / b`` gets. float32:
    a=1e-30, b=1e-23 gives -inf (torch: -1e16); a=1e37, b=1e20 gives -0.0 (torch: -1e-3).

    Repro: e = opreg.Autograd(); a = np.array([1e-30], np.float32); b = np.array([1e-23], np.float32);
    e.apply("div", a, b); e.backward(np.ones(1, np.float32)); e.gradient_buffer.get_param(b)  ->  [-inf]
    """
    inputs = [np.array([a], dtype), np.array([b], dtype)]
    g = np.ones(1, dtype)
    with np.errstate(all="ignore"):
        _, (_, grad_b) = run_engine("div", inputs, {}, g)
    _, (_, ref) = run_torch("div", inputs, {}, g)
    assert np.isfinite(ref).all()
    assert_close(grad_b, ref, 0.0, 1, "div gradient of b")
