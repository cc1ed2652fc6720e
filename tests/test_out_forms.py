"""Ops' forms that write into given arrays (``register(forward_out=, backward_out=)``): their declaration, the
check that holds them to forward and backward bit for bit, and the built-ins' on arrays larger than their samples."""

from __future__ import annotations

import re

import numpy as np
import pytest

import opreg
from opreg import GradcheckError, RegistrationError
from opreg.calls import input_gradients, run_forward
from opreg.fit import gradient_dtype
from opreg.opcheck import check_op
from opreg.outforms import backward_out_keywords, check_out_forms

#: The ops a training step is made of, each with the out forms a captured step's replay runs.
TRAINING_OPS = ["linear", "matmul", "add", "sub", "mul", "relu", "sigmoid", "tanh", "exp", "log", "sum", "mean", "mse"]


def _square(**forms):
    return {
        "name": "my_square",
        "inputs": ("x",),
        "forward": lambda x: x * x,
        "backward": lambda g, x: (2 * g * x,),
        **forms,
    }


def test_the_built_ins_of_a_training_step_declare_both_forms():
    registry = opreg.get_registry()
    for name in TRAINING_OPS:
        assert registry[name].forward_out is not None and registry[name].backward_out is not None, name
    assert registry["softmax_cross_entropy"].backward_out is not None  # its forward saves: no forward_out
    assert registry["div"].forward_out is None and registry["div"].backward_out is None


def test_a_correct_declaration_passes(install_ops):
    install_ops(
        _square(
            forward_out=lambda out, x: np.multiply(x, x, out=out),
            backward_out=lambda outs, g, x: np.multiply(2 * g, x, out=outs[0]),
        )
    )
    report = check_op("my_square")
    assert any("forward_out and backward_out: bit for bit" in c for s in report.samples for c in s.checks)


def test_a_forward_out_off_by_rounding_is_reported(install_ops):
    install_ops(_square(forward_out=lambda out, x: np.copyto(out, np.exp(2 * np.log(np.abs(x))))))
    with pytest.raises(GradcheckError) as failure:
        check_op("my_square")
    message = str(failure.value)
    for part in (
        "op 'my_square' (plugin 'test-plugin'): forward_out differs from forward in the output",
        "at index (",
        "bit for bit",
    ):
        assert part in message
    assert "left unwritten" not in message


def test_a_backward_out_leaving_an_element_unwritten_is_reported(install_ops):
    def partly(outs, g, x):
        outs[0][1:] = (2 * g * x)[1:]

    install_ops(_square(backward_out=partly))
    with pytest.raises(
        GradcheckError,
        match=r"backward_out differs from backward in the gradient of input 0 'x' "
        r"\(float64 \(3, 4\)\): at index \(0, 0\) backward_out wrote np.float64\(nan\) \(left unwritten",
    ):
        check_op("my_square")


def test_a_backward_out_that_skips_the_fitting_is_reported(install_ops):
    """``add``'s gradient of a broadcast input is summed by the engine: a backward_out must write that sum."""
    install_ops(
        {
            "name": "plus",
            "inputs": ("a", "b"),
            "forward": np.add,
            "backward": lambda g, a, b: (g, g),
            "backward_out": lambda outs, g, a, b: [o is None or np.copyto(o, g if o.ndim == 2 else g[0]) for o in outs],
            "sample_inputs": lambda rng: (rng.standard_normal((3, 4)), rng.standard_normal(4)),
        }
    )
    with pytest.raises(GradcheckError, match="backward_out differs from backward in the gradient of input 1 'b'"):
        check_op("plus")


def test_a_negative_zero_is_not_the_zero_backward_gives(install_ops):
    install_ops(
        {
            "name": "rectify",
            "inputs": ("x",),
            "forward": lambda x: np.maximum(x, 0),
            "backward": lambda g, x: (np.where(x > 0, g, 0.0),),
            "backward_out": lambda outs, g, x: np.multiply(g, x > 0, out=outs[0]),
            "sample_inputs": lambda rng: (np.array([1.0, -1.0, 2.0]),),
        }
    )
    with pytest.raises(GradcheckError, match="backward_out differs from backward") as failure:
        # g at the negative x is negative for this seed or another: g * False is -0.0 there
        for seed in range(8):
            check_op("rectify", seed=seed)
    assert "wrote np.float64(-0.0)" in str(failure.value)


def test_an_out_form_that_raises_is_named(install_ops):
    install_ops(_square(forward_out=lambda out, x: np.multiply(x, x, out=out[:1])))
    with pytest.raises(GradcheckError, match=r"op 'my_square' \(plugin 'test-plugin'\): forward_out raised ValueError"):
        check_op("my_square")


