"""Linear algebra: matmul (NumPy's @, batched and 1-D cases included), transpose of the last two axes, and linear
(x @ W.T + b, a fully connected layer in one op). The shape changes their backwards are written with (expand_dims,
squeeze, broadcast_to) are plugins/shapes.py's."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Register, Sample, align, contiguous, fit_into, hookimpl, linear_jvp, matrix_ops


def _matmul_backward(g: Any, a: Any, b: Any, *, needs_grad: tuple[bool, bool]) -> tuple[Any, Any]:
    """d(a @ b): g @ b^T and a^T @ g, after promoting 1-D operands to matrices as ``@`` itself does.

    Each is computed only if needed: a network's input needs no gradient, and skipping it saves the first layer's
    largest matmul. Batch dimensions that ``@`` broadcast are summed back by the engine.
    """
    a2 = onp.expand_dims(a, 0) if a.ndim == 1 else a
    b2 = onp.expand_dims(b, -1) if b.ndim == 1 else b
    g2 = onp.expand_dims(g, -1) if b.ndim == 1 else g
    g2 = onp.expand_dims(g2, -2) if a.ndim == 1 else g2
    grad_a = grad_b = None
    if needs_grad[0]:
        grad_a = _product(g2, onp.matrix_transpose(b2))
        grad_a = onp.squeeze(grad_a, -2) if a.ndim == 1 else grad_a
    if needs_grad[1]:
        grad_b = _product(onp.matrix_transpose(a2), g2)
        grad_b = onp.squeeze(grad_b, -1) if b.ndim == 1 else grad_b
    return grad_a, grad_b


#: The dtypes whose matrix products :func:`_matrix_product` takes with ``np.dot``: BLAS's real floating ones.
_BLAS_FLOATS = frozenset({np.dtype(np.float32), np.dtype(np.float64)})


def _dot_fits(a: Any, b: Any) -> bool:
    """Whether the product of ``a`` and ``b`` is ``np.dot``'s: two matrices of one of :data:`_BLAS_FLOATS`."""
    return a.ndim == 2 and b.ndim == 2 and a.dtype == b.dtype and a.dtype in _BLAS_FLOATS


def _matrix_product(a: Any, b: Any) -> Any:
    """``a @ b``; of two matrices of one BLAS float dtype, ``np.dot(a, b)``: the same BLAS product, for about 0.4 us
    less per call (``@`` is a generalized ufunc, and pays for its machinery), a tenth of the tiny step in bench/.
    The two agree on nearly every layout, but not on all (a last bit on some 1 x 1 products), so every product of
    this module, computed or written into an array (:func:`_matmul_into`), makes the same choice: an eager step
    and its replay make the same calls, bit for bit."""
    if type(a) is np.ndarray and type(b) is np.ndarray and _dot_fits(a, b):
        return np.dot(a, b)
    return a @ b


