"""``Tensor``: the front end that records the graph itself, as the handout's last chapter describes.

Every operation on Tensors is a registered op, looked up by name in the same table the tape engine uses, and
differentiated by the same code (:mod:`opreg.calls`). Each result that needs a gradient keeps a :class:`Node`
naming its op and its input Tensors, so the graph is a DAG held by the tensors themselves. ``loss.backward()``
walks the part of it that reaches ``loss``, in reverse topological order, without recursion (deep graphs are
fine), frees intermediate gradients as it goes, and releases the graph unless asked to retain it.
``opreg.grad(loss, inputs)`` returns gradients instead, and with ``create_graph=True`` records the backward pass
itself, on Tensors, for ops whose backward is built from registered ops: second derivatives.
"""

from __future__ import annotations

import enum
import functools
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final, Literal, cast

import numpy as np
from numpy.typing import DTypeLike

from opreg import backprop, observe, versions
from opreg.backprop import backpropagate, total
from opreg.calls import as_arrays, run_forward
from opreg.errors import EngineStateError, OpUsageError
from opreg.fit import gradient_dtype
from opreg.landing import lock_for
from opreg.numpy_arguments import numpy_arguments
from opreg.opdef import OpDef
from opreg.registry import TABLE, numpy_op, op_table, unknown_op_error
from opreg.versions import numbers


class _GradMode(threading.local):
    """Whether ops on Tensors are recorded: per thread, as in PyTorch, so no_grad in one thread leaves others be."""

    enabled = True


_grad_mode = _GradMode()


