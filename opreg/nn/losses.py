"""Losses, as modules recording registered ops, in both styles (an ``Autograd`` tape, or Tensors without one).

Argument order, per module (each docstring says it again):

- **PyTorch's order, ``criterion(input, target)``**: :class:`CrossEntropyLoss`, :class:`NLLLoss`, :class:`BCELoss`,
  :class:`BCEWithLogitsLoss`, :class:`L1Loss`, :class:`HuberLoss`, each with PyTorch's keywords (``reduction=``
  ``"mean"``, ``"sum"`` or ``"none"``, ``weight=``, ``ignore_index=``, ``label_smoothing=``, ``delta=``,
  ``pos_weight=``) and PyTorch's values and gradients.
- **The handout's order, targets first, ``criterion(y, y_hat)``**: :class:`SoftmaxCrossEntropy` (one-hot or
  probability rows ``y``, logits ``y_hat``). Arguments that cannot be in that order (``y`` rows that are not
  distributions, shapes that cannot match) are an error that names the order and points to
  :class:`CrossEntropyLoss`, never a quiet wrong loss.
- **Either order**: :class:`MSELoss` is the handout's ``criterion(y, y_hat)`` and PyTorch's ``criterion(input,
  target)`` at once, since ``(a - b) ** 2`` is symmetric: both operands get their gradients whichever comes first,
  and nothing is detected. So are :class:`L1Loss` and :class:`HuberLoss` (``|a - b|``).

Operands of different shapes are refused where PyTorch broadcasts them with a warning (``(N, 1)`` against ``(N,)``
is an ``(N, N)`` loss: a classic silent mistake). Integer class indices are constants. Each loss is one registered
op or a composition of them (``sub``, ``abs``, ``logsumexp``, ``log_sigmoid``, ``take_along_axis``, ``where``,
``sum``, ...), so its gradient differentiates again (``opreg.grad(..., create_graph=True)``) in the Tensor style.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from opreg import capture
from opreg.engine import Autograd
from opreg.errors import OpUsageError
from opreg.nn.module import Module, Value
from opreg.tensor import Tensor, TensorEngine

#: The reductions every loss takes, PyTorch's: the mean over the elements (or the weighted mean), the sum, or the
#: loss of each element.
REDUCTIONS = ("mean", "sum", "none")


def _values(x: Any) -> np.ndarray:
    """The values of an operand, for checks and constants: a Tensor's array, or the array itself."""
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def _check_engine(owner: str, engine: Any) -> None:
    """The first argument of a loss is its engine, as for every opreg module: PyTorch's first positional argument
    (``CrossEntropyLoss(weight)``) would land there, so anything else is refused, naming the keyword."""
    if engine is not None and not isinstance(engine, Autograd | TensorEngine):
        raise OpUsageError(
            f"{owner}'s first argument is the autograd engine (an opreg.Autograd, or None for Tensors), got "
            f"{type(engine).__name__}: pass the loss's options by keyword, e.g. {owner}(weight=w, reduction='sum')"
        )


def _same_shape(owner: str, input: Any, target: Any) -> None:
    """Refuse operands of different shapes: broadcast, they would make a loss over the wrong pairs."""
    a, b = np.shape(_values(input)), np.shape(_values(target))
    if a != b:
        raise OpUsageError(
            f"{owner}: input and target must have the same shape, got {a} and {b} (PyTorch would broadcast them "
            "into a loss over every pair, with a warning)"
        )


class _Loss(Module):
    """What every loss shares: the engine (first, as for every module) and ``reduction``."""

    def __init__(self, autograd_engine: Autograd | TensorEngine | None = None, *, reduction: str = "mean") -> None:
        _check_engine(type(self).__name__, autograd_engine)
        super().__init__(autograd_engine)
        if reduction not in REDUCTIONS:
            raise OpUsageError(
                f"{type(self).__name__}(reduction={reduction!r}): reduction must be one of "
                f"{', '.join(map(repr, REDUCTIONS))}"
            )
        self.reduction = reduction

    def op(self, name: str, *inputs: Any, **attributes: Any) -> Value:
        """Record op ``name`` on this module's engine."""
        result: Value = self.autograd_engine.apply(name, *inputs, **attributes)
        return result

    def reduce(self, losses: Value) -> Value:
        """The losses of each element, their sum or their mean, by ``reduction``."""
        return losses if self.reduction == "none" else self.op(self.reduction, losses)

    def extra_repr(self) -> str:
        """The options that differ from PyTorch's defaults, as ``repr`` shows them."""
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


