"""Checks that can never be silently green, and one bad op skipping that op, not its package (issue #13).

An installed plugin that is skipped (it fails to import, its hook raises or is misspelt) or an op of one that is
skipped (it clashes with a built-in, its declaration is invalid) is not checked: ``opreg check`` and ``pytest
--opreg-gradcheck`` over every op fail on it, as does a check naming it, unless it is excluded by name; strict
loading (``OPREG_STRICT=1``, ``opreg.load_plugins(strict=True)``) raises instead of warning. Packages are laid out
on ``sys.path`` by the ``site`` fixture (tests/conftest.py), as tests/test_entry_points.py does.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings

import pytest

import opreg
from opreg import plugin_manager
from opreg.cli import main
from opreg.opcheck import CheckReport
from opreg.plugin_manager import PluginWarning

HEADER = """
import numpy as np
import opreg

@opreg.hookimpl
def opreg_register_ops(register):
"""
CUBE = '    register(name="cube", inputs=("x",), forward=lambda x: x**3, backward=lambda g, x: (3 * g * x**2,))\n'
CLASH = '    register(name="add", inputs=("a", "b"), forward=np.add, backward=lambda g, a, b: (g, g))\n'
INVALID = '    register(name="twice", inputs="x", forward=lambda x: 2 * x, backward=lambda g, x: (2 * g,))\n'
#: a package whose second and third ops are refused: the first and fourth must load all the same
MIXED = HEADER + CUBE + CLASH + INVALID + CUBE.replace("cube", "cube2")


def reload_collecting_warnings() -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opreg.reload_plugins()
        opreg.get_registry()
    return [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]


@pytest.fixture
def broken(site):
    """An op package that fails to import, beside a good one: what opreg check must not call green."""
    site.install("good-ops", "good_ops", HEADER + CUBE)
    site.install("broken-ops", "broken_ops", "import numpy\nimport does_not_exist\n", entry_point="swish")
    with pytest.warns(PluginWarning, match="broken-ops"):
        opreg.reload_plugins()
    return site


@pytest.fixture
def no_gradients(monkeypatch):
    """opreg check's finite differences replaced by a no-op: these tests are about what is checked, not how."""
    checked: list[str] = []

    def check_op(op, **kwargs):
        checked.append(op.name)
        return CheckReport(op.name, op.plugin)

    monkeypatch.setattr("opreg.cli.check_op", check_op)
    return checked


def test_a_clash_or_an_invalid_declaration_skips_that_op_and_the_others_load(site):
    site.install("mixed-ops", "mixed_ops", MIXED, version="0.2")
    messages = reload_collecting_warnings()
    registry = opreg.get_registry()
    assert registry["cube"].plugin == registry["cube2"].plugin == "mixed-ops"
    assert registry["add"].plugin == "opreg_builtins.arithmetic" and "twice" not in registry  # no override
    assert len(messages) == 2
    assert messages[0].startswith("opreg skipped op 'add' of plugin 'mixed-ops' (distribution mixed-ops 0.2")
    assert "and loaded its other ops: RegistrationError: op 'add' is registered by both" in messages[0]
    assert "opreg skipped op 'twice' of plugin 'mixed-ops'" in messages[1] and "inputs" in messages[1]
    info = plugin_manager.plugin_infos_by_name()["mixed-ops"]
    assert info.status == "loaded" and list(info.skipped_ops) == ["add", "twice"]
    # each located at its register() call: lines 8 and 9 of the module
    module = str(site.root / "mixed_ops.py")
    assert [op.location for op in info.skipped_ops.values()] == [f"{module}:8", f"{module}:9"]


def test_skipped_ops_warn_once_though_the_registry_reloads(site, install_ops):
    site.install("mixed-ops", "mixed_ops", MIXED)
    reload_collecting_warnings()
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginWarning)
        install_ops(  # registering a plugin in-process collects every plugin's ops again
            {"name": "halve", "inputs": ("x",), "forward": lambda x: x / 2, "backward": lambda g, x: (g / 2,)}
        )
    assert list(plugin_manager.plugin_infos_by_name()["mixed-ops"].skipped_ops) == ["add", "twice"]


