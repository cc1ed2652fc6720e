"""``OpModule``: any registered op as a module, and what makes an op usable as an activation (a *unary* op).

``OpModule("leaky_relu", negative_slope=0.1)`` records ``leaky_relu`` with that attribute each time it is called,
in either style (on an ``Autograd`` tape, or on Tensors when no engine is given), as ``ReLU`` records ``relu``: the
built-in activations are this class with their op fixed. Its attributes are checked against the op's declaration
when the module is built, not at its first call.

An activation is spelled as a string where a string is all there is (``opreg train --activation``, a model file's
metadata, ``MLP(activation=...)``): an op name, or ``NAME(attribute=value, ...)`` with Python literal values, the
way :attr:`OpModule.spec` writes it.
"""

from __future__ import annotations

import ast
import reprlib
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from opreg.engine import Autograd
from opreg.errors import OpUsageError
from opreg.nn.module import Module
from opreg.opdef import OpDef
from opreg.registry import get_registry
from opreg.tensor import TensorEngine

#: The shape of the array an op is tried on to see whether it is unary: a batch of 2 rows of 3 features, not square,
#: so that an op of square matrices or one that transposes is told apart from an elementwise one.
PROBE_SHAPE = (2, 3)

#: Listed first among the unary ops an error suggests: the activations opreg has modules for.
FIRST_SUGGESTED = ("relu", "sigmoid", "tanh")


class NotUnaryOpError(OpUsageError):
    """An op given as an activation that is not unary: one differentiable input, one output of the input's shape
    and dtype."""


class OpModule(Module):
    """A registered op as a module: ``OpModule("leaky_relu", negative_slope=0.1)(x)`` records
    ``leaky_relu(x, negative_slope=0.1)`` on the module's engine (Tensors when none is given), in both styles.

    ``op`` is a registered op's name, checked now (an unknown name is an :class:`~opreg.errors.UnknownOpError`
    with suggestions); the keywords are the op's attributes, checked against its declaration (one it does not
    declare is an :class:`~opreg.errors.OpUsageError` listing those it does); the others take their declared
    defaults at each call. An op of several inputs takes them all: ``OpModule("mul")(a, b)``. The module has no
    parameters. ``op`` is positional-only, so an op may have an attribute named ``op``.
    """

    def __init__(self, op: str, /, autograd_engine: Autograd | TensorEngine | None = None, **attributes: Any) -> None:
        super().__init__(autograd_engine)
        check_attributes(get_registry()[op], attributes, f"OpModule({format_spec(op, attributes, quote=True)})")
        self.op = op
        self.attributes: Mapping[str, Any] = dict(attributes)

    def forward(self, *inputs: Any) -> Any:
        return self.autograd_engine.apply(self.op, *inputs, **self.attributes)

    @property
    def spec(self) -> str:
        """``leaky_relu(negative_slope=0.1)``, or ``relu`` without attributes: what :func:`parse_spec` reads back,
        as ``opreg train --activation`` and a model file's metadata spell an activation."""
        return format_spec(self.op, self.attributes)

    def __repr__(self) -> str:
        if type(self) is OpModule:
            return f"OpModule({format_spec(self.op, self.attributes, quote=True)})"
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.attributes.items())})"


def check_attributes(op: OpDef, attributes: Mapping[str, Any], where: str = "") -> None:
    """The op's own check of ``attributes`` (:meth:`OpDef.bind_attributes`), its error starting with ``where``
    (``OpModule('sum', axes=1)``): at the module's construction, not its first call."""
    try:
        op.bind_attributes(attributes)
    except OpUsageError as exc:
        raise OpUsageError(f"{where}: {exc}" if where else str(exc)) from None


