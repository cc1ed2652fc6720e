"""The README's Python examples run as written, and its walkthrough prints what the README says it prints."""

from __future__ import annotations

import re
from pathlib import Path

import opreg
from opreg.datasets import load_digits, one_hot

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def run(block: str) -> dict:
    """Run one example on its own, as a reader pasting it would."""
    namespace: dict = {}
    exec(compile(block, str(README), "exec"), namespace)
    return namespace


def test_readme_examples_run_as_written(capsys):
    tensors, walkthrough, training, plugin = python_blocks()
    namespace = run(tensors)
    assert capsys.readouterr().out.startswith("(3, 2) [")
    assert namespace["b"].grad.shape == (2,) and not namespace["prediction"].requires_grad

    run(walkthrough)
    assert capsys.readouterr().out.splitlines() == ["[[1. 2. 3.]] [[1. 1. 1.]]", "[[4. 5. 6.]]"]

    step = run(training)["step"]
    x, labels = load_digits()
    losses = [step(x[:64], one_hot(labels[:64], 10)) for _ in range(5)]
    assert losses[-1] < losses[0]

    try:
        assert run(plugin)["y"].shape == (5,)
        opreg.check_op("softsign")
    finally:
        if "softsign" in opreg.get_registry():
            opreg.unregister_plugin(opreg.get_registry()["softsign"].plugin)
