"""The tape engine: gradient routing, aliasing, broadcasting, accumulation, and the errors of misuse."""

from __future__ import annotations

import numpy as np
import pytest

import opreg
from opreg import EngineStateError, OpContractError, OpUsageError, UnknownOpError

rng = np.random.default_rng(0)


def test_views_sharing_a_data_pointer_get_separate_gradients(engine):
    """The handout keys gradients by data pointer; x and x.T share one, and must not share a gradient."""
    x = rng.standard_normal((2, 3))
    xt = x.T
    assert x.__array_interface__["data"][0] == xt.__array_interface__["data"][0]
    upstream = rng.standard_normal((2, 2))
    engine.apply("matmul", x, xt)
    engine.backward(upstream)
    buffer = engine.gradient_buffer
    assert buffer.get_memory_loc(x) != buffer.get_memory_loc(xt)
    np.testing.assert_allclose(buffer.get_param(x), upstream @ x)
    np.testing.assert_allclose(buffer.get_param(xt), x.T @ upstream)


@pytest.mark.parametrize("bias_shape", [(4,), (1, 4), ()])
def test_broadcast_gradients_are_summed_to_the_input_shape(engine, bias_shape):
    x = rng.standard_normal((3, 4))
    b = rng.standard_normal(bias_shape)
    engine.apply("add", x, b)
    upstream = rng.standard_normal((3, 4))
    engine.backward(upstream)
    grad_b = engine.gradient_buffer.get_param(b)
    assert grad_b.shape == bias_shape
    np.testing.assert_allclose(grad_b, upstream.sum(axis=0).reshape(bias_shape) if bias_shape else upstream.sum())


def test_externally_tracked_gradient_is_updated_in_place_and_accumulates(engine):
    """A parameter used by two ops gets both contributions added to the caller's array, which stays the same."""
    x = rng.standard_normal((3, 4))
    w = rng.standard_normal(4)
    dw = np.zeros(4)
    dw_before = dw
    h = engine.apply("mul", x, w, gradients_to_update=[None, dw])
    engine.apply("mul", h, w, gradients_to_update=[None, dw])
    engine.backward(1.0)
    assert dw is dw_before
    np.testing.assert_allclose(dw, (2 * x * w).sum(axis=0))
    assert not engine.gradient_buffer.is_in_memory(w)


def test_an_array_used_twice_accumulates_its_gradient(engine):
    x = rng.standard_normal((2, 3))
    e = engine.apply("exp", x)
    engine.apply("mul", x, e)
    engine.backward(1.0)
    np.testing.assert_allclose(engine.gradient_buffer.get_param(x), np.exp(x) + x * np.exp(x))


def test_shared_gradient_arrays_are_not_corrupted_by_accumulation(engine):
    """add's backward returns one array for both inputs; accumulating into one must not change the other."""
    a = rng.standard_normal(3)
    b = rng.standard_normal(3)
    s = engine.apply("add", a, b)
    t = engine.apply("mul", s, a)
    engine.backward(np.ones(3))
    del t
    np.testing.assert_allclose(engine.gradient_buffer.get_param(b), a)
    np.testing.assert_allclose(engine.gradient_buffer.get_param(a), a + s)


def test_an_op_off_the_path_to_the_last_output_contributes_nothing(engine):
    x = rng.standard_normal(5)
    engine.apply("exp", x)
    engine.apply("mul", x, 3.0)
    engine.backward(1.0)
    np.testing.assert_allclose(engine.gradient_buffer.get_param(x), np.full(5, 3.0))


def test_untouched_tracked_array_reads_as_zero_gradient(engine):
    labels = np.eye(3)[[0, 2]]
    logits = rng.standard_normal((2, 3))
    x = rng.standard_normal(2)
    engine.apply("exp", x)
    engine.apply("softmax_cross_entropy", logits, labels)
    engine.backward(1.0)
    np.testing.assert_array_equal(engine.gradient_buffer.get_param(x), np.zeros(2))
    assert not engine.gradient_buffer.is_in_memory(labels)


