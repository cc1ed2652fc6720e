"""CONTRIBUTING.md's op-package tutorial: its module and pyproject work as written.

The tutorial's files are taken from the document itself. The quick test installs them as a distribution on
``sys.path`` (the ``site`` fixture) and runs the commands in-process; the slow one follows the tutorial
literally in a fresh venv (CI runs it with ``OPREG_SLOW_TESTS=1``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import opreg
from opreg.cli import main

CONTRIBUTING = Path(__file__).resolve().parent.parent / "CONTRIBUTING.md"


def tutorial_section_block(language: str) -> str:
    """The first ``language`` code block of the tutorial section."""
    section = CONTRIBUTING.read_text().split("## Your own op package", 1)[1]
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)[0]


def tutorial_files() -> tuple[str, dict]:
    return tutorial_section_block("python"), tomllib.loads(tutorial_section_block("toml"))


def test_the_tutorial_package_loads_lists_and_checks(site, capsys):
    module, pyproject = tutorial_files()
    project = pyproject["project"]
    [(entry_point, module_name)] = project["entry-points"]["opreg"].items()
    site.install(project["name"], module_name, module, entry_point=entry_point, version=project["version"])
    opreg.reload_plugins()

    assert main(["ops"]) == 0
    [row] = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("softplus ")]
    assert row[:5] == ["softplus", "x", "softplus", "opreg-softplus", "0.1.0"]
    assert main(["check", "softplus"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "1 passed, 0 failed"


@pytest.mark.skipif(
    not os.environ.get("OPREG_SLOW_TESTS"),
    reason="installs into a fresh venv (about a minute); OPREG_SLOW_TESTS=1 runs it",
)
def test_the_tutorial_works_literally_in_a_fresh_venv(tmp_path):
    """The tutorial's files and commands, run as a newcomer would: a new venv with opreg installed from this tree."""
    repo = CONTRIBUTING.parent
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    run_in_venv = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)}
    run_in_venv.pop("PYTHONPATH", None)
    subprocess.run(["pip", "install", "-q", str(repo)], check=True, env=run_in_venv)

    package = tmp_path / "opreg-softplus"
    package.mkdir()
    module, _ = tutorial_files()
    (package / "opreg_softplus.py").write_text(module)
    (package / "pyproject.toml").write_text(tutorial_section_block("toml"))
    outputs = []
    for command in tutorial_section_block("bash").splitlines():
        command = command.split("#", 1)[0].strip()
        if command:
            done = subprocess.run(command, shell=True, cwd=package, env=run_in_venv, capture_output=True, text=True)
            assert done.returncode == 0, f"{command!r} failed:\n{done.stdout}\n{done.stderr}"
            outputs.append(done.stdout)
    _, ops, check, gradcheck = outputs
    assert any(
        line.split()[:5] == ["softplus", "x", "softplus", "opreg-softplus", "0.1.0"] for line in ops.splitlines()
    )
    assert check.splitlines()[-1] == "1 passed, 0 failed"
    assert "1 passed" in gradcheck.splitlines()[-1]
