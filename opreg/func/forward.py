"""Forward mode as functions: :func:`jvp`, :func:`jacfwd` (and its alias :func:`jacobian`), :func:`hessian`.

Each runs ``f`` once on inputs of its own (:func:`opreg.func.core.lift`), recording the graph, then pushes tangents
through the recorded nodes from the inputs to the outputs (:func:`opreg.func.tangents.push_forward`): once for
``jvp``, once per input element for ``jacfwd``, on the same graph. Names and conventions are ``torch.func``'s
(and JAX's): ``jvp(f, primals, tangents) -> (output, jvp_out)``, ``argnums``, ``has_aux``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.errors import OpUsageError
from opreg.func.batching import Batched, active_levels, from_physical, strip, to_physical
from opreg.func.core import (
    argnums_tuple,
    describe,
    draw_floor,
    gives_tensors,
    keeps_graph,
    lift,
    lower,
    nest_jacobian,
    of_arguments,
    tracing,
)
from opreg.func.pytree import TreeSpec, tree_flatten, tree_unflatten
from opreg.func.reverse import _float_dtype, _jacrev, _output, _outputs, _split_aux
from opreg.func.tangents import push_forward, recorded
from opreg.tensor import Tensor


class _Linearized:
    """``f`` run once on lifted inputs, and what pushing tangents through its graph needs."""

    def __init__(
        self,
        f: Callable[..., Any],
        leaves: list[Any],
        spec: TreeSpec,
        transform: str,
        has_aux: bool,
        given: list[Any],
        names: Sequence[str] | None = None,
    ) -> None:
        self.tensors, self.record = gives_tensors(given), keeps_graph(given)
        self.floor = draw_floor()
        #: Inside vmap the inputs are lifted batched at every active level (:func:`lift`), and tangents are pushed
        #: through the physical graph (one leading axis per level), each example's tangent its own.
        self.levels = active_levels()
        with tracing():  # lift too: under no_grad, a Tensor's positive would not be recorded, and cut the graph
            where = names or [f"primal leaf {i}" for i in range(len(leaves))]
            self.inputs = [lift(x, transform, w) for x, w in zip(leaves, where, strict=True)]
            result = f(*tree_unflatten(spec, self.inputs))
        output, aux = _split_aux(result, has_aux, transform, f)
        self.aux = _outputs(aux, self.tensors, self.record)
        self.outputs, self.out_spec = tree_flatten(output)
        with tracing():
            self.physical = [to_physical(o, self.levels) for o in self.outputs] if self.levels else self.outputs
        self.order = recorded(self.physical, self.floor)

    def push(self, tangents: Sequence[Any]) -> list[Any]:
        """Each output's tangent given each input's (``None``: zero, and nothing pushed from it); zeros of the
        output's shape where nothing reaches it."""
        with tracing():  # when recording, the tangents are recorded whatever no_grad is around
            if self.levels:
                tangents = [None if t is None else to_physical(t, self.levels) for t in tangents]
            seeds = {id(strip(x)): t for x, t in zip(self.inputs, tangents, strict=True)}
            pushed = push_forward(self.physical, self.order, seeds, self.record)
        if self.levels:
            pushed = [None if t is None else from_physical(t, self.levels) for t in pushed]
        return [
            np.zeros(np.shape(o), _float_dtype(o)) if t is None else t
            for o, t in zip(self.outputs, pushed, strict=True)
        ]

    def value(self) -> Any:
        return tree_unflatten(self.out_spec, [_output(o, self.tensors, self.record) for o in self.outputs])


def _tangent(tangent: Any, primal: Tensor | Batched, position: int) -> Any:
    """A tangent checked against its primal: of its shape, real; an array is cast to the primal's dtype."""
    if np.shape(tangent) != primal.shape:
        raise OpUsageError(
            f"jvp: tangent leaf {position} has shape {np.shape(tangent)}, and its primal has shape {primal.shape}; "
            "pass tangents of the primals' structure and shapes"
        )
    if isinstance(tangent, Tensor):
        if tangent.dtype != primal.dtype:
            raise OpUsageError(
                f"jvp: tangent leaf {position} is a {tangent.dtype} Tensor, and its primal is {primal.dtype}; pass "
                "tangents of the primals' dtypes"
            )
        return tangent
    array = np.asarray(tangent)
    if array.dtype.kind not in "biuf":
        raise OpUsageError(f"jvp: tangent leaf {position} is an array of {array.dtype}; tangents are real numbers")
    return array.astype(primal.dtype)


