"""Property-based tests: every built-in op, forward and backward, through both front ends, against PyTorch.

For each built-in op (each op whose plugin is ``opreg_builtins.*``) and for float32 and float64, hypothesis draws
inputs for it. An elementwise op (``torch_reference.ELEMENTWISE``: judged on the op's own samples, its output has
the inputs' broadcast shape and follows a permutation of their elements) is drawn from its declaration alone: one
array per input, of mutually broadcastable shapes from 0-d to 4-D (sometimes with empty axes), values from the op's
``domain`` (any finite value up to 1e4 in magnitude, 0.0 and -0.0 included, where it declares none), and the
attributes of one of its samples. Adding such an op costs its ``register()`` call and nothing here. ``EDGES`` adds
values beyond the declared domain where an op must still match torch: ``log``, ``log2``, ``log10`` down to the
smallest normal float, ``sqrt`` there and at 0.0 and -0.0, ``cbrt`` of negative values, ``div``, ``reciprocal``,
``mod`` and ``fmod`` by divisors down to 2**-20 in magnitude, ``pow`` of a base down to 2**-10, ``exp`` up to where
it overflows, ties and NaN often for ``maximum``, ``minimum``, ``fmax``, ``fmin`` and ties at ``clip``'s bounds, NaN
and infinities for ``nan_to_num`` (0.0 and -0.0, abs's and sign's kink, are among every op's values). An op in
``EDGES`` or ``STRUCTURED`` gets 100 examples per dtype, any other elementwise op 40. Any other op needs an entry in
``STRUCTURED``, for inputs constrained by more than their values: matmul's shape families (1-D @ 1-D, 1-D @ N-D, N-D
@ 1-D, 2-D @ 2-D, batched with broadcast batch axes), ``linear`` on 1-D to 3-D inputs with a bias of any shape that
broadcasts to the product, ``sum``/``mean`` with every kind of axis (None, an int, a negative int, a tuple in any
order, the empty tuple) and ``keepdims``, ``where`` with a boolean or numeric mask among three broadcast shapes,
``expand_dims``/``squeeze`` with every spelling of ``axis`` (one int, tuples in any order, either sign, the empty
tuple; None for squeeze), and ``broadcast_to`` a shape with new leading axes and stretched size-1 axes (to 0
too). The shape, rearrangement and selection ops (``SHAPE_OPS``) take attributes drawn for the input's shape by
tests/shape_attributes.py, sort's and partition's values full of ties, and ``linspace`` broadcast end points;
they run 40 examples each (``test_shape_op_matches_torch``).

The same case then runs through the tape engine (``Autograd().apply`` + ``backward(g)`` +
``gradient_buffer.get_param``) and through Tensors (``opreg.ops.<name>`` + ``.backward(g)`` + ``.grad``), and
both must equal torch's forward and autograd gradients: values, shapes and dtypes; both must leave the inputs
unchanged and agree bit for bit, and each Tensor ``.grad`` must be an array of its own. That driver, and the
generic strategies, are ``opreg.testing``'s (contrib_ops's property tests use them too); the torch references
are tests/torch_reference.py's, the shape ops' attribute strategies tests/shape_attributes.py's (the graph fuzzer
draws them too). Binary ops also run with one float32 and one float64 operand. A built-in op that is neither
elementwise nor in ``STRUCTURED`` fails, as does an entry for an op that is not a built-in.

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
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import opreg
from opreg import testing
from opreg.testing import Case, CaseStrategy, Elements, arrays, away_from_zero, floats, same_shape, unary, with_zeros

from reduction_cases import CASES as REDUCTION_CASES
from shape_attributes import (
    SHAPE_OPS,
    broadcast_target,
    expand_dims_axis,
    index_for,
    shape_op_attributes,
    squeeze_axis,
    unit_axes,
)
from torch_reference import ALL_BUILTIN_OPS, BUILTIN_OPS, ELEMENTWISE, REGISTRY, TORCH_OPS, declared_domain, needs_torch

DTYPES = [np.float32, np.float64]

#: Examples per hypothesis test: 100 for the ops with a hand-written strategy (STRUCTURED) or edges (EDGES), 40 for
#: an elementwise op drawn from its declaration alone (a smooth function of each element: most ops, each cheap).
EXAMPLES = 100
SETTINGS = settings(
    max_examples=testing.examples(EXAMPLES), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
PLAIN_SETTINGS = settings(
    max_examples=testing.examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# --- strategies (the generic ones are opreg.testing's) ---------------------------------------------------------------

REAL = floats(-100.0, 100.0)
LARGE = floats(-1e4, 1e4)
DIVISOR = away_from_zero(2.0**-20, 100.0)
POSITIVE_BASE = floats(2.0**-10, 16.0)
EXPONENT = floats(-4.0, 4.0)
UNIT = floats(0.0, 1.0)


def log_domain(dtype: type) -> st.SearchStrategy[float]:
    """Positive, from the smallest normal float (where 1/x is still finite) up."""
    return floats(float(np.finfo(dtype).tiny), 1e30)(dtype)


def sqrt_domain(dtype: type) -> st.SearchStrategy[float]:
    """0.0 and -0.0 (gradient +-inf, or NaN where g is 0, as torch), then from the smallest normal float up."""
    return with_zeros(floats(float(np.finfo(dtype).tiny), 1e30))(dtype)


def ties(dtype: type) -> st.SearchStrategy[float]:
    """Half the values from a few (-0.0 ties with 0.0): maximum's, minimum's and clip's ties, often."""
    return st.one_of(st.sampled_from([-1.0, -0.0, 0.0, 1.0]), LARGE(dtype))


