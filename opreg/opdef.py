"""What an op is (:class:`OpDef`) and how a plugin declares one (:func:`define_op`, the keywords of ``register``).

Declarations are validated here, once, when the registry loads: types through typeguard, arities through
``inspect``. Nothing here runs per recorded operation except :meth:`OpDef.bind_attributes`, and that only for
ops that have attributes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
from typeguard import typechecked

from opreg.errors import OpUsageError, RegistrationError

#: The gradient check's defaults, PyTorch ``gradcheck``'s; an op may override any of them with ``tolerances=``.
CHECK_TOLERANCES = MappingProxyType({"eps": 1e-6, "atol": 1e-5, "rtol": 1e-3})

#: Names the engine's own keywords use, so no attribute may take them.
RESERVED_NAMES = frozenset({"gradients_to_update", "output", "needs_grad", "saved"})

_NO_ATTRIBUTES: Mapping[str, Any] = MappingProxyType({})


class Sample:
    """One set of inputs for a gradient check, with attribute values: ``Sample(x, axis=1, keepdims=True)``."""

    __slots__ = ("attributes", "inputs")

    def __init__(self, *inputs: Any, **attributes: Any) -> None:
        self.inputs = inputs
        self.attributes = attributes

    def describe(self) -> str:
        """`` with axis=1`` for error messages; empty without attributes."""
        return " with " + ", ".join(f"{k}={v!r}" for k, v in self.attributes.items()) if self.attributes else ""


#: ``sample_inputs(rng)`` returns the arrays of one sample, or a list of :class:`Sample` for several.
SampleInputs = Callable[[np.random.Generator], "Sequence[np.ndarray] | Sequence[Sample]"]


@dataclass(frozen=True, slots=True)
class OpDef:
    """One registered op: a forward/backward pair with a declared input order, and optional attributes.

    ``forward(*inputs, **attributes)`` returns the output array (``(output, saved)`` when ``saves_for_backward``).
    ``backward(grad_output, *inputs, **attributes)`` (plus ``output=``, ``needs_grad=`` and ``saved=`` where
    declared) returns one gradient per declared input, in the declared order, ``None`` where the input gets no
    gradient. Gradients may have the broadcast shape; the engine sums them
    back to the input's shape. Attributes are static keyword parameters (an axis, a slope), never differentiated.
    """

    name: str
    inputs: tuple[str, ...]
    forward: Callable[..., Any]
    backward: Callable[..., Sequence[Any]]
    differentiable: tuple[bool, ...]
    sample_inputs: SampleInputs
    doc: str
    backward_uses_output: bool
    plugin: str
    tolerances: Mapping[str, float]
    attributes: Mapping[str, Any]
    #: Whether backward takes ``needs_grad=`` (one bool per input) to skip gradients nobody will use.
    backward_uses_needs_grad: bool = False
    #: Whether forward returns ``(output, saved)`` and backward takes ``saved=``: what forward computed anyway
    #: and backward needs (softmax's exponentials), kept with the recorded op rather than computed twice.
    saves_for_backward: bool = False
    #: Whether backward is built from registered ops only (Tensor operators, opreg.ops), so that it also runs on
    #: Tensors, recording itself, and can be differentiated again (``opreg.grad(..., create_graph=True)``).
    differentiable_backward: bool = False
    #: The plugin whose op of this name this one replaces, by its declaration ``overrides=True``; else None.
    overrides: str | None = None
    #: ``"name version"`` of the installed package whose entry point registered the op; None for opreg's own
    #: built-ins and for plugins registered in-process. Errors name it, so a user knows what to upgrade or report.
    distribution: str | None = None
    no_targets: tuple[None, ...] = ()  # (None,) * len(inputs): the default gradients_to_update, built once
    #: Set by anomaly mode only: called as ``after_backward(output, grads, needed)`` on every backward.
    after_backward: Callable[[Any, Sequence[Any], Sequence[Any] | None], None] | None = None

    extra_backward_keywords: bool = False  # any of backward_uses_output, _needs_grad, saves_for_backward: set once
    all_needed: tuple[bool, ...] = ()  # (True,) * len(inputs), built once

    def __post_init__(self) -> None:
        object.__setattr__(self, "no_targets", (None,) * len(self.inputs))
        object.__setattr__(self, "all_needed", (True,) * len(self.inputs))
        extra = self.backward_uses_output or self.backward_uses_needs_grad or self.saves_for_backward
        object.__setattr__(self, "extra_backward_keywords", extra)

    def describe(self) -> str:
        """``op 'name' (plugin 'p')``, or ``op 'name' (plugin 'p' of package-name 1.0)`` for an op an installed
        package registered: how every error message names this op."""
        source = f" of {self.distribution}" if self.distribution else ""
        return f"op {self.name!r} (plugin {self.plugin!r}{source})"

    def describe_input(self, position: int) -> str:
        """``input 1 'b'``: how error messages name one of this op's inputs."""
        return f"input {position} {self.inputs[position]!r}"

    def output_of(self, *inputs: Any, **attributes: Any) -> Any:
        """Forward's output alone, without what a ``saves_for_backward`` op saves: what gradient checks vary."""
        result = self.forward(*inputs, **attributes)
        return result[0] if self.saves_for_backward else result

    def bind_attributes(self, given: Mapping[str, Any]) -> Mapping[str, Any]:
        """The declared attribute defaults updated with ``given``; an attribute the op lacks is an error."""
        unknown = sorted(given.keys() - self.attributes.keys())
        if unknown:
            declared = ", ".join(f"{k}={v!r}" for k, v in self.attributes.items()) or "none"
            raise OpUsageError(f"{self.describe()} has no attribute {', '.join(unknown)}; its attributes: {declared}")
        return {**self.attributes, **given} if given else self.attributes

    def samples(self, rng: np.random.Generator) -> list[Sample]:
        """The declared sample inputs as a list of :class:`Sample`, attributes completed with their defaults."""
        drawn = list(self.sample_inputs(rng))
        cases = drawn if drawn and all(isinstance(s, Sample) for s in drawn) else [Sample(*drawn)]
        return [Sample(*case.inputs, **self.bind_attributes(case.attributes)) for case in cases]


