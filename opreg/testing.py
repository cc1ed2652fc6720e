"""Property-test an op against a reference: hypothesis strategies for its inputs, and one check of both front ends.

An op's derivative is easiest to get wrong where examples rarely look: 0-d and empty arrays, broadcast operands,
float32, axes counted from the end, values at the edge of the op's domain. The surest check there is another
library computing the same function on inputs hypothesis draws. This module holds the op-independent half of such
a test, so that opreg's built-in ops, contrib_ops and any plugin's tests share one driver instead of copies:

- element, shape and case strategies: floats of a dtype in a range (exact bounds for float32 too), shapes from 0-d
  to 4-D (now and then with empty axes), mutually broadcastable pairs, ``axis`` in every spelling NumPy accepts,
  and case strategies (``unary``, ``binary``, ``same_shape``, ``reduction``) drawing an op's inputs and attributes;
- :func:`check_case`: one case through the tape engine and through Tensors, compared with the reference's output
  and gradients, given as arrays: values, shapes and dtypes, within error bounds rather than fudge factors; inputs
  left unchanged, both front ends bit for bit the same, each Tensor ``.grad`` an array of its own;
- :func:`run_torch`: such a reference from a PyTorch function and torch's autograd;
- :func:`run_numpy` and :func:`check_against_numpy`: the same from a plain NumPy function, its gradients by finite
  differences in float64 (what ``opreg new-op``'s generated test uses: no torch needed).

opreg itself never imports this module. hypothesis (the ``test`` extra) is needed when it is imported, and torch
only when :func:`run_torch` is called (:func:`optional_torch` tells whether it is there): neither becomes a
dependency of opreg.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np

import opreg
from opreg.contract import aliased
from opreg.tensor import Tensor

try:
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError as error:  # pragma: no cover - the test extra is missing
    raise ImportError("opreg.testing needs hypothesis: pip install 'opreg[test]'") from error

if TYPE_CHECKING:  # for the type checker alone: typeguard would find a draw function lacks DrawFn's __signature__
    from hypothesis.strategies import DrawFn

__all__ = [
    "ATOL",
    "RTOL",
    "Case",
    "CaseStrategy",
    "Elements",
    "Result",
    "arrays",
    "assert_close",
    "away_from_zero",
    "axes",
    "binary",
    "broadcastable_shapes",
    "check_against_numpy",
    "check_case",
    "error_scales",
    "floats",
    "min_sides",
    "reduction",
    "run_engine",
    "run_tensors",
    "run_torch",
    "same_shape",
    "shapes",
    "unary",
    "with_zeros",
]

#: A drawn case: the op's inputs and its attributes.
Case = tuple[list[np.ndarray], dict[str, Any]]
#: An op's case strategy: a scalar type (``np.float32``, ``np.float64``) -> a strategy of cases of that dtype.
CaseStrategy = Callable[[type[np.generic]], st.SearchStrategy[Case]]
#: An element strategy factory: a scalar type -> a strategy of elements that are exact in that type.
Elements = Callable[[type[np.generic]], st.SearchStrategy[Any]]
#: What a reference returns: the output, and each input's gradient (None for one that gets none).
Result = tuple[np.ndarray, list[np.ndarray | None]]

#: Per dtype: the relative tolerance, and the absolute floor below which values count as equal.
RTOL: dict[np.dtype, float] = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-10}
ATOL: dict[np.dtype, float] = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}


# --- elements --------------------------------------------------------------------------------------------------------


#: The environment variable that scales every property test's example count (a fraction; 1 when unset).
EXAMPLES_VAR = "OPREG_EXAMPLES"


def examples(count: int) -> int:
    """``count`` hypothesis examples scaled by ``OPREG_EXAMPLES`` (at least 1). A suite run again under another mode
    (checking mode, typeguard: .ci/run) is there to run every test's code under that mode, not to search further
    for inputs, so it draws fewer."""
    return max(1, round(count * float(os.environ.get(EXAMPLES_VAR, "1"))))


def _bound(value: float, dtype: type[np.floating[Any]], inward: float) -> float:
    """``value`` as the nearest float of ``dtype`` on the side of ``inward``: hypothesis wants bounds that are exact
    in the width it draws, and 0.1 is not a float32."""
    rounded = dtype(value)
    if (rounded - value) * (inward - value) < 0:
        rounded = np.nextafter(rounded, dtype(inward))
    return float(rounded)


def floats(lo: float, hi: float) -> Elements:
    """Finite floats of the dtype in [lo, hi]; hypothesis favours the ends, which is where domains break."""

    def elements(dtype: type[np.generic]) -> st.SearchStrategy[float]:
        floating = cast("type[np.floating[Any]]", dtype)  # Elements take any scalar type; these, float ones only
        width = cast("Literal[16, 32, 64]", np.finfo(floating).bits)  # the widths of NumPy's float types
        return st.floats(_bound(lo, floating, hi), _bound(hi, floating, lo), width=width)

    return elements


def away_from_zero(smallest: float, largest: float) -> Elements:
    """Either sign, magnitude in [smallest, largest]: a divisor near 0 but never 0."""
    positive, negative = floats(smallest, largest), floats(-largest, -smallest)
    return lambda dtype: st.one_of(positive(dtype), negative(dtype))


def with_zeros(inner: Elements) -> Elements:
    """``inner``, plus exactly 0.0 and -0.0 often: the kink of relu, abs and the like, where a subgradient is
    chosen and two libraries can choose differently."""
    return lambda dtype: st.one_of(st.sampled_from([0.0, -0.0]), inner(dtype))


def arrays(dtype: type[np.generic], shape: tuple[int, ...], elements: Elements) -> st.SearchStrategy[np.ndarray]:
    """Arrays of ``dtype`` and ``shape`` whose elements ``elements(dtype)`` draws."""
    return hnp.arrays(np.dtype(dtype), shape, elements=elements(dtype))


# --- shapes and axes -------------------------------------------------------------------------------------------------


@st.composite
def min_sides(draw: DrawFn, allow_empty: bool = True) -> int:
    """1 mostly; 0 (empty axes allowed) about one time in six, since most bugs do not need an empty array."""
    return 0 if allow_empty and draw(st.integers(0, 5)) == 5 else 1


@st.composite
def shapes(draw: DrawFn, min_dims: int = 0, max_dims: int = 4, allow_empty: bool = True) -> tuple[int, ...]:
    """Shapes of ``min_dims`` to ``max_dims`` axes (0-d to 4-D by default), each axis at most 4 long."""
    low = draw(min_sides(allow_empty))
    return draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=low, max_side=4))


@st.composite
def broadcastable_shapes(draw: DrawFn, allow_empty: bool = True) -> tuple[tuple[int, ...], ...]:
    """Two mutually broadcastable shapes, 0-d to 4-D: either one broadcast against the other, or both."""
    low = draw(min_sides(allow_empty))
    return draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=4, min_side=low, max_side=4)).input_shapes


@st.composite
def axes(draw: DrawFn, ndim: int) -> int | tuple[int, ...] | None:
    """An ``axis`` attribute for an ``ndim``-D input in every spelling NumPy accepts: None, an int of either sign,
    or a tuple of distinct axes in any order, each of either sign (maybe empty: reduce nothing)."""
    kind = draw(st.sampled_from(["none", "tuple", "int"] if ndim else ["none", "tuple"]))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    if ndim == 0:
        return ()
    chosen = draw(st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim))
    return tuple(a - ndim if draw(st.booleans()) else a for a in chosen)


# --- cases: an op's inputs and attributes ----------------------------------------------------------------------------


def _attributes(draw: DrawFn, strategies: Mapping[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    return {name: draw(strategy, label=name) for name, strategy in strategies.items()}


def unary(
    elements: Elements, min_dims: int = 0, allow_empty: bool = True, **attributes: st.SearchStrategy[Any]
) -> CaseStrategy:
    """One input of any shape (at least ``min_dims`` axes); each keyword is an attribute and its strategy."""

    @st.composite
    def case(draw: DrawFn, dtype: type[np.generic]) -> Case:
        shape = draw(shapes(min_dims=min_dims, allow_empty=allow_empty))
        return [draw(arrays(dtype, shape, elements))], _attributes(draw, attributes)

    return case


def binary(first: Elements, second: Elements, **attributes: st.SearchStrategy[Any]) -> CaseStrategy:
    """Two inputs of any mutually broadcastable shapes (0-d to 4-D, either one broadcast, or both)."""

    @st.composite
    def case(draw: DrawFn, dtype: type[np.generic]) -> Case:
        a_shape, b_shape = draw(broadcastable_shapes())
        a, b = draw(arrays(dtype, a_shape, first)), draw(arrays(dtype, b_shape, second))
        return [a, b], _attributes(draw, attributes)

    return case


def same_shape(first: Elements, second: Elements, **attributes: st.SearchStrategy[Any]) -> CaseStrategy:
    """Two inputs of one shape: what losses accept (they refuse to broadcast, as torch's do)."""

    @st.composite
    def case(draw: DrawFn, dtype: type[np.generic]) -> Case:
        shape = draw(shapes())
        a, b = draw(arrays(dtype, shape, first)), draw(arrays(dtype, shape, second))
        return [a, b], _attributes(draw, attributes)

    return case


def reduction(elements: Elements, allow_empty: bool = True) -> CaseStrategy:
    """One input, and the attributes ``axis`` (every spelling, see :func:`axes`) and ``keepdims``.

    ``allow_empty=False`` for a reduction without an identity (max): over an empty axis it has no value."""

    @st.composite
    def case(draw: DrawFn, dtype: type[np.generic]) -> Case:
        x = draw(arrays(dtype, draw(shapes(allow_empty=allow_empty)), elements))
        return [x], {"axis": draw(axes(x.ndim), label="axis"), "keepdims": draw(st.booleans(), label="keepdims")}

    return case


# --- running one case ------------------------------------------------------------------------------------------------


def run_engine(name: str, inputs: Sequence[np.ndarray], attributes: Mapping[str, Any], g: np.ndarray) -> Result:
    """Forward and backward through a fresh tape engine: the output and each input's gradient (None for an input
    the op declares non-differentiable, which the engine must not even track)."""
    engine = opreg.Autograd()
    out = engine.apply(name, *inputs, **attributes)
    engine.backward(g)
    buffer = engine.gradient_buffer
    grads: list[np.ndarray | None] = []
    for x, differentiable in zip(inputs, opreg.get_registry()[name].differentiable_for(len(inputs)), strict=True):
        if differentiable:
            grads.append(buffer.get_param(x))
        else:
            assert not buffer.is_in_memory(x), f"{name}: the engine tracks a non-differentiable input"
            grads.append(None)
    return out, grads


def run_tensors(name: str, inputs: Sequence[np.ndarray], attributes: Mapping[str, Any], g: np.ndarray) -> Result:
    """The same through Tensors, every floating-point input requiring grad: a non-differentiable one (labels) must
    get none. An input of another dtype (a boolean mask) cannot require grad, and is a constant."""
    tensors = [Tensor(x, requires_grad=x.dtype.kind == "f") for x in inputs]
    out = getattr(opreg.ops, name)(*tensors, **attributes)
    assert isinstance(out, Tensor) and out.requires_grad and not out.is_leaf
    out.backward(g)
    for t, differentiable in zip(tensors, opreg.get_registry()[name].differentiable_for(len(tensors)), strict=True):
        assert differentiable or t.grad is None, f"{name}: a non-differentiable input got a gradient"
    return out.data, [t.grad for t in tensors]


def run_torch(
    function: Callable[..., Any],
    inputs: Sequence[np.ndarray],
    attributes: Mapping[str, Any],
    g: np.ndarray | None,
    differentiable: Sequence[bool],
) -> tuple[np.ndarray, list[np.ndarray | None] | None]:
    """``function(*tensors, **attributes)`` by torch: its output, and with ``g`` torch autograd's gradient of each
    differentiable input (None for the others; no gradients at all without ``g``). Inputs are copied, so torch
    never sees the arrays opreg is given.

    Inputs of mixed dtypes are first cast, inside torch's graph, to the dtype NumPy promotes them to: torch's own
    rule differs for 0-d tensors (0-d float64 + float32 is float32 there), and some torch ops refuse mixed dtypes.
    """
    import torch  # only here: torch is the tests' reference, never a dependency of opreg

    tensors = [torch.tensor(x.copy(), requires_grad=d) for x, d in zip(inputs, differentiable, strict=True)]
    common = getattr(torch, np.result_type(*inputs).name)
    out = function(*(t.to(common) for t in tensors), **attributes)
    if g is None:
        return out.detach().numpy(), None
    if not any(differentiable):  # dropout_mask: nothing to differentiate (torch would refuse a backward)
        return out.detach().numpy(), [None] * len(tensors)
    out.backward(torch.tensor(g.copy()))
    return out.detach().numpy(), [t.grad.numpy() if d else None for t, d in zip(tensors, differentiable, strict=True)]


def optional_torch() -> Any:
    """The torch module, or ``None`` when it is not installed: a test module's comparisons with torch then skip
    one by one (a ``skipif`` on ``torch is None``), and its tests that do not need torch still run, where
    ``pytest.importorskip`` would skip the whole module."""
    try:
        import torch
    except ImportError:
        return None
    # The tests' tensors are tiny: waking torch's thread pool costs far more than the work. On this 2-core machine,
    # busy, a 2x2x5x5 conv2d took 31 ms on 2 threads and 8 us on one.
    torch.set_num_threads(1)
    return torch


# --- comparing -------------------------------------------------------------------------------------------------------


def error_scales(inputs: Sequence[np.ndarray], g: np.ndarray) -> list[float]:
    """The magnitude of the terms a result sums, for the forward output then each input's gradient, for an op
    whose output is at most a sum of products of its inputs (and its gradients, the same times ``g``).

    Pass sharper scales to :func:`check_case` where the op allows: an elementwise op's error is relative to each
    element, not to the largest one, and a bounded output (softmax) has no error of the size of its inputs."""
    big = [max(1.0, float(np.abs(x.astype(np.float64)).max(initial=0.0))) for x in inputs]
    big_g = max(1.0, float(np.abs(g.astype(np.float64)).max(initial=0.0)))
    return [math.prod(big)] + [big_g * math.prod(big)] * len(inputs)


def assert_close(
    actual: Any,
    expected: np.ndarray,
    scale: Any,
    terms: int,
    what: str,
    precision: Any = None,
    reference: str = "torch",
) -> None:
    """Same shape and dtype; infinities and NaNs where the reference has them; elsewhere within ``RTOL`` plus an
    absolute error of ``16 * terms * eps * scale`` (a sum of ``terms`` terms of size ``scale``, in two summation
    orders; ``scale`` a number or per element), in the precision of ``precision`` (default: the result's own
    dtype; float32 when any input was float32, since its gradient was computed from float32 values)."""
    assert isinstance(actual, np.ndarray), f"{what}: a {type(actual).__name__}, not an array"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, {reference}'s is {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype}, {reference}'s is {expected.dtype}"
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
            f"{what}: {bad.sum()} of {bad.size} elements differ from {reference}'s; worst: {a[worst]!r} against "
            f"{e[worst]!r} (allowed {atol[worst] + RTOL[dtype] * abs(e[worst]):.3g})\nopreg: {actual!r}\n"
            f"{reference}: {expected!r}"
        )


