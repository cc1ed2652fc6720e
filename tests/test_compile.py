"""``opreg.compile``: a replayed step gives the eager step's numbers bit for bit, and runs eagerly whenever a replay
could differ (:mod:`opreg.compiled`)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import opreg
from opreg.nn import MLP, Dropout, Identity, Linear, ReLU, Sequential, SoftmaxCrossEntropy
from opreg.optim import SGD, Adam

#: Under OPREG_CHECK=1 (checking mode) a compiled step is recorded, never replayed: checking mode watches every op.
REPLAYS = not opreg.observe.active


def batches(n: int, rows: int = 8, features: int = 5, classes: int = 3, dtype: Any = np.float64) -> list[Any]:
    rng = np.random.default_rng(n)
    return [
        (rng.normal(size=(rows, features)).astype(dtype), np.eye(classes, dtype=dtype)[rng.integers(0, classes, rows)])
        for _ in range(n)
    ]


def mlp_step(
    style: str, optimizer: str = "sgd", dtype: Any = np.float64, sizes: tuple[int, ...] = (5, 7, 3)
) -> tuple[Callable[..., Any], MLP]:
    """A training step of a fresh MLP of ``sizes`` (same weights every call), in the tape or the Tensor style."""
    engine = opreg.Autograd(keep_gradients=False) if style == "tape" else None
    model = MLP(list(sizes), engine, output_activation=Identity, rng=np.random.default_rng(1), dtype=dtype)
    criterion = SoftmaxCrossEntropy(engine)
    if optimizer == "adam":
        opt: Any = Adam(model.parameters(), lr=0.01)
    else:
        opt = SGD(model.parameters(), lr=0.1, momentum=0.9)

    return training_step(model, criterion, opt), model


def training_step(
    model: Any, criterion: Any, opt: Any, before_update: Callable[[], Any] | None = None
) -> Callable[..., Any]:
    """``step(x, y)``: zero the gradients, forward, loss, backward, ``before_update()`` if given, update; returns
    the loss."""
    engine = model.autograd_engine if isinstance(model.autograd_engine, opreg.Autograd) else None

    def step(x: np.ndarray, y: np.ndarray) -> Any:
        opt.zero_grad()
        if engine is not None:
            engine.zero_grad()
            loss = criterion(y, model(x))
            engine.backward(1.0)
        else:
            loss = criterion(y, model(x))
            loss.backward()
        if before_update is not None:
            before_update()
        opt.step()
        return loss

    return step


def assert_same_runs(eager: Any, compiled: Any) -> None:
    """Two runs' ``(losses, weights, the generator's next draws)`` are the same, bit for bit."""
    assert_same(eager[0], compiled[0])
    assert_same(eager[1], compiled[1])
    assert np.array_equal(eager[2], compiled[2])


def run(step: Callable[..., Any], data: list[Any]) -> list[np.ndarray]:
    return [np.array(getattr(loss, "data", loss)) for loss in (step(x, y) for x, y in data)]


def weights(model: MLP) -> list[np.ndarray]:
    return [p.data.copy() for p in model.parameters()]


def assert_same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x, y), np.max(np.abs(x - y))


def assert_compiled_equals_eager(
    eager: tuple[Callable[..., Any], MLP], plain: tuple[Callable[..., Any], MLP], data: list[Any], replays: int
) -> None:
    """``plain``'s step compiled and ``eager``'s step run over ``data``: the same losses and weights, bit for bit,
    after ``replays`` replays (none in checking mode)."""
    compiled = opreg.compile(plain[0])
    assert_same(run(eager[0], data), run(compiled, data))
    assert_same(weights(eager[1]), weights(plain[1]))
    assert compiled.replays == (replays if REPLAYS else 0)


def weighted_sum(w: opreg.Tensor, x: Any) -> Any:
    """``sum(w * x)``, differentiated into ``w.grad`` (set to None first): the smallest step with a gradient."""
    w.grad = None
    loss = opreg.ops.sum(opreg.ops.mul(w, x))
    loss.backward()
    return loss


@pytest.mark.parametrize("style", ["tape", "tensor"])
@pytest.mark.parametrize(("optimizer", "dtype"), [("sgd", np.float64), ("adam", np.float32)])
def test_replay_is_bit_for_bit_the_eager_step(style: str, optimizer: str, dtype: Any) -> None:
    data = batches(30, dtype=dtype)
    eager, eager_model = mlp_step(style, optimizer, dtype)
    plain, compiled_model = mlp_step(style, optimizer, dtype)
    compiled = opreg.compile(plain)
    assert_same(run(eager, data), run(compiled, data))
    assert_same(weights(eager_model), weights(compiled_model))
    assert compiled.replays == (28 if REPLAYS else 0)
    if REPLAYS:
        assert compiled.code is not None and "def replay(A):" in compiled.code


@pytest.mark.parametrize("style", ["tape", "tensor"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_replay_of_layers_past_the_out_forms_small_array_paths_is_bit_for_bit(style: str, dtype: Any) -> None:
    """32 rows of 64 hidden units: relu's backward_out takes its integer-mask path (512 elements and more)."""
    data = batches(8, rows=32, features=20, classes=4, dtype=dtype)
    eager, plain = (mlp_step(style, "sgd", dtype, (20, 64, 64, 4)) for _ in "ab")
    assert_compiled_equals_eager(eager, plain, data, replays=6)


