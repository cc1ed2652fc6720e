"""Graph fuzzing: random DAGs of built-in ops, differentiated by both front ends, against PyTorch.

hypothesis draws a program: 1-3 parameter leaves and 0-2 constant arrays of related shapes, then 5 to 50 op choices,
each applying a built-in op to earlier nodes (so intermediates are reused, sometimes as both operands), with Python
numbers and constant arrays as occasional operands, and a final ``sum``, ``mean``, ``mse`` or
``softmax_cross_entropy`` to a scalar ``loss`` (optionally with every dangling branch folded in, otherwise the
dangling branches stay on the tape and must contribute nothing). The program is text, one op per line::

    n3 = ops.mul(n1, x0)
    n4 = ops.sum(n3, axis=(0, -1), keepdims=True)

and it is executed, exactly as printed, once with ``ops`` calling the tape engine (``engine.apply``) and once with
``ops`` calling ``opreg.ops`` on Tensors, and its lines are run once more on torch tensors. Every node's value and
every leaf's gradient must match torch's. A failure prints the failing front end's program, a short runnable Python
file, after hypothesis has shrunk it.

Values stay in safe domains by construction: each node carries an interval that bounds its values; ``log``, a
divisor and ``pow``'s base are first made positive (``x * x + 1``, ``sigmoid(x) + 0.5``, ``exp(tanh(x))``) unless
their interval already is, and an op whose result could exceed 1e4 in magnitude is replaced by ``tanh``. relu's
kink is the one place where torch's and NumPy's last-bit rounding could take different branches: a case where the
two disagree on the sign of a relu input is rejected (exact zeros, where both take the subgradient 0, are kept).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import opreg
from opreg.testing import axes

from torch_reference import BUILTIN_OPS, REGISTRY, TORCH_OPS, torch

#: No node's values may exceed this in magnitude.
LIMIT = 1e4


# --- torch counterparts of the ops, for running the program's lines on torch tensors ---------------------------------


def _tensor(x: Any) -> Any:
    return x if isinstance(x, torch.Tensor) else torch.tensor(x, dtype=torch.float64)


def _operands(function):
    """A program passes numbers and constant arrays as operands, which torch's functions want as tensors."""
    return lambda *operands: function(*map(_tensor, operands))


#: The shared table (tests/torch_reference.py), each op of several inputs taking numbers and arrays as well.
TORCH_LIB = SimpleNamespace(
    **{name: _operands(f) if len(REGISTRY[name].inputs) > 1 else f for name, f in TORCH_OPS.items()}
)

#: The ops the fuzzer draws: every built-in one (test_fuzzer_draws_every_builtin_op keeps it so).
FUZZ_OPS = sorted(vars(TORCH_LIB))

#: How each front end's program starts and ends; ``leaf`` makes a parameter, ``const`` a constant array.
HEADERS = {
    "tape engine": """\
import functools
import types

import numpy as np
import opreg

engine = opreg.Autograd()
ops = types.SimpleNamespace(**{name: functools.partial(engine.apply, name) for name in opreg.get_registry()})


def leaf(values):
    return np.array(values, dtype=np.float64)


const = leaf
""",
    "Tensors": """\
import numpy as np
import opreg
from opreg import ops


def leaf(values):
    return opreg.Tensor(np.array(values, dtype=np.float64), requires_grad=True)


def const(values):
    return np.array(values, dtype=np.float64)
""",
}
BACKWARD = {"tape engine": "engine.backward(1.0)", "Tensors": "loss.backward()"}
SHOW_GRAD = {"tape engine": "engine.gradient_buffer.get_param({})", "Tensors": "{}.grad"}


# --- the program and how it is drawn ----------------------------------------------------------------------------------


@dataclass
class Node:
    """A value in the program: its variable, shape, an interval holding all its values, and whether it is made of
    constants only (such a node is never an op's first operand, so every op result depends on a parameter)."""

    name: str
    shape: tuple[int, ...]
    lo: float
    hi: float
    const: bool = False

    @property
    def bound(self) -> float:
        return max(abs(self.lo), abs(self.hi))


