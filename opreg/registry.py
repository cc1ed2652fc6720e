"""The op registry: the name -> op table, filled from the plugins' ``opreg_register_ops`` hooks.

This module runs that hook once per plugin when the registry is first used, validates every declaration
(:func:`opreg.opdef.define_op`, with checks of its own: typeguard is not imported), and fills one plain dict that
the engine reads on its hot path. pluggy does not run after that.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pluggy

from opreg import plugin_manager
from opreg.errors import PluginLoadError, RegistrationError, UnknownOpError
from opreg.opdef import REGISTER_KEYWORDS, OpDef, define_op, unknown_keyword_error


class OpRegistry(Mapping[str, OpDef]):
    """A read-only mapping from op name to :class:`OpDef`; an unknown name raises with close suggestions."""

    __slots__ = ("_table",)

    def __init__(self, table: dict[str, OpDef]) -> None:
        self._table = table

    def __getitem__(self, name: str) -> OpDef:
        try:
            return self._table[name]
        except KeyError:
            raise unknown_op_error(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    def __repr__(self) -> str:
        return f"OpRegistry({sorted(self._table)})"


#: The one table behind the registry. It is updated in place, so the engines that hold it see plugins added later,
#: and in one step (:func:`_install`), so that threads running ops never find it half filled.
#: Empty until the plugins are first loaded: read it through :func:`op_table`, or fall back to that on a miss.
TABLE: dict[str, OpDef] = {}
_LOADED = False
_GENERATION = 0  # counts reloads, so that what is derived from the table knows when to derive it again
#: Held while the plugins change and the table is rebuilt: two threads registering plugins at once must not each
#: install a table without the other's ops, nor two threads using opreg first each load the plugins. Re-entrant,
#: as registering reloads. Reading the table takes no lock.
_LOCK = threading.RLock()
STRICT_VAR = "OPREG_STRICT"


def generation() -> int:
    """How many times the table was filled: what caches of derived lookups (NumPy names) compare against."""
    return _GENERATION


def unknown_op_error(name: object) -> UnknownOpError:
    """The error for an op name nobody registered: the closest registered names, or, when none is close, how to
    list them all (never the names themselves, which may be thousands)."""
    close = difflib.get_close_matches(str(name), list(TABLE), n=3)
    if close:
        return UnknownOpError(f"no op named {name!r} is registered; did you mean {' or '.join(map(repr, close))}?")
    return UnknownOpError(
        f"no op named {name!r} is registered, nor one with a similar name; `opreg ops` lists every registered op, as "
        "does sorted(opreg.get_registry())"
    )


def op_table() -> dict[str, OpDef]:
    """The live dict behind the registry, for the engine's hot path (one plain dict lookup). Do not mutate it."""
    if not _LOADED:
        with _LOCK:
            if not _LOADED:  # another thread may have loaded the plugins while this one waited
                _reload()
    return TABLE


def get_registry() -> OpRegistry:
    """The registry of every op the loaded plugins registered (loading them on first use)."""
    return OpRegistry(op_table())


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register a plugin object or module in this process and add its ops; returns its plugin name.

    For notebooks and tests; installed packages are found by their entry points instead. If the plugin's ops are
    invalid or clash with registered ones, the plugin is unregistered again and the error raised.
    """
    # pluggy would name an instance by its id(); its class name reads better in every message
    name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
    with _LOCK:
        pm = plugin_manager.get_plugin_manager()
        registered_name = pm.register(plugin, name=name)
        if registered_name is None:
            raise RegistrationError(f"plugin {name or plugin!r} is already registered or blocked")
        plugin_manager.note_registered(registered_name, plugin)
        try:
            try:
                plugin_manager.check_hooks(pm, plugin)
            except RegistrationError as exc:
                raise RegistrationError(f"plugin {registered_name!r}: {exc}") from None
            _reload()
        except Exception:  # the table is untouched; only the plugin manager has to forget the plugin
            pm.unregister(name=registered_name)
            plugin_manager.forget(registered_name)
            raise
    return registered_name


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with :func:`register_plugin`, and its ops."""
    with _LOCK:
        plugin_manager.get_plugin_manager().unregister(name=name)
        plugin_manager.forget(name)
        _reload()


def reload_plugins() -> None:
    """Load every plugin afresh: after installing an op package, or changing ``OPREG_*`` variables."""
    with _LOCK:
        plugin_manager.reset_plugin_manager()
        _reload()


