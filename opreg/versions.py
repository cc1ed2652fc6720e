"""Arrays changed in place between forward and backward: the version counters, and the check backward makes.

A backward reads the arrays its op was recorded with (its inputs, and its output if it asks for it). Changed in
place before backward runs, they would give a wrong gradient with no error, so backward checks them first, before
any op's backward runs, and raises :class:`~opreg.errors.ModifiedInPlaceError` naming the op, its plugin, the
array and what to do instead.

**Versions**, PyTorch's idea: an edit made through opreg's API (``t.data += 1`` on a Tensor, an optimizer's step,
``Module.load_state_dict``, on Tensors and tape parameters alike) calls :func:`edited`, which raises the
array's version. A version belongs to the memory, not to the Tensor or view: the array owning the memory keys it,
so ``w.T``, ``w.detach()`` and ``w`` share one, as PyTorch's views share a version counter. Every record (a
Tensor's node, a tape operation) and every edit takes a number from one counter, :data:`numbers`; an array a record
holds was edited after it iff one of its edits has a larger number. So recording costs one number per op (a
Tensor's node drew one already), nothing per array, and backward compares one number, :data:`last_edit`, with its
first record's before looking further: in training the step comes after backward, and the next graph is recorded
after the step. PyTorch's way, each record saving its arrays' versions, would cost a read per array on every op
and a comparison per array in every backward.

**Values**, in checking mode: a raw NumPy write (``x /= 2`` on a tape input, ``t.data[0] = 5``) calls nothing,
and marking recorded arrays read-only would need bookkeeping on every op (restoring the flag when the graph is
freed, or dropped without a backward; views whose base stays writable) and would fail at the write with NumPy's
message, which names no op. Instead, a record made in checking mode keeps a checksum of each array its backward
reads (:func:`fingerprints`), compared at backward. The default mode does not see raw writes; README says so.
"""

from __future__ import annotations

import itertools
import weakref
import zlib
from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from opreg import capture
from opreg.contract import describe_array
from opreg.errors import ModifiedInPlaceError
from opreg.opdef import OpDef

if TYPE_CHECKING:  # backprop imports landing, which imports this module
    from opreg.backprop import Record

#: Numbers every record and every edit, in the order they happen (atomic under the GIL).
numbers = itertools.count(1)

#: The number of the last edit (0: none yet): what backward compares its first record's number with.
last_edit = 0

#: Whether any record was made in checking mode, and so has checksums to compare.
fingerprinted = False

#: How many of an array's latest edits keep their numbers: enough to tell the version a record saw.
_KEPT = 8


class _History:
    """An array's edits: how many (its version) and the numbers of the latest."""

    __slots__ = ("count", "latest", "ref")

    def __init__(self, owner: np.ndarray) -> None:
        self.count = 0
        self.latest: deque[int] = deque(maxlen=_KEPT)
        key = id(owner)
        # The entry goes when the array does, so that a new array given the same id starts at version 0.
        self.ref = weakref.ref(owner, lambda _: _histories.pop(key, None))
        _histories[key] = self


_histories: dict[int, _History] = {}


def owner(array: np.ndarray) -> np.ndarray:
    """The array that owns ``array``'s memory: every view of it shares its version."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def edited(*arrays: np.ndarray) -> None:
    """Note that ``arrays`` (or the memory each views) were just changed in place: their versions go up by one.
    An optimizer's step passes all its parameters in one call (one number for the step, one call's overhead)."""
    global last_edit
    if capture.active:
        capture.refuse("it edits arrays in place outside an optimizer's step, which a replay would not do")
    last_edit = number = next(numbers)
    for array in arrays:
        # Only memory owners are keys, and a view's id is never a live owner's: so this finds an owner's history,
        # the common case, without looking for its owner
        history = _histories.get(id(array)) or _history_of(owner(array))
        history.count += 1
        history.latest.append(number)


def _history_of(memory: np.ndarray) -> _History:
    return _histories.get(id(memory)) or _History(memory)


def version(array: np.ndarray) -> int:
    """How many times ``array``'s memory was edited through opreg (0: never)."""
    history = _histories.get(id(owner(array)))
    return 0 if history is None else history.count


def read_by_backward(op: OpDef, inputs: Sequence[Any], output: Any) -> list[tuple[str, Any]]:
    """``(how errors name it, array)`` for what the op's backward reads: every input (opreg cannot tell which
    a plugin's backward uses), and the output when backward asks for it."""
    named = [(op.describe_input(i), x) for i, x in enumerate(inputs)]
    if "output" not in op.wants:
        return named
    if op.multi:  # several outputs: each by its name
        return [*named, *((f"its output {n!r}", x) for n, x in zip(op.output_names(len(output)), output, strict=True))]
    return [*named, ("its output", output)]


def fingerprints(op: OpDef, inputs: Sequence[Any], output: Any, observers: Sequence[Any]) -> tuple[int, ...] | None:
    """Checksums of what the op's backward reads, when ``observers`` (those on as it is recorded) include checking
    mode; else None."""
    global fingerprinted
    if not any(getattr(observer, "checks_values", False) for observer in observers):
        return None
    fingerprinted = True
    return tuple(_checksum(x) for _, x in read_by_backward(op, inputs, output))


def _checksum(x: Any) -> int:
    return zlib.crc32(np.ascontiguousarray(x).tobytes())


def check(records: Iterable[Record]) -> None:
    """Raise if an array a record's backward reads changed since it was recorded: edited through opreg since, or,
    for a record made in checking mode, holding other values; the first such record, in the order recorded, is
    named. Front ends call this before backward when ``last_edit`` is later than their first record, or
    ``fingerprinted``: otherwise nothing can have changed."""
    for record in records:
        edited_since = last_edit > record.number
        if not edited_since and record.fingerprints is None:
            continue
        named = read_by_backward(record.op, record.datas, record.output_data)
        if edited_since:
            for name, x in named:
                _check_version(record, name, x)
        if record.fingerprints is not None:
            for (name, x), recorded in zip(named, record.fingerprints, strict=True):
                if _checksum(x) != recorded:
                    raise _modified(record, name, x, "its values differ from those recorded")


def _check_version(record: Record, name: str, x: Any) -> None:
    if not isinstance(x, np.ndarray):
        return
    history = _histories.get(id(owner(x)))
    if history is None:
        return
    after = sum(number > record.number for number in history.latest)
    if after:
        then = history.count - after
        exact = after < len(history.latest) or history.count == after  # else older edits' numbers were dropped
        at = f"version {then}" if exact else f"version {then} or earlier"
        raise _modified(record, name, x, f"{at} when recorded, now version {history.count}")


def _modified(record: Record, name: str, x: Any, how: str) -> ModifiedInPlaceError:
    return ModifiedInPlaceError(
        f"{record.op.describe()}: {name} {describe_array(x)}, which its backward is given, was modified in place "
        f"after the op was recorded ({how}), so the gradient would be wrong; run backward before changing it "
        "(optimizer.step() after backward), or compute a new array instead (x = x / 2 rather than x /= 2, "
        "t.data = t.data + 1 rather than t.data += 1)"
    )