class Program:
    """The lines of a drawn program, its parameters, the nodes fed to relu, and every node's name, in order."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.params: list[str] = []
        self.relu_inputs: list[str] = []
        self.values: list[str] = []
        self.ops = 0

    def source(self, front_end: str) -> str:
        return "\n".join([HEADERS[front_end], *self.lines, BACKWARD[front_end], ""])

    def __repr__(self) -> str:  # what hypothesis prints as the falsifying example
        return f"<program of {self.ops} ops:\n" + "\n".join(self.lines) + "\n>"


def _interval(function, *corners: tuple[float, float]) -> tuple[float, float]:
    """The range of a function monotonic in each argument over a box: its values at the corners."""
    values = [function(*c) for c in _product(corners)]
    return min(values), max(values)


def _product(corners):
    result = [()]
    for lo, hi in corners:
        result = [(*r, v) for r in result for v in (lo, hi)]
    return result


def _sigmoid(x: float) -> float:
    return 0.5 * (1.0 + math.tanh(0.5 * x))


def broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    try:
        return np.broadcast_shapes(a, b)
    except ValueError:
        return None


def matmul_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[tuple[int, ...], int] | None:
    """The output shape of ``a @ b`` with NumPy's rules, and the length summed over; None if they do not fit."""
    if not a or not b:
        return None
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    batch = broadcast(a2[:-2], b2[:-2])
    if a2[-1] != b2[-2] or batch is None:
        return None
    return (*batch, *a2[-2:-1][: len(a) - 1], *b2[-1:][: len(b) - 1]), a2[-1]


