"""Memory: a step leaves nothing of itself behind, and a long training loop holds flat memory, in both styles."""

from __future__ import annotations

import gc
import tracemalloc
import weakref

import numpy as np
import pytest

import opreg
from opreg.nn import MLP, Identity, SoftmaxCrossEntropy
from opreg.optim import SGD
from opreg.train import train_step

RNG = np.random.default_rng(0)
X = RNG.standard_normal((8, 4))
Y = np.eye(3)[RNG.integers(0, 3, 8)]


def make_step(style: str):
    engine = opreg.Autograd() if style == "tape" else None
    model = MLP([4, 16, 3], engine, output_activation=Identity, rng=np.random.default_rng(1))
    criterion, optimizer = SoftmaxCrossEntropy(engine), SGD(model.parameters(), lr=0.05)
    return (lambda: train_step(model, criterion, optimizer, X, Y)), engine  # the step opreg train takes


@pytest.mark.parametrize("style", ["tape", "tensor"])
def test_nothing_of_a_step_survives_backward_and_zero_grad(style):
    """Every intermediate array of a step is freed once the step is done (the loss the caller keeps aside)."""
    step, engine = make_step(style)
    step()
    intermediates: list[weakref.ref] = []
    if engine is not None:
        engine.zero_grad()
        loss = opreg.nn.MSELoss(engine)(np.zeros_like(X), opreg.nn.ReLU(engine)(engine.apply("mul", X, 2.0)))
        intermediates = [weakref.ref(op.output) for op in engine.operation_list[:-1]]
        engine.backward(1.0)
        engine.zero_grad()
    else:
        x = opreg.Tensor(X, requires_grad=True)
        hidden = opreg.ops.relu(x * 2.0)
        intermediates = [weakref.ref(hidden.data)]
        loss = opreg.ops.mse(hidden, np.zeros_like(X))
        del hidden
        loss.backward()
    gc.collect()
    assert intermediates and all(ref() is None for ref in intermediates)
    del loss


@pytest.mark.parametrize("style", ["tape", "tensor"])
def test_ten_thousand_steps_hold_flat_memory(style):
    """Traced memory after 10,000 steps is what it was after 1,000 (within 64 KiB): nothing accumulates."""
    step, _ = make_step(style)
    for _ in range(100):
        step()
    gc.collect()
    tracemalloc.start()
    try:
        for _ in range(1_000):
            step()
        gc.collect()
        early, _ = tracemalloc.get_traced_memory()
        for _ in range(9_000):
            step()
        gc.collect()
        late, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert late - early < 64 * 1024, f"traced memory grew by {late - early} bytes over 9,000 steps"
