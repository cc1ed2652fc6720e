"""Linear algebra: matmul (NumPy's @, batched and 1-D cases included) and transpose of the last two axes."""

from __future__ import annotations

import numpy as np

from opreg import Register, hookimpl


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
