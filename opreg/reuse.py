"""The large arrays an eager step writes, kept and written again by the next steps: the tape's and the Tensors'.

A float64 MNIST-sized step makes and frees megabytes of arrays: activations in forward, gradients in backward.
Left to glibc's malloc, that memory goes back to the kernel whenever more than its trim threshold is free at the
top of the heap, or (an array as large as the largest ever freed) is mapped afresh; either way the next step
faults it in again a page at a time. Whether that happens depended on the heap's layout and on the user's habits:
0 faults per step in one process, 609 in the next with nothing changed but which modules had bytecode caches, and
2,000 in a Tensor step whose loop cleared ``.grad`` with ``model.zero_grad()`` rather than the optimizer's
(bench/README.md, "Page faults"). So each front end keeps the memory itself, as a captured step does
(:mod:`opreg.capture`), and nothing a steady step makes is large and new:

- forward: where a position of the step ran the same op on inputs of the same shapes and dtypes at the last step,
  and its output was large, the op's ``forward_out`` writes into a spare array of that output's shape and dtype
  (a position: the tape's index; for Tensors, the count of ops recorded since the last ``backward()``:
  :class:`TensorSteps`);
- backward: a large gradient that an op with ``backward_out`` computes (one that asks for ``needs_grad``) is
  written into a spare array of the input's shape and gradient dtype; for Tensors it may become a leaf's
  ``.grad``, memory the next step takes again once ``.grad`` is cleared.

An array is spare when nothing but :class:`Spares` holds it, which its reference count tells exactly: an output
the caller kept (``h = model(x)``), a view of one, a gradient kept in a ``GradientBuffer`` or taken from ``.grad``
are held, and are never written. Within a step that makes an array spare as soon as the pass has dropped it (a
gradient can take the memory of the activation backward has just finished with), and across steps it keeps the
memory that the next step writes again. Out forms give forward's and backward's values bit for bit
(:mod:`opreg.outforms`), so results are the same as with fresh arrays. (The optimizers' updates make no
parameter-sized temporaries either: :func:`opreg.optim.optimizers.in_pieces`.)
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from opreg.calls import forward_error
from opreg.opdef import OpDef

#: Bytes from which an array is kept: 256 KB, twice glibc's initial mmap threshold. Smaller arrays come from
#: malloc's free lists, without faults; and the bookkeeping (a microsecond per op) would cost more than it saves.
REUSED_FROM = 1 << 18

Key = tuple[tuple[int, ...], np.dtype]

#: Positions of a Tensor step that are planned: forward passes recorded again and again without a ``backward()``
#: (a loop evaluating with gradients on) count on past any step, and must not grow the plan with them.
PLANNED_OPS = 1 << 16


def _references(arrays: list[np.ndarray], i: int) -> int:
    return sys.getrefcount(arrays[i])


#: What :func:`_references` counts for an array that only its list holds: measured, not assumed, so that it holds
#: for any interpreter's way of counting (a borrowed reference on the stack counts nothing).
_ALONE = _references([np.empty(0)], 0)


class Spares:
    """The arrays handed out at the last step and this one, by shape and dtype: :meth:`take` gives one that nothing
    else holds any more, or a new one. An array the last step had and this one did not take is dropped at
    :meth:`end_step`, so what is kept is at most what two steps used (when shapes change), and usually one's."""

    __slots__ = ("_last", "_now")

    def __init__(self) -> None:
        self._now: dict[Key, list[np.ndarray]] = {}  # handed out during this step
        self._last: dict[Key, list[np.ndarray]] = {}  # handed out during the last, and not yet this one

    def take(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """An array of ``shape`` and ``dtype`` (C order, its own memory) that nothing but this holds, its values
        whatever they were: one this step had and dropped, one the last step had, or a new one."""
        key = (shape, dtype)
        now = self._now.get(key)
        if now is None:
            now = self._now[key] = []
        else:
            for i in range(len(now)):
                if _references(now, i) == _ALONE:
                    return now[i]
        last = self._last.get(key)
        if last:
            for i in range(len(last)):
                if _references(last, i) == _ALONE:
                    array = last.pop(i)
                    now.append(array)
                    return array
        array = np.empty(shape, dtype)
        now.append(array)
        return array

    def holds(self, array: np.ndarray) -> bool:
        """Whether ``array`` is one this step handed out (a gradient written into a spare, reaching a leaf)."""
        return any(array is each for each in self._now.get((array.shape, array.dtype), ()))

    def end_step(self) -> None:
        """The step is over: what it took is kept for the next; what the last step had and this one did not take
        (another batch size, another model) is let go."""
        self._last = self._now
        self._now = {}


#: What a tape position's op made at the last step: the op, its attributes (as :func:`_attributes_key` gives them),
#: its inputs' shapes and dtypes, and its output's shape and dtype.
Planned = tuple[OpDef, tuple[Any, ...], tuple[tuple[tuple[int, ...], np.dtype], ...], tuple[int, ...], np.dtype]

#: The attribute values compared by value (immutable, so that what was compared is what forward is given).
_PLAIN = (type(None), bool, int, float, str)


def _attributes_key(attributes: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """``attributes`` as ``(name, type, value)`` triples, or ``None`` if one is not a plain value (nor a tuple of
    them): an array, a dtype, a list that may change. 1, 1.0 and True are told apart, as a forward may."""
    key = []
    for name, value in attributes.items():
        if type(value) is tuple:
            if not all(type(each) in _PLAIN for each in value):
                return None
            value = tuple((type(each), each) for each in value)
        elif type(value) not in _PLAIN:
            return None
        key.append((name, type(value), value))
    return tuple(key)


def planned(
    plan: list[Planned | None], position: int, op: OpDef, inputs: Sequence[np.ndarray], attributes: Mapping[str, Any],
    output: np.ndarray,
) -> bool:  # fmt: skip
    """Note in ``plan`` what the op (which has a ``forward_out``) made at tape ``position``, a large array, if the
    next step can write it into a spare array: one with its own memory in C order (a spare's layout, so the next
    steps' values are laid out as this one's) from an op whose forward saves nothing. Whether it was noted.

    A position whose op makes a small array keeps what it had: what it notes is compared in full before use."""
    entry = None
    if output.base is None and output.flags.c_contiguous and not output.dtype.hasobject and not op.saves:
        key = _attributes_key(attributes)
        if key is not None:
            entry = (op, key, tuple((x.shape, x.dtype) for x in inputs), output.shape, output.dtype)
    if position < len(plan):
        plan[position] = entry
    elif entry is not None:
        plan.extend([None] * (position - len(plan)))
        plan.append(entry)
    return entry is not None


def forward_into(
    spares: Spares,
    plan: list[Planned | None],
    position: int,
    op: OpDef,
    inputs: Sequence[np.ndarray],
    attributes: Mapping[str, Any],
) -> np.ndarray | None:
    """The op's output written into a spare array by its ``forward_out``, if this call is what ``plan`` holds for
    ``position`` (the same op, attributes, input shapes and dtypes, so the same output shape and dtype); else
    ``None``."""
    entry = plan[position] if position < len(plan) else None
    if entry is None:
        return None
    planned_op, key, specs, shape, dtype = entry
    if planned_op is not op or len(specs) != len(inputs):
        return None
    for x, (x_shape, x_dtype) in zip(inputs, specs, strict=True):
        if x.shape != x_shape or x.dtype != x_dtype:
            return None
    if (key or attributes) and _attributes_key(attributes) != key:
        return None
    out = spares.take(shape, dtype)
    assert op.forward_out is not None  # planned only for an op that has one
    try:
        op.forward_out(out, *inputs, **attributes)
    except Exception as exc:
        raise forward_error(op, inputs, exc) from exc
    return out


class TensorSteps(threading.local):
    """The Tensor front end's reuse, per thread (a graph is recorded by one thread): a tape has no steps of its own
    to number positions by, so a position is the number of ops recorded since the last ``backward()``, and a step
    ends at each ``backward()``.

    ``large`` says that the step being recorded has made a large array. Its ``backward()`` then writes large
    gradients into spares, and positions are counted from there on (``counting``). A step that makes none stops
    the counting: small graphs pay one attribute read per op, even in a thread that trained a large model before.
    An op recorded out of step (a forward pass without backward, another graph) only finds the plan not matching,
    which costs the reuse of a step, never a wrong value: :func:`forward_into` compares the op, attributes, shapes
    and dtypes in full."""

    def __init__(self) -> None:
        self.spares = Spares()
        self.plan: list[Planned | None] = []
        self.position = 0
        self.large = False
        self.counting = False

    def backward_done(self, reused: bool) -> None:
        """A ``backward()`` ended a step, which ``reused`` memory if it made a large array: positions count from 0
        again, or not at all after a step without a large array; the spares keep what a reusing step took."""
        self.counting = reused
        self.position = 0
        if reused:
            self.spares.end_step()
        self.large = False
