"""Forward mode, ``opreg.func.jvp``, ``jacfwd`` (``jacobian``) and ``hessian``, against ``torch.func``'s in
float64 to 1e-10: built-in ops with and without a declared ``jvp`` rule, an op with several outputs, composites (an
MLP loss, a Gaussian-process log-likelihood written with ``np.*`` on Tensors), pytrees, ``has_aux``, ``argnums``,
nesting (``grad`` of a ``jvp``, ``jvp`` of a ``grad``), a plugin op with no ``jvp`` rule, and the errors.

Each function is written once as ``f(x, np)``, run with NumPy (on opreg's Tensors) and with a torch namespace.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import opreg
from opreg import NotComposableError, OpUsageError, Tensor
from opreg import func as ofunc
from opreg.opcheck import check_op

from torch_reference import ALL_BUILTIN_OPS, NO_GRADIENT_OPS, REGISTRY, needs_torch, torch, torch_reference

TOL = {"rtol": 1e-10, "atol": 1e-12}


def close(actual: Any, expected: Any) -> None:
    """Two trees of the same structure, arrays against torch tensors (or arrays), to 1e-10."""
    a_leaves, a_spec = ofunc.tree_flatten(actual)
    e_leaves, e_spec = ofunc.tree_flatten(expected)
    assert a_spec == e_spec
    for a, e in zip(a_leaves, e_leaves, strict=True):
        a = a.data if isinstance(a, Tensor) else np.asarray(a)
        if torch is not None and isinstance(e, torch.Tensor):
            e = e.detach().numpy(force=True)  # force: torch's ZeroTensors
        e = np.asarray(e)
        assert a.shape == e.shape and a.dtype == np.float64, (a.shape, e.shape, a.dtype)
        np.testing.assert_allclose(a, e, **TOL)


def t(x: Any) -> Any:
    return ofunc.tree_map(lambda leaf: torch.tensor(np.asarray(leaf)), x)


#: torch under the NumPy names the functions below use.
TNP = None if torch is None else SimpleNamespace(
    sin=torch.sin, exp=torch.exp, tanh=torch.tanh, log=torch.log, sum=torch.sum, sqrt=torch.sqrt,
    maximum=torch.maximum, linalg=SimpleNamespace(
        cholesky=torch.linalg.cholesky, slogdet=torch.linalg.slogdet, solve=torch.linalg.solve,
        eigh=torch.linalg.eigh,
    ),
    mean=lambda x, axis=None: x.mean() if axis is None else x.mean(dim=axis),
    transpose=lambda x: x.mT,
    max=lambda x, axis: torch.amax(x, dim=axis), prod=lambda x, axis: torch.prod(x, dim=axis),
)  # fmt: skip


def _elementwise(x: Any, lib: Any) -> Any:
    return lib.sin(x) * lib.exp(-x * x) + lib.tanh(x) ** 3 / (x * x + 1.0)


def _products(x: Any, lib: Any) -> Any:
    return lib.tanh(x @ lib.transpose(x))[1:, [2, 0, 1]].reshape(-1) + lib.sum(x, axis=0).mean()


def _reductions(x: Any, lib: Any) -> Any:
    return lib.max(lib.sqrt(x * x + 1.0), axis=1) - lib.prod(x**2, axis=0)[:3]  # max, prod, pow: derived rules


def _several_outputs(x: Any, lib: Any) -> Any:
    a = x @ lib.transpose(x) + 4.0 * np.eye(3)
    sign, logdet = lib.linalg.slogdet(a)
    values, vectors = lib.linalg.eigh(a)
    return logdet * values + lib.sum(vectors * vectors * values, axis=0) + sign


def _several_outputs_torch(x: Any) -> Any:
    a = x @ x.mT + 4.0 * torch.eye(3, dtype=torch.float64)
    sign, logdet = torch.linalg.slogdet(a)
    values, vectors = torch.linalg.eigh(a)
    return logdet * values + torch.sum(vectors * vectors * values, dim=0) + sign


#: Each function on opreg (NumPy on Tensors) and on torch.
FUNCTIONS = {
    "elementwise": (lambda x: _elementwise(x, np), lambda x: _elementwise(x, TNP)),
    "products": (lambda x: _products(x, np), lambda x: _products(x, TNP)),
    "reductions": (lambda x: _reductions(x, np), lambda x: _reductions(x, TNP)),
    "several_outputs": (lambda x: _several_outputs(x, np), _several_outputs_torch),
}


@needs_torch
@pytest.mark.parametrize("name", FUNCTIONS)
def test_jvp_and_jacfwd_match_torch(name):
    mine, theirs = FUNCTIONS[name]
    rng = np.random.default_rng(0)
    x, v = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    close(ofunc.jvp(mine, (x,), (v,)), torch.func.jvp(theirs, (t(x),), (t(v),)))
    close(ofunc.jacfwd(mine)(x), torch.func.jacfwd(theirs)(t(x)))


def _mlp_loss(params: dict, x: Any, y: Any, lib: Any) -> Any:
    hidden = lib.tanh(x @ lib.transpose(params["w1"]) + params["b1"])
    logits = hidden @ lib.transpose(params["w2"]) + params["b2"]
    return lib.mean(lib.log(lib.sum(lib.exp(logits), axis=1)) - lib.sum(logits * y, axis=1))


def _mlp_case() -> tuple[dict, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    params = {
        "w1": rng.standard_normal((5, 4)) * 0.5,
        "b1": rng.standard_normal(5) * 0.1,
        "w2": rng.standard_normal((3, 5)) * 0.5,
        "b2": rng.standard_normal(3) * 0.1,
    }
    return params, rng.standard_normal((6, 4)), np.eye(3)[rng.integers(0, 3, 6)]


@needs_torch
def test_an_mlp_loss_jvp_jacfwd_and_hessian_match_torch():
    params, x, y = _mlp_case()
    rng = np.random.default_rng(2)
    tangents = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    mine = ofunc.jvp(lambda p: _mlp_loss(p, x, y, np), (params,), (tangents,))
    theirs = torch.func.jvp(lambda p: _mlp_loss(p, t(x), t(y), TNP), (t(params),), (t(tangents),))
    close(mine, theirs)
    jacobian = ofunc.jacfwd(_mlp_loss, argnums=(0, 1))(params, x, y, np)
    close(jacobian, torch.func.jacfwd(_mlp_loss, argnums=(0, 1))(t(params), t(x), t(y), TNP))
    hessian = ofunc.hessian(lambda b2, w2: _mlp_loss({**params, "b2": b2, "w2": w2}, x, y, np), argnums=(0, 1))
    expected = torch.func.hessian(
        lambda b2, w2: _mlp_loss({**t(params), "b2": b2, "w2": w2}, t(x), t(y), TNP), argnums=(0, 1)
    )
    close(hessian(params["b2"], params["w2"]), expected(t(params["b2"]), t(params["w2"])))


def _gp_log_likelihood(log_scale: Any, points: Any, targets: Any, lib: Any) -> Any:
    """A Gaussian process's log marginal likelihood: an RBF kernel, its Cholesky factor, a solve and a slogdet."""
    differences = points[:, None, :] - points[None, :, :]
    kernel = lib.exp(-lib.sum(differences**2, axis=-1) / (2 * lib.exp(2 * log_scale))) + 0.5 * EYE[lib is TNP]
    factor = lib.linalg.cholesky(kernel)
    alpha = lib.linalg.solve(kernel, targets)
    _, logdet = lib.linalg.slogdet(kernel)
    return -0.5 * lib.sum(targets * alpha) - 0.5 * logdet + 0.0 * lib.sum(factor)


