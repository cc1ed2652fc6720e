"""``opreg.compile(step)``: a training step recorded while it runs, then replayed without eager mode's bookkeeping.

A step (forward, loss, backward, the optimizer's update) makes the same calls on arrays of the same shapes every
time, and eager mode pays for learning them again each time: a Tensor and a Node per op, a topological sort,
checks of shapes that passed last time. :mod:`opreg.capture` writes down the calls of one run as a Python function
(:attr:`CompiledStep.code` shows it: the NumPy calls of each op, into buffers kept between replays); a replay runs
that function on the new arguments: the same kernels, in the same order, so the numbers are those of the eager
step, bit for bit.

When a replay would be wrong, the step runs eagerly instead:

* **Guards.** A replay needs the arguments' structure, shapes, dtypes and ``requires_grad`` of the recording,
  the same arguments being one array (``step(x, x)``), the same Python values among them (numbers, strings, flags:
  part of the key), the same values in the variables its own code reads from its closure, module globals and
  ``self`` (numbers by value, other objects by identity: a rebound batch, an optimizer made again), grad mode, the
  training flag of each module whose flag the step read (``train()``/``eval()``: a program for each), no checking
  or anomaly mode, and no change since the recording to module attributes (``train()``/``eval()``, a new layer),
  to which array a Tensor holds, or to ``requires_grad`` (:data:`opreg.capture.epoch`). Otherwise the step is
  recorded again: one program per key, up to ``max_programs``.
* **Two runs agree.** A program is used once two consecutive eager runs recorded the same calls on the same
  objects: an array the step makes outside ops (``x / 255`` in NumPy, a mask drawn in Python) is a new object
  each run, and a replay would reuse the first. Until two runs agree the step runs eagerly, recording.
* **What a replay cannot do.** A step that reads a Tensor's value into Python (``float(loss)``, ``if loss >
  1``, ``x.item()`` on an argument), edits arrays in place outside an optimizer (its arguments, the arrays a
  first recording used, and those held in the variables it reads, are compared before and after), assigns module
  attributes, records with
  ``add_operation``, takes second derivatives, or returns a Tensor that still needs a backward pass, always runs
  eagerly; a :class:`CaptureWarning` says why, once.

A compiled function that the step calls runs as plain code while the step records, so that its ops are part of
the step's program. One replay runs at a time (a program's memory holds one run's values): another thread calling
the step meanwhile runs it eagerly.

What a replay does not run: the step's own Python between opreg calls. Python values the step reads deeper than
an attribute of a variable it reads (``config.optim.lr``), or in the functions of other modules it calls (a
counter), are frozen at recording: pass what changes as an argument. An optimizer's hyperparameters are read by
its step, which is replayed: schedulers work. A replay returns copies of the step's results; ``.grad`` arrays
and tape ``dW`` arrays are written as the eager step writes them.
"""

from __future__ import annotations

import builtins
import dis
import functools
import itertools
import sys
import threading
import types
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from opreg import capture, observe
from opreg.func.pytree import TreeSpec, tree_flatten, tree_unflatten
from opreg.outforms import bit_differences
from opreg.tensor import Node, Tensor, _grad_mode

__all__ = ["CaptureWarning", "CompiledStep", "compile"]


class CaptureWarning(UserWarning):
    """A compiled step runs eagerly, and why."""


def compile(step: Callable[..., Any], *, max_programs: int = 8) -> CompiledStep:
    """``step`` recorded on its first calls and replayed on later ones (see the module's documentation); usable
    as a decorator. The result is called as ``step`` is."""
    return CompiledStep(step, max_programs=max_programs)