# --- the handout's ---------------------------------------------------------------------------------------------------


def _is_one_hot(values: np.ndarray) -> bool:
    return values.ndim >= 1 and bool(((values == 0) | (values == 1)).all() and (values.sum(axis=-1) == 1).all())


_ORDER = (
    "SoftmaxCrossEntropy(y, y_hat) takes the labels first (the handout's order), then the logits; in PyTorch's "
    "order use opreg.nn.CrossEntropyLoss(logits, target)"
)

#: How far from 1 a row of probabilities may sum, by its floating dtype's itemsize (float16's sums are coarse);
#: float64 and wider: 1.5e-8. Integer rows must sum to 1 exactly.
_TOLERANCE = {2: 1e-3, 4: 3.5e-4}

#: Up to this many rows, Python's min and max of the row sums as a list beat three NumPy calls (by 1 us at 4 rows,
#: even at 48).
_LISTED_ROWS = 32


class SoftmaxCrossEntropy(Module):
    """The handout's loss, targets first: ``criterion(y, y_hat)``, the mean over the batch of the cross-entropy
    between the rows of ``y`` (one-hot, or probabilities) and ``softmax(y_hat)``, over the last axis.

    PyTorch's order, ``(logits, target)``, is :class:`CrossEntropyLoss`. Called so here, the logits would be taken
    for labels and the loss would be negative, with no gradient for the model: so ``y`` must be distributions
    (every value at least 0, each row summing to 1, to the dtype's precision) of ``y_hat``'s shape, and ``y_hat``
    must not be one-hot where ``y`` is not. Anything else is an :class:`~opreg.errors.OpUsageError` naming the order
    expected.
    """

    def forward(self, y: Value, y_hat: Value) -> Value:
        self.check_order(y, y_hat)
        return self.autograd_engine.apply("softmax_cross_entropy", y_hat, y)

    @staticmethod
    @capture.replayed_reading
    def check_order(y: Value, y_hat: Value) -> None:
        """:class:`~opreg.errors.OpUsageError` unless ``y`` can be the labels of ``y_hat`` (see the class).

        It runs at every step, a compiled one too (the labels may change in place), so the accepting path is three
        reductions and two elementwise calls on ``y`` (on a few rows, two reductions and Python's min and max), the
        ufuncs called directly (``a.min()`` goes through a Python function first), and one value of ``y_hat``:
        logits are one-hot only if every value is 0 or 1, so a first value that is neither settles it without a
        pass. About 2.8 us on 4 rows of 2 classes, 4.8 us on 64 rows of 10 (4.7 and 5.9 before)."""
        labels = y.data if isinstance(y, Tensor) else np.asarray(y)
        logits = y_hat.data if isinstance(y_hat, Tensor) else np.asarray(y_hat)
        if labels.shape != logits.shape:
            kind = "integer class indices" if labels.dtype.kind in "iub" else "labels"
            raise OpUsageError(
                f"{_ORDER}: y of shape {labels.shape} cannot be the {kind} of y_hat of shape {logits.shape} (one-hot "
                "or probability rows of y_hat's shape; class indices go to CrossEntropyLoss)"
            )
        if labels.size == 0:
            return
        floating = labels.dtype.kind == "f"
        tolerance = _TOLERANCE.get(labels.dtype.itemsize, 1.5e-8) if floating else 0.0
        # NaN fails both comparisons, inf the second; the distance is compared as a Python float (a NumPy float32
        # compared with a Python float would round the tolerance to float32)
        smallest = np.minimum.reduce(labels, axis=None)
        sums = np.add.reduce(labels, axis=-1, dtype=np.float32 if tolerance == 1e-3 else None)
        if floating and sums.size <= _LISTED_ROWS:
            # The same distance (s - 1 is exact in float32 too for s in [0.5, 2], and beyond both are over 0.5).
            # Python's max and min may pass over a NaN sum, but one comes of a NaN or -inf in y: smallest fails.
            listed = sums.ravel().tolist()
            distance = max(max(listed) - 1.0, 1.0 - min(listed))
        else:
            distance = float(np.maximum.reduce(np.absolute(sums - 1.0), axis=None))
        if smallest >= 0 and distance <= tolerance:
            one_hot_logits = logits.dtype.kind != "c" and logits.item(0) in (0, 1) and _is_one_hot(logits)
            if not one_hot_logits or _is_one_hot(labels):
                return
            problem = "is not one-hot while y_hat is: the arguments look swapped"
        elif floating and not np.isfinite(labels).all():
            problem = "has values that are not finite"
        elif smallest < 0:
            problem = f"has negative values (the smallest {smallest:.4g})"
        else:
            sums = labels.sum(axis=-1, dtype=np.float64)
            problem = f"has rows that do not sum to 1 (one sums to {sums.flat[np.argmax(np.abs(sums - 1))]:.6g})"
        raise OpUsageError(f"{_ORDER}: y {problem}, so it is not a distribution over classes")


