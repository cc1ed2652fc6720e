"""HIPS autograd's test helpers (``autograd.test_util``: ``check_grads``, ``combo_check``; ``autograd.grad``), written
over opreg, so that HIPS autograd's own NumPy test files run on opreg unchanged but for their imports.

The vendored tests call plain NumPy (``import numpy as np``) on opreg Tensors: every call reaches opreg through
NumPy's protocols (NEP 13 and 18), as a user's NumPy code would. What is checked is what HIPS autograd checks, in
reverse mode (opreg has no forward mode yet): for random ``u`` and ``v``, ``<u, J^T v>`` from opreg's backward equals
``<J u, v>`` from central finite differences of the function run on plain NumPy arrays, to 1e-6; then the same for
the function ``(x, v) -> J^T v`` (second order), and so on to ``order``. Two checks are added to HIPS autograd's:
opreg's forward values equal NumPy's, and each gradient has its input's shape and dtype.

Complex numbers are out of scope for opreg for now: where a HIPS autograd test passes complex input, the adapter
checks that opreg refuses it with an error that says so, rather than computing something.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from itertools import product
from typing import Any

import numpy as np
import pytest

import opreg
from opreg import Tensor

TOL = 1e-6  # HIPS autograd's test_util tolerances and step
RTOL = 1e-6
EPS = 1e-6


# --- pytrees: tuples and lists of arrays, as HIPS autograd's vector spaces allow ----------------------------------


def _leaves(tree: Any) -> list[Any]:
    if isinstance(tree, (tuple, list)):
        return [leaf for item in tree for leaf in _leaves(item)]
    return [tree]


def _rebuild(tree: Any, leaves: list[Any]) -> Any:
    """``tree``'s structure with ``leaves`` (consumed from the front) in place of its leaves."""
    if isinstance(tree, (tuple, list)):
        return type(tree)(_rebuild(item, leaves) for item in tree)
    return leaves.pop(0)


def _map(function: Callable[..., Any], *trees: Any) -> Any:
    return _rebuild(trees[0], [function(*leaves) for leaves in zip(*map(_leaves, trees), strict=True)])


def _value(leaf: Any) -> np.ndarray:
    return np.asarray(leaf.detach().data if isinstance(leaf, Tensor) else leaf)


def _inner(a: Any, b: Any) -> float:
    return float(sum(np.sum(_value(x) * _value(y)) for x, y in zip(_leaves(a), _leaves(b), strict=True)))


def _randn_like(tree: Any) -> Any:
    """Random directions from NumPy's global generator, as HIPS autograd's, which its conftest seeds per test."""
    return _map(lambda leaf: np.random.standard_normal(np.shape(_value(leaf))), tree)


def _is_complex(tree: Any) -> bool:
    return any(np.iscomplexobj(_value(leaf)) for leaf in _leaves(tree))


# --- reverse mode over opreg ----------------------------------------------------------------------------------------


def _watched(tree: Any) -> Any:
    """``tree`` with each leaf a Tensor that requires gradients (a Tensor already in a graph is kept, so that a
    derivative taken inside can be differentiated again)."""

    def watch(leaf: Any) -> Tensor:
        if isinstance(leaf, Tensor) and leaf.requires_grad:
            return leaf
        value = _value(leaf)
        return Tensor(
            np.array(value, dtype=value.dtype if value.dtype.kind in "fc" else np.float64), requires_grad=True
        )

    return _map(watch, tree)


def _vjp(f: Callable[[Any], Any], x: Any) -> tuple[Callable[[Any], Any], Any]:
    """``(v -> J^T v, f(x))``; ``J^T v`` is recorded (``create_graph``), so it can be differentiated again."""
    x = _watched(x)
    y = f(x)

    def vjp(v: Any) -> Any:
        outputs = [(out, cot) for out, cot in zip(_leaves(y), _leaves(v), strict=True) if isinstance(out, Tensor)]
        inputs = _leaves(x)
        if not any(out.requires_grad for out, _ in outputs):  # f does not depend on x
            return _map(lambda leaf: Tensor(np.zeros_like(leaf.data)), x)
        total = sum(np.sum(out * cot) for out, cot in outputs if out.requires_grad)
        grads = opreg.grad(total, inputs, create_graph=True)
        zeros = [Tensor(np.zeros_like(i.data)) for i in inputs]
        return _rebuild(x, [zero if g is None else g for g, zero in zip(grads, zeros, strict=True)])

    return vjp, y


