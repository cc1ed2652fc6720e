"""The cyclic garbage collector and large graphs (:mod:`opreg.gcpause`): the collector's objects are frozen while a
large graph is recorded, automatic collection is off while one is walked back, and afterwards the collector is as
the program left it; small graphs leave it alone. Read from the collector's own state, never from timings."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import opreg
from opreg import Tensor, gcpause

EVERY = 200  # what the tests set gcpause.EVERY to, so that a large graph is cheap to record (checking mode)
LARGE = 3 * EVERY  # spans two checks: the second finds the first's record alive
C = np.array([1.0001])


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch):
    """Each test starts with nothing frozen, the collector on, and the module's state of a fresh process (an
    earlier test may have left a large graph alive, and frozen)."""
    gc.unfreeze()
    monkeypatch.setattr(gcpause, "_frozen", False)
    monkeypatch.setattr(gcpause, "_last", None)
    monkeypatch.setattr(gcpause, "EVERY", EVERY)
    monkeypatch.setattr(gcpause, "check_at", 0)  # the next record checks
    monkeypatch.setattr(gcpause, "_stand_aside", False)
    yield
    gc.unfreeze()  # whatever a failing test left
    gc.enable()


def chain(n: int, x: Tensor | np.ndarray, engine: opreg.Autograd | None = None):
    y = x
    for _ in range(n):
        y = y * C if engine is None else engine.apply("mul", y, C)
    return y


def full_collections_during(action) -> int:
    counted = []

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            counted.append(1)

    gc.callbacks.append(callback)
    try:
        action()
    finally:
        gc.callbacks.remove(callback)
    return len(counted)


def test_a_large_graph_is_frozen_while_recorded_and_released_by_its_backward():
    x = Tensor(np.array([0.5]), requires_grad=True)
    y = chain(LARGE, x)
    assert gc.get_freeze_count() > 0  # the graph recorded so far (and what else was alive) is never walked
    assert full_collections_during(lambda: y.backward(np.ones(1))) == 0
    assert gc.get_freeze_count() == 0 and gc.isenabled()  # the collector as it was
    np.testing.assert_allclose(x.grad, C**LARGE, rtol=1e-12)  # the gradient, unchanged by any of this


def test_a_large_tape_is_frozen_while_recorded_and_released_by_its_backward():
    engine = opreg.Autograd(keep_gradients=False)
    dx = np.zeros(1)
    engine.apply("mul", np.array([0.5]), C, gradients_to_update=[dx, None])
    chain(LARGE, engine.operation_list[-1].output, engine)
    assert gc.get_freeze_count() > 0
    assert full_collections_during(lambda: engine.backward(1.0)) == 0
    assert gc.get_freeze_count() == 0 and gc.isenabled()
    np.testing.assert_allclose(dx, C ** (LARGE + 1), rtol=1e-12)


def test_a_large_graph_dropped_without_backward_is_freed_and_unfrozen_by_later_recording():
    x = Tensor(np.array([0.5]), requires_grad=True)
    y = chain(LARGE, x)
    middle = weakref.ref(y._node.inputs[0]._data)
    assert gc.get_freeze_count() > 0
    del y
    assert middle() is None  # freed by reference counting, frozen or not
    for _ in range(2 * EVERY // 10):  # later small graphs: the next check finds the large one gone
        chain(10, x)
    assert gc.get_freeze_count() == 0


def test_small_graphs_never_freeze_nor_pause_the_collector():
    x = Tensor(np.array([0.5]), requires_grad=True)
    for _ in range(3 * EVERY // 100):  # as many ops as a large graph, in small steps
        chain(100, x).backward(np.ones(1))
        assert gc.get_freeze_count() == 0 and gc.isenabled()


def test_a_program_that_disabled_the_collector_finds_it_disabled_and_nothing_frozen():
    x = Tensor(np.array([0.5]), requires_grad=True)
    gc.disable()
    y = chain(LARGE, x)
    assert gc.get_freeze_count() == 0
    y.backward(np.ones(1))
    assert not gc.isenabled() and gc.get_freeze_count() == 0


def test_a_program_that_froze_objects_itself_is_left_alone():
    """gc.freeze() before forking: opreg neither freezes more nor unfreezes the program's objects."""
    mine = [[]]
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()  # frozen objects that die meanwhile leave it: it can only go down
        x = Tensor(np.array([0.5]), requires_grad=True)
        y = chain(LARGE, x)
        assert 0 < gc.get_freeze_count() <= frozen  # nothing more frozen
        y.backward(np.ones(1))
        assert 0 < gc.get_freeze_count() <= frozen  # nor the program's objects unfrozen
    finally:
        gc.unfreeze()
    del mine


def test_cyclic_garbage_made_while_frozen_is_still_collected():
    x = Tensor(np.array([0.5]), requires_grad=True)
    y = chain(LARGE, x)
    assert gc.get_freeze_count() > 0

    class Cycle:
        pass

    cycle = Cycle()
    cycle.me = cycle  # type: ignore[attr-defined]
    gone = weakref.ref(cycle)
    del cycle
    gc.collect()
    assert gone() is None
    y.backward(np.ones(1))