@pytest.mark.parametrize("style", ["tape", "tensor"])
def test_a_new_shape_records_again_and_both_replay(style: str) -> None:
    data = batches(6) + batches(6, rows=3) + batches(6)
    eager, eager_model = mlp_step(style)
    compiled = opreg.compile(mlp_step(style)[0])
    plain, compiled_model = mlp_step(style)
    compiled = opreg.compile(plain)
    assert_same(run(eager, data), run(compiled, data))
    assert_same(weights(eager_model), weights(compiled_model))
    assert compiled.replays == (6 + 4 + 4 if REPLAYS else 0)


def test_results_are_the_callers_own() -> None:
    compiled = opreg.compile(mlp_step("tensor")[0])
    losses = [compiled(x, y) for x, y in batches(6)]
    values = [float(loss.detach()) for loss in losses]
    assert len(set(values)) == len(values)  # a later replay did not write over an earlier loss


def test_a_learning_rate_changed_between_steps_is_used() -> None:
    data = batches(10)
    results = []
    for compile_it in (False, True):
        step, model = mlp_step("tensor")
        opt = step.__closure__[
            [c.cell_contents.__class__.__name__ for c in step.__closure__].index("SGD")
        ].cell_contents
        f = opreg.compile(step) if compile_it else step
        for i, (x, y) in enumerate(data):
            opt.param_groups[0]["lr"] = 0.1 / (i + 1)
            f(x, y)
        results.append(weights(model))
    assert_same(*results)


def _caught(function: Callable[[], Any]) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        function()
    return [str(w.message) for w in caught if issubclass(w.category, opreg.CaptureWarning)]


def test_a_value_read_in_the_step_makes_it_run_eagerly() -> None:
    data = batches(5)
    eager, eager_model = mlp_step("tensor")
    plain, compiled_model = mlp_step("tensor")
    seen: list[float] = []

    def reading(x: np.ndarray, y: np.ndarray) -> Any:
        loss = plain(x, y)
        seen.append(float(loss))  # a replay would skip this
        return loss

    compiled = opreg.compile(reading)
    messages = _caught(lambda: run(compiled, data))
    run(eager, data)
    assert_same(weights(eager_model), weights(compiled_model))
    assert len(seen) == 5 and compiled.replays == 0
    if REPLAYS:
        assert len(messages) == 1 and "float(t)" in messages[0] and "return the Tensor" in messages[0]


def test_an_array_made_outside_ops_each_step_is_never_replayed() -> None:
    """``x / 255`` in NumPy is invisible to opreg: a replay would reuse the first step's array."""
    data = batches(8)
    eager, eager_model = mlp_step("tensor")
    plain, compiled_model = mlp_step("tensor")
    compiled = opreg.compile(lambda x, y: plain(x / 2.0, y))
    messages = _caught(lambda: run(compiled, data))
    run(lambda x, y: eager(x / 2.0, y), data)
    assert_same(weights(eager_model), weights(compiled_model))
    assert compiled.replays == 0
    if REPLAYS:
        assert len(messages) == 1 and "outside ops" in messages[0]


def dropout_step(style: str, rng: np.random.Generator | None) -> tuple[Callable[..., Any], Any]:
    """A training step of Linear -> ReLU -> Dropout(0.5) -> Linear (same weights every call); the mask drawn from
    ``rng``, or from the default generator when None."""
    engine = opreg.Autograd(keep_gradients=False) if style == "tape" else None
    model = Sequential(
        Linear(5, 7, engine, rng=np.random.default_rng(1)),
        ReLU(engine),
        Dropout(0.5, engine, rng=rng),
        Linear(7, 3, engine, rng=np.random.default_rng(2)),
    )
    criterion = SoftmaxCrossEntropy(engine)
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)

    return training_step(model, criterion, opt), model


@pytest.mark.parametrize("style", ["tape", "tensor"])
@pytest.mark.parametrize("source", ["generator", "default"])
def test_a_step_with_dropout_replays_bit_for_bit(style: str, source: str) -> None:
    """The dropout op draws its mask inside itself: a replay draws a new one each step from the same generator,
    consuming it as the eager step does, so losses, weights and the generator's state equal the eager run's."""
    data = batches(30)
    results = []
    for compile_it in (False, True):
        opreg.manual_seed(5)
        rng = np.random.default_rng(7) if source == "generator" else None
        step, model = dropout_step(style, rng)
        compiled = opreg.compile(step) if compile_it else step
        with warnings.catch_warnings():
            warnings.simplefilter("error", opreg.CaptureWarning)
            losses = run(compiled, data)
        after = (rng or opreg.random.default_generator()).random(4)  # the generator consumed alike
        results.append((losses, weights(model), after))
    (eager_losses, eager_weights, eager_after), (losses, compiled_weights, after) = results
    assert_same(eager_losses, losses)
    assert_same(eager_weights, compiled_weights)
    assert np.array_equal(eager_after, after)
    assert len({float(loss) for loss in losses}) == len(losses)
    assert compiled.replays == (28 if REPLAYS else 0)


def test_a_replay_draws_from_the_default_generator_manual_seed_put_in_place() -> None:
    """``opreg.manual_seed`` replaces the default generator: a replay looks it up at each call, as eager mode does,
    rather than drawing from the one it was recorded with."""
    data = batches(12)
    results = []
    for compile_it in (False, True):
        opreg.manual_seed(5)
        step, model = dropout_step("tensor", None)
        compiled = opreg.compile(step) if compile_it else step
        losses = []
        for i, (x, y) in enumerate(data):
            if i % 4 == 3:
                opreg.manual_seed(100 + i)
            losses.append(np.array(compiled(x, y).data))
        results.append((losses, weights(model)))
    assert_same(results[0][0], results[1][0])
    assert_same(results[0][1], results[1][1])
    assert compiled.replays == (10 if REPLAYS else 0)


