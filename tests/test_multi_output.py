"""Ops with several outputs (``outputs=``) and variadic ops (``inputs=("*arrays",)``): the contract, both front
ends, and every built-in op with several outputs against torch, output by output, to second order.

The single-output harnesses (test_ops_reference, test_tensor, test_higher_order, test_properties, the fuzzer) take
``BUILTIN_OPS``, the ops with one output; variadic ops are among them (their samples pass any number of arrays).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import opreg
import opreg.numpy as onp
from opreg import Tensor, ops
from opreg.errors import OpContractError, OpUsageError, RegistrationError
from opreg.plugin import Sample

from torch_reference import MULTI_OUTPUT_OPS, REGISTRY, needs_torch, torch, torch_reference

F64 = {"rtol": 1e-9, "atol": 1e-11}
F32 = {"rtol": 2e-4, "atol": 2e-5}


def _gradients(name: str, outputs: tuple[np.ndarray, ...], rng: np.random.Generator, dtype: Any) -> tuple:
    flags = REGISTRY[name].output_flags(len(outputs))
    return tuple(
        rng.standard_normal(np.shape(o)).astype(dtype) if d else None for o, d in zip(outputs, flags, strict=True)
    )


def _torch_run(name: str, inputs: list[np.ndarray], attributes: dict, gs: tuple) -> tuple[list, list]:
    xs = [torch.tensor(x.copy(), requires_grad=True) for x in inputs]
    outs = torch_reference(name)(*xs, **attributes)
    loss = sum((o * torch.tensor(g)).sum() for o, g in zip(outs, gs, strict=True) if g is not None)
    loss.backward()
    return [o.detach().numpy() for o in outs], [x.grad.numpy() for x in xs]


def _samples(name: str, dtype: Any) -> list[tuple[list[np.ndarray], dict]]:
    return [
        ([np.asarray(x, dtype) for x in s.inputs], dict(s.attributes))
        for s in REGISTRY[name].samples(np.random.default_rng(3))
    ]


@needs_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", MULTI_OUTPUT_OPS)
def test_op_with_several_outputs_matches_torch_on_both_front_ends(name, dtype):
    """The outputs, and every input's gradient for a gradient on each differentiable output, equal torch's:
    through the tape (a tuple of arrays, backward given a tuple) and through Tensors (a tuple of Tensors)."""
    tol = F64 if dtype == np.float64 else F32
    rng = np.random.default_rng(0)
    for inputs, attributes in _samples(name, dtype):
        engine = opreg.Autograd()
        outputs = engine.apply(name, *inputs, **attributes)
        assert isinstance(outputs, tuple) and REGISTRY[name].accepts_outputs(len(outputs))
        gs = _gradients(name, outputs, rng, dtype)
        engine.backward(gs)
        tape_grads = [engine.gradient_buffer.get_param(x) for x in inputs]
        ref_outputs, ref_grads = _torch_run(name, inputs, attributes, gs)
        for mine, ref in zip(outputs, ref_outputs, strict=True):
            assert mine.dtype == dtype
            np.testing.assert_allclose(mine, ref, err_msg=f"{name} output", **tol)
        tensors = [Tensor(x.copy(), requires_grad=True) for x in inputs]
        results = getattr(ops, name)(*tensors, **attributes)
        assert all(isinstance(t, Tensor) for t in results)
        for t, wanted in zip(results, REGISTRY[name].output_flags(len(results)), strict=True):
            assert t.requires_grad == wanted
        loss = sum(
            (ops.sum(t * g) for t, g in zip(results, gs, strict=True) if g is not None),
            start=Tensor(np.zeros((), dtype)),
        )
        loss.backward()
        for mine_tape, t, ref in zip(tape_grads, tensors, ref_grads, strict=True):
            assert mine_tape.dtype == dtype and t.grad.dtype == dtype
            np.testing.assert_allclose(mine_tape, ref, err_msg=f"{name} gradient, tape", **tol)
            np.testing.assert_allclose(t.grad, ref, err_msg=f"{name} gradient, Tensors", **tol)


@needs_torch
@pytest.mark.parametrize("name", MULTI_OUTPUT_OPS)
def test_op_with_several_outputs_second_derivatives_match_torch(name):
    """d/dx of <v, dL/dx>, L = sum of <g_k, output k>, as torch computes it (create_graph through the backward)."""
    rng = np.random.default_rng(1)
    for inputs, attributes in _samples(name, np.float64):
        outputs = REGISTRY[name].output_of(*inputs, **attributes)
        gs = _gradients(name, outputs, rng, np.float64)
        vs = [rng.standard_normal(x.shape) for x in inputs]
        xs = [Tensor(x.copy(), requires_grad=True) for x in inputs]
        results = getattr(ops, name)(*xs, **attributes)
        loss = sum(
            (ops.sum(t * g) for t, g in zip(results, gs, strict=True) if g is not None), start=Tensor(np.zeros(()))
        )
        firsts = opreg.grad(loss, xs, create_graph=True)
        second = sum((ops.sum(f * v) for f, v in zip(firsts, vs, strict=True)), start=Tensor(np.zeros(())))
        if not second.requires_grad:  # a linear op (split): its first derivatives are constants
            assert REGISTRY[name].variadic_outputs
            continue
        mine = opreg.grad(second, xs)
        txs = [torch.tensor(x.copy(), requires_grad=True) for x in inputs]
        touts = torch_reference(name)(*txs, **attributes)
        tloss = sum((o * torch.tensor(g)).sum() for o, g in zip(touts, gs, strict=True) if g is not None)
        tfirsts = torch.autograd.grad(tloss, txs, create_graph=True)
        theirs = torch.autograd.grad(sum((f * torch.tensor(v)).sum() for f, v in zip(tfirsts, vs, strict=True)), txs)
        for a, b in zip(mine, theirs, strict=True):
            np.testing.assert_allclose(a.numpy(), b.numpy(), err_msg=f"{name} second derivative", **F64)


# --- the contract, on a plugin's op ----------------------------------------------------------------------------------

CALLS = {"backward": 0}


def _divmod_forward(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(a + b, a * b, a > b as 0/1): three outputs, the last taking no gradient."""
    return a + b, a * b, (a > b).astype(a.dtype)


