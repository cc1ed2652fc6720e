"""Every built-in op's backward against central finite differences, and the report when one is wrong."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import opreg
from opreg import GradcheckError, Sample, Tensor
from opreg.opcheck import check_op, composes
from opreg.plugin_manager import BUILTIN_PLUGINS

BUILTINS = sorted(name for name, op in opreg.get_registry().items() if op.plugin in BUILTIN_PLUGINS)


@pytest.mark.parametrize("name", BUILTINS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_builtin_backward_matches_finite_differences(name, seed):
    check_op(name, seed=seed)


def test_a_wrong_backward_is_reported_precisely(install_ops):
    install_ops(
        {"name": "cube", "inputs": ("x",), "forward": lambda x: x**3, "backward": lambda g, x: (2 * g * x**2,)},
        name="buggy-ops",
    )
    with pytest.raises(GradcheckError) as failure:
        check_op("cube")
    message = str(failure.value)
    for part in ("op 'cube'", "plugin 'buggy-ops'", "input 0 'x'", "max abs error", "max rel error", "worst at index"):
        assert part in message
    assert "analytic" in message and "numeric" in message


def test_non_differentiable_inputs_are_skipped(install_ops):
    """labels-like inputs get no gradient check, even though their 'gradient' would be wrong."""
    install_ops(
        {
            "name": "scaled",
            "inputs": ("x", "scale"),
            "forward": lambda x, scale: x * scale,
            "backward": lambda g, x, scale: (g * scale, None),
            "differentiable": ("x",),
        }
    )
    check_op("scaled")


def _negate_in_place(x):
    x *= -1
    return -x


@pytest.mark.parametrize(
    ("declaration", "problem"),
    [
        ({"forward": _negate_in_place}, r"forward: input 0 'x' was modified in place"),
        ({"forward": lambda x: x + np.random.default_rng().random()}, "not deterministic"),
        ({"forward": lambda x: np.where(x > 0, np.inf, 2 * x)}, "non-finite"),
        ({"backward": lambda g, x: (g, g)}, "returned 2 gradients for 1 inputs"),
        ({"forward": lambda x: (2 * x,)}, "forward returned a tuple of 1 where an op of one output returns an array"),
        ({"backward": lambda g, x: 2 * g}, r"returned float64 \(3, 4\), not a tuple of gradients.*return \(grad,\)"),
        ({"backward": lambda g, x: (g.sum(axis=0),)}, r"shape \(4,\) for input 0 'x' of shape \(3, 4\)"),
        ({"backward": lambda g, x: ((2 * g).astype(int),)}, "dtype int64"),
        ({"sample_inputs": lambda rng: (np.ones(3), np.ones(3))}, "sample_inputs returned 2 arrays for 1 inputs"),
        ({"sample_inputs": lambda rng: (rng.integers(-3, 3, (3, 4)),)}, "input 0 'x' as int64, but an input that"),
    ],
    ids=[
        "mutates-input",
        "nondeterministic",
        "nan-output",
        "gradient-count",
        "forward-tuple",
        "gradient-not-a-tuple",
        "gradient-shape",
        "int-gradient",
        "samples",
        "integer-samples",
    ],
)
def test_broken_op_contracts_are_reported(install_ops, declaration, problem):
    base = {"name": "twice", "inputs": ("x",), "forward": lambda x: 2 * x, "backward": lambda g, x: (2 * g,)}
    install_ops(base | declaration, name="broken")
    with pytest.raises(GradcheckError, match=rf"op 'twice' \(plugin 'broken'\): .*{problem}"):
        check_op("twice")


def test_an_op_may_declare_looser_tolerances(install_ops):
    """A backward that is off by 1% fails the default rtol and passes one the op declares (or the caller passes)."""
    install_ops(
        {"name": "rough", "inputs": ("x",), "forward": lambda x: x * x, "backward": lambda g, x: (2.02 * g * x,)},
        {
            "name": "rough_declared",
            "inputs": ("x",),
            "forward": lambda x: x * x,
            "backward": lambda g, x: (2.02 * g * x,),
            "tolerances": {"rtol": 0.05},
        },
    )
    with pytest.raises(GradcheckError):
        check_op("rough")
    check_op("rough", rtol=0.05)
    check_op("rough_declared")


def test_check_op_returns_what_it_checked_and_a_failure_locates_the_bug(install_ops):
    """The report: each sample with its inputs and attributes, the contract checks and the comparisons with their
    worst errors. A failure names the input's value at the worst element and the backward's file and line."""
    report = check_op("exp")
    assert report.op == "exp" and report.samples and report.checks >= 4 * len(report.samples)
    assert 0 <= report.worst_rel_error < 1e-6 and report.to_dict()["samples"][0]["inputs"][0].startswith("x: float64")

    def backward(g, x):  # wrong where x > 1
        return (g * np.where(x > 1, 0.0, 2 * x),)

    install_ops(
        {
            "name": "square_ish",
            "inputs": ("x",),
            "forward": lambda x: x * x,
            "backward": backward,
            "sample_inputs": lambda rng: [opreg.Sample(np.array([0.5, 2.0, -1.0]))],
        },
        name="located",
    )
    with pytest.raises(GradcheckError) as failed:
        check_op("square_ish")
    message = str(failed.value)
    assert "worst at index (1,) (where the input is 2.0)" in message
    assert f"(backward at {__file__}:" in message and "on sample 0 of 1 (x: float64 (3,))" in message


def test_every_sample_of_an_op_with_attributes_is_checked(install_ops):
    """The second sample exercises axis=1, where this backward is wrong; the report names the attribute value."""

    def backward(g, x, *, axis):
        g = g if axis is None else np.expand_dims(g, 0)  # right for axis=0 only
        return (np.broadcast_to(g, x.shape) * 1.0,)

    install_ops(
        {
            "name": "total",
            "inputs": ("x",),
            "attributes": {"axis": None},
            "forward": lambda x, *, axis: np.sum(x, axis=axis),
            "backward": backward,
            "sample_inputs": lambda rng: [
                opreg.Sample(rng.standard_normal((3, 3))),
                opreg.Sample(np.ones((3, 3)), axis=0),
            ],
        },
        name="axes",
    )
    check_op("total")
    with_axis_1 = dataclasses.replace(
        opreg.get_registry()["total"],
        sample_inputs=lambda rng: [Sample(rng.standard_normal((3, 3))), Sample(np.ones((3, 3)), axis=1)],
    )
    with pytest.raises(
        GradcheckError, match=r"op 'total' \(plugin 'axes'\): .*; on sample 1 of 2 \(x: float64 \(3, 3\) with axis=1\)$"
    ):
        check_op(with_axis_1)


@pytest.mark.parametrize(
    ("declaration", "problem"),
    [
        ({"sample_inputs": lambda rng: 1 / 0}, "sample_inputs raised ZeroDivisionError"),
        ({"forward": lambda x: x.no_such_method()}, "raised AttributeError"),
        ({"backward": lambda g, x: (g[99],)}, "raised IndexError"),
    ],
    ids=["sample_inputs", "forward", "backward"],
)
def test_an_op_that_raises_is_a_failed_check_not_a_crash(install_ops, declaration, problem):
    base = {"name": "twice", "inputs": ("x",), "forward": lambda x: 2 * x, "backward": lambda g, x: (2 * g,)}
    install_ops(base | declaration, name="raising")
    with pytest.raises(GradcheckError, match=rf"op 'twice' \(plugin 'raising'\): {problem}"):
        check_op("twice")


def test_an_op_that_upcasts_float32_is_reported(install_ops):
    """np.float64 constants are strongly typed in NumPy 2: x * np.float64(2) is float64 even for float32 x."""
    install_ops(
        {
            "name": "double",
            "inputs": ("x",),
            "forward": lambda x: x * np.float64(2.0),
            "backward": lambda g, x: (g * 2.0,),
        },
        name="upcasting",
    )
    with pytest.raises(GradcheckError, match=r"op 'double' \(plugin 'upcasting'\): forward turned float32 inputs"):
        check_op("double")


@pytest.mark.parametrize("name", BUILTINS)
def test_fast_mode_passes_every_builtin(name):
    check_op(name, fast=True)


def test_fast_mode_catches_a_wrong_backward(install_ops):
    """One random direction is enough to see a derivative that is off by a factor."""
    install_ops(
        {"name": "cube", "inputs": ("x",), "forward": lambda x: x**3, "backward": lambda g, x: (2 * g * x**2,)},
        name="buggy-ops",
    )
    with pytest.raises(GradcheckError, match=r"op 'cube' \(plugin 'buggy-ops'\): .*input 0 'x' along a random"):
        check_op("cube", fast=True)


def _detached(x):
    """``x``'s values cut from any recorded graph: the slip that makes a backward right once and wrong twice."""
    return Tensor(x.data) if isinstance(x, Tensor) else x


