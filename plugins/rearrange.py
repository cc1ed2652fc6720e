"""Rearrangements: flip, fliplr, flipud, rot90, roll, and the ops that copy elements, tile, repeat and pad.

flip, rot90 and roll move each element to one place, so each backward is the same op undoing the move (flip
again, rot90 by -k, roll by -shift). tile, repeat and pad copy an element to several places (pad's "edge",
"reflect", "symmetric" and "wrap" modes too), so each element's gradient is the sum over its copies: tile's by a
reshape and a sum, repeat's and pad's by ``scatter_along`` along each axis (plugins/selection.py), pad's constant
border by cutting it off with ``take``. Every backward is written with ops, so it composes to any order.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Axis, Register, Sample, hookimpl, linear_jvp, normalize_axes, op, over_axes

#: np.pad, untyped: its overloads take the mode as a literal, which an attribute is not.
_numpy_pad: Any = np.pad

#: pad's modes in which every output element is a copy of an input element (the others compute new values).
GATHER_MODES = ("edge", "reflect", "symmetric", "wrap")

#: NumPy's modes that compute the border from x's values: refused, each named in the error.
STATISTIC_MODES = ("linear_ramp", "maximum", "mean", "median", "minimum")


def _flip(x: np.ndarray, *, axis: Axis = None) -> np.ndarray:
    """x with the order of its elements reversed along ``axis`` (None: every axis), as np.flip."""
    return np.asarray(np.flip(x, axis))  # a 0-d x gives a NumPy scalar


def _fliplr(x: np.ndarray) -> np.ndarray:
    """x reversed along axis 1 (left and right; at least 2-D), as np.fliplr."""
    return np.fliplr(x)


def _flipud(x: np.ndarray) -> np.ndarray:
    """x reversed along axis 0 (up and down; at least 1-D), as np.flipud."""
    return np.flipud(x)


def _rot90(x: np.ndarray, *, k: int = 1, axes: Sequence[int] = (0, 1)) -> np.ndarray:
    """x rotated by 90 degrees ``k`` times in the plane of ``axes``, from the first axis towards the second, as
    np.rot90."""
    return np.rot90(x, k, (axes[0], axes[1]))


def _roll(x: np.ndarray, *, shift: int | Sequence[int] = 0, axis: Axis = None) -> np.ndarray:
    """x with its elements shifted by ``shift`` along ``axis``, those leaving at one end entering at the other
    (None: x flattened, then the shape restored), as np.roll."""
    return np.roll(x, shift, axis)


def _unroll(g: Any, x: Any, *, shift: int | Sequence[int], axis: Axis) -> tuple[Any]:
    back = -operator.index(shift) if isinstance(shift, int | np.integer) else tuple(-operator.index(s) for s in shift)
    return (onp.roll(g, back, axis),)


# --- copies: tile, repeat, pad ---------------------------------------------------------------------------------------


def _tile(x: np.ndarray, *, reps: int | Sequence[int] = 1) -> np.ndarray:
    """x repeated ``reps`` times along each axis (leading axes of 1 added to x or to reps to match), as np.tile."""
    return np.tile(x, reps)


def _tile_backward(g: Any, x: Any, *, reps: int | Sequence[int]) -> tuple[Any]:
    """g as (reps_0, n_0, reps_1, n_1, ...), summed over each reps axis: every copy's gradient."""
    counts = (operator.index(reps),) if isinstance(reps, int | np.integer) else tuple(map(operator.index, reps))
    ndim = max(x.ndim, len(counts))
    shape = (1,) * (ndim - x.ndim) + tuple(x.shape)
    counts = (1,) * (ndim - len(counts)) + counts
    paired = onp.reshape(g, tuple(n for pair in zip(counts, shape, strict=True) for n in pair))
    return (onp.reshape(onp.sum(paired, axis=tuple(range(0, 2 * ndim, 2))), x.shape),)