def _divmod_backward(g: tuple, a: Any, b: Any) -> tuple[Any, Any]:
    CALLS["backward"] += 1
    g_sum, g_product, g_flag = g
    assert g_flag is None
    return g_sum + g_product * b, g_sum + g_product * a


class SeveralOps:
    @opreg.hookimpl
    def opreg_register_ops(self, register):
        register(
            name="sum_product_flag",
            inputs=("a", "b"),
            outputs=("total", "product", "flag"),
            differentiable_outputs=("total", "product"),
            forward=_divmod_forward,
            backward=_divmod_backward,
        )
        register(
            name="weighted_total",
            inputs=("weights", "*arrays"),
            forward=lambda weights, *arrays: sum(w * x for w, x in zip(weights, arrays, strict=True)),
            backward=lambda g, weights, *arrays: (None, *(g * w for w in weights)),
            differentiable=("arrays",),
            sample_inputs=lambda rng: [Sample(np.array([1.0, -2.0, 0.5]), *rng.standard_normal((3, 2, 2)))],
        )


@pytest.fixture
def several():
    opreg.register_plugin(SeveralOps(), name="several")
    CALLS["backward"] = 0
    yield
    opreg.unregister_plugin("several")


def test_tensors_of_several_outputs_share_one_node_and_its_backward_runs_once(several):
    a, b = Tensor(np.array([1.0, 2.0]), requires_grad=True), Tensor(np.array([3.0, -1.0]), requires_grad=True)
    total, product, flag = ops.sum_product_flag(a, b)
    assert total._node is product._node and not flag.requires_grad
    loss = ops.sum(total * total) + ops.sum(product) + ops.sum(flag * total)
    loss.backward()
    assert CALLS["backward"] == 1
    expected_a = 2 * (a.data + b.data) + b.data + (a.data > b.data)
    np.testing.assert_allclose(a.grad, expected_a)


