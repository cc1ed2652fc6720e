"""Optimizers with PyTorch's arguments and update rules: SGD (momentum, Nesterov, weight decay), Adam, AdamW.

They update ``parameter.data`` in place from ``parameter.grad``, for Tensors and for tape-style parameters alike
(see :meth:`opreg.nn.Module.parameters`), and raise each parameter's version (:mod:`opreg.versions`): a graph
recorded before the step then refuses to backpropagate with the changed weights. A parameter whose gradient is
``None`` is skipped, as in PyTorch.
Hyperparameters are Python floats, so a float32 model is updated in float32.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from opreg.nn.module import Parameter, zero_grad_of
from opreg.versions import edited


class Optimizer:
    """The parameters, per-parameter state, and ``zero_grad``; subclasses define ``step``."""

    def __init__(self, parameters: Iterable[Parameter], lr: float, weight_decay: float) -> None:
        self.parameters = list(parameters)
        if not self.parameters:
            raise ValueError(
                f"{type(self).__name__} got an empty parameter list: does the model register its layers? A Module "
                "subclass must call super().__init__() and assign its layers as attributes (self.fc = Linear(...)); "
                "layers kept in a plain list or dict are not registered (use Sequential or ModuleList)"
            )
        if lr < 0 or weight_decay < 0:
            raise ValueError(f"lr and weight_decay must be non-negative, got lr={lr}, weight_decay={weight_decay}")
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.state: list[dict[str, Any]] = [{} for _ in self.parameters]

    def zero_grad(self) -> None:
        for parameter in self.parameters:
            zero_grad_of(parameter)

    def _with_gradients(self) -> Iterator[tuple[np.ndarray, np.ndarray, dict[str, Any]]]:
        """``(data, gradient, state)`` for each parameter that has a gradient, which the caller updates in place;
        the versions of those it was given are raised at the end, or when the step stops early."""
        updated = []
        try:
            for parameter, state in zip(self.parameters, self.state, strict=True):
                grad = parameter.grad  # read once: a tape parameter's is a property
                if grad is not None:
                    data = parameter.data
                    updated.append(data)
                    yield data, grad, state
        finally:
            edited(*updated)

    def step(self) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent, as ``torch.optim.SGD``.

    With momentum the buffer is ``b = momentum * b + (1 - dampening) * g`` (``g`` on the first step) and the step
    uses ``b``, or ``g + momentum * b`` with ``nesterov``; ``weight_decay`` adds ``weight_decay * p`` to ``g``.
    """

    def __init__(
        self,
        parameters: Iterable[Parameter],
        lr: float,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__(parameters, lr, weight_decay)
        if momentum < 0:
            raise ValueError(f"momentum must be non-negative, got {momentum}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening 0")
        self.momentum, self.dampening, self.nesterov = float(momentum), float(dampening), nesterov

    def step(self) -> None:
        for data, grad, state in self._with_gradients():
            if self.weight_decay:
                grad = grad + self.weight_decay * data
            if self.momentum:
                buffer = state.get("momentum_buffer")
                if buffer is None:
                    buffer = state["momentum_buffer"] = np.array(grad, copy=True)
                else:
                    buffer *= self.momentum
                    buffer += (1 - self.dampening) * grad
                grad = grad + self.momentum * buffer if self.nesterov else buffer
            data -= self.lr * grad


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam``; ``weight_decay`` is added to the gradient (L2), as there."""

    decoupled_weight_decay = False

    def __init__(
        self,
        parameters: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(parameters, lr, weight_decay)
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        if eps < 0:
            raise ValueError(f"eps must be non-negative, got {eps}")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)

    def step(self) -> None:
        beta1, beta2 = self.betas
        for data, grad, state in self._with_gradients():
            if self.decoupled_weight_decay:
                data *= 1 - self.lr * self.weight_decay
            elif self.weight_decay:
                grad = grad + self.weight_decay * data
            if not state:
                state.update(step=0, exp_avg=np.zeros_like(data), exp_avg_sq=np.zeros_like(data))
            state["step"] += 1
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            exp_avg *= beta1
            exp_avg += (1 - beta1) * grad
            exp_avg_sq *= beta2
            exp_avg_sq += (1 - beta2) * grad * grad
            bias_correction1 = 1 - beta1 ** state["step"]
            bias_correction2 = 1 - beta2 ** state["step"]
            denominator = np.sqrt(exp_avg_sq) / math.sqrt(bias_correction2) + self.eps
            data -= (self.lr / bias_correction1) * exp_avg / denominator


class AdamW(Adam):
    """AdamW, as ``torch.optim.AdamW``: weight decay shrinks the parameters directly (default 0.01)."""

    decoupled_weight_decay = True

    def __init__(
        self,
        parameters: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
    ) -> None:
        super().__init__(parameters, lr, betas, eps, weight_decay)
