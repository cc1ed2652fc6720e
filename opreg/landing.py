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

import numpy as np

from opreg.versions import owner

_LOCKS = tuple(threading.Lock() for _ in range(251))  # a prime count, so that ids (multiples of 16) spread evenly


def array_lock(array: np.ndarray) -> threading.Lock:
    """The lock that guards landing in ``array``: its memory's, so that ``dW`` and the view ``dW.T`` share one."""
    return _LOCKS[id(array if array.base is None else owner(array)) % 251]


def object_lock(target: object) -> threading.Lock:
    """The lock that guards landing in an object's attribute: a leaf Tensor's ``.grad``, which is replaced."""
    return _LOCKS[id(target) % 251]
