"""Calling a registered op: the one piece of code both front ends, the tape engine and Tensors, run per op.

Converting inputs, running forward with errors that name the op, running backward with what it asks for, and
fitting each gradient to its input live here, so that no derivative and no gradient rule is written twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import numpy as np

from opreg import observe
from opreg.contract import (
    describe_array,
    gradient_count_error,
    gradient_shape_error,
    gradient_type_error,
    tuple_output_error,
)
from opreg.errors import BackwardError, NotComposableError, OpContractError, OpregError, OpUsageError
from opreg.fit import fit_gradient, sum_to_shape
from opreg.opdef import OpDef

__all__ = [
    "arity_error",
    "as_arrays",
    "backward_keywords",
    "complex_error",
    "describe_array",
    "input_gradients",
    "run_forward",
]


def as_arrays(inputs: Sequence[Any]) -> tuple[np.ndarray, ...]:
    """``inputs`` as arrays, Python numbers promoted as NumPy promotes them beside the array inputs (NEP 50).

    ``np.asarray(2.0)`` alone would be a float64 array, and would turn a float32 computation into float64.
    """
    arrays = [x for x in inputs if isinstance(x, np.ndarray | np.generic)]
    return tuple(
        np.asarray(x, dtype=np.result_type(*arrays, x)) if arrays and type(x) in (int, float) else np.asarray(x)
        for x in inputs
    )


def run_forward(
    op: OpDef,
    inputs: Sequence[np.ndarray],
    attributes: Mapping[str, Any],
    observers: Sequence[Any] = (),
    several: bool = True,
) -> tuple[Any, Any]:
    """``op.forward`` on ``inputs``: ``(output, saved)``, ``saved`` being ``None`` unless backward asks for it.
    ``output`` is an array, or for an op with several outputs a tuple of arrays (:func:`several_outputs`).

    An error names the op, its plugin and the inputs' dtypes and shapes. The output is always a fresh array object:
    an op may return one of its inputs, and the two must not share an identity (the tape engine keys gradients by
    it). ``observers`` (checking and anomaly modes) watch the call. ``several=False``: an op with several outputs
    is an error (the Tensor front end's ``apply``, which returns one Tensor, decided here at no cost to other ops).
    """
    general = len(inputs) != op.arity  # arity -1: a variadic op, or one with several outputs (or a wrong count)
    if general and not op.accepts(len(inputs)):
        raise arity_error(op, "inputs", len(inputs))
    try:
        if observers:
            output = observe.forward(observers, op, inputs, attributes)
        else:  # no ** for no attributes: spreading the empty read-only mapping costs more than the rest of the call
            output = op.forward(*inputs, **attributes) if attributes else op.forward(*inputs)
        saved = None
        if op.saves:
            output, saved = output
    except OpregError:  # checking or anomaly mode found the op at fault, not the call
        raise
    except Exception as exc:
        raise forward_error(op, inputs, exc) from exc
    if type(output) is not np.ndarray or general:
        if op.multi:
            if not several:
                raise OpUsageError(
                    f"{op.describe()} has several outputs {op.outputs}; call it as opreg.ops.{op.name} (or through "
                    "opreg.numpy), which returns a tuple of Tensors"
                )
            return several_outputs(op, output, inputs), saved
        if isinstance(output, tuple | list):  # np.asarray would stack it: an output of the wrong shape, silently
            raise tuple_output_error(op, output)
        output = np.asarray(output)
    for x in inputs:
        if output is x:
            return output.view(), saved
    return output, saved


def forward_error(op: OpDef, inputs: Sequence[Any], exc: Exception) -> OpUsageError:
    """The error for a forward (or its ``forward_out``) that raised ``exc``: the op and what it was given."""
    named = zip(op.input_names(len(inputs)), inputs, strict=True)
    shapes = ", ".join(f"{n}: {describe_array(x)}" for n, x in named) or "no inputs"
    return OpUsageError(f"{op.describe()}: forward failed on {shapes}: {exc}")


def several_outputs(op: OpDef, output: Any, inputs: Sequence[Any]) -> tuple[np.ndarray, ...]:
    """The outputs of an op that declares several: a tuple of that many arrays, each a fresh array object (an op
    may return an input, or one array twice, and the engines key gradients by identity)."""
    if not isinstance(output, tuple | list) or not op.accepts_outputs(len(output)):
        raise OpContractError(
            f"{op.describe()}: forward returned {describe_array(output)}"
            f"{f' of {len(output)}' if isinstance(output, tuple | list) else ''}; it declares outputs {op.outputs} "
            f"and must return a tuple of {len(op.outputs)} arrays"
        )
    arrays: list[np.ndarray] = []
    for value in output:
        array = np.asarray(value)
        if any(array is x for x in (*inputs, *arrays)):
            array = array.view()
        arrays.append(array)
    return tuple(arrays)


def complex_error(op: OpDef, inputs: Sequence[Any]) -> OpUsageError:
    """The error for a recorded op whose output is complex (``t * 1j``, ``np.sqrt(t + 0j)``): opreg's derivatives
    are of real functions, and a complex output would be differentiated as if its imaginary part did not exist."""
    named = zip(op.input_names(len(inputs)), inputs, strict=True)
    shapes = ", ".join(f"{n}: {describe_array(x)}" for n, x in named)
    return OpUsageError(
        f"{op.describe()} on {shapes} gives a complex result: opreg differentiates real numbers only (complex "
        "numbers are not supported yet); keep the real and imaginary parts as two real arrays"
    )


def arity_error(op: OpDef, what: str, got: int) -> OpUsageError:
    if op.variadic:
        return OpUsageError(f"{op.describe()} takes {len(op.inputs) - 1} or more {what} {op.signature()}, got {got}")
    return OpUsageError(f"{op.describe()} takes {len(op.inputs)} {what} {op.inputs}, got {got}")


def input_gradients(
    op: OpDef,
    grad_output: Any,
    inputs: Sequence[Any],
    output: Any,
    attributes: Mapping[str, Any],
    needed: Sequence[Any] | None = None,
    saved: Any = None,
    observers: Sequence[Any] = (),
    recorded: bool = False,
) -> list[Any]:
    """Each input's gradient from ``op.backward``, fitted to the input's shape and dtype; ``None`` for none.

    ``None`` stands for an input that is not differentiable, that backward gave no gradient, or whose gradient
    nobody will read: ``needed[i] is None``. ``recorded`` means backward runs on Tensors and its result will be
    differentiated again (``create_graph``): it must then be built from registered ops, or this raises
    :class:`NotComposableError` naming the op; ``saved`` is then ``None`` (a saved array is a constant, and the
    derivative through it would be lost), so that a backward asking for it recomputes from the inputs.
    """
    try:  # costs nothing until something raises (Python 3.11's exception tables)
        if observers or recorded:
            grads = _call_backward(op, grad_output, inputs, output, attributes, needed, saved, observers, recorded)
        elif op.simple_backward:
            grads = op.backward(grad_output, *inputs)
        else:  # matmul's needs_grad, a loss's saved: what the backward asks for
            grads = op.backward(grad_output, *inputs, **backward_keywords(op, attributes, output, needed, saved))
    except Exception as exc:
        _raise_from_backward(op, exc, grad_output, inputs)
    if (type(grads) is not tuple and type(grads) is not list) or len(grads) != len(inputs):
        raise gradient_count_error(op, grads)  # an array's rows would pass for gradients: refused by type
    fitted = list(grads)
    differentiable = op.differentiable
    for position, x in enumerate(inputs):
        grad = fitted[position]
        if grad is None:
            continue
        if not differentiable[position] or (needed is not None and needed[position] is None):
            fitted[position] = None
        elif recorded:
            fitted[position] = _fit_recorded(op, position, grad, x)
        elif type(grad) is not np.ndarray or grad.shape != x.shape or grad.dtype != x.dtype:
            # NumPy scalars (0-d arithmetic gives them) become 0-d arrays too
            fitted[position] = _fit(op, position, grad, x)
    return fitted


def _call_backward(
    op: OpDef,
    grad_output: Any,
    inputs: Sequence[Any],
    output: Any,
    attributes: Mapping[str, Any],
    needed: Sequence[Any] | None,
    saved: Any,
    observers: Sequence[Any],
    recorded: bool,
) -> Sequence[Any]:
    keywords = backward_keywords(op, attributes, output, needed, None if recorded else saved)

    def call() -> Sequence[Any]:
        return op.backward(grad_output, *inputs, **keywords)

    try:
        if observers:
            return observe.backward(observers, op, call, grad_output, inputs, output, needed)
        return call()
    except (OpContractError, NotComposableError):  # checking mode's findings, or a backward further down
        raise
    except Exception as exc:
        if not recorded or (isinstance(exc, OpregError) and not isinstance(exc, OpUsageError)):
            raise
        raise not_composable(op, f"on Tensors it raised {type(exc).__name__}: {exc}") from exc


def backward_error(op: OpDef, exc: Exception, grad_output: Any, inputs: Sequence[Any]) -> BackwardError:
    """The error for a backward that raised ``exc``: the op, what it was given, and the state backward left (the
    backward pass applies gradients only once every op's backward has returned, :mod:`opreg.backprop`)."""
    given = ", ".join(
        f"{name}: {describe_array(x)}"
        for name, x in zip(("g", *op.input_names(len(inputs))), (grad_output, *inputs), strict=False)
    )
    return BackwardError(
        f"{op.describe()}: backward raised {type(exc).__name__}: {exc}, given {given}. No gradient was applied: the "
        "gradients_to_update arrays and every .grad are as they were before backward() (those given to "
        "backward(zero_grad=...) are zeroed). Once the op is fixed, "
        "call zero_grad() and record the step again (Tensors: run the forward again)"
    )


def backward_keywords(
    op: OpDef, attributes: Mapping[str, Any], output: Any, needed: Sequence[Any] | None = None, saved: Any = None
) -> dict[str, Any]:
    """What backward asks for: the attributes it names, and ``output=``, ``needs_grad=``, ``saved=`` if it names
    them. ``output`` is the op's output: an array, or its Tensor when backward is recorded (``create_graph``).

    ``needs_grad[i]`` is False where ``needed[i]`` is ``None`` (a constant the caller drops), True everywhere when
    ``needed`` is ``None`` (every gradient is wanted).
    """
    keywords = {name: attributes[name] for name in op.backward_attributes}
    wants = op.wants
    if "output" in wants:
        keywords["output"] = output
    if "needs_grad" in wants:
        keywords["needs_grad"] = (
            op.all_needed if needed is None and not op.variadic else tuple(x is not None for x in needed or ())
        )
    if "saved" in wants:
        keywords["saved"] = saved
    return keywords


def backward_out_keywords(
    op: OpDef, attributes: Mapping[str, Any], output: Any, outs: Sequence[np.ndarray | None]
) -> dict[str, Any]:
    """The keywords ``op.backward_out`` is called with: what its backward asks for (the attributes it names,
    ``output=``, ``needs_grad=``: True where ``outs`` has an array), never ``saved``."""
    keywords = backward_keywords(op, attributes, output, outs)
    keywords.pop("saved", None)
    return keywords


def gradients_into(
    op: OpDef,
    outs: tuple[np.ndarray | None, ...],
    grad_output: Any,
    inputs: Sequence[Any],
    output: Any,
    attributes: Mapping[str, Any],
) -> None:
    """The gradients of the inputs ``outs`` has an array for written straight into those arrays by the op's
    ``backward_out`` (:mod:`opreg.outforms`: backward's values, fitted, bit for bit), where a backward pass writes a
    weight's gradient into its zeroed ``dW``; what it raises, raised as :func:`input_gradients` raises it."""
    assert op.backward_out is not None
    try:
        op.backward_out(outs, grad_output, *inputs, **backward_out_keywords(op, attributes, output, outs))
    except Exception as exc:
        _raise_from_backward(op, exc, grad_output, inputs)


def _raise_from_backward(op: OpDef, exc: Exception, grad_output: Any, inputs: Sequence[Any]) -> NoReturn:
    """What a backward that raised ``exc`` raises: checking and anomaly modes' findings and
    :class:`NotComposableError` as they are (each names this op already); anything else, a registered op it misused
    included (which names only itself), as the :func:`backward_error` naming this op."""
    if isinstance(exc, OpregError) and (not isinstance(exc, OpUsageError) or isinstance(exc, NotComposableError)):
        raise exc
    raise backward_error(op, exc, grad_output, inputs) from exc


def not_composable(op: OpDef, why: str) -> NotComposableError:
    return NotComposableError(
        f"{op.describe()}: create_graph=True differentiates this op's backward, and it is not built from registered "
        f"ops ({why}); write it with opreg.numpy functions and operators, as the built-in ops do (CONTRIBUTING.md)"
    )


def _fit(op: OpDef, position: int, grad: Any, x: np.ndarray) -> np.ndarray:
    """Fit a gradient to its input (:func:`opreg.fit.fit_gradient`), or raise naming the op, input and shapes."""
    if not isinstance(grad, np.ndarray | np.generic | float | int):
        raise gradient_type_error(op, position, grad)
    fitted = fit_gradient(np.asarray(grad), x)
    if fitted is None:
        raise gradient_shape_error(op, position, np.shape(grad), x.shape)
    return fitted


def _fit_recorded(op: OpDef, position: int, grad: Any, x: Any) -> Any:
    """A recorded gradient summed to its input's shape, on Tensors; a plain array means backward left the graph."""
    if isinstance(grad, np.ndarray | np.generic | float | int):
        raise not_composable(op, f"it returned a plain {type(grad).__name__} for {op.describe_input(position)}")
    summed = sum_to_shape(grad, x.shape)
    if summed is None:
        raise gradient_shape_error(op, position, grad.shape, x.shape)
    return summed
