"""``opreg new-op``: the package it writes, filled in as CONTRIBUTING.md's walkthrough says, registers, passes
``check_op`` and its own property test, and fails both, naming the backward's file and line, with a wrong
backward; names and folders it must not use are refused with a message, and nothing is written.

The walkthrough's name, functions and commands are read from the document itself; the slow test that follows it
literally in a fresh venv is in tests/test_contributing.py.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import tomllib
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from hypothesis import settings

import opreg
from opreg import testing
from opreg.cli import main
from opreg.errors import GradcheckError
from opreg.newop import package_files

CONTRIBUTING = Path(__file__).resolve().parent.parent / "CONTRIBUTING.md"
WALKTHROUGH_TITLE = "## A new op package in one command"


def walkthrough() -> str:
    return CONTRIBUTING.read_text().split(WALKTHROUGH_TITLE, 1)[1].split("\n## ", 1)[0]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", walkthrough(), flags=re.DOTALL)


def op_name() -> str:
    [name] = re.findall(r"^opreg new-op (\w+)", blocks("bash")[0], flags=re.MULTILINE)
    return name


def write_functions(path: Path, source: str) -> None:
    """Put each top-level function of ``source`` in place of the generated function of its name in ``path``, as an
    author does in an editor: the function's lines, up to the next line that is not indented."""
    text = path.read_text()
    for function in ast.parse(source).body:
        assert isinstance(function, ast.FunctionDef)
        written = ast.get_source_segment(source, function)
        assert written is not None
        pattern = rf"^def {function.name}\(.*?(?=^\S)"
        replacement = f"{written}\n\n\n".replace("\\", "\\\\")  # a template for re.subn: backslashes doubled
        text, count = re.subn(pattern, replacement, text, count=1, flags=re.MULTILINE | re.DOTALL)
        assert count == 1, f"{path} has no function {function.name}"
    path.write_text(text)


def fill_in(folder: Path, name: str, wrong_backward: bool = False) -> None:
    """The walkthrough's two functions (the second with the square left out, its wrong backward) and reference."""
    functions, reference = blocks("python")
    if wrong_backward:
        functions = functions.replace(" ** 2,", ",")
    write_functions(folder / f"opreg_{name}.py", functions)
    write_functions(folder / "tests" / f"test_{name}.py", reference)


