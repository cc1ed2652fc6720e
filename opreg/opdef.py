"""What an op is (:class:`OpDef`) and how a plugin declares one (:func:`define_op`, the keywords of ``register``).

An op is declared once. Its attributes are its forward's keyword-only parameters with defaults
(``def forward(x, *, axis=None, keepdims=False)``). What its backward needs besides ``(grad_output, *inputs)`` it
asks for by naming keyword-only parameters: ``output`` (forward's result), ``saved`` (forward then returns
``(output, saved)``), ``needs_grad`` (one bool per input) and any attribute by its name. No flag changes how a
function is called. Declarations are validated here, once, when the registry loads; nothing here runs per
recorded operation except :meth:`OpDef.bind_attributes`, and that only for ops that have attributes.
"""

from __future__ import annotations

import difflib
import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import Any, cast

import numpy as np

from opreg.errors import OpUsageError, RegistrationError

#: The gradient check's defaults, PyTorch ``gradcheck``'s; an op may override any of them with ``tolerances=``.
CHECK_TOLERANCES = MappingProxyType({"eps": 1e-6, "atol": 1e-5, "rtol": 1e-3})

#: What a backward may ask for by name, besides the attributes; no attribute may take these names.
BACKWARD_KEYWORDS = frozenset({"output", "saved", "needs_grad"})
RESERVED_NAMES = BACKWARD_KEYWORDS | {"gradients_to_update"}

_NO_ATTRIBUTES: Mapping[str, Any] = MappingProxyType({})


class VariadicFlags(tuple[bool, ...]):
    """A variadic op's per-input flags (``differentiable``): the starred input's flag stands for every array it
    takes, so ``flags[5]`` is that flag however many the declaration had. Only variadic ops have one, so the
    fixed-arity ops' hot path indexes a plain tuple."""

    def __getitem__(self, index: Any) -> Any:
        if type(index) is int and index >= len(self):
            return tuple.__getitem__(self, -1)
        return tuple.__getitem__(self, index)

    def expand(self, n: int) -> tuple[bool, ...]:
        """The flags of a call with ``n`` inputs, as a plain tuple."""
        return tuple(self[i] for i in range(n))


class Sample:
    """One set of inputs for a gradient check, with attribute values: ``Sample(x, axis=1, keepdims=True)``."""

    __slots__ = ("attributes", "inputs")

    def __init__(self, *inputs: Any, **attributes: Any) -> None:
        self.inputs = inputs
        self.attributes = attributes

    def describe(self) -> str:
        """`` with axis=1`` for error messages; empty without attributes."""
        return " with " + ", ".join(f"{k}={v!r}" for k, v in self.attributes.items()) if self.attributes else ""


#: ``sample_inputs(rng)`` returns the arrays of one sample, or a list of :class:`Sample` for several. The Generator
#: is named in a string: evaluating ``np.random`` would import numpy.random, a third of ``import opreg``'s time.
SampleInputs = Callable[["np.random.Generator"], "Sequence[np.ndarray] | Sequence[Sample]"]

#: ``reference``: where the tests find the same function in PyTorch. A dotted name (``"torch.add"``,
#: ``"torch.nn.functional.mse_loss"``), or a function that is given the ``torch`` module and returns the function
#: (for an adapter: ``lambda torch: lambda x: x.mT``). Resolved only when tests run; opreg never imports torch.
Reference = str | Callable[[ModuleType], Callable[..., Any]]

#: ``domain``: the values each input may take, as a closed interval ``(low, high)`` for every input or a mapping
#: from input name to one; property tests draw from it. ``None``: any finite value.
Domain = tuple[float, float] | Mapping[str, tuple[float, float]]


