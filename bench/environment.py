"""What the numbers were measured on: versions, BLAS and its threads, OpenBLAS variables, CPUs, opreg's commit."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from trainers import autograd

import opreg

OPENBLAS_VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


def blas_info() -> list[dict[str, object]]:
    """threadpoolctl's view of the BLAS libraries loaded in this process (NumPy's, and any other)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"note": "threadpoolctl is not installed (pip install threadpoolctl)"}]
    keys = ("user_api", "internal_api", "version", "num_threads", "architecture", "threading_layer", "filepath")
    return [{k: pool.get(k) for k in keys} for pool in threadpool_info() if pool.get("user_api") == "blas"]


def numpy_blas_threads() -> int:
    """Threads of the BLAS NumPy links (what PyTorch is set to match); the CPU count if it cannot be told."""
    for pool in blas_info():
        if "numpy" in str(pool.get("filepath", "")) and pool.get("num_threads"):
            return int(pool["num_threads"])
    return os.cpu_count() or 1


def opreg_revision() -> str:
    """opreg's commit, with ``+dirty`` when opreg/ or plugins/ has uncommitted changes (it is being optimized)."""
    root = Path(opreg.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        status = subprocess.run(
            ["git", "status", "--porcelain", "opreg", "plugins"], cwd=root, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    return commit.stdout.strip() + ("+dirty" if status.stdout.strip() else "") if commit.returncode == 0 else "unknown"


class OtherLoad:
    """How many cores other processes kept busy, section by section: a benchmark on a shared 2-core machine is
    only as good as the quiet it ran in. From /proc/stat (the whole machine) minus this process's own CPU time."""

    def __init__(self) -> None:
        self.sections: dict[str, float] = {}
        self._last = self._snapshot()

    @staticmethod
    def _snapshot() -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
        own = os.times()
        return time.perf_counter(), busy, own.user + own.system

    @staticmethod
    def _cores(before: tuple[float, float, float] | None, after: tuple[float, float, float] | None) -> float:
        if before is None or after is None:
            return 0.0
        wall, busy, own = (a - b for a, b in zip(after, before, strict=True))
        return max(0.0, (busy - own) / wall) if wall > 0 else 0.0

    def mark(self, section: str) -> None:
        """Record the cores used by others since the previous mark, as the load during ``section``."""
        now = self._snapshot()
        self.sections[section] = self._cores(self._last, now)
        self._last = now

    def wait_idle(self, limit: float, quiet_seconds: int = 5, timeout: float = 900.0) -> bool:
        """Sleep until other processes have used less than ``limit`` cores for ``quiet_seconds`` seconds in a row
        (False if ``timeout`` seconds pass first). The wait is not counted in the next section."""
        deadline = time.perf_counter() + timeout
        quiet, previous = 0, self._snapshot()
        while quiet < quiet_seconds and time.perf_counter() < deadline:
            time.sleep(1.0)
            now = self._snapshot()
            quiet = quiet + 1 if self._cores(previous, now) < limit else 0
            previous = now
        self._last = self._snapshot()
        return quiet >= quiet_seconds

    def busiest(self) -> tuple[str, float]:
        return max(self.sections.items(), key=lambda item: item[1], default=("", 0.0))


def describe() -> dict[str, object]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "numpy": np.__version__,
        "blas": blas_info(),
        "environment_variables": {name: os.environ.get(name) for name in OPENBLAS_VARIABLES},
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "autograd": metadata.version("autograd") if autograd is not None else None,
        "opreg_revision": opreg_revision(),
    }