EYE = {False: np.eye(5), True: None}


@needs_torch
def test_a_numpy_heavy_function_matches_torch():
    EYE[True] = torch.eye(5, dtype=torch.float64)
    rng = np.random.default_rng(3)
    log_scale, points, targets = np.array(0.3), rng.standard_normal((5, 2)), rng.standard_normal(5)
    args, torch_args = (log_scale, points, targets, np), (t(log_scale), t(points), t(targets), TNP)
    tangent = np.array(0.7)
    mine = ofunc.jvp(lambda s: _gp_log_likelihood(s, *args[1:]), (log_scale,), (tangent,))
    close(mine, torch.func.jvp(lambda s: _gp_log_likelihood(s, *torch_args[1:]), (t(log_scale),), (t(tangent),)))
    close(ofunc.jacfwd(_gp_log_likelihood, argnums=(0, 1))(*args),
          torch.func.jacfwd(_gp_log_likelihood, argnums=(0, 1))(*torch_args))  # fmt: skip
    close(ofunc.hessian(_gp_log_likelihood)(*args), torch.func.hessian(_gp_log_likelihood)(*torch_args))


@needs_torch
def test_pytrees_has_aux_and_jacobian_alias():
    rng = np.random.default_rng(4)
    a, b, v = rng.standard_normal(3), rng.standard_normal((2, 3)), rng.standard_normal(3)

    def f(pair, c):
        x, ys = pair
        out = {"s": np.sin(x) * c, "p": [ys[0] * x, np.exp(ys[1])]}
        return out, np.sum(x)

    def tf(pair, c):
        x, ys = pair
        out = {"s": torch.sin(x) * c, "p": [ys[0] * x, torch.exp(ys[1])]}
        return out, torch.sum(x)

    primals, tangents = ((a, [b[0], b[1]]), 2.0), ((v, [v, -v]), 1.0)
    out, tangent, aux = ofunc.jvp(f, primals, tangents, has_aux=True)
    expected = torch.func.jvp(tf, t(primals), t(tangents), has_aux=True)
    close((out, tangent, aux), expected)
    assert ofunc.jacobian is ofunc.jacfwd
    jac, aux = ofunc.jacobian(f, has_aux=True)((a, [b[0], b[1]]), 2.0)
    close((jac, aux), torch.func.jacfwd(tf, has_aux=True)(t((a, [b[0], b[1]])), 2.0))


