"""``Autograd.backward(..., zero_grad=params)``: the parameters' gradient arrays zeroed as the gradients land (the
first written, not added to a fill of zeros), giving the values ``optimizer.zero_grad()`` then ``backward()`` gives,
and the bits a Tensor's ``.grad`` gets (a -0.0 stays -0.0, as in PyTorch); ``zero_grad()`` itself still fills,
since the caller may read ``dW`` before ``backward``."""

from __future__ import annotations

import numpy as np
import pytest
from test_threads import run_together

import opreg
from opreg import OpUsageError, Tensor
from opreg.landing import WRITTEN_FROM
from opreg.nn import MLP, Identity, SoftmaxCrossEntropy
from opreg.optim import SGD


def _trainer(dtype, keep_gradients, seed=0):
    engine = opreg.Autograd(keep_gradients=keep_gradients)
    model = MLP([6, 5, 4, 3], engine, output_activation=Identity, rng=np.random.default_rng(seed), dtype=dtype)
    return engine, model, SoftmaxCrossEntropy(engine), SGD(model.parameters(), lr=0.5)


@pytest.mark.parametrize("keep_gradients", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zeroing_as_the_gradients_land_gives_the_values_of_zero_grad_then_backward(dtype, keep_gradients):
    """Over several SGD steps, gradients agree in value with the handout's loop (ReLU makes -0.0 products, which a
    fill then += turns into +0.0, and a write keeps), and weights bit for bit."""
    rng = np.random.default_rng(1)
    handout, fused = _trainer(dtype, keep_gradients), _trainer(dtype, keep_gradients)
    for _ in range(4):
        x = rng.standard_normal((3, 6)).astype(dtype)
        x[:, :2] = 0.0
        y = np.eye(3, dtype=dtype)[rng.integers(0, 3, 3)]
        engine, model, criterion, optimizer = handout
        optimizer.zero_grad()
        criterion(y, model(x))
        engine.backward(1.0)
        optimizer.step()
        engine.zero_grad()
        engine, model, criterion, optimizer = fused
        criterion(y, model(x))
        engine.backward(1.0, zero_grad=optimizer.parameters)
        optimizer.step()
        engine.zero_grad()
        for a, b in zip(handout[1].parameters(), fused[1].parameters(), strict=True):
            np.testing.assert_array_equal(a.grad, b.grad)
            assert a.data.tobytes() == b.data.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_first_gradient_is_written_as_it_is_the_bits_a_tensors_grad_gets(dtype):
    """A batch of one makes dW an outer product, -0.0 where the gradient is negative and the input 0: written into
    dW as it is, as the Tensor front end (and PyTorch, whose zero_grad sets .grad to None) hands it to .grad. The
    tape and Tensors then give one model the same gradients and weights bit for bit, step after step."""
    rng = np.random.default_rng(3)
    engine = opreg.Autograd(keep_gradients=False)
    tape = MLP([6, 5, 3], engine, output_activation=Identity, rng=np.random.default_rng(0), dtype=dtype)
    tensors = MLP([6, 5, 3], None, output_activation=Identity, rng=np.random.default_rng(0), dtype=dtype)
    tape_opt, tensor_opt = SGD(tape.parameters(), lr=0.5), SGD(tensors.parameters(), lr=0.5)
    tape_loss, tensor_loss = SoftmaxCrossEntropy(engine), SoftmaxCrossEntropy(None)
    negative_zeros = 0
    for _ in range(4):
        x = rng.standard_normal((1, 6)).astype(dtype)
        x[:, :3] = 0.0
        y = np.eye(3, dtype=dtype)[rng.integers(0, 3, 1)]
        tape_loss(y, tape(x))
        engine.backward(1.0, zero_grad=tape_opt.parameters)
        tensor_opt.zero_grad()
        tensor_loss(y, tensors(Tensor(x))).backward()
        for a, b in zip(tape.parameters(), tensors.parameters(), strict=True):
            assert a.grad.tobytes() == b.grad.tobytes()
            negative_zeros += int(np.signbit(a.grad[a.grad == 0]).sum())
        tape_opt.step()
        tensor_opt.step()
        engine.zero_grad()
        for a, b in zip(tape.parameters(), tensors.parameters(), strict=True):
            assert a.data.tobytes() == b.data.tobytes()
    assert negative_zeros  # the case the test is about arose


def test_without_zero_grad_gradients_still_accumulate_and_unreached_arrays_are_filled():
    engine, model, criterion, optimizer = _trainer(np.float64, False)
    x, y = np.ones((2, 6)), np.eye(3)[[0, 1]]
    unused = np.full(4, 7.0)  # a parameter the step does not reach: zeroed as zero_grad() would
    criterion(y, model(x))
    engine.backward(1.0, zero_grad=[*optimizer.parameters, unused])
    once = [p.grad.copy() for p in optimizer.parameters]
    engine.zero_grad()
    criterion(y, model(x))
    engine.backward(1.0)  # no zeroing: adds
    for p, g in zip(optimizer.parameters, once, strict=True):
        np.testing.assert_array_equal(p.grad, 2 * g)
    assert not unused.any()


def test_zero_grad_still_fills_so_that_dw_reads_as_zeros_before_backward():
    optimizer = _trainer(np.float64, False)[3]
    for p in optimizer.parameters:
        p.grad[...] = 3.0
    optimizer.zero_grad()
    assert all(not p.grad.any() for p in optimizer.parameters)


@pytest.mark.parametrize("size", [3, WRITTEN_FROM])
def test_a_failed_backward_lands_nothing_and_zeroes_what_it_was_given(install_ops, size):
    """A backward raising after a large dW got its gradient written (the linear below the broken op) leaves no
    part of a gradient anywhere: every array given to zero_grad= is zeros, as asked, every other as it was."""
    install_ops({"name": "broken", "inputs": ("x",), "forward": lambda x: x * 2, "backward": lambda g, x: (g[10**9],)})
    engine = opreg.Autograd()
    x, W, b = np.ones((2, size)), np.ones((1, size)), np.ones(1)
    dW, db, other = np.full((1, size), 5.0), np.full(1, 5.0), np.full((1, size), 7.0)
    k = engine.apply("broken", engine.apply("linear", x, W, b, gradients_to_update=[None, other, None]))
    h = engine.apply("linear", x, W, b, gradients_to_update=[None, dW, db])  # its backward runs before broken's
    engine.apply("add", engine.apply("sum", h), engine.apply("sum", k))
    with pytest.raises(opreg.BackwardError, match="those given to backward\\(zero_grad=...\\) are zeroed"):
        engine.backward(1.0, zero_grad=[dW, db])
    assert not dW.any() and not db.any()
    np.testing.assert_array_equal(other, np.full((1, size), 7.0))


def test_views_of_one_memory_land_as_a_fill_then_additions():
    """dW lands through itself and through its transpose; a row of a flat buffer through itself only: each ends
    as zeros plus what reached it, as with a fill first."""
    engine = opreg.Autograd()
    x, W = np.arange(6.0).reshape(2, 3), np.ones((2, 3))
    dW, flat = np.full((2, 3), 9.0), np.full(8, 9.0)
    row, other = flat[:3], flat[3:6]
    h = engine.apply("mul", x, W, gradients_to_update=[None, dW])
    t = engine.apply("mul", x.T, W.T, gradients_to_update=[None, dW.T])
    u = engine.apply("mul", np.ones(3), np.ones(3), gradients_to_update=[None, row])
    both = engine.apply("add", engine.apply("sum", h), engine.apply("sum", t))
    engine.apply("add", both, engine.apply("sum", u))
    engine.backward(1.0, zero_grad=[dW, row, other])
    np.testing.assert_array_equal(dW, 2 * x)
    np.testing.assert_array_equal(flat, [1, 1, 1, 0, 0, 0, 9, 9])


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (Tensor(np.ones(2), requires_grad=True), "item 0 is a Tensor"),
        ("dW", "item 0 is a str, not a gradient array"),
        (np.broadcast_to(np.zeros(2), (2,)), "is read-only"),
        (np.zeros(2), r"backward\(zero_grad=...\) takes a list"),
    ],
)
def test_what_no_gradient_could_land_in_is_refused_before_anything_runs(item, message):
    engine = opreg.Autograd()
    engine.apply("exp", np.ones(2))
    with pytest.raises(OpUsageError, match=message):
        engine.backward(1.0, zero_grad=item if message.startswith("backward") else [item])
    engine.backward(1.0)  # the tape is untouched


