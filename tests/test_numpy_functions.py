"""NumPy's functions in the spellings one op call does not cover, on Tensors: einsum (every form HIPS autograd's
tests/test_systematic.py checks, the interleaved ones and a subscript repeated within one operand included),
np.gradient over several axes with NumPy's spacings and edge orders, scipy's logsumexp with weights ``b=``, and
np.pad's modes at any width.

Each case is checked three ways: the values are NumPy's own (scipy's formula for logsumexp); the first
derivatives equal finite differences (``opreg.gradcheck``); and the first and second derivatives equal torch's,
from torch's own function (``torch.einsum`` in its sublist form too, ``torch.gradient``), where torch has one.
The edges have tests of their own: weights of 0 (an infinite x left out, as scipy does), a slab whose weights are
all 0, a negative weighted sum and ``return_sign`` (errors), pad's refused modes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

import opreg
import opreg.numpy as onp
from opreg import Tensor

from torch_reference import needs_torch, torch

RNG = np.random.default_rng(12)


def R(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape)


def _outputs(out: Any) -> tuple[Any, ...]:
    return tuple(out) if isinstance(out, tuple | list) else (out,)


def _pairing(outputs: Sequence[Any], seeds: Sequence[np.ndarray], total: Callable[[Any], Any]) -> Any:
    return sum(total(o * s) for o, s in zip(outputs, seeds, strict=True))


def check_against_torch(ours: Callable[..., Any], theirs: Callable[..., Any], arrays: Sequence[np.ndarray]) -> None:
    """``ours`` (Tensors in) and ``theirs`` (torch tensors in) agree: outputs, the first derivatives of
    ``L = sum <g, output>``, and the derivatives of ``F = sum <v_i, dL/dx_i>`` (second order)."""
    rng = np.random.default_rng(0)
    tensors = [Tensor(a, requires_grad=True) for a in arrays]
    outs = _outputs(ours(*tensors))
    seeds = [rng.standard_normal(o.shape) for o in outs]
    first = opreg.grad(_pairing(outs, seeds, lambda t: t.sum()), tensors, create_graph=True)
    directions = [rng.standard_normal(a.shape) for a in arrays]
    pairing = sum((g * v).sum() for g, v in zip(first, directions, strict=True) if g is not None)
    second = (
        opreg.grad(pairing, tensors) if isinstance(pairing, Tensor) and pairing.requires_grad else [None] * len(tensors)
    )

    leaves = [torch.tensor(a, requires_grad=True) for a in arrays]
    t_outs = _outputs(theirs(*leaves))
    t_loss = _pairing(t_outs, [torch.tensor(s) for s in seeds], torch.sum)
    t_first = torch.autograd.grad(t_loss, leaves, create_graph=True, allow_unused=True, materialize_grads=True)
    t_pairing = sum((g * torch.tensor(v)).sum() for g, v in zip(t_first, directions, strict=True))
    t_second = (
        torch.autograd.grad(t_pairing, leaves, allow_unused=True, materialize_grads=True)
        if t_pairing.requires_grad
        else [torch.zeros_like(x) for x in leaves]
    )
    assert len(outs) == len(t_outs)
    for o, t in zip(outs, t_outs, strict=True):
        np.testing.assert_allclose(o.data, t.detach().numpy(), rtol=1e-10, atol=1e-12)
    for what, mine, ref in (("first", first, t_first), ("second", second, t_second)):
        for position, (m, r) in enumerate(zip(mine, ref, strict=True)):
            value = np.zeros(arrays[position].shape) if m is None else getattr(m, "data", m)
            np.testing.assert_allclose(value, r.detach().numpy(), rtol=1e-9, atol=1e-12, err_msg=f"{what} {position}")


def check_finite_differences(function: Callable[..., Any], arrays: Sequence[np.ndarray]) -> None:
    """``function``'s first derivatives (every output paired with a fixed random seed) against finite
    differences, with opreg.gradcheck."""
    rng = np.random.default_rng(1)
    seeds: list[np.ndarray] = []

    def scalar(*tensors: Tensor) -> Tensor:
        outs = _outputs(function(*tensors))
        while len(seeds) < len(outs):
            seeds.append(rng.standard_normal(outs[len(seeds)].shape))
        return _pairing(outs, seeds, lambda t: t.sum())

    assert opreg.gradcheck(scalar, *arrays)


# --- einsum: HIPS autograd's test_einsum* cases -------------------------------------------------------------------

#: (spelling: the arguments with None where an array goes, the arrays' shape options), as test_systematic.py's
#: combo_check: every combination of the shapes.
HIPS_EINSUM = {
    "transpose": (["ij->ji", None], [[(1, 1), (4, 4), (3, 4)]]),
    "matmult": (["ij,jk->ik", None, None], [[(2, 3)], [(3, 4)]]),
    "matmult_broadcast": (["...ij,...jk->...ik", None, None], [[(2, 3), (2, 2, 3)], [(3, 4), (2, 3, 4)]]),
    "matmult_broadcast_leadzero": (["...ij,...jk->...ik", None, None], [[(0, 2, 3)], [(0, 3, 4)]]),
    "covsum": (["ijk,lji->lki", None, None], [[(3, 4, 4)], [(4, 4, 3)]]),
    "ellipses": (["...jk,...lj->...lk", None, None], [[(4, 4), (3, 4, 4)], [(4, 4), (3, 4, 4)]]),
    "ellipses_dots": (["...,...->...", None, None], [[(4, 4), (3, 4, 4)], [(4, 4), (3, 4, 4)]]),
    "ellipses_tail": (["jk...,lj...->lk...", None, None], [[(3, 2), (3, 2, 4)], [(2, 3), (2, 3, 4)]]),
    "ellipses_center": (["j...k,lj...->lk...", None, None], [[(2, 2), (2, 2, 2)], [(2, 2), (2, 2, 2)]]),
    "three_args": (["ijk,lji,lli->lki", None, None, None], [[(3, 4, 4)], [(4, 4, 3)], [(4, 4, 3)]]),
    "naked_sum": (["k,nk->", None, None], [[(5,)], [(10, 5)]]),
    "naked_sum2": (["abcd->bd", None], [[(3, 2, 3, 2)]]),
    "naked_sum_ellipsis": (["...k,...nk->...", None, None], [[(3, 5)], [(3, 10, 5)]]),
    "no_output_indices": (["ij,k", None, None], [[(3, 4)], [(3,)]]),
    "2_transpose": ([None, (0, 1), (1, 0)], [[(1, 1), (4, 4), (3, 4)]]),
    "2_matmult": ([None, (0, 1), None, (1, 2), (0, 2)], [[(2, 3)], [(3, 4)]]),
    "2_matmult_broadcast": (
        [None, (Ellipsis, 0, 1), None, (Ellipsis, 1, 2), (Ellipsis, 0, 2)],
        [[(2, 3), (2, 2, 3)], [(3, 4), (2, 3, 4)]],
    ),
    "2_covsum": ([None, (0, 1, 2), None, (3, 1, 0), (3, 2, 0)], [[(3, 4, 4)], [(4, 4, 3)]]),
    "2_three_args": (
        [None, (0, 1, 2), None, (3, 1, 0), None, (3, 3, 0), (3, 2, 0)],
        [[(3, 4, 4)], [(4, 4, 3)], [(4, 4, 3)]],
    ),
    # a subscript repeated within one operand, alone: a diagonal, a trace, a diagonal of three axes
    "diagonal": (["ii->i", None], [[(3, 3)]]),
    "trace": (["ii", None], [[(3, 3)]]),
    "trace_interleaved": ([None, (0, 0)], [[(3, 3)]]),
    "three_way_diagonal": (["iii->i", None], [[(2, 2, 2)]]),
    "batched_diagonal_times_vector": (["...ii,i->...i", None, None], [[(2, 3, 3), (3, 3)], [(3,)]]),
}

EINSUM_CASES = [
    pytest.param(spelling, shapes, id=f"{name}-{'-'.join('x'.join(map(str, s)) or '0d' for s in shapes)}")
    for name, (spelling, options) in HIPS_EINSUM.items()
    for shapes in itertools.product(*options)
]


def _einsum_call(spelling: list[Any], arrays: Sequence[Any]) -> list[Any]:
    given = iter(arrays)
    return [next(given) if item is None else item for item in spelling]


@pytest.mark.parametrize(("spelling", "shapes"), EINSUM_CASES)
def test_einsum_forms_match_numpy_and_finite_differences(spelling, shapes):
    arrays = [R(*shape) for shape in shapes]
    expected = np.einsum(*_einsum_call(spelling, arrays))
    tensors = [Tensor(a, requires_grad=True) for a in arrays]
    out = np.einsum(*_einsum_call(spelling, tensors))
    assert isinstance(out, Tensor)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(onp.einsum(*_einsum_call(spelling, arrays)), expected, rtol=1e-12, atol=1e-12)
    check_finite_differences(lambda *ts: np.einsum(*_einsum_call(spelling, ts)), arrays)


@needs_torch
@pytest.mark.parametrize(("spelling", "shapes"), EINSUM_CASES)
def test_einsum_forms_match_torch_to_second_order(spelling, shapes):
    """torch.einsum takes the string and the sublist forms, repeated subscripts too."""
    arrays = [R(*shape) for shape in shapes]
    check_against_torch(
        lambda *ts: np.einsum(*_einsum_call(spelling, ts)),
        lambda *ts: torch.einsum(*[list(s) if isinstance(s, tuple) else s for s in _einsum_call(spelling, ts)]),
        arrays,
    )


def test_einsum_diagonal_gradient_is_zero_off_the_diagonal():
    """'ii->i' reads the diagonal: the gradient is g on it, exactly 0 elsewhere, to second order as well."""
    x = Tensor(R(3, 3), requires_grad=True)
    g = np.array([1.0, 2.0, 3.0])
    (first,) = opreg.grad((onp.einsum("ii->i", x) ** 2 * g).sum(), [x], create_graph=True)
    np.testing.assert_array_equal(first.data, np.diag(2 * g * np.diag(x.data)))
    (second,) = opreg.grad(first.sum(), [x])
    np.testing.assert_array_equal(second, np.diag(2 * g))


def test_einsum_interleaved_form_reads_numpys_letters():
    """Integers stand for letters in NumPy's order (0 to 25 upper case, 26 to 51 lower case), so the implicit
    output's order is the integers' order, as NumPy's."""
    a, b = R(2, 3), R(3, 4)
    for sublists in ([(51, 30), (30, 0)], [(0, 1), (1, 26)], [(26, 1), (1, 0)]):
        expected = np.einsum(a, sublists[0], b, sublists[1])
        out = np.einsum(Tensor(a), sublists[0], Tensor(b), sublists[1])
        np.testing.assert_array_equal(out.data, expected)