def test_manual_seed_called_in_a_step_is_replayed() -> None:
    """A step that seeds the default generator itself (the same masks every step): a replay seeds it again, as the
    eager step does, rather than drawing on from where the last eager run left it."""
    data = batches(6)
    results = []
    for compile_it in (False, True):
        opreg.manual_seed(5)
        _, model = dropout_step("tensor", None)
        opt = SGD(model.parameters(), lr=0.1)
        step = training_step(model, SoftmaxCrossEntropy(), opt, before_update=lambda: opreg.manual_seed(11))
        compiled = opreg.compile(step) if compile_it else step
        results.append((run(compiled, data), weights(model), opreg.random.default_generator().random(3)))
    assert_same_runs(*results)
    assert compiled.replays == (4 if REPLAYS else 0)


def _after_an_unread_dropout(step: Callable[..., Any], dropout: Dropout) -> Callable[..., Any]:
    def both(x: np.ndarray, y: np.ndarray) -> Any:
        dropout(opreg.Tensor(x))
        return step(x, y)

    return both


def test_a_dropout_nothing_reads_still_draws_in_a_replay() -> None:
    """Drawing a mask changes the generator: a replay makes the call even where nothing reads its output (a call
    left out as unused would leave the generator behind the eager step's, and every later mask different)."""
    data = batches(10)
    results = []
    for compile_it in (False, True):
        rng = np.random.default_rng(7)
        step, model = dropout_step("tensor", rng)
        both = _after_an_unread_dropout(step, Dropout(0.5, rng=rng))
        compiled = opreg.compile(both) if compile_it else both
        results.append((run(compiled, data), weights(model), rng.random(4)))
    assert_same_runs(*results)
    assert compiled.replays == (8 if REPLAYS else 0)


def two_dropouts_step(style: str, rng: np.random.Generator) -> tuple[Callable[..., Any], Any]:
    """A training step of Linear, then one Dropout called twice on its output, the two results added."""
    engine = opreg.Autograd(keep_gradients=False) if style == "tape" else None
    layer = Linear(5, 3, engine, rng=np.random.default_rng(1))
    dropout, criterion = Dropout(0.5, engine, rng=rng), SoftmaxCrossEntropy(engine)
    opt = SGD(layer.parameters(), lr=0.1)

    def step(x: np.ndarray, y: np.ndarray) -> Any:
        opt.zero_grad()
        if engine is not None:
            engine.zero_grad()
        h = layer(x if engine else opreg.Tensor(x))
        loss = criterion(y, engine.apply("add", dropout(h), dropout(h)) if engine else dropout(h) + dropout(h))
        engine.backward(1.0) if engine is not None else loss.backward()
        opt.step()
        return loss

    return step, layer


@pytest.mark.parametrize("style", ["tape", "tensor"])
def test_two_dropouts_of_one_value_draw_two_masks_in_a_replay(style: str) -> None:
    """One Dropout called twice on one value makes the same call twice: a replay must make both (one result used
    twice would hold one mask where the eager step drew two, and the generator one draw behind)."""
    data = batches(10)
    results = []
    for compile_it in (False, True):
        rng = np.random.default_rng(7)
        step, layer = two_dropouts_step(style, rng)
        compiled = opreg.compile(step) if compile_it else step
        results.append((run(compiled, data), weights(layer), rng.random(4)))
    assert_same_runs(*results)
    assert compiled.replays == (8 if REPLAYS else 0)


def test_eval_and_train_between_steps_record_again() -> None:
    """A step reading the mode (Dropout does) has a program per mode: each replays once two of its runs agree, and
    replays again after train() or eval() brings its mode back."""

    def build() -> tuple[Any, Any]:
        opreg.manual_seed(3)
        model = Sequential(Linear(5, 7, rng=np.random.default_rng(1)), ReLU(), Dropout(0.5), Linear(7, 3))
        criterion = SoftmaxCrossEntropy()

        def evaluate(x: np.ndarray, y: np.ndarray) -> Any:
            return criterion(y, model(x)).detach()

        return model, evaluate

    data = batches(12)
    outputs = []
    compiled: Any = None
    for compile_it in (False, True):
        model, evaluate = build()
        f = compiled = opreg.compile(evaluate) if compile_it else evaluate
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", opreg.CaptureWarning)
            values = []
            for i, (x, y) in enumerate(data):
                model.train(i % 6 < 3)
                values.append(np.array(f(x, y).data))
        outputs.append(values)
    assert_same(*outputs)
    # each mode: the third step of its first stretch, and every step of its second (its program kept, keyed by
    # the modes the step read: train() and eval() in between cost no recording); dropout's mask drawn by an op
    assert compiled.replays == (8 if REPLAYS else 0)


def test_a_replaced_parameter_records_again() -> None:
    data = batches(8)
    results = []
    for compile_it in (False, True):
        step, model = mlp_step("tensor")
        f = opreg.compile(step) if compile_it else step
        for i, (x, y) in enumerate(data):
            if i == 4:
                first = model[0]
                first.W = opreg.Tensor(np.full(first.W.shape, 0.01), requires_grad=True)
            f(x, y)
        results.append([p.data.copy() for p in model.parameters()])
    # the optimizer still steps the old W: both runs agree on that
    assert_same(*results)


