"""The GEMM limit: how fast this machine's NumPy multiplies matrices, and how long a step's matmuls alone take.

A Linear layer costs three matmuls per step: ``x @ W.T`` forward, ``dz.T @ x`` for ``dW`` and ``dz @ W`` for the
input's gradient, each ``2*m*n*k`` FLOPs. That is the count used here. The reference, PyTorch, autograd and
opreg's Tensor style skip the third matmul of the first layer (nobody needs the gradient of the data); opreg's
tape computes it (it keeps every gradient), so ``needed_gflop`` is given as well.
"""

from __future__ import annotations

import itertools

import numpy as np
from timing import compare


def gemm_rates(sizes: tuple[int, ...], dtypes: tuple[str, ...], repetitions: int) -> dict[str, dict[str, float]]:
    """GFLOP/s of ``a @ b`` for square ``n x n`` operands: ``{dtype: {str(n): rate}}``."""
    rng = np.random.default_rng(0)
    rates: dict[str, dict[str, float]] = {}
    for dtype in dtypes:
        for n in sizes:
            a, b = (rng.standard_normal((n, n)).astype(dtype) for _ in range(2))
            seconds = compare({"matmul": lambda a=a, b=b: a @ b}, repetitions, batch_seconds=0.02)["matmul"].median
            rates.setdefault(dtype, {})[str(n)] = 2 * n**3 / seconds / 1e9
    return rates


def step_matmuls(layer_sizes: list[int], batch: int) -> list[tuple[int, int, int]]:
    """``(m, k, n)`` of each matmul of one step, three per Linear layer: forward, dW, input gradient."""
    shapes = []
    for n_in, n_out in itertools.pairwise(layer_sizes):
        shapes += [(batch, n_in, n_out), (n_out, batch, n_in), (batch, n_out, n_in)]
    return shapes


def gflop(shapes: list[tuple[int, int, int]]) -> float:
    return sum(2 * m * k * n for m, k, n in shapes) / 1e9


def time_matmuls(shapes: list[tuple[int, int, int]], dtype: str, repetitions: int) -> float:
    """Seconds for NumPy to run exactly these matmuls, back to back, on random operands (transposes as views)."""
    rng = np.random.default_rng(0)
    operands = [
        (rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((n, k)).astype(dtype).T) for m, k, n in shapes
    ]

    def run() -> None:
        for a, b in operands:
            a @ b

    return compare({"matmuls": run}, repetitions, batch_seconds=0.02)["matmuls"].median


def step_limit(layer_sizes: list[int], batch: int, dtype: str, gflops: float, repetitions: int) -> dict[str, float]:
    """A step's matmul work: GFLOP (3 per Linear, and without the first layer's input gradient), the seconds
    they need at the square-GEMM rate ``gflops`` (GFLOP/s), and the seconds NumPy takes at their real shapes."""
    shapes = step_matmuls(layer_sizes, batch)
    total = gflop(shapes)
    return {
        "gflop": total,
        "needed_gflop": total - gflop(shapes[2:3]),
        "seconds_at_rate": total / gflops,
        "seconds_measured": time_matmuls(shapes, dtype, repetitions),
    }