def check_float16(
    name: str,
    inputs: Sequence[np.ndarray],
    attributes: Mapping[str, Any],
    expected: tuple[np.ndarray, Sequence[np.ndarray | None]],
) -> None:
    """Op ``name`` on ``inputs`` (float16 arrays), backpropagating ones, through the tape engine and through
    Tensors: the output and each gradient are float16 and within two float16 roundings of ``expected`` (the output
    and gradients computed in float64 from the same values; None where there is none). For reductions and losses
    over more elements than float16 can count (65,504), where a count taken in float16 is inf."""
    rtol, atol = 2 * float(np.finfo(np.float16).eps), 2 * float(np.finfo(np.float16).smallest_subnormal)
    ref_out, ref_grads = expected
    for run in (run_engine, run_tensors):
        out, grads = run(name, inputs, attributes, np.ones(ref_out.shape, np.float16))
        assert out.dtype == np.float16, f"{name} ({run.__name__}): output {out.dtype}"
        np.testing.assert_allclose(out, ref_out, rtol, atol, err_msg=f"{name} ({run.__name__}): output")
        for position, (grad, ref) in enumerate(zip(grads, ref_grads, strict=True)):
            if ref is not None:
                what = f"{name} ({run.__name__}): gradient {position}"
                assert grad is not None and grad.dtype == np.float16, f"{what}: {grad!r}"
                np.testing.assert_allclose(grad, ref, rtol, atol, err_msg=what)