@dataclass(frozen=True, slots=True)
class OpDef:
    """One registered op: a forward/backward pair with a declared input order, and optional attributes.

    ``forward(*inputs, **attributes)`` returns the output array, or ``(output, saved)`` when backward asks for
    ``saved``. ``backward(grad_output, *inputs, **asked)`` returns one gradient per declared input, in the declared
    order, ``None`` where the input gets no gradient; ``asked`` holds what backward names among ``output``,
    ``saved``, ``needs_grad`` and the attributes. Gradients may have the broadcast shape; the engine sums them
    back to the input's shape. Attributes are static keyword parameters (an axis, a slope), never differentiated.
    """

    name: str
    inputs: tuple[str, ...]
    forward: Callable[..., Any]
    backward: Callable[..., Sequence[Any]]
    differentiable: tuple[bool, ...]
    sample_inputs: SampleInputs
    doc: str
    plugin: str
    tolerances: Mapping[str, float]
    #: Each attribute and its default: forward's keyword-only parameters with defaults.
    attributes: Mapping[str, Any]
    #: Which of ``output``, ``saved``, ``needs_grad`` backward names (the keywords the engine passes it).
    wants: frozenset[str] = frozenset()
    #: The attributes backward is given: those it names (all, if it takes ``**keywords``).
    backward_attributes: tuple[str, ...] = ()
    #: The NumPy functions this op implements (``np.subtract`` for ``sub``): how ``opreg.numpy`` and NumPy's own
    #: dispatch (``np.exp(tensor)``) find it.
    numpy: tuple[str, ...] = ()
    #: ``numpy_call(call, *args, **kwargs)``: the NumPy function ``numpy`` names, where its call is not one call of
    #: this op in NumPy's spelling (einsum's interleaved operands, gradient over several axes). ``call`` runs this
    #: op with arguments in NumPy's spelling; None: every NumPy call is one call of the op.
    numpy_call: Callable[..., Any] | None = None
    reference: Reference | None = None
    domain: Domain | None = None
    #: The plugin whose op of this name this one replaces, by its declaration ``overrides=True``; else None.
    overrides: str | None = None
    #: ``"name version"`` of the installed package whose entry point registered the op; None for opreg's own
    #: built-ins and for plugins registered in-process. Errors name it, so a user knows what to upgrade or report.
    distribution: str | None = None
    #: Whether the last input is starred (``inputs=("*arrays",)``): it takes any number of arrays. ``inputs``
    #: holds the names without the star.
    variadic: bool = False
    #: The outputs' names; ``()`` for the usual single output. Two or more: forward returns a tuple.
    outputs: tuple[str, ...] = ()
    #: Per output, whether it takes a gradient (``sign`` does not); ``()`` for a single output.
    differentiable_outputs: tuple[bool, ...] = ()
    #: How ``vmap`` batches the op (:mod:`opreg.func.batching`): :data:`ELEMENTWISE`, a rule
    #: ``rule(call, batched, *inputs, **attributes)``, or None for a loop over the batch (correct, and slow).
    batch: str | Callable[..., Any] | None = None
    #: Whether the one output is starred (``outputs=("*pieces",)``): forward returns a tuple of any length
    #: (``split``), each a differentiable output.
    variadic_outputs: bool = False
    #: ``jvp(tangents, *inputs, **asked)``: the output's tangent (a tuple for several outputs) from the inputs'
    #: (:func:`define_op` documents the contract); None: forward mode derives it from backward (:mod:`opreg.func`).
    jvp: Callable[..., Any] | None = None
    #: What ``jvp`` names among ``output`` and the attributes (the keywords it is passed).
    jvp_keywords: tuple[str, ...] = ()
    #: ``forward_out(out, *inputs, **attributes)``: forward's output written into ``out``, bit for bit; None: the
    #: op has no such form. Read only by a captured step's replay (:mod:`opreg.outforms` documents the contract).
    forward_out: Callable[..., Any] | None = None
    #: ``backward_out(outs, g, *inputs, **keywords)``: backward's gradients, fitted to their inputs, written into
    #: ``outs`` (None where not wanted), bit for bit; None: the op has no such form. Read only by the replay.
    backward_out: Callable[..., Any] | None = None
    #: Whether forward draws random numbers (``dropout_mask``): each call draws anew, so a captured step's replay
    #: calls it exactly where the eager step did, never traced (a trace runs forward again) nor left out or shared.
    draws: bool = False
    # Derived once, in __post_init__, as plain fields: the hot path reads them on every op.
    no_targets: tuple[None, ...] = field(default=(), compare=False)  # (None,) * len(inputs)
    all_needed: tuple[bool, ...] = field(default=(), compare=False)  # (True,) * len(inputs)
    #: Whether forward returns ``(output, saved)``: its backward asks for ``saved``.
    saves: bool = field(default=False, compare=False)
    #: Whether backward takes ``(grad_output, *inputs)`` and nothing else: the common case.
    simple_backward: bool = field(default=True, compare=False)
    #: Whether forward returns several outputs (a tuple).
    multi: bool = field(default=False, compare=False)
    #: How many inputs every call has: ``len(inputs)``, or -1 for a variadic op or one with several outputs. The
    #: engines compare a call's count with it anyway; a mismatch leads to the general path, which handles those.
    arity: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "no_targets", (None,) * len(self.inputs))
        object.__setattr__(self, "all_needed", (True,) * len(self.inputs))
        object.__setattr__(self, "saves", "saved" in self.wants)
        object.__setattr__(self, "simple_backward", not self.wants and not self.backward_attributes)
        object.__setattr__(self, "multi", len(self.outputs) > 1 or self.variadic_outputs)
        object.__setattr__(self, "arity", -1 if self.variadic or self.multi else len(self.inputs))
        if self.variadic and type(self.differentiable) is not VariadicFlags:
            object.__setattr__(self, "differentiable", VariadicFlags(self.differentiable))

    def accepts(self, n: int) -> bool:
        """Whether a call may pass ``n`` inputs: exactly ``len(inputs)``, or for a variadic op at least the fixed
        ones."""
        return n >= len(self.inputs) - 1 if self.variadic else n == len(self.inputs)

    def input_name(self, position: int) -> str:
        """Input ``position``'s name: a declared name, or ``arrays[3]`` for the starred input's fourth array."""
        fixed = len(self.inputs) - 1
        if self.variadic and position >= fixed:
            return f"{self.inputs[-1]}[{position - fixed}]"
        return self.inputs[position]

    def input_names(self, n: int) -> list[str]:
        """The names of a call's ``n`` inputs."""
        return [self.input_name(i) for i in range(n)]

    def differentiable_for(self, n: int) -> tuple[bool, ...]:
        """Per input of a call with ``n`` inputs, whether it takes a gradient."""
        return tuple(self.differentiable[i] for i in range(n))

    def output_flags(self, n: int) -> tuple[bool, ...]:
        """Per output of a call with ``n`` outputs, whether it takes a gradient."""
        if self.variadic_outputs:
            return (True,) * n
        return self.differentiable_outputs

    def output_names(self, n: int) -> tuple[str, ...]:
        """The names of a call's ``n`` outputs: ``pieces[2]`` for a starred output's third."""
        if self.variadic_outputs:
            return tuple(f"{self.outputs[0]}[{i}]" for i in range(n))
        return self.outputs

    def accepts_outputs(self, n: int) -> bool:
        """Whether forward may return ``n`` outputs."""
        return self.variadic_outputs or n == len(self.outputs)

    def signature(self) -> str:
        """``(x, *arrays)``-like: the inputs as declared, for listings and errors."""
        names = [*self.inputs[:-1], f"*{self.inputs[-1]}"] if self.variadic else list(self.inputs)
        return f"({', '.join(names)})"

    def describe(self) -> str:
        """``op 'name' (plugin 'p')``, or ``op 'name' (plugin 'p' of package-name 1.0)`` for an op an installed
        package registered: how every error message names this op."""
        source = f" of {self.distribution}" if self.distribution else ""
        return f"op {self.name!r} (plugin {self.plugin!r}{source})"

    def describe_input(self, position: int) -> str:
        """``input 1 'b'`` (``input 3 'arrays[3]'`` for a variadic op's): how error messages name an input."""
        return f"input {position} {self.input_name(position)!r}"

    def output_of(self, *inputs: Any, **attributes: Any) -> Any:
        """Forward's output alone (a tuple for several outputs), without what it saves for backward: what
        gradient checks vary."""
        result = self.forward(*inputs, **attributes)
        return result[0] if self.saves else result

    def bind_attributes(self, given: Mapping[str, Any]) -> Mapping[str, Any]:
        """The declared attribute defaults updated with ``given``; an attribute the op lacks is an error."""
        if not given:
            return self.attributes
        if not given.keys() <= self.attributes.keys():
            unknown = sorted(given.keys() - self.attributes.keys())
            close = [name for name in self.attributes if unknown[0] in name or name in unknown[0]]
            close += difflib.get_close_matches(unknown[0], list(self.attributes), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            declared = ", ".join(f"{k}={v!r}" for k, v in self.attributes.items()) or "none"
            raise OpUsageError(
                f"{self.describe()} has no attribute {', '.join(unknown)}{hint}; its attributes: {declared}"
            )
        return {**self.attributes, **given}

    def samples(self, rng: np.random.Generator) -> list[Sample]:
        """The declared sample inputs as a list of :class:`Sample`, attributes completed with their defaults."""
        drawn = list(self.sample_inputs(rng))
        # all() saw that every one is a Sample, which does not narrow drawn's type for the checker
        cases = cast("list[Sample]", drawn) if drawn and all(isinstance(s, Sample) for s in drawn) else [Sample(*drawn)]
        return [Sample(*case.inputs, **self.bind_attributes(case.attributes)) for case in cases]


#: The keywords of the contract before this one, each with what to write instead. They still work, with a
#: DeprecationWarning that names the op.
LEGACY_KEYWORDS = MappingProxyType(
    {
        "attributes": "declare each attribute as a keyword-only parameter of forward with its default, "
        "e.g. def forward(x, *, axis=None)",
        "backward_uses_output": "name `output` as a keyword-only parameter of backward",
        "backward_uses_needs_grad": "name `needs_grad` as a keyword-only parameter of backward",
        "saves_for_backward": "name `saved` as a keyword-only parameter of backward",
        "differentiable_backward": "drop it: opreg finds out by itself whether a backward composes",
    }
)

#: ``register(batch=ELEMENTWISE)``: the op broadcasts its inputs elementwise (NumPy's rules, no axis attributes),
#: so ``vmap`` batches it by aligning the batched inputs' axes and calling it once.
ELEMENTWISE = "elementwise"

#: Every keyword ``register`` takes, for suggestions when a plugin misspells one.
REGISTER_KEYWORDS = (
    "name",
    "inputs",
    "forward",
    "backward",
    "differentiable",
    "sample_inputs",
    "doc",
    "numpy",
    "numpy_call",
    "reference",
    "domain",
    "tolerances",
    "overrides",
    "outputs",
    "differentiable_outputs",
    "jvp",
    "batch",
    "forward_out",
    "backward_out",
    "draws",
    *LEGACY_KEYWORDS,
)


def unknown_keyword_error(where: str, keyword: str) -> RegistrationError:
    """``register(colour=...)``: the error, with the closest keyword ``register`` takes."""
    close = difflib.get_close_matches(keyword, REGISTER_KEYWORDS, n=1)
    hint = f"; did you mean {close[0]}=?" if close else f"; it takes {', '.join(REGISTER_KEYWORDS[:12])}"
    return RegistrationError(f"{where}: register() got an unexpected keyword {keyword}={hint}")


def define_op(
    *,
    plugin: str,
    name: str,
    inputs: tuple[str, ...] | list[str],
    forward: Callable[..., Any],
    backward: Callable[..., Any],
    differentiable: tuple[str, ...] | list[str] | None = None,
    sample_inputs: SampleInputs | None = None,
    doc: str | None = None,
    numpy: str | tuple[str, ...] | None = None,
    numpy_call: Callable[..., Any] | None = None,
    reference: Reference | None = None,
    domain: Domain | None = None,
    tolerances: dict[str, float] | None = None,
    overrides: bool = False,
    outputs: tuple[str, ...] | list[str] | None = None,
    differentiable_outputs: tuple[str, ...] | list[str] | None = None,
    jvp: Callable[..., Any] | None = None,
    batch: str | Callable[..., Any] | None = None,
    forward_out: Callable[..., Any] | None = None,
    backward_out: Callable[..., Any] | None = None,
    draws: bool = False,
    **legacy: Any,
) -> OpDef:
    """Validate one op declaration and return its :class:`OpDef`; the keywords are those of ``register``
    (:class:`opreg.plugin.Register` documents each)."""
    where = f"op {name!r} (plugin {plugin!r})"
    _check_types(
        where, name=name, inputs=inputs, forward=forward, backward=backward, doc=doc, sample_inputs=sample_inputs
    )
    if not name.isidentifier():
        raise RegistrationError(f"{where}: the name must be a Python identifier")
    if not isinstance(draws, bool):
        raise RegistrationError(
            f"{where}: draws= says whether forward draws random numbers: True or False, not {draws!r}"
        )
    declared_inputs = tuple(inputs)
    inputs, variadic = _variadic(where, declared_inputs)
    if (
        not inputs
        or not all(isinstance(i, str) and i.isidentifier() for i in inputs)
        or len(set(inputs)) != len(inputs)
    ):
        raise RegistrationError(f"{where}: inputs must be one or more distinct identifiers, got {declared_inputs!r}")
    output_names, output_flags, variadic_outputs = _outputs(where, outputs, differentiable_outputs)
    if numpy_call is not None and (not callable(numpy_call) or not numpy):
        raise RegistrationError(
            f"{where}: numpy_call= is how the NumPy function the op declares with numpy= is called, so it must be "
            f"a function and needs numpy=; got a {type(numpy_call).__name__} and numpy={numpy!r}"
        )
    if batch is not None and batch != ELEMENTWISE and (isinstance(batch, str) or not callable(batch)):
        raise RegistrationError(
            f"{where}: batch= is how vmap batches the op: batch={ELEMENTWISE!r} for an op that broadcasts "
            f"elementwise, or a function rule(call, batched, *inputs, **attributes); got {batch!r}"
        )
    wanted = inputs if differentiable is None else tuple(str(d).lstrip("*") for d in differentiable)
    unknown = sorted(set(wanted) - set(inputs))
    if unknown:
        raise RegistrationError(f"{where}: differentiable names {unknown} that are not among inputs {inputs}")
    unknown = sorted(set(tolerances or ()) - set(CHECK_TOLERANCES))
    if unknown:
        raise RegistrationError(f"{where}: tolerances takes {sorted(CHECK_TOLERANCES)}, not {unknown}")
    forward_parameters = _parameters(forward)
    declared = _legacy_attributes(where, legacy)
    attributes = dict(declared) if declared is not None else _attributes_of(where, forward_parameters)
    clashes = sorted(a for a in attributes if not a.isidentifier() or a in RESERVED_NAMES or a in inputs)
    if clashes:
        raise RegistrationError(
            f"{where}: attribute names must be identifiers other than the inputs and {sorted(RESERVED_NAMES)}, "
            f"got {clashes}"
        )
    wants, backward_attributes = _asked_by(where, backward, attributes, legacy)
    asked = dict.fromkeys([*wants, *backward_attributes])
    for extra in (0, 2) if variadic else (0,):  # a variadic op's forward and backward take any number
        _check_arity(where, "forward", forward, len(inputs) + extra, attributes)
        _check_arity(where, "backward", backward, 1 + len(inputs) + extra, asked)
    jvp_keywords = _jvp_keywords(where, jvp, attributes)
    if jvp is not None:
        for extra in (0, 2) if variadic else (0,):
            _check_arity(where, "jvp", jvp, 1 + len(inputs) + extra, dict.fromkeys(jvp_keywords))
    multi = len(output_names) > 1 or variadic_outputs
    out_keywords = dict.fromkeys(k for k in asked if k != "saved")
    for extra in (0, 2) if variadic else (0,):
        _check_out_form(where, "forward_out", forward_out, ("out",), len(inputs) + extra, attributes, multi, wants)
        _check_out_form(where, "backward_out", backward_out, ("outs", "g"), len(inputs) + extra, out_keywords, multi)
    return OpDef(
        name=name,
        inputs=inputs,
        forward=forward,
        backward=backward,
        differentiable=tuple(i in wanted for i in inputs),
        sample_inputs=sample_inputs or _standard_normal_samples(len(inputs) + variadic),
        doc=(inspect.getdoc(forward) or "") if doc is None else doc,
        plugin=plugin,
        tolerances=MappingProxyType(dict(tolerances or {})),
        attributes=MappingProxyType(attributes) if attributes else _NO_ATTRIBUTES,
        wants=wants,
        backward_attributes=backward_attributes,
        numpy=(numpy,) if isinstance(numpy, str) else tuple(numpy or ()),
        numpy_call=numpy_call,
        reference=reference,
        domain=domain,
        overrides=plugin if overrides else None,  # a placeholder until the registry knows whose op it replaces
        variadic=variadic,
        outputs=output_names,
        differentiable_outputs=output_flags,
        variadic_outputs=variadic_outputs,
        jvp=jvp,
        jvp_keywords=jvp_keywords,
        batch=batch,
        forward_out=forward_out,
        backward_out=backward_out,
        draws=draws,
    )


def _check_out_form(
    where: str,
    role: str,
    fn: Any,
    leading: tuple[str, ...],
    n_inputs: int,
    keywords: Mapping[str, Any],
    multi: bool,
    wants: frozenset[str] = frozenset(),
) -> None:
    """A ``forward_out`` or ``backward_out`` declaration: a function of one output, taking ``leading`` (``out``;
    ``outs, g``) by those names, then the inputs, then exactly the keywords it will be given."""
    if fn is None:
        return
    if not callable(fn):
        raise RegistrationError(f"{where}: {role} must be callable, not {type(fn).__name__}")
    if multi or (role == "forward_out" and "saved" in wants):
        why = "it has several outputs" if multi else "its forward also returns what backward saves"
        raise RegistrationError(
            f"{where}: {role} is for ops with one output whose forward returns that output alone, and {why}; "
            f"drop {role}= (a captured step then allocates this op's results where it runs)"
        )
    parameters = _parameters(fn)
    if parameters is None:
        return
    names = [p.name for p in parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if tuple(names[: len(leading)]) != leading:
        raise RegistrationError(
            f"{where}: {role} must take {', '.join(leading)} first, then the op's inputs: "
            f"def {role}({', '.join(leading)}, *inputs, ...); got {role}({', '.join(parameters)})"
        )
    given = set(keywords)
    unknown = [n for n, p in parameters.items() if p.kind is p.KEYWORD_ONLY and n not in given]
    if "saved" in unknown and role == "backward_out":
        raise RegistrationError(
            f"{where}: backward_out names saved, and it is never given saved= (a replay keeps no values forward "
            "saved); recompute them from the inputs as forward computes them"
        )
    if unknown:
        what = "the attributes" if role == "forward_out" else "what the op's backward asks for, except saved,"
        raise RegistrationError(
            f"{where}: {role} names {', '.join(unknown)}, and it is given only {what} by name "
            f"({', '.join(keywords) or 'none'})"
        )
    _check_arity(where, role, fn, len(leading) + n_inputs, keywords)


def _jvp_keywords(where: str, jvp: Any, attributes: Mapping[str, Any]) -> tuple[str, ...]:
    """What a ``jvp`` rule asks for by naming keyword-only parameters: ``output`` and attributes (every attribute,
    with ``**attributes``: a linear op's rule passes them on to the op); anything else it names is an error, as it
    would never be given."""
    if jvp is None:
        return ()
    if not callable(jvp):
        raise RegistrationError(f"{where}: jvp must be callable, not {type(jvp).__name__}")
    parameters = _parameters(jvp) or {}
    named = [n for n, p in parameters.items() if p.kind is p.KEYWORD_ONLY]
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return (*(["output"] if "output" in named else []), *attributes)
    unknown = [n for n in named if n != "output" and n not in attributes]
    if unknown:
        raise RegistrationError(
            f"{where}: jvp asks for {', '.join(unknown)}, and a jvp rule is given only output= and the attributes "
            f"({', '.join(attributes) or 'none'}) by name; the tangents come first, one per input, then the inputs"
        )
    return tuple(named)


def _variadic(where: str, inputs: tuple[Any, ...]) -> tuple[tuple[Any, ...], bool]:
    """The input names without the star, and whether the last is starred; a star elsewhere is an error."""
    starred = [i for i, name in enumerate(inputs) if isinstance(name, str) and name.startswith("*")]
    if not starred:
        return inputs, False
    if starred != [len(inputs) - 1]:
        raise RegistrationError(
            f"{where}: only one input may be starred (it takes any number of arrays), and it must be the last, as "
            f"in inputs=('x', '*arrays'); got {inputs!r}"
        )
    return (*inputs[:-1], inputs[-1][1:]), True


def _outputs(
    where: str, outputs: Sequence[Any] | None, differentiable_outputs: Sequence[Any] | None
) -> tuple[tuple[str, ...], tuple[bool, ...], bool]:
    """The outputs' names, per output whether it takes a gradient, and whether the one output is starred (any
    number); ``((), (), False)`` for one output."""
    if outputs is None:
        if differentiable_outputs is not None:
            raise RegistrationError(f"{where}: differentiable_outputs= needs outputs= naming the outputs")
        return (), (), False
    names = (outputs,) if isinstance(outputs, str) else tuple(outputs)
    if any(isinstance(n, str) and n.startswith("*") for n in names):
        if len(names) != 1 or differentiable_outputs is not None:
            raise RegistrationError(
                f"{where}: a starred output (any number of outputs, as split's) must be the only one, and every "
                f"output it stands for takes a gradient; got outputs={outputs!r}"
            )
        name = names[0][1:]
        if not name.isidentifier():
            raise RegistrationError(f"{where}: outputs must be one or more distinct identifiers, got {outputs!r}")
        return (name,), (True,), True
    if not names or not all(isinstance(n, str) and n.isidentifier() for n in names) or len(set(names)) != len(names):
        raise RegistrationError(f"{where}: outputs must be one or more distinct identifiers, got {outputs!r}")
    wanted = names if differentiable_outputs is None else tuple(differentiable_outputs)
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise RegistrationError(f"{where}: differentiable_outputs names {unknown} that are not among outputs {names}")
    if not wanted:
        raise RegistrationError(
            f"{where}: differentiable_outputs must name at least one output; for none, the op "
            "needs no backward: compute it outside the graph"
        )
    if len(names) == 1:
        return (), (), False
    return names, tuple(n in wanted for n in names), False


def _check_types(where: str, **values: Any) -> None:
    """The checks typeguard made of the declaration, with messages that name the keyword."""
    if not isinstance(values["name"], str):
        raise RegistrationError(f"{where}: name must be a str, not {type(values['name']).__name__}")
    if not isinstance(values["inputs"], tuple | list):
        raise RegistrationError(f"{where}: inputs must be a tuple of names, not {values['inputs']!r}")
    for role in ("forward", "backward"):
        if not callable(values[role]):
            raise RegistrationError(f"{where}: {role} must be callable, not {type(values[role]).__name__}")
    if values["doc"] is not None and not isinstance(values["doc"], str):
        raise RegistrationError(f"{where}: doc must be a str, not {type(values['doc']).__name__}")
    samples = values["sample_inputs"]
    if samples is not None and not callable(samples):
        raise RegistrationError(
            f"{where}: sample_inputs must be a function of a NumPy random Generator that returns the samples, not a "
            f"{type(samples).__name__}, so that each check draws its own; write sample_inputs=lambda rng: "
            "[Sample(rng.standard_normal((3, 4)))]"
        )


def _parameters(fn: Callable[..., Any]) -> Mapping[str, inspect.Parameter] | None:
    """``fn``'s parameters, or None where it has no introspectable signature, or is NumPy's or a builtin
    (a ufunc's ``dtype=``, ``out=`` are NumPy's keywords, not the op's attributes)."""
    if isinstance(fn, np.ufunc) or inspect.isbuiltin(fn):
        return None
    try:
        return inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None


def _attributes_of(where: str, parameters: Mapping[str, inspect.Parameter] | None) -> dict[str, Any]:
    """forward's keyword-only parameters and their defaults: the op's attributes, declared once."""
    attributes: dict[str, Any] = {}
    for parameter in (parameters or {}).values():
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
            if parameter.default is inspect.Parameter.empty:
                raise RegistrationError(
                    f"{where}: forward's keyword-only parameter {parameter.name!r} is an attribute and needs a "
                    f"default, e.g. {parameter.name}=None"
                )
            attributes[parameter.name] = parameter.default
    return attributes


def _legacy_attributes(where: str, legacy: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``attributes=`` dict of the earlier contract (with a warning), or None; an unknown keyword raises."""
    for keyword in legacy:
        if keyword not in LEGACY_KEYWORDS:
            raise unknown_keyword_error(where, keyword)
        warnings.warn(
            f"{where}: register({keyword}=...) is deprecated; {LEGACY_KEYWORDS[keyword]}",
            DeprecationWarning,
            stacklevel=4,
        )
    attributes = legacy.get("attributes")
    if attributes is not None and not isinstance(attributes, dict):
        raise RegistrationError(f"{where}: attributes must be a dict, not {type(attributes).__name__}")
    return attributes


def _asked_by(
    where: str, backward: Callable[..., Any], attributes: Mapping[str, Any], legacy: Mapping[str, Any]
) -> tuple[frozenset[str], tuple[str, ...]]:
    """What backward asks for by naming keyword parameters: which engine keywords, which attributes.

    A backward taking ``**keywords`` is given ``output``, ``needs_grad`` and every attribute (``saved`` only when
    named, since asking for it changes what forward returns). The flags of the earlier contract add theirs.
    """
    parameters = _parameters(backward)
    takes_any = parameters is not None and any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    wants = {k for k in BACKWARD_KEYWORDS if _keyword_only(parameters, k)}
    if takes_any:
        wants |= {"output", "needs_grad"}
    for flag, keyword in (
        ("backward_uses_output", "output"),
        ("backward_uses_needs_grad", "needs_grad"),
        ("saves_for_backward", "saved"),
    ):
        if legacy.get(flag):
            wants.add(keyword)
    if "attributes" in legacy:  # the earlier contract passed every attribute to backward
        return frozenset(wants), tuple(attributes)
    asked = tuple(a for a in attributes if takes_any or _keyword_only(parameters, a))
    return frozenset(wants), asked


def _keyword_only(parameters: Mapping[str, inspect.Parameter] | None, name: str) -> bool:
    return parameters is not None and name in parameters and parameters[name].kind is inspect.Parameter.KEYWORD_ONLY


def _check_arity(where: str, role: str, fn: Callable[..., Any], n_positional: int, keywords: Mapping[str, Any]) -> None:
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
