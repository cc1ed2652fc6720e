"""Reverse mode as functions: :func:`vjp`, :func:`grad`, :func:`value_and_grad`, :func:`jacrev`, :func:`hvp`
(:func:`opreg.func.forward.hessian` is forward over reverse).

Each runs ``f`` on inputs of its own (:func:`opreg.func.core.lift`) and walks the Tensor graph from the outputs
back to them, with the one backward pass every front end uses. Names and conventions are ``torch.func``'s (and
JAX's, where the two agree): ``argnums``, ``has_aux``, ``vjp(f, *primals) -> (output, vjp_fn)``.

What comes back follows what went in (:mod:`opreg.func.core`): arrays for arrays at the top level, Tensors for
Tensors; the output, ``aux`` and the derivatives stay in the graph only where someone can differentiate them
again (inside another transform, or for the caller's Tensors that require gradients), and are cut from the
transform's private graph otherwise, so that nothing the caller holds leads into it.
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
    nest_jacobian,
    nested,
    of_arguments,
    tracing,
    zeros_like,
)
from opreg.func.pytree import TreeSpec, tree_flatten, tree_map, tree_unflatten
from opreg.tensor import Tensor, _backpropagate, _seed


def pullback(
    outputs: Sequence[Any],
    inputs: Sequence[Any],
    cotangents: Sequence[Any],
    *,
    create_graph: bool,
    floor: int,
    retain_graph: bool = True,
    levels: Sequence[tuple[int, int]] = (),
) -> list[Any]:
    """``J^T ct``: for each of ``inputs``, the sum over ``outputs`` of each output's cotangent pulled back to it,
    in one backward pass (several outputs are joined as ``sum(<output, cotangent>)``, whose gradient is the same).
    Zeros where nothing reaches an input. Tensors when ``create_graph`` (recorded), arrays otherwise.

    Each cotangent is taken in its output's dtype (a float64 cotangent of a float32 output would otherwise turn
    every gradient float64), recorded when it is a Tensor, so that a cotangent that requires gradients (a
    VJP differentiated with respect to its cotangent, as forward mode does) stays in the graph.
    ``retain_graph=False`` releases the graph as the pass goes, for a caller that will not pass through it again.

    ``levels``: the ``vmap`` levels the inputs were lifted at (batched at every one, :func:`lift`); the pass runs on
    physical values (one leading axis per level), each example's cotangent seeding its own output, and the
    gradients come back batched as the inputs are.
    """
    if levels:
        outputs = [to_physical(o, levels) for o in outputs]
        cotangents = [to_physical(c, levels) for c in cotangents]
        inputs = [strip(x) for x in inputs]
        grads = pullback(outputs, inputs, cotangents, create_graph=create_graph, floor=floor, retain_graph=retain_graph)
        return [from_physical(g, levels) for g in grads]
    pairs = [(o, c) for o, c in zip(outputs, cotangents, strict=True) if isinstance(o, Tensor) and o._requires_grad]
    wanted = {id(x) for x in inputs}
    found: dict[int, Any] = {}
    if len(pairs) == 1:
        root, cotangent = pairs[0]
        seed: Any = _seed(root, cotangent, "vjp")
        if create_graph:
            seed = _in_dtype(cotangent, seed.dtype) if isinstance(cotangent, Tensor) else Tensor(seed)
        found = _backpropagate(root, seed, retain_graph, create_graph, wanted, floor)
    elif pairs:
        root = functools.reduce(lambda a, b: a + b, [onp.sum(o * _in_dtype(c, o.dtype)) for o, c in pairs])
        seed = _seed(root, None, "vjp")
        found = _backpropagate(root, Tensor(seed) if create_graph else seed, retain_graph, create_graph, wanted, floor)
    results = []
    for x in inputs:
        g = found.get(id(x))
        if g is None:
            g = zeros_like(x)
        results.append((g if isinstance(g, Tensor) else Tensor(g)) if create_graph else getattr(g, "_data", g))
    return results


def _in_dtype(value: Any, dtype: np.dtype) -> Any:
    """``value`` in ``dtype``: a Tensor cast by the recorded op (its graph kept), anything else as an array."""
    if isinstance(value, Tensor):
        return value if value.dtype == dtype else value.astype(dtype)
    return np.asarray(value, dtype=dtype)


def _lift_tree(value: Any, transform: str, name: str) -> tuple[Any, list[Any], list[Any], TreeSpec]:
    """One argument of ``f`` with every leaf lifted (:func:`lift`): the new tree, the leaves given, the leaves
    lifted, and the spec. ``name`` (``"argument 0"``) and each leaf's place in the tree name it in errors."""
    leaves, spec = tree_flatten(value)
    if spec.kind == "leaf":
        lifted = [lift(value, transform, name)]
        return lifted[0], leaves, lifted, spec
    try:
        lifted = [lift(x, transform, name) for x in leaves]
    except OpUsageError:  # again, to name the leaf by its place (every call would pay for the paths)
        lifted = [lift(x, transform, name + path) for x, path in zip(leaves, spec.paths(), strict=True)]
    return tree_unflatten(spec, lifted), leaves, lifted, spec


