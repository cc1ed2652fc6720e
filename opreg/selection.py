"""What a check covers: the ops it runs, and the plugins and ops loading skipped that it must fail on.

``opreg check`` and ``pytest --opreg-gradcheck`` check every registered op, or those named. An op that is not
registered cannot be checked, so a check that passed on the others would be silently green: an installed plugin
that failed to import, whose hook raised or is misspelt, or one op of a plugin that clashes with a built-in or is
declared invalidly. So :func:`select` returns those too, and the checks fail on each:

* a check of every op fails on every skipped plugin and op, unless the user excludes it by name
  (``opreg check --exclude NAME``, ``pytest --opreg-gradcheck-exclude=NAME``: an op, plugin or distribution name,
  or ``plugin:op`` for one op of one plugin), which also leaves out the ops so named that did load;
* a check that names ops, plugins or distributions fails on those of them that were skipped, and on nothing else:
  an unrelated broken package does not fail it. A name that matches nothing says which plugins were skipped, and
  why, since the op may be one of theirs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from opreg import plugin_manager
from opreg.errors import OpUsageError
from opreg.opdef import OpDef
from opreg.plugin_manager import Skipped
from opreg.registry import get_registry


@dataclass(frozen=True)
class Selection:
    """The ops a check runs, and the skipped plugins and ops it fails on, one failure each."""

    ops: list[OpDef]
    skipped: list[Skipped]


def split_names(values: Iterable[str] | None) -> list[str]:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]``: names given as repeated options, comma-separated, or both."""
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


def select(selection: Iterable[str] = (), exclude: Iterable[str] = ()) -> Selection:
    """The ops named in ``selection`` (op, plugin or distribution names; every op when empty), and the skipped
    plugins and ops among them, less those ``exclude`` names (the same kinds of names).

    Raises :class:`OpUsageError` for a name in ``selection`` that matches nothing (saying which plugins were
    skipped, and why), and for a name in ``exclude`` that opreg does not know at all (a typo would exclude
    nothing)."""
    selection, exclude = list(selection), set(exclude)
    ops = list(get_registry().values())  # loads the plugins: what skips a plugin or an op
    skipped = plugin_manager.skipped()
    distributions = {info.name: info.distribution for info in plugin_manager.plugin_infos()}

    def names_of(op: OpDef) -> set[str | None]:
        return {op.name, op.plugin, distributions.get(op.plugin), f"{op.plugin}:{op.name}"}

    known = {name for op in ops for name in names_of(op)} | {name for s in skipped for name in _names(s)}
    known |= {name for info in plugin_manager.plugin_infos() for name in (info.name, info.distribution)}
    strange = sorted(exclude - known)
    if strange:
        raise OpUsageError(
            f"{strange[0]!r} is excluded, but it names no op, plugin or distribution opreg knows of; `opreg plugins` "
            "lists the plugins and their distributions, `opreg ops` the ops"
        )

    def excluded(names: set[str | None]) -> bool:
        return bool(names & exclude)

    if not selection:
        return Selection(
            [op for op in ops if not excluded(names_of(op))], [s for s in skipped if not excluded(_names(s))]
        )
    chosen_ops: dict[str, OpDef] = {}
    chosen_skipped: dict[int, Skipped] = {}
    for wanted in selection:
        matching_ops = [op for op in ops if wanted in names_of(op)]
        matching_skipped = [s for s in skipped if wanted in _names(s)]
        if not matching_ops and not matching_skipped:
            raise OpUsageError(_unknown(wanted, skipped))
        chosen_ops.update((op.name, op) for op in matching_ops if not excluded(names_of(op)))
        chosen_skipped.update((id(s), s) for s in matching_skipped if not excluded(_names(s)))
    return Selection(list(chosen_ops.values()), list(chosen_skipped.values()))


def _names(skipped: Skipped) -> set[str | None]:
    """What names a skipped plugin or op: its plugin, distribution, and (an op) its name and ``plugin:name``."""
    names = {skipped.info.name, skipped.info.distribution}
    return names if skipped.op is None else names | {skipped.op, f"{skipped.plugin}:{skipped.op}"}


def _unknown(wanted: str, skipped: list[Skipped]) -> str:
    message = f"{wanted!r} is neither a registered op nor a loaded plugin or distribution"
    plugins = [s for s in skipped if s.op is None]
    if not plugins:
        return message
    why = "; ".join(f"{s.describe()}: {s.reason}" for s in plugins)
    return f"{message}; it may be an op of a plugin opreg skipped, whose ops are unknown: {why}"


def report(skipped: Skipped) -> str:
    """What a check says of a skipped plugin or op, on one line: what, why, where, and how to check the rest
    without it."""
    where = f" (at {skipped.location})" if skipped.location else ""
    exclude = f"{skipped.plugin}:{skipped.op}" if skipped.op else skipped.info.distribution or skipped.plugin
    return (
        f"opreg skipped {skipped.describe()}, so {'it is' if skipped.op else 'its ops are'} not checked: "
        f"{skipped.reason}{where}; fix it, or exclude it to check the rest without it "
        f"(opreg check --exclude {exclude}, pytest --opreg-gradcheck-exclude={exclude})"
    )
