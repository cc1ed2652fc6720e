"""The ``opreg`` command's ops, plugins and check subcommands, and the ``pytest --opreg-gradcheck`` plugin."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

import opreg
from opreg.cli import main

CUBE = """
import opreg

@opreg.hookimpl
def opreg_register_ops(register):
    register(name="cube", inputs=("x",), forward=lambda x: x**3, backward=lambda g, x: ({factor} * g * x**2,),
             doc="x cubed.\\nMore detail that listings leave out.")
"""
GOOD, BUGGY = CUBE.format(factor=3), CUBE.format(factor=2).replace("cube", "bad_cube")


@pytest.fixture
def packages(site):
    site.install("good-ops", "good_ops", GOOD, version="2.1")
    site.install("bad-ops", "bad_ops", BUGGY, version="0.1")
    site.install("broken-ops", "broken_ops", "import does_not_exist")
    with pytest.warns(opreg.plugin_manager.PluginWarning, match="broken-ops"):
        opreg.reload_plugins()
    return site


def lines_of(capsys) -> list[str]:
    return capsys.readouterr().out.splitlines()


def test_ops_lists_every_op_with_its_plugin_and_distribution(packages, capsys):
    assert main(["ops"]) == 0
    rows = {line.split()[0]: line.split() for line in lines_of(capsys)[1:]}
    assert rows["cube"][:5] == ["cube", "x", "good-ops", "good-ops", "2.1"]
    assert rows["cube"][5:] == ["x", "cubed."]
    assert rows["matmul"][:4] == ["matmul", "a,", "b", "opreg_builtins.linalg"]


def test_ops_shows_attributes_with_their_defaults(install_ops, capsys):
    install_ops(
        {
            "name": "total",
            "inputs": ("x",),
            "attributes": {"axis": None, "keepdims": False},
            "forward": lambda x, *, axis, keepdims: x.sum(axis=axis, keepdims=keepdims),
            "backward": lambda g, x, *, axis, keepdims: (g,),
        }
    )
    assert main(["ops"]) == 0
    [row] = [line for line in lines_of(capsys) if line.startswith("total ")]
    assert row.split()[1:5] == ["x,", "axis=None,", "keepdims=False", "test-plugin"]


def test_plugins_lists_loaded_skipped_and_builtin_plugins(packages, capsys):
    assert main(["plugins"]) == 0
    rows = {line.split()[0]: line for line in lines_of(capsys)[1:]}
    assert rows["good-ops"].split()[1:4] == ["loaded", "good-ops", "2.1"]
    assert rows["good-ops"].rstrip().endswith("good_ops.py")
    assert rows["broken-ops"].split()[1] == "skipped" and "does_not_exist" in rows["broken-ops"]
    assert rows["opreg_builtins.arithmetic"].split()[1] == "builtin"


def test_check_reports_each_op_and_fails_on_a_wrong_gradient(packages, capsys):
    assert main(["check", "good-ops", "exp"]) == 0
    out = lines_of(capsys)
    assert re.fullmatch(r"ok    good-ops:cube: 1 sample, 9 checks, worst relative error [0-9.e-]+", out[0]), out
    assert out[1].startswith("ok    opreg_builtins.elementwise:exp: ") and out[-1] == "2 passed, 0 failed"
    assert main(["check", "bad-ops", "good-ops"]) == 1
    out = lines_of(capsys)
    assert out[0] == "FAIL  bad-ops:bad_cube" and "input 0 'x'" in out[1] and "worst at index" in out[1]
    assert re.search(r"\(backward at .*\.py:\d+\)", out[1]) and "on sample 0 of 1 (x: float64" in out[1]
    assert out[-1] == "1 passed, 1 failed"


def test_check_verbose_lists_what_it_checked_and_json_writes_the_reports(packages, capsys, tmp_path):
    """``opreg check -v`` lists each sample and each check; ``--json`` writes what tools read: every op's report,
    failures with their messages. A file it cannot write is refused before any check, and one already there is
    replaced only once the report is whole."""
    report = tmp_path / "report.json"
    assert main(["check", "good-ops", "bad-ops", "-v", "--json", str(report)]) == 1
    out = lines_of(capsys)
    assert "      sample 0: x: float64 (3,)" in out or any(
        line.startswith("      sample 0: x: float64") for line in out
    )
    assert any("ok  input 0 'x': max abs error" in line for line in out)
    results = {r["op"]: r for r in json.loads(report.read_text())}
    assert (
        results["cube"]["status"] == "ok" and results["cube"]["samples"][0]["comparisons"][0]["what"] == "input 0 'x'"
    )
    assert (
        results["bad_cube"]["status"] == "failed"
        and "disagrees with finite differences" in results["bad_cube"]["error"]
    )
    assert main(["check", "good-ops", "--json", str(tmp_path / "missing" / "r.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_check_refuses_an_unknown_name(capsys):
    assert main(["check", "no-such-thing"]) == 2
    assert "'no-such-thing' is neither a registered op nor a loaded plugin" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "ops", "plugins", "check"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0 and f"usage: opreg {command}" in capsys.readouterr().out


def test_python_dash_m_opreg_works_like_the_command():
    result = subprocess.run([sys.executable, "-m", "opreg", "ops"], capture_output=True, text=True, check=True)
    assert result.stdout.splitlines()[0].split()[:4] == ["op", "inputs,", "attributes", "plugin"]


def test_pytest_gradcheck_generates_one_test_per_op(packages, pytester, monkeypatch):
    """A plugin package gets its tests with no test code: here in an empty folder, in a separate pytest run."""
    monkeypatch.setenv("PYTHONPATH", str(packages.root))
    result = pytester.runpytest_subprocess("--opreg-gradcheck=good-ops,bad-ops", "-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*gradcheck?good-ops:cube? PASSED*", "*gradcheck?bad-ops:bad_cube? FAILED*"])
    result.stdout.fnmatch_lines(
        ["*op 'bad_cube' (plugin 'bad-ops' of bad-ops 0.1): the gradient of input 0 'x'*worst at index*"]
    )

    # every op, and broken-ops, which was skipped: a failing test of its own, not a warning in a green run
    everything = pytester.runpytest_subprocess("--opreg-gradcheck", "-p", "no:cacheprovider")
    everything.assert_outcomes(passed=len(opreg.get_registry()) - 1, failed=2)
    everything.stdout.fnmatch_lines(["*opreg skipped plugin 'broken-ops'*No module named 'does_not_exist'"])
