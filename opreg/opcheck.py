"""Checking a registered op automatically, with a report precise enough to act on.

``check_op`` is what ``opreg check`` and ``pytest --opreg-gradcheck`` run for every op of every plugin, so a
plugin author gets these checks without writing a test. On the op's declared sample inputs, in float64:

* forward returns a finite array, the same one twice, and leaves its inputs alone;
* backward returns one gradient per declared input, each of the input's (or the broadcast) shape and of a float
  dtype, and leaves its inputs and ``grad_output`` alone;
* on the same inputs in float32, the output and the gradients are float32;
* the analytic gradient, routed through the engine as a user's would be, matches central finite differences:
  ``|analytic - numeric| <= atol + rtol * |numeric|`` (PyTorch ``gradcheck``'s rule and defaults);
* for an op whose backward is built from registered ops (found out by running it on Tensors), so are the
  derivatives of that backward, recorded on Tensors (PyTorch's ``gradgradcheck``);
* forward mode as :mod:`opreg.func` runs it (the op's ``jvp`` rule, or the one derived from its backward): the
  tangent of the output along random input tangents against central differences, and against the backward
  (``<J v, u> == <v, J^T u>``); failures read "jvp of op 'x' (plugin 'p') ...". Skipped for an op with no rule
  whose backward does not compose (forward mode then raises :class:`NotComposableError`, naming it);
* an op's forms that write into given arrays (``forward_out``, ``backward_out``) write forward's and backward's
  values bit for bit, every element, in float64 and float32 (:mod:`opreg.outforms`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NoReturn, cast

import numpy as np

from opreg.calls import backward_keywords, run_forward
from opreg.contract import check_gradients, check_unchanged, describe_array, nonfinite, tuple_output_error
from opreg.engine import Autograd
from opreg.errors import GradcheckError, NotComposableError, OpContractError
from opreg.func.tangents import op_tangent
from opreg.func.vmap import vmap
from opreg.opdef import CHECK_TOLERANCES, OpDef, Sample
from opreg.outforms import check_out_forms
from opreg.registry import get_registry
from opreg.tensor import Tensor, apply, call_op, grad, no_grad


@dataclass
class Comparison:
    """One derivative against finite differences: what it was, and how far apart they were at worst."""

    what: str
    max_abs_error: float
    max_rel_error: float


@dataclass
class SampleReport:
    """What was checked on one of an op's samples."""

    index: int
    inputs: list[str]  # "x: float64 (3, 4)"
    attributes: dict[str, str]  # each attribute's repr
    checks: list[str] = field(default_factory=list)  # the contract checks passed, in order
    comparisons: list[Comparison] = field(default_factory=list)


