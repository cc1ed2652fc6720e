"""Second derivatives of the contrib_ops plugin's ops against PyTorch: each backward, differentiated again.

Every op whose backward is built from registered ops composes: ``opreg.grad(..., create_graph=True)`` records the
backward on Tensors, and going back through it gives second derivatives. On each of an op's samples (attributes
included), in float64 and float32, this takes ``F = sum_i <v_i, dL/dx_i>`` for random ``v_i``, with
``L = <g, op(x)>``, and compares the first derivatives and the derivatives of ``F`` in every differentiable input
and in ``g`` with torch's, computed by ``torch.autograd.grad(..., create_graph=True)`` on the op's declared
``reference``. ``opreg check`` compares the same second derivatives with finite differences; this checks them
against an independent implementation, at a few ulps.

An op's backward that does not compose on a sample must be listed in ``FIRST_ORDER_ONLY``: there, create_graph
must refuse it with ``NotComposableError`` naming the op, never differentiate it silently wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pytest

import opreg
from opreg import Tensor

from contrib_torch_reference import CONTRIB_OPS, REGISTRY, needs_torch, torch, torch_reference

F64 = {"rtol": 1e-9, "atol": 1e-12}
F32 = {"rtol": 1e-4, "atol": 1e-5}
TOLERANCES = {np.float64: F64, np.float32: F32}

#: op -> on which attribute values its backward is not built from registered ops. gelu's exact form needs the
#: normal CDF, which it computes with math.erfc element by element, and no op computes erfc.
FIRST_ORDER_ONLY: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    "gelu": lambda attributes: attributes["approximate"] == "none",
}


def _opreg_second_order(
    name: str, inputs: Sequence[np.ndarray], attributes: Mapping[str, Any], g: np.ndarray, v: Sequence[np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The first derivatives of <g, op(x)>, then the derivatives of F = sum_i <v_i, first_i> in each differentiable
    input and in g (zeros where F does not depend on one)."""
    differentiable = REGISTRY[name].differentiable
    xs = [Tensor(x, requires_grad=d) for x, d in zip(inputs, differentiable, strict=True)]
    gt = Tensor(g, requires_grad=True)
    wanted = [x for x in xs if x.requires_grad]
    firsts = opreg.grad(getattr(opreg.ops, name)(*xs, **attributes), wanted, gt, create_graph=True)
    total = sum((opreg.ops.sum(first * vi) for first, vi in zip(firsts, v, strict=True)), start=Tensor(np.zeros(())))
    if total.requires_grad:
        total.backward()
    seconds = [np.zeros_like(t.data) if t.grad is None else t.grad for t in [*wanted, gt]]
    return [first.data for first in firsts], seconds


