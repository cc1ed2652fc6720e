"""opreg.func's reverse mode (grad, value_and_grad, vjp, jacrev, hessian, hvp) against torch.func, in float64.

- every built-in op: the gradient of ``<g, op(x)>`` and the gradient of its inner product with a direction (grad
  of grad: nested transforms) with respect to every differentiable input, as ``torch.func.grad`` gives on the op's
  declared reference; ops with several outputs through ``vjp`` with a tuple of cotangents;
- composite functions: an MLP loss of a params dict, a Gaussian process's log marginal likelihood written with
  ``np.*`` and ``np.linalg.*`` calls on Tensors;
- the conventions: argnums, has_aux, pytrees, nesting (perturbation confusion included), dtypes, arrays in and
  arrays out, Tensors in and Tensors out, ``no_grad``, outputs that do not depend on an input; and the errors;
- that a nested transform's backward pass does not walk the enclosing graph (the floor), and that in-place edits
  are still caught.
"""

from __future__ import annotations

import functools
import warnings
from collections import OrderedDict, namedtuple
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_graph_fuzz import programs

import opreg
import opreg.tensor
from opreg import Tensor, ops, testing
from opreg.func import grad, hessian, hvp, jacrev, tree_flatten, tree_map, tree_unflatten, value_and_grad, vjp
from opreg.func.pytree import LEAF, TreeSpec

from torch_reference import BUILTIN_OPS, MULTI_OUTPUT_OPS, NO_GRADIENT_OPS, REGISTRY, TORCH_OPS, needs_torch, torch

RTOL, ATOL = 1e-10, 1e-12


def close(actual: Any, expected: Any, what: str = "") -> None:
    """Trees equal leaf for leaf: shapes, float64 (unless torch's is otherwise), values to 1e-10 (NaN where NaN),
    with an absolute floor of 1e-12 times the largest magnitude."""
    a_leaves, a_spec = tree_flatten(actual)
    e_leaves, e_spec = tree_flatten(expected)
    assert a_spec == e_spec, f"{what}: {a_spec.describe()} != {e_spec.describe()}"
    for a, e in zip(a_leaves, e_leaves, strict=True):
        e = e.detach().numpy(force=True) if torch is not None and isinstance(e, torch.Tensor) else np.asarray(e)
        a = a.data if isinstance(a, Tensor) else np.asarray(a)
        assert a.shape == e.shape and a.dtype == e.dtype, f"{what}: {a.dtype} {a.shape}, expected {e.dtype} {e.shape}"
        scale = max(1.0, float(np.abs(e[np.isfinite(e)]).max(initial=0.0)))
        np.testing.assert_allclose(a, e, rtol=RTOL, atol=ATOL * scale, err_msg=what)


def t64(tree: Any) -> Any:
    return tree_map(lambda a: torch.tensor(np.asarray(a)), tree)


# --- every built-in op -----------------------------------------------------------------------------------------------

#: References that torch.func cannot run (they reach a tensor's storage): compared through torch.autograd instead.
NOT_FUNCTORCH = {"partition", "eigh", "qr", "svd"}


def op_case(name: str) -> tuple[list[np.ndarray], dict[str, Any], list[int], np.ndarray, list[np.ndarray]]:
    """An op's first declared sample in float64, its differentiable positions, a random cotangent and directions."""
    op = REGISTRY[name]
    sample = op.samples(np.random.default_rng(5))[0]
    inputs = [x.astype(np.float64) if x.dtype.kind == "f" else x for x in map(np.asarray, sample.inputs)]
    diff = [i for i, d in enumerate(op.differentiable_for(len(inputs))) if d]
    rng = np.random.default_rng(1)
    out = op.output_of(*inputs, **dict(sample.attributes))
    g = tuple(rng.standard_normal(np.shape(o)) for o in out) if op.multi else rng.standard_normal(out.shape)
    return inputs, dict(sample.attributes), diff, g, [rng.standard_normal(inputs[i].shape) for i in diff]


def scalar_and_directional(fn: Any, lib: Any, inputs: list[Any], attrs: dict, diff: list[int], g: Any, vs: list[Any]):
    """``L(xs) = <g, op(xs)>`` and ``F(xs) = <grad L(xs), v>``, in ``lib`` (opreg.func or torch.func)."""
    tensor, total = (torch.tensor, torch.sum) if lib is torch.func else (np.asarray, np.sum)
    argnums = tuple(range(len(diff)))

    def L(*xs: Any) -> Any:
        full = [tensor(x) for x in inputs]
        for i, x in zip(diff, xs, strict=True):
            full[i] = x
        return total(fn(*full, **attrs) * tensor(g))

    def F(*xs: Any) -> Any:
        return sum(total(d * tensor(v)) for d, v in zip(lib.grad(L, argnums)(*xs), vs, strict=True))

    return L, F