def _repeat(x: np.ndarray, *, repeats: int | Sequence[int] = 1, axis: int | None = None) -> np.ndarray:
    """Each element of x repeated ``repeats`` times (one count for all, or one per element along ``axis``),
    consecutively, along ``axis`` (None: x flattened), as np.repeat."""
    return np.repeat(x, repeats, axis)


def _repeat_backward(g: Any, x: Any, *, repeats: int | Sequence[int], axis: int | None) -> tuple[Any]:
    """Each copy's gradient added back onto its source: scatter_along along the axis, at np.repeat's sources."""
    length = math.prod(x.shape) if axis is None else x.shape[axis]
    sources = np.repeat(np.arange(length), repeats)
    if axis is None:
        return (onp.reshape(op("scatter_along")(g, indices=sources, axis=0, length=length), x.shape),)
    axis = normalize_axes(axis, x.ndim)[0]
    along = sources.reshape((1,) * axis + (-1,) + (1,) * (x.ndim - axis - 1))
    return (op("scatter_along")(g, indices=along, axis=axis, length=length),)


def _pad_widths(pad_width: Any, ndim: int) -> list[tuple[int, int]]:
    """``pad_width`` in any of NumPy's spellings (n, (before, after), or one pair per axis) as one pair per axis."""
    if ndim == 0:
        return []
    widths = np.broadcast_to(np.asarray(pad_width, dtype=np.intp), (ndim, 2))
    if (widths < 0).any():
        raise ValueError(f"pad_width must not be negative, got {pad_width!r}")
    return [(int(before), int(after)) for before, after in widths]


def _pad(
    x: np.ndarray, *, pad_width: Any = 0, mode: str | Callable[..., Any] = "constant", constant_values: Any = 0
) -> np.ndarray:
    """x with ``pad_width`` elements added before and after each axis, as np.pad: ``constant_values`` (a constant:
    no gradient reaches it; one value, one per axis, or a (before, after) pair per axis), or, by ``mode``, copies
    of x's own elements ("edge", "reflect", "symmetric", "wrap"; any width, as NumPy's, which reflects and wraps
    again where the border is wider than x). The modes that compute new values ("linear_ramp", "maximum",
    "mean", "median", "minimum"), "empty" (undefined values), a function as the mode and ``reflect_type="odd"``
    are errors, naming the mode."""
    if mode == "constant":
        return np.asarray(_numpy_pad(x, pad_width, mode, constant_values=constant_values))
    if mode not in GATHER_MODES:
        why = (
            "is a function, whose values this op cannot differentiate"
            if callable(mode)
            else "leaves the border's values undefined"
            if mode == "empty"
            else "computes new values (a ramp or a statistic), which this op does not differentiate"
            if mode in STATISTIC_MODES
            else "is not one of NumPy's"
        )
        raise ValueError(
            f"pad's mode {mode!r} {why}; its modes are 'constant', " + ", ".join(repr(m) for m in GATHER_MODES)
        )
    return np.asarray(_numpy_pad(x, pad_width, mode))


def _pad_backward(g: Any, x: Any, *, pad_width: Any, mode: str) -> tuple[Any]:
    """Axis by axis (each only copies along itself): the constant border cut off with ``take``, or each copy's
    gradient added back onto its source with ``scatter_along`` at the positions np.pad copies from."""
    for axis, (before, after) in enumerate(_pad_widths(pad_width, x.ndim)):
        if before == after == 0:
            continue
        length = x.shape[axis]
        if mode == "constant":
            g = op("take")(g, indices=np.arange(before, before + length), axis=axis)
            continue
        sources = _numpy_pad(np.arange(length), (before, after), mode)
        along = sources.reshape((1,) * axis + (-1,) + (1,) * (x.ndim - axis - 1))
        g = op("scatter_along")(g, indices=along, axis=axis, length=length)
    return (g,)


# --- samples and references ------------------------------------------------------------------------------------------


def _dims(x: Any, axis: Axis) -> tuple[int, ...]:
    return tuple(range(x.ndim)) if axis is None else (axis,) if isinstance(axis, int) else tuple(axis)


