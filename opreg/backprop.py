"""The one backward pass: both front ends, the tape and the Tensor graph, walk their gradients back through this.

A front end hands over its records last first (the tape's list is already a topological order; the Tensor graph
orders its nodes), each paired with the object its gradient is keyed by, and a dict seeded with the gradient of
the root. The pass calls each op's backward (:func:`opreg.calls.input_gradients`), and sends every input gradient
where it lands: into the caller's array where the record names one (the tape's ``dW``), else into the dict,
accumulated by the input's key. What is left in the dict afterwards, the front end hands out: the
``GradientBuffer``, a leaf's ``.grad``, what ``opreg.grad`` returns.

Nothing lands in a caller's array until every backward has returned, so a backward that raises leaves each ``dW``
as it was, never one updated and the next not (:class:`opreg.BackwardError` says so); the front ends hand out the
dict only after the pass, too. The one exception is a large ``dW`` the caller has the pass zero
(``backward(zero_grad=...)``): its first gradient is written into it as the op's backward computes it, which spares
a copy of every weight's gradient; if a backward raises, such arrays are left zeroed, as asked. Landing takes the
array's lock (:mod:`opreg.landing`): threads may share a ``dW``.

A record is anything with ``op``, ``datas`` (the input arrays), ``output_data``, ``attributes``, ``saved``,
``observers``, ``sources`` (per input, the object its gradient is keyed by, ``None`` for one nobody reads) and
``targets`` (``None``, or per input an array that receives its gradient in place); ``number`` and ``fingerprints``
are what :mod:`opreg.versions` checks before the pass.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Container, Iterable, Sequence
from typing import Any, Protocol, TypeVar

import numpy as np

from opreg import capture
from opreg.calls import gradients_into, input_gradients
from opreg.errors import OpUsageError
from opreg.fit import gradient_dtype
from opreg.landing import array_lock, land
from opreg.opdef import OpDef
from opreg.reuse import REUSED_FROM, Spares


class Record(Protocol):
    # Read-only: a plain attribute (Node) and a property (Operation.datas) both provide one.
    @property
    def op(self) -> OpDef: ...
    @property
    def datas(self) -> Any: ...
    @property
    def output_data(self) -> Any: ...
    @property
    def attributes(self) -> Any: ...
    @property
    def saved(self) -> Any: ...
    @property
    def observers(self) -> Any: ...
    @property
    def sources(self) -> Any: ...
    @property
    def targets(self) -> Any: ...
    @property
    def number(self) -> int: ...
    @property
    def fingerprints(self) -> tuple[int, ...] | None: ...


#: The front end's kind of record: ``graph_inputs`` is given the records ``records`` holds.
R = TypeVar("R", bound=Record)


def backpropagate(
    records: Iterable[tuple[Any, R]],
    grads: dict[int, Any],
    *,
    keep: bool | Container[int] = False,
    graph_inputs: Callable[[R], list[Any]] | None = None,
    zeroed: Sequence[np.ndarray] = (),
    written: dict[int, np.ndarray] | None = None,
    spares: Spares | None = None,
) -> dict[int, Any]:
    """Walk ``records`` (``(output, record)`` pairs, last recorded first), starting from the gradients in
    ``grads`` (keyed by ``id`` of the object), and return ``grads`` holding what reached the inputs.

    ``keep`` keeps every output's gradient in ``grads`` after use (``True``) or those whose keys it holds;
    others are dropped once passed on, so memory peaks lower. With ``graph_inputs`` (``create_graph``), each
    backward runs on the Tensors it returns for a record and on ``output`` itself, so it is recorded. ``zeroed``
    arrays are zeroed as the gradients land (:func:`opreg.landing.land`); those of them in ``written``
    (:func:`opreg.landing.written_in_place`) get their first gradient written as it is computed, by an op whose
    backward computes only the gradients asked for (``needs_grad``) and that has a ``backward_out``. If a backward
    raises, no gradient lands, and the ``zeroed`` arrays are zeroed (a write may have reached one).

    ``spares`` (a tape's, or the Tensor front end's: :mod:`opreg.reuse`): large gradients that an op with a
    ``backward_out`` computes are written into spare arrays of the input's shape and gradient dtype, rather than
    into memory of their own.
    """
    keep_all = keep is True
    kept: Container[int] = () if isinstance(keep, bool) else keep
    landings: list[tuple[Any, Any]] = []  # (target, gradient): applied once every backward has returned
    grads_in: list[Any] | None  # None between records (see the end of the loop)
    if capture.active:
        capture.seed(grads)
    done: list[np.ndarray] = []  # the zeroed arrays whose first gradient was written as it was computed
    try:
        for output, record in records:
            key = id(output)
            grad_output = grads.get(key) if keep_all or key in kept else grads.pop(key, None)
            if grad_output is None:  # the output does not reach the root, or the op has several (output is their tuple)
                if not record.op.multi:
                    continue
                grad_output = gather(output, record, grads, keep_all, kept)
                if grad_output is None:
                    continue
            sources = record.sources
            if graph_inputs is None:
                outs = None
                first = len(done)  # done[first:]: the zeroed arrays this record's outs are (taken by _outs)
                if (written or spares is not None) and record.op.backward_out is not None and not record.observers:
                    outs = _outs(record, written, done, spares)
                targets_written = done[first:]
                needed = sources if outs is None else _write_into(record, outs, grad_output, targets_written)
                grads_in = (
                    input_gradients(
                        record.op,
                        grad_output,
                        record.datas,
                        record.output_data,
                        record.attributes,
                        needed,
                        record.saved,
                        record.observers,
                    )
                    if needed is not None
                    else [None] * len(sources)
                )
                if outs is not None:  # the gradients written into spare arrays go on as computed ones do
                    for position, out in enumerate(outs):
                        if out is not None and not any(out is each for each in targets_written):
                            grads_in[position] = out
                if capture.active:
                    capture.backward(
                        record.op, grad_output, record.datas, record.output_data, record.attributes, sources,
                        record.saved, grads_in,
                    )  # fmt: skip
            else:
                if capture.active:
                    capture.refuse("it records a backward pass (create_graph: second derivatives)")
                grads_in = input_gradients(
                    record.op, grad_output, graph_inputs(record), output, record.attributes, sources, None,
                    record.observers, recorded=True,
                )  # fmt: skip
            targets = record.targets
            if targets is None:  # every gradient goes to the dict (a Node's always do)
                # strict=False: input_gradients checked the count, and strict costs on every op
                for source, grad in zip(sources, grads_in, strict=False):
                    if grad is not None:
                        current = grads.get(id(source))
                        grads[id(source)] = grad if current is None else total(current, grad)
                        if capture.active and current is not None:
                            capture.total(total, grads[id(source)], current, grad)
            else:
                for source, grad, target in zip(sources, grads_in, targets, strict=False):
                    if grad is None:
                        continue
                    if target is not None:  # the caller's array (dW), which receives the gradient in place, at the end
                        landings.append((target, grad))
                        continue
                    current = grads.get(id(source))
                    grads[id(source)] = grad if current is None else total(current, grad)
                    if capture.active and current is not None:
                        capture.total(total, grads[id(source)], current, grad)
            grads_in = grad = None  # so that the gradients count as the dict's alone (a leaf's .grad may take them)
    except BaseException:  # nothing lands; what was to be zeroed is, written in place or not
        if zeroed:
            land([], zeroed)
        raise
    if done:  # written already: a later gradient reaching one adds to it
        zeroed = [array for array in zeroed if not any(array is each for each in done)]
    if capture.active:
        zeroed = tuple(zeroed)
        capture.landings(land, landings, zeroed)
    if landings or zeroed:  # a Tensor's backward has neither
        land(landings, zeroed)
        if capture.active:
            capture.landed(landings, zeroed)
    return grads


def _outs(
    record: Record, written: dict[int, np.ndarray] | None, done: list[np.ndarray], spares: Spares | None
) -> list[np.ndarray | None] | None:
    """Where ``record``'s op (which has a ``backward_out``) is to write its input gradients, or ``None`` for its
    backward to compute them all: per input, the zeroed target in ``written`` (each taken out of it into ``done``:
    the first gradient to reach it), a spare array for a large gradient, or ``None`` (not needed, or computed by
    backward).

    An op whose backward computes every gradient whatever is asked (no ``needs_grad``) either writes every gradient
    it must give or none, so that no gradient is computed twice: small ones, if it writes any, into new arrays."""
    op, targets, sources, datas = record.op, record.targets, record.sources, record.datas
    differentiable = op.differentiable
    outs: list[np.ndarray | None] | None = None
    for position, source in enumerate(sources):
        if source is None or not differentiable[position]:  # a label's: no gradient at all, not a spare's garbage
            continue
        target = None if targets is None else targets[position]
        x = datas[position]
        dtype = gradient_dtype(x)
        if target is not None and written and id(target) in written and target.dtype == dtype:
            outs = outs or [None] * len(sources)
            outs[position] = written.pop(id(target))
            done.append(target)  # written, in part if the form raises: zeroed again with the rest
        elif spares is not None and x.size * dtype.itemsize >= REUSED_FROM:
            outs = outs or [None] * len(sources)
            outs[position] = spares.take(x.shape, dtype)
    if outs is None or "needs_grad" in op.wants:
        return outs
    for position, source in enumerate(sources):
        if source is not None and outs[position] is None and differentiable[position]:
            x = datas[position]
            outs[position] = np.empty(x.shape, gradient_dtype(x))
    return outs


def _write_into(
    record: Record, outs: list[np.ndarray | None], grad_output: Any, targets: list[np.ndarray]
) -> Sequence[Any] | None:
    """Write the gradients of ``record``'s inputs that ``outs`` has an array for with the op's ``backward_out``,
    the caller's zeroed arrays among them (``targets``) under their locks; return what the op's backward must
    still compute (``record.sources`` with those inputs dropped; ``None`` if nothing)."""
    locks = sorted({id(lock): lock for lock in map(array_lock, targets)}.items())  # one order: no deadlock
    for _, lock in locks:
        lock.acquire()
    try:
        gradients_into(record.op, tuple(outs), grad_output, record.datas, record.output_data, record.attributes)
    finally:
        for _, lock in locks:
            lock.release()
    needed = [None if out is not None else source for out, source in zip(outs, record.sources, strict=True)]
    return needed if any(source is not None for source in needed) else None


def gather(
    outputs: Any, record: Record, grads: dict[int, Any], keep_all: bool, kept: Container[int]
) -> tuple[Any, ...] | None:
    """The gradients of an op's several ``outputs`` (arrays, or Tensors sharing one node), each taken from
    ``grads``: ``None`` if none arrived (the op does not reach the root); otherwise one per output, zeros of its
    shape and gradient dtype where none arrived, and ``None`` for an output that takes no gradient (``sign``),
    whatever reached it. The op's backward runs once, with all of them: every consumer of every output comes
    later in the order the pass walks, so each gradient is complete by then."""
    arrived = []
    for each in outputs:
        key = id(each)
        arrived.append(grads.get(key) if keep_all or key in kept else grads.pop(key, None))
    flags = record.op.output_flags(len(arrived))
    if all(g is None for g, wanted in zip(arrived, flags, strict=True) if wanted):
        return None
    return tuple(
        None if not wanted else g if g is not None else np.zeros(np.shape(data), gradient_dtype(np.asarray(data)))
        for g, wanted, data in zip(arrived, flags, record.output_data, strict=True)
    )


def seed(output: np.ndarray, gradient: Any, *, name: str, misfit: str, scalar_fills: bool) -> np.ndarray:
    """The gradient a backward pass starts from, d(root)/d(output): ``gradient`` as an array of its own (the
    caller may change theirs; a leaf may keep this one), of the output's gradient dtype and shape. With
    ``scalar_fills`` a scalar stands for that value everywhere (the handout's ``backward(1)``); otherwise, and
    for any other shape, ``"{name} of shape (...) {misfit}"`` is raised."""
    dtype = gradient_dtype(output)
    value = seed_array(gradient, output.shape, dtype, scalar_fills)
    if value is None:
        raise OpUsageError(f"{name} of shape {np.shape(gradient)} {misfit}")
    if capture.active and type(gradient) is np.ndarray:  # the caller's array, which may change between steps
        capture.seeded(
            value, gradient, functools.partial(seed_array, shape=output.shape, dtype=dtype, fills=scalar_fills)
        )
    return value


def seed_array(gradient: Any, shape: tuple[int, ...], dtype: np.dtype, fills: bool) -> np.ndarray | None:
    """``gradient`` as a new array of ``dtype`` and ``shape``, a scalar standing for that value everywhere if
    ``fills``; ``None`` if it has another shape."""
    value = np.array(gradient, dtype=dtype)
    if value.shape == shape:
        return value
    if fills and value.ndim == 0:
        return np.full(shape, value, dtype=dtype)
    return None


def total(current: Any, grad: Any) -> Any:
    """Two gradients of one value added: out of place (one array may be several values' gradient), and an array
    or a Tensor (0-d + 0-d arrays give a NumPy scalar)."""
    result = current + grad
    return np.asarray(result) if isinstance(result, np.generic) else result