@needs_torch
@pytest.mark.parametrize("name", [n for n in BUILTIN_OPS if n not in NO_GRADIENT_OPS])
def test_grad_and_grad_of_grad_of_every_builtin_op_match_torch_func(name):
    """value_and_grad of <g, op(x)>, and grad of <grad, v> (second order by nesting), against torch.func."""
    inputs, attrs, diff, g, vs = op_case(name)
    argnums = tuple(range(len(diff)))
    primals = [inputs[i] for i in diff]
    with warnings.catch_warnings(), np.errstate(all="ignore"):  # pow's discarded branches at base 0, as torch's
        warnings.simplefilter("ignore", RuntimeWarning)
        L, F = scalar_and_directional(getattr(ops, name), opreg.func, inputs, attrs, diff, g, vs)
        mine = (value_and_grad(L, argnums)(*primals), grad(F, argnums)(*primals))
    Lt, Ft = scalar_and_directional(TORCH_OPS[name], torch.func, inputs, attrs, diff, g, vs)
    if name in NOT_FUNCTORCH:
        xs = [torch.tensor(p, requires_grad=True) for p in primals]
        value = Lt(*xs)
        firsts = torch.autograd.grad(value, xs, create_graph=True)
        directional = sum(torch.sum(d * torch.tensor(v)) for d, v in zip(firsts, vs, strict=True))
        linear = not directional.requires_grad  # partition is linear: torch recorded no second derivative
        seconds = [torch.zeros_like(x) for x in xs] if linear else torch.autograd.grad(directional, xs)
        theirs = ((value, tuple(firsts)), tuple(seconds))
    else:
        gradient, value = torch.func.grad_and_value(Lt, argnums)(*map(torch.tensor, primals))
        theirs = ((value, gradient), torch.func.grad(Ft, argnums)(*map(torch.tensor, primals)))
    close(mine, theirs, name)


@needs_torch
@pytest.mark.parametrize("name", MULTI_OUTPUT_OPS)
def test_vjp_of_every_builtin_op_with_several_outputs_matches_torch_func(name):
    """vjp with a tuple of cotangents (zeros for an output that takes no gradient, such as slogdet's sign)."""
    inputs, attrs, diff, g, _ = op_case(name)
    flags = REGISTRY[name].output_flags(len(g))
    g = tuple(c if wanted else np.zeros_like(c) for c, wanted in zip(g, flags, strict=True))

    def of(fn: Any, tensor: Any) -> Any:
        def f(*xs: Any) -> Any:
            full = [tensor(x) for x in inputs]
            for i, x in zip(diff, xs, strict=True):
                full[i] = x
            return tuple(fn(*full, **attrs))

        return f

    out, vjp_fn = vjp(of(getattr(ops, name), np.asarray), *[inputs[i] for i in diff])
    reference = of(TORCH_OPS[name], torch.tensor)
    if name in NOT_FUNCTORCH:
        xs = [torch.tensor(inputs[i], requires_grad=True) for i in diff]
        t_out = reference(*xs)
        used = [(o, torch.tensor(c)) for o, c, w in zip(t_out, g, flags, strict=True) if w]
        pulled = tuple(torch.autograd.grad([o for o, _ in used], xs, [c for _, c in used]))
    else:
        t_out, t_vjp_fn = torch.func.vjp(reference, *[torch.tensor(inputs[i]) for i in diff])
        pulled = t_vjp_fn(t64(g))
    wanted_out = tuple(o for o, w in zip(out, flags, strict=True) if w)
    close(wanted_out, tuple(o for o, w in zip(t_out, flags, strict=True) if w), f"{name} outputs")
    close(vjp_fn(g), pulled, f"{name} vjp")


# --- composite functions ---------------------------------------------------------------------------------------------


def mlp_loss(lib: Any, params: dict[str, Any], x: Any, labels: Any) -> Any:
    h = lib.tanh(x @ params["W1"] + params["b1"])
    logits = h @ params["W2"] + params["b2"]
    return lib.mean((logits - labels) ** 2) + 0.01 * lib.sum(params["W1"] ** 2)


@pytest.fixture
def mlp() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    params = {
        "W1": rng.standard_normal((4, 5)) * 0.5,
        "b1": rng.standard_normal(5) * 0.1,
        "W2": rng.standard_normal((5, 3)) * 0.5,
        "b2": np.zeros(3),
    }
    return {"params": params, "x": rng.standard_normal((6, 4)), "labels": rng.standard_normal((6, 3))}


