"""Forward mode through one op, and through a recorded graph: the tangent of an op's output from its inputs'.

An op's output tangent comes from its declared ``jvp`` rule where it has one; otherwise it is derived from its
backward. A backward computes ``J^T g``, linear in ``g``; so with a fresh ``u`` of the output's shape standing for
``g``, ``d/du sum_i <backward(u)_i, t_i> = J t``: the VJP of the VJP (HIPS autograd's ``make_jvp_reversemode``),
one small backward pass per op. An elementwise op of one input (``batch="elementwise"``) has a diagonal Jacobian,
its own transpose, so its backward applied to the tangent is ``J t`` at once. Recorded (nested transforms), either
needs the backward to run on Tensors (as ``create_graph`` does); one that does not is a
:class:`NotComposableError` naming the op.

:func:`push_forward` walks the nodes a function recorded, from the transform's inputs to its outputs, in the order
they were made, giving each output its tangent. ``record``: on the graph's Tensors, so that the tangents are
recorded and an enclosing transform differentiates them (``jacfwd(jacrev(f))``, ``grad`` of a ``jvp``);
otherwise on the nodes' arrays, recording nothing beyond each derived rule's own small pass.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg import versions
from opreg.calls import describe_array, input_gradients
from opreg.errors import NotComposableError, OpContractError, OpregError
from opreg.fit import gradient_dtype
from opreg.func.core import draw_floor, tracing
from opreg.func.reverse import pullback
from opreg.opdef import ELEMENTWISE, OpDef
from opreg.tensor import Node, Tensor, _topological_order


def op_tangent(
    op: OpDef,
    inputs: Sequence[Any],
    output: Any,
    attributes: Mapping[str, Any],
    tangents: Sequence[Any],
    record: bool,
) -> Any:
    """The tangent of ``op``'s output (a tuple for several outputs, ``None`` in it for an output that has none)
    at ``inputs`` (arrays, or the graph's Tensors when ``record``), given one tangent per input (``None``: zero).
    ``output`` is forward's (a tuple for several outputs)."""
    if op.jvp is not None:
        return _declared(op, inputs, output, attributes, tangents, record)
    if (
        op.batch == ELEMENTWISE
        and len(inputs) == 1
        and not op.multi
        and _array(inputs[0]).dtype == _array(output).dtype
    ):
        return _diagonal(op, inputs, output, attributes, tangents, record)
    return _derived(op, inputs, output, attributes, tangents, record)


def _diagonal(
    op: OpDef, inputs: Sequence[Any], output: Any, attributes: Mapping[str, Any], tangents: Sequence[Any], record: bool
) -> Any:
    """An elementwise op of one input has a diagonal Jacobian, which is its own transpose: ``J t = J^T t``, its
    backward given the tangent. One backward call, where deriving it takes a backward pass of its own."""
    (tangent,) = tangents
    if tangent is None:
        return None
    if record and not isinstance(tangent, Tensor):  # a backward may use g alone (abs: g * sign(x), a constant)
        tangent = Tensor(tangent)
    try:
        (result,) = input_gradients(op, tangent, inputs, output, attributes, None, recorded=record)
    except NotComposableError as exc:
        raise _not_composable(op, exc) from exc
    return result


def _declared(
    op: OpDef, inputs: Sequence[Any], output: Any, attributes: Mapping[str, Any], tangents: Sequence[Any], record: bool
) -> Any:
    """The op's ``jvp`` rule, given zeros for an input with no tangent and ``None`` for one that takes none."""
    given = tuple(
        None if not differentiable else t if t is not None else np.zeros(np.shape(x), gradient_dtype(_array(x)))
        for x, t, differentiable in zip(inputs, tangents, op.differentiable_for(len(inputs)), strict=True)
    )
    keywords = {name: output if name == "output" else attributes[name] for name in op.jvp_keywords}
    assert op.jvp is not None  # the caller chose this path for it
    try:
        result = op.jvp(given, *inputs, **keywords)
    except OpregError:
        raise
    except Exception as exc:
        shapes = ", ".join(f"{n}: {_describe(x)}" for n, x in zip(op.input_names(len(inputs)), inputs, strict=True))
        if record:
            raise NotComposableError(
                f"{op.describe()}: its jvp rule, run on Tensors to record forward mode (a transform nested in "
                f"another), raised {type(exc).__name__}: {exc}; write it with opreg.numpy functions and operators, "
                "or leave jvp= out to derive forward mode from a backward that composes"
            ) from exc
        raise OpContractError(f"{op.describe()}: its jvp rule raised {type(exc).__name__}: {exc}, on {shapes}") from exc
    if not op.multi:
        return _fit_tangent(op, result, output, "the output")
    outputs = tuple(output)
    if not isinstance(result, tuple | list) or len(result) != len(outputs):
        raise OpContractError(
            f"{op.describe()}: its jvp rule returned {_describe(result)}; it must return a tuple of "
            f"{len(outputs)} tangents, one per output (None for one that takes no gradient)"
        )
    flags = op.output_flags(len(outputs))
    names = op.output_names(len(outputs))
    return tuple(
        _fit_tangent(op, t, o, f"output {n!r}") if wanted and t is not None else None
        for t, o, wanted, n in zip(result, outputs, flags, names, strict=True)
    )


def _fit_tangent(op: OpDef, tangent: Any, output: Any, which: str) -> Any:
    """A declared rule's tangent broadcast to its output's shape (``None`` or 0 stand for zeros); another shape
    is the rule's error."""
    shape = np.shape(output)
    if tangent is None or np.shape(tangent) == shape:
        return tangent
    try:
        fits = np.broadcast_shapes(np.shape(tangent), shape) == shape
    except ValueError:
        fits = False
    if fits:
        return onp.broadcast_to(tangent, shape)
    raise OpContractError(
        f"{op.describe()}: its jvp rule returned {_describe(tangent)} for {which}, of shape {shape}; return the "
        "tangent of the output, of its shape"
    )


def _derived(
    op: OpDef, inputs: Sequence[Any], output: Any, attributes: Mapping[str, Any], tangents: Sequence[Any], record: bool
) -> Any:
    """``J t`` as the VJP of the VJP (the module's docstring): the backward run recorded on a fresh ``u`` per
    differentiable output, then one backward pass from ``sum_i <backward(u)_i, t_i>`` to the ``u`` (recorded
    whatever ``no_grad`` is around: it is how the tangent is computed, not a user's graph). ``u`` is ones, not
    zeros: a backward may skip the part of an output whose gradient is all zeros (eigh's does), and backward
    being linear in ``u``, the result does not depend on its value."""
    with tracing():
        return _vjp_of_vjp(op, inputs, output, attributes, tangents, record)


def _not_composable(op: OpDef, exc: NotComposableError) -> NotComposableError:
    cause = exc.__cause__
    why = f"on Tensors it raised {type(cause).__name__}: {cause}" if cause is not None else str(exc)
    return NotComposableError(
        f"{op.describe()} declares no jvp rule, so forward mode is computed from its backward (the VJP of the "
        f"VJP; for an elementwise op, the VJP itself), and that is not built from registered ops ({why}); declare "
        "jvp= (the output's tangent from the inputs'), or write the backward with opreg.numpy functions and "
        "operators (CONTRIBUTING.md)"
    )


def _vjp_of_vjp(
    op: OpDef, inputs: Sequence[Any], output: Any, attributes: Mapping[str, Any], tangents: Sequence[Any], record: bool
) -> Any:
    floor = draw_floor()
    outputs = tuple(output) if op.multi else (output,)
    flags = op.output_flags(len(outputs)) if op.multi else (True,)
    datas = [_array(o) for o in outputs]
    us = [
        Tensor(np.ones(d.shape, gradient_dtype(d)), requires_grad=True) if wanted else None
        for d, wanted in zip(datas, flags, strict=True)
    ]
    needed = [True if t is not None else None for t in tangents]
    try:
        grads = input_gradients(op, tuple(us) if op.multi else us[0], inputs, output, attributes, needed, recorded=True)
    except NotComposableError as exc:
        raise _not_composable(op, exc) from exc
    terms = [onp.sum(g * t) for g, t in zip(grads, tangents, strict=True) if g is not None and t is not None]
    total = functools.reduce(lambda a, b: a + b, terms) if terms else None
    found = [u for u in us if u is not None]
    if not isinstance(total, Tensor) or not total.requires_grad:  # backward(u) does not depend on u: J t is 0
        pulled: list[Any] = [None] * len(found)
    else:
        pulled = pullback([total], found, [1.0], create_graph=record, floor=floor)
    results = iter(pulled)
    tangent = [next(results) if u is not None else None for u in us]
    return tuple(tangent) if op.multi else tangent[0]


def push_forward(outputs: Sequence[Any], order: Sequence[Any], seeds: Mapping[int, Any], record: bool) -> list[Any]:
    """The tangent of each of ``outputs`` (``None`` for one that does not depend on the seeded Tensors), given
    the tangents ``seeds`` of a transform's input Tensors (by ``id``): each node of ``order`` (:func:`recorded`),
    in turn, gets its output's tangent from its inputs'."""
    tangents = dict(seeds)
    for entry in order:
        node: Node = entry._node
        several = isinstance(entry, tuple)
        made = tuple(entry) if several else (entry,)
        if any(t is not None and id(t) in seeds for t in made):  # an input's own node (lift's positive)
            continue
        given = [None if x is None else tangents.get(id(x)) for x in node.inputs]
        if all(t is None for t in given):
            continue
        if record:
            inputs: Sequence[Any] = node.graph_inputs()
            output: Any = (
                tuple(t if t is not None else Tensor(d) for t, d in zip(made, node.output_data, strict=True))
                if several
                else entry
            )
        else:
            inputs, output = node.datas, node.output_data
        tangent = op_tangent(node.op, inputs, output, node.attributes, given, record)
        for t, value in zip(made, tangent if several else (tangent,), strict=True):
            if t is not None and value is not None:
                tangents[id(t)] = value
    return [tangents.get(id(o)) if isinstance(o, Tensor) else None for o in outputs]


def recorded(outputs: Sequence[Any], floor: int) -> list[Any]:
    """The Tensors (an op's several outputs: their tuple) recorded after ``floor`` that reach ``outputs``, each
    after its inputs: what :func:`push_forward` walks, found once for any number of pushes."""
    found: dict[int, tuple[int, Any]] = {}
    for o in outputs:
        if isinstance(o, Tensor) and o._node is not None:
            for entry in _topological_order(o, floor)[1]:
                node = entry._node
                found.setdefault(id(node), (node.number, entry))
    ordered = [entry for _, entry in sorted(found.values(), key=lambda pair: pair[0])]
    if ordered and (versions.last_edit > ordered[0]._node.number or versions.fingerprinted):
        versions.check(entry._node for entry in ordered)  # an array changed in place since: its tangent would be wrong
    return ordered


def _array(x: Any) -> np.ndarray:
    return x._data if isinstance(x, Tensor) else np.asarray(x)


def _describe(x: Any) -> str:
    return describe_array(_array(x)) if isinstance(x, Tensor | np.ndarray | np.generic) else describe_array(x)