def jvp(f: Callable[..., Any], primals: Any, tangents: Any, *, has_aux: bool = False) -> tuple[Any, ...]:
    """``(f(*primals), J v)``: ``f``'s output and its directional derivative along ``tangents`` (``v``), each a
    tree of the output's structure, as ``torch.func.jvp``; with ``has_aux`` ``(output, jvp_out, aux)`` for ``f``
    returning ``(output, aux)``. ``primals`` and ``tangents`` are tuples, one tree per argument of ``f``, the
    tangents of the primals' structure and shapes (typed ``Any``: anything else is this function's error, which
    says what to pass, rather than typeguard's)."""
    if not isinstance(primals, tuple) or not isinstance(tangents, tuple):
        raise OpUsageError(
            f"jvp: primals and tangents must be tuples, one entry per argument of {describe(f)}; got "
            f"{type(primals).__name__} and {type(tangents).__name__} (one argument: primals=(x,), tangents=(v,))"
        )
    leaves, spec = tree_flatten(primals)
    t_leaves, t_spec = tree_flatten(tangents)
    if t_spec != spec:
        raise OpUsageError(
            f"jvp: the tangents nest as {t_spec.describe()}, and the primals as {spec.describe()}; pass tangents of "
            "the primals' structure"
        )
    linear = _Linearized(f, leaves, spec, "jvp", has_aux, [*leaves, *t_leaves])
    seeds = [_tangent(t, x, i) for i, (t, x) in enumerate(zip(t_leaves, linear.inputs, strict=True))]
    pushed = linear.push(seeds)
    tensors = linear.tensors
    out = tree_unflatten(linear.out_spec, [lower(t, tensors) for t in pushed])
    return (linear.value(), out, linear.aux) if has_aux else (linear.value(), out)


def jacfwd(f: Callable[..., Any], argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Callable[..., Any]:
    """The Jacobian of ``f`` with respect to the arguments ``argnums`` names, by forward mode (``f`` recorded
    once, then one push of tangents per input element): for each output leaf of shape ``S`` and input leaf of
    shape ``T``, an array of shape ``S + T``, nested as the output (then as ``argnums`` and the arguments), as
    ``torch.func.jacfwd``. Keyword arguments are passed through, not differentiated."""
    return _jacfwd(f, argnums, has_aux, "jacfwd")


def _jacfwd(f: Callable[..., Any], argnums: int | Sequence[int], has_aux: bool, transform: str) -> Callable[..., Any]:
    """:func:`jacfwd`, its errors naming ``transform``: the function the caller called (``hessian``)."""

    @functools.wraps(f)
    def jacfwd_f(*args: Any, **kwargs: Any) -> Any:
        positions = argnums_tuple(argnums, len(args), transform)
        chosen = tuple(args[a] for a in positions)
        of_chosen = of_arguments(f, args, kwargs, positions)

        leaves, spec = tree_flatten(chosen)
        names = [f"argument {a}{path}" for a in positions for path in tree_flatten(args[a])[1].paths()]
        linear = _Linearized(of_chosen, leaves, spec, transform, has_aux, leaves, names)
        tensors = linear.tensors
        blocks: list[list[Any]] = [[] for _ in linear.outputs]  # per output leaf, per input leaf
        for j, x in enumerate(linear.inputs):
            columns: list[list[Any]] = [[] for _ in linear.outputs]
            for m in range(x.size):
                basis = np.zeros(x.shape, x.dtype)
                basis.flat[m] = 1.0
                seeds = [basis if i == j else None for i in range(len(linear.inputs))]  # None: nothing to push
                for k, t in enumerate(linear.push(seeds)):
                    columns[k].append(t)
            for k, o in enumerate(linear.outputs):
                blocks[k].append(_block(columns[k], np.shape(o), x.shape, tensors, o))
        jacobian = nest_jacobian(blocks, spec, linear.out_spec, isinstance(argnums, int))
        return (jacobian, linear.aux) if has_aux else jacobian

    return jacfwd_f


#: ``torch.func``'s and JAX's ``jacobian`` computes the Jacobian either way; here it is :func:`jacfwd`.
jacobian = jacfwd


def _block(columns: list[Any], out_shape: tuple[int, ...], in_shape: tuple[int, ...], tensors: bool, o: Any) -> Any:
    """One Jacobian block, ``out_shape + in_shape``, from its columns (a Tensor when any column is, so it stays in
    the graph)."""
    if not columns:
        return lower(np.zeros(out_shape + in_shape, dtype=_float_dtype(o)), tensors)
    if any(isinstance(c, Tensor | Batched) for c in columns):
        return onp.reshape(onp.stack(columns, axis=-1), out_shape + in_shape)
    return lower(np.stack(columns, axis=-1).reshape(out_shape + in_shape), tensors)


def hessian(f: Callable[..., Any], argnums: int | Sequence[int] = 0) -> Callable[..., Any]:
    """The Hessian of ``f``'s scalar output with respect to the arguments ``argnums`` names: forward mode over
    reverse, ``jacfwd(jacrev(f))``, as ``torch.func.hessian``."""
    return _jacfwd(_jacrev(f, argnums, False, "hessian"), argnums, False, "hessian")