def test_second_derivatives_of_a_differentiable_backward_are_checked(install_ops):
    """An op declaring differentiable_backward has its backward differentiated and compared too: a backward
    whose first derivative is right but which detaches x fails, naming the input, where a correct one passes."""
    cube = {"name": "cube", "inputs": ("x",), "forward": lambda x: x * x * x, "differentiable_backward": True}
    install_ops(
        {**cube, "backward": lambda g, x: (3.0 * g * x * x,)},
        {**cube, "name": "cube_detached", "backward": lambda g, x: (3.0 * g * _detached(x) * _detached(x),)},
    )
    check_op("cube")
    check_op("cube", fast=True)
    with pytest.raises(GradcheckError, match=r"op 'cube_detached'.*second derivative of input 0 'x'"):
        check_op("cube_detached")


@pytest.mark.parametrize(
    "name",
    sorted(
        n for n, op in opreg.get_registry().items() if op.plugin.startswith("opreg_builtins") and any(op.differentiable)
    ),
)
def test_every_builtin_backward_composes(name):
    """check_op skips the second-order check of an op whose backward does not compose; no built-in may be one, or
    its second derivatives would go unchecked (and create_graph through it would raise). An op no input of which
    takes a gradient (dropout_mask) has none to check."""
    op = opreg.get_registry()[name]
    for sample in op.samples(np.random.default_rng(0)):
        inputs = [np.asarray(x, dtype=np.float64) if np.asarray(x).dtype.kind == "f" else x for x in sample.inputs]
        output = op.output_of(*inputs, **sample.attributes)
        if op.multi:  # a gradient per differentiable output
            flags = op.output_flags(len(output))
            grad_output = tuple(np.ones(np.shape(o)) if d else None for o, d in zip(output, flags, strict=True))
        else:
            grad_output = np.ones(np.shape(output))
        assert composes(op, inputs, sample.attributes, grad_output), f"{name}{sample.describe()}"