def format_spec(op: str, attributes: Mapping[str, Any], *, quote: bool = False) -> str:
    """``leaky_relu(negative_slope=0.1)`` (``'leaky_relu', negative_slope=0.1`` with ``quote``: OpModule's
    arguments)."""
    pairs = [f"{k}={v!r}" for k, v in attributes.items()]
    if quote:
        return ", ".join([repr(op), *pairs])
    return f"{op}({', '.join(pairs)})" if pairs else op


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``("leaky_relu", {"negative_slope": 0.1})`` from ``"leaky_relu(negative_slope=0.1)"``; an op name alone has
    no attributes. Values are Python literals (numbers, strings, True, False, None, tuples, lists), read with
    :func:`ast.literal_eval`: nothing in the text is run. Anything else is an :class:`OpUsageError`."""
    problem = (
        f"{reprlib.repr(spec)} is not an op name, nor NAME(attribute=value, ...) with Python literal values, such as "
        "leaky_relu(negative_slope=0.1)"
    )
    try:
        node = ast.parse(spec.strip(), mode="eval").body
    except SyntaxError:
        raise OpUsageError(problem) from None
    if isinstance(node, ast.Name):
        return node.id, {}
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.args):
        raise OpUsageError(problem)
    attributes: dict[str, Any] = {}
    for keyword in node.keywords:
        if keyword.arg is None:  # **mapping
            raise OpUsageError(problem)
        try:
            attributes[keyword.arg] = ast.literal_eval(keyword.value)
        except ValueError:
            raise OpUsageError(f"{problem}: the value of {keyword.arg} is not a literal") from None
    return node.func.id, attributes


def unary_problem(op: OpDef, attributes: Mapping[str, Any], dtype: DTypeLike = np.float64) -> str | None:
    """Why ``op`` with ``attributes`` is not unary, or None if it is.

    Unary means: the declaration has one input, which takes a gradient, and one output; and forward, run on a
    (2, 3) array of ``dtype`` (values inside the op's ``domain=``), returns an array of that shape and dtype. The
    declaration alone cannot tell ``tanh`` from ``sum`` (one input each), so forward is run, once, on six numbers:
    what an activation must do, keep a batch's shape, is what is tried, with the attributes it will be given.
    """
    if op.variadic or len(op.inputs) != 1:
        return f"it takes {'any number of' if op.variadic else len(op.inputs)} inputs {op.signature()}"
    if op.multi:
        return f"it returns several outputs {op.outputs}"
    if not op.differentiable[0]:
        return f"its input {op.inputs[0]!r} takes no gradient"
    probe = _probe(op, np.dtype(dtype))
    described = f"a {probe.dtype} array of shape {probe.shape}"
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            output = op.output_of(probe, **op.bind_attributes(attributes))
    except Exception as exc:  # any failure of a plugin's forward means: not usable as an activation
        return f"its forward raised {type(exc).__name__} on {described}: {exc}"
    if not isinstance(output, np.ndarray):
        return f"its forward returned a {type(output).__name__} for {described}"
    if output.shape != probe.shape or output.dtype != probe.dtype:
        return f"it returns a {output.dtype} array of shape {output.shape} for {described}"
    return None


def _probe(op: OpDef, dtype: np.dtype[Any]) -> np.ndarray:
    """Six distinct values inside the op's domain for its one input (-0.9 to 0.9 when it declares none)."""
    domain = op.domain
    if isinstance(domain, Mapping):
        domain = domain.get(op.inputs[0])
    low, high = (-1.0, 1.0) if domain is None else (float(domain[0]), float(domain[1]))
    low = low if np.isfinite(low) else min(high, 1.0) - 2.0
    high = high if np.isfinite(high) else low + 2.0
    fractions = np.linspace(0.05, 0.95, 6).reshape(PROBE_SHAPE)
    return (low + (high - low) * fractions).astype(dtype)


def unary_ops(dtype: DTypeLike = np.float64) -> list[str]:
    """The names of the registered unary ops (with their default attributes): what ``MLP(activation=...)`` and
    ``opreg train --activation`` accept. relu, sigmoid and tanh come first, then those of plugins other than the
    built-ins (an op package's activations), then the built-ins, each group alphabetically."""
    registry = get_registry()
    rest = sorted(
        set(registry) - set(FIRST_SUGGESTED), key=lambda n: (registry[n].plugin.startswith("opreg_builtins."), n)
    )
    ordered = [*(n for n in FIRST_SUGGESTED if n in registry), *rest]
    return [name for name in ordered if unary_problem(registry[name], {}, dtype) is None]


def check_unary(op: str, attributes: Mapping[str, Any], dtype: DTypeLike = np.float64) -> None:
    """:class:`NotUnaryOpError` if op ``op`` with ``attributes`` cannot be an activation, saying why and naming some
    ops that can; an unknown name or attribute raises as :class:`OpModule` does."""
    definition = get_registry()[op]
    check_attributes(definition, attributes)
    problem = unary_problem(definition, attributes, dtype)
    if problem is None:
        return
    # The same few whatever is installed (relu, sigmoid, tanh), so that the message is one a page can show.
    some = ", ".join(unary_ops(dtype)[:3])
    raise NotUnaryOpError(
        f"{definition.describe()} is not a unary op, so it cannot be an activation: {problem}; an activation is an "
        f"op with one differentiable input whose output has the input's shape and dtype, such as {some}: "
        "opreg.nn.unary_ops() lists every one installed"
    )
