"""The hooks an opreg plugin can implement.

Built-in ops and third-party op packages implement exactly these hooks; nothing else reaches the registry.
"""

from __future__ import annotations

from typing import Protocol

import pluggy

PROJECT_NAME = "opreg"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class Register(Protocol):
    """The ``register`` callable handed to :func:`opreg_register_ops`; see :func:`opreg.registry.define_op`."""

    def __call__(self, **op_declaration: object) -> None: ...


@hookspec
def opreg_register_ops(register: Register) -> None:
    """Register this plugin's ops by calling ``register(name=..., inputs=..., forward=..., backward=...)``.

    Call ``register`` once per op. The keywords are those of :func:`opreg.registry.define_op`. The hook runs once,
    when the registry is first used, never per recorded operation.
    """