@needs_torch
def test_mlp_loss_of_a_params_dict_matches_torch_func(mlp):
    """The gradient, value and Hessian of an MLP's loss with respect to its params dict, and the Jacobian of its
    logits, as torch.func's."""
    mine_loss = functools.partial(mlp_loss, np)
    theirs_loss = functools.partial(mlp_loss, torch)
    params, x, labels = mlp["params"], mlp["x"], mlp["labels"]
    tp, tx, tl = t64(params), torch.tensor(x), torch.tensor(labels)
    value, gradient = value_and_grad(mine_loss)(params, x, labels)
    t_gradient, t_value = torch.func.grad_and_value(theirs_loss)(tp, tx, tl)
    close((value, gradient), (t_value, t_gradient), "value_and_grad")
    assert isinstance(gradient, dict) and list(gradient) == ["W1", "b1", "W2", "b2"]
    close(hessian(mine_loss)(params, x, labels), torch.func.hessian(theirs_loss)(tp, tx, tl), "hessian")

    def logits(lib: Any, p: dict[str, Any], x: Any) -> Any:
        return lib.tanh(x @ p["W1"] + p["b1"]) @ p["W2"] + p["b2"]

    close(
        jacrev(functools.partial(logits, np), argnums=(0, 1))(params, x),
        torch.func.jacrev(functools.partial(logits, torch), argnums=(0, 1))(tp, tx),
        "jacrev",
    )


def gp_log_marginal_likelihood(lib: Any, hyper: dict[str, Any], x: Any, y: Any) -> Any:
    """A Gaussian process's log marginal likelihood: ``np.*`` and ``np.linalg.*`` calls when ``lib`` is NumPy (on
    Tensors, each dispatched to the op declaring it)."""
    linalg = lib.linalg
    d2 = lib.sum((x[:, None, :] - x[None, :, :]) ** 2, axis=-1)
    k = lib.exp(2 * hyper["log_scale"]) * lib.exp(-0.5 * d2 / lib.exp(2 * hyper["log_length"]))
    k = k + lib.exp(2 * hyper["log_noise"]) * lib.eye(x.shape[0], dtype=x.dtype)
    chol = linalg.cholesky(k)
    alpha = linalg.solve(k, y)
    n = x.shape[0]
    return -0.5 * lib.sum(y * alpha) - lib.sum(lib.log(lib.diagonal(chol))) - 0.5 * n * np.log(2 * np.pi)


@needs_torch
def test_gaussian_process_log_marginal_likelihood_written_with_numpy_matches_torch_func():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((7, 2)), rng.standard_normal(7)
    hyper = {"log_scale": np.array(0.2), "log_length": np.array(-0.1), "log_noise": np.array(-1.0)}
    mine = functools.partial(gp_log_marginal_likelihood, np)
    theirs = functools.partial(gp_log_marginal_likelihood, torch)
    tx, ty = torch.tensor(x), torch.tensor(y)
    close(grad(mine)(hyper, x, y), torch.func.grad(theirs)(t64(hyper), tx, ty), "grad")
    close(hessian(mine)(hyper, x, y), torch.func.hessian(theirs)(t64(hyper), tx, ty), "hessian")
    # with respect to the data too: both arguments, one of them negative
    close(
        grad(mine, argnums=(0, -2))(hyper, x, y),
        torch.func.grad(theirs, argnums=(0, 1))(t64(hyper), tx, ty),
        "argnums=(0, -2)",
    )


# --- conventions -----------------------------------------------------------------------------------------------------

X = np.array([0.3, -1.2, 2.0])
Y = np.array([[0.5, 1.5], [-0.7, 0.2], [1.1, -0.4]])


def f_xy(lib: Any, x: Any, y: Any) -> Any:
    return lib.sum(lib.sin(x) @ y * lib.cos(y[0]))


@needs_torch
@pytest.mark.parametrize("argnums", [0, 1, -1, -2, (0,), (1, 0), (-1, 0)])
def test_argnums_as_torch_func_takes_them(argnums):
    mine = grad(functools.partial(f_xy, np), argnums)(X, Y)
    theirs = torch.func.grad(functools.partial(f_xy, torch), argnums)(torch.tensor(X), torch.tensor(Y))
    close(mine, theirs, str(argnums))
    close(
        jacrev(lambda x, y: np.sin(x) @ y, argnums)(X, Y),
        torch.func.jacrev(lambda x, y: torch.sin(x) @ y, argnums)(torch.tensor(X), torch.tensor(Y)),
    )


