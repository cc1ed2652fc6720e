"""Linear algebra: matmul (NumPy's @, batched and 1-D cases included), transpose of the last two axes, and linear
(x @ W.T + b, a fully connected layer in one op)."""

from __future__ import annotations

import math

import numpy as np

from opreg import Register, Sample, hookimpl


def _matmul_backward(
    g: np.ndarray, a: np.ndarray, b: np.ndarray, *, needs_grad: tuple[bool, bool]
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """d(a @ b): g @ b^T and a^T @ g, after promoting 1-D operands to matrices as ``@`` itself does.

    Each is computed only if needed: a network's input needs no gradient, and skipping it saves the first layer's
    largest matmul. Batch dimensions that ``@`` broadcast are summed back by the engine.
    """
    a2 = a[np.newaxis, :] if a.ndim == 1 else a
    b2 = b[:, np.newaxis] if b.ndim == 1 else b
    g2 = np.expand_dims(g, -1) if b.ndim == 1 else g
    g2 = np.expand_dims(g2, -2) if a.ndim == 1 else g2
    grad_a = grad_b = None
    if needs_grad[0]:
        grad_a = g2 @ np.swapaxes(b2, -1, -2)
        grad_a = grad_a[..., 0, :] if a.ndim == 1 else grad_a
    if needs_grad[1]:
        grad_b = np.swapaxes(a2, -1, -2) @ g2
        grad_b = grad_b[..., 0] if b.ndim == 1 else grad_b
    return grad_a, grad_b


def _linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {weight.shape}")
    product = x @ weight.T
    output = product + bias
    if output.shape != product.shape:  # a bias that widened the output would leave backward's g @ W meaningless
        raise ValueError(f"bias of shape {bias.shape} does not broadcast to x @ weight.T's shape {product.shape}")
    return output


def _rows(a: np.ndarray) -> np.ndarray:
    """``a`` as a matrix of its last axis, every leading axis one batch (reshape(-1, n) fails on empty arrays)."""
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


def _linear_backward(
    g: np.ndarray, x: np.ndarray, weight: np.ndarray, bias: np.ndarray, *, needs_grad: tuple[bool, bool, bool]
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
    """d(x @ W.T + b): g @ W, g.T @ x summed over every leading axis of x, and g summed to b's shape.

    One op rather than transpose, matmul and add, for speed: W's gradient comes out of one matmul already in W's
    (out, in) layout, where the three-op version computes x.T @ g and copies it into that layout, and x's gradient
    is skipped when x needs none (a network's input: a quarter of an MLP's backward FLOPs).
    """
    grad_x = g @ weight if needs_grad[0] else None
    rows = _rows(g)
    grad_weight = rows.T @ _rows(x) if needs_grad[1] else None
    grad_bias = rows.sum(axis=0) if bias.ndim == 1 else g  # the usual (out,) bias summed here: one call, no fitting
    return grad_x, grad_weight, grad_bias


def _linear_samples(rng: np.random.Generator) -> list[Sample]:
    """A batch, a single 1-D input, and a batch with two leading axes."""
    weight, bias = rng.standard_normal((4, 3)), rng.standard_normal(4)
    return [Sample(rng.standard_normal(shape), weight, bias) for shape in [(5, 3), (3,), (2, 5, 3)]]


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="matmul",
        inputs=("a", "b"),
        forward=np.matmul,
        backward=_matmul_backward,
        backward_uses_needs_grad=True,
        sample_inputs=lambda rng: (rng.standard_normal((3, 4)), rng.standard_normal((4, 5))),
        doc="a @ b, with NumPy's rules for 1-D and batched operands.",
    )
    register(
        name="transpose",
        inputs=("x",),
        forward=lambda x: np.swapaxes(x, -1, -2),
        # Contiguous: a transposed view would make adding it into dW (or W.grad) walk memory against its layout,
        # which bench/ measured at 20x the cost of this copy for a 784x512 weight.
        backward=lambda g, x: (np.ascontiguousarray(np.swapaxes(g, -1, -2)),),
        doc="Swap the last two axes (x.T for a matrix); needs at least 2 dimensions.",
    )
    register(
        name="linear",
        inputs=("x", "weight", "bias"),
        forward=_linear,
        backward=_linear_backward,
        backward_uses_needs_grad=True,
        sample_inputs=_linear_samples,
        doc="x @ weight.T + bias: a fully connected layer; weight is (out_features, in_features), x 1-D or batched.",
    )