def test_threads_zeroing_their_own_arrays_lose_no_addition_to_a_shared_one():
    """Each thread writes its own dW (zeroed as it lands) and adds into one shared array, under the landing locks."""
    size, steps, threads = 50_000, 30, 2
    shared, own = np.zeros(size), [np.full(size, 5.0) for _ in range(threads)]

    def train(i: int) -> None:
        engine = opreg.Autograd(keep_gradients=False)
        for _ in range(steps):
            a = engine.apply("mul", np.ones(size), np.zeros(size), gradients_to_update=[None, shared])
            b = engine.apply("mul", np.ones(size), np.zeros(size), gradients_to_update=[None, own[i]])
            engine.apply("add", a, b)
            engine.backward(1.0, zero_grad=[own[i]])
            engine.zero_grad()

    run_together(train, threads)
    assert np.array_equal(shared, np.full(size, float(threads * steps)))
    assert all(np.array_equal(dw, np.ones(size)) for dw in own)


def _big_trainers(dtype, keep_gradients):
    """A tape model whose first weight (100 x 200) is large enough to be written in place, and its Tensor twin."""
    engine = opreg.Autograd(keep_gradients=keep_gradients)
    tape = MLP([200, 100, 3], engine, output_activation=Identity, rng=np.random.default_rng(0), dtype=dtype)
    tensors = MLP([200, 100, 3], None, output_activation=Identity, rng=np.random.default_rng(0), dtype=dtype)
    assert tape.parameters()[0].grad.size >= WRITTEN_FROM > tape.parameters()[2].grad.size
    return engine, tape, tensors


