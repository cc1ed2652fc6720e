"""``Module``: the base of every model piece, in both styles: on an ``Autograd`` tape, or on Tensors.

A module records registered ops on its ``autograd_engine``: an :class:`opreg.Autograd` (the handout's style:
arrays, gradients in ``dW``/``db``), or, when none is given, :data:`opreg.tensor.tensor_engine` (parameters are
Tensors with ``.grad``). The module's code is the same in both; only where parameters and gradients live differs,
and :meth:`Module.parameters` hides that from optimizers.

Sub-modules and parameters are registered by assigning them as attributes, as ``torch.nn.Module.__setattr__``
does (after ``super().__init__()``)::

    class Net(Module):
        def __init__(self, engine=None):
            super().__init__(engine)
            self.fc1 = Linear(64, 32, engine)  # a sub-module: its parameters are Net's "fc1.W", "fc1.b"
            self.act = ReLU(engine)
            self.scale, self.dscale = self.new_parameter(np.ones(32))  # a parameter, in either style

What is a parameter:

- **Tensor style**: a *leaf* Tensor with ``requires_grad=True`` assigned as an attribute (what
  :meth:`Module.new_parameter` makes, or ``Tensor(array, requires_grad=True)``). PyTorch asks for an explicit
  ``nn.Parameter``; opreg has no such class (``opreg.nn.Parameter`` names what optimizers take), so the rule is the
  Tensor's own flag. A Tensor that an op made (not a leaf) or that requires no gradient is a plain attribute.
- **Tape style** (the handout's arrays): a pair of attributes, the array and its gradient array, listed in the
  class's ``parameter_names`` (``(("W", "dW"), ("b", "db"))``), or made by :meth:`Module.new_parameter` and
  assigned together (``self.W, self.dW = self.new_parameter(array)``), which registers the pair.

A list, tuple or dict holding modules or parameters is refused as an attribute: its contents would not be
registered (their parameters never trained, a silent mistake in PyTorch); use :class:`~opreg.nn.Sequential` or
:class:`~opreg.nn.ModuleList`.

Buffers: state that is not a parameter but belongs in the state dict (BatchNorm's running statistics) is a plain
ndarray attribute named in the class's ``buffer_names`` (or registered with :meth:`Module.register_buffer`).

The dtype rule: a layer computes in the dtype of its parameters. An input of another real dtype (a float64 batch
into a float32 model, integers, booleans) is converted to it first by :meth:`Module.cast_input`, the one place the
rule lives, recorded as the op ``astype`` when it can take a gradient, so the gradient reaches the input in the
input's own dtype. PyTorch raises on such a mismatch instead; NumPy would promote silently to float64, making a
float32 model compute (and return gradients) in float64.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import DTypeLike

from opreg import capture
from opreg.engine import Autograd
from opreg.errors import OpregError, OpUsageError
from opreg.tensor import Tensor, TensorEngine, tensor_engine
from opreg.versions import edited

_MISSING = object()


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


def is_parameter_tensor(value: object) -> bool:
    """Whether ``value`` is a Tensor-style parameter when assigned to a module: a leaf Tensor requiring gradients."""
    return isinstance(value, Tensor) and value.requires_grad and value.is_leaf


class ModelFileError(OpregError, ValueError):
    """A state dict or model file that does not fit the model."""


class ModuleInitError(OpUsageError, TypeError):
    """A module used before ``Module.__init__`` ran: a subclass's ``__init__`` that does not call
    ``super().__init__()`` first."""


class IncompatibleKeys(NamedTuple):
    """What :meth:`Module.load_state_dict` returns, as PyTorch's: the model's entries the state lacked, and the
    state's entries the model has no place for (both empty when everything fitted)."""

    missing_keys: list[str]
    unexpected_keys: list[str]


#: The attributes ``Module.__init__`` sets, which a subclass that skipped it lacks.
_INTERNALS = frozenset({"_modules", "_parameters", "_buffers", "_pending", "autograd_engine", "_training"})

#: A tape-style parameter made by new_parameter whose gradient array has not been assigned to an attribute yet.
_NO_GRAD_YET = ""


