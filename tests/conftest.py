"""Shared fixtures: a fresh engine, and a way to register a throw-away op plugin for one test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import opreg


@pytest.fixture
def engine() -> opreg.Autograd:
    return opreg.Autograd()


class OpPlugin:
    """A plugin object whose hook registers the op declarations it was given."""

    def __init__(self, *declarations: dict[str, Any]) -> None:
        self.declarations = declarations

    @opreg.hookimpl
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
    names: list[str] = []

    def install(*declarations: dict[str, Any], name: str = "test-plugin") -> str:
        names.append(opreg.register_plugin(OpPlugin(*declarations), name=name))
        return names[-1]

    yield install
    for name in names:
        opreg.unregister_plugin(name)