def test_an_in_process_plugin_still_raises_on_a_clash(op_plugin):
    with pytest.raises(opreg.RegistrationError, match="'add' is registered by both"):
        opreg.register_plugin(
            op_plugin(
                {"name": "add", "inputs": ("a", "b"), "forward": lambda a, b: a + b, "backward": lambda g, a, b: (g, g)}
            ),
            name="mine",
        )


def test_plugins_lists_skipped_ops_with_their_reasons(site, capsys):
    site.install("mixed-ops", "mixed_ops", MIXED)
    reload_collecting_warnings()
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^mixed-ops\s+loaded\s+mixed-ops\s+1.0", out, flags=re.MULTILINE)
    skipped = out[out.index("skipped ops:") :].splitlines()
    assert skipped[1].split()[:3] == ["op", "plugin", "reason"]
    assert skipped[2].split()[:4] == ["add", "mixed-ops", "RegistrationError:", "op"]
    assert skipped[3].split()[:2] == ["twice", "mixed-ops"]


def test_where_a_plugin_failed_is_recorded(broken, site):
    info = plugin_manager.plugin_infos_by_name()["swish"]
    assert info.status == "skipped" and info.location == f"{site.root / 'broken_ops.py'}:2"
    site.install("typo-ops", "typo_ops", HEADER.replace("register_ops", "register_opps") + CUBE)
    reload_collecting_warnings()
    assert plugin_manager.plugin_infos_by_name()["typo-ops"].location == f"{site.root / 'typo_ops.py'}:5"


def test_check_of_every_op_fails_on_a_skipped_plugin(broken, site, no_gradients, capsys):
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "ok    swish" not in out and "cube" in no_gradients and "add" in no_gradients
    report = out[out.index("FAIL  swish (skipped)") :]
    assert "opreg skipped plugin 'swish' (distribution broken-ops 1.0" in report
    assert "import failed: ModuleNotFoundError: No module named 'does_not_exist'" in report
    assert f"(at {site.root / 'broken_ops.py'}:2); fix it" in report and "--exclude broken-ops" in report
    assert out.splitlines()[-1] == f"{len(no_gradients)} passed, 1 failed (1 skipped plugins or ops)"


def test_check_of_every_op_fails_on_a_skipped_op(site, no_gradients, capsys):
    site.install("mixed-ops", "mixed_ops", MIXED)
    reload_collecting_warnings()
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  mixed-ops:add (skipped)" in out and "FAIL  mixed-ops:twice (skipped)" in out
    assert "--exclude mixed-ops:add" in out and out.splitlines()[-1].endswith("2 failed (2 skipped plugins or ops)")


@pytest.mark.parametrize("exclude", [["broken-ops"], ["swish"], ["good-ops,swish"], ["good-ops", "broken-ops"]])
def test_an_excluded_plugin_does_not_fail_the_check(broken, no_gradients, capsys, exclude):
    assert main(["check", *(f"--exclude={name}" for name in exclude)]) == 0
    assert "skipped" not in capsys.readouterr().out
    assert ("cube" in no_gradients) == ("good-ops" not in ",".join(exclude))


def test_excluding_one_skipped_op_of_a_plugin_keeps_the_other(site, no_gradients, capsys):
    site.install("mixed-ops", "mixed_ops", MIXED)
    reload_collecting_warnings()
    assert main(["check", "--exclude", "mixed-ops:add"]) == 1
    out = capsys.readouterr().out
    assert "mixed-ops:add" not in out and "FAIL  mixed-ops:twice (skipped)" in out and "add" in no_gradients


def test_excluding_an_unknown_name_is_refused(broken, no_gradients, capsys):
    assert main(["check", "--exclude", "brokn-ops"]) == 2
    assert "'brokn-ops' is excluded, but it names no op, plugin or distribution" in capsys.readouterr().err
    assert no_gradients == []


@pytest.mark.parametrize("name", ["swish", "broken-ops"])
def test_a_check_naming_a_skipped_plugin_fails_saying_why(broken, no_gradients, capsys, name):
    assert main(["check", name]) == 1
    out = capsys.readouterr().out
    assert "FAIL  swish (skipped)" in out and "No module named 'does_not_exist'" in out
    assert no_gradients == []


