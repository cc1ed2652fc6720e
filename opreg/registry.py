"""The op registry: what an op is (:class:`OpDef`), how a plugin declares one, and the name -> op table.

Plugins declare ops through the ``opreg_register_ops`` hook. This module runs that hook once per plugin when the
registry is first used, validates every declaration (types through typeguard, arities through ``inspect``), and
fills one plain dict that the engine reads on its hot path. Neither pluggy nor typeguard runs after that.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import pluggy
from typeguard import TypeCheckError, typechecked

from opreg import plugin_manager
from opreg.errors import RegistrationError, UnknownOpError

SampleInputs = Callable[[np.random.Generator], Sequence[np.ndarray]]

#: The gradient check's defaults, PyTorch ``gradcheck``'s; an op may override any of them with ``tolerances=``.
CHECK_TOLERANCES = MappingProxyType({"eps": 1e-6, "atol": 1e-5, "rtol": 1e-3})


@dataclass(frozen=True, slots=True)
class OpDef:
    """One registered op: a forward/backward pair with a declared input order.

    ``forward(*inputs)`` returns the output array. ``backward(grad_output, *inputs)`` (plus ``output=`` when
    ``backward_uses_output``) returns one gradient per declared input, in the declared order, ``None`` where the
    input gets no gradient. Gradients may have the broadcast shape; the engine sums them back to the input's shape.
    """

    name: str
    inputs: tuple[str, ...]
    forward: Callable[..., Any]
    backward: Callable[..., Sequence[Any]]
    differentiable: tuple[bool, ...]
    sample_inputs: SampleInputs
    doc: str
    backward_uses_output: bool
    plugin: str
    tolerances: Mapping[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        """``op 'name' (plugin 'p')``: how every error message names this op."""
        return f"op {self.name!r} (plugin {self.plugin!r})"

    def describe_input(self, position: int) -> str:
        """``input 1 'b'``: how error messages name one of this op's inputs."""
        return f"input {position} {self.inputs[position]!r}"


@typechecked
def define_op(
    *,
    plugin: str,
    name: str,
    inputs: tuple[str, ...] | list[str],
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    differentiable: tuple[str, ...] | list[str] | None = None,
    sample_inputs: SampleInputs | None = None,
    doc: str | None = None,
    backward_uses_output: bool = False,
    tolerances: dict[str, float] | None = None,
) -> OpDef:
    """Validate one op declaration and return its :class:`OpDef`; the keywords are those of ``register``.

    ``differentiable`` names the inputs that get gradients (default: all; the labels of a loss are not).
    ``sample_inputs(rng)`` draws valid inputs for gradient checks (default: standard normal 3x4 arrays; declare
    it when the op needs positive inputs or particular shapes). ``doc`` defaults to ``forward.__doc__``.
    ``backward_uses_output`` makes the engine pass ``output=`` to backward, so exp or sigmoid need not recompute.
    ``tolerances`` overrides the gradient check's ``eps``, ``atol`` or ``rtol`` for this op.
    """
    where = f"op {name!r} (plugin {plugin!r})"
    if not name.isidentifier():
        raise RegistrationError(f"{where}: the name must be a Python identifier")
    inputs = tuple(inputs)
    if not inputs or not all(i.isidentifier() for i in inputs) or len(set(inputs)) != len(inputs):
        raise RegistrationError(f"{where}: inputs must be one or more distinct identifiers, got {inputs!r}")
    wanted = inputs if differentiable is None else tuple(differentiable)
    unknown = sorted(set(wanted) - set(inputs))
    if unknown:
        raise RegistrationError(f"{where}: differentiable names {unknown} that are not among inputs {inputs}")
    unknown = sorted(set(tolerances or ()) - set(CHECK_TOLERANCES))
    if unknown:
        raise RegistrationError(f"{where}: tolerances takes {sorted(CHECK_TOLERANCES)}, not {unknown}")
    _check_arity(where, "forward", forward, len(inputs), {})
    extra = {"output": None} if backward_uses_output else {}
    _check_arity(where, "backward", backward, 1 + len(inputs), extra)
    return OpDef(
        name=name,
        inputs=inputs,
        forward=forward,
        backward=backward,
        differentiable=tuple(i in wanted for i in inputs),
        sample_inputs=sample_inputs or _standard_normal_samples(len(inputs)),
        doc=(inspect.getdoc(forward) or "") if doc is None else doc,
        backward_uses_output=backward_uses_output,
        plugin=plugin,
        tolerances=MappingProxyType(dict(tolerances or {})),
    )