@needs_torch
def test_has_aux_returns_aux_as_the_caller_gave_the_inputs():
    def mine(x: Any) -> Any:
        return np.sum(x**3), {"squares": x**2, "note": "kept as is"}

    def theirs(x: Any) -> Any:
        return torch.sum(x**3), {"squares": x**2}

    gradient, aux = grad(mine, has_aux=True)(X)
    t_gradient, t_aux = torch.func.grad(theirs, has_aux=True)(torch.tensor(X))
    close(gradient, t_gradient)
    assert type(aux["squares"]) is np.ndarray and aux["note"] == "kept as is"  # an array: arrays came in
    close(aux["squares"], t_aux["squares"])
    (value, aux), gradient = value_and_grad(mine, has_aux=True)(X)
    assert type(value) is np.ndarray and type(aux["squares"]) is np.ndarray
    _, vjp_fn, aux = vjp(mine, X, has_aux=True)
    assert type(aux["squares"]) is np.ndarray
    close(vjp_fn(np.float64(2.0)), (6 * X**2,))
    jac, aux = jacrev(lambda x: (np.sin(x), x.sum()), has_aux=True)(X)
    close((jac, aux), (np.diag(np.cos(X)), X.sum()))


Pair = namedtuple("Pair", "a b")


@needs_torch
def test_pytrees_of_tuples_lists_dicts_and_named_tuples_in_and_out():
    tree = {"pair": Pair(X, Y), "list": [X * 2, (Y[0],)]}

    def mine(t: Any) -> Any:
        p = t["pair"]
        return {"out": [np.sin(p.a) @ p.b, (t["list"][0] * t["list"][1][0][0],)], "sum": np.sum(p.b)}

    def theirs(t: Any) -> Any:
        p = t["pair"]
        return {"out": [torch.sin(p[0]) @ p[1], (t["list"][0] * t["list"][1][0][0],)], "sum": torch.sum(p[1])}

    t_tree = {"pair": (torch.tensor(X), torch.tensor(Y)), "list": [torch.tensor(X * 2), (torch.tensor(Y[0]),)]}
    out, vjp_fn = vjp(mine, tree)
    t_out, t_vjp_fn = torch.func.vjp(theirs, t_tree)
    close(out, t_out, "output")
    rng = np.random.default_rng(0)
    cts = tree_map(lambda o: rng.standard_normal(np.shape(o)), out)
    (pulled,) = vjp_fn(cts)
    assert isinstance(pulled["pair"], Pair)
    (t_pulled,) = t_vjp_fn(t64(cts))
    mine_pulled = (pulled["pair"].a, pulled["pair"].b, pulled["list"])
    close(mine_pulled, (t_pulled["pair"][0], t_pulled["pair"][1], t_pulled["list"]), "vjp")
    jac = jacrev(mine)(tree)
    t_jac = torch.func.jacrev(theirs)(t_tree)
    close(jac["out"][1][0]["list"], t_jac["out"][1][0]["list"], "jacrev")
    close(tuple(jac["sum"]["pair"]), t_jac["sum"]["pair"], "jacrev")


@needs_torch
def test_grad_of_grad_of_grad_matches_torch_func():
    def f(lib: Any, x: Any) -> Any:
        return lib.sum(lib.sin(x) * lib.exp(x / 3))

    mine = grad(lambda x: np.sum(grad(lambda x: np.sum(grad(functools.partial(f, np))(x) ** 2))(x) * X))(X)
    tf = functools.partial(f, torch)
    tX = torch.tensor(X)
    theirs = torch.func.grad(
        lambda x: torch.sum(torch.func.grad(lambda x: torch.sum(torch.func.grad(tf)(x) ** 2))(x) * tX)
    )(tX)
    close(mine, theirs)
    third = torch.func.grad(torch.func.grad(torch.func.grad(lambda s: s**4 * torch.sin(s))))
    close(grad(grad(grad(lambda s: s**4 * np.sin(s))))(1.5), third(torch.tensor(1.5, dtype=torch.float64)))


@needs_torch
def test_jacrev_of_jacrev_hessian_and_hvp_match_torch_func():
    def f(lib: Any, x: Any) -> Any:
        return lib.sin(x) * lib.sum(x**2)

    tX = torch.tensor(X)
    close(
        jacrev(jacrev(functools.partial(f, np)))(X),
        torch.func.jacrev(torch.func.jacrev(functools.partial(f, torch)))(tX),
    )
    close(hessian(f_xy, argnums=(1, 2))(np, X, Y), torch.func.hessian(f_xy, argnums=(1, 2))(torch, tX, torch.tensor(Y)))
    v, u = np.array([1.0, -2.0, 0.5]), np.ones_like(Y)
    mine = hvp(functools.partial(f_xy, np), (X, Y), (v, u))
    theirs = torch.autograd.functional.hvp(
        functools.partial(f_xy, torch), (tX, torch.tensor(Y)), (torch.tensor(v), torch.tensor(u))
    )
    close(mine, theirs)
    single = hvp(lambda x: np.sum(f(np, x)), X, v)  # one argument, not in a tuple: as torch takes it
    close(single, torch.autograd.functional.hvp(lambda x: torch.sum(f(torch, x)), tX, torch.tensor(v)))