@typechecked
def define_op(
    *,
    plugin: str,
    name: str,
    inputs: tuple[str, ...] | list[str],
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    differentiable: tuple[str, ...] | list[str] | None = None,
    attributes: dict[str, Any] | None = None,
    sample_inputs: SampleInputs | None = None,
    doc: str | None = None,
    backward_uses_output: bool = False,
    backward_uses_needs_grad: bool = False,
    saves_for_backward: bool = False,
    differentiable_backward: bool = False,
    tolerances: dict[str, float] | None = None,
    overrides: bool = False,
) -> OpDef:
    """Validate one op declaration and return its :class:`OpDef`; the keywords are those of ``register``.

    ``differentiable`` names the inputs that get gradients (default: all; the labels of a loss are not).
    ``attributes`` maps each static keyword parameter to its default (``{"axis": None}``); forward and backward
    receive every attribute as a keyword. ``sample_inputs(rng)`` draws valid inputs for gradient checks: the
    arrays, or a list of :class:`Sample` to cover several shapes or attribute values (default: standard normal
    3x4 arrays). ``doc`` defaults to ``forward.__doc__``. ``backward_uses_output`` makes the engine pass
    ``output=`` to backward, so exp or sigmoid need not recompute. ``backward_uses_needs_grad`` makes it pass
    ``needs_grad=``, one bool per input, False for an input whose gradient would be dropped (a network's input),
    so backward can skip computing it. ``saves_for_backward`` makes forward return ``(output, saved)`` and the
    engine pass ``saved=`` to backward, so a loss need not recompute its softmax; backward must not change
    ``saved`` (a second backward with ``retain_graph`` reads it again). ``differentiable_backward`` declares a
    backward built from registered ops only (Tensor operators, ``opreg.ops``), which therefore also runs on Tensors
    and can be differentiated again; ``check_op`` then checks second derivatives too. ``tolerances`` overrides
    the gradient check's ``eps``, ``atol`` or ``rtol`` for this op. ``overrides=True`` replaces the op of that name
    an earlier plugin (a built-in, say) registered; without it, a taken name is an error, so nothing is replaced
    silently.
    """
    where = f"op {name!r} (plugin {plugin!r})"
    if not name.isidentifier():
        raise RegistrationError(f"{where}: the name must be a Python identifier")
    inputs = tuple(inputs)
    if not inputs or not all(i.isidentifier() for i in inputs) or len(set(inputs)) != len(inputs):
        raise RegistrationError(f"{where}: inputs must be one or more distinct identifiers, got {inputs!r}")
    wanted = inputs if differentiable is None else tuple(differentiable)
    unknown = sorted(set(wanted) - set(inputs))
    if unknown:
        raise RegistrationError(f"{where}: differentiable names {unknown} that are not among inputs {inputs}")
    attributes = dict(attributes or {})
    clashes = sorted(a for a in attributes if not a.isidentifier() or a in RESERVED_NAMES or a in inputs)
    if clashes:
        raise RegistrationError(
            f"{where}: attribute names must be identifiers other than the inputs and {sorted(RESERVED_NAMES)}, "
            f"got {clashes}"
        )
    unknown = sorted(set(tolerances or ()) - set(CHECK_TOLERANCES))
    if unknown:
        raise RegistrationError(f"{where}: tolerances takes {sorted(CHECK_TOLERANCES)}, not {unknown}")
    _check_arity(where, "forward", forward, len(inputs), attributes)
    _check_arity(
        where,
        "backward",
        backward,
        1 + len(inputs),
        attributes
        | ({"output": None} if backward_uses_output else {})
        | ({"needs_grad": None} if backward_uses_needs_grad else {})
        | ({"saved": None} if saves_for_backward else {}),
    )
    return OpDef(
        name=name,
        inputs=inputs,
        forward=forward,
        backward=backward,
        differentiable=tuple(i in wanted for i in inputs),
        sample_inputs=sample_inputs or _standard_normal_samples(len(inputs)),
        doc=(inspect.getdoc(forward) or "") if doc is None else doc,
        backward_uses_output=backward_uses_output,
        backward_uses_needs_grad=backward_uses_needs_grad,
        saves_for_backward=saves_for_backward,
        differentiable_backward=differentiable_backward,
        plugin=plugin,
        tolerances=MappingProxyType(dict(tolerances or {})),
        attributes=MappingProxyType(attributes) if attributes else _NO_ATTRIBUTES,
        overrides=plugin if overrides else None,  # a placeholder until the registry knows whose op it replaces
    )


def _check_arity(where: str, role: str, fn: Callable[..., Any], n_positional: int, keywords: Mapping) -> None:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins and ufuncs may have no introspectable signature
        return
    try:
        signature.bind(*range(n_positional), **keywords)
    except TypeError as exc:
        call = f"{n_positional} positional arguments" + "".join(f" and {k}=" for k in keywords)
        raise RegistrationError(f"{where}: {role}{signature} cannot be called with {call}: {exc}") from None


def _standard_normal_samples(n_inputs: int) -> SampleInputs:
    def sample(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        return tuple(rng.standard_normal((3, 4)) for _ in range(n_inputs))

    return sample
