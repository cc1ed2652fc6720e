"""Installed op packages: discovery through the ``opreg`` entry point group, isolation of broken ones, env vars.

Each test lays out real distributions in a temporary folder on ``sys.path`` (the ``site`` fixture), which
``importlib.metadata`` discovers exactly as it does pip-installed ones.
"""

from __future__ import annotations

import os
import subprocess
import sys
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
        (GOOD.replace('inputs=("x",)', 'inputs="x"'), "inputs"),
        (GOOD.replace('name="cube"', 'name="add"'), "'add' is registered by both plugin 'opreg_builtins.arithmetic'"),
        (GOOD.replace("def opreg_register_ops", "def opreg_register_opps"), "opreg_register_opps"),
    ],
    ids=["hook-raises", "invalid-op", "takes-a-builtin-name", "misspelt-hook"],
)
def test_a_broken_plugin_is_skipped_whole_with_a_warning(site, source, reason):
    site.install("bad-ops", "bad_ops", source)
    site.install("opreg-squares", "opreg_squares", GOOD.replace("cube", "square").replace("3 * g * x**2", "3 * g"))
    messages = reload_collecting_warnings()
    assert len(messages) == 1 and "bad-ops 1.0" in messages[0] and reason in messages[0]
    registry = opreg.get_registry()
    assert "cube" not in registry and "square" in registry
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
    site.install("opreg-squares", "opreg_squares", GOOD.replace("cube", "square"))
    monkeypatch.setenv(plugin_manager.LOAD_ONLY_VAR, "opreg-squares")
    opreg.reload_plugins()
    registry = opreg.get_registry()
    assert "square" in registry and "cube" not in registry and "add" in registry
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
    site.install("opreg-squares", "opreg_squares", GOOD.replace("cube", "square"))
    messages = reload_collecting_warnings()
    assert len(messages) == 1 and "slow-ops" in messages[0] and "did not finish within 0.5 s" in messages[0]
    assert "square" in opreg.get_registry() and "cube" not in opreg.get_registry()
