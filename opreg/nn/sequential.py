"""``Sequential``: modules applied one after another; ``MLP`` builds one from a list of layer sizes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from opreg.engine import Autograd
from opreg.errors import OpUsageError
from opreg.nn.activations import ReLU, Sigmoid
from opreg.nn.linear import Linear
from opreg.nn.module import Module
from opreg.nn.op_module import OpModule, check_unary, parse_spec
from opreg.tensor import TensorEngine

Engine = Autograd | TensorEngine | None

#: What ``MLP(activation=...)`` takes: a registered unary op as a string (``"gelu"``,
#: ``"leaky_relu(negative_slope=0.1)"``), or what makes a module given an engine (``ReLU``, a class of one's own,
#: ``functools.partial(OpModule, "leaky_relu", negative_slope=0.1)``).
Activation = str | Callable[[Engine], Module]


class Sequential(Module):
    """``Sequential(Linear(...), ReLU(...), ...)``: each module's output is the next one's input.

    The modules must record on one engine; parameters are named by position (``"0.W"``), as in PyTorch.
    """

    def __init__(self, *layers: Module) -> None:
        engines = {id(layer.autograd_engine) for layer in layers}
        if len(engines) > 1:
            raise ValueError("the modules of a Sequential must all record on the same engine")
        super().__init__(layers[0].autograd_engine if layers else None)
        self.layers = list(layers)

    def children(self) -> list[tuple[str, Module]]:
        return [(str(i), layer) for i, layer in enumerate(self.layers)]

    def __repr__(self) -> str:
        """As PyTorch's: one line per layer, ``(1): OpModule('leaky_relu', negative_slope=0.1)``."""
        lines = [f"  ({name}): {repr(layer).replace(chr(10), chr(10) + '  ')}" for name, layer in self.children()]
        return "\n".join([f"{type(self).__name__}(", *lines, ")"])

    def forward(self, x: Any) -> Any:
        for layer in self.layers:
            x = layer(x)
        return x


class MLP(Sequential):
    """``MLP([in, hidden, out], engine)`` is the handout's Linear -> ReLU -> Linear -> Sigmoid.

    More sizes give more layers; ``activation`` goes between Linear layers and ``output_activation`` after the
    last (use ``Identity`` to get logits for ``SoftmaxCrossEntropy``). Without an engine, it works on Tensors.

    Either may be any registered unary op, by name: ``activation="gelu"``, or with attributes
    ``activation="leaky_relu(negative_slope=0.1)"`` (see :func:`opreg.nn.op_module.parse_spec`); or anything
    that makes a module given the engine, such as ``Tanh``. An op that is not unary (one differentiable input,
    an output of the input's shape and dtype), given by name or as an :class:`OpModule`, is a
    :class:`~opreg.nn.op_module.NotUnaryOpError` naming it and some ops that are.
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        autograd_engine: Engine = None,
        *,
        activation: Activation = ReLU,
        output_activation: Activation = Sigmoid,
        rng: np.random.Generator | None = None,
        dtype: DTypeLike = np.float64,
    ) -> None:
        if len(layer_sizes) < 2:
            raise ValueError(f"an MLP needs at least an input and an output size, got {list(layer_sizes)}")
        rng = np.random.default_rng() if rng is None else rng
        make_activation = _activation_maker(activation)
        layers: list[Module] = []
        for n_in, n_out in pairwise(layer_sizes):
            layers += [Linear(n_in, n_out, autograd_engine, rng=rng, dtype=dtype), make_activation(autograd_engine)]
        layers[-1] = _activation_maker(output_activation)(autograd_engine)
        checked: set[str] = set()
        for layer in layers[1::2]:  # an op must be unary to stand between layers, however it was given
            if isinstance(layer, OpModule) and layer.spec not in checked:
                check_unary(layer.op, layer.attributes, dtype)
                checked.add(layer.spec)
        super().__init__(*layers)


def _activation_maker(activation: Activation) -> Callable[[Engine], Module]:
    """What makes the activation module for one position: a string names a unary op (and its attributes)."""
    if isinstance(activation, str):
        op, attributes = parse_spec(activation)
        return lambda engine: OpModule(op, engine, **attributes)
    if isinstance(activation, Module):  # calling it would run its forward on the engine
        instead = (
            f'activation="{activation.spec}"'
            if isinstance(activation, OpModule)
            else "a function that makes one given the engine (its class, if that takes the engine first)"
        )
        raise OpUsageError(
            f"activation={activation!r} is a module, and an MLP makes one per layer, on its engine: pass {instead}"
        )
    return activation