@pytest.mark.parametrize("fast", [False, True], ids=["every-element", "fast"])
def test_every_input_is_checked_not_only_the_first(install_ops, fast):
    """A two-input op whose backward is right for input 0 and wrong for input 1 fails the check, naming input 1."""
    install_ops(
        {
            "name": "weighted",
            "inputs": ("a", "b"),
            "forward": lambda a, b: a + 3 * b,
            "backward": lambda g, a, b: (g, 2 * g),
        },
        name="buggy-ops",
    )
    with pytest.raises(GradcheckError, match=r"op 'weighted' \(plugin 'buggy-ops'\): the gradient of input 1 'b'"):
        check_op("weighted", fast=fast)


def test_a_gradient_for_an_input_declared_non_differentiable_fails_the_check(install_ops):
    """The engine drops it (the input takes no gradient), so a backward that computes one most likely meant the
    input to be differentiable: the check says so rather than pass over a gradient that never arrives."""
    install_ops(
        {
            "name": "scaled",
            "inputs": ("x", "scale"),
            "differentiable": ("x",),
            "forward": lambda x, scale: x * scale,
            "backward": lambda g, x, scale: (g * scale, g * x),
        },
        name="declared",
    )
    with pytest.raises(
        GradcheckError, match=r"backward returned a gradient for input 1 'scale', which the op declares"
    ):
        check_op("scaled")