def test_backward_from_one_output_gives_the_others_zeros(several):
    """Only ``product`` reaches the loss: ``total``'s gradient is zeros, and the op's backward still runs."""
    a, b = Tensor(np.array([1.0, 2.0]), requires_grad=True), Tensor(np.array([3.0, -1.0]), requires_grad=True)
    _, product, _ = ops.sum_product_flag(a, b)
    product.backward(np.ones(2))
    np.testing.assert_allclose(a.grad, b.data)
    np.testing.assert_allclose(b.grad, a.data)
    engine = opreg.Autograd()
    x, y = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    total, _product, _flag = engine.apply("sum_product_flag", x, y)
    engine.apply("sum", total)
    engine.backward(1.0)
    np.testing.assert_allclose(engine.gradient_buffer.get_param(x), [1.0, 1.0])


def test_tape_backward_from_an_op_with_several_outputs_takes_a_tuple(several):
    engine = opreg.Autograd()
    x, y = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    engine.apply("sum_product_flag", x, y)
    with pytest.raises(OpUsageError, match=r"pass backward\(\) a tuple with a divergence for each"):
        engine.backward(1.0)
    with pytest.raises(OpUsageError, match="output 'flag' takes no gradient; pass None for it"):
        engine.backward((1.0, None, 1.0))
    engine.backward((None, np.array([1.0, 1.0]), None))
    np.testing.assert_allclose(engine.gradient_buffer.get_param(x), y)


def test_second_derivatives_through_an_op_with_several_outputs(several):
    opreg.check_op("sum_product_flag")
    x = Tensor(np.array([0.5, -1.5]), requires_grad=True)
    total, product, _ = ops.sum_product_flag(x, x)
    (g,) = opreg.grad(ops.sum(product * total), [x], create_graph=True)  # 2x^3 -> 6x^2, then 12x
    ops.sum(g).backward()
    np.testing.assert_allclose(x.grad, 12 * x.data)


def test_a_variadic_op_with_a_fixed_input_first(several):
    opreg.check_op("weighted_total")
    arrays = [np.full(2, float(i)) for i in range(3)]
    engine = opreg.Autograd()
    engine.apply("weighted_total", np.array([1.0, 2.0, 3.0]), *arrays)
    engine.backward(np.ones(2))
    assert [engine.gradient_buffer.get_param(x)[0] for x in arrays] == [1.0, 2.0, 3.0]
    with pytest.raises(OpUsageError, match=r"takes 1 or more inputs \(weights, \*arrays\), got 0"):
        engine.apply("weighted_total")


def test_a_variadic_op_names_the_array_at_fault():
    class Bad:
        @opreg.hookimpl
        def opreg_register_ops(self, register):
            register(
                name="bad_join",
                inputs=("*arrays",),
                forward=lambda *arrays: np.concatenate(arrays),
                backward=lambda g, *arrays: tuple(np.ones(5) for _ in arrays),
            )

    opreg.register_plugin(Bad(), name="bad")
    try:
        engine = opreg.Autograd()
        engine.apply("bad_join", *(np.ones(2) for _ in range(4)))
        with pytest.raises(OpContractError, match=r"for input 0 'arrays\[0\]' of shape \(2,\)"):
            engine.backward(np.ones(8))
    finally:
        opreg.unregister_plugin("bad")