def with_nan(dtype: type) -> st.SearchStrategy[float]:
    """NaN often, and ties: where fmax and fmin choose the other input, and maximum propagates NaN."""
    return st.one_of(st.just(math.nan), ties(dtype))


def non_finite(dtype: type) -> st.SearchStrategy[float]:
    """NaN and the infinities often: what nan_to_num replaces (its gradient 0 there)."""
    return st.one_of(st.sampled_from([math.nan, math.inf, -math.inf]), LARGE(dtype))


def exp_domain(dtype: type) -> st.SearchStrategy[float]:
    """As large as exp stays finite (with room for a gradient of 2), as negative as it stays normal."""
    top = math.floor(math.log(float(np.finfo(dtype).max) / 2))
    return floats(-top, top)(dtype)


@st.composite
def matmul_case(draw, dtype: type) -> Case:
    """Each operand 1-D or batched matrices; the batch axes of the two broadcast against each other."""
    batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=3))
    low = draw(testing.min_sides())
    m, k, n = (draw(st.integers(low, 4)) for _ in range(3))
    a_shape = (k,) if draw(st.booleans()) else (*batch.input_shapes[0], m, k)
    b_shape = (k,) if draw(st.booleans()) else (*batch.input_shapes[1], k, n)
    return [draw(arrays(dtype, a_shape, floats(-10.0, 10.0))), draw(arrays(dtype, b_shape, floats(-10.0, 10.0)))], {}


@st.composite
def linear_case(draw, dtype: type) -> Case:
    """x 1-D to 3-D (*batch, in), weight (out, in), and a bias of any shape broadcasting to (*batch, out)."""
    batch = draw(testing.shapes(max_dims=2))
    low = draw(testing.min_sides())
    n_in, n_out = draw(st.integers(low, 4)), draw(st.integers(low, 4))
    product = (*batch, n_out)
    kept = draw(st.integers(0, len(product)))  # the bias has the product's last `kept` axes, each maybe 1
    bias_shape = tuple(n if draw(st.booleans()) else 1 for n in product[len(product) - kept :])
    x = draw(arrays(dtype, (*batch, n_in), floats(-10.0, 10.0)))
    weight = draw(arrays(dtype, (n_out, n_in), floats(-10.0, 10.0)))
    return [x, weight, draw(arrays(dtype, bias_shape, REAL))], {}


@st.composite
def softmax_cross_entropy_case(draw, dtype: type) -> Case:
    """Logits (*batch, classes), 1-D to 4-D; labels one-hot, or any non-negative rows (not summing to 1)."""
    batch = draw(testing.shapes(max_dims=3))
    classes = draw(st.integers(1, 5))
    logits = draw(arrays(dtype, (*batch, classes), REAL))
    if draw(st.booleans()):
        hot = draw(arrays(np.int64, batch, lambda _: st.integers(0, classes - 1)))
        labels = np.eye(classes, dtype=dtype)[hot]
    else:
        labels = draw(arrays(dtype, (*batch, classes), UNIT))
    return [logits, labels], {}


@st.composite
def where_case(draw, dtype: type) -> Case:
    """condition, x and y of any three mutually broadcastable shapes; the condition a boolean mask, or numbers of
    the dtype (nonzero is true; 0.0 and -0.0 are false), which must get no gradient."""
    low = draw(testing.min_sides())
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=4, min_side=low, max_side=4)).input_shapes
    if draw(st.booleans(), label="boolean condition"):
        condition = draw(hnp.arrays(np.bool_, shapes[0]), label="condition")
    else:
        condition = draw(arrays(dtype, shapes[0], with_zeros(floats(-1.0, 1.0))), label="condition")
    return [condition, draw(arrays(dtype, shapes[1], LARGE)), draw(arrays(dtype, shapes[2], LARGE))], {}


@st.composite
def expand_dims_case(draw, dtype: type) -> Case:
    """x 0-d to 3-D; ``axis`` an int or a tuple of new positions, either sign, any order, maybe none."""
    x = draw(arrays(dtype, draw(testing.shapes(max_dims=3)), REAL))
    return [x], {"axis": draw(expand_dims_axis(x.ndim), label="axis")}


@st.composite
def squeeze_case(draw, dtype: type) -> Case:
    """x 0-d to 4-D with some size-1 axes; ``axis`` None, one of them, or a tuple of them (maybe empty)."""
    x = draw(arrays(dtype, draw(unit_axes(draw(testing.shapes()))), REAL))
    return [x], {"axis": draw(squeeze_axis(x.shape), label="axis")}


@st.composite
def broadcast_to_case(draw, dtype: type) -> Case:
    """x 0-d to 3-D, broadcast to new leading axes and its size-1 axes stretched (to 0 now and then)."""
    x = draw(arrays(dtype, draw(testing.shapes(max_dims=3)), REAL))
    return [x], {"shape": draw(broadcast_target(x.shape), label="shape")}


@st.composite
def getitem_case(draw, dtype: type) -> Case:
    """x 0-d to 3-D and any index of it (shape_attributes.index_for)."""
    x = draw(arrays(dtype, draw(testing.shapes(max_dims=3)), REAL))
    return [x], {"index": draw(index_for(x.shape), label="index")}


@st.composite
def scatter_add_case(draw, dtype: type) -> Case:
    """An index of a 0-d to 3-D shape (repeats included: they accumulate) and g of the shape it selects."""
    shape = draw(testing.shapes(max_dims=3))
    index = draw(index_for(shape), label="index")
    g = draw(arrays(dtype, np.empty(shape)[index].shape, REAL))
    return [g], {"index": index, "shape": shape}


