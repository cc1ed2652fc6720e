"""Hand-written mutants of opreg's core, each run against the test suite: ``python tools/mutation.py [-k WORD]``.

A mutant is one small, plausible bug (a dropped scale, a sum over the wrong axes, an accumulation that
overwrites), written as a text replacement in one file. For each, this copies ``opreg/`` and ``plugins/`` to a
temporary folder, applies the replacement there (the checkout is never touched), and runs the suite against the
copy with ``-x``; a mutant the suite does not fail "survived". The mutants live in ``tools/mutants.py``, each with
the tests most likely to kill it (run first, to keep a run short) and, for the few that cannot change any result,
the reason they are equivalent.

Why hand mutants, not mutmut: a generated mutant of this code is mostly a changed message or docstring, or a
change the suite runs for minutes to find; a hand mutant is a bug a person could write, and a run of all of them
takes about as long as the suite does a few dozen times. Exit status 1 when a mutant that is not declared
equivalent survives, or a mutant no longer matches the code it mutates ("stale").
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mutants import MUTANTS, Mutant

ROOT = Path(__file__).resolve().parent.parent


def copy_packages(copy: Path) -> None:
    """opreg and the built-ins as the installed package names them, unmutated, in ``copy``."""
    shutil.rmtree(copy / "opreg", ignore_errors=True)
    shutil.rmtree(copy / "opreg_builtins", ignore_errors=True)
    shutil.copytree(ROOT / "opreg", copy / "opreg")
    shutil.copytree(ROOT / "plugins", copy / "opreg_builtins")


def prepare(copy: Path, mutant: Mutant) -> str | None:
    """Copy the packages into ``copy`` with ``mutant`` applied; the reason it cannot be applied, or ``None``."""
    copy_packages(copy)
    relative = Path(mutant.path)
    target = copy / ("opreg_builtins" / relative.relative_to("plugins") if relative.parts[0] == "plugins" else relative)
    text = target.read_text()
    found = text.count(mutant.before)
    if found != 1:
        return f"stale: the text to mutate occurs {found} times in {mutant.path}"
    target.write_text(text.replace(mutant.before, mutant.after))
    return None


def environment(copy: Path) -> dict[str, str]:
    """Python run with ``-P`` and this sees the copy's opreg, not the checkout's (``-m`` would put the current
    folder first on the path, and an editable install resolves to the checkout)."""
    return os.environ | {"PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}


def check_isolation(copy: Path) -> None:
    """Refuse to run if the tests would import the checkout instead of the mutated copy: every mutant would
    survive."""
    code = "import opreg, opreg_builtins; print(opreg.__file__); print(opreg_builtins.__file__)"
    run = subprocess.run(
        [sys.executable, "-P", "-c", code], cwd=ROOT, env=environment(copy), capture_output=True, text=True
    )
    paths = run.stdout.split()
    if run.returncode or len(paths) != 2 or not all(path.startswith(str(copy)) for path in paths):
        sys.exit(f"the tests would not import the mutated copy in {copy}: {run.stdout}{run.stderr}")


def killed(copy: Path, mutant: Mutant, timeout: float) -> tuple[bool, str]:
    """Run the mutant's own tests, then the whole suite; whether a test failed, and which."""
    env = environment(copy)
    for selection in ([*mutant.tests] if mutant.tests else [], ["tests"]):
        if not selection:
            continue
        command = [
            sys.executable,
            "-P",
            "-m",
            "pytest",
            "-x",
            "-q",
            "-p",
            "no:cacheprovider",
            "--no-header",
            *selection,
        ]
        try:
            run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return True, f"timed out after {timeout:.0f} s"
        if run.returncode != 0:
            failed = [line for line in run.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
            return True, failed[0] if failed else run.stdout.strip().splitlines()[-1]
    return False, ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="only the mutants whose name contains this")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per pytest run (a hang kills)")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if args.k in m.name]
    survivors, stale, score = [], [], 0
    with tempfile.TemporaryDirectory(prefix="opreg-mutant-") as folder:
        copy = Path(folder)
        copy_packages(copy)
        check_isolation(copy)
        for mutant in chosen:
            start = time.perf_counter()
            problem = prepare(copy, mutant)
            if problem:
                stale.append(mutant.name)
                print(f"STALE     {mutant.name}: {problem}", flush=True)
                continue
            dead, how = killed(copy, mutant, args.timeout)
            seconds = time.perf_counter() - start
            if dead:
                score += 1
                print(f"killed    {mutant.name} ({seconds:.0f} s): {how}", flush=True)
            elif mutant.equivalent:
                print(f"EQUIVALENT {mutant.name}: {mutant.equivalent}", flush=True)
            else:
                survivors.append(mutant.name)
                print(f"SURVIVED  {mutant.name} ({seconds:.0f} s): {mutant.why}", flush=True)
    equivalent = sum(1 for m in chosen if m.equivalent and m.name not in stale)
    print(f"\n{score} of {len(chosen) - len(stale) - equivalent} mutants killed", end="")
    print(f" ({equivalent} equivalent, {len(stale)} stale); survivors: {', '.join(survivors) or 'none'}")
    return 1 if survivors or stale else 0


if __name__ == "__main__":
    sys.exit(main())