def load_plugins(strict: bool | None = None) -> list[plugin_manager.PluginInfo]:
    """Load every plugin afresh (as :func:`reload_plugins`) and return what opreg knows of each plugin.

    ``strict=True`` (default: ``OPREG_STRICT=1`` in the environment) makes any plugin failure, a skipped plugin or
    a skipped op, a :class:`PluginLoadError` naming each, instead of a warning: for an op package's own CI. The
    table then keeps the ops it had before.
    """
    with _LOCK:
        plugin_manager.reset_plugin_manager()
        _reload(strict)
    return plugin_manager.plugin_infos()


def strict_from_environment() -> bool:
    """Whether ``OPREG_STRICT`` asks for strict loading (read at each load)."""
    return os.environ.get(STRICT_VAR, "").strip().lower() not in ("", "0", "false", "no")


def _reload(strict: bool | None = None) -> None:
    """Collect every plugin's ops afresh; the table changes only if the collection succeeds (and, when strict,
    only if no plugin or op was skipped)."""
    global _LOADED, _GENERATION
    with _LOCK:
        table = _collect(plugin_manager.get_plugin_manager())
        if strict_from_environment() if strict is None else strict:
            failures = plugin_manager.skipped()
            if failures:
                _LOADED = False  # so every later use loads again, and raises again until the plugins are fixed
                raise strict_error(failures)
        _install(table)
        _LOADED = True
        _GENERATION += 1


def strict_error(failures: list[plugin_manager.Skipped]) -> PluginLoadError:
    """The error of strict loading: each plugin or op skipped, and why."""
    why = f"strict loading ({STRICT_VAR}=1, opreg.load_plugins(strict=True)) makes any plugin failure an error"
    if len(failures) == 1:
        return PluginLoadError(f"opreg skipped {failures[0].describe()}: {failures[0].reason}; {why}")
    listed = "".join(f"\n- {failure.describe()}: {failure.reason}" for failure in failures)
    return PluginLoadError(f"opreg skipped {len(failures)} plugins or ops; {why}:{listed}")


def _install(table: dict[str, OpDef]) -> None:
    """Make :data:`TABLE` hold ``table`` without a moment in which an op of both is missing: ``update`` replaces
    each op in place (emptying the table first would let another thread's ``mul`` find nothing), then the ops no
    plugin registers any more are removed, one by one. A lookup in another thread sees each op old or new."""
    TABLE.update(table)
    for name in TABLE.keys() - table.keys():
        del TABLE[name]


def _collect(pm: pluggy.PluginManager) -> dict[str, OpDef]:
    """Run each plugin's ``opreg_register_ops`` with a ``register`` that knows which plugin is calling.

    pluggy calls all implementations of a hook in one go and does not tell a callee who its caller is, so the
    hook implementations are called one by one, in the order the plugins were registered (built-ins first); that
    is what lets every op carry the name of the plugin that registered it, and a duplicate be reported with both.
    A plugin's ops enter the table only if all of them are valid. An installed plugin that fails is skipped
    with a warning; a built-in or in-process one raises.
    """
    table: dict[str, OpDef] = {}
    for impl in pm.hook.opreg_register_ops.get_hookimpls():
        name = impl.plugin_name
        if not plugin_manager.isolated(name):
            table |= _ops_of(name, impl.function, table)
            continue
        try:
            table |= plugin_manager.run_plugin(name, functools.partial(_ops_of, name, impl.function, table))
        except Exception as exc:
            plugin_manager.skip(pm, name, f"{type(exc).__name__}: {exc}", exc)
    return table