def _output(value: Any, tensors: bool, record: bool) -> Any:
    """A Tensor that ``f`` returned (its output, or in its ``aux``), as the caller gets it: its array when
    ``tensors`` is false; itself when ``record`` (the caller or an enclosing transform differentiates it
    further); else detached, so that it does not lead into the transform's private graph. Anything else as is
    (a batched value's physical value so treated, inside its wrappers)."""
    if isinstance(value, Batched):
        return map_physical(lambda physical: _output(physical, tensors, record), value)
    if not isinstance(value, Tensor):
        return value
    if not tensors:
        return value._data
    return value if record else value.detach()


def _outputs(tree: Any, tensors: bool, record: bool) -> Any:
    return tree_map(lambda value: _output(value, tensors, record), tree)


def _check_cotangent(output: Any, cotangent: Any, where: str) -> Any:
    """``cotangent`` if it can stand for ``output`` (a real number or array of the output's shape), else an
    error naming the cotangent by its place (``where``) in the tree."""
    if isinstance(cotangent, Tensor | Batched | np.ndarray | np.generic | int | float) and not isinstance(
        cotangent, bool
    ):
        dtype = (
            cotangent.dtype if isinstance(cotangent, Tensor | Batched | np.ndarray | np.generic) else np.dtype(float)
        )
        if dtype.kind not in "fiu":
            raise OpUsageError(
                f"vjp_fn: the cotangent{where} is an array of {dtype} {np.shape(cotangent)}; pass real numbers "
                "(the output's dtype)"
            )
    else:
        raise OpUsageError(
            f"vjp_fn: the cotangent{where} is a {type(cotangent).__name__}; pass an array of its output's shape "
            f"{np.shape(getattr(output, '_data', output))} (np.zeros for an output that does not matter)"
        )
    shape, given = np.shape(getattr(output, "_data", output)), np.shape(getattr(cotangent, "_data", cotangent))
    if shape != given:
        raise OpUsageError(
            f"vjp_fn: the cotangent{where} has shape {given}, and the output it stands for has shape {shape}; pass "
            "one array per output, each of its output's shape"
        )
    return cotangent


def _split_aux(result: Any, has_aux: bool, transform: str, f: Callable[..., Any]) -> tuple[Any, Any]:
    if not has_aux:
        return result, None
    if not isinstance(result, tuple) or len(result) != 2:
        raise OpUsageError(
            f"{transform}(has_aux=True): {describe(f)} must return (output, aux), a tuple of two; it returned a "
            f"{type(result).__name__}"
        )
    return result


def vjp(f: Callable[..., Any], *primals: Any, has_aux: bool = False) -> Any:
    """``(f(*primals), vjp_fn)``, and with ``has_aux`` ``(output, vjp_fn, aux)`` for ``f`` returning
    ``(output, aux)``. ``vjp_fn(cotangents)`` (a tree of ``f``'s output's structure, each leaf of its output's
    shape) returns one tree per primal: the cotangents pulled back through ``f``. It may be called any number of
    times, so the graph of ``f`` is kept as long as ``vjp_fn`` is."""
    return _vjp(f, primals, has_aux, "vjp", [f"primal {i}" for i in range(len(primals))])


