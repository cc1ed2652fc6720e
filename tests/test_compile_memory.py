"""The memory of a replayed step (:meth:`opreg.capture.Recorder.source`): the values out forms write share one slab,
placed by liveness, and a replay holds no more than the step needs."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from test_compile import REPLAYS, assert_same, batches, run, weights

import opreg
from opreg import capture, landing
from opreg.capture import ALIGN, _plan
from opreg.nn import MLP, Identity, SoftmaxCrossEntropy
from opreg.optim import SGD


def test_values_of_different_shapes_whose_lives_do_not_overlap_share_memory() -> None:
    lives = {"v0": (0, 3, 4000), "v1": (4, 6, 800), "v2": (7, 9, 4000)}  # one after another
    offsets, size = _plan(lives)
    assert set(offsets.values()) == {0} and size == 4000


def test_values_alive_on_one_line_never_overlap() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        lives = {}
        for i in range(int(rng.integers(1, 30))):
            first = int(rng.integers(0, 50))
            lives[f"v{i}"] = (first, first + int(rng.integers(0, 10)), int(rng.integers(0, 5000)))
        offsets, size = _plan(lives)
        for a, (first_a, last_a, bytes_a) in lives.items():
            assert offsets[a] % ALIGN == 0 and offsets[a] + bytes_a <= size
            for b, (first_b, last_b, bytes_b) in lives.items():
                if a < b and first_a <= last_b and first_b <= last_a and bytes_a and bytes_b:
                    assert offsets[a] + bytes_a <= offsets[b] or offsets[b] + bytes_b <= offsets[a], (a, b, lives)


def test_a_freed_range_is_reused_before_the_slab_grows() -> None:
    # v0 and v1 alive together; v0 dies; v2 (smaller) takes v0's place, not the top
    lives = {"v0": (0, 2, 1024), "v1": (1, 5, 1024), "v2": (3, 5, 512)}
    offsets, size = _plan(lives)
    assert offsets["v2"] == offsets["v0"] and size == 2048


def larger_step(style: str) -> tuple[Any, MLP]:
    """A step of a 20-300-100-4 MLP: values of several shapes, tens of kilobytes each."""
    engine = opreg.Autograd(keep_gradients=False) if style == "tape" else None
    model = MLP([20, 300, 100, 4], engine, output_activation=Identity, rng=np.random.default_rng(1))
    criterion = SoftmaxCrossEntropy(engine)
    opt = SGD(model.parameters(), lr=0.1)

    def step(x: np.ndarray, y: np.ndarray) -> Any:
        loss = criterion(y, model(x))
        if engine is None:
            opt.zero_grad()
            loss.backward()
        else:
            engine.backward(1.0, zero_grad=opt.parameters)
        opt.step()
        if engine is not None:
            engine.zero_grad()
        return loss

    return step, model


@pytest.mark.parametrize("style", ["tape", "tensor"])
def test_values_sharing_the_slab_give_the_eager_numbers(style: str) -> None:
    data = batches(8, rows=64, features=20, classes=4)
    eager, eager_model = larger_step(style)
    plain, compiled_model = larger_step(style)
    compiled = opreg.compile(plain)
    assert_same(run(eager, data), run(compiled, data))
    assert_same(weights(eager_model), weights(compiled_model))
    if REPLAYS:
        assert compiled.replays == 6
        program = next(iter(compiled._programs.values()))
        views = [x for name, x in program.function.__globals__.items() if re.fullmatch(r"b\d+", name)]
        assert any(np.shares_memory(a, b) and a.shape != b.shape for a in views for b in views)
        assert views[0].base.nbytes < sum(x.nbytes for x in views)  # the slab: less than their sum


def zeroing_tape_step(dtype: Any) -> tuple[Any, MLP]:
    """A tape step that zeroes dW and db as the gradients land (``backward(zero_grad=...)``)."""
    engine = opreg.Autograd(keep_gradients=False)
    model = MLP([5, 7, 3], engine, output_activation=Identity, rng=np.random.default_rng(1), dtype=dtype)
    criterion = SoftmaxCrossEntropy(engine)
    opt = SGD(model.parameters(), lr=0.1)

    def step(x: np.ndarray, y: np.ndarray) -> None:
        criterion(y, model(x))
        engine.backward(1.0, zero_grad=opt.parameters)
        opt.step()
        engine.zero_grad()

    return step, model


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_gradient_written_into_its_dw_is_landed_with_the_zeros_signs(dtype: Any) -> None:
    """A batch of one makes dW an outer product, -0.0 where the gradient is negative and the input 0, which the
    eager landing writes as it is. Written straight into dW, it must be the same: bytes compared. Every gradient
    lands in place, so the replay makes no call of its own to land them: no landing function, no pass over dW."""
    rng = np.random.default_rng(2)
    data = []
    for _ in range(6):
        x = rng.standard_normal((1, 5)).astype(dtype)
        x[:, :2] = 0.0
        data.append((x, np.eye(3, dtype=dtype)[rng.integers(0, 3, 1)]))
    runs = []
    for compile_it in (False, True):
        step, model = zeroing_tape_step(dtype)
        f = opreg.compile(step) if compile_it else step
        grads = []
        for x, y in data:
            f(x, y)
            grads.append([p.grad.tobytes() for p in model.parameters()])
        runs.append((grads, [p.data.tobytes() for p in model.parameters()]))
        if compile_it and REPLAYS:
            assert f.replays == 4
            assert re.search(r"v\d+ = k\d+\n", f.code or ""), f.code  # a gradient written into its dW
            program = next(iter(f._programs.values()))
            lands = [name for name, x in program.constants.items() if x is landing.land]
            assert lands and not any(re.search(rf"\b{name}\b", f.code or "") for name in lands), f.code
            assert not re.search(r"np\.\w+\((k\d+), k\d+, out=\1\)", f.code or ""), f.code  # no pass over dW
    assert runs[0] == runs[1]


class Keeper:
    """A library object whose replayed method keeps what it is given (a history of losses, say)."""

    def __init__(self) -> None:
        self.kept: list[Any] = []

    @capture.replayed
    def keep(self, tensor: Any, array: np.ndarray) -> None:
        self.kept.append((tensor.data, array))


def test_an_array_a_replayed_call_may_keep_is_never_written_over_by_a_later_replay() -> None:
    rng = np.random.default_rng(0)
    data = [rng.normal(size=(4, 3)) for _ in range(6)]
    runs = []
    for compile_it in (False, True):
        w = opreg.Tensor(np.random.default_rng(1).normal(size=(5, 3)), requires_grad=True)
        b = opreg.Tensor(np.zeros(5), requires_grad=True)
        keeper = Keeper()

        def step(x: np.ndarray, w: Any = w, b: Any = b, keeper: Keeper = keeper) -> Any:
            h = opreg.ops.linear(x, w, b)  # an out form's value: in the slab, unless it escapes
            keeper.keep(h, opreg.ops.relu(h).data)
            loss = (h * h).sum()
            loss.backward()
            return loss.detach()

        f = opreg.compile(step) if compile_it else step
        for x in data:
            f(x)
        runs.append([array for pair in keeper.kept for array in pair])
        if compile_it:
            assert f.replays == (4 if REPLAYS else 0)
    assert_same(*runs)


def recorded_view(view_escapes: bool) -> tuple[str, dict[str, Any]]:
    """A program in which ``v1 = v0.T`` is used after ``v0``'s own last use, and a value ``v2`` of another shape
    but as many bytes is made in between: ``v2`` may not take ``v0``'s memory while the view reads it."""
    recorder = capture.Recorder([])
    a = recorder.allocate(np.empty((4, 8)))
    recorder.lines.append(f"fill({a})")
    view = recorder.value(np.empty((8, 4)))
    recorder.lines.append(f"{view} = {a}.T")
    recorder.viewing([(view, a)])
    recorder.lines.append(f"use({a})")
    c = recorder.allocate(np.empty(32))
    recorder.lines.append(f"fill({c})")
    recorder.lines.append(f"use({view}, {c})")
    if view_escapes:
        recorder.shared(view)
    return recorder.source("None")