def check_case(
    name: str,
    inputs: Sequence[np.ndarray],
    attributes: Mapping[str, Any],
    g: np.ndarray,
    expected: tuple[np.ndarray, Sequence[np.ndarray | None]],
    *,
    scales: Sequence[Any] | None = None,
    terms: int | None = None,
    reference: str = "torch",
) -> None:
    """Op ``name`` on one case, backpropagating ``g``, through the tape engine and through Tensors: the output and
    each gradient must equal ``expected`` (the reference's output and gradients; None where it has none) in values,
    shapes and dtypes, within :func:`assert_close`'s bounds.

    ``scales`` are the magnitudes of the output's and each gradient's terms (default :func:`error_scales`) and
    ``terms`` how many a result sums (default: the largest size among ``g`` and the inputs). Besides, both front
    ends must leave the inputs unchanged and agree bit for bit (one code path computes both), and each Tensor
    ``.grad`` must be an array of its own, sharing memory with neither ``g``, an input nor another gradient.
    """
    ref_out, ref_grads = expected
    originals = [x.copy() for x in inputs]
    scales = error_scales(inputs, g) if scales is None else scales
    terms = max(1, g.size, *(x.size for x in inputs)) if terms is None else terms
    precision = min((x.dtype for x in inputs if x.dtype.kind == "f"), key=lambda d: d.itemsize)
    results = {}
    for front_end, run in [("tape engine", run_engine), ("Tensors", run_tensors)]:
        with warnings.catch_warnings(), np.errstate(all="ignore"):  # a mean of nothing is nan, as torch's
            warnings.simplefilter("ignore", RuntimeWarning)
            out, grads = run(name, inputs, attributes, g)
        assert_close(out, ref_out, scales[0], terms, f"{name} forward ({front_end})", precision, reference)
        for position, (grad, ref) in enumerate(zip(grads, ref_grads, strict=True)):
            if ref is not None:
                what = f"{name} gradient {position} ({front_end})"
                assert_close(grad, ref, scales[1 + position], terms, what, precision, reference)
        results[front_end] = grads
        if front_end == "Tensors":  # each .grad an array of its own, as torch's
            own = [grad for grad in grads if grad is not None]
            for i, grad in enumerate(own):
                others = [g, *inputs, *own[:i], *own[i + 1 :]]
                assert not aliased(grad, others), f"{name}: .grad aliases"
        for x, original in zip(inputs, originals, strict=True):
            np.testing.assert_array_equal(x, original, strict=True, err_msg=f"{name} modified an input")
    for engine_grad, tensor_grad in zip(results["tape engine"], results["Tensors"], strict=True):
        if engine_grad is not None:
            np.testing.assert_array_equal(engine_grad, tensor_grad, strict=True, err_msg=f"{name}: front ends differ")