def scaled_step(step: Callable[..., Any], where: str) -> tuple[Callable[..., Any], Callable[[float], None]]:
    """``step`` on ``x * factor``, ``factor`` a Python number in the closure or in this module's globals, and
    the function that changes it."""
    factor = 1.0

    def closure(x: Any, y: Any) -> Any:
        return step(x * factor, y)

    def module_global(x: Any, y: Any) -> Any:
        return step(x * FACTOR, y)

    def change(value: float) -> None:
        nonlocal factor
        global FACTOR
        factor = FACTOR = value

    return (closure if where == "closure" else module_global), change


FACTOR = 1.0


@pytest.mark.parametrize("where", ["closure", "global"])
def test_a_python_number_the_step_reads_records_again_when_it_changes(where: str) -> None:
    data = batches(6)
    results = []
    compiled: Any = None
    for compile_it in (False, True):
        step, model = mlp_step("tensor")
        scaled, change = scaled_step(step, where)
        f = compiled = opreg.compile(scaled) if compile_it else scaled
        for i, (x, y) in enumerate(data):
            change(1.0 + i // 3)
            f(opreg.Tensor(x), y)
        results.append(weights(model))
    assert_same(*results)
    assert compiled.replays == (2 if REPLAYS else 0)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("returns_graph", "backward() included"),
        ("returns_float", "return the Tensor or array"),
        ("add_operation", "add_operation"),
        ("grad", "gradients as values"),
    ],
)
def test_what_cannot_be_replayed_runs_eagerly_and_says_why(body: str, expected: str) -> None:
    w = opreg.Tensor(np.ones(3), requires_grad=True)
    engine = opreg.Autograd()

    def step(x: np.ndarray) -> Any:
        if body == "returns_graph":
            return (w * x).sum()
        if body == "returns_float":
            return float(np.sum(x))
        if body == "add_operation":
            out = x * 2.0
            engine.add_operation([x, np.asarray(2.0)], out, [None, None], "mul")
            return None
        return opreg.grad((w * x).sum(), [w])[0]

    compiled = opreg.compile(step)
    messages = _caught(lambda: [compiled(np.arange(3.0)) for _ in range(4)])
    assert compiled.replays == 0
    if REPLAYS:
        assert len(messages) == 1 and expected in messages[0], messages


def test_checking_mode_runs_the_step_eagerly() -> None:
    step, _ = mlp_step("tensor")
    compiled = opreg.compile(step)
    with opreg.checking():
        run(compiled, batches(4))
    assert compiled.replays == 0 and compiled.reason is not None and "checking" in compiled.reason


def test_a_view_of_a_value_an_out_form_wrote_is_not_overwritten_by_a_reused_buffer() -> None:
    """``h.T`` views ``h``'s memory, and outlives ``h``'s last use: a later value of ``h``'s shape must not be
    written into ``h``'s buffer. The gradients also accumulate (no zero_grad), each step's ``.grad`` kept."""
    rng = np.random.default_rng(0)
    data = [rng.normal(size=(4, 3)) for _ in range(6)]

    def build() -> tuple[Callable[..., Any], list[Any]]:
        w = opreg.Tensor(np.random.default_rng(1).normal(size=(5, 3)), requires_grad=True)
        b = opreg.Tensor(np.zeros(5), requires_grad=True)

        def step(x: np.ndarray) -> Any:
            view = opreg.ops.linear(x, w, b).T  # no backward reads the linear's output: it dies here
            loss = opreg.ops.relu(opreg.ops.linear(opreg.Tensor(x) * 2.0, w, b)).sum()  # of its shape
            loss.backward()
            return loss, view.detach()

        return step, [w, b]

    results = []
    for compile_it in (False, True):
        step, params = build()
        f = opreg.compile(step) if compile_it else step
        outputs = [f(x) for x in data]
        held = [params[0].grad]
        results.append([*(o[1].data for o in outputs), *held, *(p.grad for p in params)])
    assert_same(*results)


def test_grad_set_to_none_in_the_step_is_replayed() -> None:
    """``p.grad = None`` before backward, as hand-written loops do: a replay that skipped it would add each step's
    gradient to the last one's (it did, silently, before the assignment was recorded)."""

    def make() -> tuple[Callable[..., Any], opreg.Tensor]:
        w = opreg.Tensor(np.linspace(-1.0, 1.0, 4), requires_grad=True)

        def step(x: np.ndarray) -> None:
            w.grad = None
            opreg.ops.sum(opreg.ops.mul(w, x)).backward()

        return step, w

    (eager, w_eager), (step, w) = make(), make()
    compiled = opreg.compile(step)
    for x in np.arange(16.0).reshape(4, 4):
        eager(x)
        compiled(x)
        assert np.array_equal(w.grad, w_eager.grad)
    assert compiled.replays == (2 if REPLAYS else 0)


def test_a_python_number_an_op_takes_is_the_same_constant_in_every_recording() -> None:
    """``w / 2.0``: the op call makes the number an array, a new one each run; named by its value, the two
    recordings agree and the step replays (it ran eagerly for ever, with a warning, when its backward named it by
    identity)."""
    w = opreg.Tensor(np.linspace(-1.0, 1.0, 4), requires_grad=True)

    def step(x: np.ndarray) -> None:
        w.grad = None
        opreg.ops.sum(opreg.ops.mul(opreg.ops.div(w, 2.0), x)).backward()

    compiled = opreg.compile(step)
    with warnings.catch_warnings():
        warnings.simplefilter("error", opreg.CaptureWarning)
        for x in np.arange(20.0).reshape(5, 4):
            compiled(x)
            assert np.array_equal(w.grad, x / 2.0)
    assert compiled.replays == (3 if REPLAYS else 0)


