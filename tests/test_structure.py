"""How opreg's modules depend on each other: no import cycle, and the built-in plugins import only the plugin API.

Read from the source with ``ast``, so the test sees imports that a running process would hide (a module imported
inside a function to break a cycle is still a cycle).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import opreg

PACKAGE = Path(opreg.__file__).parent
PLUGINS = PACKAGE.parent / "plugins"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(part for part in parts if part != "__init__")


def _imports(path: Path) -> set[str]:
    """Every opreg module ``path`` imports, wherever the import statement stands (except under TYPE_CHECKING)."""
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    type_checking = {
        id(node)
        for branch in ast.walk(tree)
        if isinstance(branch, ast.If) and ast.unparse(branch.test) == "TYPE_CHECKING"
        for node in ast.walk(branch)
    }
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "opreg":
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(
                    candidate
                    if (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").exists()
                    or (PACKAGE.parent / candidate.replace(".", "/")).is_dir()
                    else node.module
                )
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "opreg")
    return found


def test_no_import_cycle_among_opregs_modules():
    graph = {
        _module_name(path): _imports(path) - {"opreg"}
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py" or path.parent != PACKAGE
    }
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", "import cycle: " + " -> ".join([*trail, module])
        state[module] = "open"
        for imported in sorted(graph.get(module, ())):
            visit(imported, [*trail, module])
        state[module] = "done"

    for module in sorted(graph):
        visit(module, [])


def test_built_in_plugins_import_only_the_plugin_api():
    """The built-ins are written as a third-party op package is: against opreg.plugin and opreg.numpy alone."""
    for path in PLUGINS.glob("*.py"):
        assert _imports(path) <= {"opreg.plugin", "opreg.numpy"}, f"{path.name} imports {sorted(_imports(path))}"


def test_without_torch_only_the_comparisons_with_torch_skip(tmp_path):
    """Collected in a process where ``import torch`` fails, no test module is skipped whole: the tests that do not
    compare with torch (no_grad per thread, aliasing, state dicts, the contrib contract) run without it."""
    hidden = tmp_path / "torch"
    hidden.mkdir()
    (hidden / "__init__.py").write_text("raise ModuleNotFoundError('torch is hidden for this test', name='torch')\n")
    # contrib_ops' tests, where it is installed: the README's test command runs before CI installs it
    contrib = ["contrib_ops/tests"] if importlib.util.find_spec("opreg_contrib_ops") else []
    collected = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "tests",
            *contrib,
        ],
        cwd=Path(__file__).resolve().parents[1],  # the checkout these tests are in
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert collected.returncode == 0, collected.stdout + collected.stderr
    skipped = [line for line in collected.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skipped == []


def test_every_subpackage_of_opreg_is_installed():
    """pyproject.toml lists the packages a non-editable install (README's `pip install .`) copies: a subpackage left
    out installs an opreg whose `import opreg` fails (opreg.func once did, caught only by CONTRIBUTING's
    fresh-venv test)."""
    import tomllib

    root = Path(opreg.__file__).resolve().parent
    found = {
        ".".join(("opreg", *init.parent.relative_to(root).parts))
        for init in root.rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    pyproject = tomllib.loads((root.parent / "pyproject.toml").read_text())
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    assert found - listed == set(), f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"


def test_import_opreg_leaves_typeguard_and_the_other_heavy_modules_to_where_they_are_used():
    """``import opreg`` took 70 ms, 51 of them importing typeguard, which opreg uses nowhere at run time (only CI's
    typeguard pass does), and most of the rest importing ``importlib.metadata`` (plugin loading), ``numpy.random``
    and ``zipfile`` (model files). Each is imported where it is used; loading the ops (registering every plugin)
    needs no typeguard either. Checked by what a fresh process imports, which no machine's load makes flaky."""
    heavy = ["typeguard", "importlib.metadata", "numpy.random", "zipfile"]
    script = (
        "import sys, numpy\n"
        "before = set(sys.modules)\n"
        "import opreg\n"
        f"print(sorted(set({heavy!r}) & (set(sys.modules) - before)))\n"
        "opreg.get_registry()\n"
        "print('typeguard' in sys.modules)\n"
    )
    environment = {key: value for key, value in os.environ.items() if key != "OPREG_CHECK"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment, check=True)
    assert result.stdout.split("\n")[:2] == ["[]", "False"], result.stdout + result.stderr
