"""Reverse mode as functions: :func:`vjp`, :func:`grad`, :func:`value_and_grad`, :func:`jacrev`, :func:`hvp`.

Each runs ``f`` on inputs of its own (:func:`opreg.func.core.lift`) and walks the Tensor graph from the outputs
back to them, with the one backward pass every front end uses. Names and conventions are ``torch.func``'s (and
JAX's, where the two agree): ``argnums``, ``has_aux``, ``vjp(f, *primals) -> (output, vjp_fn)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.dispatch import op_function
from opreg.errors import OpUsageError
from opreg.func.batching import (
    Batched,
    active_levels,
    at_level,
    from_physical,
    levels_of,
    map_physical,
    strip,
    to_physical,
)
from opreg.func.core import (
    argnums_tuple,
    describe,
    draw_floor,
    gives_tensors,
    keeps_graph,
    lift,
    lower,
    nested,
    tracing,
    zeros_like,
)
from opreg.func.pytree import TreeSpec, tree_flatten, tree_unflatten
from opreg.tensor import Tensor, _backpropagate, _seed


def pullback(
    outputs: Sequence[Any],
    inputs: Sequence[Any],
    cotangents: Sequence[Any],
    *,
    create_graph: bool,
    floor: int,
    levels: Sequence[tuple[int, int]] = (),
) -> list[Any]:
    """``J^T ct``: for each of ``inputs``, the sum over ``outputs`` of each output's cotangent pulled back to it,
    in one backward pass (several outputs are joined as ``sum(<output, cotangent>)``, whose gradient is the same).
    Zeros where nothing reaches an input. Tensors when ``create_graph`` (recorded), arrays otherwise.

    ``levels``: the ``vmap`` levels the inputs were lifted at (batched at every one); the pass runs on physical
    values (one leading axis per level), each example's cotangent seeding its own output, and the gradients come
    back batched as the inputs are."""
    if levels:
        outputs = [to_physical(o, levels) for o in outputs]
        cotangents = [to_physical(c, levels) for c in cotangents]
        grads = pullback(outputs, [strip(x) for x in inputs], cotangents, create_graph=create_graph, floor=floor)
        return [from_physical(g, levels) for g in grads]
    pairs = [(o, c) for o, c in zip(outputs, cotangents, strict=True) if isinstance(o, Tensor) and o.requires_grad]
    wanted = {id(x) for x in inputs}
    found: dict[int, Any] = {}
    if len(pairs) == 1:
        root, cotangent = pairs[0]
        seed: Any = _seed(root, cotangent, "vjp")
        if create_graph:
            seed = cotangent if isinstance(cotangent, Tensor) and cotangent.dtype == seed.dtype else Tensor(seed)
        found = _backpropagate(root, seed, True, create_graph, wanted, floor)
    elif pairs:
        root = functools.reduce(lambda a, b: a + b, [onp.sum(o * c) for o, c in pairs])
        seed = _seed(root, None, "vjp")
        found = _backpropagate(root, Tensor(seed) if create_graph else seed, True, create_graph, wanted, floor)
    results = []
    for x in inputs:
        g = found.get(id(x))
        if g is None:
            g = zeros_like(x)
        results.append((g if isinstance(g, Tensor) else Tensor(g)) if create_graph else getattr(g, "_data", g))
    return results


def _check_cotangent(output: Any, cotangent: Any, position: int) -> Any:
    shape, given = np.shape(output), np.shape(cotangent)
    if shape != given:
        raise OpUsageError(
            f"vjp_fn: cotangent {position} has shape {given}, and the output it stands for has shape {shape}; pass "
            "one array per output, each of its output's shape"
        )
    return cotangent


def vjp(f: Callable[..., Any], *primals: Any, has_aux: bool = False) -> Any:
    """``(f(*primals), vjp_fn)``, and with ``has_aux`` ``(output, vjp_fn, aux)`` for ``f`` returning
    ``(output, aux)``. ``vjp_fn(cotangents)`` (a tree of ``f``'s output's structure) returns one tree per primal:
    the cotangents pulled back through ``f``. It may be called any number of times."""
    leaves, spec = tree_flatten(primals)
    floor, levels = draw_floor(), active_levels()
    lifted = [lift(x, "vjp", f"primal leaf {i}") for i, x in enumerate(leaves)]
    tensors, record = gives_tensors(leaves), keeps_graph(leaves)
    with tracing():
        result = f(*tree_unflatten(spec, lifted))
    output, aux = _split_aux(result, has_aux, "vjp", f)
    out_leaves, out_spec = tree_flatten(output)

    def vjp_fn(cotangents: Any) -> tuple[Any, ...]:
        ct_leaves, ct_spec = tree_flatten(cotangents)
        if ct_spec != out_spec:
            raise OpUsageError(
                f"vjp_fn: the cotangents nest as {ct_spec.describe()}, and {describe(f)}'s output as "
                f"{out_spec.describe()}; pass one of the output's structure"
            )
        cts = [_check_cotangent(o, c, i) for i, (o, c) in enumerate(zip(out_leaves, ct_leaves, strict=True))]
        unknown = _unknown_level(cts, levels)
        if unknown is not None:  # batched by a vmap the recording is outside of: one example at a time
            level, size = unknown
            per_example = [
                tree_flatten(vjp_fn(tree_unflatten(ct_spec, [at_level(c, level, i) for c in cts])))[0]
                for i in range(size)
            ]
            stacked = [Batched(op_function("stack")(*parts), level) for parts in zip(*per_example, strict=True)]
            return tuple(tree_unflatten(spec, stacked))
        create = record or nested() or keeps_graph(cts)
        grads = pullback(out_leaves, lifted, cts, create_graph=create, floor=floor, levels=levels)
        as_tensors = tensors or gives_tensors(cts)
        return tuple(tree_unflatten(spec, [lower(g, as_tensors) for g in grads]))

    value = tree_unflatten(out_spec, [_output(o, tensors) for o in out_leaves])
    return (value, vjp_fn, aux) if has_aux else (value, vjp_fn)


def _unknown_level(cotangents: Sequence[Any], levels: Sequence[tuple[int, int]]) -> tuple[int, int] | None:
    """The highest ``vmap`` level that batches a cotangent and that the recording was not made in, with its size;
    None if there is none."""
    known = {level for level, _ in levels}
    sizes = dict(active_levels())
    found = [level for c in cotangents for level in levels_of(c) if level not in known]
    if not found:
        return None
    level = max(found)
    return level, sizes[level]


def _output(value: Any, tensors: bool) -> Any:
    """An output of ``f`` as the caller gets it: in the graph when nested, else detached from the transform's."""
    if tensors:
        return value
    if isinstance(value, Batched):
        return map_physical(lambda physical: _output(physical, tensors), value)
    return value._data if isinstance(value, Tensor) else value