def test_float32_graphs_get_float32_gradients(engine):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    w = rng.standard_normal((3, 2)).astype(np.float32)
    dw = np.zeros_like(w)
    loss = engine.apply("mse", engine.apply("matmul", x, w, gradients_to_update=[None, dw]), np.zeros((4, 2), "f4"))
    engine.backward(1.0)
    assert loss.dtype == np.float32
    assert engine.gradient_buffer.get_param(x).dtype == np.float32


def test_numbers_and_lists_are_accepted_as_inputs(engine):
    out = engine.apply("mul", [1.0, 2.0], 3.0)
    engine.backward(1.0)
    np.testing.assert_allclose(out, [3.0, 6.0])


def test_handout_add_operation_records_an_op_computed_by_hand(engine):
    x = rng.standard_normal(3)
    y = np.exp(x)
    engine.add_operation([x], y, [None], "exp")
    assert [op.backward_operation for op in engine.operation_list] == ["exp"]
    engine.backward(np.ones(3))
    np.testing.assert_allclose(engine.gradient_buffer.get_param(x), np.exp(x))


def test_zero_grad_starts_a_new_step(engine):
    x = rng.standard_normal(3)
    engine.apply("mul", x, 2.0)
    engine.backward(1.0)
    engine.zero_grad()
    assert engine.operation_list == [] and engine.gradient_buffer.memory == {}
    engine.apply("mul", x, 5.0)
    engine.backward(1.0)
    np.testing.assert_allclose(engine.gradient_buffer.get_param(x), np.full(3, 5.0))


def test_an_op_returning_its_own_input_does_not_alias_gradients(engine, install_ops):
    install_ops({"name": "passthrough", "inputs": ("x",), "forward": lambda x: x, "backward": lambda g, x: (2 * g,)})
    x = rng.standard_normal(3)
    y = engine.apply("passthrough", x)
    assert y is not x
    engine.apply("mul", y, 3.0)
    engine.backward(1.0)
    np.testing.assert_allclose(engine.gradient_buffer.get_param(x), np.full(3, 6.0))


# --- errors: each names the op and the plugin that registered it --------------------------------------------------

ARITHMETIC = "plugin 'opreg_builtins.arithmetic'"


