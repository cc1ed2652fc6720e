"""The optimizers, with PyTorch's arguments and update rules: SGD (momentum, Nesterov, weight decay), Adam and AdamW
(amsgrad), RMSprop (momentum, centered) and Adagrad (learning-rate decay).

They update ``parameter.data`` in place from ``parameter.grad``, for Tensors and for tape-style parameters alike
(see :meth:`opreg.nn.Module.parameters`), and raise each parameter's version (:mod:`opreg.versions`): a graph
recorded before the step then refuses to backpropagate with the changed weights. A parameter whose gradient is
``None`` is skipped, as in PyTorch (a tape parameter's gradient is an array, zeros until backward fills it, so it
is never skipped). Hyperparameters are read from ``param_groups`` at every step and are Python floats, so a
float32 model is updated in float32. ``maximize=True`` ascends, as torch's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from opreg import capture
from opreg.optim.optimizer import Optimizer
from opreg.versions import edited

#: Elements per piece of an update made a piece at a time (:func:`in_pieces`): 256 KiB of float32.
PIECE = 1 << 16


def in_pieces(update: Callable[..., None], *arrays: np.ndarray) -> None:
    """``update(*arrays)``, an elementwise update in place, made a piece of :data:`PIECE` elements at a time where
    the arrays are C-contiguous arrays of one shape that share no memory. The same numbers (each element's
    arithmetic is its own), but the update's temporaries are of one piece rather than of the whole parameter:
    made whole, they would add the largest parameter's size (a few of them, for Adam) to the step's peak on top of
    everything it holds at its end, and as memory malloc takes and gives back at every step they would be faulted
    in again a page at a time at every step (bench/README.md, "Page faults"). The pieces take no longer: their
    temporaries stay in cache."""
    first = arrays[0]
    if first.size <= PIECE or not _pieceable(arrays):
        update(*arrays)
        return
    flats = [array.reshape(-1) for array in arrays]
    for start in range(0, first.size, PIECE):
        update(*[flat[start : start + PIECE] for flat in flats])


def _pieceable(arrays: tuple[np.ndarray, ...]) -> bool:
    shape = arrays[0].shape
    for i, array in enumerate(arrays):
        if type(array) is not np.ndarray or array.shape != shape or not array.flags.c_contiguous:
            return False
        if any(np.may_share_memory(array, other) for other in arrays[:i]):
            return False
    return True


def _subtract_scaled(data: np.ndarray, scale: Any, grad: np.ndarray | np.generic) -> None:
    """``data -= scale * grad``, in pieces (:func:`in_pieces`)."""
    in_pieces(lambda d, g: np.subtract(d, scale * g, out=d), data, grad)  # type: ignore[arg-type]


def _check_betas(name: str, betas: Any) -> None:
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2 and all(0 <= b < 1 for b in betas)):
        raise ValueError(f"{name}: betas must be two numbers in [0, 1), got {betas}")


class _Stepping(Optimizer):
    """What every step does: each group's update (:meth:`_update`), given the list collecting the arrays it
    changes, whose versions are raised once at the end (or when the step stops early)."""

    def _with_gradients(
        self, group: dict[str, Any], updated: list[np.ndarray]
    ) -> Iterator[tuple[np.ndarray, np.ndarray, dict[str, Any]]]:
        """``(data, gradient, state)`` of each parameter of ``group`` that has a gradient, its data noted in
        ``updated`` as it is given out."""
        states = self.state
        for p in group["params"]:
            grad = p.grad  # read once: a tape parameter's is a property
            if grad is None:
                continue
            data = p.data
            updated.append(data)
            state = states.get(p)
            if state is None:
                state = states[p] = {}
            yield data, grad, state

    @capture.replayed
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One update of every parameter that has a gradient; ``closure`` (re-evaluating the loss) is called first
        when given, and its value returned, as torch's."""
        loss = closure() if closure is not None else None
        self._stepped = True
        updated: list[np.ndarray] = []
        try:
            for group in self.param_groups:
                self._update(group, updated)
        finally:
            edited(*updated)
        return loss

    def _update(self, group: dict[str, Any], updated: list[np.ndarray]) -> None:
        """Update ``group``'s parameters by its hyperparameters as they are now, noting each array changed in
        ``updated`` before changing it (:meth:`_with_gradients` does both)."""
        raise NotImplementedError