class no_grad:
    """Record nothing: ``with opreg.no_grad():``, or ``@opreg.no_grad`` / ``@opreg.no_grad()`` on a function.

    Results computed inside do not require gradients. The previous mode is restored on leaving, so it nests.
    """

    def __new__(cls, function: Callable[..., Any] | None = None) -> Any:
        if function is not None:  # used bare, as @no_grad
            return cls()(function)
        return super().__new__(cls)

    def __enter__(self) -> None:
        self._previous = _grad_mode.enabled
        _grad_mode.enabled = False

    def __exit__(self, *exc_info: object) -> None:
        _grad_mode.enabled = self._previous

    def __call__(self, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def without_grad(*args: Any, **kwargs: Any) -> Any:
            with no_grad():
                return function(*args, **kwargs)

        return without_grad


class Node:
    """How a Tensor was made: the op, the input arrays, the attributes it was called with, what its forward
    saved for backward, and the observers (checking, anomaly) that were on. ``number`` orders it among records
    and in-place edits, and ``fingerprints`` are what checking mode recorded (:mod:`opreg.versions`).

    ``inputs[i]`` is the input Tensor where it requires gradients, and ``None`` for a constant (an array, a number,
    a tensor that requires none), which the backward pass does not follow. A Node is a record of
    :mod:`opreg.backprop`: ``sources`` is ``inputs``, and it has no ``targets``.
    """

    __slots__ = (
        "attributes",
        "datas",
        "fingerprints",
        "inputs",
        "number",
        "observers",
        "op",
        "output_data",
        "saved",
        "sources",
    )
    targets = None

    def __init__(
        self,
        op: OpDef,
        inputs: tuple[Tensor | None, ...],
        datas: Any,
        output_data: np.ndarray,
        attributes: Any,
        saved: Any,
        observers: tuple[Any, ...],
    ) -> None:
        self.op = op
        self.inputs = self.sources = inputs
        self.datas = datas
        self.output_data = output_data
        self.attributes = attributes
        self.saved = saved
        self.observers = observers
        self.fingerprints = versions.fingerprints(op, datas, output_data, observers) if observers else None
        self.number = next(numbers)  # later than every input's: the backward pass orders nodes by it

    def graph_inputs(self) -> list[Tensor]:
        """The inputs as Tensors, constants too: what a recorded backward (``create_graph``) runs on."""
        return [Tensor(data) if x is None else x for x, data in zip(self.inputs, self.datas, strict=True)]


class _Released(enum.Enum):
    """The type of :data:`RELEASED`: a one-member enum, so that type checkers tell it apart from a Node."""

    RELEASED = "released"


#: Stands in for the node of a Tensor whose graph backward has released.
RELEASED: Final = _Released.RELEASED


class Tensor:
    """An ndarray that records the ops applied to it, so ``backward()`` can give every leaf its ``.grad``.

    ``requires_grad=True`` marks a leaf whose gradient is wanted (a parameter); results of ops on such tensors
    require gradients too. ``.grad`` accumulates over ``backward`` calls until set to ``None`` (or zeroed).
    """

    __slots__ = ("_data", "_grad", "_node", "_requires_grad")
    _grad: np.ndarray | None
    __array_priority__ = 1000
    __hash__ = object.__hash__  # by identity, as before comparisons were defined: Tensors key dicts and sets

    def __init__(self, data: Any, requires_grad: bool = False, dtype: DTypeLike | None = None) -> None:
        self._data: np.ndarray = np.asarray(data._data if isinstance(data, Tensor) else data, dtype=dtype)
        self.requires_grad = requires_grad
        self.grad: np.ndarray | None = None
        self._node: Node | Literal[_Released.RELEASED] | None = None

    @property
    def data(self) -> np.ndarray:
        """The values. Changing them in place while a graph that read them waits for backward makes that backward
        raise (:mod:`opreg.versions`): ``t.data += 1`` raises the version, a raw write such as ``t.data[0] = 1``
        is caught in checking mode. ``t.data = array`` gives the tensor another array and leaves graphs alone."""
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        if value is self._data:  # t.data += 1: NumPy changed the array in place, then Python assigns it back
            versions.edited(value)
        else:
            self._data = np.asarray(value)

    @property
    def version(self) -> int:
        """How many times the tensor's memory was changed in place through opreg (``t.data += 1``, an optimizer's
        step), as PyTorch's ``_version``; shared by tensors viewing the same memory."""
        return versions.version(self._data)

    @property
    def grad(self) -> np.ndarray | None:
        """The accumulated gradient (``None`` until a backward reaches this leaf), of the tensor's shape."""
        return self._grad

    @grad.setter
    def grad(self, value: Any) -> None:
        if value is not None:
            value = np.asarray(value, dtype=gradient_dtype(self._data))
            if value.shape != self._data.shape:
                raise OpUsageError(f"a gradient of shape {value.shape} for a tensor of shape {self._data.shape}")
        self._grad = value

    @property
    def requires_grad(self) -> bool:
        """Whether gradients flow to this tensor; only floating-point tensors can require them."""
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value and self._data.dtype.kind != "f":
            raise OpUsageError(f"only floating-point tensors can require gradients, not {self._data.dtype}")
        self._requires_grad = bool(value)

    # --- what it holds -----------------------------------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def size(self) -> int:
        return self._data.size

    @property
    def is_leaf(self) -> bool:
        """Made by the user rather than by an op that recorded it."""
        return self._node is None

    def numpy(self) -> np.ndarray:
        return self._data

    def item(self) -> float:
        return cast(float, self._data.item())

    def detach(self) -> Tensor:
        """The same data, cut from the graph."""
        return Tensor(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __bool__(self) -> bool:
        """As an array's: a single element's truth; more than one is ambiguous and raises (``x in [t1, t2]``
        compares elementwise, and must not quietly be true)."""
        return bool(self._data)

    def __float__(self) -> float:
        return float(self._data)

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({np.array2string(self._data, separator=', ')}{grad})"

    # --- operators, each a registered op ------------------------------------------------------------------------

    def __add__(self, other: Any) -> Tensor:
        return apply("add", self, other)

    def __radd__(self, other: Any) -> Tensor:
        return apply("add", other, self)

    def __sub__(self, other: Any) -> Tensor:
        return apply("sub", self, other)

    def __rsub__(self, other: Any) -> Tensor:
        return apply("sub", other, self)

    def __mul__(self, other: Any) -> Tensor:
        return apply("mul", self, other)

    def __rmul__(self, other: Any) -> Tensor:
        return apply("mul", other, self)

    def __truediv__(self, other: Any) -> Tensor:
        return apply("div", self, other)

    def __rtruediv__(self, other: Any) -> Tensor:
        return apply("div", other, self)

    def __matmul__(self, other: Any) -> Tensor:
        return apply("matmul", self, other)

    def __rmatmul__(self, other: Any) -> Tensor:
        return apply("matmul", other, self)

    def __pow__(self, other: Any) -> Tensor:
        return apply("pow", self, other)

    def __rpow__(self, other: Any) -> Tensor:
        return apply("pow", other, self)

    # --- comparisons and masks: boolean Tensors that require no gradient (a mask is a constant) -------------------

    def __lt__(self, other: Any) -> Tensor:
        return _compare(np.less, self, other)

    def __le__(self, other: Any) -> Tensor:
        return _compare(np.less_equal, self, other)

    def __gt__(self, other: Any) -> Tensor:
        return _compare(np.greater, self, other)

    def __ge__(self, other: Any) -> Tensor:
        return _compare(np.greater_equal, self, other)

    def __eq__(self, other: Any) -> Tensor:  # type: ignore[override]
        return _compare(np.equal, self, other)

    def __ne__(self, other: Any) -> Tensor:  # type: ignore[override]
        return _compare(np.not_equal, self, other)

    def __and__(self, other: Any) -> Tensor:
        return _compare(np.logical_and, self, other)

    def __rand__(self, other: Any) -> Tensor:
        return _compare(np.logical_and, other, self)

    def __or__(self, other: Any) -> Tensor:
        return _compare(np.logical_or, self, other)

    def __ror__(self, other: Any) -> Tensor:
        return _compare(np.logical_or, other, self)

    def __invert__(self) -> Tensor:
        return Tensor(np.logical_not(self.data))

    # --- NumPy's protocols (NEP 13 and 18): a NumPy function on a Tensor runs the op that implements it ----------

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        return numpy_call(ufunc, ufunc.__name__, method, inputs, kwargs)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        return numpy_call(func, func.__name__, "__call__", args, kwargs)

    def __neg__(self) -> Tensor:
        return apply("neg", self)

    def sum(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        """Sum over ``axis`` (None: all), the ``sum`` op."""
        return apply("sum", self, axis=axis, keepdims=keepdims)

    def mean(self, axis: Any = None, keepdims: bool = False) -> Tensor:
        """Mean over ``axis`` (None: all), the ``mean`` op."""
        return apply("mean", self, axis=axis, keepdims=keepdims)

    @property
    def T(self) -> Tensor:
        """The last two axes swapped (the ``transpose`` op)."""
        return apply("transpose", self)

    # --- backward -----------------------------------------------------------------------------------------------

    def backward(self, gradient: Any = None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into ``.grad`` of every leaf that requires it and reaches ``self``.

        ``gradient`` is d(loss)/d(self): omitted only for a single-element tensor (then 1). The graph is released
        afterwards, freeing what forward kept for backward, unless ``retain_graph``.
        """
        _backpropagate(self, _seed(self, gradient, "backward()"), retain_graph)


def _compare(ufunc: np.ufunc, a: Any, b: Any) -> Tensor:
    """A comparison (or a logical and, or) of Tensors' values: a boolean Tensor outside the graph, as a mask
    carries no gradient."""
    return Tensor(ufunc(a.data if isinstance(a, Tensor) else a, b.data if isinstance(b, Tensor) else b))


def _seed(root: Tensor, gradient: Any, caller: str) -> np.ndarray:
    """d(loss)/d(root) as an array of root's shape and gradient dtype: ``gradient``, or 1 for a single element."""
    if not root.requires_grad:
        raise EngineStateError(f"{caller} on a tensor that does not require gradients: no input required them")
    implicit = gradient is None
    if implicit:
        if root._data.size != 1:
            raise OpUsageError(
                f"{caller} without a gradient needs a single-element tensor, not shape {root.shape}; "
                "pass gradient= of that shape"
            )
        gradient = 1.0
    value = gradient.data if isinstance(gradient, Tensor) else gradient
    misfit = f"for a tensor of shape {root.shape}"
    return backprop.seed(root._data, value, name="gradient", misfit=misfit, scalar_fills=implicit)


def grad(
    output: Tensor,
    inputs: Sequence[Tensor],
    gradient: Any = None,
    *,
    create_graph: bool = False,
    retain_graph: bool | None = None,
) -> tuple[Tensor | None, ...]:
    """d(output)/d(x) for each Tensor ``x`` of ``inputs`` (``None`` where output does not depend on it), as
    ``torch.autograd.grad``: every ``.grad`` is left alone.

    ``gradient`` is d(loss)/d(output), as in :meth:`Tensor.backward`. With ``create_graph`` the backward pass is
    itself recorded, so the gradients returned require gradients and can be differentiated again: Hessian-vector
    products, gradient penalties, second-order checks. Every op on the way must then have a backward built from
    registered ops (:class:`opreg.NotComposableError` names one that is not). The graph is kept
    when ``create_graph`` (the new graph reaches into it), released otherwise, unless ``retain_graph`` says.
    """
    seed: np.ndarray | Tensor = _seed(output, gradient, "grad()")
    if create_graph:  # a Tensor gradient stays one: what grad returns may depend on it, and be differentiated
        seed = gradient if isinstance(gradient, Tensor) and gradient.dtype == seed.dtype else Tensor(seed)
    retain = create_graph if retain_graph is None else retain_graph
    found = _backpropagate(output, seed, retain, create_graph, {id(x) for x in inputs})
    return tuple(None if id(x) not in found else _as_tensor(found[id(x)], copy=True) for x in inputs)


def _as_tensor(value: Tensor | np.ndarray, copy: bool = False) -> Tensor:
    """``value`` as a Tensor; ``copy`` gives an array its own copy (one gradient array may reach several inputs,
    and the caller may hold the seed)."""
    if isinstance(value, Tensor):
        return value
    return Tensor(value.copy() if copy else value)


def _backpropagate(
    root: Tensor, seed: Any, retain_graph: bool, create_graph: bool = False, wanted: set[int] | None = None
) -> dict[int, Any]:
    """Walk the graph from ``root`` back (:func:`opreg.backprop.backpropagate`), starting from the gradient
    ``seed``.

    Without ``wanted``, each leaf's gradient accumulates into its ``.grad``; with it, the complete gradients of
    the tensors whose ids it holds are returned by id instead. With ``create_graph``, gradients are Tensors and
    each op's backward runs on Tensors, recording what it does.
    """
    leaves, made = _topological_order(root)
    if made and (versions.last_edit > made[0]._node.number or versions.fingerprinted):  # type: ignore[union-attr]
        versions.check(tensor._node for tensor in made)  # type: ignore[misc]
    grads = backpropagate(
        _releasing(made, retain_graph),
        {id(root): seed},
        keep=wanted or False,
        graph_inputs=Node.graph_inputs if create_graph else None,
    )
    if wanted is not None:
        return {key: grads[key] for key in wanted if key in grads}
    for leaf in leaves:
        arrived = grads.pop(id(leaf), None)
        if arrived is not None:
            with lock_for(leaf):  # another thread's backward may reach the same leaf
                leaf._grad = _leaf_gradient(leaf._grad, arrived)
            arrived = None
    return {}


def _releasing(made: list[Tensor], retain_graph: bool) -> Iterator[tuple[Tensor, Node]]:
    """``(tensor, node)`` for the tensors ops made, last first; each node released (unless ``retain_graph``) as
    the pass reaches it, so that what forward kept for backward is freed as it goes."""
    for tensor in reversed(made):
        node = tensor._node
        if not retain_graph:
            tensor._node = RELEASED
        # A Node, as _topological_order made sure, which the checker cannot follow; a check here would run per node.
        yield tensor, node  # type: ignore[misc]


def _leaf_gradient(current: np.ndarray | None, arrived: np.ndarray) -> np.ndarray:
    """A leaf's ``.grad`` after ``arrived`` reaches it: an array no one else can see, as the user may change it.

    One gradient array may reach several leaves (add passes its gradient to both inputs), so the first arrival is
    copied, unless nothing but this call refers to it and it is no view: PyTorch's AccumulateGrad makes the same
    reference-count test. That spares copying every weight's gradient on every step.
    """
    if current is not None:
        summed: np.ndarray = total(current, arrived)
        return summed
    # References: the caller's variable, this parameter and getrefcount's argument.
    if isinstance(arrived, np.ndarray) and arrived.base is None and sys.getrefcount(arrived) <= 3:
        return arrived
    return arrived.copy()


def _topological_order(root: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """The tensors that reach ``root`` and require gradients: the leaves, and the tensors ops made, each after
    all of its inputs (no recursion).

    Every Node is numbered when it is made, and its inputs existed before it, so ordering the results of ops by
    that number is a topological order; the leaves come first. Finding the tensors is a plain search, each tensor
    visited once, and the ordering is one sort in C: cheaper per tensor than a post-order depth-first search.
    """
    made: list[tuple[int, Tensor]] = []  # (the node's number, the tensor): numbers are unique, tensors never compared
    leaves: list[Tensor] = []
    visited = {id(root)}
    stack = [root]
    while stack:
        tensor = stack.pop()
        node = tensor._node
        if node is None:
            leaves.append(tensor)
            continue
        if node is RELEASED:
            raise EngineStateError(
                "backward() through a graph that an earlier backward() released; pass retain_graph=True to the "
                "first backward() to go through it twice"
            )
        made.append((node.number, tensor))
        for x in node.inputs:
            if x is not None and id(x) not in visited:
                visited.add(id(x))
                stack.append(x)
    made.sort()
    return leaves, [tensor for _, tensor in made]


def apply(name: str, *args: Any, **attributes: Any) -> Tensor:
    """Run op ``name`` on Tensors, arrays or numbers, and record it when an input requires gradients."""
    try:
        op = TABLE[name]
    except KeyError:
        found = op_table().get(name)  # loads the plugins on first use
        if found is None:
            raise unknown_op_error(name) from None
        op = found
    return apply_op(op, args, attributes)


def apply_op(op: OpDef, args: Sequence[Any], attributes: Mapping[str, Any]) -> Tensor:
    """:func:`apply` for an op already looked up: a Tensor always, recording when an input requires gradients."""
    if attributes or op.attributes:
        attributes = op.bind_attributes(attributes)
    datas: list[Any] = []
    followed: list[Tensor | None] = []  # the inputs backward goes on to: those that require gradients
    convert = record = False
    for x in args:
        if type(x) is Tensor or isinstance(x, Tensor):
            datas.append(x._data)
            if x._requires_grad:
                followed.append(x)
                record = True
            else:
                followed.append(None)
        else:
            datas.append(x)
            followed.append(None)
            convert = convert or type(x) is not np.ndarray
    if convert:
        datas = list(as_arrays(datas))
    observers = observe.current() if observe.active else ()
    result = Tensor.__new__(Tensor)  # without __init__'s conversions and checks: this is the hot path
    data, saved = run_forward(op, datas, attributes, observers)
    result._data = data
    result._grad = None
    if record and _grad_mode.enabled:
        result._requires_grad = True
        result._node = Node(op, tuple(followed), datas, data, attributes, saved, observers)
    else:
        result._requires_grad, result._node = False, None
    return result


def call_op(op: OpDef, args: Sequence[Any], attributes: Mapping[str, Any]) -> Any:
    """Op ``op`` on ``args``: its output array, or a Tensor (recorded as needed) when any input is a Tensor."""
    if len(args) > len(op.inputs):
        args, attributes = _positional_attributes(op, args, attributes)
    convert = False
    for x in args:
        if type(x) is not np.ndarray:
            if isinstance(x, Tensor):
                return apply_op(op, args, attributes)
            convert = True
    if attributes or op.attributes:
        attributes = op.bind_attributes(attributes)
    if not convert and not op.saves and not observe.active and len(args) == len(op.inputs):
        try:  # the common case, arrays and nothing else, in as few steps as possible: this runs inside backwards
            output = op.forward(*args, **attributes) if attributes else op.forward(*args)
        except Exception:
            pass  # run_forward below raises again, with the op named
        else:
            return output if type(output) is np.ndarray else np.asarray(output)
    if convert:
        args = as_arrays(args)
    return run_forward(op, args, attributes, observe.current() if observe.active else ())[0]


def _positional_attributes(
    op: OpDef, args: Sequence[Any], attributes: Mapping[str, Any]
) -> tuple[Sequence[Any], Mapping[str, Any]]:
    """Arguments past the inputs, as the attributes they stand for, in declared order."""
    n = len(op.inputs)
    names = list(op.attributes)
    extra = args[n:]
    if len(extra) > len(names):
        raise OpUsageError(
            f"{op.describe()} takes {n} inputs {op.inputs} and the attributes {tuple(names)}, got {len(args)} "
            "positional arguments"
        )
    given = dict(zip(names, extra, strict=False))
    twice = sorted(given.keys() & attributes.keys())
    if twice:
        raise OpUsageError(f"{op.describe()}: attribute {', '.join(twice)} given by position and by keyword")
    return args[:n], {**given, **attributes}


def numpy_call(function: Any, name: str, method: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """NumPy's ``function`` called with a Tensor among ``args``: the op that implements it, recorded.

    A ufunc whose every result is boolean (a comparison, ``isfinite``) has no derivative and runs on the values.
    Anything else no op implements raises, naming the function: computing it without its derivative would give a
    wrong gradient with no error.
    """
    if getattr(function, "__module__", None) == "numpy.linalg":  # np.linalg.inv: the op declaring "linalg.inv"
        name = f"linalg.{name}"
    op = numpy_op(name) if method == "__call__" else None
    if op is not None:
        return call_op(op, *numpy_arguments(function, op, args, kwargs))
    boolean = isinstance(function, np.ufunc) and all(  # its object loop aside, every loop gives booleans
        t.endswith("?" * function.nout) for t in function.types if "O" not in t
    )
    if boolean and method == "__call__":
        return Tensor(function(*(x.data if isinstance(x, Tensor) else x for x in args), **kwargs))
    where = f"numpy.{name}" + ("" if method == "__call__" else f".{method}")
    raise OpUsageError(
        f"{where} was called on a Tensor, and no registered op implements it, so its derivative is unknown; use "
        f"opreg.numpy functions, call it on tensor.data (leaving the graph), or register an op declaring "
        f'numpy="{name}"'
    )


class TensorEngine:
    """What a module built without an ``Autograd`` engine records on: the same ops, on Tensors.

    A Tensor parameter keeps its own ``.grad``, so ``gradients_to_update`` (the tape engine's way of routing a
    parameter's gradient) is accepted and not needed.
    """

    def apply(self, name: str, *inputs: Any, gradients_to_update: Any = None, **attributes: Any) -> Tensor:
        return apply(name, *inputs, **attributes)


tensor_engine = TensorEngine()