def test_a_step_reading_a_modules_mode_replays_the_program_of_that_mode() -> None:
    """``self.training`` read in forward: one program per mode, each replayed only in its own mode, and
    ``train()``/``eval()`` between steps cost no recording once both are made."""

    class Scale(opreg.nn.Module):
        def forward(self, x: Any) -> Any:
            return opreg.ops.mul(x, 2.0 if self.training else 3.0)

    def make() -> tuple[Callable[..., Any], Any, opreg.Tensor]:
        w = opreg.Tensor(np.linspace(-1.0, 1.0, 4), requires_grad=True)
        model = Scale()

        def step(x: np.ndarray) -> Any:
            w.grad = None
            loss = opreg.ops.sum(model(opreg.ops.mul(w, x)))
            loss.backward()
            return loss

        return step, model, w

    (eager, eager_model, w_eager), (step, model, w) = make(), make()
    compiled = opreg.compile(step)
    for i, x in enumerate(np.arange(48.0).reshape(12, 4)):
        mode = i % 2 == 0
        model.train(mode)
        eager_model.train(mode)
        assert np.array_equal(compiled(x).data, eager(x).data)
        assert np.array_equal(w.grad, w_eager.grad)
    assert compiled.recordings == (4 if REPLAYS else 12) and compiled.replays == (8 if REPLAYS else 0)


@pytest.mark.parametrize("style", ["tape", "tensor"])
@pytest.mark.parametrize("where", ["closure", "argument"])
def test_a_gradient_array_given_to_backward_is_read_at_every_replay(style: str, where: str) -> None:
    """``backward(g)`` with the caller's array ``g``: a replay starts from what ``g`` holds then, not from what it
    held when the step was recorded (the array is the caller's, changed between steps in place)."""
    g = np.ones((4, 2))

    def make() -> tuple[Callable[..., Any], np.ndarray | opreg.Tensor]:
        w = np.linspace(-1.0, 1.0, 6).reshape(2, 3)
        if style == "tape":
            engine, dw, bias = opreg.Autograd(keep_gradients=False), np.zeros_like(w), np.zeros(2)

            def tape_step(x: np.ndarray, gradient: np.ndarray) -> None:
                engine.apply("linear", x, w, bias, gradients_to_update=[None, dw, None])
                engine.backward(g if where == "closure" else gradient, zero_grad=[dw])
                engine.zero_grad()

            return tape_step, dw
        tensor = opreg.Tensor(w, requires_grad=True)

        def tensor_step(x: np.ndarray, gradient: np.ndarray) -> None:
            tensor.grad = None
            opreg.ops.matmul(x, opreg.ops.transpose(tensor)).backward(g if where == "closure" else gradient)

        return tensor_step, tensor

    (eager, eager_grad), (step, grad) = make(), make()
    compiled = opreg.compile(step)
    x = np.arange(12.0).reshape(4, 3)
    for i in range(6):
        g[...] = 1.0 if i < 2 else float(i)  # the same for the two recordings, then changing
        eager(x, g.copy())
        compiled(x, g.copy())
        got, want = (grad, eager_grad) if style == "tape" else (grad.grad, eager_grad.grad)
        assert np.array_equal(got, want), (i, got, want)
    if REPLAYS:
        assert compiled.replays == 4


@pytest.mark.parametrize("kind", ["array", "tensor", "two tensors"])
def test_one_array_given_as_two_arguments_is_a_program_of_its_own(kind: str) -> None:
    """``step(x, x)`` (an autoencoder's input as its own target) names one array twice: a program recorded so must
    not replay ``step(a, b)`` reading one of them for both, nor the other way round."""
    w = opreg.Tensor(np.linspace(-1.0, 1.0, 3), requires_grad=True)

    def step(x: Any, y: Any) -> Any:
        w.grad = None
        loss = opreg.ops.sum(opreg.ops.mul(opreg.ops.mul(w, x), y))
        loss.backward()
        return loss

    def wrap(array: np.ndarray) -> Any:
        return array if kind == "array" else opreg.Tensor(array)

    def twice(x: Any) -> tuple[Any, Any]:  # one array twice: one object, or two Tensors of it (t, t.detach())
        return (x, wrap(x.data)) if kind == "two tensors" else (x, x)

    compiled = opreg.compile(step)
    x, a, b = wrap(np.arange(3.0)), wrap(np.arange(3.0)), wrap(np.full(3, 10.0))
    for args in [twice(x)] * 3 + [(a, b)] * 3 + [twice(x), twice(b), (a, b)]:
        got = compiled(*args).data
        grad = w.grad.copy()
        assert got == step(*args).data and np.array_equal(grad, w.grad)
    if REPLAYS:
        assert compiled.replays == 5  # each pattern recorded twice; (x, x) and (b, b) one pattern


def test_an_argument_that_is_a_parameters_own_array_runs_eagerly() -> None:
    """``step(w.data)`` with ``w`` a parameter the step also uses: its program would read the argument for both, so
    that ``step(other)`` would multiply ``other`` by itself. The step runs eagerly, and says why."""
    w = opreg.Tensor(np.linspace(-1.0, 1.0, 3), requires_grad=True)

    def step(x: np.ndarray) -> Any:
        return weighted_sum(w, x)

    compiled = opreg.compile(step)
    with pytest.warns(opreg.CaptureWarning, match="argument 0 is the array of a Tensor the step also reaches"):
        for x in [w.data] * 3 + [np.full(3, 10.0)] * 3:
            assert compiled(x).data == step(x).data
    assert compiled.replays == 0


