"""Landing gradients where other threads may land theirs: the caller's ``dW`` and a leaf Tensor's ``.grad``.

Two threads training on one model (each with its own engine, or each calling ``backward`` on its own loss) add
into the same gradient. ``dW += grad`` is a read-modify-write that NumPy runs with the GIL released, and a leaf's
``.grad`` is read, summed and written back; run by two threads at once, either loses one of the additions. So each
landing holds a lock for the memory it writes. The locks are a fixed set that the objects are spread over by
identity: no per-object lock to allocate, keep or free, and two threads landing in different objects rarely meet
on one lock (and if they do, they wait for one addition, nothing more). A landing is one of a few per backward
pass, never per op: an uncontended lock costs a fraction of a microsecond each, about 1% of the smallest
training step in bench/. Everything else a backward pass touches (the
tape, its gradient buffer, the graph's intermediate gradients) belongs to one thread, and takes no lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import numpy as np

try:
    from numpy.lib.array_utils import byte_bounds
except ImportError:  # NumPy < 2
    from numpy import byte_bounds  # type: ignore[attr-defined,no-redef]

from opreg.versions import owner

_LOCKS = tuple(threading.Lock() for _ in range(251))  # a prime count, so that ids (multiples of 16) spread evenly


def array_lock(array: np.ndarray) -> threading.Lock:
    """The lock that guards landing in ``array``: its memory's, so that ``dW`` and the view ``dW.T`` share one."""
    return _LOCKS[id(array if array.base is None else owner(array)) % 251]


def object_lock(target: object) -> threading.Lock:
    """The lock that guards landing in an object's attribute: a leaf Tensor's ``.grad``, which is replaced."""
    return _LOCKS[id(target) % 251]


def land(landings: list[tuple[np.ndarray, Any]], zeroed: Iterable[np.ndarray] = ()) -> None:
    """Add each ``(target, gradient)`` into its target in place, holding the target's lock.

    ``zeroed`` arrays (the caller's gradient arrays, given to ``Autograd.backward(zero_grad=...)``) count as
    zeros here, though nobody has filled them: the first gradient to land in one is written into it as it is (a
    -0.0 stays -0.0, as a Tensor's ``.grad`` and PyTorch's keep it; a fill then an addition would make it +0.0),
    and one that no gradient reaches is filled with zeros. One pass over its memory instead of two: the fill costs
    as much as the addition (both write the whole array), and the addition reading zeros back is not cheaper than
    a write. A compiled step writes such a gradient straight into the array, with no pass of its own at all. On
    small arrays (a few dozen elements) the two ways cost the same, which is why the bookkeeping here is kept to
    one dict lookup per landing.
    """
    pending = _unshared(zeroed, landings) if zeroed else None
    for target, grad in landings:
        with array_lock(target):  # another thread's backward may land in the same dW
            if pending and pending.pop(id(target), None) is not None:
                np.copyto(target, grad)
            else:
                target += grad
    if pending:
        for array in pending.values():
            with array_lock(array):
                array.fill(0)


#: Elements from which a zeroed gradient array is written by its op's backward itself rather than copied into: the
#: copy of a 784x512 float32 weight's gradient costs 5% of an MNIST-sized step, the extra backward call on a small
#: one more than its copy.
WRITTEN_FROM = 1 << 14


def written_in_place(zeroed: Iterable[np.ndarray], records: Iterable[Any]) -> dict[int, np.ndarray]:
    """The ``zeroed`` arrays (by id) whose first gradient the backward pass may write as it computes it, with the
    op's ``backward_out`` (:func:`opreg.calls.gradients_into`), rather than compute it into memory of its own and
    copy it in when every backward has returned: a pass and an allocation less.

    Each is large (:data:`WRITTEN_FROM`), owns its memory (the caller rules out views among the pass's targets, so
    nothing else the pass writes shares it), and is read by no op of ``records`` (nor a view of it is), whose
    backwards, run after the write, would otherwise read the new values."""
    written = {id(array): array for array in zeroed if array.size >= WRITTEN_FROM and array.base is None}
    if written:
        for record in records:
            for x in record.datas:
                if id(x) in written or (x.base is not None and id(owner(x)) in written):
                    written.pop(id(owner(x)), None)
    return written


def _unshared(zeroed: Iterable[np.ndarray], landings: list[tuple[np.ndarray, Any]]) -> dict[int, np.ndarray]:
    """The ``zeroed`` arrays by id, without those whose memory another zeroed array or another landing's target may
    share (``dW`` and ``dW.T``, or a row of it), which are filled at once instead: writing into one of them would
    not leave the other reading as zeros plus its own gradients. Arrays that own their memory share none (the usual
    case, decided in one look at each array); views are compared by the bytes they span."""
    pending: dict[int, np.ndarray] = {}
    views = False
    for each in zeroed:
        pending[id(each)] = each
        views = views or each.base is not None
    if not views:
        for target, _ in landings:
            if target.base is not None:
                views = True
                break
        else:
            return pending
    objects = {id(target): target for target, _ in landings} | pending
    spans = sorted((*byte_bounds(array), key) for key, array in objects.items())
    reach = -1  # the furthest byte an earlier span reaches
    for i, (low, high, key) in enumerate(spans):
        overlaps = low < reach or (i + 1 < len(spans) and high > spans[i + 1][0])
        reach = max(reach, high)
        array = pending.pop(key, None) if overlaps else None
        if array is not None:
            with array_lock(array):
                array.fill(0)
    return pending