@pytest.mark.parametrize("optimize", [True, "greedy", "optimal", ["einsum_path", (0, 1), (0, 1)]])
def test_einsum_optimize_orders_the_contractions_only(optimize):
    arrays = [R(2, 3), R(3, 4), R(4, 2)]
    expected = np.einsum("ij,jk,kl->il", *arrays)
    out = np.einsum("ij,jk,kl->il", *(Tensor(a) for a in arrays), optimize=optimize)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12)
    check_finite_differences(
        lambda *ts: np.einsum(ts[0], [0, 1], ts[1], [1, 2], ts[2], [2, 3], optimize=optimize), arrays
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((R(2, 2), [0, 52]), r"sublists hold integers from 0 to 51 and Ellipsis, got 52"),
        ((R(2, 2), [0, 1.0]), r"got 1.0"),
        ((R(2, 2), "ij"), r"takes a list of integers \(and Ellipsis\) after each operand, got 'ij'"),
    ],
)
def test_einsum_interleaved_form_errors_name_the_sublist(arguments, message):
    tensor = Tensor(arguments[0], requires_grad=True)
    with pytest.raises(opreg.OpUsageError, match=r"op 'einsum'.*called as numpy.einsum: .*" + message):
        np.einsum(tensor, *arguments[1:])


# --- np.gradient: several axes, spacings, edge orders -------------------------------------------------------------

