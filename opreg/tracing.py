"""The NumPy calls an out form makes, written down through NumPy's own protocols, for a replay to make inline.

A replayed step that called each op's ``forward_out`` and ``backward_out`` would pay a Python call, and the form's
own tests of shapes and dtypes, around every kernel: as much as the kernel itself on small arrays. Shapes and
dtypes are fixed for a program (its guards), so those tests give the same answers every replay. :func:`trace` runs
an out form once, at recording, on :class:`Traced` stand-ins for its arrays: NumPy hands every ufunc and every
NumPy function called on them to the stand-in (``__array_ufunc__``, NEP 13; ``__array_function__``, NEP 18), which
runs it on the real arrays and writes down the call, with the names the generated code gives the arrays. What is
left is the kernels alone, ``np.multiply(v3, p1, out=v4)``, in the order the form ran them: the same calls on the
same values, so the same numbers.

Only what is certain to replay the same is written down. A form that reads values into Python (``if x.any()``,
``float(x)``), converts a stand-in to an array NumPy would not show us (``np.asarray``), calls a method the
stand-in does not know, or mixes in an array that did not come from its arguments, stops the trace
(:class:`Untraceable`), and the replay calls the form as before. Shapes, dtypes and other metadata are read freely:
the program's guards fix them.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

__all__ = ["Trace", "Traced", "Untraceable"]


class Untraceable(Exception):
    """The out form did something a list of NumPy calls cannot repeat (what, in the message)."""


#: NumPy functions that read only shapes and dtypes: answered, not written down (the guards fix what they read).
_METADATA = frozenset({np.shape, np.ndim, np.size, np.result_type, np.iscomplexobj, np.isrealobj})

#: Reductions written as the ufunc reduction NumPy makes for them on an ndarray (``np.sum(x, axis)`` and
#: ``x.sum(axis)`` are ``np.add.reduce(x, axis)``), without the layers of Python in between.
_REDUCTIONS: dict[Any, np.ufunc] = {
    np.sum: np.add,
    np.prod: np.multiply,
    np.max: np.maximum,
    np.amax: np.maximum,
    np.min: np.minimum,
    np.amin: np.minimum,
}
_REDUCING_METHODS = {"sum": np.sum, "prod": np.prod, "max": np.max, "min": np.min}

#: NumPy functions that write into none of their arguments (none takes ``out``): a result may view one, but a
#: line that calls one changes nothing but its result.
_WRITING_NOTHING = frozenset(
    {np.expand_dims, np.reshape, np.squeeze, np.transpose, np.swapaxes, np.moveaxis, np.broadcast_to, np.ravel}
    | {np.where, np.zeros_like, np.ones_like, np.full_like}
)

#: Array methods that write into the array they are called on.
_WRITING_METHODS = frozenset({"fill", "__setitem__"})

#: Array methods a form may call on a stand-in.
_METHODS = frozenset(
    {"sum", "max", "min", "mean", "prod", "copy", "astype", "fill", "reshape", "transpose", "swapaxes", "ravel"}
    | {"squeeze", "view", "__getitem__", "__setitem__"}
)


class Trace:
    """The calls of one traced form. ``value(x)`` names a result the form made (the recorder's ``vN``);
    ``lines`` are the generated code; ``effects`` say, for each line, the names it assigns and the names whose
    values it may change (those, and arrays it writes into), for leaving out lines whose results nothing reads;
    ``views`` pairs each result that may view an array's memory with that array's name, in the order made."""

    def __init__(self, value: Callable[[Any], str], constant: Callable[[Any], str]) -> None:
        self._value = value
        self._constant = constant
        self.lines: list[str] = []
        self.effects: list[tuple[set[str], set[str]]] = []
        self.views: list[tuple[str, str]] = []
        self._memory: dict[str, set[str]] = {}  # a name -> the names that may share its memory (views)

    def _emit(self, line: str, assigned: set[str], written: Iterable[Any]) -> None:
        """A line, and its effects: a write to an array is a write to every view of its memory."""
        self.lines.append(line)
        changed = set(assigned)
        for x in written:
            if isinstance(x, Traced):
                changed |= self._memory.get(x.name, {x.name})
        self.effects.append((assigned, changed))

    def array(self, array: Any, name: str) -> Traced:
        """A stand-in for ``array``, called ``name`` in the generated code."""
        return Traced(self, array, name)

    def run(self, form: Callable[..., Any], args: Sequence[Any], keywords: Mapping[str, Any]) -> Any:
        """``form(*args, **keywords)`` (stand-ins among them); :class:`Untraceable` if it cannot be written down."""
        try:
            return form(*args, **keywords)
        except Untraceable:
            raise
        except Exception as exc:  # a stand-in lacks something the form uses: call the form instead
            raise Untraceable(f"{type(exc).__name__}: {exc}") from exc

    # --- what stand-ins report -----------------------------------------------------------------------------------

    def ufunc(self, ufunc: np.ufunc, method: str, inputs: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        if method == "__call__":
            inputs = self._numbers_as_arrays(inputs)
        out = kwargs.get("out")
        outs = out if isinstance(out, tuple) else None if out is None else (out,)
        text = [self.text(x) for x in inputs]
        for key, x in kwargs.items():
            if key != "out":
                text.append(f"{key}={self.text(x)}")
        if outs is not None:
            text.append(f"out={self.text(outs[0] if len(outs) == 1 else outs)}")
        call = f"{self._named(ufunc, np)}{'' if method == '__call__' else f'.{method}'}({', '.join(text)})"
        real = {key: self.real(x) for key, x in kwargs.items()}
        if outs is not None:
            real["out"] = tuple(self.real(x) for x in outs)
        result = getattr(ufunc, method)(*(self.real(x) for x in inputs), **real)
        if outs is not None:
            self._emit(call, set(), outs)
            return outs[0] if len(outs) == 1 else outs
        return self._result(result, call, (), ())

    def _numbers_as_arrays(self, inputs: Sequence[Any]) -> Sequence[Any]:
        """A ufunc's Python-number operands as 0-d arrays of the dtype its arrays share, where NumPy converts the
        number to that dtype anyway (NEP 50: a Python number takes the dtype of the arrays it meets when that can
        hold its kind; ``np.result_type`` says which). The same loop on the same values, so the same bits (the
        recording checks them); but a call given a number converts it each time, about 0.2 us of a 0.4 us call
        on a small array."""
        dtypes = {x.array.dtype for x in inputs if isinstance(x, Traced)}
        if len(dtypes) != 1 or all(isinstance(x, Traced) for x in inputs):
            return inputs
        (dtype,) = dtypes
        converted = []
        for x in inputs:
            if type(x) in (int, float):
                try:
                    array = np.asarray(x, dtype) if np.result_type(dtype, x) == dtype else None
                except (OverflowError, TypeError, ValueError):  # a number the dtype cannot hold: NumPy's rules
                    array = None
                if array is not None:
                    x = Traced(self, array, self._constant(array))
            converted.append(x)
        return converted

    def function(self, function: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        real_args = [self.real(x) for x in args]
        real_kwargs = {key: self.real(x) for key, x in kwargs.items()}
        if function in _METADATA:
            return function(*real_args, **real_kwargs)
        if function in _REDUCTIONS and args and isinstance(args[0], Traced) and type(args[0].array) is np.ndarray:
            names = _parameters(function)  # a, axis, ...
            if len(args) > len(names) or not set(kwargs) <= set(names[1:]):
                raise Untraceable(f"np.{function.__name__} called with arguments it does not take")
            bound = {"axis": None, **dict(zip(names[1:], args[1:], strict=False)), **kwargs}  # reduce's axis is 0
            return self.ufunc(_REDUCTIONS[function], "reduce", (args[0],), bound)
        text = [self.text(x) for x in args] + [f"{key}={self.text(x)}" for key, x in kwargs.items()]
        call = f"{self._named(function, np)}({', '.join(text)})"
        result = function(*real_args, **real_kwargs)
        arrays = [x for x in (*args, *kwargs.values()) if isinstance(x, Traced)]  # any of them it may write into
        if kwargs.get("out") is not None:
            self._emit(call, set(), arrays)
            return kwargs["out"]
        return self._result(result, call, arrays, () if function in _WRITING_NOTHING else arrays)

    def method(self, traced: Traced, name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        if name in _REDUCING_METHODS and type(traced.array) is np.ndarray:  # x.sum(...) is np.sum(x, ...)
            return self.function(_REDUCING_METHODS[name], (traced, *args), kwargs)
        text = [self.text(x) for x in args] + [f"{key}={self.text(x)}" for key, x in kwargs.items()]
        if name == "__getitem__":
            call = f"{traced.name}[{text[0]}]"
        elif name == "__setitem__":
            call = f"{traced.name}[{text[0]}] = {text[1]}"
        else:
            call = f"{traced.name}.{name}({', '.join(text)})"
        real_kwargs = {key: self.real(x) for key, x in kwargs.items()}
        result = getattr(traced.array, name)(*(self.real(x) for x in args), **real_kwargs)
        return self._result(result, call, [traced], [traced] if name in _WRITING_METHODS else ())

    def attribute_view(self, traced: Traced, name: str) -> Traced:
        """``x.T`` and its like: a view, named."""
        result = self._result(getattr(traced.array, name), f"{traced.name}.{name}", [traced], ())
        assert isinstance(result, Traced)
        return result

    # --- writing the calls ---------------------------------------------------------------------------------------

    def _result(self, result: Any, call: str, viewed: Sequence[Traced], written: Sequence[Traced]) -> Any:
        """The result of ``call``, named; ``viewed`` are the arrays it may be a view of, ``written`` those the
        call may write into."""
        if result is None:
            self._emit(call, set(), written)
            return None
        if not isinstance(result, np.ndarray | np.generic):
            raise Untraceable(f"{call} returned a {type(result).__name__}")
        traced = Traced(self, result, "")
        traced.name = self._value(traced)
        self._emit(f"{traced.name} = {call}", {traced.name}, written)
        for source in viewed:  # a result that may view an argument: its memory lives as long as the view
            if isinstance(result, np.ndarray) and np.may_share_memory(result, source.array):
                self.views.append((traced.name, source.name))
                names = self._memory.get(source.name, {source.name}) | self._memory.get(traced.name, {traced.name})
                for name in names:
                    self._memory[name] = names
        return traced

    def text(self, x: Any) -> str:
        """How the generated code spells an argument of a call."""
        if isinstance(x, Traced):
            if x.trace is not self:
                raise Untraceable("a stand-in of another trace")
            return x.name
        if isinstance(x, tuple | list):
            inner = ", ".join(self.text(each) for each in x)
            return f"({inner}{',' if len(x) == 1 else ''})" if isinstance(x, tuple) else f"[{inner}]"
        if x is None or x is Ellipsis or type(x) in (bool, int, str, slice):
            return repr(x)
        if type(x) is float and math.isfinite(x):
            return repr(x)
        if isinstance(x, np.ndarray):  # not one of the form's arguments: where it came from is unknown
            raise Untraceable(f"an array of shape {x.shape} that is not one of the form's arguments")
        if isinstance(x, float | complex | np.generic | np.dtype | type):
            return self._constant(x)
        raise Untraceable(f"an argument of type {type(x).__name__}")

    def real(self, x: Any) -> Any:
        if isinstance(x, Traced):
            return x.array
        if isinstance(x, tuple | list):
            return type(x)(self.real(each) for each in x)
        return x

    def _named(self, function: Any, module: Any) -> str:
        name = getattr(function, "__name__", "")
        return f"np.{name}" if getattr(module, name, None) is function else self._constant(function)


@functools.cache
def _parameters(function: Callable[..., Any]) -> tuple[str, ...]:
    """The names of a NumPy reduction's parameters, in order (``a``, ``axis``, ...)."""
    return tuple(inspect.signature(function).parameters)


def _refuse(what: str) -> Callable[..., Any]:
    def refused(self: Traced, *args: Any) -> Any:
        raise Untraceable(f"the form {what}")

    return refused


class Traced(NDArrayOperatorsMixin):
    """A stand-in for an array while a form is traced: metadata read freely, NumPy calls written down, values
    never read into Python. The arithmetic operators come from NumPy's mixin, through ``__array_ufunc__``."""

    __slots__ = ("array", "name", "trace")

    def __init__(self, trace: Trace, array: Any, name: str) -> None:
        self.trace, self.array, self.name = trace, array, name

    shape = property(lambda self: self.array.shape)
    dtype = property(lambda self: self.array.dtype)
    ndim = property(lambda self: self.array.ndim)
    size = property(lambda self: self.array.size)
    itemsize = property(lambda self: self.array.itemsize)
    flags = property(lambda self: self.array.flags)  # layout: a given array's (a buffer, dW) is its own for good
    T = property(lambda self: self.trace.attribute_view(self, "T"))
    mT = property(lambda self: self.trace.attribute_view(self, "mT"))

    def __len__(self) -> int:
        return len(self.array)

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        return self.trace.ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, function: Any, types: Any, args: Any, kwargs: Any) -> Any:
        return self.trace.function(function, args, kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # NumPy's probes (__array_interface__, ...): absent, as on any object
            raise AttributeError(name)
        if name not in _METHODS:
            raise Untraceable(f"the form calls .{name}, which tracing does not know")
        return lambda *args, **kwargs: self.trace.method(self, name, args, kwargs)

    def __getitem__(self, key: Any) -> Any:
        return self.trace.method(self, "__getitem__", (key,), {})

    def __setitem__(self, key: Any, value: Any) -> None:
        self.trace.method(self, "__setitem__", (key, value), {})

    __array__ = _refuse("converts an array with np.asarray or np.array")
    __bool__ = _refuse("reads a value into Python (bool: an if or a comparison)")
    __float__ = _refuse("reads a value into Python (float)")
    __int__ = _refuse("reads a value into Python (int)")
    __index__ = _refuse("reads a value into Python (an index)")
    __complex__ = _refuse("reads a value into Python (complex)")
    __iter__ = _refuse("iterates over an array")