@st.composite
def setitem_case(draw, dtype: type) -> Case:
    """x, an index naming each element at most once (torch's choice among repeated writes is unspecified;
    test_protocols.py checks repeats), and v of the selected shape or a suffix of it that broadcasts."""
    x = draw(arrays(dtype, draw(testing.shapes(max_dims=3)), REAL))
    index = draw(index_for(x.shape), label="index")
    positions = np.arange(x.size).reshape(x.shape)[index]
    assume(np.unique(positions).size == positions.size)
    target = positions.shape
    kept = draw(st.integers(0, len(target)))
    v_shape = tuple(n if draw(st.booleans()) else 1 for n in target[len(target) - kept :])
    return [x, draw(arrays(dtype, v_shape, REAL))], {"index": index}


@st.composite
def take_case(draw, dtype: type) -> Case:
    """a 1-D to 3-D (no empty axis), indices of 0 to 2 dimensions (repeats, negative ones; out of range under
    mode wrap and clip), along one axis of either sign or of the flattened array."""
    a = draw(arrays(dtype, draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)), REAL))
    axis = draw(st.none() | st.integers(-a.ndim, a.ndim - 1), label="axis")
    n = a.size if axis is None else a.shape[axis]
    mode = draw(st.sampled_from(["raise", "wrap", "clip"]), label="mode")
    spread = n if mode == "raise" else 2 * n + 1
    values = st.integers(-spread, spread - 1) if mode != "raise" else st.integers(-n, n - 1)
    indices = draw(hnp.arrays(np.intp, draw(hnp.array_shapes(min_dims=0, max_dims=2, max_side=3)), elements=values))
    return [a], {"indices": indices, "axis": axis, "mode": mode}


@st.composite
def take_along_axis_case(draw, dtype: type) -> Case:
    """arr 1-D to 3-D (no empty axis), and indices of its rank (each other axis 1 or arr's) along one axis, or
    1-D into the flattened array; repeats and negative indices included."""
    arr = draw(arrays(dtype, draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)), REAL))
    axis = draw(st.none() | st.integers(-arr.ndim, arr.ndim - 1), label="axis")
    if axis is None:
        shape: tuple[int, ...] = (draw(st.integers(0, 5)),)
        n = arr.size
    else:
        n = arr.shape[axis]
        shape = tuple(
            draw(st.integers(1, 3)) if d == axis % arr.ndim else draw(st.sampled_from([1, side]))
            for d, side in enumerate(arr.shape)
        )
    indices = draw(hnp.arrays(np.intp, shape, elements=st.integers(-n, n - 1)))
    return [arr], {"indices": indices, "axis": axis}


def joining_case(kind: str) -> CaseStrategy:
    """1 to 3 arrays (of 0 elements now and then) that ``kind`` joins: of one shape but along the axis joined
    (stack: one shape), 1-D to 3-D (at least as many as the kind's own), and for concatenate and stack any axis
    of either sign (concatenate: None too)."""

    @st.composite
    def case(draw, dtype: type) -> Case:
        low = draw(testing.min_sides())
        least = {"vstack": 2, "column_stack": 2, "dstack": 3}.get(kind, 1)
        ndim = draw(st.integers(least, 3))
        shape = [draw(st.integers(low, 3)) for _ in range(ndim)]
        count = draw(st.integers(1, 3))
        attributes: dict[str, Any] = {}
        if kind in ("concatenate", "stack"):
            span = ndim + (kind == "stack")
            axis = draw(st.one_of(st.integers(-span, span - 1), st.none() if kind == "concatenate" else st.nothing()))
            attributes["axis"] = axis
            along = None if kind == "stack" or axis is None else axis % ndim
        else:
            along = {"hstack": 0 if ndim == 1 else 1, "vstack": 0, "column_stack": 1, "dstack": 2}[kind]
        shapes = []
        for _ in range(count):
            each = list(shape)
            if along is not None:
                each[along] = draw(st.integers(low, 3))
            elif kind == "concatenate":  # axis None: any shapes
                each = [draw(st.integers(low, 3)) for _ in range(draw(st.integers(0, 2)))]
            shapes.append(tuple(each))
        return [draw(arrays(dtype, shape, REAL)) for shape in shapes], attributes

    return case


#: The dimensions each shape op's input may have (0-d to 4-D where not listed): the ops of plugins/shapes.py,
#: rearrange.py, selection.py and differences.py, whose attributes tests/shape_attributes.py draws for the shape.
SHAPE_OP_DIMS = {
    "fliplr": (2, 4),
    "rot90": (2, 4),
    "diagonal": (2, 4),
    "trace": (2, 4),
    "tril": (2, 4),
    "triu": (2, 4),
    "diag": (1, 2),
    "swapaxes": (1, 4),
    "moveaxis": (1, 4),
    "rollaxis": (1, 4),
    "flipud": (1, 4),
    "scatter_along": (1, 4),
    "sort": (1, 4),
    "partition": (1, 4),
    "diff": (1, 4),
    "gradient": (1, 4),
}

#: sort's and partition's values: ties (0.0 beside -0.0 too) are common, so that the gradient's choice among tied
#: elements (the stable sort's order) is compared with torch's stable sort.
TIED = lambda dtype: st.one_of(REAL(dtype), st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5]))  # noqa: E731


def shape_op_case(name: str) -> CaseStrategy:
    """x of the dimensions the op takes (``SHAPE_OP_DIMS``), empty axes included, and attributes drawn for its
    shape by ``shape_attributes.shape_op_attributes``."""
    low, high = SHAPE_OP_DIMS.get(name, (0, 4))
    elements = TIED if name in ("sort", "partition") else REAL

    @st.composite
    def case(draw, dtype: type) -> Case:
        shape = draw(testing.shapes(min_dims=low, max_dims=high))
        attributes = draw(shape_op_attributes(name, shape), label="attributes")
        assume(attributes is not None)
        return [draw(arrays(dtype, shape, elements), label="x")], attributes

    return case