@needs_torch
def test_grad_of_a_function_calling_grad_on_a_closure_is_not_confused():
    """Perturbation confusion (Siskind and Pearlmutter): d/dx [x * d/dy (x + y)] = 1, where a tape that does not
    tell the two derivatives apart says 2. And the inner variable made from the outer one: d/dx [x * d/dy (x y)
    at y = x] = 2x."""
    assert grad(lambda x: x * grad(lambda y: x + y)(1.0))(3.0) == 1.0
    assert grad(lambda x: x * grad(lambda y: x + y)(x))(3.0) == 1.0
    mine = grad(lambda x: x * grad(lambda y: x * y)(x))(3.0)
    theirs = torch.func.grad(lambda x: x * torch.func.grad(lambda y: x * y)(x))(torch.tensor(3.0, dtype=torch.float64))
    close(mine, theirs)

    # an inner jacrev closing over the outer input, and a hessian of something holding an inner grad
    def g(x: Any) -> Any:
        return np.sum(jacrev(lambda y: np.sin(x * y))(x[::-1]))

    def tg(x: Any) -> Any:
        return torch.sum(torch.func.jacrev(lambda y: torch.sin(x * y))(x.flip(0)))

    close(grad(g)(X), torch.func.grad(tg)(torch.tensor(X)))
    close(hessian(g)(X), torch.func.hessian(tg)(torch.tensor(X)))


def test_float32_in_gives_float32_out():
    x32, y32 = X.astype(np.float32), Y.astype(np.float32)
    f = functools.partial(f_xy, np)
    for result in (
        grad(f, (0, 1))(x32, y32),
        value_and_grad(f)(x32, y32),
        jacrev(lambda x: np.sin(x) * 2)(x32),
        hessian(f)(x32, y32),
        hvp(f, (x32, y32), (np.ones(3), np.ones((3, 2))))[1],  # float64 tangents: still float32
        vjp(lambda x: (x * 2, np.sum(x)), x32)[1]((np.ones(3), np.float64(1.0))),  # float64 cotangents too
    ):
        leaves, _ = tree_flatten(result)
        assert all(leaf.dtype == np.float32 for leaf in leaves), [leaf.dtype for leaf in leaves]


def test_arrays_in_arrays_out_and_tensors_in_tensors_out():
    f = functools.partial(f_xy, np)
    for results in (value_and_grad(f, (0, 1))(X, Y), jacrev(f, (0, 1))(X, Y), hvp(f, (X, Y), (X, Y))):
        assert all(type(leaf) is np.ndarray for leaf in tree_flatten(results)[0])
    tx, ty = Tensor(X), Tensor(Y)
    for results in (value_and_grad(f, (0, 1))(tx, ty), jacrev(f, (0, 1))(tx, ty), hvp(f, (tx, ty), (X, Y))):
        leaves = tree_flatten(results)[0]
        assert all(type(leaf) is Tensor and not leaf.requires_grad for leaf in leaves)  # nothing to follow
    close(value_and_grad(f, (0, 1))(tx, ty), value_and_grad(f, (0, 1))(X, Y))


def test_tensors_that_require_gradients_get_results_in_their_graph():
    """Like torch.func on tensors that require grad: the value and the gradient can be differentiated again."""
    x = Tensor(X, requires_grad=True)
    value, gradient = value_and_grad(lambda x: np.sum(x**3))(x)
    assert value.requires_grad and gradient.requires_grad
    (second,) = opreg.grad(np.sum(gradient), [x])
    close(second.data, 6 * X)
    out, vjp_fn = vjp(lambda x: np.sin(x), x)
    (pulled,) = vjp_fn(np.ones(3))
    (mixed,) = opreg.grad(np.sum(pulled * out), [x])
    close(mixed.data, np.cos(X) ** 2 - np.sin(X) ** 2)