class _Program:
    """One recording of the step: the generated function, and what two recordings must agree on."""

    __slots__ = (
        "buffers", "code", "constants", "copies", "epoch", "function", "held", "kinds", "outputs", "static", "verified"
    )  # fmt: skip

    def __init__(self, recorder: capture.Recorder, outputs: TreeSpec, returns: list[tuple[str, type | None]]) -> None:
        names = [name for name, _ in returns]
        self.code, buffers = recorder.source(f"({', '.join(names)}{',' if len(names) == 1 else ''})")
        self.kinds = [kind for _, kind in returns]
        self.copies = any(kind is Tensor or kind is np.ndarray for kind in self.kinds)
        self.constants = recorder.constants
        self.static = recorder.static
        self.outputs = outputs
        self.epoch = capture.epoch
        self.verified = False
        self.held: list[Any] = []
        self.buffers = buffers
        self.function: Callable[[list[Any]], tuple[Any, ...]] | None = None  # made when first replayed

    def compiled(self) -> Callable[[list[Any]], tuple[Any, ...]]:
        """The generated function, made from the code when the program is first replayed: most recordings never
        are (the first of two that agree, one made after ``train()`` or ``eval()``, a last batch of another size)."""
        namespace: dict[str, Any] = {"np": np, "asarray": np.asarray, "empty": np.empty, **self.constants}
        namespace.update(self.buffers)
        exec(self.code, namespace)
        function: Callable[[list[Any]], tuple[Any, ...]] = namespace["replay"]
        self.function = function
        return function

    def difference(self, other: _Program) -> str | None:
        """What differs between two recordings (``None``: the same calls on the same objects, and equal values
        where made from Python numbers), for the warning when they keep differing."""
        if self.code != other.code:
            return "it made different calls (another code path, or another number of ops)"
        for name, value in self.constants.items():
            if name in self.static:
                if not same_value(value, other.constants[name]):
                    return f"a value made from Python numbers changed: {_describe(value)}"
            elif value is not other.constants[name]:
                return (
                    f"it used a new {_describe(other.constants[name])} in place of the last run's: an array the "
                    "step makes outside ops (NumPy on arrays, a mask drawn in Python) is not recorded; make it with "
                    "opreg ops, or pass it as an argument"
                )
        return None

    def results(self, values: tuple[Any, ...]) -> list[Any]:
        """The replay's results as the step returned them: copies, since the next replay writes new arrays over
        nothing a caller holds."""
        if not self.copies:  # numbers, None: as they are
            return list(values)
        return [
            Tensor(value.copy()) if kind is Tensor else value.copy() if kind is np.ndarray else value
            for value, kind in zip(values, self.kinds, strict=True)
        ]


