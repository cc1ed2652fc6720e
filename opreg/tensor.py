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

from opreg import backprop, capture, gcpause, observe, versions
from opreg.backprop import backpropagate, total
from opreg.calls import as_arrays, complex_error, run_forward
from opreg.errors import EngineStateError, OpregError, OpUsageError
from opreg.fit import gradient_dtype
from opreg.landing import object_lock
from opreg.nondifferentiable import NON_DIFFERENTIABLE
from opreg.numpy_arguments import numpy_arguments
from opreg.opdef import OpDef
from opreg.registry import TABLE, numpy_op, op_table, unknown_op_error
from opreg.reuse import PLANNED_OPS, REUSED_FROM, Spares, TensorSteps, forward_into, planned
from opreg.versions import numbers


class _GradMode(threading.local):
    """Whether ops on Tensors are recorded: per thread, as in PyTorch, so no_grad in one thread leaves others be."""

    enabled = True


_grad_mode = _GradMode()

#: Each thread's reuse of the memory of its steps' large arrays (:mod:`opreg.reuse`).
_steps = TensorSteps()


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


class Interceptor:
    """A value that takes over every op call it is an argument of: :class:`opreg.func.batching.Batched`, the
    values ``vmap`` runs a function on. Defined here so that the op-call paths below recognise one without
    importing the transforms; checked only where an argument is neither an ndarray nor a Tensor, so arrays and
    Tensors pay nothing for it."""

    __slots__ = ()

    @classmethod
    def intercept(cls, op: OpDef, args: Sequence[Any], attributes: Mapping[str, Any]) -> Any:
        """Op ``op`` on ``args`` (its inputs; attributes given by keyword), some of which are of this class."""
        raise NotImplementedError


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
        output_data: np.ndarray | tuple[np.ndarray, ...],
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
        if self.number >= gcpause.check_at:  # once in gcpause.EVERY records: is a large graph being recorded?
            gcpause.checkpoint(self.number, output_data)

    def graph_inputs(self) -> list[Tensor]:
        """The inputs as Tensors, constants too: what a recorded backward (``create_graph``) runs on."""
        return [Tensor(data) if x is None else x for x, data in zip(self.inputs, self.datas, strict=True)]


class MultiNode(Node):
    """The one node of an op with several outputs, shared by their Tensors: ``outputs`` holds each output's
    Tensor (``None`` for one that takes no gradient, such as slogdet's sign), so that the backward pass gathers
    every output's gradient and runs the op's backward once. Held strongly, so that an output Tensor the user
    dropped cannot have its identity (the key of its gradient) reused; the cycle it makes with the Tensors is
    broken when backward releases the graph."""

    __slots__ = ("outputs",)
    outputs: tuple[Tensor | None, ...]


