"""Per-op cost by graph size: the chain ``y = y * c`` of the per-op rows (float64, 1 element), forward and backward,
for chains of 10 to 1,000,000 ops, with Python's cyclic garbage collector on, as it is in a user's program.

The other sections time with the collector off (:mod:`timing`), which hides what this group is about: every
recorded op leaves objects the collector tracks, and on a large graph its full collections walk them all, again
and again (see ``opreg/gcpause.py``). Here each repetition is one call, collected before it (untimed) and run with
the collector as Python sets it; per size, each implementation gets about ``seconds`` of repetitions, at least
``minimum`` of them (a 1,000,000-op chain takes seconds per call). NumPy's forward alone is the ratio base, as in
the per-op rows. The implementations take turns within each repetition, PyTorch apart (see :func:`timing.compare`).

``python bench/graph_size.py [--quick]`` runs this group alone and prints its table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable

import numpy as np
import perop
from report import Row, add_ratios, table
from timing import time_batch

SIZES = (10, 100, 1_000, 10_000, 100_000, 1_000_000)
IMPLEMENTATIONS = ("numpy", "opreg tape", "opreg Tensor", "torch")
APART = ("torch",)
BENCHMARK = "graph size, per-op forward+backward"
BATCH_SECONDS = 0.02  # short chains: calls per timed batch, so that a batch takes about this long


def chains(n_ops: int) -> dict[str, Callable[[], object]]:
    """The forward+backward call of each implementation (NumPy: forward) on a chain of ``n_ops``."""
    rng = np.random.default_rng(n_ops)
    x = rng.standard_normal(1)
    c = rng.uniform(0.99, 1.01, 1) ** (100 / n_ops)  # the product of the chain stays near x at every length
    found = perop.chains()
    calls = {}
    for name in IMPLEMENTATIONS:
        modes = found[name](x, c, n_ops)
        calls[name] = modes["forward"] if name == "numpy" else modes["forward+backward"]
    return calls


def bench_size(n_ops: int, seconds: float, minimum: int) -> list[Row]:
    """The rows of one chain length: microseconds per op, median over the repetitions."""
    calls = chains(n_ops)
    first = {
        name: time_batch(fn, 1, collector=True)[0] for name, fn in calls.items()
    }  # warm-up, and how long one call takes
    numbers = {name: max(1, round(BATCH_SECONDS / t)) for name, t in first.items()}
    repetitions = {name: max(minimum, min(30, round(seconds / (numbers[name] * t)))) for name, t in first.items()}
    samples: dict[str, list[float]] = {name: [] for name in calls}
    faults = dict.fromkeys(calls, 0)
    blocks = [[name for name in calls if name not in APART], *([name] for name in APART if name in calls)]
    for block in blocks:
        for i in range(max(repetitions[name] for name in block)):
            for name in block:
                if i < repetitions[name]:
                    t, f = time_batch(calls[name], numbers[name], collector=True)
                    samples[name].append(t / n_ops)
                    faults[name] += f
    rows = []
    for name, times in samples.items():
        q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else (times[0],) * 3
        details = {
            "median": statistics.median(times),
            "q1": q1,
            "q3": q3,
            "repetitions": len(times),
            "calls_per_repetition": numbers[name],
            "page_faults_per_call": faults[name] / (len(times) * numbers[name]),
            "collector": "on",
        }
        size = f"{n_ops:,} ops"
        rows.append(Row(BENCHMARK, size, "float64", name, statistics.median(times) * 1e6, "us/op", details=details))
    return rows


def bench_graph_size(seconds: float, minimum: int, sizes: tuple[int, ...] = SIZES) -> list[Row]:
    rows = []
    for n_ops in sizes:
        print(f"  graph size: {n_ops:,} ops", file=sys.stderr, flush=True)
        rows += bench_size(n_ops, seconds, minimum)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="the graph-size rows alone")
    parser.add_argument("--quick", action="store_true", help="about 0.5 s per size and implementation, 1 call at least")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="chain lengths, comma-separated")
    args = parser.parse_args()
    import environment
    import torch

    torch.set_num_threads(environment.numpy_blas_threads())
    sizes = tuple(int(s) for s in args.sizes.split(","))
    rows = bench_graph_size(0.5 if args.quick else 2.0, 1 if args.quick else 3, sizes)
    add_ratios(rows)
    print(table(rows))


if __name__ == "__main__":
    main()
