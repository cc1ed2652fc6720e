"""Differences along an axis and even spacing: diff, gradient (NumPy's finite-difference derivative) and linspace
(with end points that may be Tensors).

The op gradient differentiates along one axis. np.gradient over several axes (NumPy 2: a tuple of one array per
axis) is that op called once per axis, by its ``numpy_call``: each derivative is its own graph node, with its own
backward, and no op returns a list whose length depends on an attribute.

Each is linear in its differentiable inputs with coefficients fixed by the shape and the attributes, so each
backward applies the transposed map with ops: diff's is -diff of ``grad_output`` padded with a zero at each end
(n times), gradient's gathers and scatters its stencil (``take`` and ``scatter_along``), linspace's sums
``grad_output`` weighted by each point's fraction of the way. All compose to any order.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Register, Sample, hookimpl, normalize_axes, op


def _diff(x: np.ndarray, *, n: int = 1, axis: int = -1, prepend: Any = None, append: Any = None) -> np.ndarray:
    """The ``n``-th discrete difference along ``axis`` (out[i] = x[i + 1] - x[i], n times), as np.diff;
    ``prepend`` and ``append`` (constants: no gradient reaches them) are joined to x along ``axis`` first, in x's
    dtype (NumPy would widen float32 x to a float64 constant's dtype). None stands for NumPy's "no value"."""
    dtype = x.dtype if x.dtype.kind == "f" else None  # float32 stays float32 beside float64 constants
    extra = {
        key: np.asarray(value, dtype) for key, value in (("prepend", prepend), ("append", append)) if value is not None
    }
    return np.diff(x, n, axis, **extra)


def _joined_length(value: Any, axis: int) -> int:
    """How many elements ``prepend`` or ``append`` adds along ``axis`` (a scalar: one, broadcast)."""
    return 0 if value is None else 1 if np.ndim(value) == 0 else int(np.shape(value)[axis])


def _diff_backward(g: Any, x: Any, *, n: int, axis: int, prepend: Any, append: Any) -> tuple[Any]:
    """diff's transpose, n times: grad z[j] = g[j - 1] - g[j] (0 outside g), i.e. -diff of g padded with a zero
    at each end; then the part of the joined array that is x."""
    if n == 0:
        return (g,)
    axis = normalize_axes(axis, x.ndim)[0]
    if g.shape[axis] == 0:  # nothing was left to differentiate (an axis no longer than n): zeros of x's shape
        return (onp.broadcast_to(onp.sum(g) * 0.0, x.shape),)
    widths = [(1, 1) if a == axis else (0, 0) for a in range(x.ndim)]
    for _ in range(n):
        g = -onp.diff(onp.pad(g, widths), 1, axis)
    before, after = _joined_length(prepend, axis), _joined_length(append, axis)
    if before or after:
        g = op("take")(g, indices=np.arange(before, before + x.shape[axis]), axis=axis)
    return (g,)


#: np.gradient, untyped: its overloads cannot express spacing given as a tuple of unknown length.
_numpy_gradient: Any = np.gradient


# --- gradient --------------------------------------------------------------------------------------------------------


def _one_axis(x: Any, axis: Any) -> int:
    """The one axis the op differentiates along. Several axes (a list of arrays) are np.gradient's and
    opreg.numpy.gradient's, which call the op once per axis (:func:`_numpy_gradient_call`)."""
    if axis is None and x.ndim == 1:
        return 0
    if isinstance(axis, tuple | list) and len(axis) == 1:
        axis = axis[0]
    if isinstance(axis, int | np.integer):
        return normalize_axes(int(axis), x.ndim)[0]
    raise ValueError(
        f"the op gradient differentiates along one axis, and axis={axis!r} of a {x.ndim}-D array is several; "
        "np.gradient and opreg.numpy.gradient take several axes, returning one array per axis"
    )


def _numpy_gradient_call(call: Callable[..., Any], f: Any, *varargs: Any, axis: Any = None, edge_order: int = 1) -> Any:
    """np.gradient as NumPy 2 has it: over ``axis`` (None: every axis; an int; a tuple), one array for one axis,
    else a tuple of one array per axis, each the one-axis op's. ``varargs``: no spacing (1), one scalar for every
    axis, or one spacing (a scalar or coordinates) per axis."""
    ndim = np.ndim(f)
    given = range(ndim) if axis is None else (axis,) if isinstance(axis, int | np.integer) else axis
    axes = tuple(normalize_axes(a, ndim)[0] for a in given)  # in the order given, as the results are
    if len(set(axes)) != len(axes):
        raise ValueError(f"np.gradient's axis={axis!r} names an axis twice")
    spacings: list[tuple[Any, ...]]
    if len(varargs) == 1 and np.ndim(varargs[0]) == 0:
        spacings = [varargs] * len(axes)
    elif len(varargs) in (0, len(axes)):
        spacings = [(v,) for v in varargs] or [()] * len(axes)
    else:
        raise TypeError(
            f"np.gradient takes no spacing, one scalar, or one spacing per axis ({len(axes)}), got {len(varargs)}"
        )
    derivatives = tuple(
        call(f, *spacing, axis=a, edge_order=edge_order) for a, spacing in zip(axes, spacings, strict=True)
    )
    return derivatives[0] if len(derivatives) == 1 else derivatives


def _spacing(varargs: Any) -> tuple[Any, ...]:
    """np.gradient's spacing arguments: none (1), one scalar, or one array of coordinates."""
    spacing = varargs if isinstance(varargs, tuple | list) else (varargs,)
    if len(spacing) > 1:
        raise ValueError(f"gradient along one axis takes at most one spacing, got {len(spacing)}")
    return tuple(spacing)


def _gradient(f: np.ndarray, *, varargs: Any = (), axis: Any = None, edge_order: int = 1) -> np.ndarray:
    """The derivative of f's samples along one axis by second-order central differences (one-sided of order
    ``edge_order`` at the ends), spacing ``varargs`` (one scalar or the coordinates), as np.gradient with a single
    array as its result: f 1-D, or one int ``axis``."""
    along = _one_axis(f, axis)
    return np.asarray(_numpy_gradient(f, *_spacing(varargs), axis=along, edge_order=edge_order))


def _stencil(length: int, spacing: tuple[Any, ...], edge_order: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The nonzero entries (rows, columns, weights) of the matrix D with np.gradient(f) = D @ f, read off
    np.gradient itself: each row mixes columns at most 2 apart, so applying it to every 5th unit vector at once
    (five times) separates the columns."""
    rows, columns, weights = [], [], []
    for start in range(min(5, length)):
        comb = np.zeros(length)
        comb[start::5] = 1.0
        column = _numpy_gradient(comb, *spacing, edge_order=edge_order)
        (nonzero,) = np.nonzero(column)
        step = (start - nonzero) % 5
        rows.append(nonzero)
        columns.append(nonzero + np.where(step <= 2, step, step - 5))
        weights.append(column[nonzero])
    return np.concatenate(rows), np.concatenate(columns), np.concatenate(weights)


def _gradient_backward(g: Any, f: Any, *, varargs: Any, axis: Any, edge_order: int) -> tuple[Any]:
    """D's transpose applied along the axis: grad f[j] = sum_i D[i, j] g[i], as a gather of g at the rows, times
    the weights, scattered onto the columns."""
    along = _one_axis(f, axis)
    rows, columns, weights = _stencil(f.shape[along], _spacing(varargs), edge_order)
    shape = (1,) * along + (-1,) + (1,) * (f.ndim - along - 1)
    picked = op("take")(g, indices=rows, axis=along) * weights.astype(g.dtype).reshape(shape)
    return (op("scatter_along")(picked, indices=columns.reshape(shape), axis=along, length=f.shape[along]),)


# --- linspace --------------------------------------------------------------------------------------------------------


def _linspace(start: np.ndarray, stop: np.ndarray, *, num: int = 50, endpoint: bool = True, axis: int = 0) -> Any:
    """``num`` evenly spaced values from ``start`` to ``stop`` (included unless not ``endpoint``), along a new
    ``axis`` when the end points are arrays, as np.linspace."""
    return np.linspace(start, stop, num, endpoint, axis=axis)


def _fractions(num: int, endpoint: bool) -> np.ndarray:
    """How far along from start to stop each of linspace's points is: i / (num - 1), or i / num without the
    endpoint; the last is exactly 1 with it, as np.linspace puts stop itself there."""
    divisions = num - 1 if endpoint else num
    fractions = np.arange(num) / divisions if divisions > 0 else np.zeros(num)
    if endpoint and num > 1:
        fractions[-1] = 1.0
    return fractions


def _linspace_backward(g: Any, start: Any, stop: Any, *, num: int, endpoint: bool, axis: int) -> tuple[Any, Any]:
    """d out[i] / d start = 1 - t_i and d out[i] / d stop = t_i, t_i the fraction: g weighted, summed over the
    new axis (the engine sums the broadcast axes back to each end point's shape)."""
    along = normalize_axes(axis, g.ndim)[0]
    fractions = _fractions(num, endpoint).astype(g.dtype).reshape((-1,) + (1,) * (g.ndim - along - 1))
    return onp.sum(g * (1.0 - fractions), along), onp.sum(g * fractions, along)


# --- samples and references ------------------------------------------------------------------------------------------


def _diff_samples(rng: np.random.Generator) -> list[Sample]:
    x = rng.standard_normal((3, 5))
    return [
        Sample(x),
        Sample(x, n=2, axis=0),
        Sample(x, n=3),
        Sample(x, axis=0, prepend=0.5, append=rng.standard_normal((2, 5))),
        Sample(x, n=2, prepend=rng.standard_normal((3, 1))),
        Sample(x, n=0),
        Sample(rng.standard_normal((2, 0)), axis=0),
        Sample(rng.standard_normal((2, 3)), n=3, axis=0),  # an axis no longer than n: an empty difference
    ]


def _torch_diff(torch: ModuleType) -> Callable[..., Any]:
    def diff(x: Any, n: int = 1, axis: int = -1, prepend: Any = None, append: Any = None) -> Any:
        """torch.diff takes only tensors to join, of x's dimensions: NumPy's scalars broadcast first."""

        def joined(value: Any) -> Any:
            if value is None:
                return None
            shape = list(x.shape)
            shape[axis] = 1
            value = np.asarray(value)
            return torch.tensor(np.broadcast_to(value, shape) if value.ndim == 0 else value, dtype=x.dtype)

        return torch.diff(x, n, axis, joined(prepend), joined(append))

    return diff


def _gradient_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample(rng.standard_normal(6)),
        Sample(rng.standard_normal(5), varargs=0.5, edge_order=2),
        Sample(rng.standard_normal((3, 4)), axis=0),
        Sample(rng.standard_normal((3, 4)), varargs=(2.0,), axis=-1, edge_order=2),
        Sample(rng.standard_normal((2, 5)), varargs=(np.cumsum(rng.uniform(0.5, 1.5, 5)),), axis=1),
        Sample(rng.standard_normal((4, 2)), varargs=(np.cumsum(rng.uniform(0.5, 1.5, 4)),), axis=0, edge_order=2),
        Sample(rng.standard_normal(2)),
    ]


def _torch_gradient(torch: ModuleType) -> Callable[..., Any]:
    def gradient(f: Any, varargs: Any = (), axis: Any = None, edge_order: int = 1) -> Any:
        """torch.gradient, which returns a tuple of one tensor per axis, on the one axis; coordinates as a
        tensor."""
        spacing = varargs if isinstance(varargs, tuple | list) else (varargs,)
        dim = 0 if axis is None else axis[0] if isinstance(axis, tuple | list) else axis
        given: dict[str, Any] = {}
        if spacing:
            value = spacing[0]
            given["spacing"] = (torch.as_tensor(value, dtype=f.dtype),) if np.ndim(value) else float(value)
        return torch.gradient(f, dim=dim, edge_order=edge_order, **given)[0]

    return gradient


def _linspace_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample(np.asarray(rng.standard_normal()), np.asarray(rng.standard_normal()), num=5),
        Sample(rng.standard_normal(3), rng.standard_normal(3), num=4, endpoint=False),
        Sample(rng.standard_normal((2, 1)), rng.standard_normal(3), num=3, axis=-1),
        Sample(rng.standard_normal(2), np.asarray(rng.standard_normal()), num=1),
        Sample(np.asarray(rng.standard_normal()), rng.standard_normal(2), num=0, axis=1),
    ]


def _torch_linspace(torch: ModuleType) -> Callable[..., Any]:
    def linspace(start: Any, stop: Any, num: int = 50, endpoint: bool = True, axis: int = 0) -> Any:
        """start + (stop - start) * i / divisions, stop itself last with the endpoint; torch.linspace takes no
        tensors that need gradients."""
        start, stop = torch.broadcast_tensors(start, stop)
        divisions = num - 1 if endpoint else num
        steps = torch.arange(num, dtype=start.dtype) / max(divisions, 1)
        shape = (-1,) + (1,) * start.ndim
        out = start.unsqueeze(0) + (stop - start).unsqueeze(0) * steps.reshape(shape)
        if endpoint and num > 1:
            out = torch.cat([out[:-1], stop.unsqueeze(0)])
        return out.movedim(0, axis)

    return linspace


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="diff",
        inputs=("x",),
        forward=_diff,
        backward=_diff_backward,
        sample_inputs=_diff_samples,
        numpy="diff",
        reference=_torch_diff,
    )
    register(
        name="gradient",
        inputs=("f",),
        forward=_gradient,
        backward=_gradient_backward,
        sample_inputs=_gradient_samples,
        numpy="gradient",
        numpy_call=_numpy_gradient_call,
        reference=_torch_gradient,
    )
    register(
        name="linspace",
        inputs=("start", "stop"),
        forward=_linspace,
        backward=_linspace_backward,
        sample_inputs=_linspace_samples,
        numpy="linspace",
        reference=_torch_linspace,
    )
