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

Each op is drawn from its declaration when it is elementwise (``torch_reference.ELEMENTWISE``): an operand that
broadcasts for each input besides the node it is applied to, each first brought into the op's declared ``domain``
(``low + (high - low) * (0.05 + 0.9 * sigmoid(x))``), so a new elementwise op is fuzzed with no code here. The
others, and exp, log, div and pow, whose operands are kept closer to the edges than their domains, have a rule in
``RULES``: matmul's and linear's fitting shapes, reductions' axes, ``where(s > 0.0, x, y)`` on a node ``s`` that
broadcasts, ``expand_dims``/``squeeze``/``broadcast_to`` and every other shape op (``Builder.shape_op``: reshape,
flip, pad, sort, diff, gradient, ...) with attributes drawn for the node's shape, ``linspace`` between two nodes.

Values stay in safe domains by construction: each node carries an interval that bounds its values (an elementwise
op's, from its forward on a grid through its operands' intervals); ``log``, a divisor and ``pow``'s base are first
made positive (``x * x + 1``, ``sigmoid(x) + 0.5``, ``exp(tanh(x))``) unless their interval already is, and an op
whose result could exceed 1e4 in magnitude is replaced by ``tanh``. relu's kink, angle's sign bit and where's
condition are the places where torch's and NumPy's last-bit rounding could take different branches: a case where
the two disagree on the sign (or sign bit) of a relu or angle input or of a condition's node is rejected (exact
zeros, on which both agree, are kept).
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
from opreg.testing import axes, examples

from shape_attributes import SHAPE_OPS, broadcast_target, expand_dims_axis, index_for, shape_op_attributes, squeeze_axis
from torch_reference import BUILTIN_OPS, ELEMENTWISE, REGISTRY, TORCH_OPS, declared_domain, needs_torch, torch

#: No node's values may exceed this in magnitude.
LIMIT = 1e4


# --- torch counterparts of the ops, for running the program's lines on torch tensors ---------------------------------


def _tensor(x: Any) -> Any:
    if isinstance(x, tuple | list):  # select's conditions: torch stacks them as opreg does
        return torch.stack([_tensor(c) for c in x])
    return x if isinstance(x, torch.Tensor) else torch.tensor(x, dtype=torch.float64)


def _operands(function):
    """A program passes numbers and constant arrays as operands, which torch's functions want as tensors (the
    attributes, setitem's index say, go as they are)."""
    return lambda *operands, **attributes: function(*map(_tensor, operands), **attributes)


#: The shared table (tests/torch_reference.py), each op of several inputs taking numbers and arrays as well.
TORCH_LIB = SimpleNamespace(
    **{
        name: _operands(f) if len(REGISTRY[name].inputs) > 1 else f
        for name, f in TORCH_OPS.items()
        if name in BUILTIN_OPS  # one output each: the ops with several are tests/test_multi_output.py's
    }
)

#: The ops the fuzzer draws: every built-in one (test_fuzzer_draws_every_builtin_op keeps it so).
FUZZ_OPS = sorted(vars(TORCH_LIB))