@st.composite
def append_case(draw, dtype: type) -> Case:
    """arr and values of any shapes (axis None, flattened), or of one shape but along an axis of either sign."""
    low = draw(testing.min_sides())
    ndim = draw(st.integers(1, 3))
    shape = [draw(st.integers(low, 3)) for _ in range(ndim)]
    axis = draw(st.one_of(st.none(), st.integers(-ndim, ndim - 1)))
    other = list(shape)
    if axis is None:
        other = [draw(st.integers(low, 3)) for _ in range(draw(st.integers(0, 2)))]
    else:
        other[axis] = draw(st.integers(low, 3))
    attributes = {} if axis is None else {"axis": axis}
    return [draw(arrays(dtype, tuple(shape), REAL)), draw(arrays(dtype, tuple(other), REAL))], attributes


@st.composite
def slice_along_case(draw, dtype: type) -> Case:
    """x 1-D to 3-D, a stretch [start, stop) along an axis of either sign (None: flattened), maybe reshaped."""
    x = draw(arrays(dtype, draw(testing.shapes(min_dims=1, max_dims=3)), REAL))
    axis = draw(st.one_of(st.none(), st.integers(-x.ndim, x.ndim - 1)))
    length = x.size if axis is None else x.shape[axis]
    start = draw(st.integers(0, length))
    stop = draw(st.integers(start, length))
    return [x], {"axis": axis, "start": start, "stop": stop}


@st.composite
def pad_along_case(draw, dtype: type) -> Case:
    """x 1-D to 3-D placed from start along an axis of either sign (None: flattened) in a larger array."""
    x = draw(arrays(dtype, draw(testing.shapes(min_dims=1, max_dims=3)), REAL))
    axis = draw(st.one_of(st.none(), st.integers(-x.ndim, x.ndim - 1)))
    start = draw(st.integers(0, 2))
    extra = start + draw(st.integers(0, 2))
    if axis is None:
        shape: tuple[int, ...] = (x.size + extra,)
    else:
        shape = tuple(n + extra if i == axis % x.ndim else n for i, n in enumerate(x.shape))
    return [x], {"axis": axis, "start": start, "shape": shape}


@st.composite
def einsum_case(draw, dtype: type) -> Case:
    """1 to 3 operands of 0 to 3 axes over a few shared letters (sometimes one repeated within an operand), the
    output any of their letters (each once), or implicit; sometimes an ellipsis over leading axes, broadcast (size
    1) in some operands."""
    letters = "ijkl"
    sizes = {c: draw(st.integers(testing.MIN_SIDE if hasattr(testing, "MIN_SIDE") else 1, 3)) for c in letters}
    count = draw(st.integers(1, 3))
    specs = ["".join(draw(st.permutations(letters)))[: draw(st.integers(0, 3))] for _ in range(count)]
    specs = [s + s[0] if s and draw(st.booleans()) else s for s in specs]  # a letter repeated: a diagonal, a trace
    batch = draw(st.sampled_from([(), (2,), (2, 3)]))
    ellipsis = bool(batch) and draw(st.booleans())
    operands = []
    for spec in specs:
        lead = tuple(draw(st.sampled_from([n, 1])) for n in batch) if ellipsis else ()
        operands.append(draw(arrays(dtype, (*lead, *(sizes[c] for c in spec)), floats(-10.0, 10.0))))
    used = sorted(set("".join(specs)))
    lhs = ",".join(("..." if ellipsis else "") + s for s in specs)
    if draw(st.booleans()):
        return operands, {"subscripts": lhs}
    output = "".join(draw(st.permutations(used)))[: draw(st.integers(0, len(used)))]
    return operands, {"subscripts": f"{lhs}->{'...' if ellipsis else ''}{output}"}


@st.composite
def select_case(draw, dtype: type) -> Case:
    """1 to 3 conditions (stacked, one shape) with as many choices and a default, each broadcasting to it."""
    shape = draw(testing.shapes(max_dims=3))
    count = draw(st.integers(1, 3))
    conditions = draw(hnp.arrays(np.bool_, (count, *shape)))

    def operand() -> np.ndarray:
        own = tuple(draw(st.sampled_from([n, 1])) for n in shape)[draw(st.integers(0, len(shape))) :]
        return draw(arrays(dtype, own, REAL))

    return [conditions, operand(), *(operand() for _ in range(count))], {}


@st.composite
def linspace_case(draw, dtype: type) -> Case:
    """start and stop of broadcastable shapes (0-d to 2-D), 0 to 5 points, with and without the endpoint, the new
    axis anywhere, either sign."""
    shapes = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=3)).input_shapes
    ndim = len(np.broadcast_shapes(*shapes)) + 1
    attributes = {
        "num": draw(st.integers(0, 5)),
        "endpoint": draw(st.booleans()),
        "axis": draw(st.integers(-ndim, ndim - 1)),
    }
    return [draw(arrays(dtype, shape, REAL)) for shape in shapes], attributes


