"""opreg.func.vmap against torch.func.vmap and against loops over the examples, in float64 to 1e-10: every op
with a batching rule, per-example gradients (the point of it), and vmap composed with the other transforms."""

from __future__ import annotations

import numpy as np
import pytest

import opreg
import opreg.numpy as onp
from opreg.errors import OpUsageError, RegistrationError
from opreg.func import grad, hessian, jacrev, vjp, vmap
from opreg.opcheck import check_op
from opreg.plugin import hookimpl

from torch_reference import REGISTRY, needs_torch, torch, torch_reference

TOL = {"rtol": 1e-10, "atol": 1e-10}

#: Ops with a rule whose torch reference torch.func.vmap cannot run (it reads values with NumPy).
TORCH_CANNOT_VMAP = {"partition"}
RULE_OPS = sorted(
    name
    for name, op in REGISTRY.items()
    if op.plugin.startswith("opreg_builtins") and op.batch is not None and not op.multi
)


def _examples(name: str) -> list[tuple[list[np.ndarray], dict]]:
    """Each sample of the op, with a second example: its elements reversed (in the op's domain, as the sample)."""
    rng = np.random.default_rng(0)
    cases = []
    for sample in REGISTRY[name].samples(rng):
        inputs = [np.asarray(x, dtype=float) for x in sample.inputs]
        cases.append((inputs, dict(sample.attributes)))
    return cases


def _to_torch(x):
    return torch.as_tensor(np.ascontiguousarray(x))


@needs_torch
@pytest.mark.parametrize("name", RULE_OPS)
def test_vmap_of_each_op_with_a_rule_matches_torch_func(name):
    if name in TORCH_CANNOT_VMAP:
        pytest.skip("torch.func.vmap cannot run this op's torch reference (it leaves torch)")
    reference = torch_reference(name)
    for inputs, attributes in _examples(name):
        batch = [np.stack([x, np.flip(x)]) for x in inputs]
        try:
            opreg.ops.__getattr__(name)(*[np.flip(x) for x in inputs], **attributes)
        except Exception:
            batch = [np.stack([x, x]) for x in inputs]

        def op_call(*values, attributes=attributes):
            return opreg.ops.__getattr__(name)(*values, **attributes)

        def torch_call(*values, attributes=attributes):
            return reference(*values, **attributes)

        got = vmap(op_call)(*batch)
        want = torch.func.vmap(torch_call)(*[_to_torch(x) for x in batch])
        np.testing.assert_allclose(got, want.numpy(), **TOL, err_msg=f"{name} {attributes}")


@needs_torch
@pytest.mark.parametrize(
    "name",
    [
        "add",
        "mul",
        "div",
        "tanh",
        "sum",
        "mean",
        "reshape",
        "matmul",
        "linear",
        "einsum",
        "getitem",
        "mse",
        "inv",
        "trace",
    ],
)
def test_per_example_gradients_through_each_rule_match_torch_func(name):
    """vmap(grad(f)) with f an op and a weighted sum: the gradient of every example, through the op's rule."""
    reference = torch_reference(name)
    inputs, attributes = _examples(name)[0]
    batch = [np.stack([x, 0.5 * x + 0.25]) for x in inputs]
    differentiable = REGISTRY[name].differentiable_for(len(inputs))
    argnums = tuple(i for i, d in enumerate(differentiable) if d)

    def f(*values):
        return onp.sum(onp.sin(opreg.ops.__getattr__(name)(*values, **attributes)))

    def torch_f(*values):
        return torch.sin(reference(*values, **attributes)).sum()

    got = vmap(grad(f, argnums=argnums))(*batch)
    want = torch.func.vmap(torch.func.grad(torch_f, argnums=argnums))(*[_to_torch(x) for x in batch])
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w.numpy(), **TOL)


# --- per-example gradients ------------------------------------------------------------------------------------------


def _mlp_loss(params, x, y):
    (w1, b1), (w2, b2) = params
    hidden = onp.tanh(x @ w1.T + b1)
    return opreg.ops.softmax_cross_entropy(hidden @ w2.T + b2, y)


def _torch_mlp_loss(params, x, y):
    (w1, b1), (w2, b2) = params
    logits = torch.tanh(x @ w1.T + b1) @ w2.T + b2
    return -(y * torch.log_softmax(logits, -1)).sum(-1).mean()


def _mlp_data(batch=6, features=5, hidden=4, classes=3):
    rng = np.random.default_rng(1)
    params = (
        (rng.standard_normal((hidden, features)), rng.standard_normal(hidden)),
        (rng.standard_normal((classes, hidden)), rng.standard_normal(classes)),
    )
    x = rng.standard_normal((batch, features))
    y = np.eye(classes)[rng.integers(0, classes, batch)]
    return params, x, y


