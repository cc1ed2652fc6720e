"""The pluggy plugin manager: the built-in op plugins, and op packages found through entry points.

Built-ins are registered by module name, so they load even with auto-loading off. Installed op packages declare
``[project.entry-points.opreg]``; each is loaded on its own, and one that fails to import, to register, or (later,
in the registry) to run its hook is skipped with a warning naming its distribution, version, entry point and
error. pluggy's ``load_setuptools_entrypoints`` is not used because it stops at the first failing import.

An installed plugin's code (its import, its hook) runs through :func:`run_plugin`, in a thread of its own:

* A plugin that raises ``SystemExit`` (``sys.exit()``) or ``KeyboardInterrupt`` itself is skipped like any failing
  plugin, rather than ending every program that imports opreg. A real Ctrl-C still stops opreg: Python delivers
  SIGINT to the main thread only, which is meanwhile waiting for the plugin's thread, so the user's
  ``KeyboardInterrupt`` is raised there and propagates, while one that comes out of the plugin's thread was raised
  by the plugin. No signal handler is installed, so none of the program's own is replaced, and loading from a
  thread other than the main one works the same.
* A plugin that hangs is given up on after ``OPREG_PLUGIN_TIMEOUT`` seconds, and remembered
  (:mod:`opreg.hung_plugins`): later processes skip it at once, until its distribution changes or
  ``OPREG_RETRY_PLUGINS=1`` tries it again.

Environment variables, read when the plugin manager is first created:

* ``OPREG_DISABLE_PLUGIN_AUTOLOAD=1``: load only the built-ins (as pytest's variable of that name).
* ``OPREG_LOAD_PLUGINS=dist-a,dist-b``: load only these distributions (or entry point names) besides the
  built-ins (as llm's ``LLM_LOAD_PLUGINS``).
* ``OPREG_PLUGIN_TIMEOUT=30``: seconds an installed plugin's import or registration may take before it is
  skipped as hanging (and remembered, above).
* ``OPREG_RETRY_PLUGINS=1``: forget the plugins remembered as hanging, and try each of them again.
* ``OPREG_CACHE_DIR``: the folder of that record (default: ``$XDG_CACHE_HOME/opreg``, or ``~/.cache/opreg``).
* ``OPREG_STRICT=1``: any skipped plugin or op is a :class:`opreg.errors.PluginLoadError` when the ops are
  loaded, rather than a warning (read by :mod:`opreg.registry` at each load).

An installed plugin's op that is invalid or clashes is skipped alone (:func:`skip_op`), its other ops load. Each
skip is recorded with where it failed (:func:`failure_location`), and :func:`skipped` lists them all: what the
checks fail on (:mod:`opreg.selection`) and strict loading raises.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import sys
import threading
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import pluggy

from opreg import hookspecs, hung_plugins
from opreg.errors import RegistrationError
from opreg.hung_plugins import RETRY_VAR

if TYPE_CHECKING:  # importlib.metadata is imported where plugins load, not by `import opreg` (a third of its time)
    from importlib import metadata

#: The built-in op plugins (the ``plugins/`` folder, installed as ``opreg_builtins``). Each is an ordinary plugin
#: module implementing ``opreg_register_ops``, registered exactly as an installed op package is.
BUILTIN_PLUGINS = (
    "opreg_builtins.arithmetic",
    "opreg_builtins.casting",
    "opreg_builtins.complex_parts",
    "opreg_builtins.conditions",
    "opreg_builtins.convolution",
    "opreg_builtins.cumulative",
    "opreg_builtins.decompositions",
    "opreg_builtins.differences",
    "opreg_builtins.dropout",
    "opreg_builtins.einsum",
    "opreg_builtins.elementwise",
    "opreg_builtins.exponential",
    "opreg_builtins.hyperbolic",
    "opreg_builtins.indexing",
    "opreg_builtins.joining",
    "opreg_builtins.linalg",
    "opreg_builtins.losses",
    "opreg_builtins.numpy_linalg",
    "opreg_builtins.piecewise",
    "opreg_builtins.powers",
    "opreg_builtins.products",
    "opreg_builtins.rearrange",
    "opreg_builtins.reductions",
    "opreg_builtins.rounding",
    "opreg_builtins.selection",
    "opreg_builtins.shapes",
    "opreg_builtins.splitting",
    "opreg_builtins.statistics",
    "opreg_builtins.trigonometric",
)

ENTRY_POINT_GROUP = "opreg"
TIMEOUT_VAR = "OPREG_PLUGIN_TIMEOUT"
DEFAULT_TIMEOUT = 30.0
T = TypeVar("T")
DISABLE_AUTOLOAD_VAR = "OPREG_DISABLE_PLUGIN_AUTOLOAD"
LOAD_ONLY_VAR = "OPREG_LOAD_PLUGINS"


class PluginWarning(UserWarning):
    """An installed op plugin was skipped; opreg goes on without it."""


class PluginExit(Exception):
    """An installed plugin's own code raised ``SystemExit`` or ``KeyboardInterrupt``: it is skipped, as a plugin
    raising any other exception is, instead of ending the program."""


@dataclass(frozen=True)
class SkippedOp:
    """One op of a loaded plugin that was left out (a clash, an invalid declaration); the plugin's others load."""

    name: str
    reason: str
    location: str | None = None  # "file:line" of the register() call


