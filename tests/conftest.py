"""Shared fixtures: a fresh engine, ways to register throw-away op plugins for one test, small data files.

This file does not import opreg at module level: conftest files load before typeguard's pytest plugin installs
its import hook, and ``pytest --typeguard-packages=opreg`` can only instrument opreg if it is imported later.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy
import pytest

from blobs import blobs

if TYPE_CHECKING:
    import opreg

pytest_plugins = ["pytester"]

#: The same marker as ``opreg.hookimpl`` (pluggy markers are identified by project name).
hookimpl = pluggy.HookimplMarker("opreg")


@pytest.fixture
def engine() -> opreg.Autograd:
    import opreg

    return opreg.Autograd()


class OpPlugin:
    """A plugin object whose hook registers the op declarations it was given."""

    def __init__(self, *declarations: dict[str, Any]) -> None:
        self.declarations = declarations

    @hookimpl
    def opreg_register_ops(self, register: opreg.Register) -> None:
        for declaration in self.declarations:
            register(**declaration)


@pytest.fixture
def op_plugin() -> type[OpPlugin]:
    """The plugin class, for tests that register (or fail to register) a plugin themselves."""
    return OpPlugin


@pytest.fixture
def install_ops() -> Iterator[Callable[..., str]]:
    """``install_ops({...}, name="p")`` registers a plugin with those op declarations until the test ends."""
    import opreg

    names: list[str] = []

    def install(*declarations: dict[str, Any], name: str = "test-plugin") -> str:
        names.append(opreg.register_plugin(OpPlugin(*declarations), name=name))
        return names[-1]

    yield install
    for name in names:
        opreg.unregister_plugin(name)


class Site:
    """A folder on ``sys.path`` to install throw-away distributions into: a module and its ``*.dist-info``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: list[str] = []

    def install(self, dist: str, module: str, source: str, entry_point: str | None = None, version: str = "1.0"):
        (self.root / f"{module}.py").write_text(textwrap.dedent(source))
        info = self.root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[opreg]\n{entry_point or dist} = {module}\n")
        self.modules.append(module)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    """Installed op packages for one test; plugins are reloaded without them afterwards."""
    import opreg
    from opreg import hung_plugins, plugin_manager

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(plugin_manager.DISABLE_AUTOLOAD_VAR, raising=False)
    monkeypatch.delenv(plugin_manager.LOAD_ONLY_VAR, raising=False)
    monkeypatch.delenv(hung_plugins.RETRY_VAR, raising=False)
    monkeypatch.setenv(hung_plugins.CACHE_VAR, str(tmp_path / "cache"))  # hung plugins remembered for this test
    site = Site(tmp_path)
    yield site
    monkeypatch.undo()
    for module in site.modules:
        sys.modules.pop(module, None)
    opreg.reload_plugins()


@pytest.fixture
def data_file(tmp_path: Path) -> Callable[..., str]:
    """``data_file(name, features=None, labels=None)`` writes a file ``opreg train --data`` reads (``.csv``: the
    label in the last column; ``.npz``: arrays ``x`` and ``y``) and returns its path; 30 rows of blobs by default,
    so that a training run on it takes milliseconds."""
    import numpy as np

    def write(name: str = "blobs.csv", features: Any = None, labels: Any = None) -> str:
        default_features, default_labels = blobs(30)
        features = default_features if features is None else features
        labels = default_labels if labels is None else labels
        path = tmp_path / name
        if name.endswith(".npz"):
            np.savez(path, x=features, y=labels)
        else:
            np.savetxt(path, np.column_stack([features, labels]), delimiter=",")
        return str(path)

    return write


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any training step fails the test: for refusals that must come before training."""

    def fail(*args: object) -> None:
        raise AssertionError("trained before refusing")

    monkeypatch.setattr("opreg.train.train_step", fail)