def _ops_of(plugin: str, hook: Callable[..., object], table: Mapping[str, OpDef]) -> dict[str, OpDef]:
    """The ops one plugin's hook registers, checked against each other and against ``table``.

    An installed plugin's op that is invalid or clashes (with a built-in, another plugin's op, a NumPy name) is
    skipped alone, recorded with its reason (:func:`plugin_manager.skip_op`, a warning), and the plugin's other
    ops load; a built-in's or an in-process plugin's raises, and none of its ops load.
    """
    ops: dict[str, OpDef] = {}
    info = plugin_manager.plugin_infos_by_name().get(plugin)
    distribution = f"{info.distribution} {info.version}" if info and info.status == "loaded" else None
    isolated = plugin_manager.isolated(plugin)
    skipped: set[str] = set()

    def register(**declaration: Any) -> None:
        try:
            try:  # define_op called from here, so that its warnings point at the plugin's register() call
                op = define_op(plugin=plugin, **declaration)
            except TypeError as exc:  # a missing keyword: often one misspelt (input= for inputs=), named first
                where = f"op {declaration.get('name')!r} (plugin {plugin!r})"
                unknown = [keyword for keyword in declaration if keyword not in REGISTER_KEYWORDS]
                if unknown:
                    raise unknown_keyword_error(where, unknown[0]) from None
                raise RegistrationError(f"{where}: register(): {exc}") from None
            except Exception as exc:
                if not _is_typeguard_error(exc):
                    raise
                raise RegistrationError(f"op {declaration.get('name')!r} (plugin {plugin!r}): {exc}") from None
            op = admitted(op)
        except Exception as exc:
            if not isolated:
                raise
            # that op is left out, and said so; the plugin's others load
            name = declaration.get("name")
            label = name if isinstance(name, str) else f"<register() call {len(ops) + len(skipped) + 1}>"
            skipped.add(label)
            plugin_manager.skip_op(plugin, label, f"{type(exc).__name__}: {exc}")
            return
        ops[op.name] = op

    def admitted(op: OpDef) -> OpDef:
        """``op`` as it enters the table, unless it clashes with another op or NumPy name (raises)."""
        if distribution:
            op = dataclasses.replace(op, distribution=distribution)
        if op.name in ops:  # checked first: overrides=True is about another plugin's op, never one's own
            raise RegistrationError(
                f"{op.describe()} is registered twice by that plugin: the later register() call would replace the "
                "earlier op; give each op a name of its own"
            )
        earlier = table.get(op.name)
        if op.overrides is not None:
            if earlier is None:
                raise RegistrationError(
                    f"{op.describe()} declares overrides=True, but no earlier plugin registered {op.name!r}"
                )
            op = dataclasses.replace(op, overrides=earlier.plugin)
        elif earlier is not None:
            raise RegistrationError(
                f"op {op.name!r} is registered by both plugin {earlier.plugin!r} and plugin {plugin!r}; disable one "
                "of them, or declare overrides=True in the later one to replace the earlier op on purpose"
            )
        _check_numpy_names(op, table, ops)
        return op

    hook(register=register)
    if isolated:
        plugin_manager.keep_skipped_ops(plugin, skipped)
    return ops


def _is_typeguard_error(exc: Exception) -> bool:
    """Whether ``exc`` is typeguard's ``TypeCheckError``: under typeguard's import hook (CI's typeguard pass) its
    check of define_op's annotations comes before define_op's own checks. Looked up, not imported: only a loaded
    typeguard raises it, and importing typeguard would take most of ``import opreg``'s time."""
    typeguard = sys.modules.get("typeguard")
    return typeguard is not None and isinstance(exc, typeguard.TypeCheckError)


def _check_numpy_names(op: OpDef, table: Mapping[str, OpDef], ops: Mapping[str, OpDef]) -> None:
    """A NumPy name is one op's: ``np.exp(tensor)`` quietly running another plugin's op would be a wrong answer with
    no error. An op that overrides one of the same name may take over that op's NumPy names."""
    for other in (*table.values(), *ops.values()):
        if other.name == op.name and op.overrides is not None:
            continue
        taken = sorted(set(op.numpy) & set(other.numpy))
        if taken:
            raise RegistrationError(
                f"{op.describe()} declares numpy={taken[0]!r}, which {other.describe()} declares already; NumPy "
                "functions on Tensors would run only one of them. Leave it out of one, or override that op by name"
            )


def numpy_op(numpy_name: str) -> OpDef | None:
    """The op that declares it implements NumPy's ``numpy_name`` (``numpy="subtract"``), else None.

    Only a declaration counts, never a name that happens to match: the built-in ``transpose`` swaps the last two
    axes, where ``np.transpose`` reverses them all."""
    table = op_table()
    op_name = _numpy_index(table).get(numpy_name)
    return None if op_name is None else table.get(op_name)


_index: tuple[int, dict[str, str]] = (-1, {})


def _numpy_index(table: Mapping[str, OpDef]) -> dict[str, str]:
    """NumPy name -> op name, rebuilt when the registry reloads."""
    global _index
    if _index[0] != _GENERATION:
        # A copy of the ops, taken in one step: another thread registering a plugin may change the table meanwhile
        _index = (_GENERATION, {alias: op.name for op in list(table.values()) for alias in op.numpy})
    return _index[1]