class MSELoss(_Loss):
    """``(a - b) ** 2``, reduced: its mean over all elements (``reduction="mean"``, the default), sum, or each.

    Symmetric, so it takes the handout's order ``criterion(y, y_hat)`` and PyTorch's ``criterion(input, target)``
    alike: both operands get their gradients, whichever is first. Operands must have the same shape.
    The mean is the registered op ``mse``, as before; ``sum`` and ``none`` are ``square(a - b)``.
    """

    def forward(self, a: Value, b: Value) -> Value:
        if self.reduction == "mean":
            return self.op("mse", b, a)
        _same_shape(type(self).__name__, a, b)
        return self.reduce(self.op("square", self.op("sub", b, a)))


# --- PyTorch's order: (input, target) -------------------------------------------------------------------------------


class L1Loss(_Loss):
    """``|input - target|``, reduced, as ``torch.nn.L1Loss``; ``criterion(input, target)`` (symmetric: either
    order gives the same values and gradients). The gradient at ``input == target`` is 0, PyTorch's."""

    def forward(self, input: Value, target: Value) -> Value:
        _same_shape(type(self).__name__, input, target)
        return self.reduce(self.op("abs", self.op("sub", input, target)))


class HuberLoss(_Loss):
    """``d ** 2 / 2`` where ``|d| < delta``, else ``delta * (|d| - delta / 2)``, ``d = input - target``, reduced, as
    ``torch.nn.HuberLoss``; ``criterion(input, target)`` (symmetric). At ``|d| == delta`` the linear branch is
    taken, as PyTorch's: the gradient is ``delta * sign(d)`` there (equal to ``d``) and the second derivative 0."""

    def __init__(
        self, autograd_engine: Autograd | TensorEngine | None = None, *, reduction: str = "mean", delta: float = 1.0
    ) -> None:
        super().__init__(autograd_engine, reduction=reduction)
        if not float(delta) > 0:
            raise OpUsageError(f"HuberLoss(delta={delta!r}): delta must be positive")
        self.delta = float(delta)  # a Python float: an np.float64 would promote float32 operands

    def forward(self, input: Value, target: Value) -> Value:
        _same_shape(type(self).__name__, input, target)
        diff = self.op("sub", input, target)
        size = self.op("abs", diff)
        quadratic = self.op("mul", self.op("square", diff), 0.5)
        linear = self.op("mul", self.op("sub", size, 0.5 * self.delta), self.delta)
        inside = _values(size) < self.delta  # a constant: which branch each element takes
        return self.reduce(self.op("where", inside, quadratic, linear))

    def extra_repr(self) -> str:
        return ", ".join(filter(None, [super().extra_repr(), "" if self.delta == 1.0 else f"delta={self.delta!r}"]))


class _BinaryLoss(_Loss):
    """BCELoss's and BCEWithLogitsLoss's ``weight``: a constant multiplying each element's loss before the
    reduction (the mean stays over the elements, as PyTorch's), broadcast to the input's shape."""

    def __init__(
        self, autograd_engine: Autograd | TensorEngine | None = None, *, weight: Any = None, reduction: str = "mean"
    ) -> None:
        super().__init__(autograd_engine, reduction=reduction)
        self.weight = None if weight is None else np.array(_values(weight), copy=True)

    def weighted(self, losses: Value) -> Value:
        if self.weight is None:
            return self.reduce(losses)
        values = _values(losses)
        try:
            fits = np.broadcast_shapes(self.weight.shape, values.shape) == values.shape
        except ValueError:
            fits = False
        if not fits:
            raise OpUsageError(
                f"{type(self).__name__}: weight of shape {self.weight.shape} does not broadcast to the input's shape "
                f"{values.shape}"
            )
        return self.reduce(self.op("mul", losses, self.weight.astype(values.dtype, copy=False)))

    def extra_repr(self) -> str:
        weight = "" if self.weight is None else f"weight={self.weight.tolist()!r}"
        return ", ".join(filter(None, [super().extra_repr(), weight]))