def _matmul_into(out: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """``fit_into(out, a @ b)`` as :func:`_matrix_product` computes it, written straight into ``out`` when that has
    the product's shape, dtype and layout (C order: NumPy writes a product into another layout by other loops,
    whose last bits may differ, and ``np.dot`` into none)."""
    if a.ndim == 2 and b.ndim == 2:  # a training step's case, decided without broadcast_shapes
        fits = a.dtype == b.dtype == out.dtype and out.shape == (a.shape[0], b.shape[1])
    else:
        fits = a.ndim >= 2 and b.ndim >= 2 and np.result_type(a, b) == out.dtype
        fits = fits and out.shape == (*np.broadcast_shapes(a.shape[:-2], b.shape[:-2]), a.shape[-2], b.shape[-1])
    product = np.dot if _dot_fits(a, b) else np.matmul
    if fits and out.flags.c_contiguous:
        product(a, b, out=out)
    else:
        fit_into(out, product(a, b))


def _matmul_backward_out(
    outs: tuple[Any, Any], g: np.ndarray, a: np.ndarray, b: np.ndarray, *, needs_grad: tuple[bool, bool]
) -> None:
    """:func:`_matmul_backward` in NumPy, each product into its array."""
    a2 = np.expand_dims(a, 0) if a.ndim == 1 else a
    b2 = np.expand_dims(b, -1) if b.ndim == 1 else b
    g2 = np.expand_dims(g, -1) if b.ndim == 1 else g
    g2 = np.expand_dims(g2, -2) if a.ndim == 1 else g2
    if outs[0] is not None:
        if a.ndim == 1:
            fit_into(outs[0], np.squeeze(_product(g2, np.swapaxes(b2, -1, -2)), -2))
        else:
            _product_into(outs[0], g2, np.swapaxes(b2, -1, -2))
    if outs[1] is not None:
        if b.ndim == 1:
            fit_into(outs[1], np.squeeze(_product(np.swapaxes(a2, -1, -2), g2), -1))
        else:
            _product_into(outs[1], np.swapaxes(a2, -1, -2), g2)


def _product(a: Any, b: Any) -> Any:
    """``a @ b``, as a broadcast multiply when the inner dimension is 1 (an outer product: a batch of one, a
    matrix-vector product's matrix gradient). NumPy's ``@`` takes 3-5x as long there (418 us against 87 for a
    784x512 float32 weight's gradient); each element is one product either way, so the values are the same (a
    zero may differ in sign: ``@`` adds the product to +0.0, which ``+=`` into a zeroed ``dW`` does too)."""
    return a * b if a.shape[-1] == 1 else _matrix_product(a, b)


def _product_into(out: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """:func:`_product` into ``out``: a broadcast multiply where the inner dimension is 1, as backward computes it
    (a zero's sign included), else the matrix product."""
    if a.shape[-1] != 1:
        _matmul_into(out, a, b)
    elif np.result_type(a, b) == out.dtype and np.broadcast_shapes(a.shape, b.shape) == out.shape:
        np.multiply(a, b, out=out)
    else:
        fit_into(out, a * b)


def _linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {weight.shape}")
    product = _matrix_product(x, weight.T)
    output: np.ndarray = product + bias
    if output.shape != product.shape:  # a bias that widened the output would leave backward's g @ W meaningless
        raise ValueError(f"bias of shape {bias.shape} does not broadcast to x @ weight.T's shape {product.shape}")
    return output


def _linear_backward(
    g: Any, x: Any, weight: Any, bias: Any, *, needs_grad: tuple[bool, bool, bool]
) -> tuple[Any, Any, Any]:
    """d(x @ W.T + b): g @ W, g^T @ x (the engine sums it over x's batch axes), and g summed to b's shape.

    One op rather than transpose, matmul and add, for speed: W's gradient comes out of one matmul already in W's
    (out, in) layout, where the three-op version computes x.T @ g and copies it into that layout, and x's gradient
    is skipped when x needs none (a network's input: a quarter of an MLP's backward FLOPs).
    """
    grad_x = _matrix_product(g, weight) if needs_grad[0] else None
    grad_weight = None
    if needs_grad[1]:
        if g.ndim == 2:  # a batch, the hot case: .T is a view of an array, the transpose op on a Tensor
            grad_weight = _product(g.T, x)  # a batch of one: a broadcast multiply (see _product)
        elif x.ndim == 1:
            grad_weight = onp.expand_dims(g, -1) * x
        else:
            grad_weight = onp.matrix_transpose(g) @ x
    batch_axes = 0 if g.ndim == 2 else tuple(range(g.ndim - 1))
    if bias.ndim != 1:
        grad_bias = g
    elif type(g) is np.ndarray:  # the usual (out,) bias, summed here: g.sum's reduction, without its Python layers
        grad_bias = np.add.reduce(g, axis=batch_axes)
    else:  # a Tensor: a backward differentiated again
        grad_bias = g.sum(axis=batch_axes)
    return grad_x, grad_weight, grad_bias


def _linear_out(out: np.ndarray, x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> None:
    """:func:`_linear` into ``out``: the product, then the bias added in place (forward's sum of the two). A bias
    that widens the dtype (float32 x and weight, a float64 bias) makes forward's product a narrower array first."""
    if np.result_type(x, weight) != out.dtype:
        np.copyto(out, _linear(x, weight, bias))
        return
    _matmul_into(out, x, weight.T)
    np.add(out, bias, out=out)


def _linear_backward_out(
    outs: tuple[Any, Any, Any],
    g: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    *,
    needs_grad: tuple[bool, bool, bool],
) -> None:
    """:func:`_linear_backward` in NumPy, each gradient into its array."""
    if outs[0] is not None:
        _matmul_into(outs[0], g, weight) if g.ndim >= 2 else fit_into(outs[0], _matrix_product(g, weight))
    if outs[1] is not None:
        if g.ndim == 2:
            _product_into(outs[1], g.T, x)
        elif x.ndim == 1:
            fit_into(outs[1], np.expand_dims(g, -1) * x)
        else:
            fit_into(outs[1], np.swapaxes(g, -1, -2) @ x)
    if outs[2] is not None:
        if bias.ndim != 1:
            fit_into(outs[2], g)
        elif g.dtype == outs[2].dtype:
            np.sum(g, axis=0 if g.ndim == 2 else tuple(range(g.ndim - 1)), out=outs[2])
        else:
            fit_into(outs[2], g.sum(axis=0 if g.ndim == 2 else tuple(range(g.ndim - 1))))


def _batch_matmul(call: Callable[..., Any], batched: Sequence[bool], a: Any, b: Any) -> Any:
    """vmap of ``a @ b``: a batched 1-D operand made a matrix (a row for a, a column for b, as ``@`` does), a
    batched operand given singleton axes after the batch up to the other's rank, so that ``@``'s broadcasting of
    leading axes pairs the batch only with itself; the promoted axes are squeezed away again."""
    a_vector, b_vector = batched[0] and np.ndim(a) == 2, batched[1] and np.ndim(b) == 2
    if a_vector:
        a = onp.expand_dims(a, 1)
    if b_vector:
        b = onp.expand_dims(b, -1)
    rank = max(np.ndim(a) - batched[0], np.ndim(b) - batched[1])
    a, b = (
        onp.reshape(x, (np.shape(x)[0],) + (1,) * (rank + 1 - np.ndim(x)) + tuple(np.shape(x)[1:]))
        if flag and np.ndim(x) - 1 < rank
        else x
        for x, flag in ((a, batched[0]), (b, batched[1]))
    )
    product = call(a, b)
    if b_vector:
        product = onp.squeeze(product, -1)
    if a_vector:
        product = onp.squeeze(product, -1 if b_vector or np.ndim(b) == 1 else -2)
    return product


def _batch_linear(call: Callable[..., Any], batched: Sequence[bool], x: Any, weight: Any, bias: Any) -> Any:
    """vmap of ``x @ W.T + b``: the op itself when only x is batched; else (per-example weights, as vmap(grad)
    makes them) the batched matmul with W's transpose, plus the bias."""
    if not batched[1] and not batched[2]:
        return call(x, weight, bias)
    if np.ndim(weight) - batched[1] != 2:
        raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {np.shape(weight)[batched[1] :]}")
    product = _batch_matmul(onp.matmul, (batched[0], batched[1]), x, onp.swapaxes(weight, -1, -2))
    return onp.add(*align([product, bias], [True, batched[2]]))


def _linear_samples(rng: np.random.Generator) -> list[Sample]:
    """A batch, a batch of one (its weight gradient an outer product), a single 1-D input, and a batch with two
    leading axes."""
    weight, bias = rng.standard_normal((4, 3)), rng.standard_normal(4)
    return [Sample(rng.standard_normal(shape), weight, bias) for shape in [(5, 3), (1, 3), (3,), (2, 5, 3)]]


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="matmul",
        inputs=("a", "b"),
        forward=_matrix_product,
        backward=_matmul_backward,
        forward_out=_matmul_into,
        backward_out=_matmul_backward_out,
        jvp=lambda t, a, b: t[0] @ b + a @ t[1],
        sample_inputs=lambda rng: [
            Sample(rng.standard_normal((3, 4)), rng.standard_normal((4, 5))),
            Sample(rng.standard_normal(4), rng.standard_normal((2, 4, 5))),
            Sample(rng.standard_normal((2, 3, 4)), rng.standard_normal(4)),
        ],
        doc="a @ b, with NumPy's rules for 1-D and batched operands.",
        numpy="matmul",
        reference="torch.matmul",
        batch=_batch_matmul,
    )
    register(
        name="transpose",
        inputs=("x",),
        forward=lambda x: np.swapaxes(x, -1, -2),
        # Contiguous: a transposed view would make adding it into dW (or W.grad) walk memory against its layout,
        # which bench/ measured at 20x the cost of this copy for a 784x512 weight.
        backward=lambda g, x: (contiguous(onp.matrix_transpose(g)),),
        jvp=linear_jvp("transpose"),
        doc="Swap the last two axes (x.T for a matrix); needs at least 2 dimensions.",
        numpy="matrix_transpose",
        reference=lambda torch: lambda x: x.mT,
        batch=matrix_ops(2),
    )
    register(
        name="linear",
        inputs=("x", "weight", "bias"),
        forward=_linear,
        backward=_linear_backward,
        forward_out=_linear_out,
        backward_out=_linear_backward_out,
        jvp=lambda t, x, weight, bias: t[0] @ onp.matrix_transpose(weight) + x @ onp.matrix_transpose(t[1]) + t[2],
        sample_inputs=_linear_samples,
        doc="x @ weight.T + bias: a fully connected layer; weight is (out_features, in_features), x 1-D or batched.",
        reference=lambda torch: lambda x, weight, bias: torch.nn.functional.linear(x, weight) + bias,
        batch=_batch_linear,
    )