def _torch_second_order(
    name: str, inputs: Sequence[np.ndarray], attributes: Mapping[str, Any], g: np.ndarray, v: Sequence[np.ndarray]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The same through torch's autograd, on the op's declared reference."""
    differentiable = REGISTRY[name].differentiable
    xs = [torch.tensor(np.array(x), requires_grad=d) for x, d in zip(inputs, differentiable, strict=True)]
    gt = torch.tensor(np.array(g), requires_grad=True)
    wanted = [x for x in xs if x.requires_grad]
    out = torch_reference(name)(*xs, **attributes)
    firsts = torch.autograd.grad(out, wanted, gt, create_graph=True)
    total = sum((first * torch.tensor(vi)).sum() for first, vi in zip(firsts, v, strict=True))
    seconds = torch.autograd.grad(total, [*wanted, gt], allow_unused=True, materialize_grads=True)
    # force=True: torch gives a ZeroTensor where F does not depend on an input, and only then converts it
    return [first.detach().numpy() for first in firsts], [second.numpy(force=True) for second in seconds]


def _cases(name: str, seed: int, dtype: type) -> list[tuple[list[np.ndarray], dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    return [
        ([np.asarray(x, dtype=dtype) for x in sample.inputs], dict(sample.attributes))
        for sample in REGISTRY[name].samples(rng)
    ]


@needs_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=lambda d: d.__name__)
@pytest.mark.parametrize("seed", [0, 1], ids=lambda s: f"seed{s}")
@pytest.mark.parametrize("name", CONTRIB_OPS)
def test_second_derivatives_match_torch(name, seed, dtype):
    """First and second derivatives through create_graph equal torch's on every sample where the backward
    composes; where it does not (FIRST_ORDER_ONLY), create_graph is refused naming the op."""
    torch_reference(name)
    op = REGISTRY[name]
    rng = np.random.default_rng(seed + 100)
    checked = 0
    for inputs, attributes in _cases(name, seed, dtype):
        where = f"{name}{opreg.Sample(*inputs, **attributes).describe()} ({np.dtype(dtype).name})"
        output = op.output_of(*inputs, **attributes)
        g = rng.standard_normal(output.shape).astype(dtype)
        v = [rng.standard_normal(x.shape).astype(dtype) for x, d in zip(inputs, op.differentiable, strict=True) if d]
        if name in FIRST_ORDER_ONLY and FIRST_ORDER_ONLY[name](attributes):
            x = Tensor(inputs[0], requires_grad=True)
            with pytest.raises(opreg.NotComposableError, match=rf"op '{name}' \(plugin 'contrib_ops'"):
                opreg.grad(getattr(opreg.ops, name)(x, **attributes), [x], g, create_graph=True)
            continue
        firsts, seconds = _opreg_second_order(name, inputs, attributes, g, v)
        ref_firsts, ref_seconds = _torch_second_order(name, inputs, attributes, g, v)
        for what, mine, ref in [
            *(("first derivative", a, b) for a, b in zip(firsts, ref_firsts, strict=True)),
            *(("second derivative", a, b) for a, b in zip(seconds, ref_seconds, strict=True)),
        ]:
            np.testing.assert_allclose(mine, ref, err_msg=f"{where}: {what}", strict=True, **TOLERANCES[dtype])
        checked += 1
    assert checked or name in FIRST_ORDER_ONLY, f"{name}: no sample was checked"


KINKS = [
    ("leaky_relu", [np.array([[-1.5, 0.0, -0.0, 2.0], [0.0, 3.0, -2.0, -0.0]])], {"negative_slope": 0.2}),
    ("huber", [np.array([-1.0, -0.5, -0.4999, 0.0, 0.4999, 0.5, 1.0]), np.zeros(7)], {"delta": 0.5}),
]


@needs_torch
@pytest.mark.parametrize(("name", "inputs", "attributes"), KINKS, ids=[f"{k[0]}-{k[2]}" for k in KINKS])
def test_second_derivatives_at_kinks_and_ties_match_torch(name, inputs, attributes):
    """Where the first derivative jumps (leaky_relu at 0.0 and -0.0, huber at exactly +-delta), the second
    derivatives are torch's too: the masks are comparisons, constants, chosen as torch's."""
    rng = np.random.default_rng(7)
    g = rng.standard_normal(REGISTRY[name].output_of(*inputs, **attributes).shape)
    v = [rng.standard_normal(x.shape) for x, d in zip(inputs, REGISTRY[name].differentiable, strict=True) if d]
    mine = _opreg_second_order(name, inputs, attributes, g, v)
    ref = _torch_second_order(name, inputs, attributes, g, v)
    for got, expected in zip([*mine[0], *mine[1]], [*ref[0], *ref[1]], strict=True):
        np.testing.assert_allclose(got, expected, strict=True, **F64)


def test_only_the_listed_backwards_are_first_order_only():
    """FIRST_ORDER_ONLY names ops of the plugin, and each of them composes on some sample still (gelu's tanh
    form): the list cannot hide an op that stopped composing altogether."""
    assert set(FIRST_ORDER_ONLY) <= set(CONTRIB_OPS)
    for name, first_order_only in FIRST_ORDER_ONLY.items():
        samples = REGISTRY[name].samples(np.random.default_rng(0))
        assert any(not first_order_only(sample.attributes) for sample in samples), name