def _flip_samples(rng: np.random.Generator) -> list[Sample]:
    x = rng.standard_normal((2, 3, 4))
    return [Sample(x), Sample(x, axis=1), Sample(x, axis=(0, -1)), Sample(rng.standard_normal(0))]


def _rot90_samples(rng: np.random.Generator) -> list[Sample]:
    x = rng.standard_normal((2, 3, 4))
    return [Sample(x), Sample(x, k=2), Sample(x, k=-1, axes=(2, 0)), Sample(x, k=3, axes=(-1, -2)), Sample(x, k=4)]


def _roll_samples(rng: np.random.Generator) -> list[Sample]:
    x = rng.standard_normal((3, 4))
    return [
        Sample(x, shift=2),
        Sample(x, shift=-1, axis=0),
        Sample(x, shift=(1, 5), axis=(0, 1)),
        Sample(x, shift=(2, -3), axis=(1, 1)),
        Sample(rng.standard_normal((2, 0)), shift=1, axis=1),
    ]


def _torch_roll(torch: ModuleType) -> Callable[..., Any]:
    return lambda x, shift=0, axis=None: torch.roll(x, shift, axis)


def _tile_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample(rng.standard_normal((2, 3)), reps=2),
        Sample(rng.standard_normal((2, 3)), reps=(3, 1, 2)),
        Sample(rng.standard_normal((2, 1, 3)), reps=(2, 2)),
        Sample(rng.standard_normal(3), reps=(2, 1, 2)),
        Sample(rng.standard_normal((0, 3)), reps=(2, 2)),
    ]


def _repeat_samples(rng: np.random.Generator) -> list[Sample]:
    x = rng.standard_normal((2, 3))
    return [
        Sample(x, repeats=2),
        Sample(x, repeats=3, axis=0),
        Sample(x, repeats=(2, 0, 1), axis=-1),
        Sample(x, repeats=(1, 0, 2, 1, 1, 3)),
    ]


def _torch_repeat(torch: ModuleType) -> Callable[..., Any]:
    def repeat_interleave(x: Any, repeats: Any = 1, axis: int | None = None) -> Any:
        counts = repeats if isinstance(repeats, int) else torch.tensor(repeats, dtype=torch.int64)
        return torch.repeat_interleave(x, counts, dim=axis)

    return repeat_interleave


def _pad_samples(rng: np.random.Generator) -> list[Sample]:
    x = rng.standard_normal((3, 4))
    return [
        Sample(x, pad_width=1),
        Sample(x, pad_width=((0, 2), (1, 0)), constant_values=1.5),
        Sample(x, pad_width=((1, 2), (2, 1)), constant_values=((1.0, 2.0), (-3.0, 4.0))),  # per axis, per side
        Sample(x, pad_width=(2, 1), mode="edge"),
        Sample(x, pad_width=((1, 2), (3, 2)), mode="reflect"),
        Sample(x, pad_width=((2, 0), (1, 3)), mode="symmetric"),
        Sample(x, pad_width=((1, 1), (2, 4)), mode="wrap"),
        Sample(rng.standard_normal((2, 0)), pad_width=((1, 0), (0, 2))),
    ]