def test_under_no_grad_the_gradient_is_computed_and_leaves_no_graph():
    """torch.func: no_grad outside the transform stays outside, for the caller's graph. It used to turn the
    transform's input into a constant, and grad returned zeros."""
    x = Tensor(X, requires_grad=True)
    with opreg.no_grad():
        value, gradient = value_and_grad(lambda x: np.sum(x**3))(x)
        (hv,) = hvp(lambda x: np.sum(x**3), (x,), (np.ones(3),))[1]
    close(gradient.data, 3 * X**2)
    close(hv.data, 6 * X)
    assert not (value.requires_grad or gradient.requires_grad or hv.requires_grad)

    # inside a transform: the inner transform's derivative is not the outer's business
    def f(x: Any) -> Any:
        with opreg.no_grad():
            inner = grad(lambda y: np.sum(y**3))(x)
        return np.sum(inner * x)

    close(grad(f)(X), 3 * X**2)  # inner is a constant of the outer


def test_outputs_that_do_not_depend_on_an_input_give_zeros():
    close(grad(lambda x, y: np.sum(y**2), argnums=(0, 1))(X, Y), (np.zeros(3), 2 * Y))
    close(grad(lambda x: 3.0)(X), np.zeros(3))
    close(jacrev(lambda x, y: y * 2, argnums=0)(X, Y), np.zeros((3, 2, 3)))
    close(vjp(lambda x: (x * 2, np.ones(2)), X)[1]((np.ones(3), np.ones(2))), (2 * np.ones(3),))
    closed = Tensor(Y, requires_grad=True)
    close(grad(lambda x: np.sum(closed * 2))(X), np.zeros(3))  # a closure's Tensor: not an input
    assert closed.grad is None


def test_keyword_arguments_are_passed_through():
    close(grad(lambda x, *, scale: np.sum(x**2) * scale)(X, scale=3.0), 6 * X)


# --- the floor: a nested transform does not walk the enclosing graph ---------------------------------------------


def test_a_nested_transform_walks_only_its_own_graph(monkeypatch):
    """The inner grad differentiates y * h, where h is a chain of 50 ops of the outer input: its backward pass
    walks y's lift, the product and the sum, never the chain (walking it would not change the answer, only cost)."""
    walked: list[int] = []
    order = opreg.tensor._topological_order

    def counting(root: Any, floor: int = 0) -> Any:
        leaves, made = order(root, floor)
        walked.append(len(made))
        return leaves, made

    monkeypatch.setattr(opreg.tensor, "_topological_order", counting)

    def outer(x: Any) -> Any:
        h = x
        for _ in range(50):
            h = np.sin(h)
        walked.clear()
        inner = grad(lambda y: np.sum(y * h))(x)
        assert walked == [3]  # positive (y's lift), mul, sum
        return np.sum(inner)

    close(grad(outer)(X), _chain_derivative(X, 50))
    assert walked[-1] > 50  # the outer pass walks the chain


def _chain_derivative(x: np.ndarray, n: int) -> np.ndarray:
    d = np.ones_like(x)
    for _ in range(n):
        d, x = d * np.cos(x), np.sin(x)
    return d


def test_a_caller_tensor_changed_in_place_before_vjp_fn_is_still_caught():
    x = Tensor(X.copy(), requires_grad=True)
    _, vjp_fn = vjp(lambda x: np.sum(x * x), x)
    with opreg.no_grad():
        x.data += 1
    with pytest.raises(opreg.ModifiedInPlaceError, match=r"op 'positive'"):
        vjp_fn(1.0)
    x = Tensor(X.copy(), requires_grad=True)
    h = x * 2
    _, vjp_fn = vjp(lambda y: np.sum(y * h), X)
    h.data += 1  # h's array, which mul's backward reads: an edit through opreg
    with pytest.raises(opreg.ModifiedInPlaceError, match=r"op 'mul'"):
        vjp_fn(1.0)


def test_a_raw_write_is_caught_in_checking_mode():
    a = X.copy()
    with opreg.checking():
        _, vjp_fn = vjp(lambda x: np.sum(np.exp(x)), a)
    a[0] = 5.0  # the lifted leaf shares the caller's array
    with pytest.raises(opreg.ModifiedInPlaceError):
        vjp_fn(1.0)


# --- a VJP differentiated with respect to its cotangent (forward mode's trick) ---------------------------------------


def test_a_vjp_differentiated_with_respect_to_its_cotangent_gives_the_jvp():
    """vjp_fn is linear in its cotangent u, and d<vjp_fn(u), v>/du = J v. A cotangent in another dtype than the
    output is cast by a recorded op; it used to be replaced by a constant, and J v was 0."""

    def f(x: Any) -> Any:
        return np.sin(x) * x[0]

    jac = jacrev(f)(X)
    v = np.array([1.0, 2.0, 3.0])
    for dtype in (np.float64, np.float32):
        _, vjp_fn = vjp(f, X)
        _, transpose = vjp(lambda u, vjp_fn=vjp_fn: vjp_fn(u)[0], np.zeros(3, dtype=dtype))
        (jv,) = transpose(v)
        assert jv.dtype == dtype
        np.testing.assert_allclose(jv, jac @ v, rtol=1e-6 if dtype == np.float32 else 1e-12)