@st.composite
def window_attributes(draw, pooling: str | None = None) -> tuple[dict[str, Any], tuple[int, int]]:
    """The attributes of a convolution's or pooling's windows, each as a pair, an int (when both are equal) or
    left out (when the default), and an image size (H, W) they fit: kernel 1-3, stride 1-2 (or, for pooling,
    sometimes the kernel, the default), dilation 1-2 (not avg_pool2d's), padding 0-2 (at most half the kernel for
    pooling, as PyTorch requires)."""
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (1, 1) if pooling == "avg" else (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    limit = (kernel[0] // 2, kernel[1] // 2) if pooling else (2, 2)
    padding = (draw(st.integers(0, limit[0])), draw(st.integers(0, limit[1])))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    if pooling and draw(st.booleans()):
        stride = kernel
    size = tuple(
        max(1, d * (k - 1) + 1 - 2 * p) + draw(st.integers(0, 3))
        for k, d, p in zip(kernel, dilation, padding, strict=True)
    )
    values = {"kernel_size": kernel, "stride": stride, "padding": padding, "dilation": dilation}
    defaults = {"stride": kernel if pooling else (1, 1), "padding": (0, 0), "dilation": (1, 1)}
    if pooling == "avg":
        del values["dilation"]
    attributes: dict[str, Any] = {}
    for name, value in values.items():
        how = draw(st.sampled_from(["pair", "int", "default"]))
        if how == "default" and defaults.get(name) == value:
            continue
        attributes[name] = value[0] if how == "int" and value[0] == value[1] else value
    return attributes, (int(size[0]), int(size[1]))


def _window_pairs(attributes: dict[str, Any], pooling: bool = False) -> list[tuple[int, int]]:
    """kernel_size, stride, padding and dilation as pairs, defaults filled in (stride: 1, or a pool's kernel)."""
    kernel = attributes["kernel_size"]
    stride = attributes.get("stride")
    values = [kernel, (kernel if pooling else 1) if stride is None else stride]
    values += [attributes.get("padding", 0), attributes.get("dilation", 1)]
    return [(v, v) if isinstance(v, int) else tuple(v) for v in values]


def _window_of_padding(size: tuple[int, int], attributes: dict[str, Any]) -> bool:
    """Whether some window reads nothing but padding (possible only when dilated)."""
    kernel, stride, padding, dilation = _window_pairs(attributes, pooling=True)
    for n, k, s, p, d in zip(size, kernel, stride, padding, dilation, strict=True):
        count = (n + 2 * p - d * (k - 1) - 1) // s + 1
        if any(all(not 0 <= i * s - p + j * d < n for j in range(k)) for i in range(count)):
            return True
    return False


def _window_count(size: tuple[int, int], attributes: dict[str, Any]) -> int:
    """How many windows (L) the attributes of unfold or fold place on an image of ``size``."""
    kernel, stride, padding, dilation = _window_pairs(attributes)
    counts = [
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, k, s, p, d in zip(size, kernel, stride, padding, dilation, strict=True)
    ]
    return counts[0] * counts[1]


@st.composite
def conv2d_case(draw, dtype: type) -> Case:
    """x (N, C, H, W) with N sometimes 0, weight (out, C / groups, kh, kw), bias (out,); groups 1 or 2, and every
    spelling of the window's attributes."""
    attributes, size = draw(window_attributes())
    groups = draw(st.integers(1, 2))
    n = draw(st.integers(draw(testing.min_sides()), 2))
    per_in, per_out = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    kernel = attributes.pop("kernel_size")  # the weight's shape
    kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
    if groups > 1:
        attributes["groups"] = groups
    x = draw(arrays(dtype, (n, per_in * groups, *size), floats(-10.0, 10.0)), label="x")
    weight = draw(arrays(dtype, (per_out * groups, per_in, *kernel), floats(-10.0, 10.0)), label="weight")
    return [x, weight, draw(arrays(dtype, (per_out * groups,), REAL), label="bias")], attributes


@st.composite
def unfold_case(draw, dtype: type) -> Case:
    """x (N, C, H, W), N sometimes 0, and every spelling of the windows' attributes."""
    attributes, size = draw(window_attributes())
    n, c = draw(st.integers(draw(testing.min_sides()), 2)), draw(st.integers(1, 2))
    return [draw(arrays(dtype, (n, c, *size), REAL), label="x")], attributes


@st.composite
def fold_case(draw, dtype: type) -> Case:
    """Columns (N, C * kh * kw, L) folded into an image of a size the windows fit."""
    attributes, size = draw(window_attributes())
    n, c = draw(st.integers(draw(testing.min_sides()), 2)), draw(st.integers(1, 2))
    kernel = attributes["kernel_size"]
    rows = c * (kernel * kernel if isinstance(kernel, int) else kernel[0] * kernel[1])
    attributes["output_size"] = size
    return [draw(arrays(dtype, (n, rows, _window_count(size, attributes)), REAL), label="x")], attributes


def pool_case(kind: str) -> CaseStrategy:
    """x (N, C, H, W) for max_pool2d (values with ties: the first maximum of a window takes its gradient, as
    PyTorch's) or avg_pool2d (with and without count_include_pad)."""

    @st.composite
    def case(draw, dtype: type) -> Case:
        attributes, size = draw(window_attributes(kind))
        # a dilated window can lie wholly in the padding: PyTorch then sends its gradient to an arbitrary element
        # (opreg to none: the output, -inf, depends on no input), so such cases are not compared
        assume(kind == "avg" or not _window_of_padding(size, attributes))
        n, c = draw(st.integers(draw(testing.min_sides()), 2)), draw(st.integers(1, 2))
        elements = floats(-3.0, 3.0) if kind == "avg" else lambda d: st.sampled_from([-1.0, 0.0, 0.5, 2.0]).map(d)
        if kind == "avg" and draw(st.booleans()):
            attributes["count_include_pad"] = False
        return [draw(arrays(dtype, (n, c, *size), elements), label="x")], attributes

    return case


#: dropout_mask's x: only its shape and dtype matter.
ANY_DROPOUT = with_zeros(LARGE)


#: op name -> its case strategy, for each op whose inputs are constrained by more than their values: matched
#: shapes, axes, a mask. Any other built-in op must be elementwise (``torch_reference.ELEMENTWISE``, judged on the
#: op's samples), and its cases are drawn from its declaration alone (:func:`elementwise_case`).
STRUCTURED: dict[str, CaseStrategy] = {
    "matmul": matmul_case,
    "linear": linear_case,
    "transpose": unary(REAL, min_dims=2),
    "sum": testing.reduction(REAL),
    "mean": testing.reduction(REAL),
    "mse": same_shape(REAL, REAL),
    "softmax_cross_entropy": softmax_cross_entropy_case,
    "where": where_case,
    "expand_dims": expand_dims_case,
    "squeeze": squeeze_case,
    "broadcast_to": broadcast_to_case,
    "getitem": getitem_case,
    "scatter_add": scatter_add_case,
    "setitem": setitem_case,
    "take": take_case,
    "take_along_axis": take_along_axis_case,
    **{kind: joining_case(kind) for kind in ("concatenate", "stack", "hstack", "vstack", "dstack", "column_stack")},
    "append": append_case,
    "slice_along": slice_along_case,
    "pad_along": pad_along_case,
    "einsum": einsum_case,
    "select": select_case,
    **REDUCTION_CASES,  # reductions, statistics, running sums and products, products, numpy.linalg
    "linspace": linspace_case,
    **{name: shape_op_case(name) for name in SHAPE_OPS},
    "conv2d": conv2d_case,
    "unfold": unfold_case,
    "fold": fold_case,
    "max_pool2d": pool_case("max"),
    "avg_pool2d": pool_case("avg"),
    # a seed: the op draws the same mask as its torch reference, which draws it from that seed as the op does
    "dropout_mask": unary(ANY_DROPOUT, p=st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]), rng=st.integers(0, 2**32 - 1)),
}