def _numerical_jvp(f: Callable[[Any], Any], x: Any, u: Any) -> Any:
    """(f(x + u eps/2) - f(x - u eps/2)) / eps, with f run on plain NumPy values."""
    plus = f(_map(lambda a, b: _value(a) + b * EPS / 2, x, u))
    minus = f(_map(lambda a, b: _value(a) - b * EPS / 2, x, u))
    return _map(lambda p, m: (_value(p) - _value(m)) / EPS, plus, minus)


def _scalar_close(a: float, b: float) -> bool:
    return abs(a - b) < TOL or abs(a - b) / abs(a + b) < RTOL


def _check_vjp(f: Callable[[Any], Any], x: Any) -> None:
    vjp, y = _vjp(f, x)
    expected = f(_map(_value, x))
    for got, want in zip(_leaves(y), _leaves(expected), strict=True):
        np.testing.assert_allclose(_value(got), _value(want), rtol=1e-12, atol=1e-12, err_msg="forward value")
    v = _randn_like(y)
    u = _randn_like(x)
    gradient = vjp(v)
    for g, leaf in zip(_leaves(gradient), _leaves(x), strict=True):
        assert np.shape(_value(g)) == np.shape(_value(leaf)), f"gradient shape {np.shape(_value(g))}"
    exact = _inner(u, gradient)
    numeric = _inner(v, _numerical_jvp(f, x, u))
    assert _scalar_close(numeric, exact), f"VJP check failed with arg {x}:\nanalytic: {exact}\nnumeric:  {numeric}"


def _check_grads(f: Callable[[Any], Any], x: Any, order: int) -> None:
    _check_vjp(f, x)
    if order > 1:
        y = f(_map(_value, x))

        def vjp_f(xv: tuple[Any, Any]) -> Any:
            return _vjp(f, xv[0])[0](xv[1])

        _check_grads(vjp_f, (x, _randn_like(y)), order - 1)


def _refuses_complex(f: Callable[[Any], Any], x: Any) -> None:
    """Complex input is out of scope for now: opreg must say so, never compute quietly."""
    with pytest.raises(opreg.OpregError, match="complex"):
        _vjp(f, x)[0](_randn_like(f(_map(_value, x))))


#: ``autograd.tuple``, HIPS autograd's differentiable tuple: opreg's pytrees are Python's own.
tuple = builtins.tuple

# --- HIPS autograd's API ----------------------------------------------------------------------------------------


def _argnums(argnum: int | Sequence[int]) -> tuple[tuple[int, ...], bool]:
    return ((argnum,), True) if isinstance(argnum, int) else (tuple(argnum), False)


def check_grads(
    fun: Callable[..., Any], argnum: int | Sequence[int] = 0, modes: Sequence[str] | None = None, order: int = 2
) -> Callable[..., None]:
    """``autograd.test_util.check_grads(fun, argnum, modes, order)(*args, **kwargs)``, reverse mode: opreg has no
    forward mode yet, so a check of forward mode alone is skipped, saying so."""
    positions, single = _argnums(argnum)
    if modes is not None and "rev" not in modes:
        pytest.skip("forward mode only: opreg has reverse mode only, for now")

    def check(*args: Any, **kwargs: Any) -> None:
        def f(x: Any) -> Any:
            arguments = list(args)
            for position, value in zip(positions, (x,) if single else x, strict=True):
                arguments[position] = value
            return fun(*arguments, **kwargs)

        x = args[positions[0]] if single else tuple(args[p] for p in positions)
        if _is_complex(x):
            _refuses_complex(f, x)
        else:
            _check_grads(f, x, order)

    return check


def combo_check(fun: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[..., None]:
    """``autograd.test_util.combo_check``: ``check_grads`` for every combination of the arguments given."""

    def check(*arg_lists: Any, **kwarg_lists: Any) -> None:
        keyed = [[(key, value) for value in values] for key, values in kwarg_lists.items()]
        for combination in product(*arg_lists):
            for kwarg_combination in product(*keyed):
                check_grads(fun, *args, **kwargs)(*combination, **dict(kwarg_combination))

    return check


def grad(fun: Callable[..., Any], argnum: int = 0) -> Callable[..., Any]:
    """``autograd.grad``: the gradient of a scalar function; nested ``grad(grad(f))`` differentiates again."""

    def gradient(*args: Any, **kwargs: Any) -> Any:
        arguments = list(args)
        given = arguments[argnum]
        x = _watched(given)
        arguments[argnum] = x
        out = fun(*arguments, **kwargs)
        (g,) = opreg.grad(out, [x], create_graph=True)
        g = Tensor(np.zeros_like(x.data)) if g is None else g
        return g if isinstance(given, Tensor) else g.detach().data

    return gradient
