"""Image layers: ``Conv2d``, ``MaxPool2d``, ``AvgPool2d``, ``Flatten`` and ``Unflatten``, each recording one
registered op (conv2d, max_pool2d, avg_pool2d, reshape), in both styles; and ``CNN``, a small convolutional
classifier for the bundled 8x8 digits.

Their arguments, defaults, initialisation and ``repr`` are PyTorch's (``torch.nn.Conv2d`` and the rest), and the
parameters are named ``weight`` and ``bias`` as there (their tape-style gradients ``dweight`` and ``dbias``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from opreg.engine import Autograd
from opreg.memory import require_memory
from opreg.nn.activations import ReLU
from opreg.nn.linear import Linear
from opreg.nn.module import Module, Value
from opreg.nn.sequential import ArchitectureError, Sequential
from opreg.random import generator
from opreg.tensor import TensorEngine

Engine = Autograd | TensorEngine | None
#: A size as PyTorch takes it: one int for both axes, or a pair (height, width).
Size = int | tuple[int, int]


def _pair(value: Size | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    first, second = value
    return int(first), int(second)


def _shape(x: Value) -> tuple[int, ...]:
    return tuple(x.shape)


class Conv2d(Module):
    """2-D convolution (cross-correlation) of (N, C, H, W) batches, as ``torch.nn.Conv2d``.

    ``weight`` is (out_channels, in_channels / groups, kh, kw) and ``bias`` (out_channels,), or ``None`` with
    ``bias=False``; both are drawn uniformly from +-1/sqrt(fan_in), fan_in = in_channels / groups * kh * kw, as
    PyTorch's default (kaiming uniform with a = sqrt(5)). Padding is zeros.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Size,
        stride: Size = 1,
        padding: Size = 0,
        dilation: Size = 1,
        groups: int = 1,
        bias: bool = True,
        autograd_engine: Engine = None,
        *,
        rng: np.random.Generator | None = None,
        dtype: DTypeLike = np.float64,
    ) -> None:
        super().__init__(autograd_engine)
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(
                f"Conv2d: in_channels ({in_channels}) and out_channels ({out_channels}) must both be divisible by "
                f"groups ({groups})"
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation = _pair(padding), _pair(dilation)
        rng = generator(rng)
        fan_in = in_channels // groups * self.kernel_size[0] * self.kernel_size[1]
        bound = 1 / math.sqrt(fan_in)
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        self.weight, self.dweight = self.new_parameter(rng.uniform(-bound, bound, shape).astype(dtype))
        self.bias: Any = None
        self.dbias: np.ndarray | None = None
        if bias:
            self.bias, self.dbias = self.new_parameter(rng.uniform(-bound, bound, out_channels).astype(dtype))
            self.parameter_names = (("weight", "dweight"), ("bias", "dbias"))
        else:
            self.parameter_names = (("weight", "dweight"),)
            self.zero_bias = np.zeros(out_channels, dtype)

    def forward(self, x: Value) -> Value:
        x = self.cast_input(x, self.weight.dtype)  # the dtype rule (Module.cast_input)
        bias = self.zero_bias if self.bias is None else self.bias
        return self.autograd_engine.apply(
            "conv2d",
            x,
            self.weight,
            bias,
            gradients_to_update=[None, self.dweight, self.dbias],
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
        )

    def __repr__(self) -> str:
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return f"Conv2d({text})"


class MaxPool2d(Module):
    """The maximum of each window, as ``torch.nn.MaxPool2d`` (``stride`` defaults to ``kernel_size``); a window's
    gradient goes to its first maximum, as in PyTorch."""

    def __init__(
        self,
        kernel_size: Size,
        stride: Size | None = None,
        padding: Size = 0,
        dilation: Size = 1,
        autograd_engine: Engine = None,
    ) -> None:
        super().__init__(autograd_engine)
        self.kernel_size, self.padding, self.dilation = kernel_size, padding, dilation
        self.stride = kernel_size if stride is None else stride

    def forward(self, x: Value) -> Value:
        return self.autograd_engine.apply(
            "max_pool2d",
            x,
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
        )

    def __repr__(self) -> str:
        return (
            f"MaxPool2d(kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode=False)"
        )


class AvgPool2d(Module):
    """The mean of each window of the zero-padded input, as ``torch.nn.AvgPool2d`` (``stride`` defaults to
    ``kernel_size``; ``count_include_pad=False`` divides by the window's elements inside the image)."""

    def __init__(
        self,
        kernel_size: Size,
        stride: Size | None = None,
        padding: Size = 0,
        count_include_pad: bool = True,
        autograd_engine: Engine = None,
    ) -> None:
        super().__init__(autograd_engine)
        self.kernel_size, self.padding, self.count_include_pad = kernel_size, padding, count_include_pad
        self.stride = kernel_size if stride is None else stride

    def forward(self, x: Value) -> Value:
        return self.autograd_engine.apply(
            "avg_pool2d",
            x,
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            count_include_pad=self.count_include_pad,
        )

    def __repr__(self) -> str:
        return f"AvgPool2d(kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding})"


class Flatten(Module):
    """Axes ``start_dim`` to ``end_dim`` (inclusive, negative from the end) merged into one, as
    ``torch.nn.Flatten``: (N, C, H, W) -> (N, C*H*W) by default. The registered op ``reshape``."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1, autograd_engine: Engine = None) -> None:
        super().__init__(autograd_engine)
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x: Value) -> Value:
        shape = _shape(x)
        start, end = self.start_dim % max(len(shape), 1), self.end_dim % max(len(shape), 1)
        if start > end:
            raise ValueError(
                f"Flatten: start_dim {self.start_dim} comes after end_dim {self.end_dim} for shape {shape}"
            )
        merged = (*shape[:start], math.prod(shape[start : end + 1]), *shape[end + 1 :])
        return self.autograd_engine.apply("reshape", x, shape=merged)

    def __repr__(self) -> str:
        return f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim})"


class Unflatten(Module):
    """Axis ``dim`` split into ``unflattened_size``, as ``torch.nn.Unflatten``: (N, 64) -> (N, 1, 8, 8) with
    ``Unflatten(1, (1, 8, 8))``. The registered op ``reshape``."""

    def __init__(self, dim: int, unflattened_size: Sequence[int], autograd_engine: Engine = None) -> None:
        super().__init__(autograd_engine)
        self.dim, self.unflattened_size = dim, tuple(int(n) for n in unflattened_size)

    def forward(self, x: Value) -> Value:
        shape = _shape(x)
        dim = self.dim % max(len(shape), 1)
        if math.prod(self.unflattened_size) != shape[dim]:
            raise ValueError(
                f"Unflatten: axis {self.dim} of shape {shape} has {shape[dim]} elements, not "
                f"{math.prod(self.unflattened_size)} = {' * '.join(map(str, self.unflattened_size))}"
            )
        return self.autograd_engine.apply("reshape", x, shape=(*shape[:dim], *self.unflattened_size, *shape[dim + 1 :]))

    def __repr__(self) -> str:
        return f"Unflatten(dim={self.dim}, unflattened_size={self.unflattened_size})"


class CNN(Sequential):
    """A small convolutional classifier of flat square images (the bundled digits: 64 pixels, 8x8):

    Unflatten to (1, side, side); for each entry of ``channels``, Conv2d 3x3 (padding 1), ReLU, MaxPool2d 2; then
    Flatten and Linear to ``classes`` logits (for ``SoftmaxCrossEntropy``). The default, 16 then 32 channels on
    8x8 images, is Conv 1->16, ReLU, MaxPool, Conv 16->32, ReLU, MaxPool, Flatten, Linear 128->10: 6,154
    parameters. Without an engine, it works on Tensors.
    """

    def __init__(
        self,
        features: int = 64,
        classes: int = 10,
        channels: Sequence[int] = (16, 32),
        autograd_engine: Engine = None,
        *,
        rng: np.random.Generator | None = None,
        dtype: DTypeLike = np.float64,
    ) -> None:
        side = math.isqrt(features)
        if side * side != features or not channels or side >> len(channels) < 1:
            raise ValueError(
                f"a CNN takes square images whose side halves {len(channels)} times (one per conv layer), given as "
                f"rows of side * side features: {features} features are not such an image"
            )
        rng = generator(rng)
        widths = tuple(int(c) for c in channels)
        layers: list[Module] = [Unflatten(1, (1, side, side), autograd_engine)]
        previous = 1
        for count in widths:
            layers += [
                Conv2d(previous, count, 3, padding=1, autograd_engine=autograd_engine, rng=rng, dtype=dtype),
                ReLU(autograd_engine),
                MaxPool2d(2, autograd_engine=autograd_engine),
            ]
            previous = count
        side >>= len(widths)
        layers += [Flatten(autograd_engine=autograd_engine)]
        layers += [Linear(previous * side * side, classes, autograd_engine, rng=rng, dtype=dtype)]
        super().__init__(*layers)
        self.features, self.classes, self.channels, self.dtype = features, classes, widths, np.dtype(dtype)

    @classmethod
    def check_config(cls, config: dict[str, Any]) -> None:
        """What :func:`opreg.nn.load_model` checks before building a CNN from a file's ``config``: whole numbers
        where sizes belong, and weights that fit in memory (a file can claim any size)."""
        unknown = sorted(set(config) - {"features", "classes", "channels", "dtype"})
        if unknown:
            raise ArchitectureError(f"CNN takes no argument {unknown[0]!r}")
        channels = config.get("channels", [16, 32])
        sizes = [config.get("features", 64), config.get("classes", 10), *channels] if isinstance(channels, list) else []
        if not sizes or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in sizes):
            raise ArchitectureError(
                f"features, classes and channels must be whole numbers of at least 1, got {config!r:.200}"
            )
        dtype = config.get("dtype", "float64")
        if not (isinstance(dtype, str) and dtype in ("float16", "float32", "float64")):
            raise ArchitectureError(f"dtype must be float16, float32 or float64, got {dtype!r:.60}")
        widths = [1, *channels]
        weights = sum(9 * n_in * n_out + n_out for n_in, n_out in pairwise(widths))
        weights += (widths[-1] * config.get("features", 64) + 1) * config.get("classes", 10)
        require_memory(
            2 * weights * np.dtype(dtype).itemsize,
            f"CNN with channels {channels!r:.100}",
            "; the sizes are the features, classes and channels of the architecture in the file",
            estimate=True,
        )

    def config(self) -> dict[str, Any]:
        """The constructor's keyword arguments that rebuild this architecture (not its weights), as JSON values."""
        return {
            "features": self.features,
            "classes": self.classes,
            "channels": list(self.channels),
            "dtype": self.dtype.name,
        }
