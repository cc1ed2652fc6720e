"""Out forms written inline into a compiled step (:mod:`opreg.tracing`): the NumPy calls they make, traced through
NumPy's protocols; a form whose calls cannot be written down is called as a whole, and either way a replay gives the
eager step's numbers bit for bit."""

from __future__ import annotations

import re

import numpy as np
import pytest

import opreg
from opreg import Tensor
from opreg.tracing import Trace, Untraceable

#: Under OPREG_CHECK=1 (checking mode) a compiled step is recorded, never replayed.
REPLAYS = not opreg.observe.active


def _trace(form, *arrays, constants=None, **keywords):
    """``form`` traced on ``arrays`` (named a0, a1, ...); the lines, or the reason it cannot be."""
    names = iter(range(100))
    constants = {} if constants is None else constants

    def constant(value):
        constants[f"k{len(constants)}"] = value
        return f"k{len(constants) - 1}"

    trace = Trace(lambda x: f"t{next(names)}", constant)
    stand_ins = [trace.array(a, f"a{i}") for i, a in enumerate(arrays)]
    try:
        trace.run(form, stand_ins, keywords)
    except Untraceable as exc:
        return str(exc)
    return trace.lines


def _reductions(out, x):
    np.sum(x, out=out[0])  # no axis: every axis, where np.add.reduce's own default is axis 0
    np.copyto(out[1], x.max(axis=1) + np.prod(x, 1, keepdims=True).min() + x.sum(0, dtype=np.float32)[:2])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_traced_calls_replayed_on_new_arrays_give_what_the_form_gives(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3)).astype(dtype)
    scratch = (np.empty((), dtype), np.empty(2, dtype))
    constants: dict = {}
    lines = _trace(lambda a0, a1, a2: _reductions((a0, a1), a2), *scratch, x, constants=constants)
    assert isinstance(lines, list) and any("np.add.reduce(a2, axis=None" in line for line in lines), lines
    for _ in range(3):
        x = rng.standard_normal((2, 3)).astype(dtype)
        want = (np.empty((), dtype), np.empty(2, dtype))
        _reductions(want, x)
        got = {"np": np, **constants, "a0": np.empty((), dtype), "a1": np.empty(2, dtype), "a2": x}
        exec("\n".join(lines), got)
        assert np.array_equal(got["a0"], want[0]) and np.array_equal(got["a1"], want[1])


def test_ufuncs_functions_methods_and_operators_are_written_down_with_their_arguments():
    def form(out, x, y):
        np.multiply(x, y.T, out=out)
        out += x.sum(axis=0, keepdims=True)
        np.copyto(out, 0.0, where=x < 0)

    x, y = np.ones((2, 3)), np.ones((3, 2))
    constants: dict = {}
    assert _trace(form, np.empty((2, 3)), x, y, constants=constants) == [
        "t0 = a2.T",
        "np.multiply(a1, t0, out=a0)",
        "t1 = np.add.reduce(a1, axis=0, keepdims=True)",
        "np.add(a0, t1, out=a0)",
        "t2 = np.less(a1, k0)",  # the number 0 as the 0-d float64 array NumPy converts it to
        "np.copyto(a0, 0.0, where=t2)",
    ]
    assert constants["k0"].shape == () and constants["k0"].dtype == np.float64 and constants["k0"] == 0


@pytest.mark.parametrize(
    ("x", "number", "written"),
    [
        (np.linspace(-1, 1, 6, dtype=np.float32), 0.1, "k0"),  # NEP 50: 0.1 becomes float32, as the array is
        (np.arange(6, dtype=np.int8), 3, "k0"),
        (np.arange(6, dtype=np.int64), 0.5, "0.5"),  # a float meets integers: float64, not the array's dtype
        (np.arange(6, dtype=np.uint8), -1, "-1"),  # a number uint8 cannot hold: left to NumPy's own rules
        (np.arange(6, dtype=np.uint8), 300, "300"),
    ],
)
def test_a_number_becomes_a_0d_array_only_where_numpy_converts_it_to_the_arrays_dtype(x, number, written):
    """A Python number among a ufunc's operands costs a conversion per call; where NumPy converts it to the
    arrays' dtype (NEP 50) it is written as a 0-d array of that dtype, which gives the same bits (here compared
    on every traced line's value), and elsewhere left as the number."""
    constants: dict = {}
    for ufunc in (np.add, np.maximum, np.greater, np.multiply):

        def form(x, ufunc=ufunc):
            return ufunc(x, number)

        constants.clear()
        try:
            want = ufunc(x, number)
        except OverflowError:  # NumPy's error for a number the dtype cannot hold, which tracing must not hide
            assert "OverflowError" in _trace(form, x, constants=constants)
            continue
        lines = _trace(form, x, constants=constants)
        assert lines == [f"t0 = np.{ufunc.__name__}(a0, {written})"]
        got = eval(lines[0].split(" = ")[1], {"np": np, "a0": x, **constants})
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()