#: An elementwise op's input with neither a declared ``domain`` nor ``EDGES`` takes any finite value: these, 0.0
#: and -0.0 included.
ANY_VALUE = with_zeros(LARGE)

#: Values where an elementwise op must match torch besides its declared ``domain`` (what the op is sure to be
#: accurate on, and what its samples use): the edges of where it is defined. Optional: an input is drawn from its
#: domain and these edges, from either alone if it has only one, else from ``ANY_VALUE``.
EDGES: dict[str, dict[str, Elements]] = {
    "log": {"x": log_domain},
    "log2": {"x": log_domain},
    "log10": {"x": log_domain},
    "sqrt": {"x": sqrt_domain},
    "cbrt": {"x": away_from_zero(2.0**-20, 1e4)},  # negative too (its domain, for torch's |x|^(1/3), is > 0)
    "exp": {"x": exp_domain},
    "div": {"b": DIVISOR},
    "reciprocal": {"x": DIVISOR},
    "mod": {"b": DIVISOR},
    "fmod": {"b": DIVISOR},
    "pow": {"base": POSITIVE_BASE, "exponent": EXPONENT},
    "maximum": {"a": with_nan, "b": with_nan},
    "minimum": {"a": with_nan, "b": with_nan},
    "fmax": {"a": with_nan, "b": with_nan},
    "fmin": {"a": with_nan, "b": with_nan},
    "clip": {"x": ties, "a_min": ties, "a_max": ties},
    "nan_to_num": {"x": non_finite},
}


def elements_for(name: str, input_name: str) -> Elements:
    """The values an elementwise op's input is drawn from: its declared domain and its ``EDGES``."""
    domain = declared_domain(name, input_name)
    edges = EDGES.get(name, {}).get(input_name)
    if domain is None:
        return ANY_VALUE if edges is None else edges
    inside = floats(*domain)
    if edges is None:
        return inside
    return lambda dtype: st.one_of(inside(dtype), edges(dtype))


def elementwise_case(name: str) -> CaseStrategy:
    """An elementwise op's case, from its declaration: one array per input, of mutually broadcastable shapes (0-d
    to 4-D, either broadcast against the other, sometimes with empty axes), values from :func:`elements_for`,
    and the attribute values of one of the op's own samples."""
    op = REGISTRY[name]
    settings = [dict(sample.attributes) for sample in op.samples(np.random.default_rng(0))]

    @st.composite
    def case(draw, dtype: type) -> Case:
        low = draw(testing.min_sides())
        shapes = draw(
            hnp.mutually_broadcastable_shapes(num_shapes=len(op.inputs), max_dims=4, min_side=low, max_side=4)
        ).input_shapes
        inputs = [
            draw(arrays(dtype, shape, elements_for(name, input_name)), label=input_name)
            for shape, input_name in zip(shapes, op.inputs, strict=True)
        ]
        return inputs, draw(st.sampled_from(settings), label="attributes")

    return case


def case_strategy(name: str, dtype: type) -> st.SearchStrategy[Case]:
    if name not in TORCH_OPS:
        pytest.fail(f"built-in op {name!r} has no PyTorch reference; declare reference= in its register() call")
    if name in STRUCTURED:
        return STRUCTURED[name](dtype)
    if name in ELEMENTWISE:
        return elementwise_case(name)(dtype)
    pytest.fail(
        f"built-in op {name!r} is not elementwise on its samples, so its inputs cannot be drawn from its declaration "
        f"alone; add a case strategy for it to STRUCTURED in {__name__}"
    )


# --- running one case three ways (the tape engine and Tensors by opreg.testing) ------------------------------------