@pytest.mark.parametrize(
    ("declaration", "problem"),
    [
        ({"inputs": ("*a", "b")}, "only one input may be starred"),
        ({"inputs": ("*a", "*b")}, "only one input may be starred"),
        ({"inputs": ("*",)}, "inputs must be one or more distinct identifiers"),
        ({"outputs": ("y", "y")}, "outputs must be one or more distinct identifiers"),
        ({"outputs": ("y", "z"), "differentiable_outputs": ("w",)}, r"differentiable_outputs names \['w'\]"),
        ({"differentiable_outputs": ("y",)}, "differentiable_outputs= needs outputs="),
        ({"outputs": ("y", "z"), "differentiable_outputs": ()}, "must name at least one output"),
        ({"inputs": ("*arrays",), "forward": lambda a, b: a}, "forward.* cannot be called with"),
    ],
)
def test_malformed_declarations_are_refused(declaration, problem):
    from opreg.opdef import define_op

    keywords = {
        "plugin": "p",
        "name": "op",
        "inputs": ("x",),
        "forward": lambda *xs: xs[0],
        "backward": lambda g, *xs: (g,) * len(xs),
        **declaration,
    }
    with pytest.raises(RegistrationError, match=problem):
        define_op(**keywords)


def test_forward_returning_the_wrong_number_of_outputs_is_an_error(several):
    class Wrong:
        @opreg.hookimpl
        def opreg_register_ops(self, register):
            register(
                name="two_of_three",
                inputs=("x",),
                outputs=("a", "b", "c"),
                forward=lambda x: (x, x),
                backward=lambda g, x: (g[0],),
            )

    opreg.register_plugin(Wrong(), name="wrong")
    try:
        with pytest.raises(OpContractError, match=r"forward returned tuple of 2; it declares outputs"):
            opreg.Autograd().apply("two_of_three", np.ones(2))
    finally:
        opreg.unregister_plugin("wrong")


# --- variadic built-ins through NumPy's own spelling -----------------------------------------------------------------


def test_numpy_joining_functions_on_tensors_record_one_op_per_call():
    a, b = Tensor(np.ones((2, 3)), requires_grad=True), Tensor(np.zeros((2, 3)), requires_grad=True)
    for function, expected in [
        (lambda: np.concatenate([a, b], axis=1), (2, 6)),
        (lambda: np.stack((a, b)), (2, 2, 3)),
        (lambda: np.vstack([a, b]), (4, 3)),
        (lambda: np.hstack([a, np.ones((2, 1))]), (2, 4)),
        (lambda: np.dstack([a, b]), (2, 3, 2)),
        (lambda: np.column_stack([a, b]), (2, 6)),
        (lambda: np.append(a, b, axis=0), (4, 3)),
        (lambda: onp.concatenate([a, b], None), (12,)),
    ]:
        out = function()
        assert isinstance(out, Tensor) and out.shape == expected and out.requires_grad
    (onp.concatenate([a, b, a]) * 2).sum().backward()
    np.testing.assert_array_equal(a.grad, np.full((2, 3), 4.0))
    np.testing.assert_array_equal(b.grad, np.full((2, 3), 2.0))


def test_numpy_joining_functions_on_arrays_return_what_numpy_returns():
    a, b = np.arange(6.0).reshape(2, 3), np.ones((2, 3))
    for name in ("concatenate", "stack", "hstack", "vstack", "dstack", "column_stack"):
        np.testing.assert_array_equal(getattr(onp, name)([a, b]), getattr(np, name)([a, b]))
    np.testing.assert_array_equal(onp.append(a, b), np.append(a, b))


def test_joining_a_non_sequence_is_an_error_naming_it():
    with pytest.raises(OpUsageError, match="numpy.concatenate takes a sequence of arrays as arrays, got Tensor"):
        onp.concatenate(Tensor(np.array(1.0), requires_grad=True))  # 0-d: no rows (an N-D one is its rows)


# --- lists holding Tensors -----------------------------------------------------------------------------------------


def test_a_list_holding_tensors_is_stacked_by_a_recorded_op():
    """The issue's silent wrong answer: ops.mean([x, x + 2]) dropped the graph (gradient 0, not 1)."""
    x = Tensor(np.array(2.0), requires_grad=True)
    m = ops.mean([x, x + 2])
    assert isinstance(m, Tensor) and float(m) == 3.0
    m.backward()
    assert float(x.grad) == 1.0
    s = Tensor(np.array(1.5), requires_grad=True)
    stacked = Tensor([s, 2.0, s * s])
    assert stacked.requires_grad and not stacked.is_leaf
    np.testing.assert_allclose(stacked.data, [1.5, 2.0, 2.25])
    stacked.sum().backward()
    assert float(s.grad) == 1.0 + 2 * 1.5
    v = Tensor(np.ones(2), requires_grad=True)
    onp.sum([[v, v], [v, 3 * v]]).backward()
    np.testing.assert_array_equal(v.grad, [6.0, 6.0])