@pytest.mark.parametrize(
    ("form", "why"),
    [
        (lambda out, x: np.copyto(out, x if x.sum() > 0 else -x), "reads a value into Python"),
        (lambda out, x: np.copyto(out, float(x.max())), "reads a value into Python"),
        (lambda out, x: np.copyto(out, np.asarray(x)), "np.asarray"),
        (lambda out, x: np.add(x, np.ones(x.shape), out=out), "not one of the form's arguments"),
        (lambda out, x: out.__class__, None),
        (lambda out, x: x.tofile("nowhere"), "does not know"),
    ],
)
def test_what_cannot_be_written_down_stops_the_trace(form, why):
    result = _trace(form, np.empty(3), np.arange(3.0))
    if why is None:
        assert isinstance(result, list)  # metadata is read freely
    else:
        assert isinstance(result, str) and why in result


def _chain_step(compiled: bool):
    x = Tensor(np.linspace(-1, 1, 6).reshape(2, 3), requires_grad=True)
    c = np.full((2, 3), 1.5)

    def step():
        x.grad = None
        y = x
        for _ in range(3):
            y = opreg.ops.mul(y, c)
        opreg.ops.sum(opreg.ops.relu(y)).backward()

    return (opreg.compile(step) if compiled else step), x


def test_a_chain_of_ops_replays_as_numpy_calls_with_no_python_between():
    (step, x), (eager, x_eager) = _chain_step(True), _chain_step(False)
    for _ in range(4):
        step()
        eager()
        assert np.array_equal(x.grad, x_eager.grad)
    if REPLAYS:
        assert step.replays == 2
        assert step.code.count("np.multiply(") == 6  # three forwards, three backwards
        # relu's output and the sum of it only lead to the seed: neither forward runs; relu's backward reads x
        assert "np.maximum(" not in step.code and "np.greater(" in step.code


def test_an_untraceable_out_form_is_called_and_the_replay_still_equals_eager(install_ops):
    def backward_out(outs, g, x):
        if outs[0] is not None:
            if float(np.abs(x).max()) > 1e300:  # reads a value: cannot be traced
                raise ValueError("too large")
            np.multiply(2 * g, x, out=outs[0])

    install_ops(
        {
            "name": "my_square",
            "inputs": ("x",),
            "forward": lambda x: x * x,
            "backward": lambda g, x: (2 * g * x,),
            "forward_out": lambda out, x: np.multiply(x, x, out=out),
            "backward_out": backward_out,
        }
    )
    rng = np.random.default_rng(0)
    w = Tensor(rng.standard_normal(4), requires_grad=True)
    w_eager = Tensor(w.data.copy(), requires_grad=True)

    def make(weight):
        def step(x):
            weight.grad = None
            loss = opreg.ops.sum(opreg.ops.my_square(opreg.ops.mul(weight, x)))
            loss.backward()
            return loss  # read: the forwards run in a replay

        return step

    compiled, eager = opreg.compile(make(w)), make(w_eager)
    for _ in range(5):
        x = rng.standard_normal(4)
        compiled(x)
        eager(x)
        assert np.array_equal(w.grad, w_eager.grad)
    if REPLAYS:
        assert compiled.replays == 3
        assert "np.multiply(a0, a0" not in compiled.code  # the forward_out was traced: np.multiply(v0, v0, out=...)
        assert "np.multiply(v0, v0, out=" in compiled.code
        assert compiled.code.count("np.multiply(") == 3  # mul forward, my_square forward, mul backward: the
        # untraceable my_square backward_out is a call