GRADIENT_CASES = [
    *[((5, 5), (), {"axis": axis}) for axis in (None, 0, 1, -1)],  # HIPS's test_gradient
    *[((5, 5, 5), (), {"axis": axis}) for axis in (None, 0, 1, -1, (0, 1), (0, -1))],
    ((4, 5), (0.5,), {"edge_order": 2}),  # one scalar for every axis
    ((4, 5, 3), (0.5, 2.0), {"axis": (2, 0)}),  # one per axis, in the order given
    ((4, 5), (np.array([0.0, 0.5, 1.5, 1.75]), np.array([0.0, 1.0, 1.5, 3.0, 3.25])), {"edge_order": 2}),
    ((6,), (np.array([0.0, 0.5, 1.5, 1.75, 3.0, 4.0]),), {}),
]


def _torch_gradient(shape: tuple[int, ...], varargs: tuple[Any, ...], kwargs: dict[str, Any]) -> Callable[..., Any]:
    axis = kwargs.get("axis")
    dims = list(range(len(shape))) if axis is None else [axis] if isinstance(axis, int) else list(axis)
    if not varargs:
        spacing: Any = 1.0
    elif np.ndim(varargs[0]):
        spacing = tuple(torch.tensor(v) for v in varargs)
    else:
        spacing = list(varargs) * (len(dims) if len(varargs) == 1 else 1)

    def gradient(f: Any) -> Any:
        out = torch.gradient(f, spacing=spacing, dim=dims, edge_order=kwargs.get("edge_order", 1))
        return out[0] if len(out) == 1 else out

    return gradient