def test_per_example_gradients_of_unbatched_parameters_are_not_summed():
    """The parameters are not batched (in_axes None): each example still gets its own gradient."""
    params, x, y = _mlp_data()
    got = vmap(grad(_mlp_loss), in_axes=(None, 0, 0))(params, x, y)
    for i in range(len(x)):
        one = grad(_mlp_loss)(params, x[i], y[i])
        for g, w in zip(opreg.func.tree_flatten(got)[0], opreg.func.tree_flatten(one)[0], strict=True):
            np.testing.assert_allclose(g[i], w, **TOL)


@needs_torch
def test_per_example_gradients_match_torch_func():
    params, x, y = _mlp_data()
    got = vmap(grad(_mlp_loss), in_axes=(None, 0, 0))(params, x, y)
    tparams = tuple(tuple(_to_torch(p) for p in layer) for layer in params)
    want = torch.func.vmap(torch.func.grad(_torch_mlp_loss), in_dims=(None, 0, 0))(tparams, _to_torch(x), _to_torch(y))
    for g, w in zip(opreg.func.tree_flatten(got)[0], opreg.func.tree_flatten(want)[0], strict=True):
        np.testing.assert_allclose(g, w.numpy(), **TOL)


def test_per_example_gradients_on_the_digits_mlp_equal_64_backward_passes():
    """The issue's case: the digits MLP (64 -> 32 -> 10, relu, the linear op), a batch of 64 images; vmap(grad)
    against 64 separate loss.backward() calls on Tensors, and against torch.func."""
    from opreg.datasets import load_digits, one_hot

    features, labels = load_digits()
    x, y = features[:64] / 16.0, one_hot(labels[:64], 10)
    rng = np.random.default_rng(11)
    params = [rng.standard_normal((32, 64)) * 0.1, np.zeros(32), rng.standard_normal((10, 32)) * 0.1, np.zeros(10)]

    def loss(params, x, y):
        w1, b1, w2, b2 = params
        return opreg.ops.softmax_cross_entropy(opreg.ops.linear(opreg.ops.relu(opreg.ops.linear(x, w1, b1)), w2, b2), y)

    got = vmap(grad(loss), in_axes=(None, 0, 0))(params, x, y)
    for i in range(64):
        tensors = [opreg.Tensor(p, requires_grad=True) for p in params]
        loss(tensors, x[i], y[i]).backward()
        for g, t in zip(got, tensors, strict=True):
            np.testing.assert_allclose(g[i], t.grad, **TOL)
    if torch is not None:

        def torch_loss(params, x, y):
            w1, b1, w2, b2 = params
            logits = torch.relu(x @ w1.T + b1) @ w2.T + b2
            return -(y * torch.log_softmax(logits, -1)).sum()

        want = torch.func.vmap(torch.func.grad(torch_loss), in_dims=(None, 0, 0))(
            [_to_torch(p) for p in params], _to_torch(x), _to_torch(y)
        )
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w.numpy(), **TOL)


def test_per_example_gradients_of_a_batched_input_and_a_closure_over_a_batched_value():
    rng = np.random.default_rng(2)
    w, xs = rng.standard_normal((3, 4)), rng.standard_normal((5, 4))

    def f(w, x):
        return onp.sum(onp.exp(onp.tanh(w @ x)) * x[:3])

    closure = vmap(lambda x: grad(lambda w: f(w, x))(w))(xs)  # grad of w, closing over the batched x
    of_x = vmap(grad(f, argnums=1), in_axes=(None, 0))(w, xs)
    for i in range(len(xs)):
        np.testing.assert_allclose(closure[i], grad(f)(w, xs[i]), **TOL)
        np.testing.assert_allclose(of_x[i], grad(f, argnums=1)(w, xs[i]), **TOL)


def test_nested_vmap_of_grad_against_loops():
    rng = np.random.default_rng(3)
    w, xs = rng.standard_normal(4), rng.standard_normal((2, 3, 4))

    def f(w, x):
        return onp.sum(onp.sin(w * x) ** 2) + onp.max(x * w)

    got = vmap(vmap(grad(f), in_axes=(None, 0)), in_axes=(None, 0))(w, xs)
    assert got.shape == (2, 3, 4)
    for i in range(2):
        for j in range(3):
            np.testing.assert_allclose(got[i, j], grad(f)(w, xs[i, j]), **TOL)
    inner_axis = vmap(vmap(grad(f), in_axes=(None, 1)), in_axes=(None, 0))(w, xs.transpose(0, 2, 1))
    np.testing.assert_allclose(inner_axis, got, **TOL)