@dataclass
class CheckReport:
    """What :func:`check_op` checked of one op, sample by sample: tests and tools read it, ``opreg check -v``
    prints it, ``opreg check --json`` writes it (:meth:`to_dict`)."""

    op: str
    plugin: str
    samples: list[SampleReport] = field(default_factory=list)

    @property
    def checks(self) -> int:
        """How many checks passed, contract checks and comparisons, over every sample."""
        return sum(len(s.checks) + len(s.comparisons) for s in self.samples)

    @property
    def worst_rel_error(self) -> float:
        """The largest relative error of any derivative against finite differences (0 for none compared)."""
        return max((c.max_rel_error for s in self.samples for c in s.comparisons), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_op(op: OpDef | str, *, seed: int = 0, fast: bool = False, **tolerances: float) -> CheckReport:
    """Run every check on each of ``op``'s samples and return what was checked (:class:`CheckReport`); raise
    :class:`GradcheckError` at the first failure, naming the op, its plugin, the sample (its index, its inputs'
    dtypes and shapes, its attributes), what failed and, for a derivative, the worst element with the input's value
    there and where the op's backward is (file and line).

    ``tolerances`` (``eps``, ``atol``, ``rtol``) override the op's declared ones, which override the defaults.
    ``fast`` compares one directional derivative per input (PyTorch's fast mode: two forward calls instead of two
    per element), so large ops stay cheap to check.
    """
    if isinstance(op, str):
        op = get_registry()[op]
    settings = {**CHECK_TOLERANCES, **op.tolerances, **tolerances}
    rng = np.random.default_rng(seed)
    try:
        samples = op.samples(rng)
    except Exception as exc:
        raise GradcheckError(f"{op.describe()}: sample_inputs raised {type(exc).__name__}: {exc}") from exc
    report = CheckReport(op.name, op.plugin)
    for index, sample in enumerate(samples):
        sample_report = SampleReport(
            index,
            [f"{_input_name(op, i)}: {describe_array(np.asarray(x))}" for i, x in enumerate(sample.inputs)],
            {k: repr(v) for k, v in sample.attributes.items()},
        )
        where = f"; on sample {index} of {len(samples)} ({', '.join(sample_report.inputs)}{sample.describe()})"
        try:
            _check_sample(op, sample, rng, settings, fast, sample_report)
        except (GradcheckError, OpContractError) as exc:
            raise GradcheckError(f"{exc}{where}") from None
        except Exception as exc:  # the op's own code failed: a failed check, not a crash of the checker
            raise GradcheckError(f"{op.describe()}: raised {type(exc).__name__}: {exc}{where}") from exc
        report.samples.append(sample_report)
    return report


def _input_name(op: OpDef, position: int) -> str:
    """The input's name; ``#2`` for one past those declared (a sample with too many arrays, reported next)."""
    return op.input_name(position) if op.variadic or position < len(op.inputs) else f"#{position}"


def _check_sample(
    op: OpDef, sample: Sample, rng: np.random.Generator, settings: dict[str, float], fast: bool, report: SampleReport
) -> None:
    inputs = [np.array(x, dtype=np.float64) for x in sample.inputs]
    if not op.accepts(len(inputs)):
        _fail(op, f"sample_inputs returned {len(inputs)} arrays for {len(op.inputs)} inputs {op.signature()}")
    _refuse_integer_samples(op, sample)
    attributes = sample.attributes
    output = _checked_forward(op, inputs, attributes)
    report.checks.append("forward: finite, deterministic, inputs unchanged")
    grad_output = _random_gradients(op, output, rng)
    _check_backward_contract(op, inputs, attributes, output, grad_output)
    report.checks.append("backward: one gradient per input, shapes and dtypes, inputs unchanged")
    if op.forward_out is not None or op.backward_out is not None:
        report.checks.append(check_out_forms(op, inputs, attributes))
    if not any(op.differentiable_for(len(inputs))):  # dropout_mask: no derivative to check, its forward checked
        report.checks.append("derivatives: none (no input is differentiable)")
        _check_float32(op, [x.astype(np.float32) for x in inputs], attributes)
        report.checks.append("float32: output")
        report.checks.append(_check_vmap(op, inputs, attributes))
        return
    forward = _flat_forward(op, attributes)
    flat_g = _flatten(op, grad_output)
    first = analytic_gradients(op, inputs, grad_output, **attributes)
    for position, analytic in enumerate(first):
        if analytic is not None:
            what = op.describe_input(position)
            report.comparisons.append(
                _check_against_numeric(op, what, analytic, forward, inputs, flat_g, position, settings, rng, fast)
            )
    if composes(op, inputs, attributes, grad_output):
        report.comparisons += _check_second_order(op, inputs, attributes, grad_output, settings, rng, fast)
    try:
        report.comparisons += _check_forward_mode(op, inputs, attributes, grad_output, first, settings, rng)
    except NotComposableError:  # no jvp rule, and a backward that does not run on Tensors: no forward mode
        report.checks.append("jvp: none (no jvp rule, and the backward does not compose)")
    if op.jvp is not None:
        try:
            report.comparisons.append(_check_jvp_rule_derivatives(op, inputs, attributes, settings, rng))
        except NotComposableError:  # as a backward that does not compose: forward mode serves first order only
            report.checks.append("jvp rule: first order only (it does not run on Tensors)")
    _check_float32(op, [x.astype(np.float32) for x in inputs], attributes)
    report.checks.append("float32: output and gradients")
    report.checks.append(_check_vmap(op, inputs, attributes))


# An op with several outputs is checked as the function of its inputs that returns its differentiable outputs
# flattened and joined, with a grad_output of that length: what its backward computes from the gradient of each.


def _outputs(op: OpDef, output: Any) -> tuple[Any, ...]:
    """The outputs as a tuple: one for a single-output op."""
    return tuple(output) if op.multi else (output,)


def _random_gradients(op: OpDef, output: Any, rng: np.random.Generator) -> Any:
    """A random gradient for the output; for several outputs a tuple, None for one that takes no gradient."""
    if not op.multi:
        return rng.standard_normal(np.shape(output))
    flags = op.output_flags(len(output))
    return tuple(rng.standard_normal(np.shape(o)) if d else None for o, d in zip(output, flags, strict=True))


def _flatten(op: OpDef, grads: Any) -> np.ndarray:
    """The gradients of the differentiable outputs, flattened and joined (the gradient itself for one output)."""
    if not op.multi:
        return np.asarray(grads)
    return np.concatenate([np.ravel(g) for g in grads if g is not None])


def _unflatten(op: OpDef, flat: np.ndarray, like: Any) -> Any:
    """:func:`_flatten` undone, for outputs like ``like``."""
    if not op.multi:
        return flat
    grads: list[np.ndarray | None] = []
    start = 0
    for output, wanted in zip(like, op.output_flags(len(like)), strict=True):
        size = int(np.size(output)) if wanted else 0
        grads.append(flat[start : start + size].reshape(np.shape(output)) if wanted else None)
        start += size
    return tuple(grads)


def _flat_forward(op: OpDef, attributes: Mapping[str, Any]) -> Callable[..., np.ndarray]:
    """forward's output (several outputs: the differentiable ones, flattened and joined), for finite differences."""
    if not op.multi:
        return functools.partial(op.output_of, **attributes)

    def flat(*inputs: np.ndarray) -> np.ndarray:
        outputs = op.output_of(*inputs, **attributes)
        wanted = op.output_flags(len(outputs))
        return np.concatenate([np.ravel(o) for o, d in zip(outputs, wanted, strict=True) if d])

    return flat


def _scalar(op: OpDef, output: Any, grad_output: Any) -> tuple[Tensor, Any]:
    """What ``grad`` differentiates, and its gradient: the output and ``grad_output``, or for several outputs the
    scalar sum of each differentiable output times its gradient (a Tensor of one flat gradient, or arrays)."""
    if not op.multi:
        return output, grad_output
    total = Tensor(np.zeros(()))
    start = 0
    for each, wanted in zip(output, op.output_flags(len(output)), strict=True):
        if not wanted:
            continue
        if isinstance(grad_output, Tensor):  # one flat Tensor: each output's part of it, recorded
            stop = start + each.size
            g = apply("slice_along", grad_output, axis=None, start=start, stop=stop, shape=each.shape)
            start = stop
        else:
            g = grad_output[start]
            start += 1
        total = apply("add", total, apply("sum", apply("mul", each, g)))
    return total, None


def _check_against_numeric(
    op: OpDef,
    what: str,
    analytic: np.ndarray,
    forward: Callable[..., np.ndarray],
    inputs: Sequence[np.ndarray],
    grad_output: np.ndarray,
    position: int,
    settings: dict[str, float],
    rng: np.random.Generator,
    fast: bool,
) -> Comparison:
    """``analytic``, the gradient of ``sum(grad_output * forward(*inputs))`` in input ``position``, against central
    differences: every element, or (``fast``) one directional derivative along a random direction."""
    value: np.ndarray | None = inputs[position]
    if fast:
        direction = rng.standard_normal(inputs[position].shape)
        numeric = directional_derivative(forward, inputs, grad_output, position, direction, settings["eps"])
        analytic = np.asarray(np.sum(analytic * direction))
        what = f"{what} along a random direction"
        value = None
    else:
        numeric = numeric_gradient(forward, inputs, grad_output, position, settings["eps"])
    return _compare(op.describe(), what, analytic, numeric, settings, value, _located(op.backward))


def _located(function: Callable[..., Any], role: str = "backward") -> str:
    """`` (backward at path/to/ops.py:42)``, where Python can tell; empty where it cannot (a builtin)."""
    try:
        path = inspect.getsourcefile(function)
        line = inspect.getsourcelines(function)[1]
    except (OSError, TypeError):
        return ""
    return f" ({role} at {path}:{line})" if path else ""


def composes(op: OpDef, inputs: Sequence[np.ndarray], attributes: Mapping[str, Any], grad_output: Any) -> bool:
    """Whether ``op``'s backward can be differentiated: it runs on Tensors, recording itself, on these inputs."""
    tensors = [Tensor(x, requires_grad=d) for x, d in zip(inputs, op.differentiable_for(len(inputs)), strict=True)]
    given = [g for g in grad_output if g is not None] if op.multi else grad_output
    try:
        root, seed = _scalar(op, call_op(op, tensors, attributes), given)
        grad(root, [t for t in tensors if t.requires_grad], seed, create_graph=True)
    except NotComposableError:
        return False
    return True


def _check_second_order(
    op: OpDef,
    inputs: list[np.ndarray],
    attributes: Mapping[str, Any],
    grad_output: Any,
    settings: dict[str, float],
    rng: np.random.Generator,
    fast: bool,
) -> list[Comparison]:
    """PyTorch's gradgradcheck, for an op whose backward composes: the derivatives of
    ``F = sum_i <v_i, gradient of input i>`` (random ``v_i``), got by recording backward on Tensors and going back
    through it, against central differences of F computed from first-order gradients, in every differentiable
    input and in ``grad_output``."""
    positions = [i for i, differentiable in enumerate(op.differentiable_for(len(inputs))) if differentiable]
    directions = [rng.standard_normal(inputs[i].shape) for i in positions]
    like = op.output_of(*inputs, **attributes)
    grad_output = _flatten(op, grad_output)

    def first_order(*values: np.ndarray) -> np.ndarray:
        *xs, g = values
        grads = analytic_gradients(op, xs, _unflatten(op, g, like), **attributes)
        # positions are the differentiable inputs, whose gradients are arrays, not None
        return np.asarray(
            sum(np.sum(v * cast(np.ndarray, grads[i])) for i, v in zip(positions, directions, strict=True))
        )

    values = [*inputs, grad_output]
    tensors = [Tensor(x, requires_grad=i in positions or i == len(inputs)) for i, x in enumerate(values)]
    *xs, g = tensors
    root, seed = _scalar(op, call_op(op, xs, attributes), g)
    grads = grad(root, [xs[i] for i in positions], seed, create_graph=True)
    total = sum(
        (apply("sum", apply("mul", gr, v)) for gr, v in zip(grads, directions, strict=True) if gr is not None),
        start=Tensor(np.zeros(())),
    )
    if total.requires_grad:  # else F does not depend on anything: its derivatives are 0, as the numbers must be
        total.backward()
    comparisons = []
    for position, tensor in enumerate(tensors):
        if tensor.requires_grad:
            analytic = np.zeros_like(tensor.data) if tensor.grad is None else tensor.grad
            name = "grad_output" if position == len(inputs) else op.describe_input(position)
            what = f"the second derivative of {name} (its backward, differentiated)"
            comparisons.append(
                _check_against_numeric(
                    op, what, analytic, first_order, values, np.ones(()), position, settings, rng, fast
                )
            )
    return comparisons


def _check_forward_mode(
    op: OpDef,
    inputs: list[np.ndarray],
    attributes: Mapping[str, Any],
    grad_output: Any,
    pulled: Sequence[np.ndarray | None],
    settings: dict[str, float],
    rng: np.random.Generator,
) -> list[Comparison]:
    """Forward mode, as :mod:`opreg.func` computes it for the op (its ``jvp`` rule, or the one derived from its
    backward): ``J v`` for random input tangents ``v`` against the central difference of forward along ``v``, and
    against the backward, ``<J v, u> == <v, J^T u>`` (``u`` is ``grad_output``, ``J^T u`` the gradients ``pulled``
    from it)."""
    where = f"jvp of {op.describe()}"
    rule = "its jvp rule" if op.jvp is not None else "forward mode derived from its backward"
    located = _located(op.jvp, "jvp") if op.jvp is not None else _located(op.backward)
    flags = op.differentiable_for(len(inputs))
    tangents = [rng.standard_normal(x.shape) if d else None for x, d in zip(inputs, flags, strict=True)]
    output = op.output_of(*inputs, **attributes)
    tangent = op_tangent(op, inputs, output, attributes, tangents, record=False)
    like = _outputs(op, output)
    pieces = [
        np.zeros(np.shape(o)) if t is None else np.asarray(getattr(t, "data", t))
        for o, t, wanted in zip(like, _outputs(op, tangent), op.output_flags(len(like)) or (True,), strict=True)
        if wanted
    ]
    analytic = np.concatenate([np.ravel(p) for p in pieces])
    forward = _flat_forward(op, attributes)
    eps = settings["eps"]
    plus = forward(*[np.asarray(x + eps * t) if t is not None else x for x, t in zip(inputs, tangents, strict=True)])
    minus = forward(*[np.asarray(x - eps * t) if t is not None else x for x, t in zip(inputs, tangents, strict=True)])
    numeric = np.ravel((plus - minus) / (2 * eps))
    what = f"the output along random input tangents ({rule})"
    against_numeric = _compare(where, what, analytic, numeric, settings, None, located, subject="the tangent of")
    u = np.ravel(_flatten(op, grad_output))
    forward_side = float(np.dot(analytic, u))
    pairs = [(t, g) for t, g in zip(tangents, pulled, strict=True) if t is not None and g is not None]
    reverse_side = float(sum(np.sum(t * g) for t, g in pairs))
    scale = np.linalg.norm(analytic) * np.linalg.norm(u) + sum(np.linalg.norm(t) * np.linalg.norm(g) for t, g in pairs)
    error = abs(forward_side - reverse_side)
    if error > 1e-8 * scale + 1e-300:
        _fail(
            op,
            f"{rule} disagrees with its backward{located}: <J v, u> = {forward_side!r} by forward mode, and "
            f"<v, J^T u> = {reverse_side!r} by the backward, for random input tangents v and output gradient u "
            f"(error {error:.3g}, allowed {1e-8 * scale:.3g}); one of the two is wrong",
            prefix="jvp of ",
        )
    consistent = Comparison(f"jvp: <J v, u> against <v, J^T u> ({rule})", error, error / max(abs(reverse_side), 1e-300))
    return [against_numeric, consistent]


def _check_jvp_rule_derivatives(
    op: OpDef,
    inputs: list[np.ndarray],
    attributes: Mapping[str, Any],
    settings: dict[str, float],
    rng: np.random.Generator,
) -> Comparison:
    """A declared ``jvp`` rule as nested transforms run it (``jacfwd(jacrev(f))``, ``grad`` of a ``jvp``): on
    Tensors, recorded. The derivative of ``F = <w, jvp(x, t)>`` (random ``w``) in every differentiable input and
    tangent together, along a random direction, against the central difference of F computed by the rule on
    arrays: a rule that leaves the graph (``constant``, ``.data``) would give nested transforms wrong numbers."""
    flags = op.differentiable_for(len(inputs))
    tangents = [rng.standard_normal(x.shape) if d else None for x, d in zip(inputs, flags, strict=True)]
    like = _outputs(op, op.output_of(*inputs, **attributes))
    wanted = op.output_flags(len(like)) or (True,)
    weights = [rng.standard_normal(np.shape(o)) for o in like]
    values = [*inputs, *(t for t in tangents if t is not None)]
    directions = [rng.standard_normal(v.shape) if i >= len(inputs) or flags[i] else None for i, v in enumerate(values)]

    def weighted(tangent: Any) -> Any:
        pairs = zip(_outputs(op, tangent), weights, wanted, strict=True)
        terms = [apply("sum", apply("mul", t, w)) for t, w, d in pairs if d and t is not None]
        return sum(terms[1:], start=terms[0]) if terms else Tensor(np.zeros(()))

    def on_arrays(*values: np.ndarray) -> np.ndarray:
        xs, ts = list(values[: len(inputs)]), iter(values[len(inputs) :])
        given = [next(ts) if d else None for d in flags]
        tangent = op_tangent(op, xs, op.output_of(*xs, **attributes), attributes, given, record=False)
        return np.asarray(weighted(tangent).data)

    tensors = [Tensor(v, requires_grad=d is not None) for v, d in zip(values, directions, strict=True)]
    xs, ts = tensors[: len(inputs)], iter(tensors[len(inputs) :])
    total = weighted(
        op_tangent(op, xs, call_op(op, xs, attributes), attributes, [next(ts) if d else None for d in flags], True)
    )
    chosen = [x for x in tensors if x.requires_grad]
    grads = grad(total, chosen) if total.requires_grad else [None] * len(chosen)
    along = zip(grads, [d for d in directions if d is not None], strict=True)
    analytic = np.asarray(sum(float(np.sum(g.data * d)) for g, d in along if g is not None))
    eps = settings["eps"]
    plus = on_arrays(
        *[np.asarray(v + eps * d) if d is not None else v for v, d in zip(values, directions, strict=True)]
    )
    minus = on_arrays(
        *[np.asarray(v - eps * d) if d is not None else v for v, d in zip(values, directions, strict=True)]
    )
    numeric = np.asarray((plus - minus) / (2 * eps))
    what = "its jvp rule run on Tensors (differentiated in the inputs and tangents, along a random direction)"
    located = _located(op.jvp, "jvp") if op.jvp is not None else ""
    return _compare(f"jvp of {op.describe()}", what, analytic, numeric, settings, None, located, "the derivative of")


def _fail(op: OpDef, problem: str, prefix: str = "") -> NoReturn:
    raise GradcheckError(f"{prefix}{op.describe()}: {problem}")


def _check_vmap(op: OpDef, inputs: list[np.ndarray], attributes: Mapping[str, Any]) -> str:
    """``vmap`` of the op against a loop over the examples, to 1e-10: by its batching rule (``batch=``) or the
    loop every op without one gets. Two examples, the sample and its elements reversed (in the op's domain, as
    the sample is: a one-hot row stays one, a symmetric positive definite matrix stays one), batched on axis 0,
    on the last axis, and with the first input unbatched."""

    def call(*values: Any) -> Any:
        return call_op(op, values, attributes)

    second = [np.flip(x) for x in inputs]
    try:
        call(*second)
    except Exception:  # the reversal took an input out of the op's domain: two equal examples
        second = [x.copy() for x in inputs]
    rule = _rule_location(op)
    cases: list[tuple[str, list[int | None]]] = [
        ("batched on axis 0", [0] * len(inputs)),
        ("batched on the last axis", [-1] * len(inputs)),
        ("with input 0 unbatched", [None] + [0] * (len(inputs) - 1)),
    ]
    for what, axes in cases:
        if all(a is None for a in axes):
            continue
        given = [x if a is None else np.stack([x, y], axis=a) for x, y, a in zip(inputs, second, axes, strict=True)]
        loop = [
            _outputs(op, call(*[x if a is None else e for x, e, a in zip(inputs, example, axes, strict=True)]))
            for example in (inputs, second)
        ]
        try:
            batched = _outputs(op, vmap(call, in_axes=tuple(axes))(*given))
        except Exception as exc:
            _fail(op, f"vmap of the op {what} raised {type(exc).__name__}: {exc} ({rule})")
        for k, got in enumerate(batched):
            want, got = np.stack([np.asarray(per[k]) for per in loop]), np.asarray(got)
            scale = max(1.0, float(np.max(np.abs(want), initial=0.0, where=np.isfinite(want))))
            if got.shape != want.shape or not np.allclose(got, want, rtol=1e-10, atol=1e-10 * scale, equal_nan=True):
                error = f"max abs error {np.max(np.abs(got - want))}" if got.shape == want.shape else "a wrong shape"
                _fail(
                    op,
                    f"vmap of the op {what} disagrees with a loop over the examples: output {k} has shape {got.shape} "
                    f"and {error} against the loop's {want.shape} ({rule})",
                )
    return "vmap: against a loop over the examples (batch on axis 0, on the last axis, one input unbatched)"


def _rule_location(op: OpDef) -> str:
    """Where the op's batching rule is, for a failure: ``batching rule 'elementwise'``, the function's file and
    line, or the loop's (which only a wrong forward can fail)."""
    if op.batch is None:
        return "no batching rule: the loop over the examples"
    if isinstance(op.batch, str):
        return f"batching rule {op.batch!r}: is the op elementwise?"
    try:
        return f"batching rule at {inspect.getsourcefile(op.batch)}:{inspect.getsourcelines(op.batch)[1]}"
    except (OSError, TypeError):
        return f"batching rule {op.batch!r}"


def _refuse_integer_samples(op: OpDef, sample: Sample) -> None:
    """An integer or boolean sample for an input that takes gradients is a slip: an integer Tensor takes no
    gradient, so Tensor users never get the one the check would compare, and integer points sit on the kinks of
    abs, relu or floor, where a finite difference is no derivative."""
    for position, differentiable in enumerate(op.differentiable_for(len(sample.inputs))):
        dtype = np.asarray(sample.inputs[position]).dtype
        if differentiable and dtype.kind in "biu":
            others = _others(op, position)
            _fail(
                op,
                f"sample_inputs gives {op.describe_input(position)} as {dtype}, but an input that takes gradients "
                "needs floating-point samples (an integer Tensor takes no gradient, and integer points are the kinks "
                "of abs, relu and floor); draw floats "
                "(rng.standard_normal(shape), rng.uniform(low, high, shape)), or, if it takes integers (labels, "
                f"indices), leave it out of differentiable=" + (f" (differentiable={others!r})" if others else ""),
            )


def _others(op: OpDef, position: int) -> tuple[str, ...]:
    """The names of the op's differentiable inputs other than ``position``'s."""
    name = op.inputs[min(position, len(op.inputs) - 1)]
    return tuple(n.lstrip("*") for n, d in zip(op.inputs, op.differentiable, strict=False) if d and n != name)


def _checked_forward(op: OpDef, inputs: list[np.ndarray], attributes: Mapping[str, Any]) -> Any:
    """forward's output (several outputs: their tuple), checked: finite floats, the same twice."""
    names = [f"forward: {op.describe_input(i)}" for i in range(len(inputs))]
    result = check_unchanged(op, lambda: op.output_of(*inputs, **attributes), inputs, names)
    if op.multi and (not isinstance(result, tuple | list) or not op.accepts_outputs(len(result))):
        _fail(op, f"forward returned {type(result).__name__}, not a tuple of its {len(op.outputs)} outputs")
    if not op.multi and isinstance(result, tuple | list):
        raise GradcheckError(str(tuple_output_error(op, result)))
    outputs = [np.asarray(o) for o in _outputs(op, result)]
    again = [np.asarray(o) for o in _outputs(op, op.output_of(*inputs, **attributes))]
    for output, repeated in zip(outputs, again, strict=True):
        if not np.issubdtype(output.dtype, np.floating):
            _fail(op, f"forward on the sample inputs returned a non-float output ({output.dtype})")
        if nonfinite(output):
            _fail(
                op,
                f"forward on the sample inputs returned a non-finite output ({np.count_nonzero(~np.isfinite(output))}"
                f" of {output.size} elements NaN or infinite): a sample outside the op's domain? Draw samples inside "
                'it (sample_inputs=), and declare it (domain={"x": (0.1, 10.0)}) for the checks that draw inputs',
            )
        if not np.array_equal(output, repeated):
            hint = " (it draws random numbers: give its samples a fixed seed)" if op.draws else ""
            _fail(op, f"forward is not deterministic: two calls on the same inputs differ{hint}")
    return tuple(outputs) if op.multi else outputs[0]


def _check_backward_contract(
    op: OpDef, inputs: list[np.ndarray], attributes: Mapping[str, Any], output: Any, grad_output: Any
) -> None:
    saved = run_forward(op, inputs, attributes)[1]
    copied = tuple(o.copy() for o in output) if op.multi else output.copy()
    keywords = backward_keywords(op, attributes, copied, inputs, saved=saved)
    given = [g for g in _outputs(op, grad_output) if g is not None]
    names = [
        *(["backward: grad_output"] * len(given)),
        *(f"backward: {op.describe_input(i)}" for i in range(len(inputs))),
    ]
    arrays = [*given, *inputs]
    grads = check_unchanged(op, lambda: op.backward(grad_output, *inputs, **keywords), arrays, names)
    check_gradients(op, inputs, grads)
    for position, differentiable in enumerate(op.differentiable_for(len(inputs))):
        if grads[position] is not None and not differentiable:  # the engine drops it: a gradient meant, lost?
            declared = tuple(n for n, d in zip(op.inputs, op.differentiable, strict=False) if d)
            _fail(
                op,
                f"backward returned a gradient for {op.describe_input(position)}, which the op declares takes none "
                f"(differentiable={declared}), so the engine drops it; return None in its place, or declare the "
                "input differentiable",
            )


def _check_float32(op: OpDef, inputs: list[np.ndarray], attributes: Mapping[str, Any]) -> None:
    """float32 in, float32 out, and float32 gradients: the op does not quietly compute in float64. An op's
    ``dtype`` attribute, when set (astype's), names its output's dtype instead."""
    output, saved = run_forward(op, inputs, attributes)
    expected = np.dtype(attributes.get("dtype") or np.float32)
    for each in _outputs(op, output):
        if each.dtype != expected:
            _fail(
                op,
                f"forward turned float32 inputs into a {each.dtype} output; a NumPy scalar such as np.float64(...) "
                "or np.sqrt(2.0) in the computation upcasts (Python floats do not)",
            )
    keywords = backward_keywords(op, attributes, output, inputs, saved=saved)
    ones: Any
    if op.multi:
        flags = op.output_flags(len(output))
        ones = tuple(np.ones(o.shape, np.float32) if d else None for o, d in zip(output, flags, strict=True))
    else:
        ones = np.ones(output.shape, np.float32)
    check_gradients(op, inputs, op.backward(ones, *inputs, **keywords))


def numeric_gradient(
    forward: Callable[..., np.ndarray],
    inputs: Sequence[np.ndarray],
    grad_output: np.ndarray,
    position: int,
    eps: float,
) -> np.ndarray:
    """Central finite differences of ``sum(grad_output * forward(*inputs))`` with respect to input ``position``."""
    perturbed = [np.array(x, dtype=np.float64) for x in inputs]
    target = perturbed[position]
    gradient = np.zeros_like(target)
    for index in np.ndindex(target.shape):
        original = target[index]
        target[index] = original + eps
        plus = np.sum(grad_output * forward(*perturbed))
        target[index] = original - eps
        minus = np.sum(grad_output * forward(*perturbed))
        target[index] = original
        gradient[index] = (plus - minus) / (2 * eps)
    return gradient


def directional_derivative(
    forward: Callable[..., np.ndarray],
    inputs: Sequence[np.ndarray],
    grad_output: np.ndarray,
    position: int,
    direction: np.ndarray,
    eps: float,
) -> np.ndarray:
    """The central difference of ``sum(grad_output * forward(...))`` along ``direction`` in input ``position``:
    what ``sum(gradient * direction)`` must equal."""
    shifted = [np.array(x, dtype=np.float64) for x in inputs]
    shifted[position] = np.asarray(inputs[position] + eps * direction)  # 0-d + 0-d would be a NumPy scalar
    plus = np.sum(grad_output * forward(*shifted))
    shifted[position] = np.asarray(inputs[position] - eps * direction)
    minus = np.sum(grad_output * forward(*shifted))
    return np.asarray((plus - minus) / (2 * eps))


def analytic_gradients(
    op: OpDef, inputs: Sequence[np.ndarray], grad_output: Any, **attributes: Any
) -> list[np.ndarray | None]:
    """The gradient of each input as the engine computes it from the op's backward (``None``: not differentiable);
    ``grad_output`` is a tuple for an op with several outputs."""
    engine = Autograd()
    engine.apply(op.name, *inputs, **attributes)
    engine.backward(grad_output)
    return [
        engine.gradient_buffer.get_param(x) if differentiable else None
        for x, differentiable in zip(inputs, op.differentiable_for(len(inputs)), strict=True)
    ]


def _compare(
    where: str,
    what: str,
    analytic: np.ndarray,
    numeric: np.ndarray,
    settings: Mapping[str, float],
    value: np.ndarray | None = None,
    located: str = "",
    subject: str = "the gradient of",
) -> Comparison:
    """Raise if ``analytic`` and ``numeric`` differ beyond ``atol + rtol * |numeric|`` anywhere, naming the worst
    element (and the input's ``value`` there, when given); else how far apart they were."""
    error = np.abs(analytic - numeric)
    relative = error / np.maximum(np.abs(numeric), np.finfo(np.float64).tiny)
    comparison = Comparison(what, float(error.max(initial=0.0)), float(relative.max(initial=0.0)))
    excess = error - (settings["atol"] + settings["rtol"] * np.abs(numeric))
    if not excess.size or excess.max() <= 0:
        return comparison
    worst = tuple(int(i) for i in np.unravel_index(np.argmax(excess), excess.shape))
    at_value = value is not None and value.shape == excess.shape
    there = f" (where the input is {float(cast(np.ndarray, value)[worst])!r})" if at_value else ""
    raise GradcheckError(
        f"{where}: {subject} {what} disagrees with finite differences{located}: "
        f"max abs error {error.max():.3g}, max rel error {relative.max():.3g}; worst at index {worst}{there}: "
        f"analytic {float(analytic[worst])!r}, numeric {float(numeric[worst])!r} "
        f"(eps {settings['eps']}, atol {settings['atol']}, rtol {settings['rtol']})"
    )


def gradcheck(fn: Callable[..., Tensor], *inputs: Any, seed: int = 0, **tolerances: float) -> bool:
    """Check the gradients of ``fn``, any function of Tensors, against finite differences, in float64.

    Every floating-point input is checked; others are passed as constants. Raises :class:`GradcheckError` with
    the same report as :func:`check_op` (input position, largest errors, the worst element); returns ``True``.
    """
    settings = {**CHECK_TOLERANCES, **tolerances}
    arrays = [np.array(x.data if isinstance(x, Tensor) else x) for x in inputs]
    arrays = [x.astype(np.float64) if x.dtype.kind == "f" else x for x in arrays]
    tensors = [Tensor(x, requires_grad=x.dtype.kind == "f") for x in arrays]
    output = fn(*tensors)
    grad_output = np.random.default_rng(seed).standard_normal(output.shape)
    output.backward(grad_output)

    def forward(*values: np.ndarray) -> np.ndarray:
        with no_grad():
            return fn(*(Tensor(v) for v in values)).data

    where = f"function {getattr(fn, '__qualname__', fn)!r}"
    for position, tensor in enumerate(tensors):
        if tensor.requires_grad:
            analytic = np.zeros_like(tensor.data) if tensor.grad is None else tensor.grad
            numeric = numeric_gradient(forward, arrays, grad_output, position, settings["eps"])
            _compare(where, f"input {position}", analytic, numeric, settings, arrays[position])
    return True
