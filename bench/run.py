"""opreg's benchmark suite: ``python bench/run.py [--quick] [--out bench/results]``; see bench/README.md.

In one process, side by side: an MLP training step at four sizes, per-operation overhead and how it grows with the
graph's size (10 to 1,000,000 ops, the garbage collector on), peak memory and its flatness over many steps, the
GEMM limit, and the environment. Every implementation is checked against the NumPy reference before anything is
timed. Prints a table; writes ``<out>.json`` and ``<out>.png``.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import environment
import gemm
import graph_size
import memory
import numpy as np
import numpy_heavy
import per_example
import perop
import torch
import trainers
from numpy_reference import init_params
from report import Row, add_ratios, plot, table, write_json
from timing import compare

import opreg

LR = 0.01
TOLERANCE = {"float64": 1e-6, "float32": 1e-3}


@dataclass(frozen=True)
class StepCase:
    name: str
    layer_sizes: list[int]
    batch: int
    dtype: str
    large: bool = False

    @property
    def size(self) -> str:
        return f"{self.name} {'-'.join(map(str, self.layer_sizes))} b{self.batch}"

    def data(self) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        """Initial weights, a batch of random inputs and one-hot targets: the same for every implementation."""
        rng = np.random.default_rng([len(self.layer_sizes), self.batch])
        params = init_params(self.layer_sizes, rng, np.dtype(self.dtype))
        x = rng.standard_normal((self.batch, self.layer_sizes[0])).astype(self.dtype)
        classes = self.layer_sizes[-1]
        y = np.eye(classes, dtype=self.dtype)[rng.integers(0, classes, self.batch)]
        return params, x, y


# "tiny" has 2 outputs and softmax cross-entropy (2 classes), like every other size, rather than 1 output and MSE.
STEP_CASES = [
    StepCase("tiny", [4, 8, 2], 4, "float64"),
    StepCase("digits", [64, 128, 10], 64, "float64"),
    StepCase("mnist", [784, 512, 256, 10], 256, "float32", large=True),
    StepCase("mnist", [784, 512, 256, 10], 256, "float64", large=True),
]
MEMORY_CASE = STEP_CASES[2]  # MNIST-sized, float32
PER_OP_SIZES = (1, 10)
N_OPS = 100
APART = ("torch",)  # timed in a block of its own: see timing.compare
BUSY_CORES = 0.2  # other processes using more than this, on average in a section, make the run unreliable
ATTEMPTS = 3  # with --wait-idle, how many times a disturbed section is run
T = TypeVar("T")
NOTES = [
    "ratios are to NumPy in the same group; per-op ratios are to NumPy's forward (NumPy has no backward)",
    "torch is timed in its own block, not taking turns with the NumPy-based implementations (thread pools)",
    "'matmuls alone' runs just the step's matmuls (3 per Linear) at their real shapes; 'GEMM-rate floor' is their "
    "FLOPs at the 1024x1024 rate",
    "peak memory: tracemalloc, weights + kept state + one step's allocations; torch is invisible to it",
    "graph size: per-op forward+backward of chains of 10 to 1,000,000 ops with the garbage collector on, as in a "
    "user's program (every other row times with it off); ratios to NumPy's forward at that length",
]


@dataclass(frozen=True)
class Settings:
    """How long to measure: ``repetitions`` timed batches of about ``batch_seconds`` each (large steps: one call)."""

    repetitions: int
    large_repetitions: int
    batch_seconds: float
    flatness_steps: int
    #: graph size rows (:mod:`graph_size`): seconds of repetitions per size and implementation, and at least how
    #: many (a 1,000,000-op chain takes seconds per call)
    graph_seconds: float
    graph_repetitions: int


FULL = Settings(
    repetitions=100,
    large_repetitions=50,
    batch_seconds=0.01,
    flatness_steps=2000,
    graph_seconds=2.0,
    graph_repetitions=3,
)
QUICK = Settings(
    repetitions=30,
    large_repetitions=30,
    batch_seconds=0.003,
    flatness_steps=200,
    graph_seconds=0.5,
    graph_repetitions=1,
)


_START = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - _START:5.0f} s] {message}", file=sys.stderr, flush=True)


#: Steps every implementation takes before its weights are compared with the reference's.
CHECKED_STEPS = 3


def check_steps(case: StepCase) -> dict[str, dict[str, float]]:
    """Run three steps in every implementation and compare with the reference's; abort on a mismatch. Three, so
    that a compiled step (recorded on its first two calls) is checked replaying too.

    Each weight array must keep the reference's dtype and match it within ``rtol`` (1e-6 float64, 1e-3 float32)
    and ``atol = rtol * max|array|``, so entries near 0 are not held to a relative error of rounding noise. The
    weights are compared, and so are the updates (new - initial weights): an update is only lr times a gradient,
    so a wrong gradient can hide in the weights but not in the updates. Returns each implementation's largest
    error of either, relative to the array's largest entry.
    """
    params, x, y = case.data()
    reference = trainers.numpy_trainer(params, x, y, LR)
    for _ in range(CHECKED_STEPS):
        reference.step()
    rtol = TOLERANCE[case.dtype]
    errors, problems = {}, []
    for build in trainers.builders()[1:]:
        trainer = build(params, x, y, LR)
        for _ in range(CHECKED_STEPS):
            trainer.step()
        errors[trainer.name] = {"weights": 0.0, "updates": 0.0}
        for i, (got, want, initial) in enumerate(zip(trainer.weights(), reference.weights(), params, strict=True)):
            if got.dtype != want.dtype:
                problems.append(f"{trainer.name}, parameter {i}: {got.dtype}, not {want.dtype}")
                continue
            for what, a, b in (("weights", got, want), ("updates", got - initial, want - initial)):
                scale = float(np.abs(b).max())
                if not np.allclose(a, b, rtol=rtol, atol=rtol * scale):
                    problems.append(f"{trainer.name}, parameter {i} {want.shape}: {what}")
                error = float(np.abs(a - b).max()) / scale
                errors[trainer.name][what] = max(errors[trainer.name][what], error)
    if problems:
        sys.exit(
            f"correctness check failed for {case.size} {case.dtype}: after {CHECKED_STEPS} steps these differ from "
            "the NumPy reference's:\n  " + "\n  ".join(problems)
        )
    return errors


def bench_steps(case: StepCase, settings: Settings) -> list[Row]:
    params, x, y = case.data()
    candidates = {t.name: t.step for t in (build(params, x, y, LR) for build in trainers.builders())}
    repetitions = settings.large_repetitions if case.large else settings.repetitions
    timings = compare(candidates, repetitions, 0.0 if case.large else settings.batch_seconds, separate=APART)
    return [
        Row("train step", case.size, case.dtype, name, t.median * 1e3, "ms", details=t.as_dict())
        for name, t in timings.items()
    ]


def bench_gemm_limit(case: StepCase, rates: dict[str, dict[str, float]], repetitions: int) -> list[Row]:
    """The step's matmuls at the 1024x1024 GEMM rate, and measured at their real shapes, as rows of its group."""
    limit = gemm.step_limit(case.layer_sizes, case.batch, case.dtype, rates[case.dtype]["1024"], repetitions)
    group = ("train step", case.size, case.dtype)
    return [
        Row(*group, "matmuls alone", limit["seconds_measured"] * 1e3, "ms", details=limit),
        Row(*group, "GEMM-rate floor", limit["seconds_at_rate"] * 1e3, "ms", details=limit),
    ]