@needs_torch
def test_nesting_grad_of_jvp_and_jvp_of_grad_match_torch():
    rng = np.random.default_rng(5)
    x, v = rng.standard_normal(4), rng.standard_normal(4)

    def f(x, lib):
        return lib.sum(lib.tanh(x) * lib.exp(x[[3, 2, 1, 0]]) * x)

    through_jvp = ofunc.grad(lambda x: ofunc.jvp(lambda y: f(y, np), (x,), (v,))[1])(x)
    torch_jvp = torch.func.grad(lambda x: torch.func.jvp(lambda y: f(y, TNP), (x,), (t(v),))[1])(t(x))
    close(through_jvp, torch_jvp)
    forward_over_reverse = ofunc.jvp(ofunc.grad(lambda y: f(y, np)), (x,), (v,))[1]
    close(forward_over_reverse, torch.func.jvp(torch.func.grad(lambda y: f(y, TNP)), (t(x),), (t(v),))[1])
    close(ofunc.jacfwd(ofunc.jacfwd(lambda y: f(y, np)))(x), torch.func.hessian(lambda y: f(y, TNP))(t(x)))


def test_tensors_in_give_tensors_out_and_no_grad_around_keeps_them_out_of_the_graph():
    """As torch.func's: no_grad around a transform does not stop it computing, and its results record nothing."""
    x = Tensor(np.linspace(0.1, 1.0, 4), requires_grad=True)
    v = np.ones(4)
    with opreg.no_grad():
        out, tangent = ofunc.jvp(lambda y: np.sum(np.sin(y) ** 2), (x,), (v,))
    assert isinstance(out, Tensor) and isinstance(tangent, Tensor)
    assert not tangent.requires_grad and not out.requires_grad
    np.testing.assert_allclose(tangent.data, np.sum(2 * np.sin(x.data) * np.cos(x.data)), **TOL)
    out, tangent = ofunc.jvp(lambda y: np.sum(np.sin(y) ** 2), (x,), (v,))
    (second,) = opreg.grad(tangent, [x])  # the tangent is in x's graph: d/dx of sum(sin(2x)) along ones
    np.testing.assert_allclose(second.data, 2 * np.cos(2 * x.data), **TOL)
    _, tangent = ofunc.jvp(lambda y: np.sum(y * 0.0 + 1.0), (np.ones(2),), (np.ones(2),))
    assert isinstance(tangent, np.ndarray) and tangent == 0.0


def _swish(x, *, beta=1.0):
    return x / (1 + np.exp(-beta * x))


def _swish_backward(g, x, *, output, beta):
    s = 1 / (1 + np.exp(-beta * x))
    return (g * (beta * output + s * (1 - beta * output)),)