@pytest.mark.parametrize(
    ("forms", "message"),
    [
        (
            {"forward_out": lambda x, out: None},
            re.escape(
                "op 'my_square' (plugin 'test-plugin'): forward_out must take out first, then the op's inputs: "
                "def forward_out(out, *inputs, ...); got forward_out(x, out)"
            ),
        ),
        ({"backward_out": lambda g, outs, x: None}, "backward_out must take outs, g first"),
        ({"forward_out": lambda out: None}, r"forward_out\(out\) cannot be called with 2 positional arguments"),
        ({"backward_out": lambda outs, g, x, *, output: None}, "backward_out names output, and it is given only"),
        ({"forward_out": "np.add"}, 'forward_out must be callable, not str|argument "forward_out" \\(str\\)'),
    ],
)
def test_a_wrong_signature_is_refused_at_registration(install_ops, forms, message):
    with pytest.raises(RegistrationError, match=message):
        install_ops(_square(**forms))


def test_an_op_that_saves_or_has_several_outputs_takes_no_forward_out(install_ops):
    saving = {
        "name": "saving",
        "inputs": ("x",),
        "forward": lambda x: (x * x, 2 * x),
        "backward": lambda g, x, *, saved: (g * saved,),
        "forward_out": lambda out, x: None,
    }
    with pytest.raises(RegistrationError, match="its forward also returns what backward saves; drop forward_out="):
        install_ops(saving)
    pair = {
        "name": "pair",
        "inputs": ("x",),
        "outputs": ("a", "b"),
        "forward": lambda x: (x, x),
        "backward": lambda g, x: (g[0] + g[1],),
        "backward_out": lambda outs, g, x: None,
    }
    with pytest.raises(RegistrationError, match="it has several outputs"):
        install_ops(pair)


def test_backward_out_is_given_what_backward_asks_for_but_saved():
    linear = opreg.get_registry()["linear"]
    x, w, b = np.ones((2, 3)), np.ones((4, 3)), np.ones(4)
    outs = (None, np.empty_like(w), np.empty_like(b))
    assert backward_out_keywords(linear, {}, x @ w.T + b, outs) == {"needs_grad": (False, True, True)}
    loss = opreg.get_registry()["softmax_cross_entropy"]
    assert backward_out_keywords(loss, {}, np.zeros(()), (np.empty((2, 3)), None)) == {}


def _large(rng):
    """Arrays past NumPy's pairwise-summation blocks and BLAS's small-matrix paths, broadcasting every way."""
    n = rng.standard_normal
    return {
        "linear": [(n((130, 200)), n((30, 200)), n(30)), (n((3, 40, 200)), n((30, 200)), n(30))],
        "matmul": [(n((130, 200)), n((200, 70))), (n(200), n((3, 200, 70))), (n((3, 130, 200)), n(200))],
        "add": [(n((300, 130)), n(130)), (n((300, 1)), n((300, 130)))],
        "sub": [(n((300, 130)), n((1, 130))), (n(130), n((2, 300, 130)))],
        "mul": [(n((300, 130)), n(130)), (n((300, 1)), n((2, 300, 130)))],
        "relu": [(n((300, 130)),)],
        "sigmoid": [(30 * n((300, 130)),)],
        "tanh": [(n((300, 130)),)],
        "exp": [(n((300, 130)),)],
        "log": [(np.abs(n((300, 130))) + 0.1,)],
        "sum": [(n((300, 130, 3)),)],
        "mean": [(n((300, 130, 3)),)],
        "mse": [(n((300, 130)), n((300, 130)))],
        "softmax_cross_entropy": [(n((257, 10)), np.eye(10)[rng.integers(0, 10, 257)])],
    }


@pytest.mark.parametrize("name", [*TRAINING_OPS, "softmax_cross_entropy"])
def test_the_built_ins_out_forms_are_exact_on_large_arrays(name):
    rng = np.random.default_rng(7)
    op = opreg.get_registry()[name]
    settings = [{}, {"axis": 0}, {"axis": (0, 2), "keepdims": True}, {"axis": -1}] if name in ("sum", "mean") else [{}]
    for inputs in _large(rng)[name]:
        for attributes in settings:
            check_out_forms(op, inputs, op.bind_attributes(attributes))