class CompiledStep:
    """A step that replays its recording when it safely can (:func:`compile`).

    ``replays``, ``eager_calls`` and ``recordings`` count what happened; ``code`` is the generated source of the
    latest program; ``reason`` says why the last call ran eagerly, if it did.
    """

    def __init__(self, step: Callable[..., Any], *, max_programs: int = 8) -> None:
        functools.update_wrapper(self, step)
        self.step = step
        self.max_programs = max_programs
        self._programs: dict[Any, _Program] = {}
        self._refused: dict[Any, tuple[str, int]] = {}  # key -> why it runs eagerly, and the epoch that holds for
        self._disagreements: dict[Any, tuple[int, int]] = {}  # key -> runs in a row that differed, at which epoch
        self.replays = self.eager_calls = self.recordings = 0
        self.reason: str | None = None
        self.code: str | None = None
        self._warned: set[str] = set()
        self._watched = _Watched(step)
        self._modes: dict[int, Any] = {}  # id -> a module whose training flag a recording read: part of the key
        self._replaying = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if capture.active and capture.recording():  # inside a step being recorded: its ops are that step's
            return self.step(*args, **kwargs)
        if kwargs or any(type(x) is not np.ndarray for x in args):
            leaves, spec = tree_flatten((args, kwargs))
        else:  # arrays only, the usual training step: no tree to walk
            leaves, spec = list(args), None
        key = self._key(leaves, spec)
        program = self._programs.get(key)
        if program is not None and program.verified and program.epoch == capture.epoch and not observe.active:
            # One replay at a time: a program's memory holds one run's values. Another thread meanwhile runs the
            # step eagerly, as it would run uncompiled.
            if not self._replaying.acquire(blocking=False):
                return self.step(*args, **kwargs)
            try:
                self.replays += 1
                self.reason = None
                function = program.function or program.compiled()
                return tree_unflatten(program.outputs, program.results(function(leaves)))
            finally:
                self._replaying.release()
        return self._eager(key, args, kwargs, leaves, spec, program)

    def _key(self, leaves: list[Any], spec: TreeSpec | None) -> tuple[Any, ...]:
        parts = self._watched.key()
        parts.append(spec)
        parts.append(_grad_mode.enabled)
        if self._modes:
            parts.extend(module.training for module in self._modes.values())
        for x in leaves:
            if type(x) is np.ndarray:
                parts.append((x.shape, x.dtype))
            elif isinstance(x, Tensor):
                parts.append((x.shape, x.dtype, x.requires_grad, x.is_leaf))
            elif _by_identity(x):
                parts.append((type(x), id(x)))
            else:
                parts.append((type(x), x))
        if len(leaves) > 1:  # one array given twice: see _aliases
            if spec is None:  # arrays only
                arrays = leaves
            else:
                arrays = [_array(x) for x in leaves if type(x) is np.ndarray or isinstance(x, Tensor)]
            if len(set(map(id, arrays))) < len(arrays):
                parts.append(_aliases(arrays))
        return tuple(parts)

    def _eager(
        self, key: Any, args: Any, kwargs: Any, leaves: list[Any], spec: TreeSpec | None, previous: _Program | None
    ) -> Any:
        self.eager_calls += 1
        refused = self._refused.get(key)
        why = refused[0] if refused is not None and refused[1] == capture.epoch else self._why_not(key)
        if why is not None:
            return self._plain(why, args, kwargs)
        watched = self._watched.values()  # as the key saw them: held by the program
        arrays = [x if type(x) is np.ndarray or isinstance(x, Tensor) else None for x in leaves]
        before = [None if x is None else np.array(_array(x), copy=True) for x in arrays]
        recorder = capture.Recorder(arrays)
        if previous is not None:  # the verifying recording: what the first one used must not change unseen
            recorder.guard(_arrays_used(previous) + _arrays_held(watched))
        capture.start(recorder)
        try:
            result = self.step(*args, **kwargs)
        finally:
            capture.stop()
        self.recordings += 1
        _check_arguments_unchanged(recorder, arrays, before)
        if recorder.guarded:
            recorder.check_guarded()
        if recorder.modes.keys() - self._modes.keys():  # the step reads these modules' modes: keyed from now on
            self._modes.update(recorder.modes)
            key = self._key(leaves, spec)
            previous = self._programs.get(key)
        out_leaves, out_spec = tree_flatten(result)
        returns = [_returned(recorder, x) for x in out_leaves]
        if recorder.problem is not None:
            self._refused[key] = (recorder.problem, capture.epoch)
            self._warn(recorder.problem)
            self.reason = recorder.problem
            return result
        program = _Program(recorder, out_spec, returns)
        # Other objects among the arguments, and watched variables, are keyed by identity: held, so that no new
        # object takes their id
        program.held = [x for x in leaves if _by_identity(x)] + watched
        difference = "it was recorded once" if previous is None else previous.difference(program)
        if previous is not None and difference is None:
            previous.epoch = program.epoch
            previous.verified = True
            program = previous
        elif previous is not None:
            count, epoch = self._disagreements.get(key, (0, capture.epoch))
            count = count + 1 if epoch == capture.epoch else 1
            self._disagreements[key] = (count, capture.epoch)
            if count >= 3:
                why = f"three runs of the step in a row did not record the same thing: {difference}"
                self._refused[key] = (why, capture.epoch)
                self._warn(why)
        self._programs[key] = program
        self.code = program.code
        self.reason = (
            "checking or anomaly mode is on, which watches every op call: the step is recorded (and what cannot be "
            "replayed is reported), never replayed"
            if observe.active
            else "recording: a program is replayed once two runs of the step agree"
        )
        return result

    def _why_not(self, key: Any) -> str | None:
        if key not in self._programs and len(self._programs) >= self.max_programs:
            return (
                f"the step was recorded for {self.max_programs} different argument shapes or values, or arrays "
                "it reads from its closure or globals, already (max_programs): pass the batch as an argument, pad "
                "the batches to one shape, or pass compile(..., max_programs=more)"
            )
        return None

    def _plain(self, why: str, args: Any, kwargs: Any) -> Any:
        self.reason = why
        return self.step(*args, **kwargs)

    def _warn(self, why: str) -> None:
        if why not in self._warned:
            self._warned.add(why)
            name = getattr(self.step, "__qualname__", repr(self.step))
            warnings.warn(f"opreg.compile({name}) runs the step eagerly: {why}", CaptureWarning, stacklevel=4)