@pytest.mark.parametrize("keep_gradients", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_large_dw_gets_its_gradient_written_in_place_with_a_tensors_bits(dtype, keep_gradients, monkeypatch):
    """The first weight's gradient is written into dW by linear's backward itself (no gradient array of its own
    lands there afterwards), the small ones are copied in: every gradient and weight has the bits the Tensor front
    end gives, step after step."""
    landed: list[int] = []

    def land(landings, zeroed=()):
        landed[:] = [id(target) for target, _ in landings]
        opreg.landing.land(landings, zeroed)

    monkeypatch.setattr(opreg.backprop, "land", land)
    rng = np.random.default_rng(4)
    engine, tape, tensors = _big_trainers(dtype, keep_gradients)
    tape_opt, tensor_opt = SGD(tape.parameters(), lr=0.5), SGD(tensors.parameters(), lr=0.5)
    tape_loss, tensor_loss = SoftmaxCrossEntropy(engine), SoftmaxCrossEntropy(None)
    for _ in range(3):
        x = rng.standard_normal((5, 200)).astype(dtype)
        y = np.eye(3, dtype=dtype)[rng.integers(0, 3, 5)]
        tape_loss(y, tape(x))
        engine.backward(1.0, zero_grad=tape_opt.parameters)
        if not opreg.observe.active:  # checking mode watches every backward call: each gradient lands as computed
            assert id(tape.parameters()[0].grad) not in landed and id(tape.parameters()[2].grad) in landed
        finish_like_tensors(engine, tape, tape_opt, tensors, tensor_opt, tensor_loss, x, y)


def finish_like_tensors(engine, tape, tape_opt, tensors, tensor_opt, tensor_loss, x, y):
    """After the tape model's backward on ``(x, y)``: the Tensor twin's step on them, and the gradients and then
    the updated weights of both compared bit for bit; the tape's step is finished (update, ``zero_grad``)."""
    tensor_opt.zero_grad()
    tensor_loss(y, tensors(Tensor(x))).backward()
    for a, b in zip(tape.parameters(), tensors.parameters(), strict=True):
        assert a.grad.tobytes() == b.grad.tobytes()
    tape_opt.step()
    tensor_opt.step()
    engine.zero_grad()
    for a, b in zip(tape.parameters(), tensors.parameters(), strict=True):
        assert a.data.tobytes() == b.data.tobytes()


def test_a_large_dw_reached_twice_holds_both_gradients():
    """One weight in two layers: the first gradient is written, the second added when the pass ends."""
    rng = np.random.default_rng(5)
    x, W, b = rng.standard_normal((4, 200)), rng.standard_normal((200, 200)), np.zeros(200)
    sums = []
    for zero_grad in (False, True):
        engine = opreg.Autograd(keep_gradients=False)
        dW = np.full_like(W, 3.0)
        if not zero_grad:
            dW.fill(0)
        h = engine.apply("linear", x, W, b, gradients_to_update=[None, dW, None])
        h = engine.apply("linear", engine.apply("tanh", h), W, b, gradients_to_update=[None, dW, None])
        engine.apply("sum", engine.apply("square", h))
        engine.backward(1.0, zero_grad=[dW] if zero_grad else ())
        sums.append(dW)
    np.testing.assert_array_equal(sums[1], sums[0])


def test_a_large_dw_an_op_reads_is_not_written_before_that_op_has_read_it():
    """An op recorded before the linear layer reads dW's values (their gradient, dc, is dW as it was): the pass
    reaches that op's backward after linear's, so dW must not have its new gradient yet."""
    rng = np.random.default_rng(6)
    x, W, b = rng.standard_normal((4, 150)), rng.standard_normal((120, 150)), np.zeros(120)
    dW, c, dc = rng.standard_normal((120, 150)), np.ones((120, 150)), np.zeros((120, 150))
    before = dW.copy()
    engine = opreg.Autograd(keep_gradients=False)
    k = engine.apply("mul", dW, c, gradients_to_update=[None, dc])
    h = engine.apply("linear", x, W, b, gradients_to_update=[None, dW, None])
    engine.apply("add", engine.apply("sum", k), engine.apply("sum", h))
    engine.backward(1.0, zero_grad=[dW])
    np.testing.assert_array_equal(dc, before)
    np.testing.assert_array_equal(dW, np.ones((4, 120)).T @ x)