def _split_aux(result: Any, has_aux: bool, transform: str, f: Callable[..., Any]) -> tuple[Any, Any]:
    if not has_aux:
        return result, None
    if not isinstance(result, tuple) or len(result) != 2:
        raise OpUsageError(
            f"{transform}(has_aux=True): {describe(f)} must return (output, aux), a tuple of two; it returned a "
            f"{type(result).__name__}"
        )
    return result


def value_and_grad(
    f: Callable[..., Any], argnums: int | Sequence[int] = 0, has_aux: bool = False
) -> Callable[..., Any]:
    """A function returning ``(f(*args), gradient)`` (``((value, aux), gradient)`` with ``has_aux``): the gradient
    of ``f``'s scalar output with respect to the arguments ``argnums`` names, each a tree of its argument's
    structure (a tuple of them for a tuple ``argnums``). Keyword arguments are passed through, not differentiated."""

    @functools.wraps(f)
    def value_and_grad_f(*args: Any, **kwargs: Any) -> Any:
        positions = argnums_tuple(argnums, len(args), "grad")
        floor, levels = draw_floor(), active_levels()
        specs: list[TreeSpec] = []
        lifted: list[Any] = []  # Tensors, batched inside vmap
        given: list[Any] = []
        new_args = list(args)
        for a in positions:
            leaves, spec = tree_flatten(args[a])
            given += leaves
            where = [f"argument {a}" + (f" leaf {i}" if spec.kind != "leaf" else "") for i in range(len(leaves))]
            mine = [lift(x, "grad", w) for x, w in zip(leaves, where, strict=True)]
            specs.append(spec)
            lifted += mine
            new_args[a] = tree_unflatten(spec, mine)
        tensors, record = gives_tensors(given), keeps_graph(given)
        with tracing():
            result = f(*new_args, **kwargs)
        output, aux = _split_aux(result, has_aux, "grad", f)
        if np.ndim(output) != 0 or isinstance(output, list | tuple | dict):
            raise OpUsageError(
                f"grad: {describe(f)} must return a scalar (0-d), and returned shape {np.shape(output)}; use vjp or "
                "jacrev for other outputs, or reduce it (.sum())"
            )
        grads = pullback(
            [output], lifted, [np.ones((), _float_dtype(output))], create_graph=record, floor=floor, levels=levels
        )
        per_argument, start = [], 0
        for spec in specs:
            per_argument.append(
                tree_unflatten(spec, [lower(g, tensors) for g in grads[start : start + spec.num_leaves]])
            )
            start += spec.num_leaves
        gradient = per_argument[0] if isinstance(argnums, int) else tuple(per_argument)
        value = _output(output, tensors)
        return ((value, aux) if has_aux else value), gradient

    return value_and_grad_f