class Module:
    """A piece of a model whose forward records registered ops on ``autograd_engine`` (Tensors when ``None``).

    Sub-modules and parameters assigned as attributes are registered (see the module's docstring); subclasses may
    also list their own tape-style parameters in ``parameter_names`` as ``(attribute, gradient attribute)`` pairs,
    and buffers in ``buffer_names``. Everything else (parameters, zero_grad, train/eval, state dicts, repr) follows
    from those. A subclass that overrides :meth:`children` to return ``(name, module)`` pairs, the way sub-modules
    were declared before attributes were registered, keeps working.
    """

    parameter_names: tuple[tuple[str, str], ...] = ()
    buffer_names: tuple[str, ...] = ()
    _modules: dict[str, Module | None]
    _parameters: dict[str, str | None]
    _buffers: list[str]
    _pending: list[list[Any]]
    autograd_engine: Autograd | TensorEngine

    def __init__(self, autograd_engine: Autograd | TensorEngine | None = None) -> None:
        state = self.__dict__
        state["_modules"] = {}  # name -> sub-module, in the order assigned
        state["_parameters"] = {}  # name -> its gradient attribute (tape style), or None (a Tensor)
        state["_buffers"] = []  # names given to register_buffer
        state["_pending"] = []  # [array, gradient, array's name, gradient's name] made by new_parameter on a tape
        state["autograd_engine"] = tensor_engine if autograd_engine is None else autograd_engine
        state["_training"] = True

    # --- registration ------------------------------------------------------------------------------------------

    @property
    def training(self) -> bool:
        """Training mode (``train()``, ``eval()``), which layers such as Dropout read. A compiled step that reads it
        is replayed only in the mode it was recorded in (:func:`opreg.capture.mode`)."""
        training: bool = self._training
        if capture.active:
            capture.mode(self)
        return training

    @training.setter
    def training(self, mode: bool) -> None:
        self.__dict__["_training"] = mode  # no capture.bump(): a compiled step keys its programs by the modes read

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "training":
            object.__setattr__(self, name, value)
            return
        state = self.__dict__
        modules: dict[str, Module | None] | None = state.get("_modules")
        if modules is None:
            if isinstance(value, Module) or is_parameter_tensor(value):
                what = "sub-module" if isinstance(value, Module) else "parameter"
                raise ModuleInitError(
                    f"cannot assign the {what} {name!r} to a {type(self).__name__} before Module.__init__ ran: "
                    f"{type(self).__name__}.__init__ must call super().__init__() (with the engine, if any) first"
                )
            object.__setattr__(self, name, value)
            return
        parameters: dict[str, str | None] = state["_parameters"]
        if isinstance(value, Module):
            self._check_engine(name, value)
            parameters.pop(name, None)
            modules[name] = value
        elif name in modules:
            if value is not None:
                raise OpUsageError(
                    f"{type(self).__name__}.{name} is a sub-module: assign a Module or None, not a "
                    f"{type(value).__name__} (del the attribute first to use the name for something else)"
                )
            modules[name] = None
        elif is_parameter_tensor(value):
            parameters.setdefault(name, None)
        elif name in parameters and parameters[name] is None and not self._claims_pending(name, value):
            if value is not None:  # None removes it, as in PyTorch; anything else would drop it silently
                raise OpUsageError(
                    f"{type(self).__name__}.{name} is a parameter: assign a Tensor with requires_grad=True (or "
                    f"None), not {_describe(value)}; to change its values in place, write to .data inside "
                    "opreg.no_grad()"
                )
            del parameters[name]
        else:
            self._claims_pending(name, value)
            _refuse_hidden_modules(self, name, value)
        if state.get(name, _MISSING) is not value:  # train() on a module in training mode changes nothing
            capture.bump()
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        state = self.__dict__
        for registry in ("_modules", "_parameters"):
            state.get(registry, {}).pop(name, None)
        if name in state.get("_buffers", ()):
            state["_buffers"].remove(name)
        object.__delattr__(self, name)

    def __getattr__(self, name: str) -> Any:
        """Only called for a name the instance lacks: the internals of a module whose ``__init__`` skipped
        ``super().__init__()`` get an error saying so."""
        if name in _INTERNALS:
            raise ModuleInitError(
                f"{type(self).__name__} has no {name!r}: {type(self).__name__}.__init__ must call "
                "super().__init__() (with the engine, if any) before the module is used"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _check_engine(self, name: str, module: Module) -> None:
        if module.autograd_engine is not self.autograd_engine:
            raise ValueError(
                f"{type(self).__name__} records on {_engine_name(self.autograd_engine)}, but its sub-module "
                f"{name!r} ({type(module).__name__}) on {_engine_name(module.autograd_engine, self.autograd_engine)}: "
                "a module and its "
                "sub-modules must record on the same engine (pass the engine to super().__init__ and to each layer)"
            )

    def _claims_pending(self, name: str, value: Any) -> bool:
        """Register ``name`` if ``value`` is an array or gradient :meth:`new_parameter` made on a tape."""
        pending: list[list[Any]] = self.__dict__["_pending"]
        if not pending or not isinstance(value, np.ndarray):
            return False
        for entry in pending:
            if value is entry[0] or value is entry[1]:
                parameters: dict[str, str | None] = self.__dict__["_parameters"]
                if value is entry[0]:
                    entry[2] = name
                    parameters[name] = _NO_GRAD_YET if entry[3] is None else entry[3]
                else:
                    entry[3] = name
                    if entry[2] is not None:
                        parameters[entry[2]] = name
                if entry[2] is not None and entry[3] is not None:
                    pending.remove(entry)
                return True
        return False

    def add_module(self, name: str, module: Module | None) -> None:
        """Register ``module`` under ``name``, as assigning ``self.<name>`` does (for names that are not
        identifiers, such as ``Sequential``'s ``"0"``), as PyTorch's ``add_module``."""
        if not isinstance(module, Module | None):
            raise OpUsageError(f"add_module({name!r}, ...) takes a Module or None, not {_describe(module)}")
        setattr(self, name, module)

    def register_buffer(self, name: str, value: np.ndarray | None) -> None:
        """Make ``self.<name> = value`` a buffer: saved in :meth:`state_dict` after the parameters and loaded by
        :meth:`load_state_dict`, but not a parameter (BatchNorm's running statistics). The class attribute
        ``buffer_names`` declares buffers too."""
        if name not in self._buffers and name not in self.buffer_names:
            self._buffers.append(name)
        setattr(self, name, value)

    def new_parameter(self, value: np.ndarray) -> tuple[Any, np.ndarray | None]:
        """``(parameter, gradient)`` for a new parameter: an array and a zero gradient array on a tape, a Tensor
        that requires gradients (and no separate gradient) on Tensors. Assigned as two attributes
        (``self.W, self.dW = self.new_parameter(array)``), they are registered as a parameter in either style."""
        if isinstance(self.autograd_engine, TensorEngine):
            return Tensor(value, requires_grad=True), None
        gradient = np.zeros_like(value)
        self._pending.append([value, gradient, None, None])
        return value, gradient

    # --- the forward -------------------------------------------------------------------------------------------

    def __call__(self, *args: Any) -> Any:
        return self.forward(*args)

    def forward(self, *args: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    def cast_input(self, x: Any, dtype: DTypeLike) -> Any:
        """``x`` in ``dtype``, the dtype of the layer's parameters: the dtype rule, in one place (see the module's
        docstring). Unchanged when it already is; a float array or a Tensor requiring gradients is converted by
        the recorded op ``astype`` (the gradient reaches ``x`` in ``x``'s dtype); integers, booleans and Tensors
        that need no gradient are constants, converted directly. Complex input is refused."""
        if getattr(x, "dtype", None) == dtype:  # the usual case, first: this runs in every layer's forward
            return x
        target = np.dtype(dtype)
        current = x.dtype if isinstance(x, np.ndarray | Tensor) else np.asarray(x).dtype
        if current == target:
            return x
        if current.kind not in "biuf":
            raise OpUsageError(
                f"{type(self).__name__} computes in {target} and takes real numbers, not a {current} input"
            )
        if isinstance(x, Tensor):
            return x.astype(target)
        if current.kind == "f" and isinstance(self.autograd_engine, Autograd):
            return self.autograd_engine.apply("astype", x, dtype=target.name)
        return np.asarray(x).astype(target)

    # --- what the module holds ---------------------------------------------------------------------------------

    def children(self) -> Iterator[Module]:
        """The direct sub-modules, as PyTorch's (:meth:`named_children` gives their names too).

        Before sub-modules were registered by assignment, subclasses overrode this to return ``(name, module)``
        pairs; such an override is still what :meth:`named_children` (and so everything else) reads."""
        for _, module in self.named_children():
            yield module

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """``(name, module)`` for each direct sub-module, in the order they were assigned; a module assigned under
        two names is listed once, as in PyTorch."""
        seen: set[int] = set()
        for name, module in self._child_entries():
            if id(module) not in seen:
                seen.add(id(module))
                yield name, module

    def _child_entries(self) -> list[tuple[str, Module]]:
        """Every ``(name, sub-module)``, a module held twice under both names (what forward and state dicts see)."""
        modules: dict[str, Module | None] = self._modules
        if type(self).children is Module.children:
            return [(name, child) for name, child in modules.items() if child is not None]
        declared: list[tuple[str, Module]] = []  # a subclass declaring its sub-modules the earlier way
        for position, item in enumerate(self.children()):
            name, module = item if isinstance(item, tuple) else (self._name_of(item, position), item)
            if not isinstance(module, Module):
                raise OpUsageError(
                    f"{type(self).__name__}.children() gave {_describe(module)}, not a Module (or a (name, "
                    "Module) pair)"
                )
            declared.append((name, module))
        return declared + [
            (name, child)
            for name, child in modules.items()
            if child is not None and not any(child is module for _, module in declared)
        ]

    def _name_of(self, module: Module, position: int) -> str:
        modules: dict[str, Module | None] = self._modules
        return next((name for name, child in modules.items() if child is module), str(position))

    def modules(self) -> Iterator[Module]:
        """This module and every module inside it, each once, as PyTorch's."""
        for _, module in self.named_modules():
            yield module

    def named_modules(self, prefix: str = "", memo: set[int] | None = None) -> Iterator[tuple[str, Module]]:
        """``("", self)``, then ``(path, module)`` for every module inside (``"0"``, ``"0.1"``), each once."""
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name, memo)

    def _own_parameters(self) -> Iterator[tuple[str, Parameter]]:
        """This module's own parameters (not its sub-modules'), by attribute name: ``parameter_names`` first."""
        declared = dict(self.parameter_names)
        registered: dict[str, str | None] = self._parameters
        for name in [*declared, *(n for n in registered if n not in declared)]:
            value = getattr(self, name, None)
            if value is None:
                continue
            if isinstance(value, Tensor):
                yield name, value
                continue
            grad_name = declared.get(name) or registered.get(name)
            if not grad_name:
                raise OpUsageError(
                    f"{type(self).__name__}.{name} was made by new_parameter on a tape, but its gradient array was "
                    f"not assigned to an attribute: write self.{name}, self.d{name} = self.new_parameter(...)"
                )
            yield name, BoundParameter(self, name, grad_name)

    def named_parameters(self, prefix: str = "", recurse: bool = True) -> list[tuple[str, Parameter]]:
        """Every parameter of this module and (with ``recurse``) its sub-modules, named by its path (``"0.W"``),
        each once (a module or Tensor used in two places is listed at its first), as PyTorch's."""
        named: list[tuple[str, Parameter]] = []
        seen: set[object] = set()
        prefix = prefix if not prefix or prefix.endswith(".") else prefix + "."  # PyTorch's "model" or "model."
        modules = self.named_modules() if recurse else iter([("", self)])
        for path, module in modules:
            for name, parameter in module._own_parameters():
                key: object = id(parameter) if isinstance(parameter, Tensor) else (id(module), name)
                if key not in seen:
                    seen.add(key)
                    named.append((f"{prefix}{path}.{name}" if path else prefix + name, parameter))
        return named

    def parameters(self, recurse: bool = True) -> list[Parameter]:
        return [parameter for _, parameter in self.named_parameters(recurse=recurse)]

    def _own_buffers(self) -> Iterator[tuple[str, np.ndarray]]:
        for name in dict.fromkeys([*self.buffer_names, *self._buffers]):
            value = getattr(self, name, None)
            if value is not None:
                yield name, value

    def named_buffers(self, prefix: str = "") -> list[tuple[str, np.ndarray]]:
        """Every buffer (``buffer_names``, :meth:`register_buffer`) of this module and its sub-modules, by path."""
        prefix = prefix if not prefix or prefix.endswith(".") else prefix + "."
        return [
            (f"{prefix}{path}.{name}" if path else prefix + name, value)
            for path, module in self.named_modules()
            for name, value in module._own_buffers()
        ]

    def buffers(self) -> list[np.ndarray]:
        return [value for _, value in self.named_buffers()]

    @capture.replayed
    def zero_grad(self) -> None:
        for parameter in self.parameters():
            zero_grad_of(parameter)

    def train(self, mode: bool = True) -> Module:
        """Set training mode here and in every sub-module (``eval()`` clears it); returns the module."""
        for module in self.modules():
            module.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    # --- state dicts -------------------------------------------------------------------------------------------

    def _state_entries(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray, bool]]:
        """``(name, array, is_buffer)`` in PyTorch's order: each module's parameters, then its buffers, then its
        sub-modules'. A module held in two places appears under both names, as in PyTorch's state dicts."""
        for name, parameter in self._own_parameters():
            yield prefix + name, parameter.data, False
        for name, value in self._own_buffers():
            yield prefix + name, value, True
        for name, child in self._child_entries():
            yield from child._state_entries(f"{prefix}{name}.")

    def state_dict(self) -> dict[str, np.ndarray]:
        """A copy of every parameter's values, and of every buffer, by name, for saving."""
        return {name: np.array(array, copy=True) for name, array, _ in self._state_entries()}

    def load_state_dict(self, state: Mapping[str, np.ndarray], strict: bool = True) -> IncompatibleKeys:
        """Copy ``state`` into the parameters and buffers, in place (raising their versions: a graph recorded
        before cannot backpropagate through the new values); returns the missing and unexpected names, as PyTorch.

        With ``strict`` (the default) a missing or extra entry is a :class:`ModelFileError` naming the first;
        without, those are only returned. An entry of another shape or dtype is an error either way. On any error
        nothing is changed."""
        targets, missing, unexpected = self._fit_state(state, strict)
        for name, array in targets.items():
            array[...] = state[name]
            edited(array)
        return IncompatibleKeys(missing, unexpected)

    def check_state(self, state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The arrays (parameters' and buffers') by name, if ``state`` fits them (what :meth:`load_state_dict`
        checks before it copies); else :class:`ModelFileError` naming the first entry that is missing, extra or
        misshapen."""
        return self._fit_state(state, strict=True)[0]

    def _fit_state(
        self, state: Mapping[str, np.ndarray], strict: bool
    ) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
        arrays = {name: array for name, array, _ in self._state_entries()}
        missing = [name for name in arrays if name not in state]  # in the model's order
        unexpected = [name for name in state if name not in arrays]
        if strict and (missing or unexpected):
            problem = f"has no entry for {missing[0]!r}" if missing else f"has an unknown {unexpected[0]!r}"
            raise ModelFileError(f"the state does not fit this {type(self).__name__}: it {problem}")
        targets = {name: array for name, array in arrays.items() if name in state}
        for name, array in targets.items():
            value = np.asarray(state[name])
            if value.shape != array.shape or value.dtype != array.dtype:
                raise ModelFileError(
                    f"parameter {name!r} is {value.dtype} {value.shape} in the state but {array.dtype} "
                    f"{array.shape} in this {type(self).__name__}"
                )
        return targets, missing, unexpected

    # --- repr --------------------------------------------------------------------------------------------------

    def extra_repr(self) -> str:
        """What a module shows inside its parentheses (``in_features=4, out_features=8``), as PyTorch's."""
        return ""

    def __repr__(self) -> str:
        """As PyTorch's: ``Linear(in_features=4, out_features=8)``, or one indented line per sub-module."""
        children = list(self.named_children())
        extra = self.extra_repr()
        if not children and "\n" not in extra:
            return f"{type(self).__name__}({extra})"
        lines = (extra.split("\n") if extra else []) + [f"({name}): {child!r}" for name, child in children]
        body = "\n".join(lines).replace("\n", "\n  ")
        return f"{type(self).__name__}(\n  {body}\n)"


def _refuse_hidden_modules(module: Module, name: str, value: Any) -> None:
    """A list, tuple or dict holding modules or parameters, assigned as an attribute, is refused: what it holds
    would not be registered, so no optimizer would see its parameters."""
    if not isinstance(value, list | tuple | dict) or not value or type(module).children is not Module.children:
        return  # a subclass overriding children() declares its sub-modules itself, the way it did before
    items = value.values() if isinstance(value, dict) else value
    held = next((item for item in items if isinstance(item, Module) or is_parameter_tensor(item)), None)
    if held is None:
        return
    kind = "a sub-module" if isinstance(held, Module) else "a parameter"
    raise OpUsageError(
        f"{type(module).__name__}.{name} is a {type(value).__name__} holding {kind} ({_describe(held)}), whose "
        f"parameters would not be registered, so no optimizer would train them: use opreg.nn.ModuleList(...) (or "
        "Sequential(...) for layers applied in turn), or assign each as an attribute of its own"
    )


def _describe(value: object) -> str:
    if isinstance(value, Module):
        return type(value).__name__
    if isinstance(value, Tensor | np.ndarray):
        kind = "a Tensor" if isinstance(value, Tensor) else "an array"
        return f"{kind} ({value.dtype} {value.shape})"
    return f"a {type(value).__name__}"


def _engine_name(engine: object, other: object = None) -> str:
    if isinstance(engine, TensorEngine):
        return "Tensors"
    return "another Autograd tape" if isinstance(other, Autograd) else "an Autograd tape"