def test_a_views_base_keeps_its_memory_while_the_view_is_used() -> None:
    code, namespace = recorded_view(view_escapes=False)
    assert "v0 = b0" in code and "v2 = b1" in code, code  # both in the slab
    assert not np.shares_memory(namespace["b0"], namespace["b1"])


def test_a_view_that_escapes_takes_its_base_with_it() -> None:
    code, _ = recorded_view(view_escapes=True)
    assert "v0 = empty(" in code, code


class Checker:
    @capture.replayed_reading
    def check(self, array: np.ndarray) -> None:
        assert np.isfinite(array).all()


def test_an_array_a_replayed_call_only_reads_stays_in_the_slab() -> None:
    w = opreg.Tensor(np.random.default_rng(1).normal(size=(5, 3)), requires_grad=True)
    b = np.zeros(5)
    checker = Checker()

    def step(x: np.ndarray) -> None:
        h = opreg.ops.linear(x, w, b)
        checker.check(h.data)
        (h * h).sum().backward()

    compiled = opreg.compile(step)
    for x in np.random.default_rng(0).normal(size=(4, 2, 3)):
        compiled(x)
    if REPLAYS:
        assert compiled.replays == 2
        checked = re.search(r"k\d+\(k\d+, (v\d+)\)", compiled.code or "")
        assert checked is not None and re.search(rf"\b{checked.group(1)} = b\d+\n", compiled.code or ""), compiled.code