class Builder:
    """Draws a program op by op, keeping every node's interval inside [-LIMIT, LIMIT]."""

    def __init__(self, draw) -> None:
        self.draw = draw
        self.program = Program()
        self.nodes: list[Node] = []  # every value, constants included
        self.consumed: set[str] = set()
        self.count = 0

    # -- values ----------------------------------------------------------------------------------------------------

    def _name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count - 1}"

    def leaf(self, shape: tuple[int, ...], const: bool) -> Node:
        values = self.draw(hnp.arrays(np.float64, shape, elements=st.floats(-2.0, 2.0)))
        node = Node(self._name("c" if const else "x"), shape, float(values.min()), float(values.max()), const)
        self.program.lines.append(f"{node.name} = {'const' if const else 'leaf'}({values.tolist()!r})")
        self.program.values.append(node.name)
        if not const:
            self.program.params.append(node.name)
        self.nodes.append(node)
        return node

    def one_hot(self, shape: tuple[int, ...]) -> Node:
        """A constant of labels for softmax_cross_entropy: one-hot rows over the last axis of ``shape``."""
        hot = self.draw(hnp.arrays(np.int64, shape[:-1], elements=st.integers(0, shape[-1] - 1)))
        labels = np.eye(shape[-1])[hot]
        node = Node(self._name("c"), shape, 0.0, 1.0, const=True)
        self.program.lines.append(f"{node.name} = const({labels.tolist()!r})")
        return node

    def emit(self, op: str, args: list[Node | float], shape, lo: float, hi: float, **attributes: Any) -> Node:
        const = all(a.const for a in args if isinstance(a, Node))  # made from constants only
        node = Node(self._name("n"), tuple(shape), lo, hi, const)
        rendered = [a.name if isinstance(a, Node) else repr(a) for a in args]
        rendered += [f"{k}={v!r}" for k, v in attributes.items()]
        self.program.lines.append(f"{node.name} = ops.{op}({', '.join(rendered)})")
        self.program.values.append(node.name)
        self.program.ops += 1
        self.consumed.update(a.name for a in args if isinstance(a, Node))
        if op == "relu":
            self.program.relu_inputs.append(args[0].name)
        self.nodes.append(node)
        return node

    # -- choosing operands -----------------------------------------------------------------------------------------

    def pick(self, fits=lambda node: True, constants: bool = False) -> Node | None:
        candidates = [n for n in self.nodes if fits(n) and (constants or not n.const)]
        return self.draw(st.sampled_from(candidates)) if candidates else None

    def operand(self, fits) -> Node | float:
        """A second operand: usually a node (a constant array sometimes), now and then a Python number."""
        if self.draw(st.integers(0, 4)) == 0:
            return self.draw(st.sampled_from([2.0, -0.5, 3.0]))
        return self.pick(fits, constants=True)

    # -- ops -------------------------------------------------------------------------------------------------------

    def unary(self, op: str, x: Node) -> Node:
        function = {
            "neg": lambda v: -v,
            "relu": lambda v: max(v, 0.0),
            "sigmoid": _sigmoid,
            "tanh": math.tanh,
            "exp": math.exp,
            "log": math.log,
        }[op]
        lo, hi = _interval(function, (x.lo, x.hi))
        return self.emit(op, [x], x.shape, lo, hi)

    def positive(self, x: Node, smallest: float) -> Node:
        """``x`` itself if all its values are at least ``smallest``; else a function of it that is at least 0.3."""
        if x.lo >= smallest:
            return x
        how = self.draw(st.sampled_from(["square", "sigmoid", "exp"]))
        if how == "square" and x.bound**2 + 1 <= LIMIT:
            square = self.emit("mul", [x, x], x.shape, 0.0, x.bound**2)
            return self.emit("add", [square, 1.0], x.shape, 1.0, x.bound**2 + 1)
        if how == "exp":
            return self.unary("exp", self.unary("tanh", x))
        return self.emit("add", [self.unary("sigmoid", x), 0.5], x.shape, 0.5, 1.5)

    def binary(self, op: str, x: Node) -> Node:
        y = self.operand(lambda n: broadcast(x.shape, n.shape) is not None)
        if op == "div":
            if isinstance(y, Node) and y.lo < 0.1 and y.hi > -0.1:
                y = self.positive(y, 0.1)
                if self.draw(st.booleans()):
                    y = self.unary("neg", y)
        elif op == "pow":
            x = self.positive(x, 0.3)
            if isinstance(y, Node) and y.bound > 3:
                y = self.unary("tanh", y)
        a, b = (y, x) if op in ("add", "sub", "mul") and self.draw(st.booleans()) else (x, y)
        box = [(v.lo, v.hi) if isinstance(v, Node) else (v, v) for v in (a, b)]
        lo, hi = _interval(ARITHMETIC[op], *box)
        shape = broadcast(*(v.shape if isinstance(v, Node) else () for v in (a, b)))
        return self.checked(op, [a, b], shape, lo, hi, x)

    def checked(self, op: str, args, shape, lo: float, hi: float, x: Node, **attributes: Any) -> Node:
        """The op, unless its values could exceed LIMIT: then tanh of ``x`` instead."""
        if max(abs(lo), abs(hi)) > LIMIT:
            return self.unary("tanh", x)
        return self.emit(op, args, shape, lo, hi, **attributes)

    def step(self) -> None:
        op = self.draw(st.sampled_from(FUZZ_OPS))
        x = self.pick()
        if op in ("neg", "relu", "sigmoid", "tanh"):
            self.unary(op, x)
        elif op == "exp":
            self.unary("exp", x if x.hi <= 8 else self.unary("tanh", x))
        elif op == "log":
            self.unary("log", self.positive(x, 1e-3))
        elif op in ("add", "sub", "mul", "div", "pow"):
            self.binary(op, x)
        elif op == "transpose":
            if len(x.shape) >= 2:
                self.emit("transpose", [x], (*x.shape[:-2], x.shape[-1], x.shape[-2]), x.lo, x.hi)
            else:
                self.unary("neg", x)
        elif op in ("sum", "mean"):
            axis, keepdims = self.draw(axes(len(x.shape))), self.draw(st.booleans())
            reduced = _normalize(axis, len(x.shape))
            n = math.prod(x.shape[a] for a in reduced)
            shape = tuple(1 if a in reduced else d for a, d in enumerate(x.shape) if keepdims or a not in reduced)
            lo, hi = (x.lo * n, x.hi * n) if op == "sum" else (x.lo, x.hi)
            attributes = {"axis": axis} if axis is not None else {}
            attributes |= {"keepdims": True} if keepdims else {}
            self.checked(op, [x], shape, lo, hi, x, **attributes)
        elif op == "matmul":
            y = self.pick(lambda n: matmul_shape(x.shape, n.shape) is not None, constants=True)
            if y is None and len(x.shape) >= 2:
                y = self.emit("transpose", [x], (*x.shape[:-2], x.shape[-1], x.shape[-2]), x.lo, x.hi)
            elif y is None and len(x.shape) == 1:
                y = x
            if y is None:
                self.unary("tanh", x)
                return
            a, b = (y, x) if matmul_shape(y.shape, x.shape) and self.draw(st.booleans()) else (x, y)
            shape, k = matmul_shape(a.shape, b.shape)
            lo, hi = _interval(operator.mul, (a.lo, a.hi), (b.lo, b.hi))
            self.checked("matmul", [a, b], shape, k * lo, k * hi, x)
        elif op == "linear":
            self.linear(x)
        elif op == "mse":
            y = self.pick(lambda n: n.shape == x.shape, constants=True)
            worst = max(x.hi - y.lo, y.hi - x.lo) ** 2
            self.checked("mse", [x, y], (), 0.0, worst, x)
        elif op == "softmax_cross_entropy":
            if not x.shape:
                self.unary("sigmoid", x)
                return
            labels = self.one_hot(x.shape)
            self.checked("softmax_cross_entropy", [x, labels], (), 0.0, x.hi - x.lo + math.log(x.shape[-1]), x)
        else:  # pragma: no cover - FUZZ_OPS and this dispatch are kept in step by test_fuzzer_draws_every_builtin_op
            raise AssertionError(f"the fuzzer cannot draw op {op!r}")

    def linear(self, x: Node) -> None:
        """``x @ weight.T + bias`` with a 2-D weight node whose rows fit ``x``, and a bias that broadcasts to the
        product's shape (linear refuses one that would widen it)."""
        weight = self.pick(lambda n: len(n.shape) == 2 and x.shape[-1:] == n.shape[1:], constants=True)
        if weight is None:
            self.unary("tanh", x)
            return
        product = (*x.shape[:-1], weight.shape[0])
        bias = self.operand(lambda n: broadcast(product, n.shape) == product)
        bias = 1.0 if bias is None else bias  # no node fits: a number does
        b_lo, b_hi = (bias.lo, bias.hi) if isinstance(bias, Node) else (bias, bias)
        lo, hi = _interval(operator.mul, (x.lo, x.hi), (weight.lo, weight.hi))
        k = x.shape[-1]
        self.checked("linear", [x, weight, bias], product, k * lo + b_lo, k * hi + b_hi, x)

    def loss(self) -> None:
        """A scalar ``loss`` from the last node; maybe every dangling op result folded in with sum and add."""
        last = self.nodes[-1] if not self.nodes[-1].const else self.pick()
        kind = self.draw(st.sampled_from(["sum", "mean", "mse", "softmax_cross_entropy"]))
        if kind == "mse":
            target = self.pick(lambda n: n.shape == last.shape, constants=True)
            total = self.emit("mse", [last, target], (), 0.0, 0.0)
        elif kind == "softmax_cross_entropy" and last.shape:
            total = self.emit("softmax_cross_entropy", [last, self.one_hot(last.shape)], (), 0.0, 0.0)
        else:
            total = self.emit("mean" if kind == "mean" else "sum", [last], (), 0.0, 0.0)
        if self.draw(st.booleans()):
            dangling = [n for n in self.nodes if n.name.startswith("n") and n.name not in self.consumed]
            for node in dangling[:-1]:  # the last one is total itself
                total = self.emit("add", [total, self.emit("sum", [node], (), 0.0, 0.0)], (), 0.0, 0.0)
        self.program.lines[-1] = "loss" + self.program.lines[-1][len(total.name) :]
        self.program.values[-1] = "loss"


