"""The handout's tape engine: ``Autograd``, ``Operation`` and ``GradientBuffer``, driven by registered ops.

``Autograd`` records a linear tape of :class:`Operation` s. Each names its op by the name it was registered
under; the engine resolves that name once, when the operation is recorded, with one dict lookup. ``backward``
walks the tape in reverse and calls each op's registered backward. Arrays created inside the graph get their
gradients in the :class:`GradientBuffer`; parameters whose gradient arrays the caller owns (``dW``, ``db``) are
updated in place, as in the handout.

Differences from the handout, each for a reason:

* The buffer is keyed by array identity, not by data pointer: ``x`` and ``x.T`` share a data pointer, and
  keying by it would give them one gradient.
* Gradient slots are filled on first arrival instead of allocated as zeros, so an array used once costs no
  zero buffer and no addition.
* Any number of engines may exist at once (the handout allows one), so tests and notebooks need no teardown.
* ``Autograd(keep_gradients=False)`` keeps only what training needs: see :class:`Autograd`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from opreg import capture, gcpause, observe, recording, versions
from opreg.backprop import backpropagate, seed, total
from opreg.calls import arity_error, as_arrays, complex_error, run_forward
from opreg.contract import describe_array
from opreg.errors import EngineStateError, OpUsageError
from opreg.fit import gradient_dtype
from opreg.landing import written_in_place
from opreg.opdef import OpDef
from opreg.registry import op_table, unknown_op_error
from opreg.reuse import REUSED_FROM, Planned, Spares, forward_into, planned
from opreg.tensor import Tensor
from opreg.versions import numbers

#: ``backward``'s default ``zero_grad``: nothing to zero, told apart without looking into what a caller passes.
NOTHING: tuple[()] = ()


class Operation:
    """One recorded op: its inputs and output, where to put each input's gradient, the op's name and attributes.

    ``gradients_to_update[i]`` is ``None`` for an array tracked in the engine's buffer, or an array the caller
    owns (such as ``dW``) that receives input ``i``'s gradient in place. ``sources[i]`` is input ``i``, or
    ``None`` when nobody will read its gradient. ``saved`` is what the op's forward saved for its backward, and
    ``observers`` the checking or anomaly modes that were on when it was recorded. ``number`` orders it among
    records and in-place edits, and ``fingerprints`` are what checking mode recorded (:mod:`opreg.versions`).
    """

    __slots__ = (
        "attributes",
        "backward_operation",
        "datas",
        "fingerprints",
        "gradients_to_update",
        "inputs",
        "number",
        "observers",
        "op",
        "output",
        "output_data",
        "saved",
        "sources",
        "targets",
    )

    def __init__(
        self,
        inputs: Sequence[np.ndarray],
        output: Any,  # a tuple of arrays for an op with several outputs
        gradients_to_update: Sequence[np.ndarray | None],
        backward_operation: str,
        op: OpDef,
        attributes: Mapping[str, Any],
        sources: Sequence[np.ndarray | None] | None = None,
        saved: Any = None,
        observers: tuple[Any, ...] = (),
    ) -> None:
        self.inputs = self.datas = inputs  # datas and output_data: the names opreg.backprop reads of any record
        self.output = self.output_data = output
        self.gradients_to_update = gradients_to_update
        self.backward_operation = backward_operation
        self.op = op
        self.attributes = attributes
        self.sources = inputs if sources is None else sources
        self.targets = None if gradients_to_update is op.no_targets else gradients_to_update
        self.saved = saved
        self.observers = observers
        self.fingerprints = versions.fingerprints(op, inputs, output, observers) if observers else None
        self.number = next(numbers)
        if self.number >= gcpause.check_at:  # once in gcpause.EVERY records: is a large tape being recorded?
            gcpause.checkpoint(self.number, output)

    def __repr__(self) -> str:
        shapes = ", ".join(describe_array(x) for x in self.inputs)
        return f"Operation({self.backward_operation}: {shapes} -> {describe_array(self.output)})"


class GradientBuffer:
    """Gradients of the arrays the engine tracks itself, keyed by array identity.

    ``memory`` maps a key to the gradient accumulated so far, or ``None`` before the first one arrives. Each
    keyed array is kept alive here as long as its slot, so that its identity cannot be reused by a new array.
    """

    def __init__(self, readable: bool = True) -> None:
        self.memory: dict[int, np.ndarray | None] = {}
        self._arrays: dict[int, np.ndarray] = {}
        self.readable = readable  # False for an Autograd(keep_gradients=False), whose slots are dropped as it goes

    @staticmethod
    def get_memory_loc(np_array: np.ndarray) -> int:
        """The key of ``np_array``: its identity (the handout's data pointer would make views share a slot)."""
        return id(np_array)

    def is_in_memory(self, np_array: np.ndarray) -> bool:
        return id(np_array) in self.memory

    def add_spot(self, np_array: np.ndarray) -> None:
        """Start tracking ``np_array``; a no-op when it is tracked already."""
        key = id(np_array)
        if key not in self.memory:
            self.memory[key] = None
            self._arrays[key] = np_array

    def update_param(self, np_array: np.ndarray, gradient: np.ndarray) -> None:
        """Add ``gradient`` to ``np_array``'s slot (see :func:`opreg.calls.accumulate`)."""
        key = id(np_array)
        if key not in self.memory:
            raise KeyError(f"the {describe_array(np_array)} array is not tracked; call add_spot first")
        current = self.memory[key]
        self.memory[key] = gradient if current is None else total(current, gradient)

    def get_param(self, np_array: np.ndarray) -> np.ndarray:
        """The gradient accumulated for ``np_array``: zeros if it is tracked but no gradient reached it."""
        if not self.readable:
            raise EngineStateError(
                "this engine was made with Autograd(keep_gradients=False), which keeps no gradients but those the "
                "gradients_to_update arrays receive; use Autograd() to read other arrays' gradients"
            )
        key = id(np_array)
        if key not in self.memory:
            raise KeyError(f"the {describe_array(np_array)} array is not tracked by this buffer")
        gradient = self.memory[key]
        # A copy: one gradient array may serve several slots (add gives both inputs the same), so changing what
        # this returns must not change another array's gradient.
        return np.zeros(np_array.shape, gradient_dtype(np_array)) if gradient is None else gradient.copy()

    def clear(self) -> None:
        self.memory.clear()
        self._arrays.clear()


class Autograd:
    """Records operations on a tape and back-propagates through it with the registered ops' backwards.

    By default (``keep_gradients=True``, the handout's engine) every array that enters an op without a
    ``gradients_to_update`` array gets a gradient in :attr:`gradient_buffer`, kept until :meth:`zero_grad`: the
    inputs' and every intermediate's. ``keep_gradients=False`` keeps only what training needs, the gradients that
    ``gradients_to_update`` arrays (``dW``, ``db``) receive. The gradient of an array no recorded op produced (the
    batch) is then not computed (for an MLP that skips the first layer's input gradient, a quarter of its backward
    FLOPs), and an intermediate's gradient is dropped as soon as backward has passed it on, so memory peaks lower.

    Between steps (:meth:`zero_grad`) the engine keeps the memory of its large arrays, and the next step writes its
    own into it (:mod:`opreg.reuse`): a steady step allocates nothing large, whatever malloc would do with it. An
    array the caller still holds (an output, a view of one) is never written.
    """

    def __init__(self, keep_gradients: bool = True) -> None:
        self.gradient_buffer = GradientBuffer(readable=keep_gradients)
        self.operation_list: list[Operation] = []
        self.keep_gradients = keep_gradients
        self._ops = op_table()
        self._backward_done = False
        self._added: dict[int, Any] = {}  # add_operation's outputs by id: an output recorded twice is refused
        self._spares = Spares()  # the large arrays this tape's steps write again (opreg.reuse)
        self._plan: list[Planned | None] = []  # per tape position, what the last step's op there made, if large
        self._large = False  # whether a step made a large array or has a large dW: until then spares cost time alone
        self._view_targets = False  # whether a gradients_to_update array of the tape is a view (dW.T, a row)

    def apply(
        self,
        name: str,
        *inputs: Any,
        gradients_to_update: Sequence[np.ndarray | None] | None = None,
        **attributes: Any,
    ) -> Any:
        """Run op ``name``'s forward on ``inputs``, record it, and return its output (an array; for an op with
        several outputs their tuple).

        Inputs that are not arrays are converted: numbers take the dtype NumPy would give them beside the array
        inputs (``2.0`` beside float32 arrays is float32), lists and the rest go through ``np.asarray``.
        ``gradients_to_update`` is as in :meth:`add_operation` (default: all ``None``). Keywords set the op's
        attributes (``engine.apply("sum", x, axis=1)``); the ones not given take their declared defaults.
        """
        try:
            op = self._ops[name]
        except (KeyError, TypeError):
            op = self._lookup(name)  # raises, saying why
        if attributes or op.attributes:
            # **attributes is a dict to the checker, and cannot be declared wider; bound, it is a read-only Mapping
            attributes = op.bind_attributes(attributes)  # type: ignore[assignment]
        for x in inputs:
            if type(x) is not np.ndarray:
                recording.refuse_tensors(op, inputs)
                inputs = as_arrays(inputs)
                break
        observers = observe.current() if observe.active else ()
        plan = self._plan  # empty until a step makes a large array (opreg.reuse)
        output = None
        if plan and not (observers or capture.active):
            output = forward_into(self._spares, plan, len(self.operation_list), op, inputs, attributes)
        if output is None:
            output, saved = run_forward(op, inputs, attributes, observers)
            # an op with a forward_out has one output, an array
            if op.forward_out is not None and output.nbytes >= REUSED_FROM and not (observers or capture.active):
                position = len(self.operation_list)
                self._large = planned(plan, position, op, inputs, attributes, output) or self._large
        else:
            saved = None
        if capture.active:
            capture.forward(op, inputs, inputs, attributes, output, saved)
        if type(output) is np.ndarray and output.dtype.kind == "c":
            raise complex_error(op, inputs)
        self._record(op, inputs, output, gradients_to_update, attributes, saved, observers)
        return output

    def add_operation(
        self,
        inputs: Sequence[np.ndarray],
        output: np.ndarray,
        gradients_to_update: Sequence[np.ndarray | None],
        backward_operation: str,
        **attributes: Any,
    ) -> None:
        """Record that ``output`` was computed from ``inputs`` by the op registered as ``backward_operation``.

        Keywords are the attributes the output was computed with, for ops that have them. For an op that saves
        values for its backward, forward runs once more here to compute them. ``output`` is checked as far as
        that costs nothing (:func:`opreg.recording.check_added`); in checking mode forward runs again and the
        values are compared.
        """
        op = self._lookup(backward_operation)
        if capture.active:
            capture.refuse(
                f"it records {op.name} with add_operation, whose output the caller computed outside opreg; record "
                "it with engine.apply, which runs the op"
            )
        recording.check_added(op, inputs, output, (self._added, self.gradient_buffer.memory))
        attributes = op.bind_attributes(attributes)  # type: ignore[assignment]  # as in apply
        observers = observe.current() if observe.active else ()
        saved = None
        if op.saves or observers:
            recomputed, saved = run_forward(op, inputs, attributes, observers)
            recording.check_recomputed(op, output, recomputed, values=bool(observers))
        self._added[id(output)] = output
        self._record(op, inputs, output, gradients_to_update, attributes, saved, observers)

    def _lookup(self, name: str) -> OpDef:
        try:
            return self._ops[name]
        except (KeyError, TypeError):
            if callable(name):
                raise OpUsageError(
                    f"backward_operation must be the name of a registered op, not {name!r}; register the function "
                    "as an op's backward in a plugin (see CONTRIBUTING.md) and pass the op's name"
                ) from None
            raise unknown_op_error(name) from None

    def _record(
        self,
        op: OpDef,
        inputs: Sequence[np.ndarray],
        output: Any,  # a tuple of arrays for an op with several outputs
        gradients_to_update: Sequence[np.ndarray | None] | None,
        attributes: Mapping[str, Any],
        saved: Any,
        observers: tuple[Any, ...],
    ) -> None:
        n = op.arity
        no_targets = op.no_targets
        if len(inputs) != n:  # a variadic op, one with several outputs (arity -1), or a wrong count
            if not op.accepts(len(inputs)):
                raise arity_error(op, "inputs", len(inputs))
            n = len(inputs)
            no_targets = (None,) * n
        if gradients_to_update is None:
            gradients_to_update = no_targets
        elif len(gradients_to_update) != n:
            raise arity_error(op, "gradients_to_update entries", len(gradients_to_update))
        memory, arrays = self.gradient_buffer.memory, self.gradient_buffer._arrays
        keep = self.keep_gradients
        sources: list[np.ndarray | None] | None = None  # None: every input, the common case, with no list built
        differentiable = op.differentiable  # a variadic op's repeats its starred input's flag (VariadicFlags)
        for position, x in enumerate(inputs):
            target = gradients_to_update[position]
            if target is None:
                if not differentiable[position]:
                    sources = sources or list(inputs)
                    sources[position] = None
                elif id(x) not in memory:  # GradientBuffer.add_spot, inlined
                    if keep:
                        memory[id(x)] = None
                        arrays[id(x)] = x
                    else:  # no recorded op produced x (outputs have their slots), and no array receives its gradient
                        sources = sources or list(inputs)
                        sources[position] = None
            elif type(target) is not np.ndarray or target.shape != getattr(x, "shape", None):
                if isinstance(target, Tensor):
                    raise recording.tensor_error(op, f"gradients_to_update[{position}]")
                raise OpUsageError(
                    f"{op.describe()}: gradients_to_update[{position}] is {describe_array(target)} but "
                    f"{op.describe_input(position)} is {describe_array(x)}; they must have one shape"
                )
            elif target.base is not None:
                self._view_targets = True
            elif target.nbytes >= REUSED_FROM:
                self._large = True
        if not keep:  # the slot that tells later ops this array is an intermediate
            if n != op.arity and op.multi:  # several outputs: a slot for each
                for each in output:
                    memory[id(each)] = None
                    arrays[id(each)] = each
            else:
                memory[id(output)] = None
                arrays[id(output)] = output
        self.operation_list.append(
            Operation(inputs, output, gradients_to_update, op.name, op, attributes, sources, saved, observers)
        )

    def backward(self, divergence: Any, *, zero_grad: Iterable[Any] = NOTHING) -> None:
        """Back-propagate ``divergence``, the gradient of the last recorded output, through the whole tape.

        ``divergence`` has the last output's shape, or is a scalar that stands for that value everywhere
        (``1.0`` for a scalar loss). Operations whose output does not reach the last output contribute nothing.

        ``zero_grad`` (gradient arrays, or tape parameters such as ``optimizer.parameters`` or
        ``model.parameters()``) zeroes their gradient arrays as the gradients land, the same values as calling
        ``optimizer.zero_grad()`` just before: the first gradient to reach each array is written into it rather
        than added to zeros, and an array none reaches is filled, which saves writing every ``dW`` twice per step.
        Written as it is, a -0.0 stays -0.0 (the bits a Tensor's ``.grad`` gets, and PyTorch's), where a fill then
        an addition would make it +0.0.
        It is an argument here, not a promise that ``zero_grad()`` could take: between ``zero_grad()`` and
        ``backward()`` the caller's code may read or add into ``dW``, and must find zeros there. A large ``dW``
        (:data:`opreg.landing.WRITTEN_FROM` elements) whose op can write its gradient (``backward_out``) gets it
        written as the op's backward computes it, with no copy. If a backward raises, no gradient lands and these
        arrays are zeroed.
        """
        zeroed = () if zero_grad is NOTHING else _gradient_arrays(zero_grad)
        if self._backward_done:
            raise EngineStateError(
                "backward() already ran over this tape; call zero_grad() before recording the next step"
            )
        if not self.operation_list:
            raise EngineStateError("backward() called before any operation was recorded")
        if versions.last_edit > self.operation_list[0].number or versions.fingerprinted:
            versions.check(self.operation_list)
        last = self.operation_list[-1]
        memory = self.gradient_buffer.memory
        if last.op.multi:
            _seed_outputs(last, divergence, memory)
        else:
            memory[id(last.output)] = seed(
                last.output,
                divergence,
                name="divergence",
                misfit=f"does not fit the last output ({last.op.describe()}, shape {last.output.shape}); pass an "
                "array of that shape or a scalar",
                scalar_fills=True,
            )
        self._backward_done = True
        eager = not (capture.active or observe.active)  # a recording, checking and anomaly modes see every call
        written = written_in_place(zeroed, self.operation_list) if zeroed and eager and not self._view_targets else None
        spares = self._spares if eager and self._large else None
        paused = gcpause.pause(len(self.operation_list))  # a large tape: no automatic collection meanwhile
        try:
            if self.keep_gradients:
                records = ((record.output, record) for record in reversed(self.operation_list))
                backpropagate(records, memory, keep=True, zeroed=zeroed, written=written, spares=spares)
            else:
                backpropagate(
                    _popping(self.operation_list, self.gradient_buffer),
                    memory,
                    zeroed=zeroed,
                    written=written,
                    spares=spares,
                )
        finally:
            if paused is not None:
                gcpause.resume(paused)

    @capture.replayed
    def zero_grad(self) -> None:
        """Forget the tape and the tracked gradients, ready for the next step (``dW``/``db`` are the caller's)."""
        self.gradient_buffer.clear()
        self.operation_list = []
        self._added = {}
        self._backward_done = False
        self._view_targets = False
        if self._large:
            self._spares.end_step()


def _gradient_arrays(zero_grad: Iterable[Any]) -> list[np.ndarray]:
    """The arrays ``backward(zero_grad=...)`` zeroes: each given array, or each tape parameter's ``.grad``; refused,
    before anything runs, is what no gradient could land in. Per step, so the usual item is looked at once, and
    everything else only once it is known to be wrong."""
    if isinstance(zero_grad, (np.ndarray, Tensor)):
        raise OpUsageError(
            f"backward(zero_grad=...) takes a list of gradient arrays or tape parameters, not one "
            f"{type(zero_grad).__name__} ({describe_array(zero_grad)}); wrap it: zero_grad=[dW]"
        )
    arrays: list[np.ndarray] = []
    for item in zero_grad:
        array = item if type(item) is np.ndarray else getattr(item, "grad", None)
        if type(array) is not np.ndarray or not array.flags.writeable or isinstance(item, Tensor):
            raise _zero_grad_error(len(arrays), item)  # every item before it was taken
        arrays.append(array)
    return arrays


def _zero_grad_error(i: int, item: Any) -> OpUsageError:
    """Why ``backward(zero_grad=...)``'s item ``i`` can take no gradient."""
    if isinstance(item, Tensor):
        return OpUsageError(
            f"backward(zero_grad=...): item {i} is a Tensor ({describe_array(item.data)}), whose .grad a tape "
            "never writes; pass the tape's gradient arrays (dW) or a tape model's parameters(), and call "
            "optimizer.zero_grad() for Tensors"
        )
    array = item if isinstance(item, np.ndarray) else getattr(item, "grad", None)
    if type(array) is not np.ndarray:
        return OpUsageError(
            f"backward(zero_grad=...): item {i} is a {type(item).__name__}, not a gradient array (dW) nor a tape "
            "parameter (what model.parameters() gives on a tape: its .grad is the array)"
        )
    return OpUsageError(
        f"backward(zero_grad=...): item {i}'s gradient array ({describe_array(array)}) is read-only, so no "
        "gradient can land in it; give the parameter a writeable one (np.zeros_like(W))"
    )


def _seed_outputs(last: Operation, divergence: Any, memory: dict[int, Any]) -> None:
    """The divergences of the last operation's several outputs: one per output, ``None`` for one that gets none
    (an output that takes no gradient must get ``None``)."""
    op = last.op
    names = op.output_names(len(last.output))
    if not isinstance(divergence, tuple | list) or len(divergence) != len(names):
        raise OpUsageError(
            f"the last output is {op.describe()}'s {len(names)} outputs {names}; pass backward() a tuple "
            "with a divergence for each (None for one that gets none), or record an op that uses the one you mean"
        )
    seeds = {}  # all checked before any lands: a refused divergence leaves the buffer as it was
    for name, output, value, wanted in zip(names, last.output, divergence, op.output_flags(len(names)), strict=True):
        if value is None:
            continue
        if not wanted:
            raise OpUsageError(f"{op.describe()}'s output {name!r} takes no gradient; pass None for it")
        seeds[id(output)] = seed(
            output,
            value,
            name=f"the divergence of {name!r}",
            misfit=f"does not fit that output ({describe_array(output)}); pass an array of its shape or a scalar",
            scalar_fills=True,
        )
    memory.update(seeds)


def _popping(operations: list[Operation], buffer: GradientBuffer) -> Iterator[tuple[np.ndarray, Operation]]:
    """The tape's operations, last first, each taken off the tape with its output's buffer slot.

    For ``keep_gradients=False``, so that backward frees as it goes what it no longer needs: once an operation is
    reached, every consumer of its output has been, and the output's gradient is complete. The pass drops the
    gradient once it has read it; this drops the output array the buffer kept alive for its key.
    """
    while operations:
        record = operations.pop()
        yield record.output, record
        buffer._arrays.pop(id(record.output), None)