@pytest.mark.parametrize(("shape", "varargs", "kwargs"), GRADIENT_CASES)
def test_gradient_over_axes_matches_numpy_and_finite_differences(shape, varargs, kwargs):
    f = R(*shape)
    expected = np.gradient(f, *varargs, **kwargs)
    out = np.gradient(Tensor(f, requires_grad=True), *varargs, **kwargs)
    assert isinstance(out, tuple) == isinstance(expected, tuple)  # NumPy 2: a tuple for several axes
    for mine, theirs in zip(_outputs(out), _outputs(expected), strict=True):
        np.testing.assert_allclose(mine.data, theirs, rtol=1e-14, atol=1e-14)
    arrays_only = onp.gradient(f, *varargs, **kwargs)  # arrays in: arrays out
    assert all(type(a) is np.ndarray for a in _outputs(arrays_only))
    check_finite_differences(lambda t: np.gradient(t, *varargs, **kwargs), [f])


@needs_torch
@pytest.mark.parametrize(("shape", "varargs", "kwargs"), GRADIENT_CASES)
def test_gradient_over_axes_matches_torch_to_second_order(shape, varargs, kwargs):
    check_against_torch(
        lambda t: np.gradient(t, *varargs, **kwargs), _torch_gradient(shape, varargs, kwargs), [R(*shape)]
    )


# --- logsumexp with weights (scipy.special.logsumexp's b=) --------------------------------------------------------