# --- a plain NumPy reference -----------------------------------------------------------------------------------------


def run_numpy(
    function: Callable[..., Any],
    inputs: Sequence[np.ndarray],
    attributes: Mapping[str, Any],
    g: np.ndarray | None,
    differentiable: Sequence[bool],
    *,
    step: float = 1e-6,
) -> tuple[np.ndarray, list[np.ndarray | None] | None]:
    """``function(*inputs, **attributes)`` computed by NumPy in float64 (floating-point inputs widened), and with
    ``g`` each differentiable input's gradient, ``g``'s product with the Jacobian, by central differences in float64
    (a step of ``step`` times the element's size, at least ``step``): about 1e-10 relative, far below float32's
    tolerances and within :func:`check_against_numpy`'s. None for an input that gets no gradient. Results are
    float64; the caller casts them."""
    wide = [np.array(x, np.float64) if np.asarray(x).dtype.kind == "f" else np.asarray(x) for x in inputs]
    out = np.asarray(function(*wide, **attributes), dtype=np.float64)
    if g is None:
        return out, None
    g64 = np.asarray(g, np.float64)
    grads: list[np.ndarray | None] = []
    for position, (x, takes_gradient) in enumerate(zip(wide, differentiable, strict=True)):
        if not takes_gradient or x.dtype.kind != "f":
            grads.append(None)
            continue
        grad = np.zeros(x.shape)
        for index in np.ndindex(x.shape):
            h = step * max(1.0, abs(float(x[index])))
            plus, minus = x.copy(), x.copy()
            plus[index] += h
            minus[index] -= h
            values = []
            for shifted in (plus, minus):
                arguments = [*wide[:position], shifted, *wide[position + 1 :]]
                values.append(np.asarray(function(*arguments, **attributes), dtype=np.float64))
            grad[index] = np.sum((values[0] - values[1]) * g64) / (plus[index] - minus[index])
        grads.append(grad)
    return out, grads