# --- errors ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: grad(np.sum)(np.array([1, 2, 3])), r"grad: argument 0 is an array of int64 \(3,\), which has no deri"),
        (
            lambda: grad(lambda p: np.sum(p["w"]))({"w": np.ones(2, dtype=bool)}),
            r"argument 0\['w'\] is an array of bool",
        ),
        (lambda: vjp(lambda a, b: a, X, [X, 3]), r"vjp: primal 1\[1\] is an array of int64 \(\)"),
        (lambda: grad(lambda d: 1.0)(OrderedDict(a=X)), r"argument 0 is a OrderedDict, neither an array nor a tuple"),
        (lambda: grad(lambda x: x)(X), r"returned an array of shape \(3,\); use vjp or jacrev"),
        (
            lambda: grad(lambda x: (np.sum(x), 1))(X),
            r"returned a tuple; .* or return \(scalar, aux\) with has_aux=True",
        ),
        (lambda: grad(lambda x: np.sum(x), has_aux=True)(X), r"grad\(has_aux=True\): .* must return \(output, aux\)"),
        (lambda: grad(lambda x, y: 0.0, argnums=(0, -2))(X, X), r"argnums=\(0, -2\) names an argument twice"),
        (lambda: grad(lambda x: 0.0, argnums=1)(X), r"names argument 1, and the function was given 1 positional"),
        (lambda: grad(lambda x: 0.0, argnums=True)(X), r"argnums must be an int or a non-empty tuple of ints"),
        (lambda: vjp(np.sin, X)[1](np.ones(2)), r"vjp_fn: the cotangent has shape \(2,\), and the output it stands"),
        (lambda: vjp(lambda x: (x, x), X)[1]((X, X[:2])), r"the cotangent\[1\] has shape \(2,\)"),
        (
            lambda: vjp(lambda x: (x, x), X)[1]([X, X]),
            r"the cotangents nest as \[\*, \*\], and .* output as \(\*, \*\)",
        ),
        (lambda: vjp(np.sum, X)[1](None), r"the cotangent is a NoneType; pass an array of its output's shape \(\)"),
        (lambda: vjp(np.sin, X)[1](X * 1j), r"the cotangent is an array of complex128 \(3,\)"),
        (lambda: hvp(np.sum, (X,), (X[:, None],)), r"hvp: the tangent\[0\] has shape \(3, 1\), and its primal"),
        (lambda: hvp(np.sum, (X,), ([X],)), r"hvp: the tangents nest as \(\[\*\],\), and the primals as \(\*,\)"),
    ],
)
def test_errors_name_the_transform_the_argument_and_what_to_do(call, message):
    with pytest.raises(opreg.OpUsageError, match=message):
        call()


# --- properties ------------------------------------------------------------------------------------------------------

leaves_ = hnp.arrays(np.float64, hnp.array_shapes(max_dims=2, max_side=3), elements=st.floats(-10, 10))
trees = st.recursive(
    leaves_ | st.none(),
    lambda children: (
        st.tuples(children, children)
        | st.lists(children, max_size=3)
        | st.dictionaries(st.text("abc", min_size=1, max_size=2), children, max_size=3)
        | st.builds(Pair, children, children)
    ),
    max_leaves=8,
)


@settings(max_examples=testing.examples(60), deadline=None)
@given(trees)
def test_a_tree_flattened_and_rebuilt_is_the_tree(tree):
    leaves, spec = tree_flatten(tree)
    rebuilt = tree_unflatten(spec, leaves)
    assert tree_flatten(rebuilt)[1] == spec and len(leaves) == spec.num_leaves == len(spec.paths())
    assert all(a is b for a, b in zip(tree_flatten(rebuilt)[0], leaves, strict=True))
    assert type(rebuilt) is type(tree)
    with pytest.raises(ValueError, match="tree_unflatten"):
        tree_unflatten(spec, [*leaves, None])


