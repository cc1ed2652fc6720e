"""Keeping Python's cyclic garbage collector from walking a large graph over and over while it is recorded and
walked back.

Every recorded op leaves a few objects the collector tracks (a Tensor and its Node, or a tape Operation, and their
tuples). Nothing about a graph needs the collector: it has no reference cycles (a node refers to its inputs, never
the reverse), and it is freed by reference counting. But the collector does not know that: as a graph grows, it
promotes the graph's objects to its oldest generation, and each full collection walks all of them, about once
every time the oldest generation grows by a quarter. On a graph of 10,000 ops or more that made each op 1.3 to 3
times as dear, most of it cache misses over gigabytes of nodes. Two remedies, both confined to large graphs:

* Recording (:func:`checkpoint`): every :data:`EVERY` recorded ops, opreg asks whether the op recorded
  :data:`EVERY` ops before is still alive (a weak reference to its output array). If so, a large graph is being
  built, and ``gc.freeze()`` moves every object the collector tracks to its permanent generation, which it never
  walks: the graph recorded so far, and whatever else was alive (an O(1) operation). Objects made afterwards are
  collected as always, cycles among them too. The freeze is undone (``gc.unfreeze()``, also O(1)) by the next
  check that finds the earlier op gone, and by the end of a backward pass over a large graph (:func:`resume`).
* Walking back (:func:`pause`, :func:`resume`): during a backward pass over :data:`EVERY` ops or more, automatic
  collection is off (``gc.disable()``), and on again afterwards, and the freeze, if any, is undone. The pass is
  opreg's own code (and the ops' backwards); what it frees is freed by reference counting.

What this changes for the rest of the program: while a large graph is alive, objects that were alive when opreg
froze and that become cyclic garbage meanwhile wait for the unfreeze to be collected (objects made later do not
wait). opreg freezes only when the collector is enabled and nothing else froze objects
(``gc.get_freeze_count() == 0``), so a program that uses ``gc.freeze()`` itself (before forking) is left alone;
one that calls ``gc.freeze()`` or ``gc.disable()`` while opreg walks or holds a large graph may find them undone
at its end. Graphs of fewer than :data:`EVERY` ops (a training step of a few hundred) are never frozen nor
paused.
"""

from __future__ import annotations

import gc
import threading
import weakref
from typing import Any

import numpy as np

#: How many ops a graph spans before the collector is kept off it; also how often recording checks (per op
#: recorded, one comparison with :data:`check_at`).
EVERY = 2_000
#: The number (:data:`opreg.versions.numbers`) of the record at which recording next calls :func:`checkpoint`.
check_at = EVERY
_last: weakref.ref[np.ndarray] | None = None  # the output of the record at the previous check
_frozen = False  # whether opreg froze the collector's objects (and has not unfrozen them)
_stand_aside = False  # whether the program froze objects itself: then opreg never freezes nor unfreezes
_lock = threading.Lock()


def checkpoint(number: int, output: Any) -> None:
    """Called by recording for the record numbered ``number`` (at least :data:`check_at`) whose output is
    ``output``: freeze if the record of the previous check is still alive, unfreeze if it is gone."""
    global check_at, _last, _frozen, _stand_aside
    with _lock:
        check_at = number + EVERY
        large = _last is not None and _last() is not None
        _last = weakref.ref(output) if type(output) is np.ndarray else None
        if not large:
            if _frozen:
                gc.unfreeze()
                _frozen = False
        elif _frozen:
            gc.freeze()  # what was recorded since the last check
        elif gc.isenabled() and not _stand_aside:
            # get_freeze_count walks the frozen objects: asked once per freeze, and never again once it says that
            # the program freezes objects itself
            _stand_aside = gc.get_freeze_count() > 0
            if not _stand_aside:
                gc.freeze()
                _frozen = True


def pause(records: int = 0) -> bool | None:
    """Before a backward pass over ``records`` records (or the ordering of a graph's nodes before it, their number
    unknown): if they are :data:`EVERY` or more, or the record of the last check is still alive (a large graph may
    be on its way), turn automatic collection off and return whether it was on; otherwise return ``None``, having
    done nothing. A value that is not ``None`` must be handed to :func:`resume` when the pass ends, however it ends.

    A call and a flag test rather than a context manager: ``with`` costs two more Python calls, about 0.5% of the
    smallest training step in bench/, which passes here twice per step and never pauses."""
    if records < EVERY and (_last is None or _last() is None):
        return None
    enabled = gc.isenabled()
    if enabled:
        gc.disable()
    return enabled


def resume(enabled: bool) -> None:
    """After a pass that :func:`pause` paused: the collector as it was before (``enabled`` is what ``pause``
    returned), with nothing of opreg's frozen."""
    global _frozen
    if enabled:
        gc.enable()
    with _lock:
        if _frozen:
            gc.unfreeze()
            _frozen = False
