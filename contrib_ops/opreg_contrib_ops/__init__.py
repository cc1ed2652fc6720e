"""opreg-contrib-ops: activations, reductions, shape changes, softmax and losses for opreg, as one op package.

The package is an ordinary opreg plugin (entry point ``contrib_ops`` in the ``opreg`` group): this hook is its
only hook, and each module registers its own ops, each beside its derivative.
"""

from __future__ import annotations

import opreg
from opreg_contrib_ops import activations, losses, reductions, shapes, softmax


@opreg.hookimpl
def opreg_register_ops(register: opreg.Register) -> None:
    for module in (activations, reductions, shapes, softmax, losses):
        module.register_ops(register)