def _vjp(f: Callable[..., Any], primals: Sequence[Any], has_aux: bool, transform: str, names: Sequence[str]) -> Any:
    """:func:`vjp`, for ``transform``, which errors name, as they name each primal by ``names`` ("argument 2")."""
    floor, levels = draw_floor(), active_levels()
    args, given, lifted = [], [], []
    for primal, name in zip(primals, names, strict=True):
        tree, leaves, mine, _ = _lift_tree(primal, transform, name)
        args.append(tree)
        given += leaves
        lifted += mine
    _, spec = tree_flatten(tuple(primals))
    tensors, record = gives_tensors(given), keeps_graph(given)
    with tracing():
        result = f(*args)
    output, aux = _split_aux(result, has_aux, transform, f)
    out_leaves, out_spec = tree_flatten(output)

    def vjp_fn(cotangents: Any) -> tuple[Any, ...]:
        ct_leaves, ct_spec = tree_flatten(cotangents)
        if ct_spec != out_spec:
            raise OpUsageError(
                f"vjp_fn: the cotangents nest as {ct_spec.describe()}, and {describe(f)}'s output as "
                f"{out_spec.describe()}; pass one of the output's structure"
            )
        paths = out_spec.paths()
        cts = [_check_cotangent(o, c, p) for o, c, p in zip(out_leaves, ct_leaves, paths, strict=True)]
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

    value = _outputs(output, tensors, record)
    return (value, vjp_fn, _outputs(aux, tensors, record)) if has_aux else (value, vjp_fn)


def _unknown_level(cotangents: Sequence[Any], levels: Sequence[tuple[int, int]]) -> tuple[int, int] | None:
    """The highest ``vmap`` level that batches a cotangent and that the recording was not made in, with its size;
    None if there is none."""
    known = {level for level, _ in levels}
    found = [level for c in cotangents for level in levels_of(c) if level not in known]
    if not found:
        return None
    level = max(found)
    return level, dict(active_levels())[level]


def _check_scalar(output: Any, f: Callable[..., Any], transform: str) -> None:
    """What ``grad`` differentiates must be one real number (a 0-d array or Tensor)."""
    if isinstance(output, Tensor | Batched | np.ndarray | np.generic | int | float):
        shape = np.shape(getattr(output, "_data", output))
        if shape == ():
            return
        what = f"an array of shape {shape}"
    else:
        what = f"a {type(output).__name__}"
    raise OpUsageError(
        f"{transform}: {describe(f)} must return a scalar (a 0-d array or Tensor), and returned {what}; use vjp or "
        "jacrev for other outputs, reduce it (.sum()), or return (scalar, aux) with has_aux=True"
    )


def value_and_grad(
    f: Callable[..., Any], argnums: int | Sequence[int] = 0, has_aux: bool = False
) -> Callable[..., Any]:
    """A function returning ``(f(*args), gradient)`` (``((value, aux), gradient)`` with ``has_aux``): the gradient
    of ``f``'s scalar output with respect to the arguments ``argnums`` names, each a tree of its argument's
    structure (a tuple of them for a tuple ``argnums``). Keyword arguments are passed through, not differentiated."""
    return _value_and_grad(f, argnums, has_aux, "grad")


def _value_and_grad(
    f: Callable[..., Any], argnums: int | Sequence[int], has_aux: bool, transform: str
) -> Callable[..., Any]:
    """:func:`value_and_grad`, for ``transform``, which errors name."""

    @functools.wraps(f)
    def value_and_grad_f(*args: Any, **kwargs: Any) -> Any:
        positions = argnums_tuple(argnums, len(args), transform)
        floor, levels = draw_floor(), active_levels()
        specs: list[TreeSpec] = []
        lifted: list[Any] = []  # Tensors, batched inside vmap
        given: list[Any] = []
        new_args = list(args)
        for a in positions:
            new_args[a], leaves, mine, spec = _lift_tree(args[a], transform, f"argument {a}")
            given += leaves
            lifted += mine
            specs.append(spec)
        tensors, record = gives_tensors(given), keeps_graph(given)
        with tracing():
            result = f(*new_args, **kwargs)
        output, aux = _split_aux(result, has_aux, transform, f)
        _check_scalar(output, f, transform)
        # Called once: unless recorded for someone to differentiate further, the graph is released as it goes.
        grads = pullback([output], lifted, [1.0], create_graph=record, floor=floor, retain_graph=record, levels=levels)
        per_argument, start = [], 0
        for spec in specs:
            per_argument.append(
                tree_unflatten(spec, [lower(g, tensors) for g in grads[start : start + spec.num_leaves]])
            )
            start += spec.num_leaves
        gradient = per_argument[0] if isinstance(argnums, int) else tuple(per_argument)
        value = _output(output, tensors, record)
        return ((value, _outputs(aux, tensors, record)) if has_aux else value), gradient

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
    return _jacrev(f, argnums, has_aux, "jacrev")