def test_the_tape_refuses_a_list_holding_a_tensor():
    with pytest.raises(OpUsageError, match="input 0 'x' is a Tensor, and Autograd records arrays"):
        opreg.Autograd().apply("mean", [Tensor(np.ones(2)), np.ones(2)])


# --- einsum and select -----------------------------------------------------------------------------------------------


def test_einsum_through_numpy_and_its_errors():
    a, b = Tensor(np.ones((2, 3)), requires_grad=True), Tensor(np.arange(12.0).reshape(3, 4), requires_grad=True)
    out = np.einsum("ij,jk->ik", a, b)
    assert isinstance(out, Tensor) and out.shape == (2, 4)
    out.sum().backward()
    np.testing.assert_array_equal(a.grad, np.tile(np.arange(12.0).reshape(3, 4).sum(axis=1), (2, 1)))
    np.testing.assert_array_equal(onp.einsum("ij->j", np.ones((2, 3))), np.full(3, 2.0))
    np.testing.assert_array_equal(onp.einsum(a, [0, 1], b, [1, 2]).data, out.data)  # NumPy's interleaved form
    with pytest.raises(OpUsageError, match="einsum needs its subscripts as a string"):
        opreg.ops.einsum(a, b)  # the op's own spelling: subscripts is an attribute
    square = Tensor(np.arange(4.0).reshape(2, 2), requires_grad=True)
    onp.einsum("ii->i", square).sum().backward()  # a diagonal: its gradient placed on the diagonal
    np.testing.assert_array_equal(square.grad, np.eye(2))


def test_select_through_numpy():
    x = np.arange(6.0).reshape(2, 3)
    t = Tensor(x, requires_grad=True)
    out = np.select([x > 2, x > 0], [t, -2 * t], 7.0)
    np.testing.assert_array_equal(out.data, np.select([x > 2, x > 0], [x, -2 * x], 7.0))
    out.sum().backward()
    np.testing.assert_array_equal(t.grad, [[0.0, -2.0, -2.0], [1.0, 1.0, 1.0]])


def test_r_and_c_join_as_numpy_and_record_on_tensors():
    a = np.arange(3.0)
    np.testing.assert_array_equal(onp.r_[a, 0.0, 1:4, 0:1:3j], np.r_[a, 0.0, 1:4, 0:1:3j])
    np.testing.assert_array_equal(onp.c_[a, 2 * a], np.c_[a, 2 * a])
    np.testing.assert_array_equal(onp.c_[np.ones((2, 2)), np.zeros((2, 1))], np.c_[np.ones((2, 2)), np.zeros((2, 1))])
    t = Tensor(a, requires_grad=True)
    joined = onp.r_[t, Tensor(np.array(5.0)), 1:3]
    assert isinstance(joined, Tensor) and joined.shape == (6,)
    (joined * joined).sum().backward()
    np.testing.assert_array_equal(t.grad, 2 * a)
    assert onp.c_[t, t].shape == (3, 2)
    with pytest.raises(TypeError, match="does not take NumPy's string directives"):
        onp.r_["0,2", a]


def test_tensor_apply_refuses_an_op_with_several_outputs():
    """apply() returns one Tensor (what Tensor operators and modules call); opreg.ops returns the tuple."""
    from opreg.tensor import apply

    with pytest.raises(
        OpUsageError, match=r"has several outputs \('sign', 'logabsdet'\); call it as opreg.ops.slogdet"
    ):
        apply("slogdet", Tensor(np.eye(2), requires_grad=True))