def _mixed(rng):
    """float32 beside float64 (a bias, a target), and float16, which NumPy's mean sums in float32."""
    f32 = rng.standard_normal((5, 3)).astype(np.float32)
    return {
        "linear": [(f32, rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal(4))],
        "matmul": [(f32, rng.standard_normal((3, 4)))],
        "add": [(f32, rng.standard_normal(3))],
        "sub": [(f32, rng.standard_normal(3))],
        "mul": [(f32, rng.standard_normal(3))],
        "relu": [(f32,)],
        "sigmoid": [(f32,)],
        "tanh": [(f32,)],
        "exp": [(f32,)],
        "log": [(np.abs(f32) + np.float32(0.5),)],
        "sum": [(f32,), (f32.astype(np.float16),)],
        "mean": [(f32,), (f32.astype(np.float16),)],
        "mse": [(f32, rng.standard_normal((5, 3))), (f32.astype(np.float16), f32[::-1].astype(np.float16))],
        "softmax_cross_entropy": [(f32, np.eye(3)[[0, 1, 2, 0, 1]])],
    }


@pytest.mark.parametrize("name", [*TRAINING_OPS, "softmax_cross_entropy"])
def test_the_built_ins_out_forms_are_exact_across_dtypes(name):
    """check_op's samples are of one dtype; a replay also meets mixed ones, and a float64 g on a float32 output."""
    rng = np.random.default_rng(3)
    op = opreg.get_registry()[name]
    for inputs in _mixed(rng)[name]:
        output, saved = run_forward(op, inputs, op.attributes)
        if op.forward_out is not None:
            out = np.full(output.shape, np.nan, output.dtype)
            op.forward_out(out, *inputs)
            assert np.array_equal(out, output)
        for dtype in (np.float64, np.float32):
            g = rng.standard_normal(output.shape).astype(dtype)
            expected = input_gradients(op, g, inputs, output, op.attributes, saved=saved)
            flags = op.differentiable_for(len(inputs))
            outs = tuple(
                np.full(x.shape, np.nan, gradient_dtype(x)) if d else None for x, d in zip(inputs, flags, strict=True)
            )
            op.backward_out(outs, g, *inputs, **backward_out_keywords(op, op.attributes, output, outs))
            for got, want in zip(outs, expected, strict=True):
                if got is not None:
                    assert np.array_equal(got, want) and (np.signbit(got) == np.signbit(want)).all()


@pytest.mark.parametrize(
    "case", ["float64", "float32", "float16", "longdouble", "strided", "float64-g-on-float32", "broadcast-g"]
)
@pytest.mark.parametrize("large", [False, True], ids=["small", "large"])
def test_relus_backward_out_is_its_backward_bit_for_bit_at_every_edge(case, large):
    """relu's backward is where(x > 0, g, 0.0): g's very bits where x > 0 (a NaN's sign and payload, -0.0), +0.0
    elsewhere (an infinite or NaN g stops there, and -0.0 becomes +0.0), x's NaN, infinities and zeros of both
    signs against every such g; on each dtype, a strided view, and a g of another dtype than the gradient; small
    and large (its backward_out takes another way from 512 elements)."""
    dtype = {"float32": np.float32, "float16": np.float16, "longdouble": np.longdouble}.get(case, np.float64)
    if case == "float64-g-on-float32":
        dtype = np.float32
    edges = [-np.inf, -1.0, -0.0, 0.0, 1e-300, 1.0, np.inf, np.nan, 2.5]
    x, g = (a.astype(dtype) for a in np.meshgrid(edges, [*edges, -np.nan], indexing="ij"))
    if dtype != np.longdouble:  # a NaN with its sign bit and every payload bit set: all ones
        g[:, -1] = np.array(-1, {2: np.int16, 4: np.int32, 8: np.int64}[g.itemsize]).view(dtype)
    if case == "strided":
        x, g = np.tile(x, (3, 2))[::3, ::-2], np.tile(g, (3, 2))[::3, ::-2]
    if large:
        x, g = np.tile(x, (8, 1)), np.tile(g, (8, 1))
    elif case == "float64-g-on-float32":
        g = g.astype(np.float64)
    elif case == "broadcast-g":  # as a seed of ones is: one row, strides of 0
        g = np.broadcast_to(g[:1], x.shape)
    op = opreg.get_registry()["relu"]
    expected = np.where(x > 0, g, 0.0).astype(gradient_dtype(x))  # the definition (backward's arrays share a kernel)
    out = np.full(x.shape, np.nan, gradient_dtype(x))
    op.backward_out((out,), g, x)
    (eager,) = input_gradients(op, g, (x,), None, op.attributes)
    for got in (out, eager):
        assert got.dtype == expected.dtype
        if dtype == np.longdouble:  # its padding bytes are not the value's: compare the values, and the signs
            assert np.array_equal(got, expected, equal_nan=True) and (np.signbit(got) == np.signbit(expected)).all()
        else:
            bits = {2: np.uint16, 4: np.uint32, 8: np.uint64}[got.itemsize]
            assert np.array_equal(got.view(bits), expected.view(bits))
