"""Windows over NCHW image batches: ``conv2d``, ``max_pool2d``, ``avg_pool2d``, and the two linear maps the
derivatives are built from, ``unfold`` (im2col: every kernel-sized patch of the padded input as a column) and
``fold`` (col2im: columns added back into an image, overlaps summed); each as PyTorch's
``torch.nn.functional`` function of the same name.

Fast enough to train on: every window is read through one strided view of the padded input
(``sliding_window_view``, :class:`Geometry`), copied once; ``fold`` loops over the kernel's offsets (9 for a 3x3
kernel, never over pixels); ``conv2d`` is one matrix product per image of the weight with the columns.

The derivatives are written with registered ops, so that they compose to any order:

- ``unfold`` and ``fold`` are linear and each other's adjoint: the backward of one is the other.
- ``conv2d``'s gradient for the input is the weight's transpose times ``g``, folded back into an image (the
  transposed convolution); for the weight, ``g`` times the input's columns (a correlation of the input with
  ``g``); for the bias, ``g`` summed over the batch and the pixels. The columns forward computed are kept
  (``saved``) for the first derivative; differentiated again, the backward takes them from ``unfold``, recorded.
- The pools' backwards spread ``g`` over each window's kernel positions (max: to one, by a constant mask; avg:
  to all, divided) and ``fold`` the windows back: linear in ``g``.

conv2d's bias is a required input, of shape ``(out_channels,)``: one op, one product plus a broadcast add, and the
gradient of a constant bias is never computed (``needs_grad``). PyTorch's ``conv2d(x, w)`` without a bias is
``conv2d(x, w, zeros)``; ``opreg.nn.Conv2d(..., bias=False)`` passes a constant zero vector.

Choices at the edges, each PyTorch's but the last:

- max_pool2d gives a window's whole gradient to one element: the first maximum in the window's row-major order
  (ties are not split, unlike ``amax``'s), or the last NaN if the window has any (its output is then NaN).
  Padding (-inf, or the lowest integer) is never chosen: a window whose every input is -inf chooses its first
  input. A padding larger than half the kernel is refused, as PyTorch refuses it.
- avg_pool2d pads with zeros; with ``count_include_pad=True`` (the default) every window divides by kh * kw,
  otherwise by how many of its elements are inside the image.
- A dilated max_pool2d window can lie wholly in the padding: its output is -inf and depends on no input, so its
  gradient goes nowhere (PyTorch sends it to an element outside the window).

Only 4-D inputs (a batch, possibly empty) are taken (3-D columns for fold); padding is by ints (PyTorch's
``'same'`` and ``'valid'`` strings are not supported), ``ceil_mode`` is False, and there is no
``return_indices`` or ``divisor_override``.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import opreg.numpy as onp
from opreg.plugin import Register, Sample, constant, hookimpl, op

#: A size given as PyTorch takes it: one int for both axes, or a pair (height, width).
Pair = int | tuple[int, int]


def pair(value: Any, what: str, minimum: int) -> tuple[int, int]:
    """``value`` as a pair of ints of at least ``minimum``; else a ValueError naming ``what``."""
    try:
        values = (
            (operator.index(value),) * 2 if not isinstance(value, tuple | list) else tuple(map(operator.index, value))
        )
    except TypeError:
        values = ()
    if len(values) != 2 or min(values) < minimum:
        raise ValueError(f"{what} must be an int or a pair of ints, each at least {minimum}, got {value!r}")
    return values[0], values[1]


class Geometry:
    """Where the windows of a kernel fall on an image: sizes, strides, padding, dilation, and the output's size."""

    def __init__(self, image: tuple[int, int], kernel_size: Any, stride: Any, padding: Any, dilation: Any) -> None:
        self.kernel = pair(kernel_size, "kernel_size", 1)
        self.stride = pair(stride, "stride", 1)
        self.padding = pair(padding, "padding", 0)
        self.dilation = pair(dilation, "dilation", 1)
        self.image = image
        self.extent = tuple(d * (k - 1) + 1 for d, k in zip(self.dilation, self.kernel, strict=True))
        padded = tuple(n + 2 * p for n, p in zip(image, self.padding, strict=True))
        if any(e > n for e, n in zip(self.extent, padded, strict=True)):
            raise ValueError(
                f"the kernel (size {self.kernel}, dilation {self.dilation}, so {self.extent} pixels) is larger than "
                f"the padded input ({image} padded by {self.padding})"
            )
        self.out = tuple((n - e) // s + 1 for n, e, s in zip(padded, self.extent, self.stride, strict=True))

    @property
    def size(self) -> int:
        """The number of kernel positions, kh * kw."""
        return self.kernel[0] * self.kernel[1]

    @property
    def length(self) -> int:
        """The number of windows, out_h * out_w."""
        return self.out[0] * self.out[1]

    def patches(self, x: np.ndarray, fill: Any = 0) -> np.ndarray:
        """A view ``(N, C, out_h, out_w, kh, kw)`` of ``x`` padded with ``fill``: element ``[n, c, a, b, i, j]``
        is the input under kernel position ``(i, j)`` of window ``(a, b)``."""
        (ph, pw), (sh, sw), (dh, dw) = self.padding, self.stride, self.dilation
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
        view = sliding_window_view(x, self.extent, axis=(2, 3))  # (N, C, H', W', eh, ew)
        return view[:, :, ::sh, ::sw, ::dh, ::dw]

    def windows(self, x: np.ndarray, fill: Any = 0) -> np.ndarray:
        """The same view as :meth:`patches`, ``(N, C, kh, kw, out_h, out_w)``: the kernel's axes first."""
        return self.patches(x, fill).transpose(0, 1, 4, 5, 2, 3)

    def columns(self, x: np.ndarray, fill: Any = 0) -> np.ndarray:
        """``(N, C * kh * kw, out_h * out_w)``, a new array: PyTorch's unfold layout (channel, then kernel row and
        column, each window a column)."""
        n, c = x.shape[:2]
        return np.ascontiguousarray(self.windows(x, fill)).reshape(n, c * self.size, self.length)

    def fold(self, cols: np.ndarray) -> np.ndarray:
        """The adjoint of :meth:`columns`: each column's values added back where they were read from."""
        n, k, _ = cols.shape
        c = k // self.size
        (kh, kw), (sh, sw), (dh, dw), (ph, pw) = self.kernel, self.stride, self.dilation, self.padding
        (oh, ow), (h, w) = self.out, self.image
        blocks = cols.reshape(n, c, kh, kw, oh, ow)
        if (sh, sw) == (kh, kw) and (dh, dw) == (1, 1):  # windows that tile the image (pooling's): one copy
            tiles = blocks.transpose(0, 1, 4, 2, 5, 3).reshape(n, c, oh * kh, ow * kw)
            if (oh * kh, ow * kw) == (h + 2 * ph, w + 2 * pw) and not (ph or pw):
                return tiles
            out = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
            out[:, :, : oh * kh, : ow * kw] = tiles
            return np.ascontiguousarray(out[:, :, ph : ph + h, pw : pw + w])
        out = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
        for i in range(kh):  # one strided add per kernel offset: kh * kw of them, whatever the image's size
            for j in range(kw):
                out[:, :, i * dh : i * dh + sh * (oh - 1) + 1 : sh, j * dw : j * dw + sw * (ow - 1) + 1 : sw] += blocks[
                    :, :, i, j
                ]
        return np.ascontiguousarray(out[:, :, ph : ph + h, pw : pw + w])

    def attributes(self) -> dict[str, tuple[int, int]]:
        return {"kernel_size": self.kernel, "stride": self.stride, "padding": self.padding, "dilation": self.dilation}


def require_ndim(x: Any, ndim: int, op_name: str, layout: str) -> None:
    if np.ndim(x) != ndim:
        raise ValueError(f"{op_name} takes a {ndim}-D input {layout}, got shape {np.shape(x)}")


# --- unfold and fold -------------------------------------------------------------------------------------------------


def _unfold(
    x: np.ndarray, *, kernel_size: Pair = 1, dilation: Pair = 1, padding: Pair = 0, stride: Pair = 1
) -> np.ndarray:
    """im2col: (N, C, H, W) -> (N, C*kh*kw, L), each window of the zero-padded input a column, as F.unfold."""
    require_ndim(x, 4, "unfold", "(N, C, H, W)")
    return Geometry(x.shape[2:], kernel_size, stride, padding, dilation).columns(x)


def _unfold_backward(g: Any, x: Any, *, kernel_size: Pair, dilation: Pair, padding: Pair, stride: Pair) -> tuple[Any]:
    """fold, unfold's adjoint: each column's gradient added back where it was read (overlaps sum)."""
    size = (x.shape[2], x.shape[3])
    attributes = {"kernel_size": kernel_size, "dilation": dilation, "padding": padding, "stride": stride}
    return (op("fold")(g, output_size=size, **attributes),)


def _fold(
    x: np.ndarray,
    *,
    output_size: Pair = 1,
    kernel_size: Pair = 1,
    dilation: Pair = 1,
    padding: Pair = 0,
    stride: Pair = 1,
) -> np.ndarray:
    """col2im: (N, C*kh*kw, L) -> (N, C, H, W) of output_size, overlapping windows summed, as F.fold."""
    require_ndim(x, 3, "fold", "(N, C * kh * kw, L)")
    geometry = Geometry(pair(output_size, "output_size", 1), kernel_size, stride, padding, dilation)
    if x.shape[1] % geometry.size or x.shape[2] != geometry.length:
        raise ValueError(
            f"fold of a {geometry.kernel} kernel into {geometry.image} takes (N, C * {geometry.size}, "
            f"{geometry.length}) columns, got shape {x.shape}"
        )
    return geometry.fold(x)


def _fold_backward(
    g: Any, x: Any, *, output_size: Pair, kernel_size: Pair, dilation: Pair, padding: Pair, stride: Pair
) -> tuple[Any]:
    """unfold, fold's adjoint: each column reads back the image's gradient where it was added."""
    return (op("unfold")(g, kernel_size=kernel_size, dilation=dilation, padding=padding, stride=stride),)


# --- conv2d ----------------------------------------------------------------------------------------------------------


def _conv_shapes(x: Any, weight: Any, bias: Any, groups: int) -> tuple[int, int, int]:
    """(groups, out channels per group, in channels per group), after checking the shapes fit."""
    require_ndim(x, 4, "conv2d", "x (N, C, H, W)")
    require_ndim(weight, 4, "conv2d", "weight (out_channels, in_channels / groups, kh, kw)")
    groups = operator.index(groups)
    out_channels, per_group = weight.shape[:2]
    if groups < 1 or x.shape[1] != per_group * groups or out_channels % groups:
        raise ValueError(
            f"conv2d with groups={groups}: x has {x.shape[1]} channels and the weight {weight.shape} takes "
            f"{per_group} per group to {out_channels} outputs; the channels must be groups * weight.shape[1] and "
            "the outputs a multiple of groups"
        )
    if np.shape(bias) != (out_channels,):
        raise ValueError(
            f"conv2d's bias must have shape ({out_channels},), one per output channel, got {np.shape(bias)} (no "
            "bias: a zero vector)"
        )
    return groups, out_channels // groups, per_group


def _conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    *,
    stride: Pair = 1,
    padding: Pair = 0,
    dilation: Pair = 1,
    groups: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """2-D cross-correlation of x (N, C, H, W) with weight (out, C/groups, kh, kw), plus bias (out,), as F.conv2d."""
    groups, per_out, per_in = _conv_shapes(x, weight, bias, groups)
    geometry = Geometry(x.shape[2:], weight.shape[2:], stride, padding, dilation)
    n, k = x.shape[0], per_in * geometry.size
    cols = geometry.columns(x)  # (N, C*kh*kw, L)
    kernels = weight.reshape(groups, per_out, k)
    out = np.matmul(kernels, cols.reshape(n, groups, k, geometry.length))  # (N, G, out/G, L): one GEMM per image
    out = out.reshape(n, groups * per_out, *geometry.out) + bias.reshape(-1, 1, 1)
    return out, cols


def _conv2d_backward(
    g: Any,
    x: Any,
    weight: Any,
    bias: Any,
    *,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    groups: int,
    saved: np.ndarray | None,
    needs_grad: tuple[bool, ...],
) -> tuple[Any, Any, Any]:
    """x: the transposed convolution (the weight's transpose times g, folded); weight: g times x's columns; bias:
    g summed over the batch and the pixels."""
    n, channels, h, w = x.shape
    out_channels, per_in, kh, kw = weight.shape
    per_out, k = out_channels // groups, per_in * kh * kw
    length = g.shape[2] * g.shape[3]
    attributes = {"kernel_size": (kh, kw), "stride": stride, "padding": padding, "dilation": dilation}
    grads = onp.reshape(g, (n, groups, per_out, length))
    dx = dw = db = None
    if needs_grad[0]:
        kernels = onp.reshape(weight, (groups, per_out, k))
        cols = onp.matmul(onp.swapaxes(kernels, 1, 2), grads)  # (N, G, k, L)
        dx = op("fold")(onp.reshape(cols, (n, channels * kh * kw, length)), output_size=(h, w), **attributes)
    if needs_grad[1]:
        cols = op("unfold")(x, **attributes) if saved is None else saved
        cols = onp.reshape(cols, (n, groups, k, length))
        per_image = onp.matmul(grads, onp.swapaxes(cols, 2, 3))  # (N, G, out/G, k): a third of einsum's time
        dw = onp.reshape(onp.sum(per_image, axis=0), weight.shape)
    if needs_grad[2]:
        db = onp.sum(g, axis=(0, 2, 3))
    return dx, dw, db


# --- pooling --------------------------------------------------------------------------------------------------------


def _geometry(x: Any, op_name: str, kernel_size: Any, stride: Any, padding: Any, dilation: Any) -> Geometry:
    require_ndim(x, 4, op_name, "(N, C, H, W)")
    if kernel_size is None:
        raise ValueError(f"{op_name} needs the attribute kernel_size, e.g. {op_name}(x, kernel_size=2)")
    geometry = Geometry(x.shape[2:], kernel_size, kernel_size if stride is None else stride, padding, dilation)
    if any(2 * p > k for p, k in zip(geometry.padding, geometry.kernel, strict=True)):
        raise ValueError(
            f"{op_name}'s padding {geometry.padding} must be at most half the kernel size {geometry.kernel}"
        )
    return geometry


def _spread(g: Any, x: Any, geometry: Geometry, weights: Any) -> Any:
    """``g`` (N, C, out_h, out_w) times ``weights`` (broadcasting against (N, C, L, kh*kw)) for each kernel position
    of its window, folded back into x's shape."""
    n, c = x.shape[:2]
    columns = onp.reshape(g, (n, c, geometry.length, 1)) * weights
    columns = onp.broadcast_to(columns, shape=(n, c, geometry.length, geometry.size))
    columns = onp.swapaxes(columns, 2, 3)  # fold's layout: (N, C, kh*kw, L)
    attributes = geometry.attributes()
    return op("fold")(
        onp.reshape(columns, (n, c * geometry.size, geometry.length)), output_size=geometry.image, **attributes
    )


# --- max_pool2d ------------------------------------------------------------------------------------------------------


def _lowest(dtype: np.dtype[Any]) -> Any:
    return -np.inf if dtype.kind == "f" else np.iinfo(dtype).min if dtype.kind in "iu" else False


def _argmax(x: np.ndarray, geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """For each window, the kernel position PyTorch's max_pool2d takes, (N, C, L), and the window's value, (N, C,
    out_h, out_w): PyTorch's scan in row-major order, taking an element that is greater than the maximum so far or
    NaN (so the first of tied maxima, the last NaN), one vectorised step per kernel position; padding never."""
    view = geometry.windows(x, _lowest(x.dtype))  # (N, C, kh, kw, out_h, out_w), no copy
    kw = geometry.kernel[1]
    best = view[:, :, 0, 0].copy()
    index = np.zeros(best.shape, np.intp)
    for k in range(1, geometry.size):
        value = view[:, :, k // kw, k % kw]
        taken = value > best
        if x.dtype.kind == "f":
            taken |= np.isnan(value)
        np.copyto(index, k, where=taken)
        np.copyto(best, value, where=taken)
    index = index.reshape(*x.shape[:2], geometry.length)
    if any(geometry.padding):  # a window of nothing but -inf kept the padding: its first input instead
        inside = geometry.patches(np.ones((1, 1, *geometry.image), bool), False).reshape(
            1, 1, geometry.length, geometry.size
        )
        padded = ~np.take_along_axis(inside, index[..., None], axis=-1)[..., 0]
        if padded.any():
            index = np.where(padded, np.argmax(inside, axis=-1), index)  # its value is -inf all the same
    return index, best


def _max_pool2d(
    x: np.ndarray, *, kernel_size: Pair | None = None, stride: Pair | None = None, padding: Pair = 0, dilation: Pair = 1
) -> tuple[np.ndarray, np.ndarray]:
    """The maximum of each window (stride defaults to kernel_size), as F.max_pool2d; the gradient goes to the
    first maximum of each window, as in PyTorch (ties are not split)."""
    geometry = _geometry(x, "max_pool2d", kernel_size, stride, padding, dilation)
    index, out = _argmax(x, geometry)
    return out, index


def _max_pool2d_backward(
    g: Any, x: Any, *, kernel_size: Pair, stride: Pair | None, padding: Pair, dilation: Pair, saved: np.ndarray | None
) -> tuple[Any]:
    """g to each window's chosen element (a constant mask), the windows folded back: overlapping windows add."""
    geometry = _geometry(x, "max_pool2d", kernel_size, stride, padding, dilation)
    index = _argmax(constant(x), geometry)[0] if saved is None else saved
    chosen = (index[..., None] == np.arange(geometry.size)).astype(g.dtype)  # (N, C, L, kh*kw)
    return (_spread(g, x, geometry, chosen),)


# --- avg_pool2d ------------------------------------------------------------------------------------------------------


def _divisor(geometry: Geometry, count_include_pad: bool) -> Any:
    """What each window's sum is divided by: kh*kw, or (without padding counted) its elements inside the image,
    an array (out_h * out_w,)."""
    if count_include_pad or not any(geometry.padding):
        return geometry.size
    return geometry.windows(np.ones((1, 1, *geometry.image)), 0.0).sum(axis=(2, 3)).reshape(-1)


def _avg_pool2d(
    x: np.ndarray,
    *,
    kernel_size: Pair | None = None,
    stride: Pair | None = None,
    padding: Pair = 0,
    count_include_pad: bool = True,
) -> np.ndarray:
    """The mean of each window of the zero-padded input (stride defaults to kernel_size), as F.avg_pool2d."""
    geometry = _geometry(x, "avg_pool2d", kernel_size, stride, padding, 1)
    sums = geometry.windows(x).sum(axis=(2, 3)).reshape(*x.shape[:2], geometry.length)
    divisor = _divisor(geometry, count_include_pad)
    return np.asarray(sums / np.asarray(divisor, dtype=sums.dtype)).reshape(*x.shape[:2], *geometry.out)


def _avg_pool2d_backward(
    g: Any, x: Any, *, kernel_size: Pair, stride: Pair | None, padding: Pair, count_include_pad: bool
) -> tuple[Any]:
    """g / divisor to every element of each window, the windows folded back: overlapping windows add."""
    geometry = _geometry(x, "avg_pool2d", kernel_size, stride, padding, 1)
    divisor = np.asarray(_divisor(geometry, count_include_pad), dtype=g.dtype)
    return (_spread(g, x, geometry, 1 / divisor.reshape(-1, 1)),)


# --- samples ---------------------------------------------------------------------------------------------------------


def _distinct(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values at least 0.2 apart: no ties for finite differences to straddle."""
    size = int(np.prod(shape))
    return rng.permutation(size).reshape(shape) * 0.25 - size / 8 + rng.uniform(0.0, 0.05, size=shape)


def _max_pool2d_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample(_distinct(rng, (2, 2, 4, 4)), kernel_size=2),
        Sample(_distinct(rng, (1, 2, 5, 5)), kernel_size=3, stride=1, padding=1),
        Sample(_distinct(rng, (1, 1, 6, 5)), kernel_size=(2, 3), stride=(2, 1), padding=(1, 0), dilation=(2, 1)),
        Sample(_distinct(rng, (0, 1, 2, 2)), kernel_size=2),
    ]


def _avg_pool2d_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample(rng.standard_normal((2, 2, 4, 4)), kernel_size=2),
        Sample(rng.standard_normal((1, 2, 5, 5)), kernel_size=3, stride=2, padding=1),
        Sample(
            rng.standard_normal((1, 1, 5, 6)), kernel_size=(2, 3), stride=(1, 2), padding=1, count_include_pad=False
        ),
    ]


def _conv2d_samples(rng: np.random.Generator) -> list[Sample]:
    def case(x: tuple[int, ...], w: tuple[int, ...], **attributes: Any) -> Sample:
        return Sample(rng.standard_normal(x), rng.standard_normal(w), rng.standard_normal(w[0]), **attributes)

    return [
        case((2, 2, 4, 4), (3, 2, 3, 3)),
        case((1, 2, 5, 6), (2, 2, 3, 2), stride=2, padding=1),
        case((1, 1, 5, 5), (2, 1, 2, 2), dilation=2, padding=(1, 2), stride=(2, 1)),
        case((1, 4, 3, 4), (4, 2, 2, 2), groups=2, padding=1),
        case((0, 2, 3, 3), (1, 2, 2, 2)),
    ]


def _unfold_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample(rng.standard_normal((2, 2, 3, 4)), kernel_size=2),
        Sample(rng.standard_normal((1, 2, 5, 4)), kernel_size=(3, 2), stride=2, padding=1),
        Sample(rng.standard_normal((1, 1, 5, 5)), kernel_size=2, dilation=2, padding=(0, 1), stride=(1, 2)),
    ]


def _fold_samples(rng: np.random.Generator) -> list[Sample]:
    return [
        Sample(rng.standard_normal((2, 8, 6)), output_size=(3, 4), kernel_size=2),
        Sample(rng.standard_normal((1, 6, 6)), output_size=(4, 5), kernel_size=(3, 2), stride=2, padding=1),
        Sample(rng.standard_normal((1, 4, 9)), output_size=5, kernel_size=2, dilation=2, padding=(0, 1), stride=(1, 2)),
    ]


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="conv2d",
        inputs=("x", "weight", "bias"),
        forward=_conv2d,
        backward=_conv2d_backward,
        sample_inputs=_conv2d_samples,
        reference="torch.nn.functional.conv2d",
    )
    register(
        name="unfold",
        inputs=("x",),
        forward=_unfold,
        backward=_unfold_backward,
        sample_inputs=_unfold_samples,
        reference="torch.nn.functional.unfold",
    )
    register(
        name="fold",
        inputs=("x",),
        forward=_fold,
        backward=_fold_backward,
        sample_inputs=_fold_samples,
        reference="torch.nn.functional.fold",
    )
    register(
        name="max_pool2d",
        inputs=("x",),
        forward=_max_pool2d,
        backward=_max_pool2d_backward,
        sample_inputs=_max_pool2d_samples,
        reference="torch.nn.functional.max_pool2d",
    )
    register(
        name="avg_pool2d",
        inputs=("x",),
        forward=_avg_pool2d,
        backward=_avg_pool2d_backward,
        sample_inputs=_avg_pool2d_samples,
        reference="torch.nn.functional.avg_pool2d",
    )