run_engine, run_tensors = testing.run_engine, testing.run_tensors


def run_torch(name: str, inputs: Sequence[np.ndarray], attributes: dict, g: np.ndarray | None):
    """torch's output, and its gradient for each differentiable input (None for the others); see
    ``opreg.testing.run_torch`` for mixed dtypes."""
    return testing.run_torch(TORCH_OPS[name], inputs, attributes, g, REGISTRY[name].differentiable_for(len(inputs)))


#: Ops computing each element from one element, rounding a few times at most: the relative tolerance alone.
#: The shape ops among them move each element to one place (no sum in forward or backward).
PER_ELEMENT = {"neg", "relu", "transpose", "exp", "log"} | {
    *["reshape", "ravel", "atleast_1d", "atleast_2d", "atleast_3d", "permute", "swapaxes", "moveaxis", "rollaxis"],
    *["flip", "fliplr", "flipud", "rot90", "roll", "sort", "partition", "diagonal", "diag", "tril", "triu"],
}


def error_bounds(name: str, inputs: Sequence[np.ndarray], g: np.ndarray) -> tuple[list[Any], int | None]:
    """``scales`` and ``terms`` for ``check_case``: the magnitude of the terms each result sums (for the forward
    output, then each input's gradient: a scalar bound, or per element where sizes vary wildly) and how many terms
    a result sums (None: check_case's default, the largest array's size).

    Elementwise ops get per-element bounds, so that a large input elsewhere in the array does not loosen the check
    of a small one. sigmoid and tanh: a value within rounding of torch's, a gradient ``g * (1 - y*y)`` within
    rounding of ``g`` (1 - y*y cancels where y is near 1, in torch as here).
    """
    if name in PER_ELEMENT:
        return [0.0] * (1 + len(inputs)), 1
    if name in ("sigmoid", "tanh"):
        return [0.0, np.abs(g.astype(np.float64))], 1
    wide = [np.abs(x.astype(np.float64)) for x in inputs]
    if name == "div":
        a, b = wide
        gg = np.abs(g.astype(np.float64))
        return [0.0, _summed(gg / b, a.shape), _summed(gg * a / (b * b), b.shape)], None
    if name == "pow":
        base, exponent = wide
        gg = np.abs(g.astype(np.float64))
        out = np.power(base, inputs[1].astype(np.float64))
        d_base = gg * exponent * np.power(base, inputs[1].astype(np.float64) - 1)
        d_exponent = gg * out * np.abs(np.log(base))
        return [0.0, _summed(d_base, base.shape), _summed(d_exponent, exponent.shape)], None
    return testing.error_scales(inputs, g), None


def _summed(terms: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``terms`` (of the broadcast shape) summed onto an input of ``shape``."""
    extra = terms.ndim - len(shape)
    terms = terms.sum(axis=tuple(range(extra))) if extra else terms
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and terms.shape[i] != 1)
    return terms.sum(axis=stretched, keepdims=True) if stretched else terms


def check_against_torch(name: str, inputs: list[np.ndarray], attributes: dict, g: np.ndarray) -> None:
    """Forward and backward through the tape engine and through Tensors, each against torch."""
    scales, terms = error_bounds(name, inputs, g)
    testing.check_case(name, inputs, attributes, g, run_torch(name, inputs, attributes, g), scales=scales, terms=terms)


# --- the properties ---------------------------------------------------------------------------------------------------


def test_builtin_ops_are_found():
    """The parametrization over the registry is not vacuous."""
    assert len(BUILTIN_OPS) >= 17, BUILTIN_OPS


@needs_torch
def test_no_stale_entries():
    """Every entry of STRUCTURED, EDGES and TORCH_OPS names a registered built-in op (a renamed op leaves a dead
    entry); EDGES only elementwise ops drawn from their declaration (STRUCTURED ones never read it), and only
    their inputs."""
    assert sorted((set(STRUCTURED) | set(EDGES) | set(TORCH_OPS)) - set(ALL_BUILTIN_OPS)) == []
    for name, edges in EDGES.items():
        assert name in ELEMENTWISE and name not in STRUCTURED, f"EDGES[{name!r}] is never used"
        assert set(edges) <= set(REGISTRY[name].inputs), f"EDGES[{name!r}] names inputs op {name!r} lacks"


def test_every_builtin_op_has_a_case():
    """Each built-in op is drawn by a hand-written strategy or, being elementwise, from its declaration: a new op
    that is neither fails here, not only inside hypothesis. Where is in STRUCTURED although elementwise: its
    condition is a mask, not values of a domain."""
    missing = [name for name in BUILTIN_OPS if name not in STRUCTURED and name not in ELEMENTWISE]
    assert missing == [], f"not elementwise and no case strategy in STRUCTURED: {missing}"
    assert {"add", "exp", "relu", "pow"} <= ELEMENTWISE and not {"sum", "squeeze", "matmul"} & ELEMENTWISE


def test_declared_domains_name_inputs():
    """A ``domain`` is an interval ``(low, high)`` with low < high, or a mapping from some of the op's input names
    to one: a misspelt input name would leave that input drawn from every finite value."""
    for name in BUILTIN_OPS:
        domain = REGISTRY[name].domain
        if domain is None:
            continue
        intervals = (
            domain if isinstance(domain, Mapping) else {input_name: domain for input_name in REGISTRY[name].inputs}
        )
        assert set(intervals) <= set(REGISTRY[name].inputs), f"{name}: domain names {sorted(intervals)}"
        for low, high in intervals.values():
            assert low < high, f"{name}: empty domain {domain}"


#: The elementwise ops drawn from their declaration alone (no STRUCTURED strategy, no EDGES): PLAIN_SETTINGS.
PLAIN = sorted(name for name in BUILTIN_OPS if name in ELEMENTWISE and name not in STRUCTURED and name not in EDGES)


def matches_torch(name: str, dtype: type, data: st.DataObject) -> None:
    inputs, attributes = data.draw(case_strategy(name, dtype), label="inputs, attributes")
    ref_out, _ = run_torch(name, inputs, attributes, None)
    g = data.draw(arrays(dtype, ref_out.shape, floats(-2.0, 2.0)), label="g")
    check_against_torch(name, inputs, attributes, g)


#: The ops of plugins/convolution.py and pooling.py: each case draws a whole window geometry, and every one of them
#: goes through the same ``Geometry`` code, so they take the shape ops' fewer examples.
WINDOW_OPS = ("conv2d", "unfold", "fold", "max_pool2d", "avg_pool2d")

#: The ops of plugins/shapes.py, rearrange.py, selection.py and differences.py drawn by ``shape_op_case`` (and
#: linspace, and the window ops): fewer examples each, as there are many of them and their derivatives move, copy
#: or add elements.
SHAPE_CASES = sorted({*SHAPE_OPS, "linspace", *WINDOW_OPS})
SHAPE_SETTINGS = settings(
    max_examples=testing.examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@needs_torch
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", [name for name in BUILTIN_OPS if name not in PLAIN and name not in SHAPE_CASES])
@SETTINGS
@given(data=st.data())
def test_op_matches_torch(name, dtype, data):
    """Forward and backward of every built-in op on drawn inputs, through the tape engine and Tensors, equal
    torch's: values, shapes and dtypes; inputs unchanged; both front ends bit for bit the same."""
    matches_torch(name, dtype, data)


@needs_torch
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", PLAIN)
@PLAIN_SETTINGS
@given(data=st.data())
def test_plain_elementwise_op_matches_torch(name, dtype, data):
    """The same, for the elementwise ops drawn from their declaration alone, with fewer examples each."""
    matches_torch(name, dtype, data)


@needs_torch
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", SHAPE_CASES)
@SHAPE_SETTINGS
@given(data=st.data())
def test_shape_op_matches_torch(name, dtype, data):
    """The same for the shape ops, on 40 drawn cases each."""
    matches_torch(name, dtype, data)


@needs_torch
@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "pow", "matmul"])
@SETTINGS
@given(data=st.data())
def test_binary_op_with_mixed_dtypes_matches_torch(name, data):
    """One operand float32, the other float64: the arithmetic and the output are float64 (as in NumPy and torch),
    and each gradient comes back in its own input's dtype, equal to torch's at float32 tolerances."""
    mixed_dtypes_match_torch(name, data)