class _Outputs(tuple):  # type: ignore[type-arg]
    """The Tensors of a :class:`MultiNode`, as the backward pass walks them: one entry for the node, whose
    ``_node`` reads and releases all of theirs at once, as a Tensor's does its own."""

    __slots__ = ()

    @property
    def _node(self) -> Any:
        return next(t for t in self if t is not None)._node

    @_node.setter
    def _node(self, value: Any) -> None:
        for t in self:
            if t is not None:
                t._node = value


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

    # _former and _retains are set only by in-place changes and retain_grad(), and read with getattr: the hot path
    # (apply_op) never touches them.
    __slots__ = ("_data", "_former", "_grad", "_node", "_requires_grad", "_retains")
    _grad: np.ndarray | None
    _former: tuple[tuple[int, Tensor], ...]
    _retains: bool
    __array_priority__ = 1000
    __hash__ = object.__hash__  # by identity, as before comparisons were defined: Tensors key dicts and sets

    def __init__(self, data: Any, requires_grad: bool = False, dtype: DTypeLike | None = None) -> None:
        self._node: Node | Literal[_Released.RELEASED] | None = None
        if type(data) in (list, tuple) and holds_tensor(data):  # Tensor([s, s]): the recorded stack op's result
            stacked = stack_sequence(data)
            data, self._node = stacked._data, stacked._node
            requires_grad = requires_grad or stacked._requires_grad
        self._data: np.ndarray = np.asarray(data._data if isinstance(data, Tensor) else data, dtype=dtype)
        self.requires_grad = requires_grad
        self._grad = None  # not the setter: a new Tensor has nothing a compiled step need write down
        if capture.active:
            capture.made(self)

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
            capture.bump()

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
        if capture.active:
            capture.assigned_grad(self, value)
        self._grad = value

    @property
    def requires_grad(self) -> bool:
        """Whether gradients flow to this tensor; only floating-point tensors can require them."""
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value and self._data.dtype.kind != "f":
            raise OpUsageError(f"only floating-point tensors can require gradients, not {self._data.dtype}")
        if not value and self._node is not None:
            raise OpUsageError(
                "requires_grad = False on a tensor an op made would cut it from the graph, and every gradient "
                "through it would silently be 0; use t.detach() for a tensor outside the graph (or t.detach_())"
            )
        if getattr(self, "_requires_grad", value) != value:  # a change, not a new tensor's first setting
            capture.bump()
        self._requires_grad = bool(value)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set :attr:`requires_grad` and return the tensor, as PyTorch's ``requires_grad_``."""
        self.requires_grad = requires_grad
        return self

    def retain_grad(self) -> None:
        """Keep this non-leaf's gradient in ``.grad`` when ``backward()`` passes it, as PyTorch's; a leaf keeps
        its gradient anyway."""
        global _retaining
        if self._node is not None:
            self._retains = True
            _retaining = True

    def detach_(self) -> Tensor:
        """Cut this tensor from the graph in place, making it a leaf that requires no gradient. Graphs recorded
        earlier that read it still reach the op that made it."""
        if self._node is not None:
            _remember_former(self, next(numbers), _stand_in(self))
        self._node = None
        self._requires_grad = False
        return self

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
        """The number of elements, as ``ndarray.size`` (an int; calling it, torch's ``t.size()``, raises an error
        naming ``t.shape``)."""
        return _Size(self._data.size)

    @property
    def is_leaf(self) -> bool:
        """Made by the user rather than by an op that recorded it."""
        return self._node is None

    def numpy(self) -> np.ndarray:
        """The values, sharing memory, for a tensor that requires no gradient; otherwise an error pointing to
        :meth:`detach`, as PyTorch's: writing to the memory the graph saved would change the gradient."""
        if self._requires_grad:
            raise _leaves_graph_error("t.numpy()")
        if capture.active:
            capture.read(self, "t.numpy()")
        return self._data

    def __array__(self, dtype: DTypeLike | None = None, copy: bool | None = None) -> np.ndarray:
        """``np.asarray(t)``: the values of a tensor that requires no gradient (as :meth:`numpy`); an error for one
        that does, which would leave the graph with no error otherwise. Asked for an integer or boolean dtype
        (``np.int64(t)``, ``np.asarray(t, dtype=bool)``), the values are given as :meth:`astype` gives them: such a
        cast has derivative 0 wherever it has one, so nothing is lost by leaving the graph."""
        if self._requires_grad and (dtype is None or np.dtype(dtype).kind not in "biu"):
            raise _leaves_graph_error(
                "np.asarray(t) (or np.array(t), or a NumPy function converting t)",
                "; Tensors in a list (np.array([t, s]), np.mean([t, s])): np.stack([t, s]) or opreg.numpy.array "
                "record the stack",
            )
        if capture.active:
            capture.read(self, "np.asarray(t)")
        if copy:
            return np.array(self._data, dtype=dtype, copy=True)
        return self._data if dtype is None else self._data.astype(dtype, copy=False)

    def item(self) -> Any:
        """The single element as a Python number (as ``ndarray.item``); fine on a tensor in the graph."""
        if capture.active:
            capture.read(self, "t.item()")
        return self._data.item()

    def tolist(self) -> Any:
        """The values as nested Python lists (as ``ndarray.tolist``)."""
        if capture.active:
            capture.read(self, "t.tolist()")
        return self._data.tolist()

    def detach(self) -> Tensor:
        """The same data, cut from the graph."""
        return Tensor(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[Tensor]:
        """The sub-tensors along the first axis, each ``t[i]`` (the ``getitem`` op), as iterating an array."""
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(len(self._data)))

    def __contains__(self, value: Any) -> bool:
        """``value in t``: whether any element equals it, as for an array."""
        return bool(np.any(self._data == _values(value)))

    def __bool__(self) -> bool:
        """As an array's: a single element's truth; more than one is ambiguous and raises (``x in [t1, t2]``
        compares elementwise, and must not quietly be true)."""
        if capture.active:
            capture.read(self, "bool(t) (an if or a comparison)")
        return bool(self._data)

    def __float__(self) -> float:
        if capture.active:
            capture.read(self, "float(t)")
        return float(self._data)

    def __int__(self) -> int:
        if capture.active:
            capture.read(self, "int(t)")
        return int(self._data)

    def __repr__(self) -> str:
        if capture.active:
            capture.read(self, "repr(t) (print)")
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({np.array2string(self._data, separator=', ')}{grad})"

    # --- operators, each a registered op ------------------------------------------------------------------------

    def __add__(self, other: Any) -> Tensor | Any:  # Any: a batched value (vmap)
        return apply("add", self, other)

    def __radd__(self, other: Any) -> Tensor | Any:  # Any: a batched value (vmap)
        return apply("add", other, self)

    def __sub__(self, other: Any) -> Tensor | Any:  # Any: a batched value (vmap)
        return apply("sub", self, other)

    def __rsub__(self, other: Any) -> Tensor | Any:  # Any: a batched value (vmap)
        return apply("sub", other, self)

    def __mul__(self, other: Any) -> Tensor | Any:  # Any: a batched value (vmap)
        return apply("mul", self, other)

    def __rmul__(self, other: Any) -> Tensor | Any:  # Any: a batched value (vmap)
        return apply("mul", other, self)

    def __truediv__(self, other: Any) -> Tensor | Any:  # Any: a batched value (vmap)
        return apply("div", self, other)

    def __rtruediv__(self, other: Any) -> Tensor | Any:  # Any: a batched value (vmap)
        return apply("div", other, self)

    def __matmul__(self, other: Any) -> Tensor | Any:  # Any: a batched value (vmap)
        return apply("matmul", self, other)

    def __rmatmul__(self, other: Any) -> Tensor | Any:  # Any: a batched value (vmap)
        return apply("matmul", other, self)

    def __pow__(self, other: Any) -> Tensor | Any:  # Any: a batched value (vmap)
        return apply("pow", self, other)

    def __rpow__(self, other: Any) -> Tensor | Any:  # Any: a batched value (vmap)
        return apply("pow", other, self)

    def __mod__(self, other: Any) -> Any:
        return numpy_call(np.remainder, "remainder", "__call__", (self, other), {})

    def __rmod__(self, other: Any) -> Any:
        return numpy_call(np.remainder, "remainder", "__call__", (other, self), {})

    def __abs__(self) -> Any:
        return numpy_call(np.absolute, "absolute", "__call__", (self,), {})

    def __neg__(self) -> Tensor:
        return apply("neg", self)

    def __pos__(self) -> Tensor:
        return apply("positive", self)

    # --- comparisons and masks: plain boolean arrays computed on the values (a mask is a constant) -----------------

    def __lt__(self, other: Any) -> Any:
        return _on_values(np.less, self, other)

    def __le__(self, other: Any) -> Any:
        return _on_values(np.less_equal, self, other)

    def __gt__(self, other: Any) -> Any:
        return _on_values(np.greater, self, other)

    def __ge__(self, other: Any) -> Any:
        return _on_values(np.greater_equal, self, other)

    def __eq__(self, other: Any) -> Any:
        return _on_values(np.equal, self, other)

    def __ne__(self, other: Any) -> Any:
        return _on_values(np.not_equal, self, other)

    def __and__(self, other: Any) -> Any:
        return _on_values(np.bitwise_and, self, other)

    def __rand__(self, other: Any) -> Any:
        return _on_values(np.bitwise_and, other, self)

    def __or__(self, other: Any) -> Any:
        return _on_values(np.bitwise_or, self, other)

    def __ror__(self, other: Any) -> Any:
        return _on_values(np.bitwise_or, other, self)

    def __xor__(self, other: Any) -> Any:
        return _on_values(np.bitwise_xor, self, other)

    def __rxor__(self, other: Any) -> Any:
        return _on_values(np.bitwise_xor, other, self)

    def __invert__(self) -> Any:
        return _on_values(np.invert, self)

    # --- NumPy's protocols (NEP 13 and 18): a NumPy function on a Tensor runs the op that implements it ----------

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        return numpy_call(ufunc, ufunc.__name__, method, inputs, kwargs)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        return numpy_call(func, func.__name__, "__call__", args, kwargs)

    # --- ndarray's methods: each the NumPy function of that name on the tensor (numpy_call), so one path serves
    # --- t.sum(), np.sum(t) and onp.sum(t). PyTorch's spellings raise, naming NumPy's (_TORCH_SPELLINGS).

    def reshape(self, *shape: Any, **kwargs: Any) -> Any:
        """As ``ndarray.reshape``: ``t.reshape(2, 3)`` or ``t.reshape((2, 3))``."""
        return _method(np.reshape, self, shape[0] if len(shape) == 1 else shape, **kwargs)

    def ravel(self, **kwargs: Any) -> Any:
        return _method(np.ravel, self, **kwargs)

    def flatten(self) -> Any:
        """As ``ndarray.flatten``: ``ravel``'s values in memory of their own."""
        return _own_memory(_method(np.ravel, self), self)

    def squeeze(self, axis: Any = None, **kwargs: Any) -> Any:
        return _method(np.squeeze, self, axis=axis, **kwargs)

    def transpose(self, *axes: Any) -> Any:
        """As ``ndarray.transpose``: every axis reversed without ``axes``, else ``t.transpose(1, 0, 2)`` or
        ``t.transpose((1, 0, 2))``."""
        if not axes or axes == (None,):
            return self.T
        return _method(np.transpose, self, axes=axes[0] if len(axes) == 1 else axes)

    def swapaxes(self, axis1: int, axis2: int) -> Any:
        return _method(np.swapaxes, self, axis1, axis2)

    def astype(self, dtype: DTypeLike, copy: bool = True) -> Any:
        """As ``ndarray.astype``. To an integer or boolean dtype, or on a tensor that requires no gradient, the
        result is a constant of the values (an index, a mask); between floating dtypes it is the op implementing
        ``numpy.astype``, recorded."""
        target = np.dtype(dtype)
        if target == self._data.dtype and not copy:
            return self
        if not (self._requires_grad and _grad_mode.enabled) or target.kind != "f":
            return Tensor(self._data.astype(target))
        return _method(np.astype, self, target)

    def copy(self) -> Any:
        """As ``ndarray.copy``: the values in memory of their own; in the graph, with the gradient passing
        through unchanged."""
        if not (self._requires_grad and _grad_mode.enabled):
            return Tensor(self._data.copy())
        return apply("mul", self, 1)  # x * 1 is x exactly (-0.0, inf and nan included), in a new array

    def clip(self, min: Any = None, max: Any = None, **kwargs: Any) -> Any:
        return _method(np.clip, self, min, max, **kwargs)

    def sum(self, axis: Any = None, *, keepdims: bool = False, **kwargs: Any) -> Any:
        """Sum over ``axis`` (None: all), the op implementing ``numpy.sum`` (NumPy's other keywords, such as
        ``dtype=``, by keyword)."""
        return _method(np.sum, self, axis=axis, keepdims=keepdims, **kwargs)

    def mean(self, axis: Any = None, *, keepdims: bool = False, **kwargs: Any) -> Any:
        """Mean over ``axis`` (None: all), the op implementing ``numpy.mean``."""
        return _method(np.mean, self, axis=axis, keepdims=keepdims, **kwargs)

    def prod(self, axis: Any = None, **kwargs: Any) -> Any:
        return _method(np.prod, self, axis=axis, **kwargs)

    def min(self, axis: Any = None, **kwargs: Any) -> Any:
        return _method(np.min, self, axis=axis, **kwargs)

    def max(self, axis: Any = None, **kwargs: Any) -> Any:
        return _method(np.max, self, axis=axis, **kwargs)

    def var(self, axis: Any = None, **kwargs: Any) -> Any:
        return _method(np.var, self, axis=axis, **kwargs)

    def std(self, axis: Any = None, **kwargs: Any) -> Any:
        return _method(np.std, self, axis=axis, **kwargs)

    def cumsum(self, axis: Any = None, **kwargs: Any) -> Any:
        return _method(np.cumsum, self, axis=axis, **kwargs)

    def argmax(self, axis: Any = None, **kwargs: Any) -> Any:
        return _method(np.argmax, self, axis=axis, **kwargs)

    def argmin(self, axis: Any = None, **kwargs: Any) -> Any:
        return _method(np.argmin, self, axis=axis, **kwargs)

    def argsort(self, axis: Any = -1, **kwargs: Any) -> Any:
        return _method(np.argsort, self, axis=axis, **kwargs)

    def nonzero(self) -> Any:
        return _method(np.nonzero, self)

    def any(self, axis: Any = None, **kwargs: Any) -> Any:
        return _method(np.any, self, axis=axis, **kwargs)

    def all(self, axis: Any = None, **kwargs: Any) -> Any:
        return _method(np.all, self, axis=axis, **kwargs)

    @property
    def T(self) -> Any:
        """Every axis reversed, as ``ndarray.T``: a matrix's transpose; a 0-d or 1-D tensor itself."""
        if self._data.ndim < 2:
            return self
        if self._data.ndim == 2:
            return self.mT
        return _method(np.transpose, self)

    @property
    def mT(self) -> Any:
        """The last two axes swapped, as ``ndarray.mT`` (the op implementing ``numpy.matrix_transpose``)."""
        return _method(np.matrix_transpose, self)

    # --- indexing and in place -------------------------------------------------------------------------------------

    def __getitem__(self, index: Any) -> Tensor:
        """``t[index]`` for any index NumPy takes, the ``getitem`` op: an element read twice (``t[[0, 0]]``) gets
        both gradients."""
        return apply("getitem", self, index=_constant_index(index))

    def __setitem__(self, index: Any, value: Any) -> None:
        """``t[index] = value``, in place (see :func:`_in_place`), through the out-of-place op ``setitem``."""
        index = _constant_index(index)
        _in_place(self, "t[index] = value", "setitem", value, index=index)

    def __iadd__(self, other: Any) -> Tensor:
        return _in_place(self, "t += x", "add", other)

    def __isub__(self, other: Any) -> Tensor:
        return _in_place(self, "t -= x", "sub", other)

    def __imul__(self, other: Any) -> Tensor:
        return _in_place(self, "t *= x", "mul", other)

    def __itruediv__(self, other: Any) -> Tensor:
        return _in_place(self, "t /= x", "div", other)

    def __ipow__(self, other: Any) -> Tensor:
        return _in_place(self, "t **= x", "pow", other)

    def __getattr__(self, name: str) -> Any:
        """Only called for a name the class lacks: PyTorch's spellings get an error naming NumPy's."""
        instead = _TORCH_SPELLINGS.get(name)
        if instead is None:
            raise AttributeError(f"'Tensor' object has no attribute {name!r}")
        raise AttributeError(f"Tensor has NumPy's methods, not PyTorch's: instead of t.{name}, use {instead}")

    # --- backward -----------------------------------------------------------------------------------------------

    def backward(self, gradient: Any = None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into ``.grad`` of every leaf that requires it and reaches ``self``.

        ``gradient`` is d(loss)/d(self): omitted only for a single-element tensor (then 1). The graph is released
        afterwards, freeing what forward kept for backward, unless ``retain_graph``.
        """
        _backpropagate(self, _seed(self, gradient, "backward()"), retain_graph)


class _Size(int):
    """``t.size``: an int, as ``ndarray.size``, that answers torch's ``t.size()`` with an error naming ``t.shape``."""

    def __call__(self, *args: Any) -> Any:
        raise OpUsageError(
            "t.size is the number of elements, as ndarray.size (Tensor has NumPy's methods); for torch's t.size() "
            "use t.shape, for t.size(dim) t.shape[dim]"
        )


#: PyTorch spellings that ndarray lacks, each with NumPy's; ``t.<name>`` raises naming it.
_TORCH_SPELLINGS = {
    "view": "t.reshape(...)",
    "permute": "t.transpose(*axes)",
    "unsqueeze": "onp.expand_dims(t, axis) or t[None]",
    "dim": "t.ndim",
    "numel": "t.size",
    "clone": "t.copy()",
    "t": "t.T",
    "float": "t.astype(np.float32)",
    "double": "t.astype(np.float64)",
    "long": "t.astype(np.int64)",
    "add_": "t += x",
    "sub_": "t -= x",
    "mul_": "t *= x",
    "div_": "t /= x",
    "zero_": "t[...] = 0",
}

#: PyTorch keywords that NumPy spells otherwise.
_TORCH_KEYWORDS = {"dim": "axis", "keepdim": "keepdims"}


def _method(function: Any, *args: Any, **kwargs: Any) -> Any:
    """``ndarray``'s method of ``function``'s name: ``function(*args, **kwargs)`` dispatched as NumPy would
    dispatch it on a Tensor (:func:`numpy_call`); a PyTorch keyword raises naming NumPy's."""
    for torch_name, numpy_name in _TORCH_KEYWORDS.items():
        if torch_name in kwargs:
            raise OpUsageError(
                f"Tensor.{function.__name__} takes NumPy's keywords: {numpy_name}= rather than PyTorch's {torch_name}="
            )
    return numpy_call(function, function.__name__, "__call__", args, kwargs)


def _own_memory(result: Any, source: Tensor) -> Any:
    """``result`` with values in memory of their own, where they share ``source``'s (a view)."""
    if isinstance(result, Tensor) and np.shares_memory(result._data, source._data):
        result._data = result._data.copy()
    return result


def _values(x: Any) -> Any:
    """``x`` with every Tensor in it (in lists, tuples and dicts too) replaced by its array."""
    if isinstance(x, Tensor):
        return x._data
    if isinstance(x, list | tuple):
        return type(x)(_values(item) for item in x)
    if isinstance(x, dict):
        return {key: _values(value) for key, value in x.items()}
    return x


def _on_values(function: Any, *args: Any, **kwargs: Any) -> Any:
    """A function with no derivative (a comparison, a mask's logic) of Tensors' values: what NumPy returns on
    the arrays, a plain array outside the graph."""
    return function(*_values(args), **_values(kwargs))


def _leaves_graph_error(what: str, more: str = "") -> OpUsageError:
    return OpUsageError(
        f"{what} on a Tensor that requires gradients: the array would leave the graph, so what is computed from it "
        "gets no gradient, and writing to it would change the values backward reads; use t.detach().numpy() (or "
        f"t.data) for the values, or opreg.numpy functions to stay in the graph{more}"
    )


def _constant_index(index: Any) -> Any:
    """An index as the ``getitem`` and ``setitem`` ops take it: Tensors in it (integer positions, boolean masks)
    as their arrays; an index is a constant and gets no gradient."""
    return _values(index)


#: Whether any in-place change or detach_() replaced a tensor's graph: the backward pass then checks each node
#: for inputs that changed after it was recorded (:func:`_recorded_inputs`).
_rebound = False

#: Whether any tensor called retain_grad(): the backward pass then looks for them.
_retaining = False


def _stand_in(tensor: Tensor) -> Tensor:
    """A new Tensor holding ``tensor``'s array and graph: its value before an in-place change."""
    stand_in = Tensor.__new__(Tensor)
    stand_in._data, stand_in._grad = tensor._data, None
    stand_in._node, stand_in._requires_grad = tensor._node, tensor._requires_grad
    return stand_in


def _remember_former(tensor: Tensor, number: int, stand_in: Tensor) -> None:
    """Before ``tensor`` takes a new graph (an in-place change, detach_()), keep its old one, held by
    ``stand_in``: ops recorded before change ``number``, which read the old value, send their gradients there
    (:func:`_recorded_inputs`)."""
    global _rebound
    tensor._former = (*getattr(tensor, "_former", ()), (number, stand_in))
    _rebound = True


def _recorded_inputs(node: Node) -> None:
    """Point ``node``'s inputs that changed in place after it was recorded to the values it read: the stand-in of
    the first change after it. Called on every node by the backward pass once any tensor changed so."""
    changed = False
    inputs = list(node.inputs)
    for position, x in enumerate(inputs):
        former = getattr(x, "_former", None) if x is not None else None
        if former:
            for number, stand_in in former:
                if number > node.number:
                    inputs[position], changed = stand_in, True
                    break
    if changed:
        node.inputs = node.sources = tuple(inputs)


def _in_place(tensor: Tensor, what: str, name: str, other: Any, **attributes: Any) -> Tensor:
    """``tensor`` changed in place to op ``name`` of ``(tensor, other)``, with NumPy's semantics (the same shape;
    the values cast to the tensor's dtype as NumPy's ``same_kind`` casting allows).

    - A leaf that requires gradients: inside ``no_grad`` its array is updated (a manual optimizer step), raising
      its version, so that a backward still waiting to read the old values raises; outside, an error, as in
      PyTorch.
    - Recording (grad mode on, and the tensor or ``other`` requiring gradients): the op runs out of place and the
      tensor takes its result, array and graph; the old array is left as it was, and ops recorded before still
      read it and still send their gradients to the old graph (:func:`_recorded_inputs`). Arrays that shared the
      old memory keep the old values.
    - Otherwise (nothing to record): the values are written into the tensor's array, which views of it see, and
      its version goes up.
    """
    leaf = tensor._node is None
    if tensor._requires_grad and leaf and _grad_mode.enabled:
        raise OpUsageError(
            f"{what} on a leaf tensor that requires gradients would change a value the graph starts from; do it "
            "inside `with opreg.no_grad():` (a manual optimizer step), or on t.detach()"
        )
    recording = _grad_mode.enabled and (tensor._requires_grad or (isinstance(other, Tensor) and other._requires_grad))
    if not recording:
        with no_grad():
            result = apply(name, tensor, other, **attributes)
        _check_fits(tensor, result, what)
        np.copyto(tensor._data, result._data, casting="same_kind")
        versions.edited(tensor._data)
        return tensor
    stand_in = _stand_in(tensor)
    # t += t: both operands are the old value; the tensor itself would make the new graph read itself
    result = apply(name, stand_in, stand_in if other is tensor else other, **attributes)
    _check_fits(tensor, result, what)
    if result._data.dtype != tensor._data.dtype:
        raise OpUsageError(
            f"{what} on a {tensor._data.dtype} tensor gives {result._data.dtype}, which NumPy would cast back to "
            f"{tensor._data.dtype}; opreg records no such cast: pass x of the tensor's dtype (x.astype(...))"
        )
    if not leaf:
        _remember_former(tensor, cast(Node, result._node).number, stand_in)
    tensor._data, tensor._node, tensor._requires_grad = result._data, result._node, result._requires_grad
    return tensor


def _check_fits(tensor: Tensor, result: Tensor, what: str) -> None:
    if result._data.shape != tensor._data.shape:
        raise OpUsageError(
            f"{what}: the result has shape {result._data.shape}, and an in-place change keeps the tensor's shape "
            f"{tensor._data.shape} (NumPy: non-broadcastable output operand); write t = t + x to make a new tensor"
        )


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
    inputs: Tensor | Sequence[Tensor],
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
    One Tensor as ``inputs`` is a sequence of one, as in torch (never a sequence of its elements, which no graph
    holds).
    """
    if isinstance(inputs, Tensor):
        inputs = (inputs,)
    for position, x in enumerate(inputs):
        if not isinstance(x, Tensor):
            raise TypeError(
                f"grad() takes Tensors as inputs; input {position} is a {type(x).__name__}: pass the Tensors the "
                "output was computed from"
            )
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
    root: Tensor,
    seed: Any,
    retain_graph: bool,
    create_graph: bool = False,
    wanted: set[int] | None = None,
    floor: int = 0,
) -> dict[int, Any]:
    """Walk the graph from ``root`` back (:func:`opreg.backprop.backpropagate`), starting from the gradient
    ``seed``.

    Without ``wanted``, each leaf's gradient accumulates into its ``.grad``; with it, the complete gradients of
    the tensors whose ids it holds are returned by id instead. With ``create_graph``, gradients are Tensors and
    each op's backward runs on Tensors, recording what it does. Nodes numbered below ``floor`` are not walked:
    they were made before every wanted tensor, so none of them leads to one (:mod:`opreg.func` passes the number
    drawn when it made its inputs, so that an inner transform does not walk the outer one's graph).
    """
    paused = gcpause.pause()  # after a large graph was recorded: no automatic collection while it is walked
    try:
        leaves, made = _topological_order(root, floor)
        if paused is None and len(made) >= gcpause.EVERY:
            paused = gcpause.pause(len(made))  # a large graph: none while it is walked back
        if made and (versions.last_edit > made[0]._node.number or versions.fingerprinted):
            versions.check(tensor._node for tensor in made)
        retained = [t for t in made if getattr(t, "_retains", False)] if _retaining and wanted is None else []
        keep: bool | set[int] = wanted or ({id(t) for t in retained} if retained else False)
        if capture.active and (wanted is not None or create_graph or retained):
            capture.refuse("it asks for gradients as values (opreg.grad, opreg.func, retain_grad or create_graph)")
        # A large model's gradients are written into the last step's memory (opreg.reuse); not those asked for as
        # values (opreg.grad), nor a recorded backward's (create_graph).
        reusing = _steps.large and wanted is None and not (create_graph or capture.active)
        spares = _steps.spares if reusing else None
        grads = backpropagate(
            _releasing(made, retain_graph),
            {id(root): seed},
            keep=keep,
            graph_inputs=Node.graph_inputs if create_graph else None,
            spares=spares,
        )
    finally:
        if paused is not None:
            gcpause.resume(paused)
    if wanted is not None:
        _steps.backward_done(False)
        return {key: grads[key] for key in wanted if key in grads}
    for tensor in retained:  # retain_grad(): a non-leaf's gradient, kept as a leaf's is
        arrived = grads.pop(id(tensor), None)
        if arrived is not None:
            with object_lock(tensor):
                tensor._grad = _leaf_gradient(tensor._grad, _array_of(arrived))
    for leaf in leaves:
        arrived = grads.pop(id(leaf), None)
        if arrived is not None:
            if capture.active:
                capture.leaf(object_lock, leaf, arrived)
            with object_lock(leaf):  # another thread's backward may reach the same leaf
                leaf._grad = _leaf_gradient(leaf._grad, arrived, spares)
            arrived = None
    _steps.backward_done(reusing)
    return {}


def _array_of(value: Any) -> np.ndarray:
    return value._data if isinstance(value, Tensor) else value


def _releasing(made: list[Any], retain_graph: bool) -> Iterator[tuple[Any, Node]]:
    """``(tensor, node)`` for the tensors ops made, last first; each node released (unless ``retain_graph``) as
    the pass reaches it, so that what forward kept for backward is freed as it goes."""
    for tensor in reversed(made):
        node = tensor._node
        if not retain_graph:
            tensor._node = RELEASED
        # A Node, as _topological_order made sure, which the checker cannot follow; a check here would run per node.
        yield tensor, node


def _leaf_gradient(current: np.ndarray | None, arrived: np.ndarray, spares: Spares | None = None) -> np.ndarray:
    """A leaf's ``.grad`` after ``arrived`` reaches it: an array no one else can see, as the user may change it.

    One gradient array may reach several leaves (add passes its gradient to both inputs), so the first arrival is
    copied, unless nothing but this call refers to it (and ``spares``, which wrote it: :mod:`opreg.reuse`) and it
    is no view: PyTorch's AccumulateGrad makes the same reference-count test. That spares copying every weight's
    gradient on every step. A later arrival is added in place into a ``.grad`` that nothing else refers to either
    (the numbers of ``current + arrived``, in memory that stays the leaf's: ``zero_grad(set_to_none=False)``
    then backward makes no new array), and out of place otherwise.
    """
    # References: the caller's variable, this parameter and getrefcount's argument.
    if current is not None:
        if (
            type(current) is np.ndarray
            and type(arrived) is np.ndarray
            and current.base is None
            and current.shape == arrived.shape
            and current.flags.writeable
            and np.result_type(current, arrived) == current.dtype
            and sys.getrefcount(current) <= 3
        ):
            np.add(current, arrived, out=current)
            return current
        summed: np.ndarray = total(current, arrived)
        return summed
    if isinstance(arrived, np.ndarray) and arrived.base is None:
        references = sys.getrefcount(arrived)
        if references <= 3 or (references == 4 and spares is not None and spares.holds(arrived)):
            return arrived
    return arrived.copy()


capture.bind_tensor(Tensor, _leaf_gradient)


def _topological_order(root: Tensor, floor: int = 0) -> tuple[list[Tensor], list[Any]]:
    """The tensors that reach ``root`` and require gradients: the leaves, and the tensors ops made, each after
    all of its inputs (no recursion).

    Every Node is numbered when it is made, and its inputs existed before it, so ordering the results of ops by
    that number is a topological order; the leaves come first. Finding the tensors is a plain search, each tensor
    visited once, and the ordering is one sort in C: cheaper per tensor than a post-order depth-first search.
    """
    # (the node's number, the tensor, or an op's several outputs): numbers are unique, tensors never compared
    made: list[tuple[int, Any]] = []
    leaves: list[Tensor] = []
    visited = {id(root)}
    stack = [root]
    while stack:
        tensor = stack.pop()
        node = tensor._node
        if node is None:
            leaves.append(tensor)
            continue
        if floor and node is not RELEASED and node.number < floor:  # made before what is wanted: a constant here
            continue
        if type(node) is not Node:  # released, or the node of an op with several outputs
            if node is RELEASED:
                raise EngineStateError(
                    "backward() through a graph that an earlier backward() released; pass retain_graph=True to the "
                    "first backward() to go through it twice"
                )
            if id(node) in visited:  # reached through another of its outputs
                continue
            visited.add(id(node))
            outputs = _Outputs(cast(MultiNode, node).outputs)
            visited.update(id(t) for t in outputs)
            made.append((node.number, outputs))  # read as a Tensor is: its _node
        else:
            made.append((node.number, tensor))
        if _rebound:
            _recorded_inputs(node)
        for x in node.inputs:
            if x is not None and id(x) not in visited:
                visited.add(id(x))
                stack.append(x)
    made.sort()
    return leaves, [tensor for _, tensor in made]


def apply(name: str, *args: Any, **attributes: Any) -> Tensor | Any:
    """Run op ``name`` on Tensors, arrays or numbers, and record it when an input requires gradients."""
    try:
        op = TABLE[name]
    except KeyError:
        found = op_table().get(name)  # loads the plugins on first use
        if found is None:
            raise unknown_op_error(name) from None
        op = found
    return apply_op(op, args, attributes)


def apply_op(op: OpDef, args: Sequence[Any], attributes: Mapping[str, Any]) -> Tensor | Any:
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
        for x in args:
            if isinstance(x, Interceptor):  # a batched value (vmap), which stands for a Tensor
                return x.intercept(op, args, attributes)
        for position, x in enumerate(datas):  # a list with a Tensor in it: stacked by the recorded stack op
            if type(x) in (list, tuple) and holds_tensor(x):
                stacked = stack_sequence(x)
                if isinstance(stacked, Interceptor):
                    return cast(
                        "Tensor", stacked.intercept(op, [*args[:position], stacked, *args[position + 1 :]], attributes)
                    )
                datas[position] = stacked._data
                if stacked._requires_grad:
                    followed[position] = stacked
                    record = True
        datas = list(as_arrays(datas))
    observers = observe.current() if observe.active else ()
    result = Tensor.__new__(Tensor)  # without __init__'s conversions and checks: this is the hot path
    data = None
    position = -1
    if record and _steps.counting and _grad_mode.enabled and not (observers or capture.active):
        position = _steps.position  # a large model's: write into the last step's memory (opreg.reuse)
        _steps.position = position + 1
        data = forward_into(_steps.spares, _steps.plan, position, op, datas, attributes)
        if data is not None:
            saved = None
            _steps.large = True
    if data is None:
        data, saved = run_forward(op, datas, attributes, observers, False)  # False: one output (call_op: several)
        # an op with a forward_out has one output, an array
        if (
            op.forward_out is not None
            and record
            and data.nbytes >= REUSED_FROM
            and _grad_mode.enabled
            and not (observers or capture.active)
        ):
            _steps.large = True  # this step's backward reuses memory, and positions count from it on
            if 0 <= position < PLANNED_OPS:
                planned(_steps.plan, position, op, datas, attributes, data)
    if capture.active:
        capture.forward(op, args, datas, attributes, data, saved)
    result._data = data
    result._grad = None
    if record and _grad_mode.enabled:
        if data.dtype.kind == "c":
            raise complex_error(op, datas)
        result._requires_grad = True
        result._node = Node(op, tuple(followed), datas, data, attributes, saved, observers)
    else:
        result._requires_grad, result._node = False, None
    return result


def _call_several(op: OpDef, args: Sequence[Any], attributes: Mapping[str, Any]) -> tuple[Any, ...]:
    """:func:`call_op` for an op with several outputs: a tuple of arrays, or with a Tensor among the inputs a tuple
    of Tensors sharing one :class:`MultiNode` when recorded; an output that takes no gradient
    (``differentiable_outputs``) is a Tensor that requires none."""
    if len(args) > len(op.inputs):
        args, attributes = _positional_attributes(op, args, attributes)
    if attributes or op.attributes:
        attributes = op.bind_attributes(attributes)
    datas: list[Any] = []
    followed: list[Tensor | None] = []
    tensors_in = record = False
    args = [stack_sequence(x) if type(x) in (list, tuple) and holds_tensor(x) else x for x in args]
    for x in args:
        if isinstance(x, Interceptor):
            return cast("tuple[Any, ...]", x.intercept(op, args, attributes))
    for x in args:
        if isinstance(x, Tensor):
            tensors_in = True
            datas.append(x._data)
            followed.append(x if x._requires_grad else None)
            record = record or x._requires_grad
        else:
            datas.append(x)
            followed.append(None)
    observers = observe.current() if observe.active else ()
    datas = list(as_arrays(datas))
    outputs, saved = run_forward(op, datas, attributes, observers)
    if capture.active:
        capture.forward(op, args, datas, attributes, outputs, saved)
    if not tensors_in:
        return tuple(outputs)
    tensors = tuple(Tensor(data) for data in outputs)
    flags = op.output_flags(len(outputs))
    if record and _grad_mode.enabled:
        if any(output.dtype.kind == "c" for output in outputs):
            raise complex_error(op, datas)
        node = MultiNode(op, tuple(followed), datas, outputs, attributes, saved, observers)
        node.outputs = tuple(t if wanted else None for t, wanted in zip(tensors, flags, strict=True))
        for t, wanted in zip(tensors, flags, strict=True):
            if wanted:
                t._requires_grad = True
                t._node = node
    return tensors


def call_op(op: OpDef, args: Sequence[Any], attributes: Mapping[str, Any]) -> Any:
    """Op ``op`` on ``args``: its output array, or a Tensor (recorded as needed) when any input is a Tensor; for an
    op with several outputs, their tuple."""
    if len(args) > op.arity:  # attributes given by position; or a variadic op, or one with several outputs
        if op.multi:
            return _call_several(op, args, attributes)
        args, attributes = _positional_attributes(op, args, attributes)
    convert = False
    for x in args:
        if type(x) is not np.ndarray:
            if isinstance(x, Tensor):
                return apply_op(op, args, attributes)  # which hands a batched value among args to its intercept
            if isinstance(x, Interceptor):
                return x.intercept(op, args, attributes)
            convert = True
    if convert and any(type(x) in (list, tuple) and holds_tensor(x) for x in args):
        return apply_op(op, args, attributes)  # a list holding a Tensor: stacked, recorded
    if attributes or op.attributes:
        attributes = op.bind_attributes(attributes)
    if not convert and not op.saves and not observe.active and len(args) == op.arity:
        try:  # the common case, arrays and nothing else, in as few steps as possible: this runs inside backwards
            output = op.forward(*args, **attributes) if attributes else op.forward(*args)
        except Exception:
            pass  # run_forward below raises again, with the op named
        else:
            return output if type(output) is np.ndarray else np.asarray(output)
    if convert:
        args = as_arrays(args)
    return run_forward(op, args, attributes, observe.current() if observe.active else ())[0]


def call_as_numpy(function: Any, op: OpDef, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """NumPy's ``function`` (None where NumPy has no such name: the op's own spelling) called as
    ``function(*args, **kwargs)``, computed by ``op``, which declares it: its arguments read by NumPy's signature
    (:mod:`opreg.numpy_arguments`), through the op's ``numpy_call`` where it declares one."""

    def call(*args: Any, **kwargs: Any) -> Any:
        if function is None:
            return call_op(op, args, kwargs)
        return call_op(op, *numpy_arguments(function, op, args, kwargs))

    if op.numpy_call is None:
        return call(*args, **kwargs)
    try:
        return op.numpy_call(call, *args, **kwargs)
    except OpregError:  # from the op itself, named already
        raise
    except Exception as exc:  # the arguments, as NumPy's spelling reads them
        raise OpUsageError(f"{op.describe()}, called as numpy.{op.numpy[0]}: {exc}") from exc


def holds_tensor(sequence: Sequence[Any]) -> bool:
    """Whether a list or tuple (nested ones too) holds a Tensor: then it is stacked by an op, never converted to
    an array of numbers (which would drop the graph) or of objects."""
    return any(isinstance(x, Tensor | Interceptor) or (type(x) in (list, tuple) and holds_tensor(x)) for x in sequence)


def stack_sequence(sequence: Sequence[Any]) -> Tensor | Any:
    """A list or tuple holding Tensors (arrays, numbers, nested lists beside them) as one Tensor, made by the
    recorded ``stack`` op along a new first axis, as ``np.array`` nests it; its gradient reaches every Tensor."""
    items = [stack_sequence(x) if type(x) in (list, tuple) and holds_tensor(x) else x for x in sequence]
    return apply("stack", *items)


def _positional_attributes(
    op: OpDef, args: Sequence[Any], attributes: Mapping[str, Any]
) -> tuple[Sequence[Any], Mapping[str, Any]]:
    """Arguments past the inputs, as the attributes they stand for, in declared order. A variadic op's inputs
    are all its positional arguments."""
    if op.variadic:
        return args, attributes
    n = len(op.inputs)
    if len(args) <= n:
        return args, attributes
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

    A function whose results have no derivative (:data:`opreg.nondifferentiable.NON_DIFFERENTIABLE`: comparisons,
    ``isnan``, ``argmax``, ...) runs on the values and returns NumPy's plain arrays. Anything else no op implements
    raises, naming the function: computing it without its derivative would give a wrong gradient with no error.
    """
    if getattr(function, "__module__", None) == "numpy.linalg":  # np.linalg.inv: the op declaring "linalg.inv"
        name = f"linalg.{name}"
    op = numpy_op(name) if method == "__call__" else None
    if op is not None:
        return call_as_numpy(function, op, args, kwargs)
    if method == "__call__" and name in NON_DIFFERENTIABLE:
        return _on_values(function, *args, **kwargs)
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

    def apply(self, name: str, *inputs: Any, gradients_to_update: Any = None, **attributes: Any) -> Tensor | Any:
        return apply(name, *inputs, **attributes)


tensor_engine = TensorEngine()