@dataclass
class PluginInfo:
    """What ``opreg plugins`` shows of one plugin: where it came from and whether it loaded."""

    name: str
    distribution: str | None
    version: str | None
    path: str | None
    status: Literal["builtin", "loaded", "registered", "skipped", "disabled"]
    reason: str = ""
    entry_point: str | None = None
    #: "file:line" of the failure that skipped the plugin (the import error's line, the hook's), when known
    location: str | None = None
    #: ops of this (loaded) plugin that were skipped, by name: filled each time the registry collects the ops
    skipped_ops: dict[str, SkippedOp] = field(default_factory=dict)

    def describe(self) -> str:
        """``plugin 'p' (distribution d 1.0, entry point p = mod)``: how skip warnings name a plugin."""
        source = f"distribution {self.distribution} {self.version}" if self.distribution else "no distribution"
        where = f", entry point {self.entry_point}" if self.entry_point else ""
        return f"plugin {self.name!r} ({source}{where})"


_pm: pluggy.PluginManager | None = None
_infos: dict[str, PluginInfo] = {}
#: Held while the plugin manager is built, so that threads using opreg for the first time at once build one (two
#: would load every entry point twice, the second time warning that each is a duplicate).
_building = threading.RLock()
_entry_points: dict[str, metadata.EntryPoint] = {}  # by plugin name: what hung_plugins knows a plugin by
#: Entry points ignored because another distribution uses their name: skipped plugins that _infos cannot hold
_duplicates: list[PluginInfo] = []


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, created with the built-ins and the installed op packages on first use."""
    global _pm
    pm = _pm
    if pm is not None:
        return pm
    with _building:
        if _pm is None:  # no other thread built it while this one waited
            pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
            pm.add_hookspecs(hookspecs)
            _infos.clear()
            _entry_points.clear()
            _duplicates.clear()
            for module_name in BUILTIN_PLUGINS:
                module = importlib.import_module(module_name)
                pm.register(module, name=module_name)
                _infos[module_name] = PluginInfo(
                    module_name, "opreg", _version("opreg"), _source_file(module), "builtin"
                )
            _load_entry_points(pm)
            _pm = pm
        return _pm


def reset_plugin_manager() -> None:
    """Forget all plugins, so the next use loads them afresh (after installing a package or changing OPREG_*)."""
    global _pm
    _pm = None


def plugin_infos() -> list[PluginInfo]:
    """Every plugin opreg knows of: built-in, loaded, registered in-process, skipped or disabled (an entry point
    ignored because another distribution took its name is listed as skipped, after the one that took it)."""
    get_plugin_manager()
    return [*_infos.values(), *_duplicates]


def plugin_infos_by_name() -> dict[str, PluginInfo]:
    """:func:`plugin_infos` by plugin name."""
    get_plugin_manager()
    return dict(_infos)


def isolated(name: str) -> bool:
    """Whether a failure of this plugin should skip it (installed packages) rather than raise (built-ins, ours)."""
    info = _infos.get(name)
    return info is not None and info.status == "loaded"


def note_registered(name: str, plugin: object) -> None:
    """Record a plugin registered in-process with :func:`opreg.register_plugin`."""
    _infos[name] = PluginInfo(name, None, None, _source_file(plugin), "registered")


def forget(name: str) -> None:
    """Drop the record of a plugin that was unregistered."""
    _infos.pop(name, None)


def skip(pm: pluggy.PluginManager, name: str, reason: str, error: BaseException | None = None) -> None:
    """Unregister an installed plugin that failed, keep why (and where, from ``error``), and warn; every other
    plugin goes on loading."""
    if pm.get_plugin(name) is not None:
        pm.unregister(name=name)
    info = _infos[name]
    info.status, info.reason = "skipped", reason
    if error is not None:
        entry_point = _entry_points.get(name)
        package = entry_point.module.partition(".")[0] if entry_point is not None else None
        info.location = failure_location(error, package, fallback=info.path)
    info.skipped_ops.clear()  # none of its ops load
    warnings.warn(f"opreg skipped {info.describe()}: {reason}", PluginWarning, stacklevel=2)


def skip_op(plugin: str, op: str, reason: str) -> None:
    """Record that one op of the installed plugin ``plugin`` was left out, and warn once (the registry collects
    the ops again on every reload): the plugin's other ops load. Called from its ``register()`` call, which is
    where the op is located."""
    info = _infos[plugin]
    skipped = SkippedOp(op, reason, _caller_location())
    if info.skipped_ops.get(op) != skipped:
        warnings.warn(
            f"opreg skipped op {op!r} of {info.describe()}, and loaded its other ops: {reason}",
            PluginWarning,
            stacklevel=3,  # the plugin's register() call
        )
    info.skipped_ops[op] = skipped


def keep_skipped_ops(plugin: str, names: set[str]) -> None:
    """After a plugin's ops were collected again: forget the ops it no longer has skipped."""
    info = _infos.get(plugin)
    if info is not None:
        for name in info.skipped_ops.keys() - names:
            del info.skipped_ops[name]


