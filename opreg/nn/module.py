"""``Module``: the base of every model piece, in both styles: on an ``Autograd`` tape, or on Tensors.

A module records registered ops on its ``autograd_engine``: an :class:`opreg.Autograd` (the handout's style:
arrays, gradients in ``dW``/``db``), or, when none is given, :data:`opreg.tensor.tensor_engine` (parameters are
Tensors with ``.grad``). The module's code is the same in both; only where parameters and gradients live differs,
and :meth:`Module.parameters` hides that from optimizers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from opreg.engine import Autograd
from opreg.errors import OpregError
from opreg.tensor import Tensor, TensorEngine, tensor_engine
from opreg.versions import edited


class BoundParameter:
    """A tape-style parameter: the module attribute holding the array (``W``) and the one holding its gradient
    (``dW``), read when used, so a user may replace either attribute, as in the handout."""

    __slots__ = ("grad_name", "module", "name")

    def __init__(self, module: Module, name: str, grad_name: str) -> None:
        self.module, self.name, self.grad_name = module, name, grad_name

    # Annotated locals, not typing.cast: these run for every parameter on every optimizer step.
    @property
    def data(self) -> np.ndarray:
        array: np.ndarray = getattr(self.module, self.name)
        return array

    @property
    def grad(self) -> np.ndarray:
        array: np.ndarray = getattr(self.module, self.grad_name)
        return array

    def __repr__(self) -> str:
        return f"BoundParameter({type(self.module).__name__}.{self.name}, {self.data.dtype} {self.data.shape})"


#: What flows through a module: arrays on a tape, Tensors on Tensors (arrays are accepted there too).
Value = np.ndarray | Tensor

#: What :meth:`Module.parameters` yields: a Tensor (Tensor style) or a :class:`BoundParameter` (tape style); both
#: have ``.data`` (updated in place by optimizers) and ``.grad``.
Parameter = Tensor | BoundParameter


def zero_grad_of(parameter: Parameter) -> None:
    """Forget a parameter's gradient: ``None`` for a Tensor (as PyTorch), zeros in place for a tape gradient."""
    if isinstance(parameter, Tensor):
        parameter.grad = None
    else:
        parameter.grad.fill(0)


class ModelFileError(OpregError, ValueError):
    """A state dict or model file that does not fit the model."""


class Module:
    """A piece of a model whose forward records registered ops on ``autograd_engine`` (Tensors when ``None``).

    Subclasses list their own parameters in ``parameter_names`` as ``(attribute, gradient attribute)`` pairs and
    their sub-modules through :meth:`children`; everything else (parameters, zero_grad, train/eval, state dicts)
    follows from those.
    """

    parameter_names: tuple[tuple[str, str], ...] = ()

    def __init__(self, autograd_engine: Autograd | TensorEngine | None = None) -> None:
        self.autograd_engine = tensor_engine if autograd_engine is None else autograd_engine
        self.training = True

    def __call__(self, *args: Any) -> Any:
        return self.forward(*args)

    def forward(self, *args: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    def new_parameter(self, value: np.ndarray) -> tuple[Any, np.ndarray | None]:
        """``(parameter, gradient)`` for a new parameter: an array and a zero gradient array on a tape, a Tensor
        that requires gradients (and no separate gradient) on Tensors."""
        if isinstance(self.autograd_engine, TensorEngine):
            return Tensor(value, requires_grad=True), None
        return value, np.zeros_like(value)

    def children(self) -> list[tuple[str, Module]]:
        """The named sub-modules."""
        return []

    def named_parameters(self, prefix: str = "") -> list[tuple[str, Parameter]]:
        """Every parameter of this module and its sub-modules, named by its path (``"0.W"``)."""
        named: list[tuple[str, Parameter]] = []
        for name, grad_name in self.parameter_names:
            value = getattr(self, name)
            named.append((prefix + name, value if isinstance(value, Tensor) else BoundParameter(self, name, grad_name)))
        for child_name, child in self.children():
            named += child.named_parameters(f"{prefix}{child_name}.")
        return named

    def parameters(self) -> list[Parameter]:
        return [parameter for _, parameter in self.named_parameters()]

    def zero_grad(self) -> None:
        for parameter in self.parameters():
            zero_grad_of(parameter)

    def train(self, mode: bool = True) -> Module:
        """Set training mode here and in every sub-module (``eval()`` clears it); returns the module."""
        self.training = mode
        for _, child in self.children():
            child.train(mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of every parameter's values by name, for saving."""
        return {name: np.array(parameter.data, copy=True) for name, parameter in self.named_parameters()}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Copy ``state`` into the parameters, in place (raising their versions: a graph recorded before cannot
        backpropagate through the new values); any missing, extra or misshapen entry is an error naming
        the first one, and nothing is changed."""
        parameters = self.check_state(state)
        for name, parameter in parameters.items():
            parameter.data[...] = state[name]
            edited(parameter.data)

    def check_state(self, state: Mapping[str, np.ndarray]) -> dict[str, Parameter]:
        """The parameters by name, if ``state`` fits them (what :meth:`load_state_dict` checks before it copies);
        else :class:`ModelFileError` naming the first entry that is missing, extra or misshapen."""
        parameters = dict(self.named_parameters())
        missing = [name for name in parameters if name not in state]  # in the model's order
        unexpected = [name for name in state if name not in parameters]
        if missing or unexpected:
            problem = f"has no entry for parameter {missing[0]!r}" if missing else f"has an unknown {unexpected[0]!r}"
            raise ModelFileError(f"the state does not fit this {type(self).__name__}: it {problem}")
        for name, parameter in parameters.items():
            value = np.asarray(state[name])
            if value.shape != parameter.data.shape or value.dtype != parameter.data.dtype:
                raise ModelFileError(
                    f"parameter {name!r} is {value.dtype} {value.shape} in the state but {parameter.data.dtype} "
                    f"{parameter.data.shape} in this {type(self).__name__}"
                )
        return parameters