@pytest.mark.parametrize("kind", ["array", "tensor"])
def test_a_step_that_changes_its_argument_in_place_runs_eagerly(kind: str) -> None:
    """``x /= 2`` on the argument, in NumPy: no op sees it, and a replay would use ``x`` undivided (and leave the
    caller's array as it was). The recording compares the arguments before and after, and refuses."""
    w = opreg.Tensor(np.linspace(-1.0, 2.0, 3), requires_grad=True)

    def step(x: Any) -> Any:
        data = x.data if kind == "tensor" else x
        data /= 2
        return weighted_sum(w, x)

    compiled = opreg.compile(step)
    with pytest.warns(opreg.CaptureWarning, match="changes its argument 0 in place"):
        for _ in range(4):
            a, b = np.full(3, 4.0), np.full(3, 4.0)
            if kind == "tensor":
                a, b = opreg.Tensor(a), opreg.Tensor(b)
            got = compiled(a).data
            grad = w.grad.copy()
            assert got == step(b).data and np.array_equal(grad, w.grad)
            assert np.array_equal(getattr(a, "data", a), getattr(b, "data", b))
    assert compiled.replays == 0


def test_a_compiled_function_called_by_a_step_being_recorded_is_recorded_as_part_of_it() -> None:
    """A compiled ``update()`` inside a compiled step: while the step records, the inner call runs as plain code,
    its ops recorded into the step's program (a program of its own, or a replay, would leave them out of it, and
    the step's replays would never update the weights)."""
    w = opreg.Tensor(np.linspace(-1.0, 2.0, 3), requires_grad=True)
    w_eager = opreg.Tensor(w.data.copy(), requires_grad=True)

    def make(weight: opreg.Tensor, compile_inner: bool) -> Callable[[np.ndarray], Any]:
        optimizer = SGD([weight], lr=0.1)
        update = opreg.compile(optimizer.step) if compile_inner else optimizer.step

        def step(x: np.ndarray) -> Any:
            optimizer.zero_grad()
            loss = opreg.ops.sum(opreg.ops.mul(weight, x))
            loss.backward()
            update()
            return loss

        return step

    compiled, eager = opreg.compile(make(w, True)), make(w_eager, False)
    for i in range(6):
        x = np.full(3, float(i))
        assert compiled(x).data == eager(x).data
        assert np.array_equal(w.data, w_eager.data), i
    if REPLAYS:
        assert compiled.replays == 4


BATCH = np.ones(3)  # a global the step below reads: rebound between calls, as a training loop would


@pytest.mark.parametrize("where", ["closure", "global"])
def test_an_array_the_step_reads_from_its_closure_or_globals_is_watched(where: str) -> None:
    """A step that reads its batch from a global or closure variable, rebound by the loop: a program recorded on
    one array never replays on another (it named the first), however many calls used the first."""
    global BATCH
    w = opreg.Tensor(np.linspace(-1.0, 2.0, 3), requires_grad=True)
    batch = np.ones(3)

    def closure_step() -> Any:
        return weighted_sum(w, batch)

    def global_step() -> Any:
        return weighted_sum(w, BATCH)

    step = closure_step if where == "closure" else global_step
    compiled = opreg.compile(step)
    for i in range(8):
        if i in (3, 6):  # a new array after two runs agreed and one replayed
            batch = BATCH = np.full(3, float(i))
        assert compiled().data == step().data, i
    if REPLAYS:
        assert compiled.replays == 2  # calls 2 and 5; the others record (two per array)
    for i in range(10):  # a new array every call: recorded until max_programs, then eager, and the reason says so
        batch = BATCH = np.full(3, float(i))
        assert compiled().data == step().data, i
    if REPLAYS:
        assert compiled.replays == 2 and "closure or globals" in (compiled.reason or "")


def test_an_optimizer_or_loss_made_again_in_the_steps_variable_is_used() -> None:
    """A notebook cell run again makes a new optimizer (another learning rate) and a new loss function in the
    variables the step reads: the step uses them, as the uncompiled step would, rather than replaying the old."""
    model = Linear(3, 2, rng=np.random.default_rng(0))
    optimizer = SGD(model.parameters(), lr=0.01)

    def loss_of(out: Any) -> Any:
        return opreg.ops.sum(out)

    def step(x: np.ndarray) -> Any:
        optimizer.zero_grad()
        loss = loss_of(model(opreg.Tensor(x)))
        loss.backward()
        optimizer.step()
        return loss

    compiled = opreg.compile(step)
    x = np.ones((4, 3))
    for _ in range(3):
        compiled(x)
    optimizer = SGD(model.parameters(), lr=1.0)
    before = model.W.data.copy()
    compiled(x)
    np.testing.assert_allclose(model.W.data - before, -4.0)  # lr 1, each weight's gradient the batch size

    def loss_of(out: Any) -> Any:  # noqa: F811 - the cell defining it, run again
        return opreg.ops.sum(opreg.ops.mul(out, out))

    for _ in range(3):
        want = loss_of(model(opreg.Tensor(x))).data
        assert compiled(x).data == want


