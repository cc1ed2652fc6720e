"""The forms of an op that write into given arrays (``register(forward_out=, backward_out=)``), and their check.

A captured step's replay runs each op into buffers planned once and reused every step; an op that declares these
forms is run into them, one that does not is run as in eager mode, with an allocation where it runs. An eager
tape step runs them for large arrays: into the memory of the last step's (:mod:`opreg.reuse`), and a large
weight's gradient straight into the ``dW`` that ``backward(zero_grad=...)`` zeroes
(:func:`opreg.landing.written_in_place`). The composable ``forward`` and ``backward`` stay the
definition, and these are faster spellings of the same numbers. The contract, for an op with one output whose
forward returns it alone (no ``saved``):

- ``forward_out(out, *inputs, **attributes) -> None`` writes ``forward(*inputs, **attributes)`` into ``out``, an
  array of the output's shape and dtype that aliases no input, on inputs forward accepts.
- ``backward_out(outs, g, *inputs, **keywords) -> None``: ``outs`` holds one entry per input, an array of the
  input's shape and gradient dtype (:func:`opreg.fit.gradient_dtype`) or ``None`` where that gradient is not
  wanted (a non-differentiable input, or one nobody reads); ``keywords``
  (:func:`opreg.calls.backward_out_keywords`) are what the op's backward asks for, except ``saved``. Each wanted
  entry gets what the engine would get from backward: its gradient fitted to the input
  (:func:`opreg.fit.fit_into`), zeros where backward returns ``None``.
  The arrays of ``outs`` alias no input, no other entry, neither ``g`` nor ``output`` (a backward_out may write
  one before it has read the others: relu's fills zeros first). Plain NumPy; it is never differentiated again.

Both must give the same values bit for bit (the same NumPy calls in the same order, with ``out=``), so a replayed
step equals the eager one exactly. :func:`check_out_forms`, run by :func:`opreg.opcheck.check_op`, holds them to it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from opreg.calls import backward_out_keywords, input_gradients, run_forward
from opreg.contract import check_unchanged, describe_array
from opreg.errors import OpContractError
from opreg.fit import gradient_dtype
from opreg.opdef import OpDef

__all__ = ["bit_differences", "check_out_forms"]


def check_out_forms(op: OpDef, inputs: Sequence[np.ndarray], attributes: Mapping[str, Any], seed: int = 0) -> str:
    """Run the op's out forms on ``inputs`` (and on them in float32) into arrays filled with NaN, and raise
    :class:`OpContractError` unless each writes, bit for bit, what ``forward`` or ``backward`` (fitted) gives:
    naming the form, the input, the first differing index and both values there. Returns what was checked."""
    rng = np.random.default_rng(seed)
    # float32: a Python or NumPy scalar that promotes shows there; and arrays in Fortran order, as a caller's dW
    # may be laid out (a form must not assume a C-contiguous out)
    orders: tuple[tuple[type, Literal["C", "F"]], ...] = ((np.float64, "C"), (np.float32, "F"))
    for dtype, order in orders:
        arrays = [x.astype(dtype) if x.dtype.kind == "f" else x for x in inputs]
        if op.forward_out is not None:
            _check_forward_out(op, arrays, attributes, order)
        if op.backward_out is not None:
            _check_backward_out(op, arrays, attributes, rng, order)
    forms = " and ".join(f for f in ("forward_out", "backward_out") if getattr(op, f) is not None)
    return f"{forms}: bit for bit as forward and backward, every element written (float64; float32, Fortran order)"


def _check_forward_out(
    op: OpDef, inputs: Sequence[np.ndarray], attributes: Mapping[str, Any], order: Literal["C", "F"]
) -> None:
    assert op.forward_out is not None
    expected = run_forward(op, inputs, attributes)[0]
    out = np.full(expected.shape, np.nan, expected.dtype, order=order)
    names = [f"forward_out: {op.describe_input(i)}" for i in range(len(inputs))]
    _call(op, "forward_out", op.forward_out, (out, *inputs), attributes, inputs, names)
    _compare(op, "forward_out", "forward", "the output", out, expected)


def _check_backward_out(
    op: OpDef,
    inputs: Sequence[np.ndarray],
    attributes: Mapping[str, Any],
    rng: np.random.Generator,
    order: Literal["C", "F"],
) -> None:
    """Every differentiable input's gradient wanted, then (with several) each alone: a backward_out that reads
    ``outs`` or ``needs_grad`` wrongly shows in one of them."""
    assert op.backward_out is not None
    output, saved = run_forward(op, inputs, attributes)
    g = rng.standard_normal(output.shape).astype(output.dtype)
    positions = [i for i, d in enumerate(op.differentiable_for(len(inputs))) if d]
    selections = [positions, *([p] for p in positions)] if len(positions) > 1 else [positions]
    for wanted in selections:
        needed = [x if i in wanted else None for i, x in enumerate(inputs)]
        expected = input_gradients(op, g, inputs, output, attributes, needed=needed, saved=saved)
        outs = tuple(
            np.full(x.shape, np.nan, gradient_dtype(x), order=order) if i in wanted else None
            for i, x in enumerate(inputs)
        )
        keywords = backward_out_keywords(op, attributes, output, outs)
        names = ["backward_out: g", *(f"backward_out: {op.describe_input(i)}" for i in range(len(inputs)))]
        _call(op, "backward_out", op.backward_out, (outs, g, *inputs), keywords, [g, *inputs], names)
        for i in wanted:
            want = expected[i]
            reference = np.zeros_like(outs[i]) if want is None else want
            _compare(op, "backward_out", "backward", f"the gradient of {op.describe_input(i)}", outs[i], reference)


def _call(
    op: OpDef,
    form: str,
    function: Callable[..., Any],
    args: Sequence[Any],
    keywords: Mapping[str, Any],
    arrays: Sequence[np.ndarray],
    names: Sequence[str],
) -> None:
    """``function(*args, **keywords)``, which must leave ``arrays`` as they were; what it raises names the op and
    the form."""
    try:
        check_unchanged(op, lambda: function(*args, **keywords), arrays, names)
    except OpContractError:
        raise
    except Exception as exc:
        raise OpContractError(f"{op.describe()}: {form} raised {type(exc).__name__}: {exc}") from exc


def bit_differences(got: Any, want: np.ndarray) -> np.ndarray:
    """Where ``got`` is not ``want`` bit for bit: unequal values, a NaN on one side only, zeros of other signs (the
    real parts', for complex values). Both of one shape."""
    if want.dtype.kind not in "fc":
        return np.asarray(got != want)
    nan = np.isnan(want)
    same = (got == want) & (np.signbit(np.real(got)) == np.signbit(np.real(want))) | (nan & np.isnan(got))
    return np.asarray(~same)


def _compare(op: OpDef, form: str, reference: str, what: str, got: Any, want: np.ndarray) -> None:
    """Raise unless ``got`` is ``want`` bit for bit: equal values, NaN where it has NaN, zeros of the same sign."""
    differs = bit_differences(got, want)
    if not differs.any():
        return
    index = tuple(int(i) for i in np.argwhere(differs)[0])
    value, expected = got[index], want[index]
    left = " (left unwritten: the array was filled with NaN)" if np.isnan(value) else ""
    raise OpContractError(
        f"{op.describe()}: {form} differs from {reference} in {what} ({describe_array(want)}): at index {index} "
        f"{form} wrote {value!r}{left}, {reference} gives {expected!r}; it must write {reference}'s values bit for bit "
        "(the same NumPy calls in the same order, with out=; CONTRIBUTING.md, 'Forms that write into given arrays')"
    )
