"""Memory of a training step, as ``tracemalloc`` sees it (NumPy reports its array buffers to it; PyTorch does not).

``peak_step`` starts tracing before the trainer is built, so the peak counts everything the implementation owns
(its copy of the weights, gradient arrays it keeps, optimizer state) plus what one step allocates on top; the
batch itself is allocated before tracing and counted by nobody. The step measured is the third: a compiled step
records its first two (``opreg.compile`` replays once two runs agree), and its steady state is the replay.

``flatness`` runs many steps and compares the memory still allocated after step 100 with that after the last step: a
recorded graph or tape that is not released, or gradients that pile up, shows as growth.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable

from trainers import Trainer

MB = 1024 * 1024
WARM_UP = 2  # steps before the one measured


def peak_step(build: Callable[[], Trainer]) -> tuple[str, dict[str, float]]:
    """The trainer's name, and in MB: ``peak`` during its third step, ``held`` (allocated before that step) and
    ``transient`` (peak - held)."""
    gc.collect()
    tracemalloc.start()
    try:
        trainer = build()
        for _ in range(WARM_UP):  # one-off state (lazily created buffers), and a compiled step's recordings
            trainer.step()
        gc.collect()
        tracemalloc.reset_peak()
        held = tracemalloc.get_traced_memory()[0]
        trainer.step()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return trainer.name, {"peak": peak / MB, "held": held / MB, "transient": (peak - held) / MB}


def flatness(build: Callable[[], Trainer], steps: int, first: int = 100) -> tuple[str, dict[str, float]]:
    """The trainer's name, and MB still allocated after step ``first`` and after step ``steps`` (each after a full
    collection), their difference, and the most allocated right after any step without a collection."""
    gc.collect()
    tracemalloc.start()
    try:
        trainer = build()
        most = 0
        for i in range(1, steps + 1):
            trainer.step()
            most = max(most, tracemalloc.get_traced_memory()[0])
            if i == first:
                gc.collect()
                at_first = tracemalloc.get_traced_memory()[0]
        gc.collect()
        at_end = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return trainer.name, {
        "steps": steps,
        "at_step": first,
        "mb_at_step": at_first / MB,
        "mb_at_end": at_end / MB,
        "growth_mb": (at_end - at_first) / MB,
        "max_between_mb": most / MB,
    }