class BCELoss(_BinaryLoss):
    """Binary cross-entropy of probabilities, ``-(t log(p) + (1 - t) log(1 - p))``, each log clamped at -100,
    times ``weight`` if given, reduced, as ``torch.nn.BCELoss``; ``criterion(input, target)``: probabilities
    first, then targets, both in [0, 1] and of one shape (anything else is an error, as in PyTorch). The
    registered op ``binary_cross_entropy``, with PyTorch's gradients where the clamp applies (at p = 0 or 1). For
    logits use :class:`BCEWithLogitsLoss`, finite at any logit."""

    def forward(self, input: Value, target: Value) -> Value:
        _same_shape(type(self).__name__, input, target)
        return self.weighted(self.op("binary_cross_entropy", input, target))


class BCEWithLogitsLoss(_BinaryLoss):
    """Binary cross-entropy from logits, ``(1 - t) x - w log(sigmoid(x))`` with ``w = 1 + (pos_weight - 1) t``,
    reduced, as ``torch.nn.BCEWithLogitsLoss``; ``criterion(input, target)``: logits first, then targets, of one
    shape. ``pos_weight`` (one weight per class, broadcast along the last axis) scales the positive term;
    ``weight`` each element's loss.

    ``log(sigmoid(x))`` is the registered op ``log_sigmoid``: finite at any logit, smooth to every order at 0 too.
    The target gets its gradient too, as in PyTorch.
    """

    def __init__(
        self,
        autograd_engine: Autograd | TensorEngine | None = None,
        *,
        weight: Any = None,
        reduction: str = "mean",
        pos_weight: Any = None,
    ) -> None:
        super().__init__(autograd_engine, weight=weight, reduction=reduction)
        self.pos_weight = None if pos_weight is None else np.array(_values(pos_weight), copy=True)

    def forward(self, input: Value, target: Value) -> Value:
        _same_shape(type(self).__name__, input, target)
        log_sigmoid = self.op("log_sigmoid", input)
        negative = self.op("mul", self.op("sub", 1.0, target), input)
        if self.pos_weight is None:
            return self.weighted(self.op("sub", negative, log_sigmoid))
        dtype = np.result_type(_values(input), _values(target))
        log_weight = self.op("add", self.op("mul", target, (self.pos_weight - 1).astype(dtype, copy=False)), 1.0)
        return self.weighted(self.op("sub", negative, self.op("mul", log_weight, log_sigmoid)))

    def extra_repr(self) -> str:
        weight = "" if self.pos_weight is None else f"pos_weight={self.pos_weight.tolist()!r}"
        return ", ".join(filter(None, [super().extra_repr(), weight]))