def test_unknown_op_suggests_close_names(engine):
    with pytest.raises(UnknownOpError, match="'matmull'.*did you mean 'matmul'"):
        engine.apply("matmull", np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(UnknownOpError, match="'softmax_crossentropy'.*'softmax_cross_entropy'"):
        engine.add_operation([np.ones(2)], np.ones(2), [None], "softmax_crossentropy")


def test_a_function_instead_of_an_op_name_is_explained(engine):
    def mul_backward(grad, a, b):
        return grad * b, grad * a

    with pytest.raises(OpUsageError, match="must be the name of a registered op"):
        engine.add_operation([np.ones(2), np.ones(2)], np.ones(2), [None, None], mul_backward)


def test_wrong_number_of_inputs(engine):
    with pytest.raises(OpUsageError, match=rf"op 'add' \({ARITHMETIC}\) takes 2 inputs \('a', 'b'\), got 1"):
        engine.apply("add", np.ones(2))
    with pytest.raises(OpUsageError, match="op 'neg'.*takes 1 inputs"):
        engine.add_operation([np.ones(2), np.ones(2)], np.ones(2), [None, None], "neg")


def test_wrong_number_of_gradients_to_update(engine):
    with pytest.raises(OpUsageError, match="op 'mul'.*takes 2 gradients_to_update entries.*got 1"):
        engine.apply("mul", np.ones(2), np.ones(2), gradients_to_update=[None])


def test_gradients_to_update_of_the_wrong_shape(engine):
    with pytest.raises(
        OpUsageError, match=r"op 'mul'.*gradients_to_update\[1\] is float64 \(3,\).*input 1 'b'.*\(2,\)"
    ):
        engine.apply("mul", np.ones(2), np.ones(2), gradients_to_update=[None, np.zeros(3)])


def test_forward_failure_names_the_op_and_the_input_shapes(engine):
    with pytest.raises(OpUsageError, match=r"op 'matmul'.*a: float64 \(2, 3\), b: float64 \(2, 3\)"):
        engine.apply("matmul", np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(OpUsageError, match=r"op 'mse'.*same shape, got \(4, 1\) and \(4,\)"):
        engine.apply("mse", np.ones((4, 1)), np.ones(4))


def test_recording_an_input_as_its_own_output_is_refused(engine):
    x = np.ones(3)
    with pytest.raises(OpUsageError, match="op 'neg'.*same array object as input 0 'x'"):
        engine.add_operation([x], x, [None], "neg")


def test_backward_before_any_operation(engine):
    with pytest.raises(EngineStateError, match="before any operation"):
        engine.backward(1.0)


def test_backward_twice_over_one_tape(engine):
    engine.apply("exp", np.ones(2))
    engine.backward(1.0)
    with pytest.raises(EngineStateError, match="already ran.*zero_grad"):
        engine.backward(1.0)


def test_divergence_of_the_wrong_shape(engine):
    engine.apply("exp", np.ones((2, 3)))
    with pytest.raises(OpUsageError, match=r"divergence of shape \(3,\).*op 'exp'.*\(2, 3\)"):
        engine.backward(np.ones(3))


def test_backward_returning_the_wrong_number_of_gradients(engine, install_ops):
    install_ops({"name": "two_grads", "inputs": ("x",), "forward": lambda x: x * 1, "backward": lambda g, x: (g, g)})
    engine.apply("two_grads", np.ones(2))
    with pytest.raises(OpContractError, match=r"op 'two_grads' \(plugin 'test-plugin'\).*returned 2 gradients for 1"):
        engine.backward(1.0)


def test_backward_returning_an_array_for_a_tuple_is_refused_even_when_its_rows_would_pass(engine, install_ops):
    """``return g * b`` where ``return (g * b, g * a)`` belongs: an array of two rows for two inputs was read as two
    gradients, its rows, broadcast to the inputs' shape, with no error. Now any array is refused, naming the slip."""
    install_ops({"name": "times", "inputs": ("a", "b"), "forward": np.multiply, "backward": lambda g, a, b: g * b})
    engine.apply("times", np.ones((2, 3)), np.full((2, 3), 2.0))
    with pytest.raises(OpContractError, match=r"op 'times' .*returned float64 \(2, 3\), not a tuple of gradients"):
        engine.backward(np.ones((2, 3)))


def test_forward_returning_a_tuple_is_refused_not_stacked(engine, install_ops):
    """``return (x * 2,)`` was stacked by np.asarray into an output of shape (1, 3): a wrong result, silently."""
    install_ops({"name": "double", "inputs": ("x",), "forward": lambda x: (x * 2,), "backward": lambda g, x: (2 * g,)})
    with pytest.raises(OpContractError, match=r"op 'double' .*forward returned a tuple of 1 where an op of one output"):
        engine.apply("double", np.ones(3))
    with pytest.raises(OpContractError, match="forward returned a tuple of 1"):
        opreg.ops.double(opreg.Tensor(np.ones(3), requires_grad=True))


def test_backward_returning_a_gradient_of_the_wrong_shape(engine, install_ops):
    install_ops({"name": "wrong_shape", "inputs": ("x",), "forward": lambda x: 2 * x, "backward": lambda g, x: (g.T,)})
    engine.apply("wrong_shape", np.ones((2, 3)))
    with pytest.raises(OpContractError, match=r"op 'wrong_shape'.*test-plugin.*shape \(3, 2\).*input 0 'x'.*\(2, 3\)"):
        engine.backward(1.0)


def test_backward_returning_something_that_is_not_an_array(engine, install_ops):
    install_ops({"name": "text_grad", "inputs": ("x",), "forward": lambda x: 2 * x, "backward": lambda g, x: ("2",)})
    engine.apply("text_grad", np.ones(2))
    with pytest.raises(OpContractError, match="op 'text_grad'.*returned a str as the gradient of input 0 'x'"):
        engine.backward(1.0)


def _index_error_backward(g, x):
    return (g[[0, 1, 2, 3, 4, 5]],)  # an IndexError for fewer than six elements, as a plugin's bug might raise


def test_a_backward_that_raises_names_its_op_and_applies_no_gradient(engine, install_ops):
    """The error names the op, its plugin and what it was given, chains the original, and leaves every dW as it was:
    the op nearer the loss had its gradient computed, but none lands until the whole backward has succeeded."""
    install_ops({"name": "broken", "inputs": ("x",), "forward": lambda x: 2 * x, "backward": _index_error_backward})
    x, W, b = np.ones((2, 3)), np.ones((3, 3)), np.ones(3)
    dW, db = np.zeros_like(W), np.zeros_like(b)
    h = engine.apply("matmul", engine.apply("broken", x), W, gradients_to_update=[None, dW])
    engine.apply("add", h, b, gradients_to_update=[None, db])
    with pytest.raises(opreg.OpregError) as raised:
        engine.backward(1.0)
    assert type(raised.value).__name__ == "BackwardError"
    message = str(raised.value)
    assert message.startswith("op 'broken' (plugin 'test-plugin'): backward raised IndexError: index 2 is out of")
    assert "g: float64 (2, 3), x: float64 (2, 3)" in message and "zero_grad()" in message
    assert isinstance(raised.value.__cause__, IndexError)
    assert not dW.any() and not db.any()
    engine.zero_grad()  # what the message says to do; then the engine works again
    engine.apply("mul", x, b, gradients_to_update=[None, db])
    engine.backward(1.0)
    assert np.array_equal(db, [2.0, 2.0, 2.0])


def test_a_backward_failing_in_an_op_it_calls_names_both(engine, install_ops):
    """A registered op the backward calls fails on what the backward gave it: the error names the op whose
    backward it was, and chains the inner op's error, which names that one."""
    install_ops(
        {
            "name": "bad_call",
            "inputs": ("x",),
            "forward": lambda x: 2 * x,
            "backward": lambda g, x: (opreg.ops.matmul(g, x),),
        }
    )
    engine.apply("bad_call", np.ones((2, 3)))
    with pytest.raises(
        opreg.OpregError, match=r"^op 'bad_call' \(plugin 'test-plugin'\): backward raised OpUsageError: op 'matmul'"
    ):
        engine.backward(1.0)


def test_gradient_buffer_refuses_untracked_arrays():
    buffer = opreg.GradientBuffer()
    with pytest.raises(KeyError, match="not tracked"):
        buffer.update_param(np.ones(2), np.ones(2))
    with pytest.raises(KeyError, match="not tracked"):
        buffer.get_param(np.ones(2))


# --- attributes: static keyword parameters of an op ------------------------------------------------------------


def _total_backward(g, x, *, axis):
    return (np.broadcast_to(g if axis is None else np.expand_dims(g, axis), x.shape),)


TOTAL = {
    "name": "total",
    "inputs": ("x",),
    "attributes": {"axis": None},
    "forward": lambda x, *, axis: np.sum(x, axis=axis),
    "backward": _total_backward,
}


def test_attributes_reach_forward_and_backward_with_their_defaults(engine, install_ops):
    install_ops(TOTAL)
    x = rng.standard_normal((2, 3))
    np.testing.assert_allclose(engine.apply("total", x, axis=1), x.sum(axis=1))
    engine.backward(np.array([1.0, 2.0]))
    np.testing.assert_allclose(engine.gradient_buffer.get_param(x), [[1.0] * 3, [2.0] * 3])
    engine.zero_grad()
    assert engine.apply("total", x).shape == ()
    assert engine.operation_list[-1].attributes == {"axis": None}


def test_add_operation_takes_the_attributes_the_output_was_computed_with(engine, install_ops):
    install_ops(TOTAL)
    x = rng.standard_normal((2, 3))
    engine.add_operation([x], x.sum(axis=0), [None], "total", axis=0)
    engine.backward(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(engine.gradient_buffer.get_param(x), [[1.0, 2.0, 3.0]] * 2)


def test_an_unknown_attribute_is_refused_naming_the_declared_ones(engine, install_ops):
    install_ops(TOTAL)
    with pytest.raises(
        OpUsageError,
        match=r"op 'total' \(plugin 'test-plugin'\) has no attribute axes \(did you mean 'axis'\?\); .*axis=None",
    ):
        engine.apply("total", np.ones(3), axes=0)
    with pytest.raises(OpUsageError, match="op 'exp'.*has no attribute axis; its attributes: none"):
        engine.apply("exp", np.ones(3), axis=0)


def test_gradients_are_cast_to_their_inputs_dtype(engine):
    """float32 x times float64 y computes in float64; x's gradient still comes back float32, as in PyTorch."""
    x = rng.standard_normal(3).astype(np.float32)
    y = rng.standard_normal(3)
    dy = np.zeros(3)
    engine.apply("mul", x, y, gradients_to_update=[None, dy])
    engine.backward(1.0)
    grad_x = engine.gradient_buffer.get_param(x)
    assert grad_x.dtype == np.float32
    np.testing.assert_allclose(grad_x, y.astype(np.float32))
    np.testing.assert_allclose(dy, x)


@pytest.mark.parametrize(
    ("array", "number", "dtype"),
    [(np.ones(2, np.float32), 2.0, np.float32), (np.ones(2, np.float32), 2, np.float32), (np.ones(2, int), 2.5, float)],
)
def test_python_numbers_are_promoted_as_numpy_promotes_them(engine, array, number, dtype):
    assert engine.apply("mul", array, number).dtype == dtype
    assert engine.apply("add", number, array).dtype == dtype


def test_a_tape_of_100000_operations(engine):
    """backward is a loop over the tape, not a recursion: very deep graphs are fine."""
    y = x = np.ones(1)
    for _ in range(100_000):
        y = engine.apply("add", y, 1.0)
    engine.backward(1.0)
    assert y[0] == 100_001.0 and engine.gradient_buffer.get_param(x)[0] == 1.0


# --- Autograd(keep_gradients=False): only what training needs --------------------------------------------------------


def _mlp_step(engine: opreg.Autograd, x: np.ndarray, labels: np.ndarray, seed: int) -> list[np.ndarray]:
    """One forward and backward of a two-layer MLP on ``engine``; the gradients its dW/db arrays receive."""
    from opreg.nn import MLP, SoftmaxCrossEntropy

    model = MLP([x.shape[1], 7, labels.shape[1]], engine, rng=np.random.default_rng(seed))
    SoftmaxCrossEntropy(engine)(labels, model(x))
    engine.backward(1.0)
    return [p.grad.copy() for p in model.parameters()]


def test_keep_gradients_false_gives_the_parameters_the_same_gradients():
    x = rng.standard_normal((6, 5))
    labels = np.eye(3)[rng.integers(0, 3, 6)]
    kept = _mlp_step(opreg.Autograd(), x, labels, seed=1)
    lean = _mlp_step(opreg.Autograd(keep_gradients=False), x, labels, seed=1)
    for a, b in zip(kept, lean, strict=True):
        np.testing.assert_array_equal(a, b)


def test_keep_gradients_false_skips_the_gradient_of_an_array_no_op_produced(install_ops):
    """The batch needs no gradient: an op that declares needs_grad is told so, and the rest still get theirs."""
    asked = []

    def backward(g, a, b, *, needs_grad):
        asked.append(needs_grad)
        return (g * b if needs_grad[0] else None), (g * a if needs_grad[1] else None)

    install_ops(
        {
            "name": "spy_mul",
            "inputs": ("a", "b"),
            "forward": np.multiply,
            "backward": backward,
            "backward_uses_needs_grad": True,
        }
    )
    engine = opreg.Autograd(keep_gradients=False)
    x, w, dw = rng.standard_normal(3), rng.standard_normal(3), np.zeros(3)
    h = engine.apply("spy_mul", x, w, gradients_to_update=[None, dw])  # x: a leaf; w: its gradient goes to dw
    engine.apply("spy_mul", h, x)  # h: an intermediate, so it needs its gradient
    engine.backward(1.0)
    assert asked == [(True, False), (False, True)]
    np.testing.assert_allclose(dw, x * x)


def test_keep_gradients_false_refuses_to_read_the_buffer():
    engine = opreg.Autograd(keep_gradients=False)
    x = rng.standard_normal(3)
    engine.apply("exp", engine.apply("exp", x))
    engine.backward(1.0)
    with pytest.raises(EngineStateError, match=r"keep_gradients=False.*use Autograd\(\)"):
        engine.gradient_buffer.get_param(x)


def test_keep_gradients_false_lets_backward_free_the_tape_as_it_goes():
    """Each operation and its output's gradient slot are dropped once backward has passed them."""
    engine = opreg.Autograd(keep_gradients=False)
    x, dx = rng.standard_normal(3), np.zeros(3)
    engine.apply("sum", engine.apply("exp", engine.apply("mul", x, 2.0, gradients_to_update=[dx, None])))
    engine.backward(1.0)
    assert engine.operation_list == []
    assert engine.gradient_buffer.memory == {}
    np.testing.assert_allclose(dx, 2 * np.exp(2 * x))
    with pytest.raises(EngineStateError, match="already ran"):
        engine.backward(1.0)


# --- saves_for_backward: values forward computed, handed to backward ----------------------------------------------

#: log(sum(exp(x))) over everything, saving exp(x) and its sum; backward counts how often it ran on saved values.
SAVING_LOGSUMEXP = {
    "name": "saving_logsumexp",
    "inputs": ("x",),
    "forward": lambda x: (np.log(np.exp(x).sum()), (np.exp(x), np.exp(x).sum())),
    "backward": lambda g, x, *, saved: (g * saved[0] / saved[1],),
    "saves_for_backward": True,
}


def test_an_op_saving_for_backward_works_in_both_front_ends_and_add_operation(install_ops):
    install_ops(SAVING_LOGSUMEXP)
    x = rng.standard_normal((2, 3))
    softmax = np.exp(x) / np.exp(x).sum()
    engine = opreg.Autograd()
    output = engine.apply("saving_logsumexp", x)
    np.testing.assert_allclose(output, np.log(np.exp(x).sum()))
    engine.backward(1.0)
    np.testing.assert_allclose(engine.gradient_buffer.get_param(x), softmax)

    by_hand = opreg.Autograd()  # the handout's way: the output computed by the caller, then recorded
    by_hand.add_operation([x], np.asarray(np.log(np.exp(x).sum())), [None], "saving_logsumexp")
    by_hand.backward(2.0)
    np.testing.assert_allclose(by_hand.gradient_buffer.get_param(x), 2 * softmax)

    leaf = opreg.Tensor(x, requires_grad=True)
    loss = opreg.ops.saving_logsumexp(leaf)
    loss.backward(retain_graph=True)
    loss.backward()  # the saved values serve a second backward too
    np.testing.assert_allclose(leaf.grad, 2 * softmax)


def test_an_op_saving_for_backward_passes_every_check(install_ops):
    from opreg.opcheck import check_op

    install_ops(SAVING_LOGSUMEXP)
    check_op("saving_logsumexp")
    check_op("saving_logsumexp", fast=True)
    x = opreg.Tensor(rng.standard_normal(4), requires_grad=True)
    with opreg.checking(), opreg.detect_anomaly():
        opreg.ops.saving_logsumexp(x).backward()
    np.testing.assert_allclose(x.grad, np.exp(x.data) / np.exp(x.data).sum())


def test_a_saving_op_whose_backward_does_not_take_saved_is_refused(op_plugin):
    declaration = {**SAVING_LOGSUMEXP, "backward": lambda g, x: (g,)}
    with pytest.raises(opreg.RegistrationError, match=r"saving_logsumexp.*backward.*saved"):
        opreg.register_plugin(op_plugin(declaration), name="saving-plugin")


# --- add_operation given an output its op did not produce (issue #11, item 3) --------------------------------


def test_add_operation_refuses_an_output_that_is_not_an_array(engine):
    x = rng.standard_normal(3)
    with pytest.raises(OpUsageError, match=r"op 'exp' .*: the output is a list, not an array"):
        engine.add_operation([x], list(np.exp(x)), [None], "exp")


def test_add_operation_refuses_an_output_recorded_twice(engine):
    """Recorded under two ops, one output's gradient would reach its inputs twice."""
    x = rng.standard_normal(3)
    y = np.exp(x)
    engine.add_operation([x], y, [None], "exp")
    with pytest.raises(OpUsageError, match=r"op 'exp' .*: the output float64 \(3,\) is already on this tape"):
        engine.add_operation([x], y, [None], "exp")
    engine.backward(1.0)
    np.testing.assert_allclose(engine.gradient_buffer.get_param(x), np.exp(x))  # once, not twice


def test_add_operation_refuses_an_output_of_the_wrong_shape_or_dtype(engine):
    """For an op that declares a NumPy ufunc, the output's shape and dtype follow from the inputs'."""
    x = rng.standard_normal((2, 3))
    with pytest.raises(OpUsageError, match=r"op 'exp' .*: the output is float64 \(6,\), but forward gives "):
        engine.add_operation([x], np.exp(x).ravel(), [None], "exp")
    with pytest.raises(OpUsageError, match=r"the output is float32 \(2, 3\), but forward gives float64 \(2, 3\)"):
        engine.add_operation([x], np.exp(x).astype(np.float32), [None], "exp")


@pytest.mark.parametrize("name", ["exp", "sigmoid", "tanh", "div"])
def test_checking_mode_compares_an_added_output_with_forward(engine, name):
    """exp, sigmoid, tanh and div read their output in backward: a wrong one gives a wrong gradient."""
    inputs = [rng.uniform(0.5, 2.0, 3) for _ in opreg.get_registry()[name].inputs]
    output = opreg.get_registry()[name].output_of(*inputs) + 0.5
    with opreg.checking(), pytest.raises(OpUsageError, match=rf"op '{name}' .*differs from what forward computes"):
        engine.add_operation(inputs, output, [None] * len(inputs), name)


# --- Tensors given to the tape engine (issue #11, item 6) ---------------------------------------------------


def test_apply_refuses_a_tensor_naming_the_tensor_front_end(engine):
    with pytest.raises(OpUsageError, match=r"op 'exp' .*: input 0 'x' is a Tensor.*opreg\.ops\.exp"):
        engine.apply("exp", opreg.Tensor(np.ones(3)))


def test_add_operation_refuses_tensors_as_inputs_output_or_gradient_arrays(engine):
    x = np.ones(3)
    t = opreg.Tensor(x)
    with pytest.raises(OpUsageError, match=r"input 0 'x' is a Tensor"):
        engine.add_operation([t], np.exp(x), [None], "exp")
    with pytest.raises(OpUsageError, match=r"the output is a Tensor"):
        engine.add_operation([x], opreg.Tensor(np.exp(x)), [None], "exp")
    with pytest.raises(OpUsageError, match=r"gradients_to_update\[1\] is a Tensor"):
        engine.apply("mul", x, x, gradients_to_update=[None, opreg.Tensor(np.zeros(3))])


def test_add_operation_compares_shape_and_dtype_with_the_forward_a_saving_op_runs_anyway(engine):
    logits, labels = rng.standard_normal((4, 3)), np.eye(3)[[0, 1, 2, 0]]
    loss = opreg.get_registry()["softmax_cross_entropy"].output_of(logits, labels)
    with pytest.raises(OpUsageError, match=r"the output is float64 \(1,\), but forward gives float64 \(\)"):
        engine.add_operation([logits, labels], loss.reshape(1), [None, None], "softmax_cross_entropy")
    engine.add_operation([logits, labels], loss, [None, None], "softmax_cross_entropy")


def test_an_integer_inputs_gradient_is_float64_and_not_truncated(engine):
    """An integer array is a valid input; its gradient is float64 (as the docs say), so 0.5 stays 0.5, not 0."""
    a, b = np.array([1, 2]), np.array([0.5, 0.25])
    da = np.zeros(2)
    engine.apply("mul", a, b, gradients_to_update=[da, None])
    engine.backward(1.0)
    np.testing.assert_array_equal(da, [0.5, 0.25])
    assert engine.gradient_buffer.get_param(b).dtype == np.float64
    np.testing.assert_array_equal(engine.gradient_buffer.get_param(b), [1.0, 2.0])


def test_the_divergence_is_copied_so_changing_it_afterwards_changes_no_gradient(engine):
    """backward(divergence) keeps its own copy: the caller may reuse the array, as opreg train reuses buffers."""
    x = np.ones(3)
    y = engine.apply("exp", x)
    divergence = np.full(3, 2.0)
    engine.backward(divergence)
    divergence[...] = 0.0
    np.testing.assert_array_equal(engine.gradient_buffer.get_param(y), np.full(3, 2.0))


@pytest.mark.parametrize("divergence", [1.0, 2.0, -0.5])
def test_a_scalar_divergence_scales_every_gradient(divergence):
    """``backward(2.0)`` gives twice the gradients of ``backward(1.0)``: the scalar is the value of d(root)/d(output)
    everywhere, not merely a signal to start. Through the tape, Tensor.backward and opreg.grad alike."""
    x, w = rng.standard_normal((2, 3)), rng.standard_normal(3)
    engine = opreg.Autograd()
    engine.apply("mul", x, w)
    engine.backward(divergence)
    np.testing.assert_allclose(engine.gradient_buffer.get_param(x), divergence * np.broadcast_to(w, x.shape))
    np.testing.assert_allclose(engine.gradient_buffer.get_param(w), divergence * x.sum(axis=0))

    leaf = opreg.Tensor(x, requires_grad=True)
    loss = (leaf * w).sum()
    (by_grad,) = opreg.grad(loss, [leaf], divergence, retain_graph=True)
    loss.backward(divergence)
    np.testing.assert_allclose(leaf.grad, divergence * np.broadcast_to(w, x.shape))
    np.testing.assert_allclose(by_grad.data, leaf.grad)


def test_a_gradient_for_an_input_declared_non_differentiable_is_dropped(install_ops):
    """An op declares ``differentiable=("x",)``, and its backward returns a gradient for ``scale`` all the same:
    that gradient reaches nobody (no tape entry, no ``.grad``, ``None`` from opreg.grad), as the declaration says."""
    install_ops(
        {
            "name": "scaled",
            "inputs": ("x", "scale"),
            "forward": lambda x, scale: x * scale,
            "backward": lambda g, x, scale: (g * scale, np.full(np.shape(scale), 99.0)),
            "differentiable": ("x",),
        }
    )
    x, scale = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    engine = opreg.Autograd()
    engine.apply("scaled", x, scale)
    engine.backward(1.0)
    np.testing.assert_allclose(engine.gradient_buffer.get_param(x), scale)
    assert not engine.gradient_buffer.is_in_memory(scale)

    tx, tscale = opreg.Tensor(x, requires_grad=True), opreg.Tensor(scale, requires_grad=True)
    loss = opreg.ops.scaled(tx, tscale).sum()
    assert opreg.grad(loss, [tx, tscale], retain_graph=True)[1] is None
    loss.backward()
    assert tscale.grad is None