def load(path: Path, module_name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def registered(monkeypatch):
    """``register(folder, name)`` registers the package's module as the plugin its entry point names, until the
    test ends; the generated test then runs a few examples, and saves no failure to a database."""
    monkeypatch.setenv("OPREG_EXAMPLES", "0.2")
    settings.register_profile("new-op-test", database=None)
    previous = settings.get_current_profile_name()
    settings.load_profile("new-op-test")
    names: list[str] = []

    def register(folder: Path, name: str) -> None:
        if name in names:
            opreg.unregister_plugin(name)
            names.remove(name)
        names.append(opreg.register_plugin(load(folder / f"opreg_{name}.py", f"opreg_{name}"), name=name))

    yield register
    for name in names:
        opreg.unregister_plugin(name)
    settings.load_profile(previous)


def generated_test(folder: Path, name: str):
    module = load(folder / "tests" / f"test_{name}.py", f"generated_test_{name}")
    return getattr(module, f"test_{name}_matches_numpy")


def test_the_package_parses_and_names_its_op(tmp_path, capsys):
    name = op_name()
    assert main(["new-op", name, "--dir", str(tmp_path)]) == 0
    folder = tmp_path / f"opreg-{name}"
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == sorted(package_files(name))
    project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    assert project["name"] == f"opreg-{name}"
    assert project["entry-points"]["opreg"] == {name: f"opreg_{name}"}
    for source in folder.rglob("*.py"):
        ast.parse(source.read_text(), str(source))
    readme = (folder / "README.md").read_text()
    assert f"opreg check {name}" in readme and 'pip install -e ".[test]"' in readme
    out = capsys.readouterr().out
    assert f'pip install -e "{folder}[test]"' in out and f"opreg check {name}" in out
    assert len((folder / "tests" / f"test_{name}.py").read_text().splitlines()) <= 25  # a short example


def test_unwritten_functions_fail_the_check_saying_what_to_write(tmp_path, registered):
    name = op_name()
    assert main(["new-op", name, "--dir", str(tmp_path)]) == 0
    folder = tmp_path / f"opreg-{name}"
    registered(folder, name)  # registers: declarations are read from signatures, forward is not run
    with pytest.raises(GradcheckError, match=f"NotImplementedError: write the forward of {name}: the function"):
        opreg.check_op(name)
    with pytest.raises(NotImplementedError, match=f"write {name} with NumPy: the function reference"):
        generated_test(folder, name)()


def test_the_walkthrough_functions_pass_and_a_wrong_backward_fails_where_it_is(tmp_path, registered):
    name = op_name()
    assert main(["new-op", name, "--dir", str(tmp_path)]) == 0
    folder = tmp_path / f"opreg-{name}"
    fill_in(folder, name)
    registered(folder, name)
    assert len(opreg.check_op(name).samples) == 2
    generated_test(folder, name)()

    fill_in(folder, name, wrong_backward=True)
    registered(folder, name)
    module_path = folder / f"opreg_{name}.py"
    line = 1 + module_path.read_text().splitlines().index(f"def {name}_backward(g, x):")
    with pytest.raises(GradcheckError, match=re.escape(f"(backward at {module_path}:{line})")):
        opreg.check_op(name)
    with pytest.raises(AssertionError, match=f"{name} gradient 0"):
        generated_test(folder, name)()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("my-op", "'my-op' cannot be an op's name: an op's name is a Python identifier (letters, digits and "
         "underscores, not starting with a digit), such as 'my_op'"),
        ("2d_conv", "'2d_conv' cannot be an op's name: an op's name is a Python identifier"),
        ("lambda", "'lambda' cannot be an op's name: it is a Python keyword"),
        ("exp", "an op named 'exp' is already installed (plugin 'opreg_builtins.elementwise'); choose another name"),
    ],
)  # fmt: skip
def test_a_name_that_cannot_be_a_new_op_is_refused(tmp_path, capsys, name, message):
    assert main(["new-op", name, "--dir", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"opreg new-op: {message}") and "Traceback" not in captured.err
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_never_overwritten(tmp_path, capsys):
    folder = tmp_path / f"opreg-{op_name()}"
    folder.mkdir()
    (folder / "mine.py").write_text("# the user's")
    assert main(["new-op", op_name(), "--dir", str(tmp_path)]) == 2
    assert f"opreg new-op: {str(folder)!r} already exists; new-op never overwrites" in capsys.readouterr().err
    assert [p.name for p in folder.iterdir()] == ["mine.py"] and (folder / "mine.py").read_text() == "# the user's"


def test_a_missing_parent_folder_is_refused(tmp_path, capsys):
    assert main(["new-op", op_name(), "--dir", str(tmp_path / "nowhere")]) == 2
    assert "does not exist; create it first" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_package_of_the_name_already_installed_is_refused(site, capsys, tmp_path):
    site.install("opreg-cube", "opreg_cube_ops", "", entry_point="cube_ops")  # no op, no plugin named cube
    assert main(["new-op", "cube", "--dir", str(tmp_path)]) == 2
    assert "a distribution opreg-cube 1.0 is already installed" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(), (0, 3), (2, 3)])
def test_check_against_numpy_passes_a_right_reference_and_fails_a_wrong_one(dtype, shape, install_ops):
    install_ops(
        {  # tanh's forward, and a backward missing the square
            "name": "bad_tanh",
            "inputs": ("x",),
            "forward": lambda x: np.tanh(x),
            "backward": lambda g, x: (g * (1 - np.tanh(x)),),
        }
    )
    x = np.random.default_rng(0).uniform(-3, 3, shape).astype(dtype)
    testing.check_against_numpy("tanh", np.tanh, [x])
    testing.check_against_numpy("maximum", np.maximum, [x, np.asarray(0.5 * x)])
    if x.size:
        with pytest.raises(AssertionError, match="tanh forward"):
            testing.check_against_numpy("tanh", np.sin, [x])
        with pytest.raises(AssertionError, match="bad_tanh gradient 0"):
            testing.check_against_numpy("bad_tanh", np.tanh, [x])