@dataclass(frozen=True, eq=False)
class Skipped:
    """A plugin, or one op of a plugin, that loading left out: what checks fail on and strict loading raises."""

    info: PluginInfo
    op: str | None  # None: the whole plugin
    reason: str
    location: str | None

    @property
    def plugin(self) -> str:
        return self.info.name

    def describe(self) -> str:
        """``plugin 'p' (...)``, or ``op 'o' of plugin 'p' (...)``."""
        return self.info.describe() if self.op is None else f"op {self.op!r} of {self.info.describe()}"


def skipped() -> list[Skipped]:
    """Every installed plugin that was skipped, and every skipped op of a loaded one, as last loaded (plugins
    disabled on purpose, by ``OPREG_DISABLE_PLUGIN_AUTOLOAD`` or ``OPREG_LOAD_PLUGINS``, are not skipped)."""
    found = []
    for info in plugin_infos():
        if info.status == "skipped":
            found.append(Skipped(info, None, info.reason, info.location))
        found.extend(Skipped(info, op.name, op.reason, op.location) for op in info.skipped_ops.values())
    return found


#: Where a plugin's failure is not: opreg's own modules, pluggy's, the import machinery's, threading's.
_NOT_THE_PLUGIN = (
    os.path.dirname(os.path.abspath(__file__)) + os.sep,
    os.path.dirname(os.path.abspath(pluggy.__file__)) + os.sep,
    os.path.dirname(os.path.abspath(threading.__file__)) + os.sep + "threading.py",
    os.path.dirname(os.path.abspath(threading.__file__)) + os.sep + "importlib" + os.sep,
    "<frozen ",
)


def _outside_opreg(filename: str) -> bool:
    return not filename.startswith("<frozen ") and not os.path.abspath(filename).startswith(_NOT_THE_PLUGIN)


def _caller_location() -> str | None:
    """``file:line`` of the innermost caller outside opreg and pluggy: the plugin's line that called into opreg."""
    frame = sys._getframe(1)
    while frame is not None:
        if _outside_opreg(frame.f_code.co_filename):
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back  # type: ignore[assignment]
    return None