class SGD(_Stepping):
    """Stochastic gradient descent, as ``torch.optim.SGD``.

    With momentum the buffer is ``b = momentum * b + (1 - dampening) * g`` (``g`` on the first step) and the step
    uses ``b``, or ``g + momentum * b`` with ``nesterov``; ``weight_decay`` adds ``weight_decay * p`` to ``g``.
    """

    state_keys = frozenset({"momentum_buffer"})

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def check_group(self, group: Mapping[str, Any]) -> None:
        super().check_group(group)
        if not group["momentum"] >= 0:
            raise ValueError(f"SGD: momentum must be non-negative, got {group['momentum']}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD: Nesterov momentum needs momentum > 0 and dampening 0")

    def _update(self, group: dict[str, Any], updated: list[np.ndarray]) -> None:
        lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
        weight_decay, nesterov, maximize = group["weight_decay"], group["nesterov"], group["maximize"]
        if not (momentum or weight_decay or maximize):
            # Plain SGD, the common case, keeps no state: one loop, no generator (0.4 us less on 4 small parameters).
            # lr as a 0-d array of the gradients' float dtype: the value NumPy converts the Python float to anyway
            # (NEP 50), once per step rather than in every multiplication (0.3 us less on 4 small parameters)
            scale, dtype = lr, None
            for p in group["params"]:
                grad = p.grad  # read once: a tape parameter's is a property
                if grad is not None:
                    if grad.dtype is not dtype:
                        dtype = grad.dtype
                        scale = np.asarray(lr, dtype) if type(lr) is float and dtype.kind == "f" else lr
                    data = p.data
                    updated.append(data)
                    if data.size <= PIECE:  # in_pieces' own first case, without the calls (0.1 us each)
                        data -= scale * grad
                    else:
                        _subtract_scaled(data, scale, grad)
            return
        for data, grad, state in self._with_gradients(group, updated):
            buffer = state.get("momentum_buffer") if momentum else None
            first = bool(momentum) and buffer is None
            if first:  # the first step's buffer is the gradient itself (with weight decay, maximize)
                dtype = np.result_type(grad, data) if weight_decay else grad.dtype
                buffer = state["momentum_buffer"] = np.empty(np.shape(grad), dtype)

            def update(data: np.ndarray, grad: Any, *buffers: np.ndarray, first: bool = first) -> None:
                if maximize:
                    grad = -grad
                if weight_decay:
                    grad = grad + weight_decay * data
                if buffers:
                    (buffer,) = buffers
                    if first:
                        np.copyto(buffer, grad)
                    else:
                        buffer *= momentum
                        buffer += (1 - dampening) * grad
                    grad = grad + momentum * buffer if nesterov else buffer
                data -= lr * grad

            in_pieces(update, data, grad, *(() if buffer is None else (buffer,)))


class Adam(_Stepping):
    """Adam, as ``torch.optim.Adam``; ``weight_decay`` is added to the gradient (L2), or with
    ``decoupled_weight_decay`` shrinks the parameters directly (AdamW). ``amsgrad`` divides by the largest second
    moment seen so far (``max_exp_avg_sq``) instead of the current one."""

    state_keys = frozenset({"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"})

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "betas": tuple(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "decoupled_weight_decay": decoupled_weight_decay,
        }
        super().__init__(params, defaults)

    def check_group(self, group: Mapping[str, Any]) -> None:
        super().check_group(group)
        _check_betas(type(self).__name__, group["betas"])

    def _update(self, group: dict[str, Any], updated: list[np.ndarray]) -> None:
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        weight_decay, amsgrad, maximize = group["weight_decay"], group["amsgrad"], group["maximize"]
        decoupled = group["decoupled_weight_decay"]
        for data, grad, state in self._with_gradients(group, updated):
            if not state:
                state.update(step=0, exp_avg=np.zeros_like(data), exp_avg_sq=np.zeros_like(data))
                if amsgrad:
                    state["max_exp_avg_sq"] = np.zeros_like(data)
            state["step"] += 1
            bias_correction1 = 1 - beta1 ** state["step"]
            root2 = math.sqrt(1 - beta2 ** state["step"])
            arrays = [data, grad, state["exp_avg"], state["exp_avg_sq"]]
            if amsgrad:
                most = state.get("max_exp_avg_sq")
                if most is None:  # amsgrad switched on after steps without it: torch starts it from zero too
                    most = state["max_exp_avg_sq"] = np.zeros_like(data)
                arrays.append(most)

            def update(
                data: np.ndarray,
                grad: Any,
                exp_avg: np.ndarray,
                exp_avg_sq: np.ndarray,
                *most: np.ndarray,
                root2: float = root2,
                bias_correction1: float = bias_correction1,
            ) -> None:
                if maximize:
                    grad = -grad
                if weight_decay:
                    if decoupled:
                        data *= 1 - lr * weight_decay
                    else:
                        grad = grad + weight_decay * data
                exp_avg *= beta1
                exp_avg += (1 - beta1) * grad
                exp_avg_sq *= beta2
                exp_avg_sq += (1 - beta2) * grad * grad
                second = exp_avg_sq
                if most:  # amsgrad: the largest second moment seen so far
                    (second,) = most
                    np.maximum(second, exp_avg_sq, out=second)
                denominator = np.sqrt(second) / root2 + eps
                data -= (lr / bias_correction1) * exp_avg / denominator

            in_pieces(update, *arrays)


