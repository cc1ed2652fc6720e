"""Landing gradients where other threads may land theirs: the caller's ``dW`` and a leaf Tensor's ``.grad``.

Two threads training on one model (each with its own engine, or each calling ``backward`` on its own loss) add
into the same gradient. ``dW += grad`` is a read-modify-write that NumPy runs with the GIL released, and a leaf's
``.grad`` is read, summed and written back; run by two threads at once, either loses one of the additions. So each
landing holds a lock for the memory it writes. The locks are a fixed set that the objects are spread over by
identity: no per-object lock to allocate, keep or free, and two threads landing in different objects rarely meet
on one lock (and if they do, they wait for one addition, nothing more). A landing is one of a few per backward
pass, never per op, so the uncontended lock costs nothing measurable. Everything else a backward pass touches (the
tape, its gradient buffer, the graph's intermediate gradients) belongs to one thread, and takes no lock.
"""

from __future__ import annotations

import threading
from typing import Any

_LOCKS = tuple(threading.Lock() for _ in range(251))  # a prime count, so that ids (multiples of 16) spread evenly


def lock_for(target: Any) -> threading.Lock:
    """The lock that guards landing in ``target``: an array's is its memory's (``dW`` and the view ``dW.T`` share
    one; the owner of a view's memory is found through ``.base``), any other object's its own (a leaf Tensor, whose
    ``.grad`` is replaced)."""
    owner = target
    while (base := getattr(owner, "base", None)) is not None:
        owner = base
    return _LOCKS[id(owner) % len(_LOCKS)]