def test_a_forward_nothing_reads_is_left_out_and_one_returned_is_kept():
    def make(returns):
        w = Tensor(np.ones((3, 2)), requires_grad=True)
        y = np.eye(2)[[0, 1, 1]]
        criterion = opreg.nn.SoftmaxCrossEntropy(None)

        def step(x):
            w.grad = None
            loss = criterion(y, opreg.ops.mul(w, x))
            loss.backward()
            return loss if returns else None

        return opreg.compile(step)

    x = np.arange(6.0).reshape(3, 2)
    quiet, loud = make(False), make(True)
    for _ in range(3):
        quiet(x)
        loud(x)
    if REPLAYS:
        assert quiet.replays == loud.replays == 1
        assert "asarray(" in loud.code  # the loss, a 0-d array
        assert "asarray(" not in quiet.code  # its forward not run: backward recomputes what it needs
        # the loss's forward and backward both exponentiate the shifted logits: once, when both run
        assert quiet.code.count("np.exp(") == loud.code.count("np.exp(") == 1


@pytest.mark.skipif(not REPLAYS, reason="checking mode validates the op, and refuses its forward_out, first")
def test_an_out_form_that_differs_from_forward_on_the_steps_arrays_makes_the_step_run_eagerly(install_ops):
    """The out-form contract, held on the step's own arrays at recording: a replay never gives other numbers than
    the eager step, even when a form's samples did not show the difference."""
    install_ops(
        {
            "name": "my_twice",
            "inputs": ("x",),
            "forward": lambda x: x * 2.0,
            "backward": lambda g, x: (g * 2.0,),
            "forward_out": lambda out, x: np.multiply(x, 2.0 if x.size < 100 else 2.0000001, out=out),
        }
    )
    w = Tensor(np.ones(200), requires_grad=True)

    def step():
        w.grad = None
        opreg.ops.sum(opreg.ops.my_twice(w)).backward()

    compiled = opreg.compile(step)
    with pytest.warns(opreg.CaptureWarning, match="my_twice.*forward_out does not give the eager step's numbers"):
        for _ in range(4):
            compiled()
    assert compiled.replays == 0


def test_a_value_changed_in_place_between_two_equal_expressions_is_computed_again():
    """Reusing an earlier result is only right when nothing changed its operands in between: ``sin(w)`` is taken,
    the optimizer's step changes ``w`` in place (a library call, which names no array), and ``sin(w)`` is taken
    again. Every replay must equal the eager step."""

    def make():
        w = Tensor(np.linspace(-1, 1, 6).reshape(3, 2), requires_grad=True)
        optimizer = opreg.optim.SGD([w], lr=0.5)

        def step(x):
            losses = []
            for _ in range(2):
                optimizer.zero_grad()
                losses.append(opreg.ops.sum(opreg.ops.mul(opreg.ops.sin(w), x)))  # sin: no forward_out, traced
                losses[-1].backward()
                optimizer.step()
            return losses  # both read: both forwards run

        return step, w

    (eager, w_eager), (step, w) = make(), make()
    compiled = opreg.compile(step)
    x = np.arange(6.0).reshape(3, 2) / 6
    for _ in range(5):
        assert all(np.array_equal(a.data, b.data) for a, b in zip(eager(x), compiled(x), strict=True))
        assert np.array_equal(w.data, w_eager.data)
    if REPLAYS:
        assert compiled.replays == 3
        assert compiled.code.count("np.sin(p") == 2


