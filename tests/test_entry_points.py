"""Installed op packages: discovery through the ``opreg`` entry point group, isolation of broken ones, env vars.

Each test lays out real distributions in a temporary folder on ``sys.path`` (the ``site`` fixture), which
``importlib.metadata`` discovers exactly as it does pip-installed ones.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import warnings

import pytest

import opreg
from opreg import plugin_manager
from opreg.plugin_manager import PluginWarning

GOOD = """
import numpy as np
import opreg

@opreg.hookimpl
def opreg_register_ops(register):
    register(name="cube", inputs=("x",), forward=lambda x: x**3, backward=lambda g, x: (3 * g * x**2,))
"""


def reload_collecting_warnings() -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opreg.reload_plugins()
    return [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]


def test_an_installed_package_is_found_through_its_entry_point(site):
    site.install("opreg-cubes", "opreg_cubes", GOOD, entry_point="cubes")
    assert reload_collecting_warnings() == []
    op = opreg.get_registry()["cube"]
    assert op.plugin == "cubes"
    info = plugin_manager.plugin_infos_by_name()["cubes"]
    assert (info.distribution, info.version, info.status) == ("opreg-cubes", "1.0", "loaded")
    assert info.path == str(site.root / "opreg_cubes.py")
    opreg.check_op("cube")


def test_a_package_that_fails_to_import_is_skipped_and_the_rest_load(site):
    site.install("broken-import", "broken_import", "raise RuntimeError('no GPU here')", version="0.3")
    site.install("opreg-cubes", "opreg_cubes", GOOD)
    messages = reload_collecting_warnings()
    assert len(messages) == 1
    for part in ("broken-import", "0.3", "broken-import = broken_import", "RuntimeError: no GPU here"):
        assert part in messages[0]
    assert "cube" in opreg.get_registry()
    info = plugin_manager.plugin_infos_by_name()["broken-import"]
    assert info.status == "skipped" and "no GPU here" in info.reason


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        (  # the hook registers one good op, then raises: the good op must not stay behind
            GOOD.replace("backward=lambda g, x: (3 * g * x**2,))", "backward=lambda g, x: (3 * g * x**2,))\n    1 / 0"),
            "ZeroDivisionError",
        ),
        (GOOD.replace("def opreg_register_ops", "def opreg_register_opps"), "opreg_register_opps"),
    ],
    ids=["hook-raises", "misspelt-hook"],
)
def test_a_broken_plugin_is_skipped_whole_with_a_warning(site, source, reason):
    site.install("bad-ops", "bad_ops", source)
    site.install("opreg-squares", "opreg_squares", GOOD.replace("cube", "squared").replace("3 * g * x**2", "3 * g"))
    messages = reload_collecting_warnings()
    assert len(messages) == 1 and "bad-ops 1.0" in messages[0] and reason in messages[0]
    registry = opreg.get_registry()
    assert "cube" not in registry and "squared" in registry
    assert registry["add"].plugin == "opreg_builtins.arithmetic"
    assert plugin_manager.plugin_infos_by_name()["bad-ops"].status == "skipped"
    assert plugin_manager.get_plugin_manager().get_plugin("bad-ops") is None


def test_two_distributions_with_one_entry_point_name_warn(site):
    site.install("first-dist", "first_mod", GOOD, entry_point="ops")
    site.install("second-dist", "second_mod", GOOD.replace("cube", "cube2"), entry_point="ops")
    messages = reload_collecting_warnings()
    assert len(messages) == 1 and "'ops'" in messages[0]
    assert "first-dist" in messages[0] and "second-dist" in messages[0]


def test_autoload_can_be_disabled(site, monkeypatch):
    site.install("opreg-cubes", "opreg_cubes", GOOD)
    monkeypatch.setenv(plugin_manager.DISABLE_AUTOLOAD_VAR, "1")
    opreg.reload_plugins()
    assert "cube" not in opreg.get_registry() and "add" in opreg.get_registry()
    info = plugin_manager.plugin_infos_by_name()["opreg-cubes"]
    assert info.status == "disabled" and plugin_manager.DISABLE_AUTOLOAD_VAR in info.reason


def test_only_the_listed_distributions_load(site, monkeypatch):
    site.install("opreg-cubes", "opreg_cubes", GOOD)
    site.install("opreg-squares", "opreg_squares", GOOD.replace("cube", "squared"))
    monkeypatch.setenv(plugin_manager.LOAD_ONLY_VAR, "opreg-squares")
    opreg.reload_plugins()
    registry = opreg.get_registry()
    assert "squared" in registry and "cube" not in registry and "add" in registry
    assert plugin_manager.plugin_infos_by_name()["opreg-cubes"].status == "disabled"


def test_a_broken_installed_plugin_breaks_neither_import_nor_the_command(site):
    """In a fresh process: ``import opreg`` loads no plugin, and ``opreg ops`` works, warning about the bad one."""
    site.install("broken-import", "broken_import", "raise RuntimeError('no GPU here')")
    env = {**os.environ, "PYTHONPATH": str(site.root)}
    imported = subprocess.run([sys.executable, "-c", "import opreg"], env=env, capture_output=True, text=True)
    assert imported.returncode == 0 and imported.stderr == ""
    listed = subprocess.run([sys.executable, "-m", "opreg", "ops"], env=env, capture_output=True, text=True)
    assert listed.returncode == 0 and "matmul" in listed.stdout
    assert "opreg skipped plugin 'broken-import'" in listed.stderr and "no GPU here" in listed.stderr


@pytest.mark.parametrize(
    "source",
    [
        "import time\ntime.sleep(30)\n" + GOOD,
        GOOD.replace(
            "def opreg_register_ops(register):\n",
            "def opreg_register_ops(register):\n    import time\n    time.sleep(30)\n",
        ),
    ],
    ids=["import-hangs", "hook-hangs"],
)
def test_a_plugin_that_hangs_is_skipped_after_the_timeout(site, monkeypatch, source):
    monkeypatch.setenv(plugin_manager.TIMEOUT_VAR, "0.5")
    site.install("slow-ops", "slow_ops", source)
    site.install("opreg-squares", "opreg_squares", GOOD.replace("cube", "squared"))
    messages = reload_collecting_warnings()
    assert len(messages) == 1 and "slow-ops" in messages[0] and "did not finish within 0.5 s" in messages[0]
    assert "squared" in opreg.get_registry() and "cube" not in opreg.get_registry()


def _in_the_hook(statement: str) -> str:
    """GOOD, with ``statement`` run first thing in its hook."""
    return GOOD.replace("def opreg_register_ops(register):\n", f"def opreg_register_ops(register):\n    {statement}\n")


@pytest.mark.parametrize(
    ("source", "raised"),
    [
        ("import sys\nsys.exit(3)\n", "SystemExit(3)"),
        ("raise KeyboardInterrupt\n", "KeyboardInterrupt()"),
        (_in_the_hook("import sys; sys.exit()"), "SystemExit()"),
        (_in_the_hook("raise KeyboardInterrupt"), "KeyboardInterrupt()"),
    ],
    ids=["exit-on-import", "interrupt-on-import", "exit-in-hook", "interrupt-in-hook"],
)
def test_a_plugin_raising_system_exit_or_keyboard_interrupt_is_skipped(site, source, raised):
    """A plugin's own sys.exit() or KeyboardInterrupt is a failing plugin, skipped with a warning: it ended every
    opreg command (exit status 3, no output) and the first use of the library."""
    site.install("exiting-ops", "exiting_ops", source)
    site.install("opreg-squares", "opreg_squares", GOOD.replace("cube", "squared"))
    env = {**os.environ, "PYTHONPATH": str(site.root)}
    listed = subprocess.run([sys.executable, "-m", "opreg", "ops"], env=env, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    listed_ops = [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]
    assert "matmul" in listed_ops and "squared" in listed_ops and "cube" not in listed_ops
    assert "opreg skipped plugin 'exiting-ops'" in listed.stderr
    assert f"PluginExit: it raised {raised} itself, which would end the program" in listed.stderr


def test_a_ctrl_c_while_plugins_load_still_stops_opreg(site, tmp_path):
    """A SIGINT from the user while a plugin is loading is not the plugin's KeyboardInterrupt: opreg stops."""
    started = tmp_path / "started"
    site.install(
        "slow-ops", "slow_ops", f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\ntime.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site.root), plugin_manager.TIMEOUT_VAR: "60"}
    # opreg ops, where Ctrl-C raises KeyboardInterrupt as in a terminal (a process started in the background of a
    # shell inherits SIGINT ignored, and Python then leaves it so)
    script = (
        "import signal, opreg.cli; signal.signal(signal.SIGINT, signal.default_int_handler); opreg.cli.main(['ops'])"
    )
    command = subprocess.Popen(
        [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        while not started.exists() and command.poll() is None:  # until the plugin is being imported
            time.sleep(0.01)
        command.send_signal(signal.SIGINT)
        out, err = command.communicate(timeout=60)
    finally:
        command.kill()
    assert command.returncode != 0 and "KeyboardInterrupt" in err
    assert "matmul" not in out and "skipped" not in err


@pytest.mark.parametrize("hangs_in", ["import", "hook"])
def test_a_plugin_that_hung_is_skipped_at_once_until_it_changes_or_is_retried(site, hangs_in):
    """A hung plugin costs the timeout once: later processes skip it without importing it, until OPREG_RETRY_PLUGINS
    is set or its distribution changes. (It cost every command the timeout.)"""
    hang = "import time; time.sleep(60)"
    source = hang + "\n" + GOOD if hangs_in == "import" else _in_the_hook(hang)
    site.install("slow-ops", "slow_ops", source)
    env = {**os.environ, "PYTHONPATH": str(site.root), plugin_manager.TIMEOUT_VAR: "0.5"}
    # opreg plugins, then whether the plugin's module was imported at all
    script = "import sys, opreg.cli; opreg.cli.main(['plugins']); print('slow_ops' in sys.modules)"

    def plugins(**variables: str) -> tuple[str, bool]:
        """What ``opreg plugins`` warned, in a process of its own, and whether it imported the plugin."""
        shown = subprocess.run(
            [sys.executable, "-c", script], env={**env, **variables}, capture_output=True, text=True, check=True
        )
        assert "slow-ops" in shown.stdout and "skipped" in shown.stdout, shown.stdout
        return shown.stderr, shown.stdout.split()[-1] == "True"

    timed_out = "did not finish within 0.5 s (OPREG_PLUGIN_TIMEOUT); it may hang"
    remembered = (
        "it did not finish within 0.5 s (OPREG_PLUGIN_TIMEOUT) when last loaded; skipped without waiting until it "
        "changes (another version, a reinstall) or OPREG_RETRY_PLUGINS=1 tries it again"
    )
    assert timed_out in plugins()[0]
    warned, imported = plugins()
    assert remembered in warned and not imported
    assert timed_out in plugins(OPREG_RETRY_PLUGINS="1")[0]
    warned, imported = plugins()
    assert remembered in warned and not imported
    shutil.rmtree(site.root / "slow_ops-1.0.dist-info")  # upgraded to 1.1: tried again
    site.install("slow-ops", "slow_ops", source, version="1.1")
    assert timed_out in plugins()[0]
