"""``Sequential``: modules applied one after another; ``MLP`` builds one from a list of layer sizes."""

from __future__ import annotations

import reprlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import pairwise
from typing import Any, overload

import numpy as np
from numpy.typing import DTypeLike

from opreg.engine import Autograd
from opreg.errors import OpregError, OpUsageError
from opreg.memory import require_memory
from opreg.nn.activations import Identity, ReLU, Sigmoid, Tanh
from opreg.nn.linear import Linear
from opreg.nn.module import Module
from opreg.nn.op_module import OpModule, check_unary, parse_spec
from opreg.random import generator
from opreg.tensor import TensorEngine

Engine = Autograd | TensorEngine | None

#: What ``MLP(activation=...)`` takes: a registered unary op as a string (``"gelu"``,
#: ``"leaky_relu(negative_slope=0.1)"``), or what makes a module given an engine (``ReLU``, a class of one's own,
#: ``functools.partial(OpModule, "leaky_relu", negative_slope=0.1)``).
Activation = str | Callable[[Engine], Module] | None


class Sequential(Module):
    """``Sequential(Linear(...), ReLU(...), ...)``, or ``Sequential([...])``: each module's output is the next
    one's input.

    The modules must record on one engine; they are named by position (``"0"``, parameters ``"0.W"``), as in
    PyTorch, or by the keys of a dict given instead (``Sequential({"fc": Linear(...), "act": ReLU()})``). As
    PyTorch's, it has ``len``, iteration, indexing (``model[0]``, ``model[-1]``; a slice is a ``Sequential`` of the
    same modules, keeping their names) and :meth:`append`.
    """

    def __init__(self, *layers: Module | Sequence[Module] | Mapping[str, Module]) -> None:
        named = _named_layers(layers)
        engines = {id(layer.autograd_engine) for _, layer in named}
        if len(engines) > 1:
            raise ValueError("the modules of a Sequential must all record on the same engine")
        super().__init__(named[0][1].autograd_engine if named else None)
        for name, layer in named:
            self.add_module(name, layer)

    @property
    def layers(self) -> list[Module]:
        """The modules, in order (a new list: :meth:`append` adds one); a module held twice is there twice."""
        return [module for _, module in self._child_entries()]

    def append(self, module: Module) -> Sequential:
        """Add ``module`` at the end (named by its position); returns the Sequential, as PyTorch's."""
        if not isinstance(module, Module):
            raise OpUsageError(f"Sequential.append takes a Module, not a {type(module).__name__}")
        if not self._modules:  # an empty Sequential records on whatever its first module records on
            self.__dict__["autograd_engine"] = module.autograd_engine
        elif module.autograd_engine is not self.autograd_engine:
            raise ValueError("the modules of a Sequential must all record on the same engine")
        self.add_module(str(len(self._modules)), module)
        return self

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Module]:
        return iter(self.layers)

    @overload
    def __getitem__(self, index: int) -> Module: ...

    @overload
    def __getitem__(self, index: slice) -> Sequential: ...

    def __getitem__(self, index: int | slice) -> Module | Sequential:
        named = list(self._child_entries())
        if isinstance(index, slice):
            return Sequential(dict(named[index]))
        if not isinstance(index, int | np.integer):
            raise TypeError(f"a Sequential is indexed by an int or a slice, not a {type(index).__name__}")
        if not -len(named) <= index < len(named):
            raise IndexError(f"index {index} is out of range for a Sequential of {len(named)} modules")
        return named[index][1]

    def forward(self, x: Any) -> Any:
        if type(self).children is not Module.children:  # a subclass declaring its modules the earlier way
            return _run(self.layers, x)
        for layer in self._modules.values():  # a module given twice runs twice; the hot path: no copies
            if layer is not None:
                x = layer(x)
        return x


def _run(layers: list[Module], x: Any) -> Any:
    for layer in layers:
        x = layer(x)
    return x


class ModuleList(Module):
    """Modules held in a list, each registered (named by position), as PyTorch's ``nn.ModuleList``: for layers a
    model's own ``forward`` calls in its own way. A plain list of modules assigned as an attribute is refused,
    since its modules' parameters would not be registered."""

    def __init__(self, modules: Iterable[Module] = (), autograd_engine: Autograd | TensorEngine | None = None) -> None:
        modules = list(modules)
        engines = {id(module.autograd_engine) for module in modules}
        if len(engines) > 1:
            raise ValueError("the modules of a ModuleList must all record on the same engine")
        super().__init__(modules[0].autograd_engine if modules and autograd_engine is None else autograd_engine)
        for module in modules:
            self.append(module)

    def append(self, module: Module) -> ModuleList:
        """Add ``module`` at the end; returns the list. An empty list records on what its first module does."""
        if not self._modules:
            self.__dict__["autograd_engine"] = module.autograd_engine
        self.add_module(str(len(self._modules)), module)
        return self

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return (module for _, module in self._child_entries())

    @overload
    def __getitem__(self, index: int) -> Module: ...

    @overload
    def __getitem__(self, index: slice) -> ModuleList: ...

    def __getitem__(self, index: int | slice) -> Module | ModuleList:
        """The module at ``index`` (negative counts from the end); a slice is a ModuleList, as PyTorch's."""
        modules = [module for _, module in self._child_entries()]
        if isinstance(index, slice):
            return ModuleList(modules[index], self.autograd_engine)
        return modules[index]

    def forward(self, *args: Any) -> Any:
        raise NotImplementedError("a ModuleList has no forward: call its modules in your model's forward")