def failure_location(
    error: BaseException | None, package: str | None = None, fallback: str | None = None
) -> str | None:
    """``file:line`` of the plugin's code where ``error`` arose: a syntax error's own line; else the innermost frame
    of its traceback in the plugin's ``package`` (the import statement that failed, the line of the hook that
    raised), or, when none is, outside opreg, pluggy and the import machinery; else ``fallback``."""
    if isinstance(error, SyntaxError) and error.filename and error.lineno:
        return f"{error.filename}:{error.lineno}"
    seen: set[int] = set()
    while error is not None and id(error) not in seen:  # through the chain: an error re-raised by opreg
        seen.add(id(error))
        outside = [(frame, line) for frame, line in traceback.walk_tb(error.__traceback__)]
        outside = [(frame, line) for frame, line in outside if _outside_opreg(frame.f_code.co_filename)]
        own = [(frame, line) for frame, line in outside if _in_package(frame.f_globals.get("__name__"), package)]
        for frame, line in (own or outside)[-1:]:
            return f"{frame.f_code.co_filename}:{line}"
        error = error.__cause__ or error.__context__
    return fallback


def _in_package(module: object, package: str | None) -> bool:
    return package is not None and isinstance(module, str) and (module == package or module.startswith(package + "."))


def _version(distribution: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _flag(variable: str) -> bool:
    return os.environ.get(variable, "").strip().lower() not in ("", "0", "false", "no")


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    from importlib import metadata

    autoload = not _flag(DISABLE_AUTOLOAD_VAR)
    only = os.environ.get(LOAD_ONLY_VAR)
    wanted = None if only is None else {part.strip() for part in only.split(",") if part.strip()}
    if _flag(RETRY_VAR):
        hung_plugins.forget_all()
    hung = hung_plugins.read()
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = entry_point.dist
        name = entry_point.name
        info = PluginInfo(
            name,
            dist.name if dist else None,
            dist.version if dist else None,
            None,
            "loaded",
            entry_point=f"{name} = {entry_point.value}",
        )
        if name in _infos:
            _warn_duplicate(info, _infos[name])
            continue
        _infos[name] = info
        _entry_points[name] = entry_point
        if not autoload:
            info.status, info.reason = "disabled", f"{DISABLE_AUTOLOAD_VAR} is set"
        elif wanted is not None and not {name, info.distribution} & wanted:
            info.status, info.reason = "disabled", f"not listed in {LOAD_ONLY_VAR}"
        elif hung and (why := hung.get(hung_plugins.identity(entry_point))):
            until = f"until it changes (another version, a reinstall) or {RETRY_VAR}=1 tries it again"
            skip(pm, name, f"{why}; skipped without waiting {until}")
        else:
            _load_one(pm, entry_point, info)


def guarded(name: str, call: Callable[[], T], timeout: float | None = None, setting: str = TIMEOUT_VAR) -> T:
    """``call()``, given up on after ``timeout`` seconds (default: ``OPREG_PLUGIN_TIMEOUT``, or 30) with
    :class:`TimeoutError` if it hangs (an import waiting on a network, a loop), so opreg goes on without it;
    ``setting`` names what sets the timeout, for the message, which also shows where the call was. What the call
    raises is raised here."""
    finished, value = _in_thread(name, call, _timeout() if timeout is None else timeout, setting)
    if not finished:
        raise value
    return cast(T, value)  # what call() returned: the flag beside it tells, which the checker cannot follow


def run_plugin(name: str, call: Callable[[], T]) -> T:
    """``call()``, code of the installed plugin ``name`` (its import, its hook), run as :func:`guarded` runs it,
    except that a ``SystemExit`` or ``KeyboardInterrupt`` the plugin raises itself becomes :class:`PluginExit`,
    and a hang is remembered (see the module's docstring for both)."""
    timeout = _timeout()
    try:
        finished, value = _in_thread(name, call, timeout, TIMEOUT_VAR)
    except TimeoutError as exc:
        why = f"it did not finish within {timeout:g} s ({TIMEOUT_VAR}) when last loaded"
        hung_plugins.remember(_entry_points[name], why)
        later = f"Later processes skip it without waiting, until it changes or {RETRY_VAR}=1 tries it again."
        raise TimeoutError(f"{str(exc).rstrip()}\n{later}") from None
    if finished:
        return cast(T, value)  # as in guarded
    if isinstance(value, Exception):
        raise value
    raise PluginExit(
        f"it raised {value!r} itself, which would end the program; a plugin reports a failure by raising an Exception"
    ) from value


def _timeout() -> float:
    return float(os.environ.get(TIMEOUT_VAR, DEFAULT_TIMEOUT))


def _in_thread(name: str, call: Callable[[], T], timeout: float, setting: str) -> tuple[bool, Any]:
    """``(True, what call() returned)`` or ``(False, what it raised)``, ``BaseException`` included: the call runs
    in a daemon thread, which Python cannot stop, so one still running after ``timeout`` seconds is abandoned
    (never joined) and :class:`TimeoutError` raised. A signal (Ctrl-C) interrupts the wait here, in the caller's
    thread."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name=f"opreg plugin {name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if not outcome:
        frame = sys._current_frames().get(thread.ident or 0)
        where = f" It was at:\n{''.join(traceback.format_stack(frame)[-3:])}" if frame is not None else ""
        raise TimeoutError(f"did not finish within {timeout:g} s ({setting}); it may hang.{where}")
    return cast(tuple[bool, Any], outcome[0])


def _load_one(pm: pluggy.PluginManager, entry_point: metadata.EntryPoint, info: PluginInfo) -> None:
    try:
        plugin = run_plugin(info.name, entry_point.load)
    except Exception as exc:
        skip(pm, info.name, f"import failed: {type(exc).__name__}: {exc}", exc)
        return
    info.path = _source_file(plugin)
    try:
        pm.register(plugin, name=info.name)
        check_hooks(pm, plugin)
    except Exception as exc:
        skip(pm, info.name, f"invalid plugin: {type(exc).__name__}: {exc}")
        info.location = _unknown_hook_location(plugin) or info.path


def _source_file(plugin: object) -> str | None:
    """The file a plugin (a module, a class, or an instance of one) is defined in; ``None`` if it has none.

    A built-in module has none (TypeError), nor has a class defined by ``python -c`` or typed at a prompt (OSError).
    """
    try:
        return inspect.getfile(plugin if inspect.ismodule(plugin) or inspect.isclass(plugin) else type(plugin))
    except (TypeError, OSError):
        return None


def check_hooks(pm: pluggy.PluginManager, plugin: object) -> None:
    """pluggy's check that every hook implementation is one of opreg's hooks, so that a typo is an error rather than
    a plugin that silently registers nothing; its message gains the hook meant."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        hooks = [name for name in dir(hookspecs) if name.startswith("opreg_")]
        unknown = [name for name in dir(plugin) if name.startswith("opreg_") and name not in hooks]
        if not unknown:
            raise
        close = difflib.get_close_matches(unknown[0], hooks, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"opreg's hooks are {', '.join(hooks)}"
        where = _unknown_hook_location(plugin)
        raise RegistrationError(f"unknown hook {unknown[0]!r}{f' (at {where})' if where else ''}: {hint}") from exc


def _unknown_hook_location(plugin: object) -> str | None:
    """``file:line`` of the first ``opreg_*`` function of ``plugin`` that is no hook of opreg's (a misspelt one)."""
    for attribute in dir(plugin):
        function = getattr(plugin, attribute, None)
        if attribute.startswith("opreg_") and not hasattr(hookspecs, attribute) and callable(function):
            try:
                return f"{inspect.getsourcefile(function)}:{inspect.getsourcelines(function)[1]}"
            except (TypeError, OSError):
                return None
    return None


def _warn_duplicate(info: PluginInfo, first: PluginInfo) -> None:
    reason = f"{first.distribution} {first.version} uses the entry point name {info.name!r} already"
    info.status, info.reason = "skipped", reason
    _duplicates.append(info)
    warnings.warn(
        f"opreg ignored entry point {info.name!r} of distribution {info.distribution} {info.version}: "
        f"{first.distribution} {first.version} uses that name already",
        PluginWarning,
        stacklevel=3,
    )
