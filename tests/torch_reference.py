"""PyTorch references for the built-in ops: the one table the tests that compare opreg with torch share.

Each op declares its reference beside its forward and backward (``reference=`` in ``register``), written from
torch's documentation, never from opreg's code, and differentiated by torch's own autograd: that is what makes
torch an independent reference. A built-in op without one fails every test that asks for it through
:func:`torch_reference`.

Besides, what the registry tells about each op for the tests that draw inputs for it: ``ELEMENTWISE``, the ops
whose inputs may be any broadcastable arrays of values from their ``domain``.

The test modules import this as ``torch_reference``: tests/ has no ``__init__.py``, so pytest (in its default
"prepend" import mode) puts tests/ on ``sys.path`` before importing them, from the repository root or anywhere else.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest

import opreg
import opreg.plugin
from opreg import testing

torch = testing.optional_torch()
F = None if torch is None else torch.nn.functional
#: Marks a test that compares with torch: skipped without it, while the module's other tests run.
needs_torch = pytest.mark.skipif(torch is None, reason="torch is the reference: pip install '.[torch]'")

REGISTRY = opreg.get_registry()
#: Every op a built-in plugin (``opreg_builtins.*``) registered.
ALL_BUILTIN_OPS = sorted(name for name, op in REGISTRY.items() if op.plugin.startswith("opreg_builtins"))
#: The built-in ops with several outputs (``outputs=``): tests/test_multi_output.py compares each with torch,
#: output by output, through both front ends and to second order.
MULTI_OUTPUT_OPS = [name for name in ALL_BUILTIN_OPS if REGISTRY[name].multi]
#: The built-in ops with one output: what the harnesses that compare one output and its gradient take.
BUILTIN_OPS = [name for name in ALL_BUILTIN_OPS if not REGISTRY[name].multi]
#: The built-in ops no input of which takes a gradient (``dropout_mask``): the harnesses that compare derivatives
#: have nothing to check on them (their forwards are compared all the same). tests/test_dropout.py pins the list.
NO_GRADIENT_OPS = [name for name in ALL_BUILTIN_OPS if not any(REGISTRY[name].differentiable)]


def resolve(reference: opreg.plugin.Reference) -> Callable[..., Any]:
    """An op's declared ``reference``: a dotted name from ``torch`` (``"torch.nn.functional.mse_loss"``), or a
    function given the torch module that returns the function."""
    if callable(reference):
        return reference(torch)
    first, *path = reference.split(".")
    if first != "torch":
        raise ValueError(f"reference {reference!r} does not name a torch function")
    found: Any = torch
    for part in path:
        found = getattr(found, part)
    return found


#: op name -> the same computation in torch, taking the op's attributes as keywords: each built-in op's declared
#: ``reference``, so a new op costs its declaration and nothing here.
TORCH_OPS: dict[str, Callable[..., Any]] = {
    name: resolve(REGISTRY[name].reference)
    for name in ALL_BUILTIN_OPS
    if torch is not None and REGISTRY[name].reference is not None
}


def torch_reference(name: str) -> Callable[..., Any]:
    """The torch counterpart of built-in op ``name``; the calling test fails if there is none (and skips without
    torch)."""
    if torch is None:
        pytest.skip("torch is the reference: pip install '.[torch]'")
    if name not in TORCH_OPS:
        pytest.fail(f"built-in op {name!r} has no PyTorch reference; declare reference= in its register() call")
    return TORCH_OPS[name]


# --- what the registry tells about each op, for the tests that draw inputs for it ------------------------------------


def is_elementwise(op: opreg.OpDef) -> bool:
    """Whether ``op`` computes each output element from the same element of its inputs, judged on its declared
    samples: the output has the inputs' broadcast shape, and permuting the elements of every (broadcast) input
    alike permutes the output's the same way. A reduction, a shape change, matmul or a softmax is not elementwise.

    Elementwise ops need nothing but their ``register()`` call in the property tests and the graph fuzzer: their
    inputs are any mutually broadcastable arrays, drawn from the op's ``domain``.
    """
    rng = np.random.default_rng(0)
    for sample in op.samples(rng):
        inputs = [np.asarray(x) for x in sample.inputs]
        try:
            shape = np.broadcast_shapes(*(x.shape for x in inputs))
        except ValueError:
            return False
        output = op.output_of(*inputs, **sample.attributes)
        if output.shape != shape:
            return False
        permutation = rng.permutation(math.prod(shape))
        permuted = [np.broadcast_to(x, shape).reshape(-1)[permutation].reshape(shape) for x in inputs]
        expected = np.asarray(output).reshape(-1)[permutation].reshape(shape)
        try:
            permuted_output = op.output_of(*permuted, **sample.attributes)
        except ValueError:  # NumPy's LinAlgError among them: a matrix op refusing its permuted input
            return False
        if not np.allclose(permuted_output, expected, rtol=1e-12, atol=0, equal_nan=True):
            return False
    return True


#: The built-in ops that are elementwise on their samples (see :func:`is_elementwise`).
ELEMENTWISE = frozenset(name for name in BUILTIN_OPS if is_elementwise(REGISTRY[name]))


def declared_domain(name: str, input_name: str) -> tuple[float, float] | None:
    """The ``(low, high)`` op ``name`` declares for its input ``input_name`` (``domain=``), or None: any finite
    value."""
    domain = REGISTRY[name].domain
    return domain.get(input_name) if isinstance(domain, Mapping) else domain