def grad(f: Callable[..., Any], argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Callable[..., Any]:
    """A function returning the gradient of ``f``'s scalar output with respect to the arguments ``argnums`` names
    (``(gradient, aux)`` with ``has_aux``), as ``torch.func.grad`` and ``jax.grad``."""
    both = value_and_grad(f, argnums, has_aux)

    @functools.wraps(f)
    def grad_f(*args: Any, **kwargs: Any) -> Any:
        value, gradient = both(*args, **kwargs)
        return (gradient, value[1]) if has_aux else gradient

    return grad_f


def jacrev(f: Callable[..., Any], argnums: int | Sequence[int] = 0, has_aux: bool = False) -> Callable[..., Any]:
    """The Jacobian of ``f`` with respect to the arguments ``argnums`` names, by reverse mode (one pass per output
    element): for each output leaf of shape ``S`` and input leaf of shape ``T``, an array of shape ``S + T``,
    nested as the output (then as ``argnums`` and the arguments), as ``torch.func.jacrev``."""

    @functools.wraps(f)
    def jacrev_f(*args: Any, **kwargs: Any) -> Any:
        positions = argnums_tuple(argnums, len(args), "jacrev")
        chosen = tuple(args[a] for a in positions)

        def of_chosen(*values: Any) -> Any:
            new_args = list(args)
            for a, v in zip(positions, values, strict=True):
                new_args[a] = v
            return f(*new_args, **kwargs)

        output, vjp_fn, *aux = vjp(of_chosen, *chosen, has_aux=has_aux)
        out_leaves, out_spec = tree_flatten(output)
        in_leaves, in_spec = tree_flatten(chosen)
        tensors = gives_tensors([*out_leaves, *in_leaves]) or nested()
        blocks: list[list[Any]] = []  # per output leaf, per input leaf
        for k, out in enumerate(out_leaves):
            rows: list[list[Any]] = [[] for _ in in_leaves]
            size = int(np.size(out))
            for m in range(size):
                cts = [np.zeros(np.shape(o), dtype=_float_dtype(o)) for o in out_leaves]
                cts[k].flat[m] = 1.0
                pulled, _ = tree_flatten(vjp_fn(tree_unflatten(out_spec, cts)))
                for i, g in enumerate(pulled):
                    rows[i].append(g)
            shape = np.shape(out)
            blocks.append(
                [_stack_rows(r, shape, np.shape(x), tensors, x) for r, x in zip(rows, in_leaves, strict=True)]
            )
        per_output = []
        for row in blocks:
            tree = tree_unflatten(in_spec, row)
            per_output.append(tree[0] if isinstance(argnums, int) else tree)
        jacobian = tree_unflatten(out_spec, per_output)
        return (jacobian, aux[0]) if has_aux else jacobian

    return jacrev_f


def _float_dtype(x: Any) -> np.dtype:
    dtype = np.dtype(x.dtype) if hasattr(x, "dtype") else np.asarray(x).dtype
    return dtype if dtype.kind == "f" else np.dtype(float)


def _stack_rows(rows: list[Any], out_shape: tuple[int, ...], in_shape: tuple[int, ...], tensors: bool, x: Any) -> Any:
    """One Jacobian block, ``out_shape + in_shape``, from its rows (a Tensor when any row is, so it stays in the
    graph)."""
    if not rows:
        return lower(np.zeros(out_shape + in_shape, dtype=_float_dtype(x)), tensors)
    if any(isinstance(r, Tensor) for r in rows):
        return onp.reshape(onp.stack(rows), out_shape + in_shape)
    return lower(np.stack(rows).reshape(out_shape + in_shape), tensors)


def hessian(f: Callable[..., Any], argnums: int | Sequence[int] = 0) -> Callable[..., Any]:
    """The Hessian of ``f``'s scalar output with respect to the arguments ``argnums`` names: the Jacobian of its
    gradient, as ``torch.func.hessian``."""
    return jacrev(jacrev(f, argnums), argnums)


def hvp(f: Callable[..., Any], primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
    """``(f(*primals), H v)``: the Hessian of ``f``'s scalar output at ``primals`` times the ``tangents``, without
    forming the Hessian (reverse over reverse: two passes), as ``torch.autograd.functional.hvp`` returns it."""
    if not isinstance(primals, tuple) or not isinstance(tangents, tuple):
        raise OpUsageError("hvp: primals and tangents must be tuples, one entry per argument of f")
    argnums = tuple(range(len(primals)))
    value_grad = value_and_grad(f, argnums)
    _, directional = vjp(lambda *p: _dot(value_grad(*p)[1], tangents), *primals)
    value = f(*primals)
    return lower(value, gives_tensors(list(primals))), directional(1.0)


def _dot(gradient: tuple[Any, ...], tangents: tuple[Any, ...]) -> Any:
    g_leaves, g_spec = tree_flatten(gradient)
    t_leaves, t_spec = tree_flatten(tangents)
    if g_spec != t_spec:
        raise OpUsageError(f"hvp: the tangents nest as {t_spec.describe()}, and the primals as {g_spec.describe()}")
    return functools.reduce(lambda a, b: a + b, [onp.sum(g * t) for g, t in zip(g_leaves, t_leaves, strict=True)])
