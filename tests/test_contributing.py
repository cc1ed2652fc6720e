"""CONTRIBUTING.md's op-package tutorial: its module and pyproject work as written.

The tutorial's files are taken from the document itself and installed as a distribution (see the ``site``
fixture); then its commands run. (A literal ``pip install -e .`` into a fresh venv is slower and is not run
here; see the issue notes.)
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import opreg
from opreg.cli import main

CONTRIBUTING = Path(__file__).resolve().parent.parent / "CONTRIBUTING.md"


def tutorial_files() -> tuple[str, dict]:
    section = CONTRIBUTING.read_text().split("## Your own op package", 1)[1]
    module = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)[0]
    pyproject = tomllib.loads(re.findall(r"```toml\n(.*?)```", section, flags=re.DOTALL)[0])
    return module, pyproject


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