def _check_arity(where: str, role: str, fn: Callable[..., Any], n_positional: int, keywords: dict) -> None:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins and ufuncs may have no introspectable signature
        return
    try:
        signature.bind(*range(n_positional), **keywords)
    except TypeError as exc:
        call = f"{n_positional} positional arguments" + (" and output=" if keywords else "")
        raise RegistrationError(f"{where}: {role}{signature} cannot be called with {call}: {exc}") from None


def _standard_normal_samples(n_inputs: int) -> SampleInputs:
    def sample(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        return tuple(rng.standard_normal((3, 4)) for _ in range(n_inputs))

    return sample


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


# The one table behind the registry. It is filled in place, so the engines that hold it see plugins added later.
_TABLE: dict[str, OpDef] = {}
_LOADED = False


def unknown_op_error(name: object) -> UnknownOpError:
    """The error for an op name nobody registered, suggesting the closest registered names."""
    close = difflib.get_close_matches(str(name), list(_TABLE), n=3)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else f"; registered ops: {sorted(_TABLE)}"
    return UnknownOpError(f"no op named {name!r} is registered{hint}")


def op_table() -> dict[str, OpDef]:
    """The live dict behind the registry, for the engine's hot path (one plain dict lookup). Do not mutate it."""
    if not _LOADED:
        _reload()
    return _TABLE


def get_registry() -> OpRegistry:
    """The registry of every op the loaded plugins registered (loading them on first use)."""
    return OpRegistry(op_table())


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register a plugin object or module in this process and add its ops; returns its plugin name.

    For notebooks and tests; installed packages are found by their entry points instead. If the plugin's ops are
    invalid or clash with registered ones, the plugin is unregistered again and the error raised.
    """
    pm = plugin_manager.get_plugin_manager()
    registered_name = pm.register(plugin, name=name)
    if registered_name is None:
        raise RegistrationError(f"plugin {name or plugin!r} is already registered or blocked")
    plugin_manager.note_registered(registered_name, plugin)
    try:
        _reload()
    except Exception:  # the table is untouched; only the plugin manager has to forget the plugin
        pm.unregister(name=registered_name)
        plugin_manager.forget(registered_name)
        raise
    return registered_name


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered with :func:`register_plugin`, and its ops."""
    plugin_manager.get_plugin_manager().unregister(name=name)
    plugin_manager.forget(name)
    _reload()


def reload_plugins() -> None:
    """Load every plugin afresh: after installing an op package, or changing ``OPREG_*`` variables."""
    plugin_manager.reset_plugin_manager()
    _reload()


def _reload() -> None:
    """Collect every plugin's ops afresh; the table changes only if the collection succeeds."""
    global _LOADED
    table = _collect(plugin_manager.get_plugin_manager())
    from opreg import checkmode  # checkmode builds on this module; imported here, where it is needed

    if checkmode.enabled_by_environment():
        table = checkmode.checked_table(table)
    _TABLE.clear()
    _TABLE.update(table)
    _LOADED = True


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
        try:
            table |= _ops_of(impl.plugin_name, impl.function, table)
        except Exception as exc:
            if not plugin_manager.isolated(impl.plugin_name):
                raise
            plugin_manager.skip(impl.plugin_name, f"{type(exc).__name__}: {exc}")
    return table


def _ops_of(plugin: str, hook: Callable[..., None], table: Mapping[str, OpDef]) -> dict[str, OpDef]:
    """The ops one plugin's hook registers, checked against each other and against ``table``."""
    ops: dict[str, OpDef] = {}

    def register(**declaration: Any) -> None:
        try:
            op = define_op(plugin=plugin, **declaration)
        except TypeCheckError as exc:
            where = f"op {declaration.get('name')!r} (plugin {plugin!r})"
            raise RegistrationError(f"{where}: {exc}") from None
        except TypeError as exc:  # an unknown or missing keyword
            raise RegistrationError(f"plugin {plugin!r}: register(): {exc}") from None
        first = table.get(op.name) or ops.get(op.name)
        if first is not None:
            raise RegistrationError(
                f"op {op.name!r} is registered by both plugin {first.plugin!r} and plugin {plugin!r}; "
                "disable one of them"
            )
        ops[op.name] = op

    hook(register=register)
    return ops