@pytest.mark.parametrize("style", ["tape", "tensor"])
@pytest.mark.parametrize("clip", ["norm", "value"])
def test_gradient_clipping_in_a_step_is_replayed(style: str, clip: str) -> None:
    """``clip_grad_norm_`` and ``clip_grad_value_`` change the gradients in place, in NumPy, between backward and
    the optimizer's step: a replay makes the call again (it clipped nothing before, silently)."""
    from opreg.nn.utils import clip_grad_norm_, clip_grad_value_

    def make() -> tuple[Callable[..., Any], MLP]:
        _, model = mlp_step(style)

        def clipping() -> None:
            if clip == "norm":
                clip_grad_norm_(model.parameters(), 0.05)
            else:
                clip_grad_value_(model.parameters(), 0.01)

        opt = SGD(model.parameters(), lr=0.5)
        return training_step(model, SoftmaxCrossEntropy(model.autograd_engine), opt, clipping), model

    assert_compiled_equals_eager(make(), make(), batches(6), replays=4)


@pytest.mark.parametrize("what", ["argument", "parameter"])
def test_a_value_read_into_python_from_an_argument_or_a_parameter_makes_the_step_run_eagerly(what: str) -> None:
    """``x.item()`` on an argument, or ``t.item()`` on a learned scalar the step updates: a number in Python, which
    a replay would keep from its recording once two calls read the same value. The step runs eagerly."""

    def make() -> Callable[[Any], Any]:
        t = opreg.Tensor(np.array(0.5), requires_grad=True)
        w = opreg.Tensor(np.linspace(-1.0, 2.0, 3), requires_grad=True)
        optimizer = SGD([t, w], lr=0.25)

        def step(x: Any) -> Any:
            optimizer.zero_grad()
            number = x.item() if what == "argument" else t.item()
            loss = opreg.ops.sum(opreg.ops.mul(opreg.ops.mul(w, number), t))
            loss.backward()
            optimizer.step()
            return loss

        return step

    eager, compiled = make(), opreg.compile(make())
    with pytest.warns(opreg.CaptureWarning, match="reads a value"):
        for i in range(6):
            x = opreg.Tensor(np.array(1.0 if i < 3 else float(i)))
            assert compiled(x).data == eager(x).data, i
    assert compiled.replays == 0


class _Trainer:
    """A training loop's object: its compiled bound method reads the model and optimizer through ``self``."""

    def __init__(self) -> None:
        self.model = Linear(3, 2, rng=np.random.default_rng(0))
        self.optimizer = SGD(self.model.parameters(), lr=0.01)

    def step(self, x: np.ndarray) -> Any:
        self.optimizer.zero_grad()
        loss = opreg.ops.sum(self.model(opreg.Tensor(x)))
        loss.backward()
        self.optimizer.step()
        return loss


def test_an_attribute_a_compiled_method_reads_from_self_is_watched() -> None:
    """``trainer.optimizer = SGD(..., lr=1.0)`` between calls of ``opreg.compile(trainer.step)``: the step uses the
    new optimizer (it replayed the old one, silently)."""
    trainer = _Trainer()
    compiled = opreg.compile(trainer.step)
    x = np.ones((4, 3))
    for _ in range(3):
        compiled(x)
    trainer.optimizer = SGD(trainer.model.parameters(), lr=1.0)
    before = trainer.model.W.data.copy()
    compiled(x)
    np.testing.assert_allclose(trainer.model.W.data - before, -4.0)  # lr 1, each weight's gradient the batch size
    for _ in range(3):
        compiled(x)
    assert compiled.replays == (3 if REPLAYS else 0)  # once before the new optimizer, twice after


@pytest.mark.parametrize("wrap", ["partial", "callable object"])
def test_what_a_partial_or_a_callable_objects_code_reads_is_watched(wrap: str) -> None:
    """``opreg.compile(functools.partial(train, model))`` or of an object with ``__call__``: the globals the
    function reads, and the attributes ``__call__`` reads from ``self``, are watched as a plain step's are."""
    import functools

    global BATCH
    BATCH = np.ones(3)
    w = opreg.Tensor(np.linspace(-1.0, 2.0, 3), requires_grad=True)

    class Step:
        def __init__(self) -> None:
            self.batch = np.ones(3)

        def __call__(self) -> Any:
            return weighted_sum(w, self.batch)

    def reads_global(weight: opreg.Tensor) -> Any:
        return weighted_sum(weight, BATCH)

    obj = Step()
    step = functools.partial(reads_global, w) if wrap == "partial" else obj
    compiled = opreg.compile(step)
    for i in range(6):
        if i == 3:
            BATCH = obj.batch = np.full(3, 5.0)
        assert compiled().data == step().data, i


def _loss_of_the_batch(w: opreg.Tensor) -> Any:
    """A helper beside the step that reads the loop's batch from this module's globals."""
    return weighted_sum(w, BATCH)


def test_a_global_that_a_helper_of_the_same_module_reads_is_watched() -> None:
    global BATCH
    BATCH = np.ones(3)
    w = opreg.Tensor(np.linspace(-1.0, 2.0, 3), requires_grad=True)

    def step() -> Any:
        return _loss_of_the_batch(w)

    compiled = opreg.compile(step)
    for i in range(6):
        if i == 3:
            BATCH = np.full(3, 5.0)
        assert compiled().data == step().data, i
    if REPLAYS:
        assert compiled.replays == 2


