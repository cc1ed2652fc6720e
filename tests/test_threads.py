"""Threads sharing opreg: gradients landing in one shared array, and plugins registered while others run ops.

Each test is a race that shows on most runs without the lock or the one-step swap it guards; the arrays are large
so that NumPy's additions (which release the GIL) overlap, and every expected total is exact: each step adds
ones, which float64 sums without rounding in any order.
"""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import pytest

import opreg
from opreg import Tensor, plugin_manager, registry

SIZE = 200_000
STEPS = 100
THREADS = 2


@pytest.fixture
def eager_switching() -> Iterator[None]:
    """Let the interpreter switch threads as often as it can, so that a race shows within a few iterations."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


def run_together(work: Callable[[int], None], threads: int = THREADS) -> None:
    """``work(i)`` in ``threads`` threads started together; the first error any of them raised is raised here."""
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        start.wait()
        try:
            work(i)
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]


def test_tape_engines_in_threads_add_every_gradient_into_one_shared_dw():
    """Each thread's engine lands its gradient in the one ``dW`` both were given: none of the additions is lost."""
    dW = np.zeros(SIZE)

    def train(_: int) -> None:
        engine = opreg.Autograd(keep_gradients=False)
        x, W = np.ones(SIZE), np.zeros(SIZE)
        for _ in range(STEPS):
            engine.apply("mul", x, W, gradients_to_update=[None, dW])  # dW += x = ones
            engine.backward(1.0)
            engine.zero_grad()

    run_together(train)
    assert np.array_equal(dW, np.full(SIZE, float(THREADS * STEPS)))


def test_tape_engines_in_threads_add_every_gradient_into_views_of_one_dw():
    """One thread lands in ``dW``, the other in the view ``dW[::-1]`` of the same memory: one lock guards both."""
    dW = np.zeros(SIZE)

    def train(i: int) -> None:
        engine = opreg.Autograd(keep_gradients=False)
        x, W = np.ones(SIZE), np.zeros(SIZE)
        target = dW if i == 0 else dW[::-1]
        for _ in range(STEPS):
            engine.apply("mul", x, W, gradients_to_update=[None, target])
            engine.backward(1.0)
            engine.zero_grad()

    run_together(train)
    assert np.array_equal(dW, np.full(SIZE, float(THREADS * STEPS)))


def test_tensor_backwards_in_threads_accumulate_every_gradient_into_one_shared_leaf():
    """Backward passes in several threads reaching one leaf: its ``.grad`` is the sum of them all."""
    w = Tensor(np.zeros(SIZE), requires_grad=True)
    seed = np.ones(SIZE)

    def train(_: int) -> None:
        for _ in range(STEPS):
            (w * 1.0).backward(seed)  # w.grad += ones

    run_together(train)
    assert w.grad is not None
    assert np.array_equal(w.grad, np.full(SIZE, float(THREADS * STEPS)))


def test_independent_models_in_threads_get_what_one_thread_gets():
    """Models that share nothing give, in threads, exactly the gradients they give one after another."""
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((16, 8)) for _ in range(THREADS)]
    weights = rng.standard_normal((4, 8))

    def gradients(i: int) -> tuple[np.ndarray, np.ndarray]:
        engine = opreg.Autograd(keep_gradients=False)
        dW = np.zeros_like(weights)
        w = Tensor(weights.copy(), requires_grad=True)
        for _ in range(30):
            engine.apply("tanh", engine.apply("matmul", batches[i], weights.T, gradients_to_update=[None, dW.T]))
            engine.backward(1.0)
            engine.zero_grad()
            opreg.ops.tanh(batches[i] @ w.T).sum().backward()
        assert w.grad is not None
        return dW, w.grad

    alone = [gradients(i) for i in range(THREADS)]
    together: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    run_together(lambda i: together.__setitem__(i, gradients(i)))
    for i in range(THREADS):
        assert np.array_equal(together[i][0], alone[i][0]) and np.array_equal(together[i][1], alone[i][1])


class Cube:
    @opreg.hookimpl
    def opreg_register_ops(self, register: opreg.Register) -> None:
        register(name="cube", inputs=("x",), forward=lambda x: x**3, backward=lambda g, x: (3 * g * x * x,))


def test_ops_keep_running_while_another_thread_registers_and_unregisters_plugins(eager_switching, pytestconfig):
    """Registering swaps the new op table in at once: an op registered all along is never missing meanwhile."""
    if pytestconfig.getoption("typeguard_packages", default=None):
        pytest.skip("typeguard checks op_table()'s result by iterating it, and the other thread is changing it")
    done = threading.Event()
    x = np.ones(3)

    def work(i: int) -> None:
        if i == 0:
            try:
                for _ in range(30):
                    opreg.register_plugin(Cube(), name="threads-cube")
                    opreg.unregister_plugin("threads-cube")
            finally:
                done.set()
            return
        engine = opreg.Autograd()
        while not done.is_set():
            engine.apply("mul", x, x)
            opreg.ops.add(Tensor(x), x)
            engine.zero_grad()
            for _ in range(100):  # the lookups alone, so that the other thread's reloads meet more of them
                opreg.get_registry()["mul"]

    run_together(work)
    assert "cube" not in opreg.get_registry() and "mul" in opreg.get_registry()


def test_threads_using_opreg_first_build_one_plugin_manager(monkeypatch, eager_switching):
    """Two threads loading the plugins at once load them once: one plugin manager, and no duplicate warnings."""
    managers: list[object] = []
    for _ in range(5):
        plugin_manager.reset_plugin_manager()
        monkeypatch.setattr(registry, "_LOADED", False)
        managers.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a plugin loaded twice warns of a duplicate entry point
            run_together(lambda _: managers.append((opreg.get_registry(), plugin_manager.get_plugin_manager())[1]))
        assert managers[0] is managers[1]
    monkeypatch.undo()
    opreg.reload_plugins()


def test_one_compiled_step_called_from_threads_at_once_gives_each_its_own_numbers():
    """A program's memory holds one run's values: a second thread replaying it at the same time would write its
    values over the first's. While one thread replays, another runs the step eagerly; every result is right."""
    rng = np.random.default_rng(0)
    w = opreg.Tensor(rng.standard_normal((128, 128)), requires_grad=True)

    def step(x):
        h = opreg.ops.relu(opreg.ops.matmul(x, w))
        return opreg.ops.sum(opreg.ops.mul(h, h)).detach()

    compiled = opreg.compile(step)
    xs = [rng.standard_normal((32, 128)) for _ in range(4)]
    want = [step(x).data for x in xs]
    for x in xs[:3]:
        compiled(x)

    def work(k: int) -> None:
        for i in range(200):
            j = (k + i) % len(xs)
            assert compiled(xs[j]).data == want[j], (k, i)

    run_together(work)
    assert compiled.replays >= 200 or opreg.observe.active