def _jacrev(f: Callable[..., Any], argnums: int | Sequence[int], has_aux: bool, transform: str) -> Callable[..., Any]:
    """:func:`jacrev`, for ``transform``, which errors name."""

    @functools.wraps(f)
    def jacrev_f(*args: Any, **kwargs: Any) -> Any:
        positions = argnums_tuple(argnums, len(args), transform)
        chosen = tuple(args[a] for a in positions)
        of_chosen = of_arguments(f, args, kwargs, positions)

        output, vjp_fn, *aux = _vjp(of_chosen, chosen, has_aux, transform, [f"argument {a}" for a in positions])
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
        jacobian = nest_jacobian(blocks, in_spec, out_spec, isinstance(argnums, int))
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


def hvp(f: Callable[..., Any], primals: Any, tangents: Any) -> tuple[Any, Any]:
    """``(f(*primals), H v)``: the Hessian of ``f``'s scalar output at ``primals`` times the ``tangents`` (one
    per primal, of its structure and shapes), without forming the Hessian (reverse over reverse: two passes), as
    ``torch.autograd.functional.hvp`` returns it: ``primals`` a tuple of ``f``'s arguments, and ``H v`` a tuple of
    one tree per argument; or, for a function of one argument, that argument and its ``H v``. ``f`` runs once."""
    if not isinstance(primals, tuple):
        value, (product,) = hvp(f, (primals,), (tangents,))
        return value, product
    _check_tangents(primals, tangents)
    value_grad = _value_and_grad(f, tuple(range(len(primals))), False, "hvp")
    values: list[Any] = []

    def directional(*p: Any) -> Any:
        value, gradient = value_grad(*p)
        values.append(value)
        return _dot(gradient, tangents)

    _, pull = _vjp(directional, primals, False, "hvp", [f"primal {i}" for i in range(len(primals))])
    leaves, _ = tree_flatten(primals)
    value = _output(values[0], gives_tensors(leaves), keeps_graph(leaves))
    return value, pull(1.0)


def _check_tangents(primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> None:
    """The tangents must match the primals leaf for leaf, in nesting and shape: a product with a tangent of
    another shape would broadcast into a wrong answer."""
    p_leaves, p_spec = tree_flatten(primals)
    t_leaves, t_spec = tree_flatten(tangents)
    if p_spec != t_spec:
        raise OpUsageError(
            f"hvp: the tangents nest as {t_spec.describe()}, and the primals as {p_spec.describe()}; pass one "
            "tangent per primal, of its structure"
        )
    for path, p, t in zip(p_spec.paths(), p_leaves, t_leaves, strict=True):
        p_shape, t_shape = np.shape(getattr(p, "_data", p)), np.shape(getattr(t, "_data", t))
        if p_shape != t_shape:
            raise OpUsageError(
                f"hvp: the tangent{path} has shape {t_shape}, and its primal has shape {p_shape}; pass tangents of "
                "the primals' shapes"
            )


def _dot(gradient: tuple[Any, ...], tangents: tuple[Any, ...]) -> Any:
    g_leaves, _ = tree_flatten(gradient)
    t_leaves, _ = tree_flatten(tangents)
    return functools.reduce(lambda a, b: a + b, [onp.sum(g * t) for g, t in zip(g_leaves, t_leaves, strict=True)])
