"""Normalisation layers, as ``torch.nn``'s: ``LayerNorm``, ``BatchNorm1d``, ``BatchNorm2d``.

Each is assembled from registered ops (``mean``, ``var``, ``sub``, ``sqrt``, ``div``, ``mul``, ``add``,
``reshape``), so its gradients come from theirs and compose to any order, on a tape or on Tensors. The variance
that normalises is the biased one (divided by N), as PyTorch's; BatchNorm's running estimate of the variance
takes the unbiased one (divided by N - 1), as PyTorch's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from opreg.engine import Autograd
from opreg.nn.layer_errors import LayerError, check_engine, values
from opreg.nn.module import Module, Value
from opreg.tensor import TensorEngine
from opreg.versions import edited

Engine = Autograd | TensorEngine | None


class _Affine(Module):
    """What the normalisation layers share: an optional ``weight`` (ones) and ``bias`` (zeros) of ``shape``, each
    declared as a parameter only when it exists (``weight``/``bias`` are ``None`` otherwise, as in PyTorch)."""

    eps: float

    def __init__(self, autograd_engine: Engine, shape: tuple[int, ...], weight: bool, bias: bool, dtype: DTypeLike):
        super().__init__(autograd_engine)
        self.dtype = np.dtype(dtype)  # what the layer computes in (Module.cast_input, the dtype rule)
        self.weight: Any = None  # a Tensor, an array (tape), or None without the parameter
        self.dweight: np.ndarray | None = None
        self.bias: Any = None
        self.dbias: np.ndarray | None = None
        if weight:
            self.weight, self.dweight = self.new_parameter(np.ones(shape, dtype))
        if weight and bias:
            self.bias, self.dbias = self.new_parameter(np.zeros(shape, dtype))
        names = (("weight", "dweight"),) if weight else ()
        self.parameter_names = names + ((("bias", "dbias"),) if self.bias is not None else ())

    def parameter(self, name: str, shape: tuple[int, ...] | None) -> Any:
        """Parameter ``name`` reshaped to ``shape`` (``None``: as it is) to broadcast against the input, with the
        reshape recorded so that its gradient reaches the parameter (``d<name>`` on a tape)."""
        value, gradient = getattr(self, name), getattr(self, "d" + name)
        if shape is None:
            return value
        return self.autograd_engine.apply("reshape", value, shape=shape, gradients_to_update=[gradient])

    def scale_and_shift(self, normalized: Value, shape: tuple[int, ...] | None) -> Value:
        """``normalized * weight + bias`` with the parameters there are; on a tape their gradients land in
        ``dweight`` and ``dbias`` (through the recorded reshape when ``shape`` is given)."""
        apply, y = self.autograd_engine.apply, normalized
        if self.weight is not None:
            target = self.dweight if shape is None else None
            y = apply("mul", y, self.parameter("weight", shape), gradients_to_update=[None, target])
        if self.bias is not None:
            target = self.dbias if shape is None else None
            y = apply("add", y, self.parameter("bias", shape), gradients_to_update=[None, target])
        return y

    def standardize(self, x: Value, axes: tuple[int, ...]) -> tuple[Value, Value, Value]:
        """``((x - mean) / sqrt(var + eps), mean, var)`` over ``axes`` (kept, of size 1), var biased."""
        apply = self.autograd_engine.apply
        mean = apply("mean", x, axis=axes, keepdims=True)
        var = apply("var", x, axis=axes, keepdims=True)
        std = apply("sqrt", apply("add", var, self.eps))
        return apply("div", apply("sub", x, mean), std), mean, var


class LayerNorm(_Affine):
    """Normalises over the last ``len(normalized_shape)`` axes of the input, which must be ``normalized_shape``:
    ``(x - mean) / sqrt(var + eps) * weight + bias``, ``weight`` and ``bias`` of ``normalized_shape``.

    Train and eval mode compute the same. ``elementwise_affine=False`` has neither parameter, ``bias=False`` no
    bias, as PyTorch's. An input whose trailing axes are not ``normalized_shape`` is a :class:`LayerError`.
    """

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        autograd_engine: Engine = None,
        *,
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        dtype: DTypeLike = np.float64,
    ) -> None:
        check_engine("LayerNorm", autograd_engine)
        shape = (normalized_shape,) if isinstance(normalized_shape, int | np.integer) else tuple(normalized_shape)
        if not all(isinstance(n, int | np.integer) and n >= 0 for n in shape):
            raise LayerError(f"LayerNorm: normalized_shape must be whole numbers >= 0, not {normalized_shape!r}")
        self.normalized_shape = tuple(int(n) for n in shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        super().__init__(autograd_engine, self.normalized_shape, elementwise_affine, bias, dtype)

    def __repr__(self) -> str:
        return (
            f"LayerNorm({self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
            f"bias={self.bias is not None})"
        )

    def config(self) -> dict[str, Any]:
        return {
            "normalized_shape": list(self.normalized_shape),
            "eps": self.eps,
            "elementwise_affine": self.elementwise_affine,
            "bias": self.bias is not None,
        }

    def forward(self, x: Value) -> Value:
        x = self.cast_input(x, self.dtype)
        shape, k = np.shape(values(x)), len(self.normalized_shape)
        if len(shape) < k or tuple(shape[len(shape) - k :]) != self.normalized_shape:
            star = ", ".join(["*", *map(str, self.normalized_shape)])
            raise LayerError(
                f"LayerNorm: given normalized_shape={self.normalized_shape}, expected an input of shape [{star}], "
                f"but got one of shape {tuple(shape)}"
            )
        axes = tuple(range(len(shape) - k, len(shape)))
        if math.prod(self.normalized_shape) == 0:  # nothing to normalise: an empty result, and no NaN warnings
            normalized = self.autograd_engine.apply("mul", x, 0.0)
        else:
            normalized, _, _ = self.standardize(x, axes)
        return self.scale_and_shift(normalized, None)


class _BatchNorm(_Affine):
    """BatchNorm1d and BatchNorm2d: per channel (axis 1) over the batch and every axis after the channels.

    In training mode (and in eval mode when running statistics are not tracked) the input is normalised with its
    own batch statistics; with ``track_running_stats``, training also updates ``running_mean`` and
    ``running_var`` (``(1 - momentum) * running + momentum * batch``, the unbiased batch variance; with
    ``momentum=None`` the plain average of all batches so far) and counts ``num_batches_tracked``. Eval mode
    normalises with the running statistics, constants that get no gradient. The three are buffers
    (``buffer_names``), saved in the state dict after the parameters; without ``track_running_stats`` they are
    ``None`` and not buffers. A single value per channel in training mode (a batch of 1 for (N, C) input) is a
    :class:`LayerError`, as PyTorch's ValueError: its variance is 0 and the output would be all zeros.
    """

    buffer_names: tuple[str, ...] = ("running_mean", "running_var", "num_batches_tracked")
    #: The numbers of input axes the layer takes, and how its errors describe them.
    dims: tuple[int, ...] = ()
    dims_text = ""

    def __init__(
        self,
        num_features: int,
        autograd_engine: Engine = None,
        *,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        bias: bool = True,
        dtype: DTypeLike = np.float64,
    ) -> None:
        name = type(self).__name__
        check_engine(name, autograd_engine)
        if not isinstance(num_features, int | np.integer) or num_features < 0:
            raise LayerError(f"{name}: num_features must be a whole number >= 0, got {num_features!r}")
        if momentum is not None and not 0 <= momentum <= 1:
            raise LayerError(f"{name}: momentum must be between 0 and 1 (or None for a plain average), got {momentum}")
        if eps < 0:
            raise LayerError(f"{name}: eps must be >= 0, got {eps}")
        self.num_features = int(num_features)
        self.eps, self.momentum = eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        super().__init__(autograd_engine, (self.num_features,), affine, bias, dtype)
        self.running_mean: np.ndarray | None = None
        self.running_var: np.ndarray | None = None
        self.num_batches_tracked: np.ndarray | None = None
        if track_running_stats:
            self.running_mean = np.zeros(self.num_features, dtype)
            self.running_var = np.ones(self.num_features, dtype)
            self.num_batches_tracked = np.array(0, dtype=np.int64)
        else:
            self.buffer_names = ()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, bias={self.bias is not None}, track_running_stats={self.track_running_stats})"
        )

    def config(self) -> dict[str, Any]:
        return {
            "num_features": self.num_features,
            "eps": self.eps,
            "momentum": self.momentum,
            "affine": self.affine,
            "track_running_stats": self.track_running_stats,
            "bias": self.bias is not None,
        }

    def check_input(self, shape: tuple[int, ...], batch_statistics: bool) -> None:
        name = type(self).__name__
        if len(shape) not in self.dims:
            raise LayerError(f"{name}: expected {self.dims_text} input, got {len(shape)}-D input of shape {shape}")
        if shape[1] != self.num_features:
            raise LayerError(
                f"{name}({self.num_features}) expects {self.num_features} channels (input axis 1), got input of "
                f"shape {shape}"
            )
        if batch_statistics and math.prod(shape) == shape[1]:
            raise LayerError(
                f"{name}: expected more than 1 value per channel when training, got input of shape {shape}; "
                "normalise a larger batch, or call eval() to use the running statistics"
            )
        if batch_statistics and self.eps <= 0:
            raise LayerError(f"{name}: eps must be positive when normalising with batch statistics, got {self.eps}")

    def forward(self, x: Value) -> Value:
        x = self.cast_input(x, self.dtype)
        shape = tuple(np.shape(values(x)))
        batch_statistics = self.training or self.running_mean is None
        self.check_input(shape, batch_statistics)
        channels = (self.num_features,) + (1,) * (len(shape) - 2)  # what broadcasts against axis 1
        per_channel = None if len(shape) == 2 else channels
        apply = self.autograd_engine.apply
        if not batch_statistics:
            assert self.running_mean is not None and self.running_var is not None
            # constants, no gradient; copies, so that a later training step's update leaves this graph alone
            center = np.array(self.running_mean.reshape(channels), copy=True)
            scale = (1 / np.sqrt(self.running_var + self.eps)).reshape(channels)
            normalized = apply("mul", apply("sub", x, center), scale)
        elif math.prod(shape) == 0:  # an empty batch: an empty result, and the running statistics unchanged
            normalized = apply("mul", x, 0.0)
            self.update_running_statistics(None, None, 0)
        else:
            axes = (0, *range(2, len(shape)))
            normalized, mean, var = self.standardize(x, axes)
            self.update_running_statistics(values(mean), values(var), math.prod(shape) // shape[1])
        return self.scale_and_shift(normalized, per_channel)

    def update_running_statistics(self, mean: np.ndarray | None, var: np.ndarray | None, n: int) -> None:
        """In training mode with tracking: count the batch, and fold its ``mean`` and biased ``var`` (over ``n``
        values per channel; ``None`` for an empty batch, which changes neither) into the running estimates."""
        if not (self.training and self.track_running_stats):
            return
        assert self.running_mean is not None and self.running_var is not None and self.num_batches_tracked is not None
        self.num_batches_tracked[...] = self.num_batches_tracked + 1
        if mean is not None and var is not None:
            momentum = 1 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            unbiased = var.reshape(self.num_features) * (n / (n - 1))
            self.running_mean[...] = momentum * mean.reshape(self.num_features) + (1 - momentum) * self.running_mean
            self.running_var[...] = momentum * unbiased + (1 - momentum) * self.running_var
        edited(self.running_mean, self.running_var, self.num_batches_tracked)


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) input, per channel C (see :class:`_BatchNorm`)."""

    dims = (2, 3)
    dims_text = "2-D (N, C) or 3-D (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) input, per channel C (see :class:`_BatchNorm`)."""

    dims = (4,)
    dims_text = "4-D (N, C, H, W)"