def test_what_the_seed_alone_gives_is_computed_once_at_recording():
    """A mean's backward divides the seed (ones) by n: the same every replay, so the program computes it once,
    as a read-only constant, and each replay still equals the eager step bit for bit."""

    def make():
        w = Tensor(np.linspace(-1, 1, 6).reshape(3, 2), requires_grad=True)

        def step(x):
            w.grad = None
            loss = opreg.ops.mean(opreg.ops.mul(w, x))
            loss.backward()
            return loss

        return step, w

    (eager, w_eager), (step, w) = make(), make()
    compiled = opreg.compile(step)
    rng = np.random.default_rng(0)
    for _ in range(4):
        x = rng.standard_normal((3, 2))
        assert np.array_equal(eager(x).data, compiled(x).data)
        assert w.grad.tobytes() == w_eager.grad.tobytes()
    if REPLAYS:
        assert compiled.replays == 2
        assert ".copy()" not in compiled.code  # the seed's copy, and the expand_dims of it, are constants now
        assert "np.expand_dims(" not in compiled.code
        program = next(iter(compiled._programs.values()))
        seed = re.search(r"np\.divide\((k\d+), ", compiled.code)
        assert seed is not None and not program.constants[seed.group(1)].flags.writeable


def test_a_seed_a_called_backward_may_hand_on_is_a_new_array_each_replay(install_ops):
    """A backward called whole (no out form) may return its gradient itself, which then becomes a leaf's
    ``.grad``, the user's to change: that seed is never made a constant shared by every replay."""
    install_ops({"name": "my_identity", "inputs": ("x",), "forward": lambda x: x.copy(), "backward": lambda g, x: (g,)})
    w = Tensor(np.array(2.0), requires_grad=True)

    def step():
        w.grad = None
        opreg.ops.my_identity(w).backward()

    compiled = opreg.compile(step)
    grads = []
    for _ in range(4):
        compiled()
        grads.append(w.grad)
        assert w.grad.flags.writeable and w.grad == 1.0
        w.grad += 5.0  # the user's to change: the next replay starts from the seed again
    assert len({id(g) for g in grads}) == len(grads)
    if REPLAYS:
        assert compiled.replays == 2


def test_a_backward_out_writing_through_a_view_of_its_array_is_replayed(install_ops):
    """``outs[0].reshape(-1)`` is the gradient's memory under another name: a write through it is a write to the
    gradient, and must stay in the program (leaving out lines whose results nothing reads must see that)."""

    def backward_out(outs, g, x):
        if outs[0] is not None:
            np.multiply(g.reshape(-1), 2.0, out=outs[0].reshape(-1))

    install_ops(
        {
            "name": "my_double",
            "inputs": ("x",),
            "forward": lambda x: x * 2.0,
            "backward": lambda g, x: (g * 2.0,),
            "forward_out": lambda out, x: np.multiply(x, 2.0, out=out),
            "backward_out": backward_out,
        }
    )

    def make():
        w = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)

        def step(x):
            w.grad = None
            opreg.ops.sum(opreg.ops.mul(opreg.ops.my_double(w), x)).backward()

        return step, w

    (eager, w_eager), (step, w) = make(), make()
    compiled = opreg.compile(step)
    for x in np.random.default_rng(0).standard_normal((5, 2, 3)):
        eager(x)
        compiled(x)
        assert np.array_equal(w.grad, w_eager.grad)
    assert compiled.replays == (3 if REPLAYS else 0)


def test_backward_outs_that_fit_their_gradient_are_written_inline():
    """add's and sub's backward_out fit the gradient to each input (``fit_into``: the bias's broadcast summed away),
    which a trace follows into its NumPy calls: no form is called whole, and the replay equals the eager step."""

    def make():
        w, b = Tensor(np.linspace(-1, 1, 6).reshape(3, 2), requires_grad=True), Tensor(np.ones(2), requires_grad=True)

        def step(x):
            w.grad = b.grad = None
            opreg.ops.sum(opreg.ops.sub(opreg.ops.add(opreg.ops.mul(w, x), b), x)).backward()

        return step, w, b

    (eager, *eager_params), (step, *params) = make(), make()
    compiled = opreg.compile(step)
    for x in np.random.default_rng(0).standard_normal((5, 3, 2)):
        eager(x)
        compiled(x)
        assert all(np.array_equal(p.grad, q.grad) for p, q in zip(params, eager_params, strict=True))
    if REPLAYS:
        assert compiled.replays == 3
        assert not re.search(r"k\d+\(\(", compiled.code)  # no backward_out called with its tuple of outs
        assert "np.add.reduce(" in compiled.code  # the bias's gradient, summed over the batch
