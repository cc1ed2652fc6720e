"""An eager step, tape or Tensors, writes its large arrays into the memory of the last step's (opreg.reuse): the same
numbers as fresh arrays, no large allocation once steady, and never an array the caller still holds."""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pytest
from test_zero_on_landing import finish_like_tensors

import opreg
from opreg.nn import MLP, Identity, SoftmaxCrossEntropy
from opreg.optim import SGD
from opreg.reuse import REUSED_FROM, TensorSteps

SIZES = [300, 200, 10]
BATCH = 512  # the first layer's output, its ReLU's and their gradients: 400 KB in float32, so each is reused


def _batch(rng: np.random.Generator, dtype: type, batch: int = BATCH) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal((batch, SIZES[0])).astype(dtype)
    return x, np.eye(SIZES[-1], dtype=dtype)[rng.integers(0, SIZES[-1], batch)]


def _address(x: np.ndarray) -> int:
    return int(x.__array_interface__["data"][0])


@pytest.mark.parametrize("zero_grad", ["handout", "backward"])
@pytest.mark.parametrize("keep_gradients", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_steps_give_the_tensor_front_ends_bits_in_reused_memory(dtype, keep_gradients, zero_grad):
    """Tape and Tensor models from the same weights take steps on batches of two sizes: every gradient and weight
    has the same bits after every step (both reuse memory: the Tensor front end's own test is below), and at a
    second step in a row of one size, the tape's first layer writes its output where it wrote it at the first."""
    assert BATCH * SIZES[1] * np.dtype(dtype).itemsize >= REUSED_FROM
    rng = np.random.default_rng(0)
    engine = opreg.Autograd(keep_gradients=keep_gradients)
    tape = MLP(SIZES, engine, output_activation=Identity, rng=np.random.default_rng(1), dtype=dtype)
    tensors = MLP(SIZES, None, output_activation=Identity, rng=np.random.default_rng(1), dtype=dtype)
    tape_opt, tensor_opt = SGD(tape.parameters(), lr=0.1), SGD(tensors.parameters(), lr=0.1)
    tape_loss, tensor_loss = SoftmaxCrossEntropy(engine), SoftmaxCrossEntropy(None)
    addresses: dict[int, list[int]] = {BATCH: [], 400: []}
    for batch in [BATCH] * 3 + [400] * 3 + [BATCH] * 2:
        x, y = _batch(rng, dtype, batch)
        if zero_grad == "handout":
            tape_opt.zero_grad()
        tape_loss(y, tape(x))
        addresses[batch].append(_address(engine.operation_list[0].output))
        engine.backward(1.0, **({} if zero_grad == "handout" else {"zero_grad": tape_opt.parameters}))
        finish_like_tensors(engine, tape, tape_opt, tensors, tensor_opt, tensor_loss, x, y)
    if not opreg.observe.active:  # checking mode runs every op as defined, into fresh arrays
        # each size's second and third steps in a row: the first of them takes spare memory, the second the same
        assert addresses[BATCH][1] == addresses[BATCH][2] and addresses[400][1] == addresses[400][2]


@pytest.mark.skipif("opreg.observe.active", reason="checking mode runs every op as defined, into fresh arrays")
@pytest.mark.parametrize("keep_gradients", [True, False])
def test_a_steady_step_makes_no_large_array(keep_gradients):
    """From the third step on, the tape's forward and backward (the handout's, gradients added into zeroed dW)
    allocate nothing as large as the arrays they reuse: what they hold at most at once besides is less than one of
    them (it was 3.6-5.1 MB). The optimizer's update is not the tape's: SGD takes its own temporary."""
    rng = np.random.default_rng(0)
    engine = opreg.Autograd(keep_gradients=keep_gradients)
    model = MLP(SIZES, engine, output_activation=Identity, rng=rng)
    criterion, optimizer = SoftmaxCrossEntropy(engine), SGD(model.parameters(), lr=0.1)
    x, y = _batch(rng, np.float64)
    for step in range(3):
        optimizer.zero_grad()
        if step == 2:
            tracemalloc.start()
        try:
            criterion(y, model(x))
            engine.backward(1.0)
            transient = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        optimizer.step()
        engine.zero_grad()
    assert transient < BATCH * SIZES[1] * 8, f"the step held {transient} bytes more at once"


@pytest.mark.parametrize("keep_gradients", [True, False])
def test_arrays_the_caller_still_holds_are_never_written(keep_gradients):
    """An output kept from a step (a view of one too) and a gradient taken from the buffer keep their values through
    the next steps, which reuse the memory of everything else; dropped, that memory is written again."""
    rng = np.random.default_rng(0)
    engine = opreg.Autograd(keep_gradients=keep_gradients)
    w0, b0 = rng.standard_normal((200, 300)) * 0.05, np.zeros(200)
    w1, b1 = rng.standard_normal((10, 200)) * 0.05, np.zeros(10)
    grads = [np.zeros_like(p) for p in (w0, b0, w1, b1)]

    def step() -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        x, y = _batch(rng, np.float64)
        for g in grads:
            g.fill(0)
        h = engine.apply("linear", x, w0, b0, gradients_to_update=[None, grads[0], grads[1]])
        a = engine.apply("relu", h)
        z = engine.apply("linear", a, w1, b1, gradients_to_update=[None, grads[2], grads[3]])
        engine.apply("softmax_cross_entropy", z, y)
        engine.backward(1.0)
        gradient = engine.gradient_buffer.memory[id(a)] if keep_gradients else None
        engine.zero_grad()
        return h, a, gradient

    step()
    h, a, gradient = step()
    kept = {"h": h, "a view of a": a[:, 3:7], "a's gradient": gradient}
    copies = {name: None if x is None else x.copy() for name, x in kept.items()}
    addresses = {_address(h), _address(a)}
    del h, a, gradient
    for _ in range(3):
        again = step()
    for name, x in kept.items():
        assert x is None or x.tobytes() == copies[name].tobytes(), f"{name} was written by a later step"
    if not opreg.observe.active:
        assert _address(again[0]) not in addresses and _address(again[1]) not in addresses
        h_address = _address(again[0])
        del again
        assert _address(step()[0]) == h_address  # let go of, the last step's output is written again


# --- the Tensor front end ---------------------------------------------------------------------------------------


def _tensor_steps(dtype: type, habit: str, reuse: bool, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Steps of a Tensor MLP on batches of two sizes, clearing gradients by ``habit``; the bytes of every gradient
    and weight after each step, and whether the first layer wrote its output where it did a step before. With
    ``reuse`` off (a threshold no array reaches, in a thread state of its own) every array is new."""
    with monkeypatch.context() as patch:
        patch.setattr(opreg.tensor, "_steps", TensorSteps())
        if not reuse:
            patch.setattr(opreg.tensor, "REUSED_FROM", 1 << 62)
        rng = np.random.default_rng(0)
        model = MLP(SIZES, None, output_activation=Identity, rng=np.random.default_rng(1), dtype=dtype)
        optimizer = SGD(model.parameters(), lr=0.1)
        criterion = SoftmaxCrossEntropy(None)
        results: list[bytes] = []
        addresses = []
        for batch in [BATCH] * 4 + [400] * 2 + [BATCH] * 3:
            x, y = _batch(rng, dtype, batch)
            if habit == "module":
                model.zero_grad()
            else:
                optimizer.zero_grad(set_to_none=habit != "zeros")
            hidden = model.layers[0](opreg.Tensor(x))
            addresses.append(_address(hidden.data))
            for layer in model.layers[1:]:
                hidden = layer(hidden)
            criterion(y, hidden).backward()
            del hidden
            results += [p.grad.tobytes() for p in model.parameters()]
            optimizer.step()
            results += [p.data.tobytes() for p in model.parameters()]
        # The first step that makes a large array starts the counting of positions, the second plans them, the
        # third takes spare memory and the fourth the same; after a change of size, the second and third do.
        reused = addresses[2] == addresses[3] and addresses[-2] == addresses[-1]
        return [*results, str(reused).encode()]


@pytest.mark.parametrize("habit", ["optimizer", "module", "zeros"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tensor_steps_in_reused_memory_give_fresh_arrays_bits(dtype, habit, monkeypatch):
    """A Tensor model's steps write their large arrays (outputs, gradients, ``.grad``) into the last step's memory:
    every gradient and weight has the bits of steps that make every array new, over batches of two sizes and
    whichever way the gradients are cleared, and the memory was reused."""
    reused = _tensor_steps(dtype, habit, True, monkeypatch)
    fresh = _tensor_steps(dtype, habit, False, monkeypatch)
    assert reused[:-1] == fresh[:-1]
    assert fresh[-1] == b"False"
    if not opreg.observe.active:  # checking mode runs every op as defined, into fresh arrays
        assert reused[-1] == b"True"


@pytest.mark.parametrize("front_end", ["tape", "tensor"])
def test_a_large_input_that_is_not_differentiable_gets_no_gradient(front_end):
    """softmax_cross_entropy's labels take no gradient. Large, they must not be given a spare array (whose values
    are the last step's leftovers) as their gradient, which would flow on into whatever computed them: here
    ``scale``, whose gradient must stay 0."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((512, 128))  # 512 KB
    labels = np.eye(128)[rng.integers(0, 128, 512)]
    engine = opreg.Autograd() if front_end == "tape" else None
    for _ in range(3):  # from the second step on, spare arrays hold the last step's values
        if engine is not None:
            d_scale, d_logits = np.zeros(1), np.zeros_like(logits)
            y = engine.apply("mul", labels, np.ones(1), gradients_to_update=[None, d_scale])
            engine.apply(
                "softmax_cross_entropy", engine.apply("add", logits, 0.0, gradients_to_update=[d_logits, None]), y
            )
            engine.backward(1.0)
            engine.zero_grad()
            assert d_scale[0] == 0.0 and d_logits.any()
        else:
            scale = opreg.Tensor(np.ones(1), requires_grad=True)
            x = opreg.Tensor(logits, requires_grad=True)
            opreg.tensor.apply("softmax_cross_entropy", x + 0.0, opreg.Tensor(labels) * scale).backward()
            assert scale.grad is None or scale.grad[0] == 0.0
            assert x.grad.any()


def test_a_tensor_gradient_the_caller_holds_keeps_its_values():
    """A ``.grad`` the caller took is never written by later steps: not reused as a spare once ``.grad`` is
    cleared, and not added into in place when backward accumulates (a new array then)."""
    rng = np.random.default_rng(2)
    model = MLP(SIZES, None, output_activation=Identity, rng=np.random.default_rng(1))
    optimizer = SGD(model.parameters(), lr=0.1)
    criterion = SoftmaxCrossEntropy(None)
    kept = []
    for step in range(4):
        x, y = _batch(rng, np.float64)
        if step % 2 == 0:
            model.zero_grad()  # accumulates over odd steps
        criterion(y, model(opreg.Tensor(x))).backward()
        grad = model.layers[0].W.grad
        kept.append((grad, grad.copy()))
        optimizer.step()
    for grad, values in kept:
        assert grad.tobytes() == values.tobytes()
    assert not any(a is b for (a, _), (b, _) in itertools.pairwise(kept))


@pytest.mark.skipif("opreg.observe.active", reason="checking mode runs every op as defined: nothing is planned")
def test_forward_passes_without_backward_do_not_grow_the_plan(monkeypatch):
    """Positions count on while a loop records forward passes without ``backward()`` (evaluating with gradients
    on): the plan stays within its bound, and the next step after a backward() is planned from position 0."""
    monkeypatch.setattr(opreg.tensor, "_steps", TensorSteps())
    monkeypatch.setattr(opreg.tensor, "PLANNED_OPS", 8)
    rng = np.random.default_rng(3)
    model = MLP(SIZES, None, output_activation=Identity, rng=np.random.default_rng(1))
    criterion = SoftmaxCrossEntropy(None)
    x, y = _batch(rng, np.float64)
    for _ in range(2):  # the first makes a large array, the second counts from position 0
        criterion(y, model(opreg.Tensor(x))).backward()
    for _ in range(20):
        criterion(y, model(opreg.Tensor(x)))
    steps = opreg.tensor._steps
    assert steps.position > 8 and len(steps.plan) <= 8
    criterion(y, model(opreg.Tensor(x))).backward()
    assert steps.position == 0 and steps.plan[0] is not None


@pytest.mark.skipif("opreg.observe.active", reason="checking mode runs every op as defined: nothing is planned")
def test_a_small_graph_after_a_large_model_pays_for_no_reuse(monkeypatch):
    """A thread that trained a large model stops counting positions and giving spares at the first backward() of a
    step that made no large array: small graphs after it cost what they cost before (bench/ times tiny steps in a
    process that has run an MNIST-sized one)."""
    monkeypatch.setattr(opreg.tensor, "_steps", TensorSteps())
    steps = opreg.tensor._steps
    rng = np.random.default_rng(4)
    large = MLP(SIZES, None, output_activation=Identity, rng=np.random.default_rng(1))
    criterion = SoftmaxCrossEntropy(None)
    x, y = _batch(rng, np.float64)
    for _ in range(2):
        criterion(y, large(opreg.Tensor(x))).backward()
    assert steps.counting
    small = MLP([3, 4, 2], None, output_activation=Identity, rng=np.random.default_rng(1))
    criterion(np.eye(2)[[0, 1]], small(opreg.Tensor(np.ones((2, 3))))).backward()
    assert not steps.counting and not steps.large
    criterion(y, large(opreg.Tensor(x))).backward()  # a large step again: counting from its backward on
    assert steps.counting


def test_tensor_outputs_the_caller_still_holds_are_never_written(monkeypatch):
    """A Tensor step's output kept from a step (its array, a view of it, the Tensor itself) keeps its values
    through the next steps, which reuse the memory of everything else."""
    monkeypatch.setattr(opreg.tensor, "_steps", TensorSteps())
    rng = np.random.default_rng(6)
    model = MLP(SIZES, None, output_activation=Identity, rng=np.random.default_rng(1))
    optimizer = SGD(model.parameters(), lr=0.1)
    criterion = SoftmaxCrossEntropy(None)

    def step() -> opreg.Tensor:
        x, y = _batch(rng, np.float64)
        optimizer.zero_grad()
        hidden = model.layers[0](opreg.Tensor(x))
        out = hidden
        for layer in model.layers[1:]:
            out = layer(out)
        criterion(y, out).backward()
        optimizer.step()
        return hidden

    for _ in range(3):  # counting, planned, reused
        step()
    hidden = step()
    kept = {"the Tensor": hidden, "its array": hidden.data, "a view": hidden.data[5:9, 2:]}
    values = {name: x.data if isinstance(x, opreg.Tensor) else x for name, x in kept.items()}
    copies = {name: x.copy() for name, x in values.items()}
    del hidden, values
    for _ in range(3):
        step()
    for name, x in kept.items():
        array = x.data if isinstance(x, opreg.Tensor) else x
        assert array.tobytes() == copies[name].tobytes(), f"{name} was written by a later step"