def _torch_pad(torch: ModuleType) -> Callable[..., Any]:
    """torch.nn.functional.pad, one axis at a time (its other modes pad only the last axes of a batch): that
    axis moved last and the rest flattened to (1, rest, n), as its 1-D modes take. Its "replicate" is NumPy's
    "edge", "circular" is "wrap", "reflect" is "reflect"; NumPy's "symmetric" (the edge repeated) has no torch
    mode, and is the edge element concatenated with "reflect"'s... not quite: it is built here from flips."""

    def pad(x: Any, pad_width: Any = 0, mode: str = "constant", constant_values: Any = 0) -> Any:
        if x.ndim == 0:
            return x.clone()
        widths = np.broadcast_to(np.asarray(pad_width), (x.ndim, 2))
        if mode == "constant":
            values = np.broadcast_to(np.asarray(constant_values, dtype=float), (x.ndim, 2))
            for axis, ((before, after), (low, high)) in enumerate(zip(widths, values, strict=True)):  # NumPy's order
                flat = [0, 0] * (x.ndim - 1 - axis)
                x = torch.nn.functional.pad(x, [*flat, int(before), 0], value=float(low))  # the last axis first
                x = torch.nn.functional.pad(x, [*flat, 0, int(after)], value=float(high))
            return x
        for axis, (before, after) in enumerate(widths):
            moved = x.movedim(axis, -1)
            if mode == "symmetric":
                padded = torch.cat(
                    [moved[..., : int(before)].flip(-1), moved, moved[..., moved.shape[-1] - int(after) :].flip(-1)], -1
                )
            else:
                torch_mode = {"edge": "replicate", "wrap": "circular", "reflect": "reflect"}[mode]
                rows = moved.reshape(1, -1, moved.shape[-1])
                padded = torch.nn.functional.pad(rows, (int(before), int(after)), mode=torch_mode)
                padded = padded.reshape((*moved.shape[:-1], padded.shape[-1]))
            x = padded.movedim(-1, axis)
        return x

    return pad


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="flip",
        inputs=("x",),
        forward=_flip,
        backward=lambda g, x, *, axis: (onp.flip(g, axis),),
        jvp=linear_jvp("flip"),
        sample_inputs=_flip_samples,
        numpy="flip",
        reference=lambda torch: lambda x, axis=None: torch.flip(x, _dims(x, axis)),
        batch=over_axes,
    )
    register(
        name="fliplr",
        inputs=("x",),
        forward=_fliplr,
        backward=lambda g, x: (onp.fliplr(g),),
        jvp=linear_jvp("fliplr"),
        sample_inputs=lambda rng: [Sample(rng.standard_normal(s)) for s in [(3, 4), (2, 3, 4)]],
        numpy="fliplr",
        reference="torch.fliplr",
    )
    register(
        name="flipud",
        inputs=("x",),
        forward=_flipud,
        backward=lambda g, x: (onp.flipud(g),),
        jvp=linear_jvp("flipud"),
        sample_inputs=lambda rng: [Sample(rng.standard_normal(s)) for s in [(3,), (3, 4), (2, 3, 4)]],
        numpy="flipud",
        reference="torch.flipud",
    )
    register(
        name="rot90",
        inputs=("x",),
        forward=_rot90,
        backward=lambda g, x, *, k, axes: (onp.rot90(g, -k, axes),),
        jvp=linear_jvp("rot90"),
        sample_inputs=_rot90_samples,
        numpy="rot90",
        reference=lambda torch: lambda x, k=1, axes=(0, 1): torch.rot90(x, k, axes),
    )
    register(
        name="roll",
        inputs=("x",),
        forward=_roll,
        backward=_unroll,
        jvp=linear_jvp("roll"),
        sample_inputs=_roll_samples,
        numpy="roll",
        reference=_torch_roll,
    )
    register(
        name="tile",
        inputs=("x",),
        forward=_tile,
        backward=_tile_backward,
        jvp=linear_jvp("tile"),
        sample_inputs=_tile_samples,
        numpy="tile",
        reference=lambda torch: lambda x, reps=1: torch.tile(x, (reps,) if isinstance(reps, int) else reps),
    )
    register(
        name="repeat",
        inputs=("x",),
        forward=_repeat,
        backward=_repeat_backward,
        jvp=linear_jvp("repeat"),
        sample_inputs=_repeat_samples,
        numpy="repeat",
        reference=_torch_repeat,
    )
    register(
        name="pad",
        inputs=("x",),
        forward=_pad,
        backward=_pad_backward,
        sample_inputs=_pad_samples,
        numpy="pad",
        reference=_torch_pad,
    )