@needs_torch
def test_a_plugin_op_without_jvp_works_under_jvp_jacfwd_and_hessian(install_ops):
    """CONTRIBUTING's swish, registered in-process with no jvp rule: forward mode derived from its backward."""
    install_ops({"name": "swish", "inputs": ("x",), "forward": _swish, "backward": _swish_backward}, name="my-swish")
    swish = opreg.ops.swish
    rng = np.random.default_rng(6)
    x, v = rng.standard_normal(4), rng.standard_normal(4)

    def torch_swish(x):
        return x * torch.sigmoid(2.0 * x)

    close(ofunc.jvp(lambda y: swish(y, beta=2.0), (x,), (v,)), torch.func.jvp(torch_swish, (t(x),), (t(v),)))
    close(ofunc.jacfwd(lambda y: swish(y, beta=2.0))(x), torch.func.jacfwd(torch_swish)(t(x)))
    close(
        ofunc.hessian(lambda y: np.sum(swish(y, beta=2.0) ** 2))(x),
        torch.func.hessian(lambda y: torch.sum(torch_swish(y) ** 2))(t(x)),
    )
    report = check_op("swish")
    assert any(c.what.startswith("jvp: <J v, u>") for s in report.samples for c in s.comparisons)


def _ramp(x):
    return x * np.heaviside(x, 0.5)


def test_a_backward_that_does_not_compose_is_an_error_naming_the_op_where_needed(install_ops):
    """A backward with NumPy's heaviside serves first-order forward mode on arrays (its x is a constant there); a
    nested jvp, which differentiates it, raises naming the op."""
    install_ops(
        {"name": "ramp", "inputs": ("x",), "forward": _ramp, "backward": lambda g, x: (g * np.heaviside(x, 0.5),)},
        name="my-ops",
    )
    x, v = np.array([-1.0, 2.0, 3.0]), np.array([1.0, 1.0, 2.0])
    _, tangent = ofunc.jvp(opreg.ops.ramp, (x,), (v,))
    np.testing.assert_array_equal(tangent, [0.0, 1.0, 2.0])
    with pytest.raises(NotComposableError, match=r"op 'ramp' \(plugin 'my-ops'\) declares no jvp rule"):
        ofunc.grad(lambda y: np.sum(ofunc.jvp(opreg.ops.ramp, (y,), (v,))[1]))(x)
    report = check_op("ramp")  # forward mode on arrays needs backward linear in g only: checked
    assert any(c.what.startswith("jvp: <J v, u>") for c in report.samples[0].comparisons)


def test_a_wrong_jvp_rule_fails_check_op_naming_it(install_ops):
    install_ops(
        {
            "name": "cube",
            "inputs": ("x",),
            "forward": lambda x: x**3,
            "backward": lambda g, x: (3 * g * x**2,),
            "jvp": lambda t, x: 2 * t[0] * x**2,
        },
        name="buggy-ops",
    )
    with pytest.raises(opreg.GradcheckError, match=r"^jvp of op 'cube' \(plugin 'buggy-ops'\): the tangent"):
        check_op("cube")


def test_jvp_errors_name_the_transform_and_the_input():
    with pytest.raises(OpUsageError, match=r"jvp: primals and tangents must be tuples"):
        ofunc.jvp(np.sin, np.ones(2), np.ones(2))
    with pytest.raises(OpUsageError, match=r"jvp: tangent leaf 0 has shape \(3,\), and its primal has shape \(2,\)"):
        ofunc.jvp(np.sin, (np.ones(2),), (np.ones(3),))
    with pytest.raises(OpUsageError, match=r"jacfwd: argument 0 is an array of int64 \(2,\)"):
        ofunc.jacfwd(np.sin)(np.ones(2, dtype=np.int64))
    with pytest.raises(opreg.RegistrationError, match=r"jvp asks for needs_grad"):
        opreg.register_plugin(_JvpAsking(), name="asking")


class _JvpAsking:
    @opreg.hookimpl
    def opreg_register_ops(self, register):
        register(
            name="asking",
            inputs=("x",),
            forward=np.sin,
            backward=lambda g, x: (g * np.cos(x),),
            jvp=lambda t, x, *, needs_grad: t[0],
        )


# --- every built-in op's forward mode against torch.func.jvp on its declared reference -----------------------------