#: How each front end's program starts and ends; ``leaf`` makes a parameter, ``const`` a constant array.
HEADERS = {
    "tape engine": """\
import functools
import types
from math import inf

import numpy as np
import opreg

engine = opreg.Autograd()
ops = types.SimpleNamespace(**{name: functools.partial(engine.apply, name) for name in opreg.get_registry()})


def leaf(values):
    return np.array(values, dtype=np.float64)


const = leaf
""",
    "Tensors": """\
from math import inf

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
    """The lines of a drawn program, its parameters, the nodes whose sign picks a branch (relu's input, where's
    condition), and every node's name, in order."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.params: list[str] = []
        self.kinks: list[str] = []
        #: (node, op, operands, attributes) of each elementwise node, for :func:`branch_flips`.
        self.branches: list[tuple[str, str, list[Any], dict[str, Any]]] = []
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


#: Points per axis of the grid on which an elementwise op's range is taken, by its number of inputs.
GRID = {1: 65, 2: 17, 3: 9}


def op_interval(op: str, *boxes: tuple[float, float], **attributes: Any) -> tuple[float, float]:
    """The range of elementwise op ``op`` over a box of its inputs' intervals, from its own forward: its values on
    a grid through the box, corners (and 0) included. Exact for a function monotonic in each argument (mul is
    bilinear: its extremes are corners too), and for one whose extremes lie at 0 (abs, square, cosh, hypot); for
    another (sin, sinc, mod), close to the range, since the grid is fine and the inputs' values are few: an
    underestimate can at worst let a later op produce NaN or an infinity, in torch alike, which the comparison
    accepts. Unbounded when forward overflows anywhere on the box."""
    n = GRID.get(len(boxes), 5)
    axes_ = [np.unique(np.r_[np.linspace(lo, hi, n), [0.0] if lo < 0 < hi else []]) for lo, hi in boxes]
    with np.errstate(all="ignore"):
        values = np.asarray(REGISTRY[op].output_of(*np.meshgrid(*axes_, indexing="ij"), **attributes), np.float64)
    if not np.isfinite(values).all():
        return -math.inf, math.inf
    return float(values.min()), float(values.max())


@dataclass
class Raw:
    """An operand written out as an expression, not a node: where's condition ``n3 > 0.0``."""

    text: str


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

    def __init__(self, draw, generic: bool = False) -> None:
        self.draw = draw
        self.generic = generic  # every elementwise op by the generic rule, even those RULES has
        self.program = Program()
        self.nodes: list[Node] = []  # every value, constants included
        self.consumed: set[str] = set()
        self.count = 0

    # -- values ----------------------------------------------------------------------------------------------------

    def _name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count - 1}"

    def leaf(self, shape: tuple[int, ...], const: bool) -> Node:
        # 0, or magnitudes from 1e-3: near 0 torch and opreg differ by rounding alone. At 5e-324 torch's cumprod
        # backward, which divides by the input, gives 1.0 where the derivative (opreg's) is 0.734; at 5e-77,
        # arctan2(x, x)'s gradient terms of 1e76 cancel, and the sum depends on the order they are added in.
        elements = st.floats(-2.0, 2.0).filter(lambda v: v == 0.0 or abs(v) >= 1e-3)
        values = self.draw(hnp.arrays(np.float64, shape, elements=elements))
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

    def emit(self, op: str, args: list, shape, lo: float, hi: float, /, **attributes: Any) -> Node:
        const = all(a.const for a in args if isinstance(a, Node))  # made from constants only
        node = Node(self._name("n"), tuple(shape), lo, hi, const)
        rendered = [a.name if isinstance(a, Node) else a.text if isinstance(a, Raw) else repr(a) for a in args]
        rendered += [f"{k}={v!r}" for k, v in attributes.items()]
        self.program.lines.append(f"{node.name} = ops.{op}({', '.join(rendered)})")
        self.program.values.append(node.name)
        self.program.ops += 1
        self.consumed.update(a.name for a in args if isinstance(a, Node))
        if op in ("relu", "angle"):  # angle: 0 or pi by the sign bit
            self.program.kinks.append(args[0].name)
        if op in ELEMENTWISE and not any(isinstance(a, Raw) for a in args):  # where's condition: a kink, above
            operands = [a.name if isinstance(a, Node) else a for a in args]
            self.program.branches.append((node.name, op, operands, dict(attributes)))
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
        return self.emit(op, [x], x.shape, *op_interval(op, (x.lo, x.hi)))

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
        """div by a divisor kept away from 0 (either sign), pow of a base at least 0.3 to a bounded exponent."""
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
        lo, hi = op_interval(op, _box(x), _box(y))
        shape = broadcast(x.shape, y.shape if isinstance(y, Node) else ())
        return self.checked(op, [x, y], shape, lo, hi, x)

    def checked(self, op: str, args, shape, lo: float, hi: float, x: Node, /, **attributes: Any) -> Node:
        """The op, unless its values could exceed LIMIT: then tanh of ``x`` instead."""
        if max(abs(lo), abs(hi)) > LIMIT:
            return self.unary("tanh", x)
        return self.emit(op, args, shape, lo, hi, **attributes)

    def step(self) -> None:
        op = self.draw(st.sampled_from(FUZZ_OPS))
        x = self.pick()
        rule = None if self.generic and op in ELEMENTWISE else RULES.get(op)
        if rule is not None:
            rule(self, op, x)
        elif op in ELEMENTWISE:
            self.elementwise(op, x)
        else:  # pragma: no cover - test_fuzzer_draws_every_builtin_op keeps every op drawable
            raise AssertionError(f"the fuzzer cannot draw op {op!r}")

    # -- elementwise ops, from their declaration ---------------------------------------------------------------------

    def elementwise(self, op: str, x: Node) -> Node:
        """Any elementwise op, knowing only its declaration: ``x`` as one of its differentiable inputs, an operand
        that broadcasts for each other one, every input first brought into the op's declared ``domain``, and the
        result's interval from the op's forward (:func:`op_interval`)."""
        spec = REGISTRY[op]
        position = self.draw(st.sampled_from([i for i, d in enumerate(spec.differentiable) if d]))
        shape = x.shape
        args: list[Node | float] = []
        for i, input_name in enumerate(spec.inputs):
            arg = x if i == position else self.operand(lambda n, shape=shape: broadcast(shape, n.shape) is not None)
            arg = self.into_domain(arg, declared_domain(op, input_name))
            if isinstance(arg, Node):
                shape = broadcast(shape, arg.shape)
            args.append(arg)
        lo, hi = op_interval(op, *map(_box, args))
        return self.checked(op, args, shape, lo, hi, x)

    def into_domain(self, value: Node | float, domain: tuple[float, float] | None) -> Node | float:
        """``value`` itself if its interval lies inside ``domain`` (or there is none); else a number at the domain's
        middle, or ``low + (high - low) * (0.05 + 0.9 * sigmoid(value))`` for a node. Strictly inside: at the ends
        of a closed domain a derivative may be infinite (sqrt at 0, arccos at +-1), and the gradients flowing
        through it NaN (``inf * 0``) in both libraries, which is not what the fuzzer compares."""
        if domain is None:
            return value
        low, high = domain
        if not isinstance(value, Node):
            return value if low < value < high else (low + high) / 2
        if low < value.lo and value.hi < high:
            return value
        squashed = self.unary("sigmoid", value)
        width = high - low
        scaled = self.emit(
            "mul", [squashed, 0.9 * width], value.shape, squashed.lo * 0.9 * width, squashed.hi * 0.9 * width
        )
        start = low + 0.05 * width
        return self.emit("add", [scaled, start], value.shape, scaled.lo + start, scaled.hi + start)

    # -- the ops whose operands are constrained by more than their values ----------------------------------------

    def exp(self, op: str, x: Node) -> None:
        self.unary("exp", x if x.hi <= 8 else self.unary("tanh", x))

    def log(self, op: str, x: Node) -> None:
        self.unary("log", self.positive(x, 1e-3))

    def transpose(self, op: str, x: Node) -> None:
        if len(x.shape) >= 2:
            self.emit("transpose", [x], (*x.shape[:-2], x.shape[-1], x.shape[-2]), x.lo, x.hi)
        else:
            self.unary("neg", x)

    def reduction(self, op: str, x: Node) -> None:
        axis, keepdims = self.draw(axes(len(x.shape))), self.draw(st.booleans())
        reduced = _normalize(axis, len(x.shape))
        n = math.prod(x.shape[a] for a in reduced)
        shape = tuple(1 if a in reduced else d for a, d in enumerate(x.shape) if keepdims or a not in reduced)
        lo, hi = (x.lo * n, x.hi * n) if op == "sum" else (x.lo, x.hi)
        attributes = {"axis": axis} if axis is not None else {}
        attributes |= {"keepdims": True} if keepdims else {}
        self.checked(op, [x], shape, lo, hi, x, **attributes)

    def matmul(self, op: str, x: Node) -> None:
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

    def mse(self, op: str, x: Node) -> None:
        y = self.pick(lambda n: n.shape == x.shape, constants=True)
        worst = max(x.hi - y.lo, y.hi - x.lo) ** 2
        self.checked("mse", [x, y], (), 0.0, worst, x)

    def softmax_cross_entropy(self, op: str, x: Node) -> None:
        if not x.shape:
            self.unary("sigmoid", x)
            return
        labels = self.one_hot(x.shape)
        self.checked("softmax_cross_entropy", [x, labels], (), 0.0, x.hi - x.lo + math.log(x.shape[-1]), x)

    def where(self, op: str, x: Node) -> None:
        """``where(s > 0.0, x, y)`` (or ``y, x``) for a node ``s`` that broadcasts, whose sign picks the branch
        (a kink, as relu's input); for a constant ``s``, sometimes ``s`` itself: nonzero numbers are true."""
        source = self.pick(lambda n: broadcast(x.shape, n.shape) is not None, constants=True)
        if source.const and self.draw(st.booleans()):
            condition = Raw(source.name)
        else:
            condition = Raw(f"{source.name} > 0.0")
            self.program.kinks.append(source.name)
        shape = broadcast(x.shape, source.shape)
        y = self.operand(lambda n: broadcast(shape, n.shape) is not None)
        shape = broadcast(shape, y.shape) if isinstance(y, Node) else shape
        branches = [x, y] if self.draw(st.booleans()) else [y, x]
        lo, hi = min(_box(x)[0], _box(y)[0]), max(_box(x)[1], _box(y)[1])
        self.emit("where", [condition, *branches], shape, lo, hi)

    def expand_dims(self, op: str, x: Node) -> None:
        axis = self.draw(expand_dims_axis(len(x.shape)))
        self.emit("expand_dims", [x], np.expand_dims(np.empty(x.shape), axis).shape, x.lo, x.hi, axis=axis)

    def squeeze(self, op: str, x: Node) -> None:
        axis = self.draw(squeeze_axis(x.shape))
        attributes = {} if axis is None else {"axis": axis}  # the default, None, as often as the rest
        self.emit("squeeze", [x], np.squeeze(np.empty(x.shape), axis).shape, x.lo, x.hi, **attributes)

    def broadcast_to(self, op: str, x: Node) -> None:
        shape = self.draw(broadcast_target(x.shape, allow_empty=False))
        self.emit("broadcast_to", [x], shape, x.lo, x.hi, shape=shape)

    def getitem(self, op: str, x: Node) -> None:
        """``x[index]`` for any index of ``x``'s shape (repeated positions accumulate their gradients)."""
        index = self.draw(index_for(x.shape))
        shape = np.empty(x.shape)[index].shape
        if 0 in shape:  # the fuzzer's losses need elements (the property tests take empty selections)
            self.unary("neg", x)
            return
        self.emit("getitem", [x], shape, x.lo, x.hi, index=index)

    def scatter_add(self, op: str, x: Node) -> None:
        """``x`` added into zeros of shape ``(k, *x.shape[1:])`` at rows drawn with repeats (which sum); a 0-d
        ``x`` at one position of a vector."""
        k = self.draw(st.integers(1, 3))
        shape = (k, *x.shape[1:])
        if x.shape:
            index: Any = self.draw(st.lists(st.integers(-k, k - 1), min_size=x.shape[0], max_size=x.shape[0]))
        else:
            index = self.draw(st.integers(-k, k - 1))
        count = max(1, x.shape[0] if x.shape else 1)
        lo, hi = min(0.0, x.lo * count), max(0.0, x.hi * count)
        self.checked("scatter_add", [x], shape, lo, hi, x, index=index, shape=shape)

    def take(self, op: str, x: Node) -> None:
        """``np.take`` of ``x`` at a few positions (repeats, negative ones) along an axis or of the flattened x."""
        axis = self.draw(st.none() | st.integers(-len(x.shape), len(x.shape) - 1)) if x.shape else None
        n = math.prod(x.shape) if axis is None else x.shape[axis]
        if n == 0:
            self.unary("neg", x)
            return
        indices = self.draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=3))
        shape = np.take(np.empty(x.shape), indices, axis=axis).shape
        self.emit("take", [x], shape, x.lo, x.hi, indices=indices, axis=axis)

    def take_along_axis(self, op: str, x: Node) -> None:
        """``np.take_along_axis`` of ``x`` (1-D or more) along its last axis, indices of its rank."""
        if not x.shape or x.shape[-1] == 0:
            self.unary("neg", x)
            return
        n, k = x.shape[-1], self.draw(st.integers(1, 3))
        count = math.prod(x.shape[:-1]) * k
        flat = self.draw(st.lists(st.integers(-n, n - 1), min_size=count, max_size=count))
        indices = np.array(flat).reshape((*x.shape[:-1], k)).tolist()
        self.emit("take_along_axis", [x], (*x.shape[:-1], k), x.lo, x.hi, indices=indices, axis=-1)

    def setitem(self, op: str, x: Node) -> None:
        """``x`` with ``x[index] = v`` for a node or number ``v`` that broadcasts to the selected shape."""
        index = self.draw(index_for(x.shape))
        positions = np.arange(math.prod(x.shape)).reshape(x.shape)[index]
        assume(np.unique(positions).size == positions.size)  # torch's choice among repeated writes is its own
        target = positions.shape
        v = self.operand(lambda n: broadcast(target, n.shape) == target)
        v = 0.5 if v is None else v
        lo, hi = min(x.lo, _box(v)[0]), max(x.hi, _box(v)[1])
        self.emit("setitem", [x, v], x.shape, lo, hi, index=index)

    def join(self, op: str, x: Node) -> None:
        """concatenate, stack, hstack, ...: ``x`` joined with itself or another node of its shape (so that every
        kind fits), along an axis drawn for those that take one."""
        other = self.pick(lambda n: n.shape == x.shape, constants=True)
        args = [x, other] if self.draw(st.booleans()) else [other, x]
        if self.draw(st.booleans()):
            args.append(x)
        attributes: dict[str, Any] = {}
        if op in ("concatenate", "stack") and (x.shape or op == "stack"):
            span = len(x.shape) + (op == "stack")
            attributes["axis"] = self.draw(st.integers(-span, span - 1))
        elif op == "concatenate":
            attributes["axis"] = None
        if op == "append":
            args = args[:2]
        shape = getattr(np, op)(
            *([np.empty(a.shape) for a in args],) if op != "append" else [np.empty(a.shape) for a in args], **attributes
        ).shape
        lo, hi = min(a.lo for a in args), max(a.hi for a in args)
        self.emit(op, args, shape, lo, hi, **attributes)

    def slice_along(self, op: str, x: Node) -> None:
        axis = self.draw(st.one_of(st.none(), st.integers(-len(x.shape), len(x.shape) - 1))) if x.shape else None
        length = math.prod(x.shape) if axis is None else x.shape[axis]
        start = self.draw(st.integers(0, length - 1))  # never empty: an empty node would make the loss NaN
        stop = self.draw(st.integers(start + 1, length))
        shape = list(x.shape) if axis is not None else [stop - start]
        if axis is not None:
            shape[axis] = stop - start
        self.emit(op, [x], tuple(shape), min(x.lo, 0.0), max(x.hi, 0.0), axis=axis, start=start, stop=stop)

    def pad_along(self, op: str, x: Node) -> None:
        axis = self.draw(st.integers(-len(x.shape), len(x.shape) - 1)) if x.shape else None
        start, extra = self.draw(st.integers(0, 2)), self.draw(st.integers(0, 2))
        if axis is None:
            shape: tuple[int, ...] = (math.prod(x.shape) + start + extra,)
        else:
            shape = tuple(n + start + extra if i == axis % len(x.shape) else n for i, n in enumerate(x.shape))
        self.emit(op, [x], shape, min(x.lo, 0.0), max(x.hi, 0.0), axis=axis, start=start, shape=shape)

    def einsum(self, op: str, x: Node) -> None:
        """``x``'s axes reversed, or its product with a node of its shape summed over its last axis."""
        if not x.shape or len(x.shape) > 3:
            self.unary("tanh", x)
            return
        letters = "ijk"[: len(x.shape)]
        other = self.pick(lambda n: n.shape == x.shape, constants=True)
        if self.draw(st.booleans()):
            self.emit(op, [x], x.shape[::-1], x.lo, x.hi, subscripts=f"{letters}->{letters[::-1]}")
            return
        lo, hi = _interval(operator.mul, (x.lo, x.hi), (other.lo, other.hi))
        n = x.shape[-1]
        self.checked(op, [x, other], x.shape[:-1], n * lo, n * hi, x, subscripts=f"{letters},{letters}->{letters[:-1]}")

    def select(self, op: str, x: Node) -> None:
        """``select([s > 0.0], [x], y)`` for nodes ``s`` and ``y`` of ``x``'s shape (a kink, as where's)."""
        source = self.pick(lambda n: n.shape == x.shape, constants=True)
        self.program.kinks.append(source.name)
        y = self.pick(lambda n: n.shape == x.shape, constants=True)
        lo, hi = min(x.lo, y.lo), max(x.hi, y.hi)
        self.emit(op, [Raw(f"(({source.name} > 0.0),)"), y, x], x.shape, lo, hi)

    def shape_op(self, op: str, x: Node) -> None:
        """An op of plugins/shapes.py, rearrange.py, selection.py or differences.py with attributes drawn for x's
        shape (arrays written as lists, which the program's text can hold); the interval from :func:`shape_bound`.
        Where the op takes no input of x's shape, or would make an empty node from a non-empty one (a mean of it
        would be NaN) or one of more than 100 elements, tanh instead."""
        attributes = self.draw(shape_op_attributes(op, x.shape))
        if attributes is None:
            self.unary("tanh", x)
            return
        shape = REGISTRY[op].output_of(np.zeros(x.shape), **attributes).shape
        if (0 in shape and 0 not in x.shape) or math.prod(shape) > 100:  # empty indices (a list would lose their
            self.unary("tanh", x)  # shape), or tiles of tiles growing a program's arrays, and its run time
            return
        attributes = {key: _plain(value) for key, value in attributes.items()}
        self.checked(op, [x], shape, *shape_bound(op, x, attributes), x, **attributes)

    def linspace(self, op: str, x: Node) -> None:
        """linspace from x to a node (or number) that broadcasts, 1 to 4 points, the new axis anywhere."""
        stop = self.operand(lambda n: broadcast(x.shape, n.shape) is not None)
        shape = broadcast(x.shape, stop.shape) if isinstance(stop, Node) else x.shape
        axis = self.draw(st.integers(-len(shape) - 1, len(shape)))
        num, endpoint = self.draw(st.integers(1, 4)), self.draw(st.booleans())
        out = np.linspace(np.zeros(x.shape), np.zeros(np.shape(stop) if isinstance(stop, Node) else ()), num, axis=axis)
        lo, hi = min(x.lo, _box(stop)[0]), max(x.hi, _box(stop)[1])
        self.emit("linspace", [x, stop], out.shape, lo, hi, num=num, endpoint=endpoint, axis=axis)

    def linear(self, op: str, x: Node) -> None:
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

    # -- reductions, statistics, running sums and products, products, numpy.linalg --------------------------------

    def shrunk(self, x: Node, limit: float = 1.0) -> Node:
        """``x`` if its values are within ``limit`` in magnitude, else tanh of it (then within 1)."""
        return x if x.bound <= limit else self.unary("tanh", x)

    def other_reduction(self, op: str, x: Node) -> None:
        """prod, max, min, ptp, logsumexp, var, std, norm over drawn axes, with keepdims; each value's interval from
        the slab's size n (prod first squashes its input into [-1, 1], so that it cannot grow)."""
        if op == "prod":
            x = self.shrunk(x)
        if op in ("std", "norm"):  # x + 1, 1.5, 2, ...: std's gradient (x - mean) / std is ill-conditioned where a
            # slab is nearly constant, and a norm's (x / |x|, sign(x)) where x is nearly 0 (a cross product of two
            # nearly parallel vectors); the two libraries' last bits would decide it
            offsets = 1 + np.arange(math.prod(x.shape), dtype=np.float64).reshape(x.shape) * 0.5
            spread = self.constant_node(offsets)
            x = self.checked("add", [x, spread], x.shape, x.lo + 1, x.hi + spread.hi, x)
        ndim = len(x.shape)
        attributes: dict[str, Any] = {}
        if op == "norm":
            axis = self.draw(st.sampled_from([None, *range(-ndim, ndim)]))
            if axis is not None:
                attributes["ord"] = self.draw(st.sampled_from([None, 2, 1, math.inf, -math.inf]))
        else:
            axis = self.draw(axes(ndim))
        reduced = _normalize(axis, ndim)
        n = math.prod(x.shape[a] for a in reduced)
        if n == 0 and op in ("max", "min", "ptp"):  # no value over an empty slab
            self.unary("tanh", x)
            return
        if op in ("var", "std") and n >= 2 and self.draw(st.booleans()):
            attributes["ddof"] = 1
        spread = (x.hi - x.lo) ** 2 * max(n, 1) / max(n - attributes.get("ddof", 0), 1)
        # prod's only where it is drawn: its input is shrunk to [-1, 1] then, another's bound to a power may overflow
        power = x.bound ** max(n, 1) if op == "prod" else 0.0
        lo, hi = {
            "prod": (-power, power),
            "max": (x.lo, x.hi),
            "min": (x.lo, x.hi),
            "ptp": (0.0, x.hi - x.lo),
            "logsumexp": (x.lo, x.hi + math.log(max(n, 1))),
            "var": (0.0, spread),
            "std": (0.0, math.sqrt(spread)),
            "norm": (0.0, x.bound * max(n, 1)),
        }[op]
        keepdims = self.draw(st.booleans())
        shape = tuple(1 if a in reduced else d for a, d in enumerate(x.shape) if keepdims or a not in reduced)
        attributes |= ({"axis": axis} if axis is not None else {}) | ({"keepdims": True} if keepdims else {})
        self.checked(op, [x], shape, lo, hi, x, **attributes)

    def weighted_logsumexp(self, op: str, x: Node) -> None:
        """logsumexp of ``x`` with weights: a node broadcasting with x (x itself, if none does), made positive
        (at least 0.3), over drawn axes of the broadcast shape, with keepdims."""
        w = self.pick(lambda n: broadcast(x.shape, n.shape) is not None, constants=True) or x
        w = self.positive(w, 0.25)
        shape = broadcast(x.shape, w.shape)
        ndim = len(shape)
        axis = self.draw(axes(ndim))
        reduced = _normalize(axis, ndim)
        n = math.prod(shape[a] for a in reduced)
        lo, hi = x.lo + math.log(w.lo), x.hi + math.log(max(n, 1) * w.hi)
        keepdims = self.draw(st.booleans())
        out = tuple(1 if a in reduced else d for a, d in enumerate(shape) if keepdims or a not in reduced)
        attributes = ({"axis": axis} if axis is not None else {}) | ({"keepdims": True} if keepdims else {})
        self.checked(op, [x, w], out, lo, hi, x, **attributes)

    def running(self, op: str, x: Node) -> None:
        """cumsum (maybe reversed) or cumprod (of values squashed into [-1, 1]) along an int axis."""
        if not x.shape:
            self.unary("tanh", x)
            return
        if op == "cumprod":
            x = self.shrunk(x)
        axis = self.draw(st.integers(-len(x.shape), len(x.shape) - 1))
        n = x.shape[axis]
        lo, hi = (min(x.lo, x.lo * n), max(x.hi, x.hi * n)) if op == "cumsum" else (-x.bound, x.bound)
        attributes: dict[str, Any] = {"axis": axis}
        if op == "cumsum" and self.draw(st.booleans()):
            attributes["reverse"] = True
        self.checked(op, [x], x.shape, lo, hi, x, **attributes)

    def dropout_mask(self, op: str, x: Node) -> None:
        """x times its dropout mask, as ``nn.Dropout``: the mask drawn from a seed (the torch reference draws the
        same one from it), 0 or 1 / (1 - p), a constant (no gradient flows into it)."""
        p = self.draw(st.sampled_from([0.0, 0.25, 0.5, 1.0]))
        scale = 0.0 if p == 1 else 1 / (1 - p)
        if max(abs(x.lo), abs(x.hi)) * scale > LIMIT:
            self.unary("tanh", x)
            return
        seed = self.draw(st.integers(0, 2**32 - 1))
        mask = self.emit(op, [x], x.shape, 0.0, scale, p=p, rng=seed)
        mask.const = True  # no gradient flows through it: never an op's first operand, as a constant array
        self.emit("mul", [x, mask], x.shape, min(0.0, x.lo * scale), max(0.0, x.hi * scale))

    def product(self, op: str, x: Node) -> None:
        """tensordot, dot, inner, vdot, outer, cross with a node whose shape fits ``x`` (x itself, if none does)."""
        fits, result = PRODUCT_SHAPES[op]
        y = self.pick(lambda n: fits(x.shape, n.shape), constants=True)
        if y is None or not self.nodes:
            self.unary("tanh", x)
            return
        shape, k, attributes = result(x.shape, y.shape, self.draw)
        lo, hi = _interval(operator.mul, (x.lo, x.hi), (y.lo, y.hi))
        factor = 2 if op == "cross" else max(k, 1)
        self.checked(op, [x, y], shape, factor * min(lo, -hi), factor * max(hi, -lo), x, **attributes)

    def constant_node(self, values: np.ndarray) -> Node:
        node = Node(self._name("c"), values.shape, float(values.min()), float(values.max()), const=True)
        self.program.lines.append(f"{node.name} = const({values.tolist()!r})")
        self.program.values.append(node.name)
        self.nodes.append(node)
        return node

    def linear_algebra(self, op: str, x: Node) -> None:
        """inv, pinv, det, solve, cholesky of a matrix far from singular made from a square ``x``: ``tanh(x) + (m + 1)
        I`` (diagonally dominant), or ``t t^T + (m + 1) I`` for cholesky (positive definite); svdvals of ``tanh(x)``
        (eigvalsh of its lower triangle) plus a diagonal of distinct singular values (eigenvalues) far apart."""
        if len(x.shape) < 2 or x.shape[-1] != x.shape[-2]:
            self.unary("tanh", x)
            return
        m = x.shape[-1]
        t = self.shrunk(x)
        if op in ("svdvals", "eigvalsh"):  # distinct values: within m of (2m + 2) k, k = 1..m (Weyl)
            spread = self.constant_node(np.diag((2.0 * m + 2) * np.arange(1, m + 1)))
            a = self.emit("add", [t, spread], x.shape, t.lo, t.hi + spread.hi)
            self.emit(op, [a], x.shape[:-1], 0.0, (2.0 * m + 2) * m + m)
            return
        if op == "cholesky":
            transposed = self.emit("transpose", [t], t.shape, t.lo, t.hi)
            t = self.emit("matmul", [t, transposed], t.shape, -float(m), float(m))
        eye = self.constant_node((m + 1) * np.eye(m))
        a = self.emit("add", [t, eye], x.shape, t.lo, t.hi + m + 1)
        if op in ("inv", "pinv"):
            self.emit(op, [a], x.shape, -1.0, 1.0)
        elif op == "det":
            self.checked("det", [a], x.shape[:-2], -((2.0 * m + 2) ** m), (2.0 * m + 2) ** m, x)
        elif op == "cholesky":
            bound = math.sqrt(2.0 * m + 1)
            self.emit("cholesky", [a], x.shape, -bound, bound)
        else:
            b = self.pick(lambda n: n.shape == (m,) or (len(n.shape) >= 2 and n.shape[-2] == m), constants=True)
            b = b if b is not None and broadcast(x.shape[:-2], b.shape[:-2]) is not None else x
            shape = (m,) if b.shape == (m,) else (*broadcast(x.shape[:-2], b.shape[:-2]), m, b.shape[-1])
            if len(b.shape) == 1:
                shape = (*x.shape[:-2], m)
            self.checked("solve", [a, b], shape, -m * b.bound, m * b.bound, x)

    # -- convolution and pooling: a node as a one-channel image ---------------------------------------------------

    def image(self, x: Node) -> Node:
        """``x`` reshaped to a batch of one one-channel image (1, 1, H, W): its last axis the width, the others the
        height."""
        height, width = (math.prod(x.shape[:-1]), x.shape[-1]) if x.shape else (1, 1)
        return self.emit("reshape", [x], (1, 1, height, width), x.lo, x.hi, shape=(1, 1, height, width))

    def flat(self, x: Node, shape: tuple[int, ...]) -> Node:
        """A 4-D (or 3-D) result back to a matrix, for the ops that follow."""
        return self.emit("reshape", [x], shape, x.lo, x.hi, shape=shape)

    def windows(self, size: tuple[int, int], pooling: bool = False) -> tuple[dict[str, Any], tuple[int, int]]:
        """A kernel (at most the image, or at most 3), a stride of 1 or 2 and a padding (at most half the kernel
        for pooling) for an image of ``size``; the attributes and the output's size."""
        kernel = tuple(self.draw(st.integers(1, min(n, 3))) for n in size)
        padding = tuple(self.draw(st.integers(0, k // 2 if pooling else 1)) for k in kernel)
        stride = tuple(self.draw(st.integers(1, 2)) for _ in size)
        out = tuple((n + 2 * p - k) // s + 1 for n, k, p, s in zip(size, kernel, padding, stride, strict=True))
        return {"kernel_size": kernel, "stride": stride, "padding": padding}, (int(out[0]), int(out[1]))

    def convolution(self, op: str, x: Node) -> None:
        """conv2d of ``x`` as an image with a weight made from another node (x itself when none fits) and a
        constant bias; unfold of it into columns; fold of ``x`` (m, n) as columns of a (1, m) kernel into an
        (m + n - 1)-long image, overlapping windows summed."""
        if op == "fold":
            m, n = (math.prod(x.shape[:-1]), x.shape[-1]) if x.shape else (1, 1)
            columns = self.emit("reshape", [x], (1, m, n), x.lo, x.hi, shape=(1, m, n))
            terms = min(m, n)
            attributes = {"output_size": (1, m + n - 1), "kernel_size": (1, m)}
            folded = self.emit(
                "fold", [columns], (1, 1, 1, m + n - 1), min(0.0, terms * x.lo), max(0.0, terms * x.hi), **attributes
            )
            self.flat(folded, (m + n - 1,))
            return
        image = self.image(x)
        size = image.shape[2:]
        if op == "unfold":
            attributes, out = self.windows(size)
            k = attributes["kernel_size"][0] * attributes["kernel_size"][1]
            lo, hi = min(x.lo, 0.0), max(x.hi, 0.0)
            columns = self.emit("unfold", [image], (1, k, out[0] * out[1]), lo, hi, **attributes)
            self.flat(columns, (k, out[0] * out[1]))
            return
        padding = (self.draw(st.integers(0, 1)), self.draw(st.integers(0, 1)))

        def fits(node: Node) -> bool:
            kernel = (math.prod(node.shape[:-1]), node.shape[-1]) if node.shape else (1, 1)
            return all(k <= n + 2 * p for k, n, p in zip(kernel, size, padding, strict=True))

        y = self.pick(fits, constants=True) or x
        weight = y if y is x else self.image(y)
        weight = image if y is x else weight
        kernel = weight.shape[2:]
        bias = self.constant_node(np.array([self.draw(st.sampled_from([0.0, 0.5, -1.0]))]))
        stride = (self.draw(st.integers(1, 2)), self.draw(st.integers(1, 2)))
        out = tuple((n + 2 * p - k) // s + 1 for n, k, p, s in zip(size, kernel, padding, stride, strict=True))
        lo, hi = _interval(operator.mul, (x.lo, x.hi), (y.lo, y.hi))
        terms = kernel[0] * kernel[1]
        lo, hi = terms * min(lo, 0.0) + bias.lo, terms * max(hi, 0.0) + bias.hi
        if max(abs(lo), abs(hi)) > LIMIT:
            self.unary("tanh", x)
            return
        result = self.emit("conv2d", [image, weight, bias], (1, 1, *out), lo, hi, stride=stride, padding=padding)
        self.flat(result, out)

    def pooling(self, op: str, x: Node) -> None:
        """max_pool2d or avg_pool2d of ``x`` as an image (avg's zero padding widens its interval to 0)."""
        image = self.image(x)
        attributes, out = self.windows(image.shape[2:], pooling=True)
        lo, hi = (x.lo, x.hi) if op == "max_pool2d" else (min(x.lo, 0.0), max(x.hi, 0.0))
        self.flat(self.emit(op, [image], (1, 1, *out), lo, hi, **attributes), out)

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


#: How the fuzzer draws each op that is not elementwise, or whose operands it brings into range itself (exp, log,
#: div, pow: closer to the edges than the declared domain); every other op is drawn by ``Builder.elementwise``.
RULES = {
    "exp": Builder.exp,
    "log": Builder.log,
    "div": Builder.binary,
    "pow": Builder.binary,
    "transpose": Builder.transpose,
    "sum": Builder.reduction,
    "mean": Builder.reduction,
    "matmul": Builder.matmul,
    "linear": Builder.linear,
    "mse": Builder.mse,
    "softmax_cross_entropy": Builder.softmax_cross_entropy,
    "where": Builder.where,
    "expand_dims": Builder.expand_dims,
    "squeeze": Builder.squeeze,
    "broadcast_to": Builder.broadcast_to,
    "getitem": Builder.getitem,
    "scatter_add": Builder.scatter_add,
    "setitem": Builder.setitem,
    "take": Builder.take,
    "take_along_axis": Builder.take_along_axis,
    **dict.fromkeys(["concatenate", "stack", "hstack", "vstack", "dstack", "column_stack", "append"], Builder.join),
    "slice_along": Builder.slice_along,
    "pad_along": Builder.pad_along,
    "einsum": Builder.einsum,
    "select": Builder.select,
    **dict.fromkeys(["prod", "max", "min", "ptp", "logsumexp", "var", "std", "norm"], Builder.other_reduction),
    "weighted_logsumexp": Builder.weighted_logsumexp,
    **dict.fromkeys(["cumsum", "cumprod"], Builder.running),
    **dict.fromkeys(["tensordot", "dot", "inner", "vdot", "outer", "cross", "kron"], Builder.product),
    **dict.fromkeys(["inv", "pinv", "det", "solve", "cholesky", "svdvals", "eigvalsh"], Builder.linear_algebra),
    "linspace": Builder.linspace,
    **dict.fromkeys(SHAPE_OPS, Builder.shape_op),
    **dict.fromkeys(["conv2d", "unfold", "fold"], Builder.convolution),
    **dict.fromkeys(["max_pool2d", "avg_pool2d"], Builder.pooling),
    "dropout_mask": Builder.dropout_mask,
}


def _tensordot_fit(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return any(a[len(a) - n :] == b[:n] for n in range(0, min(len(a), len(b), 2) + 1))


def _tensordot_result(a, b, draw):
    n = draw(st.sampled_from([n for n in range(0, min(len(a), len(b), 2) + 1) if a[len(a) - n :] == b[:n]]))
    return (*a[: len(a) - n], *b[n:]), math.prod(a[len(a) - n :]), {"axes": n}


def _dot_fit(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return not a or not b or a[-1] == b[-2 if len(b) >= 2 else 0]


def _dot_result(a, b, draw):
    if not a or not b:
        return broadcast(a, b), 1, {}
    return (*a[:-1], *b[:-2], *b[-1:][: len(b) - 1]), a[-1], {}


def _inner_result(a, b, draw):
    if not a or not b:
        return broadcast(a, b), 1, {}
    return (*a[:-1], *b[:-1]), a[-1], {}


def _cross_fit(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return a == b and 3 in a


def _cross_result(a, b, draw):
    axis = draw(st.sampled_from([i for i, n in enumerate(a) if n == 3]))
    return a, 1, {"axis": axis}


def _kron_result(a, b, draw):
    ndim = max(len(a), len(b))
    a, b = (1,) * (ndim - len(a)) + a, (1,) * (ndim - len(b)) + b
    return tuple(i * j for i, j in zip(a, b, strict=True)), 1, {}


#: Each product: whether a second operand's shape fits the first's, and (given both and ``draw``) the result's
#: shape, the number of terms each element sums, and the attributes.
PRODUCT_SHAPES = {
    "tensordot": (_tensordot_fit, _tensordot_result),
    "dot": (_dot_fit, _dot_result),
    "inner": (lambda a, b: not a or not b or a[-1] == b[-1], _inner_result),
    "vdot": (lambda a, b: a == b, lambda a, b, draw: ((), math.prod(a), {})),
    "outer": (lambda a, b: len(a) <= 1 and len(b) <= 1, lambda a, b, draw: ((math.prod(a), math.prod(b)), 1, {})),
    "cross": (_cross_fit, _cross_result),
    "kron": (lambda a, b: math.prod(a) * math.prod(b) <= 64, _kron_result),
}


def _plain(value: Any) -> Any:
    """An attribute as the program's text can hold it: arrays (indices, coordinates) as lists."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


def shape_bound(op: str, x: Node, attributes: dict[str, Any]) -> tuple[float, float]:
    """An interval holding a shape op's values: x's own for an op that moves or copies elements; widened to 0
    where it writes zeros (a triangle, a diagonal matrix, a constant border: also its value); and for the ops that
    add elements, the most terms any output sums, times x's bound (diff: 2**n, with the constants it joins)."""
    lo, hi = x.lo, x.hi
    if op in ("tril", "triu", "diag"):
        return min(lo, 0.0), max(hi, 0.0)
    if op == "pad":
        value = attributes.get("constant_values", 0.0) if attributes.get("mode", "constant") == "constant" else lo
        return min(lo, value), max(hi, value)
    if op == "scatter_along":
        terms = len(x.shape) and x.shape[attributes["axis"]]
        return min(0.0, terms * lo), max(0.0, terms * hi)
    if op == "trace":
        terms = min(x.shape[attributes["axis1"]], x.shape[attributes["axis2"]])
        return min(0.0, terms * lo), max(0.0, terms * hi)
    if op == "diff":
        bound = max(x.bound, 1.25) * 2 ** attributes["n"]
        return (-bound, bound) if attributes["n"] else (lo, hi)
    if op == "gradient":
        spacing = attributes.get("varargs", ())
        steps = np.diff(spacing[0]) if spacing and np.ndim(spacing[0]) else [spacing[0] if spacing else 1.0]
        bound = 4 * x.bound / float(np.min(steps))
        return -bound, bound
    return lo, hi


def _box(value: Node | float) -> tuple[float, float]:
    """The interval of an operand: a node's, or a number's single point."""
    return (value.lo, value.hi) if isinstance(value, Node) else (value, value)


def _normalize(axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    return tuple(sorted(a % ndim for a in ((axis,) if isinstance(axis, int) else axis)))


@st.composite
def programs(draw, generic: bool = False) -> Program:
    builder = Builder(draw, generic)
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
        "inf": math.inf,  # a norm's ord
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
        return value.data if isinstance(value, opreg.Tensor) else value

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
        if actual.shape != expected.shape or not np.allclose(actual, expected, 1e-9, 1e-11 * scale, equal_nan=True):
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
        # NaN where torch's is NaN (hypot's gradient at (0, 0), an infinite derivative times 0) is agreement
        if not ok or not np.allclose(actual, expected, rtol=1e-7, atol=1e-9 * scale, equal_nan=True):
            raise AssertionError(
                f"{front_end}: the gradient of {x} is {np.asarray(actual).tolist()!r}, torch's is "
                f"{expected.tolist()!r}\n\n" + report(program, front_end, x, expected)
            )


# --- the tests --------------------------------------------------------------------------------------------------------


@needs_torch
def test_fuzzer_draws_every_builtin_op():
    """Every built-in op is drawn: an elementwise one from its declaration alone, any other by its entry in RULES.
    A new op that is neither fails here until the fuzzer can draw it; an entry in RULES for a missing op fails too."""
    assert FUZZ_OPS == BUILTIN_OPS
    assert sorted(set(RULES) - set(BUILTIN_OPS)) == []
    assert [op for op in FUZZ_OPS if op not in RULES and op not in ELEMENTWISE] == []
    assert {"add", "mul", "neg", "relu"} <= set(FUZZ_OPS) - set(RULES)  # the generic rule draws some ops


def test_op_interval_is_the_range_of_monotonic_ops():
    """The intervals the fuzzer keeps every value inside come from each op's forward: exact at the corners."""
    assert op_interval("neg", (-1.0, 2.0)) == (-2.0, 1.0)
    assert op_interval("mul", (-2.0, 3.0), (-1.0, 4.0)) == (-8.0, 12.0)
    assert op_interval("relu", (-3.0, -1.0)) == (0.0, 0.0)
    assert op_interval("exp", (0.0, 1000.0)) == (-math.inf, math.inf)


def branch_flips(program: Program, tensor_values: dict, expected_values: dict) -> list[str]:
    """The elementwise nodes whose op takes another branch on torch's operand values than on opreg's: floor, mod
    or sign jumping, abs, maximum or clip turning at a kink or tie, where the two libraries' operands differ in the
    last bit. Found from the op alone, for every elementwise op: its output and its derivative (backpropagating
    ones), by opreg on both sets of operand values, apart by far more than rounding (a smooth op's move by about
    the operands' own relative difference, 1e-12). Comparing opreg with itself hides no wrong derivative: a wrong
    one is wrong on both sets alike."""
    flipped = []
    for name, op, operands, attributes in program.branches:
        results = []
        for values in (tensor_values, expected_values):
            inputs = [np.asarray(values[o], np.float64) if isinstance(o, str) else np.asarray(o) for o in operands]
            engine = opreg.Autograd()
            with np.errstate(all="ignore"):
                out = engine.apply(op, *inputs, **attributes)
                engine.backward(np.ones(out.shape))
            differentiable = REGISTRY[op].differentiable
            grads = [
                engine.gradient_buffer.get_param(x)
                for x, o, d in zip(inputs, operands, differentiable, strict=True)
                if d and isinstance(o, str)
            ]
            results.append([out, *grads])
        if not all(np.allclose(a, b, rtol=1e-6, atol=1e-9, equal_nan=True) for a, b in zip(*results, strict=True)):
            flipped.append(name)
    return flipped


def check_program(program: Program) -> None:
    """The program, run by the tape engine and by Tensors, gives every node torch's value and every leaf torch's
    gradient."""
    expected_values, expected_grads = run_torch(program)
    tensor_values, _ = run_opreg(program, "Tensors")
    # a branch (relu's, where's) must not hang on a last-bit difference from torch
    kinks = [
        n
        for n in program.kinks
        if not np.array_equal(tensor_values[n] > 0, expected_values[n] > 0)
        or not np.array_equal(np.signbit(tensor_values[n]), np.signbit(expected_values[n]))
    ]
    if kinks:
        event("rejected: the sign of a relu or angle input or where condition differs from torch's in the last bit")
    assume(not kinks)
    flips = branch_flips(program, tensor_values, expected_values)
    if flips:
        event("rejected: an elementwise op's branch (a step, kink or tie) differs from torch's in the last bit")
    assume(not flips)
    event(f"ops: {min(program.ops // 10 * 10, 50)}-{min(program.ops // 10 * 10, 50) + 9}")
    for front_end in ("tape engine", "Tensors"):
        check(program, front_end, expected_values, expected_grads)


FUZZ_SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large]}


@needs_torch
@settings(max_examples=examples(300), **FUZZ_SETTINGS)
@given(program=programs())
def test_random_graph_gradients_match_torch(program):
    """Each random program, run by the tape engine and by Tensors, gives every node torch's value and every leaf
    torch's gradient."""
    check_program(program)


@needs_torch
@settings(max_examples=examples(60), **FUZZ_SETTINGS)
@given(program=programs(generic=True))
def test_elementwise_ops_drawn_from_their_declaration_match_torch(program):
    """The rule a new elementwise op gets, used for every one of them (log, div, pow and exp too, whose operands
    are then brought into their declared domain by a scaled sigmoid): programs still match torch."""
    check_program(program)