class AdamW(Adam):
    """AdamW, as ``torch.optim.AdamW``: weight decay shrinks the parameters directly (default 0.01)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize, decoupled_weight_decay=True)

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for group in self.param_groups:  # as torch's: AdamW always decouples
            group["decoupled_weight_decay"] = True


class RMSprop(_Stepping):
    """RMSprop, as ``torch.optim.RMSprop``: ``v = alpha * v + (1 - alpha) * g**2`` and the step divides ``g`` by
    ``sqrt(v) + eps``; ``centered`` subtracts the square of the mean gradient from ``v`` first (an estimate of the
    variance), and ``momentum`` keeps a buffer of those steps."""

    state_keys = frozenset({"step", "square_avg", "momentum_buffer", "grad_avg"})

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "alpha": alpha,
            "eps": eps,
            "centered": centered,
            "weight_decay": weight_decay,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def check_group(self, group: Mapping[str, Any]) -> None:
        super().check_group(group)
        for key in ("momentum", "alpha"):
            if not group[key] >= 0:
                raise ValueError(f"RMSprop: {key} must be non-negative, got {group[key]}")

    def _update(self, group: dict[str, Any], updated: list[np.ndarray]) -> None:
        lr, alpha, eps, momentum = group["lr"], group["alpha"], group["eps"], group["momentum"]
        weight_decay, centered, maximize = group["weight_decay"], group["centered"], group["maximize"]
        for data, grad, state in self._with_gradients(group, updated):
            if not state:
                state.update(step=0, square_avg=np.zeros_like(data))
            # from zeros at the first step, or when switched on later, as torch's (made only then: not a
            # parameter-sized array per step for setdefault to throw away)
            if momentum > 0 and "momentum_buffer" not in state:
                state["momentum_buffer"] = np.zeros_like(data)
            if centered and "grad_avg" not in state:
                state["grad_avg"] = np.zeros_like(data)
            state["step"] += 1
            arrays = [data, grad, state["square_avg"]]
            if centered:
                arrays.append(state["grad_avg"])
            if momentum > 0:
                arrays.append(state["momentum_buffer"])

            def update(data: np.ndarray, grad: Any, square_avg: np.ndarray, *more: np.ndarray) -> None:
                # more: grad_avg if centered, then the momentum buffer if momentum
                if maximize:
                    grad = -grad
                if weight_decay:
                    grad = grad + weight_decay * data
                square_avg *= alpha
                square_avg += (1 - alpha) * grad * grad
                if centered:
                    grad_avg = more[0]
                    grad_avg *= alpha
                    grad_avg += (1 - alpha) * grad
                    average = np.sqrt(square_avg - grad_avg * grad_avg)
                else:
                    average = np.sqrt(square_avg)
                average += eps
                if momentum > 0:
                    buffer = more[-1]
                    buffer *= momentum
                    buffer += grad / average
                    data -= lr * buffer
                else:
                    data -= lr * grad / average

            in_pieces(update, *arrays)


class Adagrad(_Stepping):
    """Adagrad, as ``torch.optim.Adagrad``: the squared gradients are summed (from
    ``initial_accumulator_value``) and the step divides by ``sqrt(sum) + eps``, with the learning rate
    ``lr / (1 + (step - 1) * lr_decay)``. Its state is made when it is built, as torch's (a state dict taken before
    the first step has every parameter's)."""

    state_keys = frozenset({"step", "sum"})

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
    ) -> None:
        defaults = {
            "lr": lr,
            "lr_decay": lr_decay,
            "eps": eps,
            "weight_decay": weight_decay,
            "initial_accumulator_value": initial_accumulator_value,
            "maximize": maximize,
        }
        super().__init__(params, defaults)

    def check_group(self, group: Mapping[str, Any]) -> None:
        super().check_group(group)
        for key in ("lr_decay", "initial_accumulator_value"):
            if not group[key] >= 0:
                raise ValueError(f"Adagrad: {key} must be non-negative, got {group[key]}")

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        for p in group["params"]:
            self.state[p] = {"step": 0, "sum": np.full_like(p.data, group["initial_accumulator_value"])}

    def _update(self, group: dict[str, Any], updated: list[np.ndarray]) -> None:
        lr, lr_decay, eps = group["lr"], group["lr_decay"], group["eps"]
        weight_decay, maximize = group["weight_decay"], group["maximize"]
        for data, grad, state in self._with_gradients(group, updated):
            if not state:  # a state dict loaded without this parameter's entry
                state.update(step=0, sum=np.full_like(data, group["initial_accumulator_value"]))
            state["step"] += 1
            clr = lr / (1 + (state["step"] - 1) * lr_decay)

            def update(data: np.ndarray, grad: Any, total: np.ndarray, clr: float = clr) -> None:
                if maximize:
                    grad = -grad
                if weight_decay:
                    grad = grad + weight_decay * data
                total += grad * grad
                data -= clr * grad / (np.sqrt(total) + eps)

            in_pieces(update, data, grad, state["sum"])
