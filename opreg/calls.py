"""Calling a registered op: the one piece of code both front ends, the tape engine and Tensors, run per op.

Converting inputs, running forward with errors that name the op, running backward and fitting each gradient to
its input live here, so that no derivative and no gradient rule is written twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from opreg.errors import OpContractError, OpregError, OpUsageError
from opreg.fit import fit_gradient
from opreg.opdef import OpDef


def describe_array(x: Any) -> str:
    """``float64 (3, 4)``: how error messages show an array, or the type of something that is not one."""
    if isinstance(x, np.ndarray | np.generic):
        return f"{x.dtype} {x.shape}"
    return type(x).__name__


def as_arrays(inputs: Sequence[Any]) -> tuple[np.ndarray, ...]:
    """``inputs`` as arrays, Python numbers promoted as NumPy promotes them beside the array inputs (NEP 50).

    ``np.asarray(2.0)`` alone would be a float64 array, and would turn a float32 computation into float64.
    """
    arrays = [x for x in inputs if isinstance(x, np.ndarray)]
    return tuple(
        np.asarray(x, dtype=np.result_type(*arrays, x)) if arrays and type(x) in (int, float) else np.asarray(x)
        for x in inputs
    )


def run_forward(op: OpDef, inputs: Sequence[np.ndarray], attributes: Mapping[str, Any]) -> tuple[np.ndarray, Any]:
    """``op.forward`` on ``inputs``: ``(output, saved)``, ``saved`` being ``None`` unless the op saves for backward.

    An error names the op, its plugin and the inputs' dtypes and shapes. The output is always a fresh array object:
    an op may return one of its inputs, and the two must not share an identity (the tape engine keys gradients by
    it).
    """
    if len(inputs) != len(op.inputs):
        raise arity_error(op, "inputs", len(inputs))
    try:
        # No ** for no attributes: spreading the empty read-only mapping costs more than the rest of the call
        output = op.forward(*inputs, **attributes) if attributes else op.forward(*inputs)
        saved = None
        if op.saves_for_backward:
            output, saved = output
    except OpregError:  # checking or anomaly mode found the op at fault, not the call
        raise
    except Exception as exc:
        shapes = ", ".join(f"{n}: {describe_array(x)}" for n, x in zip(op.inputs, inputs, strict=True))
        raise OpUsageError(f"{op.describe()}: forward failed on {shapes}: {exc}") from exc
    if type(output) is not np.ndarray:
        output = np.asarray(output)
    for x in inputs:
        if output is x:
            return output.view(), saved
    return output, saved


def arity_error(op: OpDef, what: str, got: int) -> OpUsageError:
    return OpUsageError(f"{op.describe()} takes {len(op.inputs)} {what} {op.inputs}, got {got}")


def input_gradients(
    op: OpDef,
    grad_output: np.ndarray,
    inputs: Sequence[np.ndarray],
    output: np.ndarray,
    attributes: Mapping[str, Any],
    needed: Sequence[Any] | None = None,
    saved: Any = None,
) -> list[np.ndarray | None]:
    """Each input's gradient from ``op.backward``, fitted to the input's shape and dtype; ``None`` for none.

    ``None`` stands for an input that is not differentiable, that backward gave no gradient, or whose gradient
    nobody will read: ``needed[i] is None`` (a constant; anomaly mode does not report its gradient either).
    ``saved`` is what forward saved for backward, if the op saves.
    """
    keywords = backward_keywords(op, attributes, output, needed, saved) if op.extra_backward_keywords else attributes
    grads = op.backward(grad_output, *inputs, **keywords) if keywords else op.backward(grad_output, *inputs)
    if len(grads) != len(inputs):
        raise gradient_count_error(op, len(grads))
    if op.after_backward is not None:
        op.after_backward(output, grads, needed)
    fitted = list(grads)
    differentiable = op.differentiable
    for position, x in enumerate(inputs):
        grad = fitted[position]
        if grad is None:
            continue
        if not differentiable[position] or (needed is not None and needed[position] is None):
            fitted[position] = None
        elif type(grad) is not np.ndarray or grad.shape != x.shape or grad.dtype != x.dtype:
            # NumPy scalars (0-d arithmetic gives them) become 0-d arrays too
            fitted[position] = _fit(op, position, grad, x)
    return fitted


def backward_keywords(
    op: OpDef, attributes: Mapping[str, Any], output: Any, needed: Sequence[Any] | None = None, saved: Any = None
) -> dict[str, Any]:
    """The keywords backward takes besides the attributes: ``output=``, ``needs_grad=``, ``saved=`` as declared.

    ``output`` is the op's output: an array, or its Tensor when backward is recorded (``create_graph``).

    ``needs_grad[i]`` is False where ``needed[i]`` is ``None`` (a constant the caller drops), True everywhere when
    ``needed`` is ``None`` (every gradient is wanted).
    """
    keywords = dict(attributes)
    if op.backward_uses_output:
        keywords["output"] = output
    if op.backward_uses_needs_grad:
        keywords["needs_grad"] = op.all_needed if needed is None else tuple(x is not None for x in needed)
    if op.saves_for_backward:
        keywords["saved"] = saved
    return keywords


def _fit(op: OpDef, position: int, grad: Any, x: np.ndarray) -> np.ndarray:
    """Fit a gradient to its input (:func:`opreg.fit.fit_gradient`), or raise naming the op, input and shapes."""
    if not isinstance(grad, np.ndarray | np.generic | float | int):
        raise OpContractError(
            f"{op.describe()}: backward returned a {type(grad).__name__} as the gradient of "
            f"{op.describe_input(position)}; expected an array or None"
        )
    fitted = fit_gradient(np.asarray(grad), x)
    if fitted is None:
        raise gradient_shape_error(op, position, np.shape(grad), x.shape)
    return fitted


def gradient_count_error(op: OpDef, got: int) -> OpContractError:
    """A backward that returned ``got`` gradients, not one per input: the words every checker uses."""
    return OpContractError(
        f"{op.describe()}: backward returned {got} gradients for {len(op.inputs)} inputs {op.inputs}"
    )


def gradient_shape_error(
    op: OpDef, position: int, shape: tuple[int, ...], input_shape: tuple[int, ...]
) -> OpContractError:
    """A gradient of ``shape`` for input ``position`` of ``input_shape`` that no broadcast explains."""
    return OpContractError(
        f"{op.describe()}: backward returned a gradient of shape {shape} for {op.describe_input(position)} of shape "
        f"{input_shape}, which broadcasting cannot explain"
    )


def accumulate(memory: dict[int, Any], key: int, gradient: np.ndarray) -> None:
    """Add ``gradient`` to ``memory[key]`` (absent or ``None``: none yet).

    The first gradient is stored as it is and later ones are added out of place, never in place: an op's
    backward may return one array for several inputs (add does), and they must not change each other.
    """
    current = memory.get(key)
    if current is None:
        memory[key] = gradient
    else:
        total = current + gradient
        memory[key] = total if type(total) is np.ndarray else np.asarray(total)  # 0-d + 0-d is a NumPy scalar