@settings(max_examples=testing.examples(25), deadline=None)
@given(
    hnp.arrays(np.float64, hnp.array_shapes(max_dims=2, max_side=3), elements=st.floats(-2, 2)),
    hnp.arrays(np.float64, hnp.array_shapes(max_dims=2, max_side=3), elements=st.floats(-2, 2)),
)
def test_jacrev_matches_central_differences(a, b):
    """jacrev of a function of two arrays with broadcasting, reductions and a product, on random small shapes."""

    def f(x: Any, y: Any) -> Any:
        return (np.tanh(x) * np.sum(y**2) + np.sum(np.sin(x * 0.5))) * np.exp(np.mean(y) * 0.3)

    jx, jy = jacrev(f, argnums=(0, 1))(a, b)
    out = f(a, b)
    for arg, jac in ((0, jx), (1, jy)):
        x = (a, b)[arg]
        numeric = np.zeros(out.shape + x.shape)
        for i in np.ndindex(*x.shape):
            e = np.zeros_like(x)
            e[i] = 1e-6
            plus = f(*[x + e if k == arg else (a, b)[k] for k in range(2)])
            minus = f(*[x - e if k == arg else (a, b)[k] for k in range(2)])
            numeric[(..., *i)] = (plus - minus) / 2e-6
        np.testing.assert_allclose(jac, numeric, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: jacrev(lambda x, n: x * n, argnums=1)(X, np.arange(3)), r"^jacrev: argument 1 is an array of int64"),
        (lambda: hessian(lambda x: np.sum(x**2))(np.arange(3)), r"^hessian: argument 0 is an array of int64"),
        (lambda: jacrev(np.sin, has_aux=True)(X), r"^jacrev\(has_aux=True\)"),
        (lambda: hvp(np.sum, (np.arange(3),), (X,)), r"^hvp: primal 0 is an array of int64"),
        (lambda: hvp(lambda x: x, (X,), (X,)), r"^hvp: .*<lambda> must return a scalar"),
    ],
)
def test_errors_name_the_transform_the_caller_called(call, message):
    """jacrev, hessian and hvp are built on vjp and grad; their errors name them, not the transform underneath."""
    with pytest.raises(opreg.OpUsageError, match=message):
        call()


def test_a_tree_spec_made_by_hand_counts_its_leaves():
    """A spec another module builds (an in_axes tree) counts its leaves as a flattened one does."""
    spec = TreeSpec("tuple", (LEAF, TreeSpec("list", (LEAF, LEAF)), TreeSpec("dict", (), ())))
    assert spec.num_leaves == 3 and spec == tree_flatten((1, [2, 3], {}))[1]
    assert tree_unflatten(spec, [1, 2, 3]) == (1, [2, 3], {})


# --- random programs: the graph fuzzer's, run as functions of their leaves -------------------------------------------


def as_function(program: Any) -> tuple[Any, list[np.ndarray]]:
    """The fuzzer's program (tests/test_graph_fuzz.py) as a function of its leaves, and their values."""
    body = "\n".join(program.lines)
    values: list[np.ndarray] = []

    def run(leaf: Any) -> Any:
        namespace = {"ops": ops, "inf": np.inf, "leaf": leaf, "const": lambda v: np.array(v, dtype=np.float64)}
        exec(body, namespace)
        return namespace["loss"]

    run(lambda v: values.append(np.array(v, dtype=np.float64)) or values[-1])

    def f(*leaves: Any) -> Any:
        given = iter(leaves)
        return run(lambda v: next(given))

    return f, values


@settings(max_examples=testing.examples(40), deadline=None, suppress_health_check=list(HealthCheck))
@given(program=programs())
def test_random_programs_grad_and_grad_of_grad_match_tensor_backward(program):
    """grad, and grad of <grad, v>, of random programs of built-in ops equal what opreg.grad gives on Tensors
    (itself checked against torch by the graph fuzzer)."""
    f, values = as_function(program)
    argnums = tuple(range(len(values)))
    directions = [np.full_like(v, 0.5) for v in values]

    def directional(*xs: Any) -> Any:
        return sum(np.sum(g * d) for g, d in zip(grad(f, argnums)(*xs), directions, strict=True))

    firsts, seconds = grad(f, argnums)(*values), grad(directional, argnums)(*values)
    tensors = [Tensor(v.copy(), requires_grad=True) for v in values]
    expected = opreg.grad(f(*tensors), tensors, create_graph=True)
    total = sum(ops.sum(g * d) for g, d in zip(expected, directions, strict=True) if g is not None)
    expected_seconds = opreg.grad(total, tensors) if getattr(total, "requires_grad", False) else [None] * len(values)
    for mine, theirs in ((firsts, expected), (seconds, expected_seconds)):
        for a, b in zip(mine, theirs, strict=True):
            b = np.zeros_like(a) if b is None else b.data
            scale = max(1.0, float(np.abs(b[np.isfinite(b)]).max(initial=0.0)))
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11 * scale, err_msg="\n".join(program.lines))