ARITHMETIC = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "div": operator.truediv,
    "pow": operator.pow,
}


def _normalize(axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    return tuple(sorted(a % ndim for a in ((axis,) if isinstance(axis, int) else axis)))


@st.composite
def programs(draw) -> Program:
    builder = Builder(draw)
    m, n, b = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(2, 3))
    family = [(m, n), (n, m), (n,), (m,), (m, 1), (1, n), (), (b, m, n)]
    for _ in range(draw(st.integers(1, 3))):
        builder.leaf(draw(st.sampled_from(family)), const=False)
    for _ in range(draw(st.integers(0, 2))):
        builder.leaf(draw(st.sampled_from(family)), const=True)
    target = draw(st.sampled_from(range(5, 51)))  # uniform: st.integers would favour small programs
    while builder.program.ops < target - 1:
        builder.step()
    builder.loss()
    return builder.program


# --- running a program ------------------------------------------------------------------------------------------------


def run_torch(program: Program) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray | None]]:
    """Every node's value and every parameter's gradient (None where torch gives none), by torch autograd."""
    namespace: dict[str, Any] = {
        "ops": TORCH_LIB,
        "leaf": lambda v: torch.tensor(v, dtype=torch.float64, requires_grad=True),
        "const": lambda v: torch.tensor(v, dtype=torch.float64),
    }
    try:
        exec("\n".join(program.lines), namespace)
        namespace["loss"].backward()
    except Exception as exc:
        raise AssertionError(f"torch: the program raised {exc!r}\n\n" + "\n".join(program.lines)) from exc
    values = {name: namespace[name].detach().numpy() for name in program.values}
    grads = {x: None if namespace[x].grad is None else namespace[x].grad.numpy() for x in program.params}
    return values, grads