@pytest.mark.parametrize("edit", ["dW.fill(0) first", "dW.fill(0) last", "offset in place"])
def test_an_array_the_step_changes_with_numpy_makes_it_run_eagerly(edit: str) -> None:
    """The handout zeroes ``dW`` with ``dW.fill(0)``; a step may keep a statistic in an array it updates with NumPy.
    No op sees either, and a replay would not do it: its gradients would add up across replays, its offset would
    stay the first one. The verifying recording compares the arrays the first one used at each library call and at
    the end, against what they held at the last one, and refuses."""
    engine = opreg.Autograd()
    criterion = SoftmaxCrossEntropy(engine)
    rng = np.random.default_rng(0)
    W, dW, b = rng.normal(size=(3, 4)), np.zeros((3, 4)), np.zeros(3)
    y, offset = np.eye(3)[[0, 1, 2, 1]], np.zeros(4)

    def step(x: np.ndarray) -> None:
        if edit == "dW.fill(0) first":
            dW.fill(0)
        elif edit == "offset in place":
            offset[...] = x.mean(axis=0)
        engine.zero_grad()
        centred = engine.apply("sub", x, offset)
        criterion(y, engine.apply("linear", centred, W, b, gradients_to_update=[None, dW, None]))
        engine.backward(1.0)
        if edit == "dW.fill(0) last":
            dW.fill(0)

    compiled = opreg.compile(step)
    with pytest.warns(opreg.CaptureWarning, match="with NumPy"):
        for _ in range(4):
            compiled(rng.normal(size=(4, 4)))
    assert compiled.replays == 0


@pytest.mark.parametrize("where", ["closure", "global", "in a dict", "attribute of self"])
def test_an_array_the_step_writes_with_numpy_and_no_op_reads_makes_it_run_eagerly(where: str) -> None:
    """A history or a running statistic the step keeps for its caller in an array of its own, written with NumPy
    and read by no op: a replay would skip the write, and the caller would read the first call's values for ever.
    The arrays in the variables the step reads (closure, globals, ``self``'s attributes, and one level into a list,
    tuple or dict there) are compared across the verifying recording too."""
    global _RUNNING
    model = MLP([4, 3], None, output_activation=Identity, rng=np.random.default_rng(0))
    criterion = SoftmaxCrossEntropy(None)
    optimizer = SGD(model.parameters(), lr=0.1)
    y = np.eye(3)[[0, 1, 2, 1]]
    running = np.zeros(4)
    _RUNNING = np.zeros(4)
    kept = {"mean": np.zeros(4)}

    class Trainer:
        def __init__(self) -> None:
            self.running = np.zeros(4)

        def step(self, x: np.ndarray) -> None:
            self.running[...] = x.mean(axis=0)
            train(x)

    def train(x: np.ndarray) -> None:
        optimizer.zero_grad()
        criterion(y, model(opreg.Tensor(x))).backward()
        optimizer.step()

    def in_closure(x: np.ndarray) -> None:
        running[...] = x.mean(axis=0)
        train(x)

    def in_global(x: np.ndarray) -> None:
        _RUNNING[...] = x.mean(axis=0)
        train(x)

    def in_dict(x: np.ndarray) -> None:
        kept["mean"][...] = x.mean(axis=0)
        train(x)

    trainer = Trainer()
    step = {"closure": in_closure, "global": in_global, "in a dict": in_dict, "attribute of self": trainer.step}
    compiled = opreg.compile(step[where])
    rng = np.random.default_rng(1)
    with pytest.warns(opreg.CaptureWarning, match="with NumPy"):
        for _ in range(4):
            x = rng.normal(size=(4, 4))
            compiled(x)
    assert compiled.replays == 0
    written = {"closure": running, "global": _RUNNING, "in a dict": kept["mean"], "attribute of self": trainer.running}
    np.testing.assert_array_equal(written[where], x.mean(axis=0))


_RUNNING = np.zeros(4)


class _Config:
    def __init__(self) -> None:
        self.weight = 1.0


_CONFIG = _Config()


@pytest.mark.parametrize("where", ["global", "closure", "attribute of self"])
def test_a_number_read_through_an_object_the_step_reads_is_watched(where: str) -> None:
    """``cfg.weight`` multiplied into the loss, ``cfg`` a global, a closure variable or ``self.cfg``: a number
    the replay would freeze once two calls agreed. Changing it must change the result, as it does eagerly."""
    config = _Config()
    w = opreg.Tensor(np.ones(3), requires_grad=True)

    def loss_of(x: np.ndarray, weight: float) -> opreg.Tensor:
        w.grad = None
        loss = (w * x).sum() * weight
        loss.backward()
        return loss

    def in_global(x: np.ndarray) -> opreg.Tensor:
        return loss_of(x, _CONFIG.weight)

    def in_closure(x: np.ndarray) -> opreg.Tensor:
        return loss_of(x, config.weight)

    class Trainer:
        def __init__(self) -> None:
            self.cfg = config

        def step(self, x: np.ndarray) -> opreg.Tensor:
            return loss_of(x, self.cfg.weight)

    step = {"global": in_global, "closure": in_closure, "attribute of self": Trainer().step}[where]
    compiled = opreg.compile(step)
    target = _CONFIG if where == "global" else config
    x = np.arange(3.0)
    try:
        for weight in (1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0):
            target.weight = weight
            assert compiled(x).item() == 3.0 * weight
            np.testing.assert_array_equal(w.grad, x * weight)
    finally:
        _CONFIG.weight = 1.0
    if REPLAYS:
        assert compiled.replays >= 2
