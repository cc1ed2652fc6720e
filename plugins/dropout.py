"""dropout_mask: the random mask of inverted dropout, drawn by an op, so that a compiled step draws it again.

``opreg.nn.Dropout`` computes ``mul(x, dropout_mask(x))``. The mask is a value in the graph like any other, and a
constant one: the op takes no gradient, so ``mul``'s rule gives ``g * mask`` to every order, in forward mode and
under vmap, with nothing saved. Why an op at all, and not a mask drawn in Python and multiplied in:
:func:`opreg.compile` replays a step's op calls, and an array made outside ops is a new constant at every run,
which a replay would freeze; drawn by an op declared ``draws=True``, a replay calls it again, drawing a new mask from
the same generator as the eager step does.

The design is PyTorch's (``torch.nn.functional.dropout``: a stateful generator) rather than JAX's (a key passed in
as an argument, split by the caller at every step), so that ``opreg.nn.Dropout(p, rng=generator)`` keeps its API and
its numbers. The attribute ``rng`` is

- ``None``: the default generator (:func:`opreg.random.generator`), looked up at every call, so that a replay sees
  ``opreg.manual_seed`` called between steps (it replaces that generator);
- a :class:`numpy.random.Generator`: drawn from at every call (a replay holds the generator itself, not a copy);
- a whole number: a seed, the same mask at every call, a pure function of ``x``'s shape: what the checks need, as
  they call forward many times.

The mask is 0 with probability ``p`` and ``1 / (1 - p)`` elsewhere, in x's dtype (float64 for integers), drawn as
``generator.random(x.shape) >= p``; ``p`` 0 and 1 draw nothing (ones; zeros, so that ``x * mask`` is NaN where x is
infinite, as torch's).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from opreg.plugin import Register, Sample, generator, hookimpl


def _mask(x: np.ndarray, *, p: float = 0.5, rng: Any = None) -> np.ndarray:
    """0 where ``generator.random(x.shape) >= p`` fails, else 1 / (1 - p), in x's float dtype."""
    real = type(p) is float or (isinstance(p, numbers.Real) and not isinstance(p, bool))  # float first: 0.4 us less
    if not real or not 0 <= p <= 1:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p!r}")
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    if p == 0 or p == 1:
        return np.full(x.shape, 1 - p, dtype)
    keep = _generator(rng).random(x.shape) >= p
    return np.asarray(keep.astype(dtype) * np.asarray(1 / (1 - p), dtype=dtype))  # 0-d x: a NumPy scalar otherwise


def _generator(rng: Any) -> np.random.Generator:
    if rng is None or isinstance(rng, np.random.Generator):
        return generator(rng)
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise ValueError(f"rng must be None, a numpy.random.Generator or a whole-number seed, not {rng!r}")


def _no_gradient(g: Any, x: Any) -> tuple[None]:
    """The mask depends on x's shape only: nothing flows back to x."""
    return (None,)


def _samples(rng: np.random.Generator) -> list[Sample]:
    """Fixed seeds, so that forward is the same function at every call, as the checks need; masks that both keep
    and drop some elements (tests/test_dropout.py checks the seeds), p at 0 and 1, and an integer x."""
    return [
        Sample(rng.standard_normal((3, 4)), p=0.5, rng=11),
        Sample(rng.standard_normal((2, 3, 5)), p=0.2, rng=12),
        Sample(rng.standard_normal((4,)), p=1.0, rng=13),
        Sample(rng.standard_normal((2, 2)), p=0.0, rng=14),
    ]


def _torch_mask(torch: Any) -> Any:
    """The mask drawn from the same seed as the op draws it (torch's own generator draws other numbers)."""

    def dropout_mask(x: Any, p: float = 0.5, rng: Any = None) -> Any:
        keep = np.random.default_rng(rng).random(tuple(x.shape)) >= p
        return torch.as_tensor(keep, dtype=x.dtype) * (0.0 if p == 1 else 1 / (1 - p))

    return dropout_mask


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="dropout_mask",
        inputs=("x",),
        forward=_mask,
        backward=_no_gradient,
        differentiable=(),
        draws=True,
        sample_inputs=_samples,
        doc=(
            "The mask of inverted dropout for x: 0 with probability p, else 1 / (1 - p), in x's shape and float "
            "dtype, drawn from rng (None: the default generator; a Generator; a whole-number seed: the same mask at "
            "every call); no gradient."
        ),
        reference=_torch_mask,
    )