def _array(x: np.ndarray | Tensor) -> np.ndarray:
    return x._data if isinstance(x, Tensor) else x


def _check_arguments_unchanged(
    recorder: capture.Recorder, arrays: list[np.ndarray | Tensor | None], before: list[np.ndarray | None]
) -> None:
    """Refuse the recording if the step changed an argument's values in place (``x /= 255`` in NumPy): no op saw
    it, so a replay would use the values undivided, and leave the caller's array as it was."""
    for i, (x, old) in enumerate(zip(arrays, before, strict=True)):
        if x is not None and old is not None:
            now = _array(x)
            if now.shape != old.shape or bit_differences(now, old).any():
                recorder.refuse(
                    f"it changes its argument {i} in place ({_describe(now)}), which no op records and a replay "
                    "would not do: compute on a new array (x = x / 255), or do it before the call"
                )


def _arrays_used(program: _Program) -> list[np.ndarray]:
    """The arrays from outside the step that ``program`` reads by identity: a ``dW``, a label array in a closure, a
    parameter Tensor's values (not the constants it made from Python numbers, which nothing else can reach)."""
    return _arrays_in(value for name, value in program.constants.items() if name not in program.static)


def _arrays_held(values: list[Any]) -> list[np.ndarray]:
    """The arrays in the variables the step reads (:class:`_Watched`), and one level into a list, tuple or dict
    there, a Tensor's values included: what a step may keep for its caller with NumPy (a running mean, a history),
    which no op reads, and a replay would not write."""
    return _arrays_in(
        x
        for value in values
        for x in (value.values() if isinstance(value, dict) else value if isinstance(value, list | tuple) else (value,))
    )


def _arrays_in(values: Iterable[Any]) -> list[np.ndarray]:
    """The arrays among ``values``: each array, and each Tensor's array."""
    return [
        x._data if isinstance(x, Tensor) else x
        for x in values
        if type(x) is np.ndarray or (isinstance(x, Tensor) and type(x._data) is np.ndarray)
    ]


def _aliases(arrays: list[np.ndarray]) -> tuple[int, ...]:
    """For each array argument, the position of the first that is the same array: ``step(x, x)`` names one array
    twice, and its program reads one name for both, so it is keyed apart from ``step(a, b)``."""
    first: dict[int, int] = {}
    return tuple(first.setdefault(id(x), i) for i, x in enumerate(arrays))


def _by_identity(x: Any) -> bool:
    """Whether an argument is keyed by its identity (not an array, Tensor, number, string or None)."""
    return not (x is None or type(x) in (bool, int, float, str, np.ndarray) or isinstance(x, Tensor))


