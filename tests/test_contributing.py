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


def tutorial_names() -> tuple[str, str, str, str, str]:
    """The tutorial's op, plugin (entry point), module, distribution and version, read from its own files."""
    module, pyproject = tutorial_files()
    project = pyproject["project"]
    [(entry_point, module_name)] = project["entry-points"]["opreg"].items()
    [op_name] = re.findall(r'name="(\w+)"', module)
    return op_name, entry_point, module_name, project["name"], project["version"]


def columns(line: str) -> list[str]:
    """The cells of a row of ``opreg ops``: separated by two spaces or more (a cell such as "x, beta=1.0" has one)."""
    return re.split(r"\s{2,}", line.strip())


def signature(op_name: str) -> str:
    """The tutorial op's inputs and attributes as ``opreg ops`` lists them, read from its forward's signature in the
    document: ``x, beta=1.0``."""
    module, _ = tutorial_files()
    [forward] = re.findall(r"forward=(\w+)", module)
    [parameters] = re.findall(rf"def {forward}\((.*?)\):", module)
    return ", ".join(p.strip() for p in parameters.split(",") if p.strip() != "*")


def test_the_tutorial_package_loads_lists_and_checks(site, capsys):
    op_name, plugin, module_name, dist, version = tutorial_names()
    site.install(dist, module_name, tutorial_section_block("python"), entry_point=plugin, version=version)
    opreg.reload_plugins()

    assert main(["ops"]) == 0
    [row] = [columns(line) for line in capsys.readouterr().out.splitlines() if line.startswith(f"{op_name} ")]
    assert row[:5] == [op_name, signature(op_name), plugin, dist, version]
    assert main(["check", op_name]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "1 passed, 0 failed"


@pytest.mark.skipif(
    not os.environ.get("OPREG_SLOW_TESTS"), reason="pip-installs into a fresh venv; OPREG_SLOW_TESTS=1 runs it"
)
def test_the_tutorial_works_literally_in_a_fresh_venv(tmp_path):
    """The tutorial's files and commands, run as a newcomer would: a new venv with opreg installed from this tree."""
    op_name, plugin, module_name, dist, version = tutorial_names()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    run_in_venv = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)}
    run_in_venv.pop("PYTHONPATH", None)
    subprocess.run(["pip", "install", "-q", str(CONTRIBUTING.parent)], check=True, env=run_in_venv)

    package = tmp_path / dist
    package.mkdir()
    (package / f"{module_name}.py").write_text(tutorial_section_block("python"))
    (package / "pyproject.toml").write_text(tutorial_section_block("toml"))
    outputs = []
    for command in tutorial_section_block("bash").splitlines():
        command = command.split("#", 1)[0].strip()
        if command:
            done = subprocess.run(command, shell=True, cwd=package, env=run_in_venv, capture_output=True, text=True)
            assert done.returncode == 0, f"{command!r} failed:\n{done.stdout}\n{done.stderr}"
            outputs.append(done.stdout)
    _, ops, check, gradcheck = outputs
    assert [op_name, signature(op_name), plugin, dist, version] in [columns(line)[:5] for line in ops.splitlines()]
    assert check.splitlines()[-1] == "1 passed, 0 failed"
    assert "1 passed" in gradcheck.splitlines()[-1]


@pytest.mark.skipif(
    not os.environ.get("OPREG_SLOW_TESTS"), reason="pip-installs into a fresh venv; OPREG_SLOW_TESTS=1 runs it"
)
def test_the_new_op_walkthrough_works_literally_in_a_fresh_venv(tmp_path):
    """CONTRIBUTING's `opreg new-op` walkthrough as an author follows it: its commands in a new venv with opreg
    installed from this tree, its two functions and reference written into the generated files; `opreg check`
    passes, and with the square left out of the backward fails with the message the walkthrough shows."""
    from test_new_op import blocks, fill_in, op_name

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    run_in_venv = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)}
    run_in_venv.pop("PYTHONPATH", None)
    subprocess.run(["pip", "install", "-q", str(CONTRIBUTING.parent)], check=True, env=run_in_venv)
    author = tmp_path / "author"
    author.mkdir()

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, shell=True, cwd=author, env=run_in_venv, capture_output=True, text=True)

    new_op, commands = blocks("bash")
    name = op_name()
    outputs = []
    for block in (new_op, "FILL IN", commands):
        if block == "FILL IN":
            fill_in(author / f"opreg-{name}", name)
            continue
        for command in block.splitlines():
            command = command.split("#", 1)[0].strip()
            if command:
                done = run(command)
                assert done.returncode == 0, f"{command!r} failed:\n{done.stdout}\n{done.stderr}"
                outputs.append(done.stdout)
    check, pytest_run = outputs[-2:]
    assert check.splitlines()[-1] == "1 passed, 0 failed"
    assert "1 passed" in pytest_run.splitlines()[-1]

    fill_in(author / f"opreg-{name}", name, wrong_backward=True)
    [check_command] = [c.split("#", 1)[0].strip() for c in commands.splitlines() if c.startswith("opreg check")]
    failed = run(check_command)
    assert failed.returncode == 1
    [shown] = blocks("text")
    shown = shown.replace(f"/home/you/opreg-{name}/", f"{author / f'opreg-{name}'}/")
    seen, expected = failed.stdout.splitlines(), shown.splitlines()
    assert (seen[0], seen[-1]) == (expected[0], expected[-1])
    prefix = expected[1].split(": max abs error")[0]  # the numbers after it are finite differences', not ours
    assert seen[1].startswith(prefix) and seen[1].endswith(expected[1].rsplit(";", 1)[1]), failed.stdout