def test_a_check_naming_an_op_of_a_skipped_plugin_says_the_plugin_was_skipped(broken, capsys):
    assert main(["check", "swishy"]) == 2
    err = capsys.readouterr().err
    assert "'swishy' is neither a registered op nor a loaded plugin or distribution" in err
    assert "it may be an op of a plugin opreg skipped, whose ops are unknown: plugin 'swish'" in err
    assert "No module named 'does_not_exist'" in err


def test_a_check_naming_a_skipped_op_fails(site, no_gradients, capsys):
    site.install("mixed-ops", "mixed_ops", MIXED)
    reload_collecting_warnings()
    assert main(["check", "twice"]) == 1
    assert "FAIL  mixed-ops:twice (skipped)" in capsys.readouterr().out


def test_a_check_naming_good_ops_ignores_an_unrelated_broken_package(broken, no_gradients, capsys):
    assert main(["check", "good-ops", "exp"]) == 0
    assert no_gradients == ["cube", "exp"] and "skipped" not in capsys.readouterr().out


def test_two_distributions_with_one_entry_point_name_fail_the_check(site, no_gradients, capsys):
    site.install("first-dist", "first_mod", HEADER + CUBE, entry_point="ops")
    site.install("second-dist", "second_mod", HEADER + CUBE.replace("cube", "cube2"), entry_point="ops")
    reload_collecting_warnings()
    assert main(["check"]) == 1
    assert "second-dist 1.0" in capsys.readouterr().out
    assert main(["check", "--exclude", "second-dist"]) == 0


def test_strict_loading_raises_naming_the_plugin_and_the_reason(broken):
    with pytest.raises(opreg.PluginLoadError) as raised, warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        opreg.load_plugins(strict=True)
    message = str(raised.value)
    assert message.startswith("opreg skipped plugin 'swish' (distribution broken-ops 1.0")
    assert "ModuleNotFoundError: No module named 'does_not_exist'; strict loading (OPREG_STRICT=1" in message


def test_strict_loading_from_the_environment(site, monkeypatch):
    site.install("mixed-ops", "mixed_ops", MIXED)
    site.install("broken-ops", "broken_ops", "import does_not_exist\n")
    monkeypatch.setenv("OPREG_STRICT", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        with pytest.raises(opreg.PluginLoadError) as raised:
            opreg.reload_plugins()
        with pytest.raises(opreg.PluginLoadError):  # every use, until the plugins are fixed
            opreg.get_registry()
    lines = str(raised.value).splitlines()
    assert lines[0].startswith("opreg skipped 3 plugins or ops; strict loading")
    # (each failure's line starts with "- "; under typeguard, an invalid declaration's reason spans several lines)
    assert [line.split(" (")[0] for line in lines[1:] if line.startswith("- ")] == [
        "- op 'add' of plugin 'mixed-ops'",
        "- op 'twice' of plugin 'mixed-ops'",
        "- plugin 'broken-ops'",
    ]
    monkeypatch.setenv("OPREG_STRICT", "0")
    with pytest.warns(PluginWarning):
        infos = opreg.load_plugins()
    assert {info.name: info.status for info in infos}["broken-ops"] == "skipped"
    assert "cube" in opreg.get_registry()


def test_strict_loading_passes_when_every_plugin_loads(site):
    site.install("good-ops", "good_ops", HEADER + CUBE)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginWarning)
        infos = opreg.load_plugins(strict=True)
    assert {info.name: info.status for info in infos}["good-ops"] == "loaded" and "cube" in opreg.get_registry()