@needs_torch
def test_vmap_of_jacrev_and_of_hessian_match_torch_func():
    rng = np.random.default_rng(4)
    xs = rng.standard_normal((3, 4))

    def f(x):
        return onp.sin(x) * onp.sum(x**2)

    def torch_f(x):
        return torch.sin(x) * (x**2).sum()

    np.testing.assert_allclose(
        vmap(jacrev(f))(xs), torch.func.vmap(torch.func.jacrev(torch_f))(_to_torch(xs)).numpy(), **TOL
    )
    np.testing.assert_allclose(
        vmap(hessian(lambda x: onp.sum(f(x))))(xs),
        torch.func.vmap(torch.func.hessian(lambda x: torch_f(x).sum()))(_to_torch(xs)).numpy(),
        **TOL,
    )


@needs_torch
def test_grad_of_vmap_matches_torch_func():
    rng = np.random.default_rng(5)
    w, xs = rng.standard_normal((3, 4)), rng.standard_normal((6, 4))

    def loss(w):
        return onp.sum(vmap(lambda x: onp.tanh(w @ x) @ onp.exp(-x[:3]))(xs) ** 2)

    def torch_loss(w):
        return (torch.func.vmap(lambda x: torch.tanh(w @ x) @ torch.exp(-x[:3]))(_to_torch(xs)) ** 2).sum()

    np.testing.assert_allclose(grad(loss)(w), torch.func.grad(torch_loss)(_to_torch(w)).numpy(), **TOL)


def test_vjp_fn_called_with_batched_cotangents_loops_over_them():
    """vjp recorded outside vmap, its vjp_fn vmapped over cotangents: the rows of the Jacobian."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal(4)
    _output, vjp_fn = vjp(lambda x: onp.sin(x) * onp.sum(x), x)
    rows = vmap(vjp_fn)(np.eye(4))[0]
    np.testing.assert_allclose(rows, jacrev(lambda x: onp.sin(x) * onp.sum(x))(x), **TOL)


# --- vmap's arguments ---------------------------------------------------------------------------------------------


@needs_torch
def test_in_axes_out_axes_and_outputs_independent_of_the_batch_match_torch_func():
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((3, 5)), rng.standard_normal((5, 3))

    def f(pair, c):
        x, y = pair
        return {"sum": x * y + c, "const": c * 2.0}

    def torch_f(pair, c):
        x, y = pair
        return {"sum": x * y + c, "const": c * 2.0}

    c = rng.standard_normal(3)
    got = vmap(f, in_axes=((1, 0), None), out_axes={"sum": 1, "const": 0})((a, b), c)
    want = torch.func.vmap(torch_f, in_dims=((1, 0), None), out_dims={"sum": 1, "const": 0})(
        (_to_torch(a), _to_torch(b)), _to_torch(c)
    )
    for key in ("sum", "const"):
        np.testing.assert_allclose(got[key], want[key].numpy(), **TOL)


def test_numpy_heavy_function_against_a_loop():
    """NumPy's own functions, methods, comparisons and masks inside vmap."""
    rng = np.random.default_rng(8)
    xs = rng.standard_normal((4, 3, 5))

    def f(x):
        y = np.where(x > 0, np.exp(-x), x**2).T @ x[:, :2]
        return np.concatenate([np.sum(y, axis=0), y.max(axis=-1), np.cumsum(x[0])]) + np.argmax(x[1])

    np.testing.assert_allclose(vmap(f)(xs), np.stack([f(x) for x in xs]), **TOL)
    np.testing.assert_allclose(vmap(grad(lambda x: np.sum(f(x))))(xs), [grad(lambda x: np.sum(f(x)))(x) for x in xs])


def test_labels_take_no_gradient_under_vmap_as_without_it():
    """softmax_cross_entropy's rule is a composition of ops; its labels stay without a gradient, as the op's."""
    rng = np.random.default_rng(13)
    logits, labels = rng.standard_normal((3, 2, 4)), np.eye(4)[rng.integers(0, 4, (3, 2))]

    def f(logits, labels):
        return opreg.ops.softmax_cross_entropy(logits, labels)

    got = vmap(grad(f, argnums=(0, 1)))(logits, labels)
    for i in range(3):
        want = grad(f, argnums=(0, 1))(logits[i], labels[i])
        np.testing.assert_allclose(got[0][i], want[0], **TOL)
        np.testing.assert_array_equal(got[1][i], want[1])


def test_an_op_without_a_rule_is_looped():
    rng = np.random.default_rng(9)
    a, b = rng.standard_normal((3, 4, 4)) + 4 * np.eye(4), rng.standard_normal((3, 4))
    assert REGISTRY["solve"].batch is None

    def f(a, b):
        return np.sum(np.linalg.solve(a, b) ** 2)

    np.testing.assert_allclose(
        vmap(np.linalg.solve)(a, b), [np.linalg.solve(m, v) for m, v in zip(a, b, strict=True)], **TOL
    )
    got = vmap(grad(f, argnums=(0, 1)))(a, b)
    for i in range(3):
        for g, w in zip(got, grad(f, argnums=(0, 1))(a[i], b[i]), strict=True):
            np.testing.assert_allclose(g[i], w, **TOL)