class _ClassLoss(_Loss):
    """NLLLoss's and CrossEntropyLoss's options and their target: class indices (or probabilities), class axis 1."""

    def __init__(
        self,
        autograd_engine: Autograd | TensorEngine | None = None,
        *,
        weight: Any = None,
        ignore_index: int = -100,
        reduction: str = "mean",
    ) -> None:
        super().__init__(autograd_engine, reduction=reduction)
        self.weight = None if weight is None else np.array(_values(weight), copy=True)
        if self.weight is not None and (self.weight.ndim != 1 or self.weight.dtype.kind != "f"):
            raise OpUsageError(
                f"{type(self).__name__}(weight=...): weight must be a 1-D float array, one weight per class; got "
                f"{self.weight.dtype} of shape {self.weight.shape}"
            )
        self.ignore_index = int(ignore_index)

    def class_axis(self, input: Any) -> int:
        """1, PyTorch's class axis, or 0 for one unbatched example of shape (C,)."""
        shape = np.shape(_values(input))
        if not shape:
            raise OpUsageError(f"{type(self).__name__}: input must have a class axis, got a 0-d input")
        return 0 if len(shape) == 1 else 1

    def class_weight(self, classes: int, dtype: np.dtype[Any]) -> np.ndarray:
        """The weight of each class, in the input's dtype (ones without ``weight``)."""
        if self.weight is None:
            return np.ones(classes, dtype)
        if self.weight.shape != (classes,):
            raise OpUsageError(
                f"{type(self).__name__}: weight has {self.weight.shape[0]} entries but the input has {classes} "
                "classes (along axis 1)"
            )
        return self.weight.astype(dtype, copy=False)

    def indices(self, input: Any, target: Any, axis: int) -> tuple[np.ndarray, np.ndarray]:
        """The checked class indices ``(safe, kept)``: the targets with ignored ones set to class 0, and where they
        are not ignored. A target that is not an integer array of the input's shape without the class axis, or a
        class out of range, is an error (PyTorch's), saying what was expected."""
        owner, shape = type(self).__name__, np.shape(_values(input))
        values = _values(target)
        expected = shape[:axis] + shape[axis + 1 :]
        if values.dtype.kind not in "iu":
            whole = values.dtype.kind == "f" and values.shape == expected
            hint = " (convert them with target.astype(int))" if whole else ""
            raise OpUsageError(
                f"{owner}: target must hold class indices, an integer array of shape {expected} for an input of shape "
                f"{shape} (class axis {axis}); got {values.dtype} of shape {values.shape}{hint}"
            )
        if values.shape != expected:
            raise OpUsageError(
                f"{owner}: class indices for an input of shape {shape} (class axis {axis}) have shape {expected}, "
                f"got {values.shape}"
            )
        kept = values != self.ignore_index
        classes = shape[axis]
        wrong = kept & ((values < 0) | (values >= classes))
        if wrong.any():
            raise OpUsageError(
                f"{owner}: target {values[wrong].flat[0]} is out of bounds for {classes} classes (0 to {classes - 1}; "
                f"ignore_index={self.ignore_index})"
            )
        return np.where(kept, values, 0), kept

    def nll(self, log_probabilities: Value, target: Value, axis: int, weight: np.ndarray) -> Value:
        """``-weight[t] * log_probabilities[t]`` per element (0 where ignored), reduced as PyTorch's nll_loss: the
        mean is weighted, over the sum of the targets' weights (NaN if every target is ignored, as PyTorch's)."""
        safe, kept = self.indices(log_probabilities, target, axis)
        picked = self.op("take_along_axis", log_probabilities, indices=np.expand_dims(safe, axis), axis=axis)
        picked = self.op("squeeze", picked, axis=axis)
        target_weight = np.where(kept, weight[safe], 0).astype(weight.dtype)  # constants: no gradient
        losses = self.op("neg", self.op("mul", picked, target_weight))
        if self.reduction == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                return self.op("div", self.op("sum", losses), target_weight.sum())
        return self.reduce(losses)

    def extra_repr(self) -> str:
        options = [super().extra_repr()]
        options.append("" if self.weight is None else f"weight={self.weight.tolist()!r}")
        options.append("" if self.ignore_index == -100 else f"ignore_index={self.ignore_index}")
        return ", ".join(filter(None, options))


class NLLLoss(_ClassLoss):
    """Negative log-likelihood, as ``torch.nn.NLLLoss``; ``criterion(input, target)``: log-probabilities of shape
    ``(N, C)`` or ``(N, C, d1, ...)`` (class axis 1; or ``(C,)`` for one example), then integer class indices of
    shape ``(N,)`` or ``(N, d1, ...)`` (or ``()``).

    ``weight`` (one per class) weights each element by its target's class, and ``reduction="mean"`` divides by the
    sum of those weights; targets equal to ``ignore_index`` count for nothing. A target that is not integer, of
    the wrong shape, or out of range is an error, as in PyTorch. Only the target's entry of each row is read, so a
    -inf log-probability elsewhere (``log(0)``) does not make the loss NaN.
    """

    def forward(self, input: Value, target: Value) -> Value:
        axis = self.class_axis(input)
        values = _values(input)
        return self.nll(input, target, axis, self.class_weight(values.shape[axis], values.dtype))