def _named_layers(layers: tuple[Any, ...]) -> list[tuple[str, Module]]:
    """``Sequential``'s arguments as ``(name, module)`` pairs: modules, or one list or dict of them."""
    if len(layers) == 1 and isinstance(layers[0], Mapping):
        named = [(str(name), layer) for name, layer in layers[0].items()]
    else:
        if len(layers) == 1 and isinstance(layers[0], list | tuple):
            layers = tuple(layers[0])
        named = [(str(i), layer) for i, layer in enumerate(layers)]
    for name, layer in named:
        if not isinstance(layer, Module):
            raise OpUsageError(
                f"Sequential takes modules (as arguments, or one list or dict of them), but {name!r} is a "
                f"{type(layer).__name__}"
            )
    return named


class MLP(Sequential):
    """``MLP([in, hidden, out], engine)`` is the handout's Linear -> ReLU -> Linear -> Sigmoid.

    More sizes give more layers; ``activation`` goes between Linear layers and ``output_activation`` after the
    last (use ``Identity``, or ``None``, to get logits for ``SoftmaxCrossEntropy``). Without an engine, it works
    on Tensors. Without ``rng``, the weights are drawn from :func:`opreg.random.generator` (reproducible after
    ``opreg.manual_seed(n)``).

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
        rng = generator(rng)
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

    def config(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this architecture (not its weights), as JSON values, for
        :func:`opreg.nn.save`: ``{"layer_sizes": [4, 8, 3], "activation": "relu", "output_activation": None,
        "dtype": "float64"}``. Each activation is recorded as its op (``OpModule.spec``), ``None`` for Identity; an
        activation of another kind (a class of one's own) cannot be recorded: :class:`ArchitectureError`."""
        linears = self.layers[0::2]
        if not all(isinstance(layer, Linear) for layer in linears):
            raise ArchitectureError("its layers are no longer Linear layers alternating with activations")
        sizes = [int(np.shape(linears[0].W)[1]), *(int(np.shape(layer.W)[0]) for layer in linears)]
        specs = [_activation_spec(layer) for layer in self.layers[1::2]]
        if len(set(specs[:-1])) > 1:
            raise ArchitectureError(f"its hidden activations differ ({', '.join(map(str, dict.fromkeys(specs)))})")
        return {
            "layer_sizes": sizes,
            "activation": specs[0] if len(specs) > 1 else "relu",
            "output_activation": specs[-1],
            "dtype": linears[0].W.dtype.name,
        }

    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> None:
        """What :func:`opreg.nn.load_model` checks before building an MLP from a file's ``config``: layer sizes
        that are whole numbers, and weights that fit in memory (a file can claim any size)."""
        unknown = sorted(set(config) - {"layer_sizes", "activation", "output_activation", "dtype"})
        if unknown:
            raise ArchitectureError(f"MLP takes no argument {unknown[0]!r}")
        sizes, dtype = config.get("layer_sizes"), config.get("dtype", "float64")
        if not (
            isinstance(sizes, list)
            and len(sizes) >= 2
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in sizes)
        ):
            raise ArchitectureError(
                f"layer_sizes must be a list of at least two whole numbers of at least 1, got {reprlib.repr(sizes)}"
            )
        if not (isinstance(dtype, str) and dtype in ("float16", "float32", "float64")):
            raise ArchitectureError(f"dtype must be float16, float32 or float64, got {dtype!r}")
        weights = sum((n_in + 1) * n_out for n_in, n_out in pairwise(sizes))
        require_memory(
            2 * weights * np.dtype(dtype).itemsize,
            f"MLP {'-'.join(map(str, sizes))}",
            "; the sizes are the layer_sizes of the architecture in the file",
            estimate=True,
        )


class ArchitectureError(OpregError, ValueError):
    """A model whose architecture cannot be recorded by :func:`opreg.nn.save`, or a recorded one that does not
    build the model."""


def _activation_spec(layer: Module) -> str | None:
    if isinstance(layer, Identity):
        return None
    if isinstance(layer, OpModule):
        return layer.spec
    raise ArchitectureError(
        f"its activation {layer!r} is a {type(layer).__name__}, which a file cannot record: give MLP the activation "
        'as a registered op\'s name (activation="tanh") to save the architecture'
    )


_ACTIVATION_CLASSES: dict[str, Callable[[Engine], Module]] = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}


def _activation_maker(activation: Activation) -> Callable[[Engine], Module]:
    """What makes the activation module for one position: a string names a unary op (and its attributes), None
    is Identity."""
    if activation is None:
        return Identity
    if isinstance(activation, str):
        op, attributes = parse_spec(activation)
        if not attributes and op in _ACTIVATION_CLASSES:  # the same module, shown as ReLU() rather than OpModule
            return _ACTIVATION_CLASSES[op]
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
