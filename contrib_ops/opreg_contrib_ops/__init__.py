"""opreg-contrib-ops: activations, reductions, softmax and losses for opreg, as one op package.

The package is an ordinary opreg plugin (entry point ``contrib_ops`` in the ``opreg`` group): this hook is its
only hook, and each module registers its own ops, each beside its derivative. Like opreg's built-in plugins, the
modules import only the plugin API: :mod:`opreg.plugin`, :mod:`opreg.numpy` and :mod:`opreg.ops`.
"""

from __future__ import annotations

from opreg.plugin import Register, hookimpl
from opreg_contrib_ops import activations, losses, softmax


@hookimpl
def opreg_register_ops(register: Register) -> None:
    for module in (activations, softmax, losses):
        module.register_ops(register)