class _Watched:
    """What the step's own code reads from its closure, its module's globals and, for a bound method, its instance's
    attributes, which a replay would freeze: a change re-records rather than replaying the frozen value (another
    number, another batch array the loop rebinds, another optimizer or loss function made in its place,
    ``trainer.optimizer = ...``). Globals are the names the step's code loads as globals (its nested functions'
    too, and the functions of its own module it calls: a helper that reads the batch), but modules, and builtins
    not shadowed; one unbound when ``compile`` is called (assigned later) is watched too. An instance's attributes
    are those its code reads from ``self`` (``self.optimizer.step()``), looked up in the instance's ``__dict__``
    (methods are the class's). So are the attributes the step's own code reads from any of these (``cfg.weight``,
    ``self.cfg.weight``), in that object's ``__dict__``. Values read deeper down (``cfg.optim.lr``) or in other
    modules' functions are not watched: pass them as arguments."""

    __slots__ = ("attributes", "cells", "chains", "instance", "names", "namespace")

    def __init__(self, step: Callable[..., Any]) -> None:
        while isinstance(step, functools.partial):  # its own arguments are fixed: watch what its function reads
            step = step.func
        if not isinstance(step, types.FunctionType | types.MethodType | types.BuiltinFunctionType):
            step = type(step).__call__.__get__(step)  # an object called as a function: its __call__ reads self
        code = getattr(step, "__code__", None)
        self.cells: tuple[Any, ...] = (getattr(step, "__closure__", None) or ()) if code is not None else ()
        self.namespace: dict[str, Any] = getattr(step, "__globals__", {})
        self.names: list[str] = []
        for name in sorted(_globals_read(code, self.namespace)) if code is not None else ():
            value = self.namespace.get(name, _UNBOUND)
            if not ((value is _UNBOUND and name in vars(builtins)) or isinstance(value, types.ModuleType)):
                self.names.append(name)
        owner = getattr(step, "__self__", None)
        self.instance: dict[str, Any] = getattr(owner, "__dict__", {}) if isinstance(step, types.MethodType) else {}
        self.attributes = sorted(_attributes_of_self(code)) if self.instance and code is not None else []
        self.chains = _chains(code, self.cells, self.names, self.attributes) if code is not None else []

    def values(self) -> list[Any]:
        """The variables' values (``None`` for one unbound): a program holds them, so that no other object takes
        an id in its key."""
        try:
            values = [cell.cell_contents for cell in self.cells]
        except ValueError:  # a cell not yet filled (a variable the step's function assigns after its definition)
            values = [_contents(cell) for cell in self.cells]
        if self.names:
            values.extend(map(self.namespace.get, self.names))
        if self.attributes:
            values.extend(map(self.instance.get, self.attributes))
        for index, attribute in self.chains:  # cfg.weight: found in cfg's own __dict__ (no property, no method)
            namespace = getattr(values[index], "__dict__", None)
            values.append(namespace.get(attribute) if type(namespace) is dict else None)
        return values

    def key(self) -> list[Any]:
        """Each variable's part of the key: a number's, string's or flag's type and value, any other object's
        identity (an int: never equal to a number's part). A new list, for the caller to extend."""
        values = self.values()
        if _SCALARS.isdisjoint(map(type, values)):  # objects alone, the usual case: their ids, in one C loop
            return list(map(id, values))
        return [(type(value), value) if type(value) in _SCALARS else id(value) for value in values]


def _attributes_of_self(code: types.CodeType) -> set[str]:
    """The attributes a method's code reads from its first argument, ``self.name``."""
    if not code.co_argcount:
        return set()
    this = code.co_varnames[0]
    instructions = list(dis.get_instructions(code))
    return {
        each.argval
        for previous, each in itertools.pairwise(instructions)
        if previous.opname == "LOAD_FAST" and previous.argval == this and each.opname in ("LOAD_ATTR", "LOAD_METHOD")
    }