def _scipy_logsumexp(a: np.ndarray, b: np.ndarray, axis: Any = None, keepdims: bool = False) -> np.ndarray:
    """scipy's definition, with its shift: log(sum(b * exp(a - m))) + m, m the max of a where b is not 0."""
    a, b = np.broadcast_arrays(a, b)
    counted = np.where(b == 0, -np.inf, a)
    m = np.max(counted, axis=axis, keepdims=True)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(b * np.exp(counted - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


@pytest.mark.parametrize(
    ("a", "b", "kwargs"),
    [
        (R(3, 4), np.abs(R(3, 4)) + 0.1, {}),
        (R(3, 4), np.abs(R(3, 1)) + 0.1, {"axis": 1}),
        (R(2, 3, 4), np.abs(R(4)) + 0.1, {"axis": (0, 2), "keepdims": True}),
        (R(4), np.abs(R(2, 4)) + 0.1, {"axis": -1}),  # b broadcast beyond a
        (R(3, 4) + 1e4, np.abs(R(3, 4)) + 0.1, {"axis": 0}),  # the shift keeps it finite
        (R(3, 4), np.array([1.0, -0.5, 2.0, 0.25]), {"axis": 1}),  # a negative weight, a positive sum
    ],
)
def test_logsumexp_with_weights_is_scipys(a, b, kwargs):
    expected = _scipy_logsumexp(a, b, **kwargs)
    out = onp.logsumexp(Tensor(a, requires_grad=True), b=Tensor(b, requires_grad=True), **kwargs)
    np.testing.assert_allclose(out.data, expected, rtol=1e-13)
    np.testing.assert_allclose(onp.logsumexp(a, kwargs.get("axis"), b, kwargs.get("keepdims", False)), expected)
    if np.abs(a).max() < 100:  # the plain formula overflows nowhere here
        np.testing.assert_allclose(
            expected, np.log(np.sum(b * np.exp(a), axis=kwargs.get("axis"))).reshape(expected.shape)
        )
    check_finite_differences(lambda x, w: onp.logsumexp(x, b=w, **kwargs), [a, b])


def test_logsumexp_weight_zero_leaves_its_element_out():
    """A weight of 0 leaves its x out of the sum and of the shift, even x = inf (scipy's rule): x's gradient there
    is 0, b's the softmax weight exp(x - out) it would get."""
    a = np.array([[0.5, np.inf, -1.0], [2.0, 1.0, 0.0]])
    b = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]])
    x, w = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    out = onp.logsumexp(x, axis=1, b=w)
    expected = [np.log(np.exp(0.5) + 2 * np.exp(-1.0)), np.log(np.exp(1.0) + 1.0)]
    np.testing.assert_allclose(out.data, expected, rtol=1e-15)
    finite = Tensor(np.where(np.isinf(a), 3.0, a), requires_grad=True)
    weights = Tensor(b, requires_grad=True)
    onp.logsumexp(finite, axis=1, b=weights).sum().backward()
    softmax = np.exp(finite.data - onp.logsumexp(finite.data, axis=1, b=b)[:, None])
    np.testing.assert_allclose(finite.grad, b * softmax, rtol=1e-14)
    assert (finite.grad[b == 0] == 0).all()
    np.testing.assert_allclose(weights.grad, softmax, rtol=1e-14)


def test_logsumexp_all_weights_zero_is_minus_inf():
    """Every weight of a slab 0: the log of an empty sum, -inf; x's gradient 0 there (the result does not depend
    on x), b's +inf (log's slope at 0). The other slab is as usual."""
    x = Tensor(R(2, 3), requires_grad=True)
    w = Tensor(np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 0.5]]), requires_grad=True)
    out = onp.logsumexp(x, axis=1, b=w)
    assert out.data[0] == -np.inf and np.isfinite(out.data[1])
    out.backward(np.ones(2))
    np.testing.assert_array_equal(x.grad[0], 0.0)
    assert (w.grad[0] == np.inf).all()
    assert np.isfinite(x.grad[1]).all() and np.isfinite(w.grad[1]).all()


