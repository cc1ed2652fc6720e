"""Function transforms, as ``torch.func`` and JAX have them: derivatives of functions, not of tensors.

``grad``, ``value_and_grad``, ``vjp``, ``jacrev``, ``hvp`` (reverse mode), ``jvp``, ``jacfwd`` (and ``jacobian``)
and ``hessian`` (forward mode, for every op: declared rules or derived from backwards) work on any function built from
registered ops (NumPy functions on Tensors, ``opreg.numpy``, operators), on arrays and Tensors alike, and compose
with each other to any order; ``vmap`` batches any of them (``vmap(grad(loss))``: per-example gradients).
Inputs and outputs may be trees of tuples, named tuples, lists and dicts (:mod:`opreg.func.pytree`).
"""

from opreg.func.forward import hessian, jacfwd, jacobian, jvp
from opreg.func.pytree import tree_flatten, tree_map, tree_unflatten
from opreg.func.reverse import grad, hvp, jacrev, value_and_grad, vjp
from opreg.func.vmap import vmap

__all__ = [
    "grad",
    "hessian",
    "hvp",
    "jacfwd",
    "jacobian",
    "jacrev",
    "jvp",
    "tree_flatten",
    "tree_map",
    "tree_unflatten",
    "value_and_grad",
    "vjp",
    "vmap",
]