def test_pytest_gradcheck_fails_on_what_it_names_that_was_skipped(broken, pytester, monkeypatch):
    """A test per skipped plugin, failing with the reason and the file and line; an unknown name is a usage
    error, never an INTERNALERROR."""
    monkeypatch.setenv("PYTHONPATH", str(broken.root))
    result = pytester.runpytest_subprocess("--opreg-gradcheck=good-ops,broken-ops", "-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*gradcheck?good-ops:cube? PASSED*", "*gradcheck?swish? FAILED*"])
    result.stdout.fnmatch_lines(
        [
            "*opreg skipped plugin 'swish' (distribution broken-ops 1.0*No module named 'does_not_exist' "
            f"(at {broken.root / 'broken_ops.py'}:2); fix it*",
        ]
    )
    unknown = pytester.runpytest_subprocess("--opreg-gradcheck=swishy", "-p", "no:cacheprovider")
    assert unknown.ret == pytest.ExitCode.USAGE_ERROR and "INTERNALERROR" not in unknown.stdout.str()
    unknown.stderr.fnmatch_lines(["*'swishy' is neither a registered op*plugin 'swish'*does_not_exist*"])
    excluded = pytester.runpytest_subprocess(
        "--opreg-gradcheck=good-ops,broken-ops", "--opreg-gradcheck-exclude=swish", "-p", "no:cacheprovider"
    )
    excluded.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("source", "reason", "line"),
    [
        (HEADER.replace("register_ops", "register_opps") + CUBE, "unknown hook 'opreg_register_opps'", 5),
        ("import numpy\nimport does_not_exist\n" + HEADER + CUBE, "No module named 'does_not_exist'", 2),
        (HEADER + CLASH, "op 'add' is registered by both plugin 'opreg_builtins.arithmetic'", 7),
    ],
    ids=["misspelt-hook", "import-error", "builtin-name"],
)
def test_each_broken_package_of_the_issue_fails_the_check_of_every_op(site, no_gradients, capsys, source, reason, line):
    """Issue #13's three: each made `opreg check` print "N passed, 0 failed" and exit 0."""
    site.install("opreg-swish", "opreg_swish", source, entry_point="swish")
    reload_collecting_warnings()
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert reason in out and f"(at {site.root / 'opreg_swish.py'}:{line}); fix it" in out
    assert out.splitlines()[-1].endswith(" 1 failed (1 skipped plugins or ops)")
    assert main(["check", "--exclude", "opreg-swish"]) == 0


def test_a_plugin_disabled_on_purpose_does_not_fail_the_check(broken, monkeypatch, no_gradients, capsys):
    monkeypatch.setenv(plugin_manager.LOAD_ONLY_VAR, "good-ops")
    opreg.reload_plugins()
    assert main(["check"]) == 0 and "cube" in no_gradients


def test_the_location_is_in_the_plugin_not_in_the_library_it_called(site):
    """An error raised inside NumPy while the plugin imports is located at the plugin's line that called NumPy."""
    site.install("opreg-swish", "opreg_swish", "import numpy\n\nnumpy.load('no-such-file.npy')\n")
    reload_collecting_warnings()
    info = plugin_manager.plugin_infos_by_name()["opreg-swish"]
    assert "FileNotFoundError" in info.reason and info.location == f"{site.root / 'opreg_swish.py'}:3"


def test_strict_commands_fail_at_load_and_plugins_still_says_why(broken, monkeypatch, no_gradients, capsys):
    monkeypatch.setenv("OPREG_STRICT", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)
        with pytest.raises(opreg.PluginLoadError):  # as the first use of opreg in a new process does
            opreg.reload_plugins()
        assert main(["check", "good-ops"]) == 2
        assert capsys.readouterr().err.startswith("opreg check: opreg skipped plugin 'swish'")
        assert no_gradients == []
        assert main(["plugins"]) == 0
    assert re.search(r"^swish\s+skipped\s+broken-ops.*does_not_exist", capsys.readouterr().out, flags=re.MULTILINE)


def test_opreg_strict_in_a_fresh_process(broken):
    env = {**os.environ, "PYTHONPATH": str(broken.root), "OPREG_STRICT": "1"}
    strict = subprocess.run(
        [sys.executable, "-m", "opreg", "check", "good-ops"], env=env, capture_output=True, text=True
    )
    assert strict.returncode == 2 and strict.stdout == ""
    assert "opreg check: opreg skipped plugin 'swish'" in strict.stderr and "does_not_exist" in strict.stderr
