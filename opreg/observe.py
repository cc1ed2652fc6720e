"""Observers of op calls: how checking mode, anomaly mode and op timeouts watch every op without changing any.

An observer wraps each forward and backward call made while it is switched on, per thread (``with`` blocks, as
``no_grad``) or for the whole process (``OPREG_CHECK=1``). The registry's table is never rewritten. The hot path
reads one module flag, :data:`active`, and finds the observers only when some are on somewhere. A recorded
operation keeps the observers that were on when it was recorded, so its backward is watched too, even when it
runs after the block.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from opreg.opdef import OpDef

T = TypeVar("T")


class Observer(Protocol):
    """Wraps op calls: each method must call ``call()`` once and return its result (or raise)."""

    def forward(self, op: OpDef, call: Callable[[], Any], inputs: Sequence[Any], attributes: Mapping[str, Any]) -> Any:
        """Around ``op.forward(*inputs, **attributes)``; the result is what forward returned."""

    def backward(
        self,
        op: OpDef,
        call: Callable[[], Sequence[Any]],
        grad_output: Any,
        inputs: Sequence[Any],
        output: Any,
        needed: Sequence[Any] | None,
    ) -> Sequence[Any]:
        """Around ``op.backward(grad_output, *inputs, ...)``; ``needed[i] is None`` for a gradient nobody reads."""


class _ThreadObservers(threading.local):
    stack: tuple[Observer, ...] = ()
    inside = 0  # > 0 while an observed op runs: the ops its forward or backward calls are its own business


_thread = _ThreadObservers()
_process: tuple[Observer, ...] = ()
_lock = threading.Lock()
_blocks = 0  # observing() blocks open in any thread

#: Whether any observer is on anywhere: the one thing the hot path reads.
active = False


def current() -> tuple[Observer, ...]:
    """The observers on in this thread: the process-wide ones, then this thread's innermost last."""
    return _process + _thread.stack if active and not _thread.inside else ()


@contextmanager
def observing(observer: Observer) -> Iterator[None]:
    """Switch ``observer`` on in this thread for the block."""
    global active, _blocks
    with _lock:
        _blocks += 1
        active = True
    previous = _thread.stack
    _thread.stack = (*previous, observer)
    try:
        yield
    finally:
        _thread.stack = previous
        with _lock:
            _blocks -= 1
            active = bool(_blocks or _process)


def set_process_observers(observers: Sequence[Observer]) -> None:
    """Observers on in every thread until replaced (checking mode by ``OPREG_CHECK``)."""
    global active, _process
    with _lock:
        _process = tuple(observers)
        active = bool(_blocks or _process)


def forward(observers: Sequence[Observer], op: OpDef, inputs: Sequence[Any], attributes: Mapping[str, Any]) -> Any:
    """``op.forward`` run inside every observer, the first outermost."""

    def call() -> Any:
        return op.forward(*inputs, **attributes)

    for observer in reversed(observers):
        call = _wrap_forward(observer, op, call, inputs, attributes)
    return _unobserved(call)


def backward(
    observers: Sequence[Observer],
    op: OpDef,
    call: Callable[[], Sequence[Any]],
    grad_output: Any,
    inputs: Sequence[Any],
    output: Any,
    needed: Sequence[Any] | None,
) -> Sequence[Any]:
    """``call()`` (the op's backward) run inside every observer, the first outermost."""
    for observer in reversed(observers):
        call = _wrap_backward(observer, op, call, grad_output, inputs, output, needed)
    return _unobserved(call)


def _unobserved(call: Callable[[], T]) -> T:
    """``call()`` with observing suspended in this thread: an op's backward written with registered ops calls
    them, and those calls are part of the op that is observed, not ops of the user's."""
    _thread.inside += 1
    try:
        return call()
    finally:
        _thread.inside -= 1


def _wrap_forward(
    observer: Observer, op: OpDef, call: Callable[[], Any], inputs: Sequence[Any], attributes: Mapping[str, Any]
) -> Callable[[], Any]:
    return lambda: observer.forward(op, call, inputs, attributes)


def _wrap_backward(
    observer: Observer,
    op: OpDef,
    call: Callable[[], Sequence[Any]],
    grad_output: Any,
    inputs: Sequence[Any],
    output: Any,
    needed: Sequence[Any] | None,
) -> Callable[[], Sequence[Any]]:
    return lambda: observer.backward(op, call, grad_output, inputs, output, needed)