def bench_per_op(size: int, settings: Settings) -> list[Row]:
    rng = np.random.default_rng(size)
    x = rng.standard_normal(size)
    c = rng.uniform(0.99, 1.01, size)  # 100 products stay near x
    modes: dict[str, dict[str, object]] = {}
    for name, chain in perop.chains().items():
        for mode, fn in chain(x, c, N_OPS).items():
            modes.setdefault(mode, {})[name] = fn
    rows = []
    for mode, candidates in modes.items():
        if mode != "forward":
            candidates = {"numpy": modes["forward"]["numpy"], **candidates}  # the ratios' reference, timed alongside
        group = (f"per-op {mode}", f"{size} element(s)", "float64")
        for name, t in compare(candidates, settings.repetitions, settings.batch_seconds, separate=APART).items():
            rows.append(Row(*group, name, t.median / N_OPS * 1e6, "us/op", details=t.as_dict()))
    return rows


def bench_numpy_heavy(X: np.ndarray, y: np.ndarray, theta: np.ndarray, settings: Settings) -> list[Row]:
    """The GP likelihood's gradient (:mod:`numpy_heavy`), each library's, against NumPy's forward alone."""
    group = ("GP likelihood gradient", f"{X.shape[0]} points", "float64")
    candidates = numpy_heavy.implementations(X, y, theta)
    timings = compare(candidates, settings.repetitions, settings.batch_seconds, separate=APART)
    return [Row(*group, name, t.median * 1e3, "ms", details=t.as_dict()) for name, t in timings.items()]