def run_opreg(program: Program, front_end: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray | None]]:
    """The program's source, exactly as a failure prints it, executed; its nodes' values and leaves' gradients."""
    namespace: dict[str, Any] = {}
    try:
        exec(compile(program.source(front_end), "<fuzzed program>", "exec"), namespace)
    except Exception as exc:
        raise AssertionError(f"{front_end}: the program raised {exc!r}\n\n{report(program, front_end)}") from exc

    def array(value: Any) -> np.ndarray:
        return value.numpy() if isinstance(value, opreg.Tensor) else value

    values = {name: array(namespace[name]) for name in program.values}
    if front_end == "tape engine":
        buffer = namespace["engine"].gradient_buffer
        grads = {
            x: buffer.get_param(namespace[x]) if buffer.is_in_memory(namespace[x]) else None for x in program.params
        }
    else:
        grads = {x: namespace[x].grad for x in program.params}
    return values, grads


def report(program: Program, front_end: str, leaf: str | None = None, expected: Any = None) -> str:
    tail = ""
    if leaf is not None:
        tail = f"print({SHOW_GRAD[front_end].format(leaf)})  # torch: {np.asarray(expected).tolist()!r}\n"
    return f"The failing program ({front_end}, {program.ops} ops):\n\n{program.source(front_end)}{tail}"


def check(program: Program, front_end: str, expected_values, expected_grads) -> None:
    values, grads = run_opreg(program, front_end)
    for name in program.values:  # forward: the first node that differs is where to look
        actual, expected = values[name], expected_values[name]
        scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
        if actual.shape != expected.shape or not np.allclose(actual, expected, rtol=1e-9, atol=1e-11 * scale):
            raise AssertionError(
                f"{front_end}: {name} = {np.asarray(actual).tolist()!r}, torch: {expected.tolist()!r}\n\n"
                + report(program, front_end)
            )
    reference = [g for g in expected_grads.values() if g is not None]
    scale = max(1.0, *(float(np.abs(g).max(initial=0.0)) for g in reference))
    for x in program.params:
        actual, expected = grads[x], expected_grads[x]
        if front_end == "Tensors":  # .grad is None exactly where torch's is: the leaves that do not reach loss
            assert (actual is None) == (expected is None), f"{front_end}: {x}.grad is {actual!r}, torch: {expected!r}"
        if expected is None:  # the tape engine gives zeros to a leaf on the tape that does not reach the loss
            expected = np.zeros(np.shape(values[x]))
            if actual is None:
                continue
        ok = actual.shape == expected.shape and actual.dtype == np.float64
        if not ok or not np.allclose(actual, expected, rtol=1e-7, atol=1e-9 * scale):
            raise AssertionError(
                f"{front_end}: the gradient of {x} is {np.asarray(actual).tolist()!r}, torch's is "
                f"{expected.tolist()!r}\n\n" + report(program, front_end, x, expected)
            )


# --- the tests --------------------------------------------------------------------------------------------------------


def test_fuzzer_draws_every_builtin_op():
    """A new built-in op fails here until the fuzzer can draw it (and no entry names a missing op)."""
    assert FUZZ_OPS == BUILTIN_OPS


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(program=programs())
def test_random_graph_gradients_match_torch(program):
    """Each random program, run by the tape engine and by Tensors, gives every node torch's value and every leaf
    torch's gradient."""
    expected_values, expected_grads = run_torch(program)
    tensor_values, _ = run_opreg(program, "Tensors")
    # relu's branch must not hang on a last-bit difference from torch
    kinks = [n for n in program.relu_inputs if not np.array_equal(tensor_values[n] > 0, expected_values[n] > 0)]
    if kinks:
        event("rejected: a relu input's sign differs from torch's in the last bit")
    assume(not kinks)
    event(f"ops: {min(program.ops // 10 * 10, 50)}-{min(program.ops // 10 * 10, 50) + 9}")
    for front_end in ("tape engine", "Tensors"):
        check(program, front_end, expected_values, expected_grads)