@needs_torch
@pytest.mark.parametrize("name", ALL_BUILTIN_OPS, ids=str)
def test_every_builtin_op_jvp_matches_torch(name):
    """``jvp`` of each built-in op (its declared rule, or the one derived from its backward) on its own samples,
    along random tangents of its differentiable inputs, equals ``torch.func.jvp`` of its declared reference."""
    op, reference = REGISTRY[name], torch_reference(name)
    rng = np.random.default_rng(11)
    for sample in op.samples(rng):
        inputs = [np.asarray(x, dtype=np.float64) for x in sample.inputs]
        positions = [i for i, d in enumerate(op.differentiable_for(len(inputs))) if d]
        tangents = tuple(rng.standard_normal(inputs[i].shape) for i in positions)
        mine = _of_differentiable(getattr(opreg.ops, name), inputs, positions, sample.attributes)
        mine_out = ofunc.jvp(mine, tuple(inputs[i] for i in positions), tangents)
        torch_inputs = [torch.tensor(x) for x in inputs]
        theirs = _of_differentiable(reference, torch_inputs, positions, sample.attributes)
        primals = tuple(torch_inputs[i] for i in positions)
        try:
            expected = torch.func.jvp(theirs, primals, t(tangents))
        except RuntimeError:  # no forward-mode formula in torch (eigh, qr, svd, partition): its double backward
            expected = torch.autograd.functional.jvp(theirs, primals, t(tangents))
        close(mine_out, expected)


@needs_torch
@pytest.mark.parametrize("name", [n for n in ALL_BUILTIN_OPS if n not in NO_GRADIENT_OPS], ids=str)
def test_every_builtin_op_grad_of_jvp_matches_torch(name):
    """Forward mode recorded, as in a nested transform: the gradient of ``<w, J v>`` in the op's inputs, where
    ``J v`` is ``jvp`` of the op (its rule, or the derived one, run on Tensors), against torch's double backward;
    on the op's first sample."""
    op, reference = REGISTRY[name], torch_reference(name)
    rng = np.random.default_rng(12)
    sample = op.samples(rng)[0]
    inputs = [np.asarray(x, dtype=np.float64) for x in sample.inputs]
    positions = [i for i, d in enumerate(op.differentiable_for(len(inputs))) if d]
    tangents = tuple(rng.standard_normal(inputs[i].shape) for i in positions)
    mine = _of_differentiable(getattr(opreg.ops, name), inputs, positions, sample.attributes)
    weights = ofunc.tree_map(lambda o: rng.standard_normal(np.shape(o)), mine(*(inputs[i] for i in positions)))

    def weighted(jv: Any, lib: Any, ws: Any) -> Any:
        pairs = zip(ofunc.tree_flatten(jv)[0], ofunc.tree_flatten(ws)[0], strict=True)
        return sum(lib.sum(a * b) for a, b in pairs)

    argnums = tuple(range(len(positions)))
    gradient = ofunc.grad(lambda *xs: weighted(ofunc.jvp(mine, xs, tangents)[1], np, weights), argnums)(
        *(inputs[i] for i in positions)
    )
    xs = tuple(torch.tensor(inputs[i], requires_grad=True) for i in positions)
    theirs = _of_differentiable(reference, [torch.tensor(x) for x in inputs], positions, sample.attributes)
    _, jv = torch.autograd.functional.jvp(theirs, xs, t(tangents), create_graph=True)
    total = weighted(jv, torch, t(weights))
    if total.requires_grad:
        expected = torch.autograd.grad(total, xs, allow_unused=True, materialize_grads=True)
    else:  # J v does not depend on the inputs (a linear op)
        expected = tuple(torch.zeros_like(x) for x in xs)
    close(gradient, expected)


def _of_differentiable(function: Any, inputs: list[Any], positions: list[int], attributes: dict) -> Any:
    """``function`` of the inputs at ``positions``, the others fixed; torch's named tuples as tuples."""

    def of(*values: Any) -> Any:
        full = list(inputs)
        for i, v in zip(positions, values, strict=True):
            full[i] = v
        result = function(*full, **attributes)
        return tuple(result) if isinstance(result, tuple) else result

    return of