def bench_per_example(settings: Settings) -> list[Row]:
    """Per-example gradients of the digits MLP (:mod:`per_example`): loops of backward passes and ``vmap(grad)``,
    against the hand-written NumPy reference."""
    params, x, y = per_example.data()
    group = (
        "per-example gradients",
        f"digits {'-'.join(map(str, per_example.LAYERS))} b{per_example.BATCH}",
        "float64",
    )
    candidates = per_example.implementations(params, x, y)
    timings = compare(
        candidates, settings.repetitions, settings.batch_seconds, separate=("torch loop", "torch.func vmap")
    )
    return [Row(*group, name, t.median * 1e3, "ms", details=t.as_dict()) for name, t in timings.items()]


def bench_memory(case: StepCase, steps: int) -> tuple[list[Row], dict[str, object]]:
    params, x, y = case.data()
    rows = []
    for build in trainers.builders():
        if build is trainers.torch_trainer:
            continue  # PyTorch's allocator does not report to tracemalloc: its numbers would be near zero
        name, measured = memory.peak_step(lambda build=build: build(params, x, y, LR))
        rows.append(Row("peak memory", case.size, case.dtype, name, measured["peak"], "MB", details=measured))
    flat = {}
    for build in (trainers.opreg_tape_trainer, trainers.opreg_tensor_trainer):
        log(f"  flatness: {steps} steps of {build.__name__}")
        name, result = memory.flatness(lambda build=build: build(params, x, y, LR), steps)
        flat[name] = result
    return rows, flat


def flatness_report(flat: dict[str, dict[str, float]]) -> str:
    lines = ["Memory flatness (tracemalloc, MB still allocated after a full collection):"]
    for name, f in flat.items():
        verdict = "flat" if f["growth_mb"] <= 0.01 else "GROWS"
        lines.append(
            f"  {name:13s} after step {f['at_step']}: {f['mb_at_step']:.3f}, after step {f['steps']}: "
            f"{f['mb_at_end']:.3f} (growth {f['growth_mb']:+.4f}, {verdict}); most right after a step: "
            f"{f['max_between_mb']:.3f}"
        )
    return "\n".join(lines)


def environment_report(env: dict[str, object]) -> str:
    lines = [
        f"Python {env['python']} on {env['platform']}, {env['cpu_count']} CPUs ({env['affinity_cpus']} usable)",
        f"numpy {env['numpy']}, torch {env['torch']} ({env['torch_threads']} threads), autograd {env['autograd']}, "
        f"opreg {env['opreg_revision']}",
    ]
    for pool in env["blas"]:
        lines.append("BLAS: " + ", ".join(f"{k}={v}" for k, v in pool.items() if k != "filepath"))
    variables = env["environment_variables"]
    lines.append("Environment: " + ", ".join(f"{k}={'unset' if v is None else repr(v)}" for k, v in variables.items()))
    return "\n".join(lines)


def page_faults_report(rows: list[Row]) -> str:
    """Minor page faults per training step, per implementation: how often freed memory had to be faulted in."""
    lines = ["Minor page faults per train step:"]
    for row in rows:
        if row.benchmark == "train step" and "page_faults_per_call" in row.details:
            lines.append(f"  {row.size} {row.dtype} {row.implementation}: {row.details['page_faults_per_call']:.0f}")
    return "\n".join(lines)


def gemm_report(rates: dict[str, dict[str, float]]) -> str:
    cells = [f"{dtype} {n}x{n}: {rate:.1f}" for dtype, by_size in rates.items() for n, rate in by_size.items()]
    return "NumPy GEMM GFLOP/s: " + ", ".join(cells)


def load_report(load: environment.OtherLoad) -> str:
    section, cores = load.busiest()
    line = f"Other processes' CPU use: at most {cores:.2f} cores on average during a section ({section})"
    if cores > BUSY_CORES:
        line += (
            "\nWARNING: the machine was not quiet; the timings above are unreliable. Run again when it is idle, or "
            "with --wait-idle."
        )
    return line


