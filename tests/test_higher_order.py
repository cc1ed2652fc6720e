"""Higher derivatives through ``opreg.grad(..., create_graph=True)``, against torch's.

Every built-in op's backward is written with registered ops (``opreg.numpy`` and operators), so it runs on Tensors
and can be differentiated again. Here:

- each built-in op's second derivatives, on each of its declared samples in float64. With random ``v_i`` and a
  random ``grad_output`` ``g``, ``F = sum_i <v_i, dL/dx_i>`` (``L = <g, op(x)>``, the first derivatives from
  ``opreg.grad(..., create_graph=True)``) is differentiated with respect to every differentiable input and to
  ``g`` itself, and each must equal what ``torch.autograd.grad(..., create_graph=True)`` gives on the op's
  declared ``reference``. The output and the first derivatives are compared too. Inputs the op declares
  non-differentiable (softmax_cross_entropy's labels, where's condition) stay constants;
- pow's second derivatives at base 0 and exponent 0, where its backward picks torch's special values (NaN exactly
  where torch's is);
- third and fourth derivatives of a scalar function of two inputs built from every built-in op, along a direction,
  through nested ``opreg.grad(..., create_graph=True)``, against torch's running the ops' declared references.

The tape engine's first derivatives of every op on its samples, against torch, are test_ops_reference.py's.

Tolerances: rtol 1e-9 in float64, and an absolute floor of 1e-12 times the largest magnitude of the reference
(at least 1): a derivative summing several terms of opposite signs can cancel to far below its terms, so its
rounding error is relative to them, not to it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import opreg
from opreg import Tensor, ops

from torch_reference import BUILTIN_OPS, NO_GRADIENT_OPS, REGISTRY, needs_torch, torch, torch_reference

pytestmark = needs_torch  # every test here compares with torch

RTOL = 1e-9
ATOL = 1e-12


def assert_close(actual: np.ndarray | None, expected: np.ndarray | None, shape: tuple[int, ...], what: str) -> None:
    """``actual`` equals torch's ``expected`` (NaN where it is NaN), in shape and float64; ``None`` (nothing
    depends on the input) counts as zeros of ``shape``, as torch's ``materialize_grads``."""
    actual = np.zeros(shape) if actual is None else actual
    expected = np.zeros(shape) if expected is None else expected
    assert actual.shape == expected.shape == shape, f"{what}: shape {actual.shape}, torch's {expected.shape}"
    assert actual.dtype == expected.dtype == np.float64, f"{what}: dtype {actual.dtype}, torch's {expected.dtype}"
    scale = max(1.0, float(np.abs(expected[np.isfinite(expected)]).max(initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL * scale, err_msg=what)


# --- second derivatives of every built-in op ------------------------------------------------------------------------

#: What :func:`second_order` returns: the output, each differentiable input's dL/dx and dF/dx, and dF/dg.
Derivatives = dict[str, np.ndarray | None]


def second_order(
    library: str, name: str, inputs: Sequence[np.ndarray], attributes: dict, g: np.ndarray, vs: Sequence[Any]
) -> Derivatives:
    """Op ``name`` on ``inputs``, by opreg (Tensors, ``opreg.grad``) or torch (its declared reference,
    ``torch.autograd.grad``): the output, the first derivatives of ``L = <g, output>`` with a recorded graph,
    and the derivatives of ``F = sum_i <v_i, dL/dx_i>`` with respect to each differentiable input and ``g``."""
    op = REGISTRY[name]
    if library == "opreg":
        tensor, function, total = Tensor, getattr(ops, name), ops.sum

        def grad(y: Any, xs: list[Any], seed: Any = None, create_graph: bool = False) -> tuple[Any, ...]:
            return opreg.grad(y, xs, seed, create_graph=create_graph)

        def array(t: Any) -> np.ndarray | None:
            return None if t is None else t.detach().numpy()
    else:
        tensor, function, total = torch.tensor, torch_reference(name), torch.sum

        def grad(y: Any, xs: list[Any], seed: Any = None, create_graph: bool = False) -> tuple[Any, ...]:
            return torch.autograd.grad(y, xs, seed, create_graph=create_graph, allow_unused=True)

        def array(t: Any) -> np.ndarray | None:  # force: a zero gradient (floor's, sign's) is a ZeroTensor
            return None if t is None else t.detach().numpy(force=True)

    xs = [tensor(x.copy(), requires_grad=d) for x, d in zip(inputs, op.differentiable_for(len(inputs)), strict=True)]
    seed = tensor(g.copy(), requires_grad=True)
    out = function(*xs, **attributes)
    wrt = [
        (n, x, v)
        for n, x, v, d in zip(op.input_names(len(xs)), xs, vs, op.differentiable_for(len(xs)), strict=True)
        if d
    ]
    firsts = grad(out, [x for _, x, _ in wrt], seed, create_graph=True)
    f = sum(total(first * tensor(v)) for first, (_, _, v) in zip(firsts, wrt, strict=True) if first is not None)
    # A constant F (the first derivatives of floor, sign, imag are zeros, recorded by neither library): every second
    # derivative is 0, which torch.autograd.grad refuses to compute.
    constant_f = not getattr(f, "requires_grad", False)
    seconds = (None,) * (len(wrt) + 1) if constant_f else grad(f, [*(x for _, x, _ in wrt), seed])
    result: Derivatives = {"output": array(out), "dF/dg": array(seconds[-1])}
    for (n, _, _), first, second in zip(wrt, firsts, seconds, strict=False):
        result[f"dL/d{n}"], result[f"dF/d{n}"] = array(first), array(second)
    return result


def check_second_order(name: str, inputs: list[np.ndarray], attributes: dict, rng: np.random.Generator) -> None:
    op = REGISTRY[name]
    out_shape = op.output_of(*inputs, **attributes).shape
    g = rng.standard_normal(out_shape)
    vs = [
        rng.standard_normal(x.shape) if d else None
        for x, d in zip(inputs, op.differentiable_for(len(inputs)), strict=True)
    ]
    with warnings.catch_warnings(), np.errstate(all="ignore"):  # pow's discarded branches at base 0, as torch's
        warnings.simplefilter("ignore", RuntimeWarning)
        mine = second_order("opreg", name, inputs, attributes, g, vs)
    theirs = second_order("torch", name, inputs, attributes, g, vs)
    shapes = {"output": out_shape, "dF/dg": out_shape}
    shapes |= {f"d{k}/d{n}": x.shape for n, x in zip(op.input_names(len(inputs)), inputs, strict=True) for k in "LF"}
    where = f"{name} on shapes {[x.shape for x in inputs]}{f' with {attributes}' if attributes else ''}"
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert_close(mine[key], theirs[key], shapes[key], f"{where}: {key}")


@pytest.mark.parametrize("name", [n for n in BUILTIN_OPS if n not in NO_GRADIENT_OPS])
def test_second_derivatives_match_torch(name):
    """d/dx_j and d/dg of sum_i <v_i, dL/dx_i>, for every differentiable input of every built-in op, on each of
    its samples in float64, equal torch's; so do the output and the first derivatives."""
    torch_reference(name)
    rng = np.random.default_rng(11)
    for sample in REGISTRY[name].samples(np.random.default_rng(5)):
        inputs = [x.astype(np.float64) if x.dtype.kind == "f" else x for x in map(np.asarray, sample.inputs)]
        check_second_order(name, inputs, dict(sample.attributes), rng)


def test_pow_second_derivatives_match_torch_away_from_its_special_points():
    """pow's second derivatives are torch's away from base 0 and exponent 0. There torch's chooses 0 with a
    where() after the formula, which makes its second derivatives NaN at base 0 and its mixed one 0 at exponent 0,
    where it is 1 / base: opreg's are the true ones (below, and test_elementwise_edges.py to the third order)."""
    base = np.array([0.5, 1.5, 0.7, 2.0])
    exponent = np.array([2.0, 0.5, 3.0, -1.5])
    check_second_order("pow", [base, exponent], {}, np.random.default_rng(2))


def test_pow_mixed_second_derivative_at_exponent_zero_is_one_over_base():
    """d/dexponent of d(base ** exponent)/dbase = base^(exponent - 1) (1 + exponent log base): 1 / base at exponent
    0, which torch's where() makes 0."""
    base = Tensor(np.array([1.5, 0.25, 4.0]), requires_grad=True)
    exponent = Tensor(np.zeros(3), requires_grad=True)
    (grad_base,) = opreg.grad((base**exponent).sum(), [base], create_graph=True)
    (mixed,) = opreg.grad(grad_base.sum(), [exponent])
    np.testing.assert_allclose(mixed.data, 1 / base.data, rtol=1e-15)


# --- third and fourth derivatives of a composite ---------------------------------------------------------------------


def composite(lib: Any, x: Any, w: Any, labels: Any, target: Any) -> Any:
    """A scalar of ``x`` (3, 4) and ``w`` (4, 2), through every built-in op: ``lib`` is ``opreg.ops`` or the ops'
    torch references by the same names, and the Python operators are each library's own."""
    h = lib.tanh(x) * lib.exp(x / 3.0) + lib.sigmoid(x) ** 2  # tanh, exp, div, mul, sigmoid, pow, add
    y = lib.matmul(h, w) - lib.linear(x * 0.5, lib.transpose(w), lib.neg(lib.mean(w, axis=0)))  # (3, 2)
    z = lib.log(y * y + 1.0) + lib.pow(lib.sigmoid(y) + 0.5, lib.tanh(y))  # log, pow of two variables
    wide = lib.broadcast_to(lib.expand_dims(lib.sum(x, axis=0), axis=0), shape=(3, 4))  # (3, 4)
    chosen = lib.where(x > 0.0, x * wide, lib.relu(x) - x * 0.25)
    return (
        lib.sum(z)
        + lib.mean(lib.squeeze(lib.sum(chosen, axis=1, keepdims=True), axis=1))
        + lib.mse(y, target)
        + lib.softmax_cross_entropy(y * 2.0, labels)
    )


def directional_derivatives(
    lib: Any, variable: Callable[[Any], Any], grad: Callable[..., Any], order: int, data: dict[str, Any]
) -> list[list[Any]]:
    """``[D^1 f, ..., D^order f]`` of :func:`composite` at ``data``'s x and w (constants: the rest of ``data``, in
    the library's kind): each the gradient with respect to (x, w) of the previous one's inner product with the
    direction (u, U), all but the last with a recorded graph."""
    x, w = variable(data["x"]), variable(data["w"])
    scalar = composite(lib, x, w, data["labels"], data["target"])
    results = []
    for k in range(order):
        gx, gw = grad(scalar, [x, w], create_graph=k < order - 1)
        results.append([gx, gw])
        if k < order - 1:
            scalar = lib.sum(gx * data["u"]) + lib.sum(gw * data["U"])
    return results


def test_third_and_fourth_derivatives_of_a_composite_match_torch():
    """The first to fourth derivatives of a function of every built-in op, each the gradient of the previous
    one's inner product with a direction, by nested opreg.grad(create_graph=True), equal torch's."""
    rng = np.random.default_rng(4)
    data = {
        "x": rng.standard_normal((3, 4)),
        "w": rng.standard_normal((4, 2)) * 0.5,
        "u": rng.standard_normal((3, 4)),
        "U": rng.standard_normal((4, 2)),
        "target": rng.standard_normal((3, 2)),
        "labels": np.eye(2)[rng.integers(0, 2, size=3)],
    }
    mine = directional_derivatives(
        ops,
        lambda a: Tensor(a.copy(), requires_grad=True),
        lambda y, xs, create_graph: opreg.grad(y, xs, create_graph=create_graph),
        4,
        data,
    )
    torch_data = {k: torch.tensor(v) for k, v in data.items()}
    references = SimpleNamespace(**{name: torch_reference(name) for name in BUILTIN_OPS})
    theirs = directional_derivatives(
        references,
        lambda a: a.clone().requires_grad_(True),
        lambda y, xs, create_graph: torch.autograd.grad(y, xs, create_graph=create_graph),
        4,
        torch_data,
    )
    for order, (m, t) in enumerate(zip(mine, theirs, strict=True), start=1):
        for name, a, b in zip(("x", "w"), m, t, strict=True):
            expected = b.detach().numpy()
            assert np.abs(expected).max() > 1e-3, f"order {order}, {name}: a vacuous comparison"
            assert_close(a.data, expected, expected.shape, f"derivative of order {order} with respect to {name}")


def test_grad_of_a_single_tensor_is_its_gradient_not_its_elements():
    """opreg.grad(y, x) with one Tensor, as torch.autograd.grad(y, x) takes it: a tuple of one gradient. It used to
    iterate x's elements, Tensors no graph contains, and return (None, None, None): a silent wrong answer."""
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    (g,) = opreg.grad((x**3).sum(), x, create_graph=True)
    np.testing.assert_allclose(g.data, 3 * x.data**2)
    (h,) = opreg.grad(g.sum(), x)
    np.testing.assert_allclose(h.data, 6 * x.data)


def test_grad_of_something_that_is_not_a_tensor_is_refused():
    x = Tensor(np.ones(2), requires_grad=True)
    with pytest.raises(TypeError, match=r"grad\(\) takes Tensors as inputs; input 1 is a ndarray"):
        opreg.grad((x * 2).sum(), [x, np.ones(2)])