def _chains(
    code: types.CodeType, cells: tuple[Any, ...], names: list[str], attributes: list[str]
) -> list[tuple[int, str]]:
    """The attributes the step's own code reads from a variable it reads (``cfg.weight``, ``self.cfg.weight``): each
    as the position of the variable among :meth:`_Watched.values` and the attribute's name. Methods called on one
    (``optimizer.step()``) are not reads of a value."""
    slots = {("cell", name): i for i, name in enumerate(code.co_freevars[: len(cells)])}
    slots.update((("global", name), len(cells) + i) for i, name in enumerate(names))
    slots.update((("self", name), len(cells) + len(names) + i) for i, name in enumerate(attributes))
    this = code.co_varnames[0] if code.co_argcount else None
    chains: dict[tuple[int, str], None] = {}
    instructions = list(dis.get_instructions(code))
    for i, each in enumerate(instructions[1:], 1):
        if each.opname != "LOAD_ATTR" or (sys.version_info >= (3, 12) and each.arg is not None and each.arg & 1):
            continue  # 3.12 loads a method to call with LOAD_ATTR, its low bit set
        source = instructions[i - 1]
        if source.opname == "LOAD_DEREF":
            slot = slots.get(("cell", source.argval))
        elif source.opname == "LOAD_GLOBAL":
            slot = slots.get(("global", source.argval))
        elif source.opname == "LOAD_ATTR" and i >= 2 and instructions[i - 2].opname == "LOAD_FAST":
            slot = slots.get(("self", source.argval)) if instructions[i - 2].argval == this else None
        else:
            slot = None
        if slot is not None:
            chains[(slot, each.argval)] = None
    return list(chains)


def _contents(cell: Any) -> Any:
    try:
        return cell.cell_contents
    except ValueError:
        return None


def _globals_read(code: types.CodeType, namespace: dict[str, Any]) -> set[str]:
    """The globals ``code`` loads, and those loaded by the functions of the same module it calls through them (a
    helper beside the step that reads the loop's batch), transitively."""
    names: set[str] = set()
    todo, seen = [code], set()
    while todo:
        each = todo.pop()
        if each in seen:
            continue
        seen.add(each)
        found = _globals_loaded(each)
        names |= found
        for name in found:
            value = namespace.get(name)
            if isinstance(value, types.FunctionType) and value.__globals__ is namespace:
                todo.append(value.__code__)
    return names


def _globals_loaded(code: types.CodeType) -> set[str]:
    names = {each.argval for each in dis.get_instructions(code) if each.opname == "LOAD_GLOBAL"}
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):  # a nested function or comprehension
            names |= _globals_loaded(constant)
    return names


_SCALARS = frozenset({bool, int, float, str, complex})
_UNBOUND = object()


def _returned(recorder: capture.Recorder, x: Any) -> tuple[str, type | None]:
    """How the generated function gives back one leaf of what the step returned, and its kind."""
    if isinstance(x, Tensor):
        if x.requires_grad and isinstance(x._node, Node):
            recorder.refuse(
                "it returns a Tensor whose graph no backward() in the step used: compile the whole step, "
                "backward() included (or return loss.detach())"
            )
        return recorder.ref(x._data, x), Tensor
    if type(x) is np.ndarray:
        return recorder.ref(x), np.ndarray
    if x is None:
        return "None", None
    recorder.refuse(
        f"it returns a {type(x).__name__}, which a replay would give back frozen: return the Tensor or array "
        "(float() it after the call)"
    )
    return "None", None


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray | Tensor):
        return f"{type(value).__name__} {value.dtype} {value.shape}"
    return type(value).__name__


def same_value(a: Any, b: Any) -> bool:
    """Whether two values a step made from Python numbers (constants, attributes, op partials) are the same."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, functools.partial):
        return a.func is b.func and same_value(a.args, b.args) and same_value(a.keywords, b.keywords)
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if hasattr(a, "keys") and hasattr(a, "items"):
        return a.keys() == b.keys() and all(same_value(v, b[k]) for k, v in a.items())
    try:
        return bool(a == b)
    except Exception:
        return False