def test_logsumexp_with_weights_keeps_float32():
    x, w = (
        Tensor(R(3, 4).astype(np.float32), requires_grad=True),
        Tensor(np.full(4, 0.5, np.float32), requires_grad=True),
    )
    out = onp.logsumexp(x, axis=1, b=w)
    out.sum().backward()
    assert out.dtype == x.grad.dtype == w.grad.dtype == np.float32


def test_logsumexp_without_weights_reads_scipys_positions():
    x = R(3, 4)
    np.testing.assert_array_equal(onp.logsumexp(x, 1, None, True), onp.logsumexp(x, axis=1, keepdims=True))
    np.testing.assert_allclose(onp.logsumexp(x, 0, np.ones(4)), onp.logsumexp(x, axis=0))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"b": np.array([1.0, -2.0, 0.5, 0.0]), "axis": 1},
            r"weighted sum of exp\(x\) is negative.*use weights b >= 0",
        ),
        ({"b": np.ones(4), "return_sign": True}, r"return_sign=True .* is not supported"),
        ({"return_sign": True}, r"return_sign=True .* is not supported"),
    ],
)
def test_logsumexp_refuses_what_has_no_real_log(kwargs, message):
    x = Tensor(np.zeros((3, 4)), requires_grad=True)
    with pytest.raises(opreg.OpUsageError, match=message):
        onp.logsumexp(x, **kwargs)


# --- np.pad: every gather mode at any width, constant values per axis, the refused modes ---------------------------

PAD_CASES = [
    *[({"pad_width": w}, (2, 2)) for w in [0, 3, (3,), (3, 2), ((3, 2),), ((1, 2), (3, 4)), ((0, 0), (0, 0))]],  # HIPS
    ({"pad_width": ((1, 2), (3, 0)), "constant_values": ((1.0, 2.0), (-3.0, 4.0))}, (2, 3)),
    ({"pad_width": 2, "constant_values": (5.0,)}, (2, 3)),
    *[({"pad_width": ((4, 7), (6, 1)), "mode": mode}, (2, 3)) for mode in ("edge", "reflect", "symmetric", "wrap")],
    ({"pad_width": 5, "mode": "reflect"}, (1, 3)),  # reflecting a single element
]


@pytest.mark.parametrize(("kwargs", "shape"), PAD_CASES)
def test_pad_matches_numpy_and_finite_differences(kwargs, shape):
    """Wider than x, NumPy reflects and wraps again: the gradient sums every copy, to any order (pad is linear:
    its second derivative is 0, through a backward that composes)."""
    x = R(*shape)
    t = Tensor(x, requires_grad=True)
    out = np.pad(t, **kwargs)
    np.testing.assert_array_equal(out.data, np.pad(x, **kwargs))
    check_finite_differences(lambda t: np.pad(t, **kwargs), [x])
    (first,) = opreg.grad((np.pad(t, **kwargs) ** 2).sum(), [t], create_graph=True)
    (second,) = opreg.grad(first.sum(), [t])
    copies = opreg.grad(np.pad(t, **kwargs).sum(), [t])[0]  # how many places each element was copied to
    np.testing.assert_allclose(second, 2 * copies)


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        *[
            (m, f"pad's mode '{m}' computes new values")
            for m in ("linear_ramp", "maximum", "mean", "median", "minimum")
        ],
        ("empty", "pad's mode 'empty' leaves the border's values undefined"),
        (lambda vector, width, axis, kwargs: None, "is a function, whose values this op cannot differentiate"),
        ("mirror", "pad's mode 'mirror' is not one of NumPy's"),
    ],
)
def test_pad_refuses_modes_that_are_not_copies(mode, message):
    with pytest.raises(opreg.OpUsageError, match=message):
        np.pad(Tensor(R(2, 3), requires_grad=True), 1, mode=mode)
