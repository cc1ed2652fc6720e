"""The pluggy plugin manager: the hookspecs and the built-in op plugins, registered like any other plugin."""

from __future__ import annotations

import importlib

import pluggy

from opreg import hookspecs

#: The built-in op plugins (the ``plugins/`` folder, installed as ``opreg_builtins``). Each is an ordinary plugin
#: module implementing ``opreg_register_ops``; they are registered by name here so they load even when plugin
#: auto-loading is turned off.
BUILTIN_PLUGINS = (
    "opreg_builtins.arithmetic",
    "opreg_builtins.elementwise",
    "opreg_builtins.linalg",
    "opreg_builtins.losses",
)

_pm: pluggy.PluginManager | None = None


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, created with the built-in plugins on first use."""
    global _pm
    if _pm is None:
        pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        pm.add_hookspecs(hookspecs)
        for module_name in BUILTIN_PLUGINS:
            pm.register(importlib.import_module(module_name), name=module_name)
        _pm = pm
    return _pm