def check_against_numpy(
    name: str,
    reference: Callable[..., Any],
    inputs: Sequence[np.ndarray],
    attributes: Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
) -> None:
    """Op ``name`` on one case against ``reference``, the same function in plain NumPy: through the tape engine and
    through Tensors (:func:`check_case`), the output must equal the reference's (computed in float64, in the
    dtype NumPy gives the inputs), and each gradient the reference's finite differences (:func:`run_numpy`), within
    float32's tolerances whatever the dtype, since finite differences are no closer; a divergence ``g`` of uniform
    values in [-1, 1] (from ``seed``) is backpropagated. For a test of a new op in a few lines (``opreg new-op``)."""
    attributes = dict(attributes or {})
    differentiable = opreg.get_registry()[name].differentiable_for(len(inputs))
    floating = [x for x in inputs if x.dtype.kind == "f"]
    dtype = np.result_type(*floating) if floating else np.dtype(np.float64)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        out, _ = run_numpy(reference, inputs, attributes, None, differentiable)
        g = np.random.default_rng(seed).uniform(-1.0, 1.0, out.shape).astype(dtype)
        _, grads = run_numpy(reference, inputs, attributes, g, differentiable)
    expected_out = out.astype(dtype)
    check_case(name, inputs, attributes, g, (expected_out, [None] * len(inputs)), reference="the NumPy reference")
    _, actual = run_tensors(name, inputs, attributes, g)
    scales = error_scales(inputs, g)
    terms = max(1, g.size, *(x.size for x in inputs))
    assert grads is not None
    for position, (grad, expected) in enumerate(zip(actual, grads, strict=True)):
        if expected is not None:
            what = f"{name} gradient {position} (Tensors)"
            expected = expected.astype(inputs[position].dtype)
            assert_close(grad, expected, scales[1 + position], terms, what, np.float32, "the NumPy reference")