def timed_section(label: str, run: Callable[[], T], load: environment.OtherLoad, wait_idle: bool) -> T:
    """``run()``, with the other processes' CPU use during it recorded under ``label``.

    With ``wait_idle``, first wait until the machine is quiet, and run the section again (up to ``ATTEMPTS``
    times in all) when other processes used more than ``BUSY_CORES`` during it.
    """
    for attempt in range(1, ATTEMPTS + 1):
        if wait_idle and not load.wait_idle(BUSY_CORES):
            log("  the machine did not become idle within 15 minutes; going on")
        log(label if attempt == 1 else f"{label} (attempt {attempt})")
        result = run()
        load.mark(label)
        if not wait_idle or load.sections[label] <= BUSY_CORES:
            break
        log(f"  other processes used {load.sections[label]:.2f} cores meanwhile")
    return result


def measure(settings: Settings, load: environment.OtherLoad, wait_idle: bool) -> tuple[list[Row], dict[str, object]]:
    """Every section in turn; the rows of the table, and what does not fit in it."""

    def timed(label: str, run: Callable[[], T]) -> T:
        return timed_section(label, run, load, wait_idle)

    log("correctness: one step of every implementation against the NumPy reference")
    errors = {f"{case.size} {case.dtype}": check_steps(case) for case in STEP_CASES}
    load.mark("correctness")
    rates = timed("GEMM rates", lambda: gemm.gemm_rates((512, 1024), ("float32", "float64"), repetitions=30))
    rows: list[Row] = []
    for case in STEP_CASES:
        rows += timed(
            f"train step {case.size} {case.dtype}",
            lambda case=case: bench_steps(case, settings) + bench_gemm_limit(case, rates, repetitions=30),
        )
    for size in PER_OP_SIZES:
        rows += timed(f"per-op {size} element(s)", lambda size=size: bench_per_op(size, settings))
    rows += timed("graph size", lambda: graph_size.bench_graph_size(settings.graph_seconds, settings.graph_repetitions))
    X, y, theta = numpy_heavy.data()
    errors["GP likelihood gradient"] = {"opreg Tensor vs torch": numpy_heavy.check(X, y, theta)}
    rows += timed("numpy-heavy function", lambda: bench_numpy_heavy(X, y, theta, settings))
    errors["per-example gradients"] = per_example.check(*per_example.data())
    rows += timed("per-example gradients", lambda: bench_per_example(settings))
    log("memory (tracemalloc: not a timing, needs no quiet)")
    memory_rows, flat = bench_memory(MEMORY_CASE, settings.flatness_steps)
    load.mark("memory")
    add_ratios(rows + memory_rows)
    extra = {"gemm_gflops": rates, "correctness_max_relative_error": errors, "memory_flatness": flat}
    return rows + memory_rows, extra


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30 repetitions everywhere and 200 flatness steps")
    parser.add_argument("--out", default="bench/results", help="writes OUT.json and OUT.png (default bench/results)")
    parser.add_argument(
        "--wait-idle",
        action="store_true",
        help="on a shared machine: before each timed section wait until other processes are quiet, and redo a "
        f"section they disturbed (up to {ATTEMPTS} attempts)",
    )
    args = parser.parse_args(argv)
    # A compiled row that runs eagerly would be timed as compiled: stop instead, with opreg's reason.
    warnings.simplefilter("error", opreg.CaptureWarning)
    settings = QUICK if args.quick else FULL
    mode = "quick" if args.quick else "full"

    torch.set_num_threads(environment.numpy_blas_threads())
    env = environment.describe()
    log(environment_report(env))
    if trainers.autograd is None:
        log(trainers.AUTOGRAD_MISSING)
    load = environment.OtherLoad()
    time.sleep(1.0)
    load.mark("before the run")
    rows, extra = measure(settings, load, args.wait_idle)
    seconds = time.perf_counter() - _START

    print(environment_report(env))
    print(gemm_report(extra["gemm_gflops"]))
    print()
    print(table(rows))
    print()
    print(flatness_report(extra["memory_flatness"]))
    print(page_faults_report(rows))
    notes = NOTES + ([trainers.AUTOGRAD_MISSING] if trainers.autograd is None else [])
    print("\n".join(f"Note: {note}" for note in notes))
    print(load_report(load))
    print(f"({mode} run, {seconds:.0f} s)")

    json_path, png_path = Path(f"{args.out}.json"), Path(f"{args.out}.png")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    header = {"mode": mode, "seconds": seconds, "settings": vars(settings), "environment": env}
    write_json(json_path, rows, header | extra | {"other_processes_cores": load.sections, "notes": notes})
    plot(png_path, rows, f"opreg {env['opreg_revision']} ({mode} run): ratio to NumPy")
    log(f"wrote {json_path} and {png_path}")


if __name__ == "__main__":
    main()
