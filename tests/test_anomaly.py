"""opreg.detect_anomaly(): the first NaN or infinity is an error naming the op, its plugin, its position among
the ops recorded, and for a backward, where its forward was called from."""

from __future__ import annotations

import numpy as np
import pytest

import opreg
from opreg import AnomalyError, Tensor
from opreg.registry import op_table


def test_forward_producing_nan_is_named(engine):
    with opreg.detect_anomaly(), np.errstate(invalid="ignore"):
        x = engine.apply("exp", np.ones(2))
        with pytest.raises(AnomalyError, match=r"op 'log' \(plugin 'opreg_builtins.elementwise'\), op #2 .*NaN"):
            engine.apply("log", -x)


def test_backward_producing_infinity_on_the_tape(engine):
    """pow(x, 0.5) at 0 is finite, its gradient is not: backward stops there, naming op #1."""
    with opreg.detect_anomaly(), np.errstate(divide="ignore"):
        engine.apply("pow", np.array([0.0, 4.0]), np.full(2, 0.5))
        with pytest.raises(AnomalyError, match=r"op 'pow' .*op #1 recorded, returned infinity from backward"):
            engine.backward(1.0)


def test_backward_anomaly_points_at_the_forward_line():
    x = Tensor(np.array([0.0, 4.0]), requires_grad=True)
    with opreg.detect_anomaly(), np.errstate(divide="ignore"):
        root = opreg.ops.pow(x, 0.5)  # sqrt: finite forward, infinite gradient at 0
        with pytest.raises(AnomalyError) as failure:
            root.sum().backward()
    message = str(failure.value)
    assert "op 'pow' (plugin 'opreg_builtins.arithmetic'), op #1 recorded, returned infinity from backward" in message
    assert "input 0 'base'" in message
    assert "root = opreg.ops.pow(x, 0.5)" in message


def test_without_the_block_nothing_is_checked_and_the_table_is_never_touched():
    before = dict(op_table())
    with opreg.detect_anomaly():
        assert all(op_table()[name] is op for name, op in before.items())
    assert all(op_table()[name] is op for name, op in before.items())
    with np.errstate(divide="ignore"):
        x = Tensor(np.array([0.0]), requires_grad=True)
        opreg.ops.log(x).sum().backward()  # -inf and inf, silently, as NumPy itself
    assert np.isinf(x.grad).all()


def test_finite_computations_are_unaffected():
    rng = np.random.default_rng(0)
    x, w = Tensor(rng.standard_normal((3, 4))), Tensor(rng.standard_normal((4, 2)), requires_grad=True)
    (opreg.ops.tanh(x @ w) ** 2).mean().backward()
    expected = w.grad.copy()
    w.grad = None
    with opreg.detect_anomaly():
        (opreg.ops.tanh(x @ w) ** 2).mean().backward()
    np.testing.assert_array_equal(w.grad, expected)