def test_a_jvp_rule_that_leaves_the_graph_fails_check_op(install_ops):
    """A rule computing from ``constant(x)`` gives first-order tangents right and nested transforms wrong ones:
    check_op differentiates the rule on Tensors, and names it."""
    install_ops(
        {
            "name": "my_sin",
            "inputs": ("x",),
            "forward": np.sin,
            "backward": lambda g, x: (g * np.cos(x),),
            "jvp": lambda t, x: t[0] * np.cos(opreg.plugin.constant(x)),
        },
        name="my-ops",
    )
    with pytest.raises(opreg.GradcheckError, match=r"^jvp of op 'my_sin' .*: the derivative of its jvp rule run on"):
        check_op("my_sin")


@needs_torch
def test_the_contributing_tutorials_op_works_under_jvp_jacfwd_and_hessian(site):
    """CONTRIBUTING's swish, installed from the document as a package, declares no jvp rule."""
    from test_contributing import tutorial_names, tutorial_section_block

    op_name, plugin, module_name, dist, version = tutorial_names()
    site.install(dist, module_name, tutorial_section_block("python"), entry_point=plugin, version=version)
    opreg.reload_plugins()
    op = getattr(opreg.ops, op_name)
    assert opreg.get_registry()[op_name].jvp is None
    rng = np.random.default_rng(7)
    x, v = rng.standard_normal(5), rng.standard_normal(5)

    def torch_swish(y):
        return y * torch.sigmoid(2.0 * y)

    close(ofunc.jvp(lambda y: op(y, beta=2.0), (x,), (v,)), torch.func.jvp(torch_swish, (t(x),), (t(v),)))
    close(ofunc.jacfwd(lambda y: op(y, beta=2.0))(x), torch.func.jacfwd(torch_swish)(t(x)))
    close(
        ofunc.hessian(lambda y: np.sum(op(y, beta=2.0) * np.sin(y)))(x),
        torch.func.hessian(lambda y: torch.sum(torch_swish(y) * torch.sin(y)))(t(x)),
    )


@needs_torch
def test_a_jvp_rule_of_an_op_with_several_outputs(install_ops):
    """A rule returns one tangent per output; check_op checks it, and jvp and hessian use it."""
    install_ops(
        {
            "name": "sincos",
            "inputs": ("x",),
            "outputs": ("s", "c"),
            "forward": lambda x: (np.sin(x), np.cos(x)),
            "backward": lambda g, x: (g[0] * np.cos(x) - g[1] * np.sin(x),),
            "jvp": lambda t, x, *, output: (t[0] * output[1], -t[0] * output[0]),
        },
        name="my-ops",
    )
    report = check_op("sincos")
    assert any("jvp rule run on Tensors" in c.what for s in report.samples for c in s.comparisons)
    rng = np.random.default_rng(8)
    x, v = rng.standard_normal(3), rng.standard_normal(3)

    def f(y):
        s, c = opreg.ops.sincos(y)
        return s * c[::-1] + c

    def tf(y):
        return torch.sin(y) * torch.cos(y.flip(0)) + torch.cos(y)

    close(ofunc.jvp(f, (x,), (v,)), torch.func.jvp(tf, (t(x),), (t(v),)))
    close(ofunc.hessian(lambda y: np.sum(f(y) ** 2))(x), torch.func.hessian(lambda y: torch.sum(tf(y) ** 2))(t(x)))


def test_identity_and_constant_outputs():
    x, v = np.arange(3.0), np.ones(3)
    out, tangent = ofunc.jvp(lambda y: (y, np.ones(2)), (x,), (v,))
    np.testing.assert_array_equal(out[0], x)
    np.testing.assert_array_equal(tangent[0], v)
    np.testing.assert_array_equal(tangent[1], np.zeros(2))
    np.testing.assert_array_equal(ofunc.jacfwd(lambda y: y)(x), np.eye(3))


def test_an_array_changed_in_place_after_it_was_recorded_is_an_error():
    """Forward mode reads the recorded arrays, as backward does: one changed since raises rather than giving a
    tangent at other values."""

    def f(x):
        y = x * 2.0
        z = np.sin(y)
        with opreg.no_grad():
            y.data += 1.0
        return z

    with pytest.raises(opreg.ModifiedInPlaceError, match=r"op 'sin' .*: input 0 'x' float64 \(2,\)"):
        ofunc.jvp(f, (np.ones(2),), (np.ones(2),))