#: The other binary elementwise ops (arctan2, hypot, maximum, mod, ...), with fewer examples each.
OTHER_BINARY = sorted(
    name
    for name in ELEMENTWISE
    if len(REGISTRY[name].inputs) == 2 and name not in {"add", "sub", "mul", "div", "pow"} | set(STRUCTURED)
)


@needs_torch
@pytest.mark.parametrize("name", OTHER_BINARY)
@PLAIN_SETTINGS
@given(data=st.data())
def test_other_binary_op_with_mixed_dtypes_matches_torch(name, data):
    """The same for the other binary elementwise ops."""
    mixed_dtypes_match_torch(name, data)


def mixed_dtypes_match_torch(name: str, data: st.DataObject) -> None:
    inputs, attributes = data.draw(case_strategy(name, np.float64), label="inputs, attributes")
    narrow = data.draw(st.integers(0, 1), label="float32 input")
    inputs[narrow] = inputs[narrow].astype(np.float32)
    ref_out, _ = run_torch(name, inputs, attributes, None)
    assert ref_out.dtype == np.float64
    g = data.draw(arrays(np.float64, ref_out.shape, floats(-2.0, 2.0)), label="g")
    check_against_torch(name, inputs, attributes, g)


@needs_torch
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


@needs_torch
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
    testing.assert_close(grad_b, ref, 0.0, 1, "div gradient of b")


def test_pow_gradient_of_0d_float32_inputs_is_float32_in_checking_mode():
    """Open core bug (found by ``test_op_matches_torch[pow-float32]`` under ``OPREG_CHECK=1``, which fails on it
    every run): pow's backward returns a float64 gradient for a 0-d float32 base.

    On 0-d arrays NumPy arithmetic returns NumPy scalars: ``exponent == 0`` is an ``np.bool_`` and
    ``g * exponent * ...`` an ``np.float32``. ``onp.where(exponent == 0, 0.0, <np.float32>)`` then reaches
    ``opreg.calls.as_arrays``, which promotes the Python ``0.0`` only against ``np.ndarray`` inputs, and finding
    none makes it a float64 array; ``np.where`` then widens the result to float64. Checking mode reports it;
    without checking mode the engine casts the gradient back to float32, so other tests do not see it.

    Repro: as_arrays([np.float32(1.0), 0.0]) -> dtypes [float32, float64] (NumPy itself keeps float32).
    """
    base, exponent = np.array(1.0, np.float32), np.array(0.0, np.float32)
    engine = opreg.Autograd()
    with opreg.checking():
        engine.apply("pow", base, exponent)
        engine.backward(np.array(1.0, np.float32))
    grads = [engine.gradient_buffer.get_param(x) for x in (base, exponent)]
    assert [g.dtype for g in grads] == [np.float32, np.float32]
    np.testing.assert_array_equal(grads, [0.0, 0.0])  # d/dbase 0 at exponent 0; d/dexponent = 1 * log(1)
