"""Timing several callables side by side: warm-up, calibrated batches of calls, interleaved repetitions, medians.

Each repetition times a batch of ``number`` calls with ``time.perf_counter`` and records the time per call. The
candidates take turns within every repetition (except those that must run apart, see :func:`compare`), so a slow
drift of the machine (another process, frequency scaling) affects all of them alike rather than whichever happened
to run last. The cyclic garbage collector is disabled while a batch runs and re-enabled, with a collection,
between batches; the objects that exist when timing starts (PyTorch's alone are hundreds of thousands) are frozen
out of those collections, which would otherwise take a tenth of a second each.
"""

from __future__ import annotations

import gc
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Timing:
    """Seconds per call: the median and quartiles over the repetitions, and how they were taken."""

    median: float
    q1: float
    q3: float
    repetitions: int
    calls_per_repetition: int
    #: Minor page faults per call, over all repetitions: memory the allocator returned to the system and fetched
    #: again. Each costs about a microsecond, and they can decide a large step's time (see bench/README.md).
    page_faults_per_call: float

    def as_dict(self) -> dict[str, float | int]:
        return dict(vars(self))


def time_batch(fn: Callable[[], object], number: int, collector: bool = False) -> tuple[float, int]:
    """Seconds per call of ``fn`` over ``number`` calls, with the cyclic collector off (on with ``collector``:
    the graph-size rows measure what it costs), and the minor page faults the batch took; collected (untimed)
    before."""
    gc.collect()
    if not collector:
        gc.disable()
    try:
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        for _ in range(number):
            fn()
        seconds = (time.perf_counter() - start) / number
        return seconds, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    finally:
        if not collector:
            gc.enable()


def calibrate(fn: Callable[[], object], batch_seconds: float, warmup_seconds: float) -> int:
    """Warm ``fn`` up for about ``warmup_seconds``, then the number of calls that take about ``batch_seconds``."""
    fn()
    deadline = time.perf_counter() + warmup_seconds
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() < deadline:
        fn()
        calls += 1
    per_call = (time.perf_counter() - start) / calls
    return max(1, round(batch_seconds / per_call))


def compare(
    candidates: dict[str, Callable[[], object]],
    repetitions: int,
    batch_seconds: float,
    warmup_seconds: float = 0.2,
    separate: tuple[str, ...] = (),
) -> dict[str, Timing]:
    """Time every candidate ``repetitions`` times, taking turns; ``batch_seconds`` sets each batch's length.

    The candidates named in ``separate`` do not take turns with the others: each is timed in a block of its own
    afterwards, after its warm-up. That is for a library with its own thread pool (PyTorch's OpenMP threads beside
    NumPy's OpenBLAS threads): both pools spin for a while after each call, and on a machine with few cores,
    alternating call by call makes each pool's spinning threads slow the other library down several times.
    """
    together = {name: fn for name, fn in candidates.items() if name not in separate}
    timings = _take_turns(together, repetitions, batch_seconds, warmup_seconds) if together else {}
    for name in separate:
        if name in candidates:
            timings |= _take_turns({name: candidates[name]}, repetitions, batch_seconds, warmup_seconds)
    return {name: timings[name] for name in candidates}


def _take_turns(
    candidates: dict[str, Callable[[], object]], repetitions: int, batch_seconds: float, warmup_seconds: float
) -> dict[str, Timing]:
    numbers = {name: calibrate(fn, batch_seconds, warmup_seconds) for name, fn in candidates.items()}
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    faults = dict.fromkeys(candidates, 0)
    names = list(candidates)
    gc.collect()
    gc.freeze()
    try:
        for repetition in range(repetitions):
            # The order turns by one each repetition, so that each candidate follows each other one equally often:
            # what ran just before (its memory, the caches it left) moved an MNIST step by several percent.
            turn = repetition % len(names)
            for name in names[turn:] + names[:turn]:
                fn = candidates[name]
                seconds, batch_faults = time_batch(fn, numbers[name])
                samples[name].append(seconds)
                faults[name] += batch_faults
    finally:
        gc.unfreeze()
    timings = {}
    for name, times in samples.items():
        q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive")
        per_call = faults[name] / (repetitions * numbers[name])
        timings[name] = Timing(statistics.median(times), q1, q3, repetitions, numbers[name], per_call)
    return timings