def test_a_batched_index_is_read_per_example():
    rng = np.random.default_rng(10)
    x, index = rng.standard_normal((4, 5)), np.array([0, 3, 1, 4])

    def f(row, i):
        return onp.sum(onp.exp(row)[i] * row[np.argmax(row)])

    np.testing.assert_allclose(vmap(lambda row, i: row[i])(x, index), x[np.arange(4), index], **TOL)
    np.testing.assert_allclose(vmap(grad(f))(x, index), [grad(f)(x[k], index[k]) for k in range(4)], **TOL)


class _Swish:
    """The CONTRIBUTING tutorial's op: no batching rule, so vmap loops over the examples."""

    @hookimpl
    def opreg_register_ops(self, register):
        def swish(x, *, beta=1.0):
            return x * 0.5 * (1 + onp.tanh(beta * x / 2))

        def swish_backward(g, x, *, output, beta):
            s = 0.5 * (1 + onp.tanh(beta * x / 2))
            return (g * (beta * output + s * (1 - beta * output)),)

        register(name="swish", inputs=("x",), forward=swish, backward=swish_backward)


def test_a_plugin_op_without_a_rule_works_under_vmap_and_is_checked():
    opreg.register_plugin(_Swish(), name="swish-plugin")
    try:
        report = check_op("swish")
        assert any(check.startswith("vmap: against a loop") for check in report.samples[0].checks)
        xs = np.random.default_rng(12).standard_normal((3, 4))

        def f(x):
            return onp.sum(opreg.ops.swish(x, beta=2.0) ** 2)

        np.testing.assert_allclose(vmap(grad(f))(xs), [grad(f)(x) for x in xs], **TOL)
    finally:
        opreg.unregister_plugin("swish-plugin")


def test_a_wrong_batching_rule_fails_check_op():
    import dataclasses

    wrong = dataclasses.replace(REGISTRY["exp"], batch=lambda call, batched, x: call(x)[::-1])
    with pytest.raises(opreg.errors.GradcheckError, match="vmap of the op batched on axis 0 disagrees with a loop"):
        check_op(wrong)


def test_batch_sizes_must_agree():
    with pytest.raises(
        OpUsageError, match=r"different batch sizes: argument leaf 0 has 3 along axis 0, argument leaf 1 has 4"
    ):
        vmap(lambda a, b: a + b)(np.ones(3), np.ones(4))


def test_a_python_condition_on_a_batched_value_is_refused():
    with pytest.raises(OpUsageError, match="truth value of a batched value"):
        vmap(lambda a: a if a > 0 else -a)(np.ones(3))


def test_a_batch_rule_must_be_elementwise_or_a_function():
    with pytest.raises(RegistrationError, match="batch= is how vmap batches the op"):
        opreg.opdef.define_op(
            plugin="p",
            name="double",
            inputs=("x",),
            forward=lambda x: 2 * x,
            backward=lambda g, x: (2 * g,),
            batch="rows",
        )


@needs_torch
def test_forward_mode_inside_vmap_is_per_example_as_torch_func():
    """jvp and jacfwd under vmap push each example's tangent through its own copy of the primals; before forward
    mode knew vmap's levels, vmap(hessian(f)) silently gave zeros."""
    from opreg.func import jacfwd, jvp

    rng = np.random.default_rng(5)
    xs, w, v = rng.standard_normal((3, 4)), rng.standard_normal(4), rng.standard_normal(4)

    def f(w, x):
        return onp.sum(onp.sin(w * x) * onp.sum(x**2))

    def torch_f(w, x):
        return (torch.sin(w * x) * (x**2).sum()).sum()

    tw, tv = _to_torch(w), _to_torch(v)
    mine = vmap(lambda x: jvp(lambda p: f(p, x), (w,), (v,))[1])(xs)
    theirs = torch.func.vmap(lambda x: torch.func.jvp(lambda p: torch_f(p, x), (tw,), (tv,))[1])(_to_torch(xs))
    np.testing.assert_allclose(mine, theirs.numpy(), **TOL)
    mine = vmap(jacfwd(lambda x: onp.sin(x) * onp.sum(x**2)))(xs)
    theirs = torch.func.vmap(torch.func.jacfwd(lambda x: torch.sin(x) * (x**2).sum()))(_to_torch(xs))
    np.testing.assert_allclose(mine, theirs.numpy(), **TOL)
    mine = vmap(hessian(f), in_axes=(None, 0))(w, xs)
    theirs = torch.func.vmap(torch.func.hessian(torch_f), in_dims=(None, 0))(tw, _to_torch(xs))
    np.testing.assert_allclose(mine, theirs.numpy(), **TOL)