class CrossEntropyLoss(_ClassLoss):
    """Cross-entropy from logits, as ``torch.nn.CrossEntropyLoss``; ``criterion(input, target)``: logits of shape
    ``(N, C)`` or ``(N, C, d1, ...)`` (class axis 1, PyTorch's; or ``(C,)`` for one example), then either

    - **class indices**: an integer array of shape ``(N,)`` or ``(N, d1, ...)``; ``weight``, ``ignore_index`` and
      the weighted mean as :class:`NLLLoss`; or
    - **class probabilities**: a float array of the input's shape (``ignore_index`` does not apply; the mean is
      over the ``N * d1 * ...`` elements, as in PyTorch), which gets its gradient too.

    PyTorch's rule tells them apart: an integer target is indices, a float one probabilities. ``label_smoothing``
    in [0, 1] mixes the target with the uniform distribution, as PyTorch's. The handout's order, labels first,
    is :class:`SoftmaxCrossEntropy`'s (class axis last).

    The log-softmax is ``shifted - logsumexp(shifted, axis=1)``, ``shifted`` the input less its max (a constant),
    with the registered ops: finite and exact at any logit, as PyTorch's.
    """

    def __init__(
        self,
        autograd_engine: Autograd | TensorEngine | None = None,
        *,
        weight: Any = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(autograd_engine, weight=weight, ignore_index=ignore_index, reduction=reduction)
        if not 0.0 <= float(label_smoothing) <= 1.0:
            raise OpUsageError(f"CrossEntropyLoss(label_smoothing={label_smoothing!r}): it must be between 0 and 1")
        self.label_smoothing = float(label_smoothing)

    def forward(self, input: Value, target: Value) -> Value:
        axis = self.class_axis(input)
        values = _values(input)
        classes, smoothing = values.shape[axis], self.label_smoothing
        weight = self.class_weight(classes, values.dtype)
        log_probabilities = self.log_softmax(input, axis)
        if _values(target).dtype.kind == "f":
            return self.probabilities(log_probabilities, target, axis, weight)
        loss = self.nll(log_probabilities, target, axis, weight)
        if not smoothing:
            return loss
        # PyTorch's smoothing for indices: (1 - s) nll + s / C * the loss against the uniform distribution, which
        # is -sum_c weight[c] log_p[c] per element (0 where ignored), its mean over the targets' weights.
        safe, kept = self.indices(input, target, axis)
        shape = [1] * values.ndim
        shape[axis] = classes
        per_class = (weight.reshape(shape) * np.expand_dims(kept, axis)).astype(values.dtype)
        uniform = self.op("neg", self.op("sum", self.op("mul", log_probabilities, per_class), axis=axis))
        if self.reduction == "mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                uniform = self.op("div", self.op("sum", uniform), np.where(kept, weight[safe], 0).sum())
        else:
            uniform = self.reduce(uniform)
        return self.op("add", self.op("mul", loss, 1.0 - smoothing), self.op("mul", uniform, smoothing / classes))

    def log_softmax(self, input: Value, axis: int) -> Value:
        """``shifted - logsumexp(shifted)`` along ``axis``, ``shifted = input - max(input)``, as PyTorch's: the
        shift first keeps the result exact for large logits (``x - logsumexp(x)`` at 1e4 loses 1e-3 in float32).
        The max is a constant (its derivative cancels); an infinite max is not subtracted (inf - inf is NaN)."""
        values = _values(input)
        shift = np.max(values, axis=axis, keepdims=True, initial=-np.inf)
        shifted = self.op("sub", input, np.where(np.isfinite(shift), shift, 0).astype(values.dtype))
        return self.op("sub", shifted, self.op("logsumexp", shifted, axis=axis, keepdims=True))

    def probabilities(self, log_probabilities: Value, target: Value, axis: int, weight: np.ndarray) -> Value:
        """``-sum_c weight[c] target[c] log_p[c]`` per element, with smoothing, reduced; the mean over the
        elements (every class axis entry counted once), as PyTorch's."""
        shape, given = np.shape(_values(log_probabilities)), np.shape(_values(target))
        if given != shape:
            indices = shape[:axis] + shape[axis + 1 :]
            hint = ": if these are class indices, convert them with target.astype(int)" if given == indices else ""
            raise OpUsageError(
                f"CrossEntropyLoss: a float target is class probabilities, of the input's shape {shape}; got shape "
                f"{given} (class indices are an integer array of shape {indices}){hint}"
            )
        classes = shape[axis]
        if self.label_smoothing:
            target = self.op("add", self.op("mul", target, 1.0 - self.label_smoothing), self.label_smoothing / classes)
        broadcast = [1] * len(shape)
        broadcast[axis] = classes
        terms = self.op("mul", self.op("mul", log_probabilities, target), weight.reshape(broadcast))
        if self.reduction == "none":
            return self.op("neg", self.op("sum", terms, axis=axis))
        total = self.op("neg", self.op("sum", terms))
        if self.reduction == "sum":
            return total
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.op("div", total, float(np.prod(shape) // classes) if classes else np.nan)

    def extra_repr(self) -> str:
        smoothing = "" if not self.label_smoothing else f"label_smoothing={self.label_smoothing!r}"
        return ", ".join(filter(None, [super().extra_repr(), smoothing]))
