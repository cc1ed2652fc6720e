"""``Optimizer``: parameter groups, per-parameter state, ``zero_grad`` and state dicts, as ``torch.optim.Optimizer``.

An optimizer holds ``param_groups``, a list of dicts each with ``"params"`` (the parameters) and the
hyperparameters that apply to them (``"lr"``, ``"weight_decay"``, ...; those a group does not give are the
optimizer's ``defaults``), and ``state``, a dict from each parameter to what the update rule keeps for it (Adam's
moments, SGD's momentum buffer). A step reads the hyperparameters from the groups every time, so a learning-rate
scheduler (:mod:`opreg.optim.lr_scheduler`), or a user, changes ``group["lr"]`` and the next step uses it.

Parameters are Tensors (the Tensor style) or :class:`opreg.nn.BoundParameter` (the tape style), as
:meth:`opreg.nn.Module.parameters` gives them; ``state`` is keyed by the very objects in ``param_groups``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from opreg import capture
from opreg.nn.module import BoundParameter, Parameter
from opreg.tensor import Tensor

#: Keys a group may hold besides ``"params"`` and the optimizer's hyperparameters: those the schedulers of
#: :mod:`opreg.optim.lr_scheduler` add (as torch's do), names for the parameters, and a name for the group.
EXTRA_GROUP_KEYS = frozenset({"initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum", "param_names", "name"})

EMPTY = (
    "{} got an empty parameter list: does the model register its layers? A Module subclass must call "
    "super().__init__() and assign its layers as attributes (self.fc = Linear(...)); layers kept in a plain list or "
    "dict are not registered (use Sequential or ModuleList)"
)


def identity(parameter: Parameter) -> object:
    """What makes two parameter objects one parameter: the Tensor itself, or a tape parameter's module and
    attribute (``Module.parameters()`` makes new BoundParameter objects at each call)."""
    if isinstance(parameter, BoundParameter):
        return (id(parameter.module), parameter.name)
    return id(parameter)


def describe(parameter: Parameter) -> str:
    data = parameter.data
    return f"{type(parameter).__name__} {data.dtype} {data.shape}"


class Optimizer:
    """The base of the optimizers: ``param_groups``, ``state``, ``zero_grad``, ``add_param_group``,
    ``state_dict``/``load_state_dict``; subclasses define ``step`` and check their hyperparameters in
    :meth:`check_group`."""

    #: The keys of a parameter's state that this optimizer keeps (checked by load_state_dict).
    state_keys: frozenset[str] = frozenset()

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        if isinstance(params, (Tensor, BoundParameter, np.ndarray)):
            raise TypeError(
                f"{type(self).__name__} takes an iterable of parameters (model.parameters(), or a list of "
                f"Tensors), or of parameter groups (dicts), not a single {type(params).__name__}; wrap it in a list"
            )
        self.defaults = defaults
        self.state: dict[Parameter, dict[str, Any]] = {}
        self.param_groups: list[dict[str, Any]] = []
        self._stepped = False  # for the schedulers' warning when they step before the optimizer
        groups = list(params)
        if not groups:
            raise ValueError(EMPTY.format(type(self).__name__))
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    @property
    def parameters(self) -> list[Parameter]:
        """Every parameter of every group, in order."""
        return [p for group in self.param_groups for p in group["params"]]

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {key}: {group[key]}" for key in sorted(group) if key != "params"]
        return "\n".join([*lines, ")"])

    def check_group(self, group: Mapping[str, Any]) -> None:
        """Raise ValueError for a hyperparameter out of range (each optimizer checks its own)."""
        for key in ("lr", "weight_decay", "eps"):
            if key in group and not group[key] >= 0:
                raise ValueError(f"{type(self).__name__}: {key} must be non-negative, got {group[key]}")

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters (the defaults fill in the rest), as torch's:
        to fine-tune with another learning rate, or to train layers unfrozen later. A parameter may belong to one
        group only, once (a second copy would be stepped twice), and a misspelt hyperparameter is an error."""
        name = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(f"a parameter group is a dict with 'params', got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError(f"a parameter group needs 'params' (its parameters), got the keys {sorted(param_group)}")
        params = param_group["params"]
        if isinstance(params, (Tensor, BoundParameter)):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError(
                "a parameter group's 'params' must be ordered (a list), not a set: a set's order changes "
                "between runs, and the state dict numbers the parameters in order"
            )
        else:
            params = list(params)
        if params and all(isinstance(p, tuple) and len(p) == 2 for p in params):  # model.named_parameters()
            param_group.setdefault("param_names", [n for n, _ in params])
            params = [p for _, p in params]
        for i, p in enumerate(params):
            if isinstance(p, np.ndarray) or not (hasattr(p, "data") and hasattr(p, "grad")):
                raise TypeError(
                    f"{name} optimizes parameters (Tensors, or model.parameters()), but parameter {i} is a "
                    f"{type(p).__name__}"
                    + (
                        ": an array has no gradient; use Tensor(array, requires_grad=True)"
                        if hasattr(p, "shape")
                        else ""
                    )
                )
            if isinstance(p, Tensor) and not p.is_leaf:
                raise ValueError(
                    f"{name} cannot optimize parameter {i}: it is a Tensor an op computed, not a leaf; optimize the "
                    "Tensors it was computed from (or t.detach().requires_grad_())"
                )
        unknown = sorted(set(param_group) - {"params"} - set(self.defaults) - EXTRA_GROUP_KEYS)
        if unknown:
            raise ValueError(
                f"{name} has no hyperparameter {unknown[0]!r}; its parameter groups take 'params' and "
                f"{', '.join(repr(k) for k in self.defaults)}"
            )
        group = {**param_group, "params": params}
        for key, default in self.defaults.items():
            group.setdefault(key, default)
        self.check_group(group)
        seen = {identity(p) for g in self.param_groups for p in g["params"]}
        for p in params:
            same = identity(p)
            if same in seen:
                raise ValueError(
                    f"{name}: a parameter ({describe(p)}) is given twice (in one group or in two), so it would be "
                    "stepped twice at each step; give each parameter once"
                )
            seen.add(same)
        param_group.clear()
        param_group.update(group)  # torch changes the dict it is given too
        self.param_groups.append(param_group)

    @capture.replayed
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients: a Tensor's ``.grad`` becomes ``None`` (zeros with ``set_to_none=False``), as in
        torch. A tape parameter's gradient (``dW``) is filled with zeros in place either way: the engine writes
        into that very array, so it cannot be ``None``. A gradient that cannot be written (a read-only or broadcast
        array a user assigned) is replaced by a new array of zeros, a Tensor's ``.grad`` or the module's attribute."""
        for group in self.param_groups:
            for p in group["params"]:
                grad = p.grad
                if grad is None:
                    continue
                if isinstance(p, Tensor) and set_to_none:
                    p.grad = None
                elif grad.flags.writeable:
                    grad.fill(0)
                elif isinstance(p, Tensor):
                    p.grad = np.zeros_like(grad)
                else:  # a BoundParameter reads its module's attribute, and has no setter
                    setattr(p.module, p.grad_name, np.zeros_like(grad))

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        raise NotImplementedError

    # --- state dicts ---------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state as torch lays it out: ``{"state": {index: {name: value}}, "param_groups":
        [{hyperparameters..., "params": [index, ...]}]}``, parameters numbered in order across the groups.
        Unlike torch's, the arrays are copies: later steps do not change a state dict taken before them."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = copy.deepcopy({k: v for k, v in group.items() if k != "params"})
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        # An empty entry (SGD without momentum keeps nothing) is left out, as torch has none.
        state = {index[id(p)]: copy.deepcopy(s) for p, s in self.state.items() if s and id(p) in index}
        return {"state": dict(sorted(state.items())), "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Resume from :meth:`state_dict`: the hyperparameters of each group and each parameter's state, copied
        (cast to the parameter's dtype, as torch). The groups must have the sizes of this optimizer's; a state
        that another optimizer kind saved, or whose arrays do not fit the parameters, is an error, and nothing is
        changed."""
        name = type(self).__name__
        if not (isinstance(state_dict, Mapping) and {"state", "param_groups"} <= set(state_dict)):
            raise ValueError(
                f"{name}.load_state_dict takes what state_dict() returns: a dict with 'state' and 'param_groups'"
            )
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"the state has {len(saved_groups)} parameter groups but this {name} has {len(self.param_groups)}; "
                "build the optimizer with the groups it was saved with"
            )
        sizes = [len(g["params"]) for g in self.param_groups]
        saved_sizes = [len(g["params"]) for g in saved_groups]
        if sizes != saved_sizes:
            raise ValueError(
                f"the state's parameter groups hold {saved_sizes} parameters but this {name}'s hold {sizes}; "
                "build the optimizer on the same model, its parameters in the same order"
            )
        by_index = {
            i: p
            for saved, group in zip(saved_groups, self.param_groups, strict=True)
            for i, p in zip(saved["params"], group["params"], strict=True)
        }
        state: dict[Parameter, dict[str, Any]] = {}
        for i, saved_state in state_dict["state"].items():
            if i not in by_index:
                raise ValueError(f"the state has an entry for parameter {i!r}, which none of its groups lists")
            p = by_index[i]
            unknown = sorted(set(saved_state) - self.state_keys)
            if unknown:
                raise ValueError(
                    f"the state of parameter {i} has {unknown[0]!r}, which {name} does not keep: it was saved by "
                    "another kind of optimizer"
                )
            state[p] = {k: self._cast(p, i, k, v) for k, v in saved_state.items()}
        groups = []
        for saved, group in zip(saved_groups, self.param_groups, strict=True):
            new = copy.deepcopy({k: v for k, v in saved.items() if k != "params"})
            missing = [k for k in self.defaults if k not in new]
            if missing:
                raise ValueError(f"the state's parameter groups have no {missing[0]!r}: it was not saved by a {name}")
            self.check_group(new)
            new["params"] = group["params"]
            if "param_names" in group:
                new.setdefault("param_names", group["param_names"])
            groups.append(new)
        self.param_groups[:] = groups
        self.state = state

    def _cast(self, parameter: Parameter, index: int, key: str, value: Any) -> Any:
        if not isinstance(value, np.ndarray):
            return copy.deepcopy(value)
        data = parameter.data
        if value.shape != data.shape:
            raise ValueError(
                f"the state's {key!r} of parameter {index} has shape {value.shape} but the parameter has shape "
                f"{data.shape}: the state was saved for another model, or its parameters in another order"
            )
        return np.array(value, dtype=data.dtype if data.dtype.kind == "f" else value.dtype, copy=True)
