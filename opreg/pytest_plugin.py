"""The pytest plugin: ``pytest --opreg-gradcheck`` adds one gradient-check test per registered op.

Installed with opreg (entry point ``pytest11``), so an op package gets a test per op with no test code:
``pytest --opreg-gradcheck`` checks every op of every loaded plugin, ``--opreg-gradcheck=my-ops`` only those of
the plugins (or distributions, or ops) named. Each test runs :func:`opreg.check_op`.

An installed plugin or op that loading skipped is one failing test, ``gradcheck[PLUGIN]`` or
``gradcheck[PLUGIN:OP]``, with the reason and where it failed (:mod:`opreg.selection`), in a check of every op
and in one that names it; ``--opreg-gradcheck-exclude=NAME[,NAME]`` leaves it out. A name that matches nothing
is a usage error, not an internal one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from opreg.errors import GradcheckError, OpregError, SkippedPluginError
from opreg.opcheck import check_op
from opreg.plugin_manager import Skipped
from opreg.selection import report, select, split_names


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("opreg")
    group.addoption(
        "--opreg-gradcheck",
        nargs="?",
        const="",
        default=None,
        metavar="PLUGIN[,PLUGIN]",
        help="add a gradient-check test for every registered op, or for the ops of the plugins named",
    )
    group.addoption(
        "--opreg-gradcheck-exclude",
        action="append",
        default=[],
        metavar="NAME[,NAME]",
        help="leave out these ops, plugins or distributions (or PLUGIN:OP), and do not fail because they were skipped",
    )


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    selection = config.getoption("opreg_gradcheck")
    if selection is None:
        return
    try:
        chosen = select(split_names([selection]), exclude=split_names(config.getoption("opreg_gradcheck_exclude")))
    except OpregError as exc:  # an unknown name, strict loading: the user's to fix, not an INTERNALERROR
        raise pytest.UsageError(f"--opreg-gradcheck: {exc}") from None
    for op in chosen.ops:
        items.append(GradcheckItem.from_parent(session, name=f"gradcheck[{op.plugin}:{op.name}]", op_name=op.name))
    for skipped in chosen.skipped:
        name = skipped.plugin if skipped.op is None else f"{skipped.plugin}:{skipped.op}"
        items.append(SkippedItem.from_parent(session, name=f"gradcheck[{name}]", skipped=skipped))


class GradcheckItem(pytest.Item):
    """One op's :func:`check_op`, reported as the check's own message rather than a traceback."""

    def __init__(self, *, op_name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.op_name = op_name

    def runtest(self) -> None:
        check_op(self.op_name)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, GradcheckError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo, style=style))

    def reportinfo(self) -> tuple[str, None, str]:
        return "opreg-gradcheck", None, self.name


class SkippedItem(pytest.Item):
    """A skipped plugin or op: a test that fails, saying why it was skipped and where."""

    def __init__(self, *, skipped: Skipped, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.skipped = skipped

    def runtest(self) -> None:
        raise SkippedPluginError(report(self.skipped))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, SkippedPluginError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo, style=style))

    def reportinfo(self) -> tuple[str, int | None, str]:
        location = self.skipped.location
        if location and ":" in location:
            path, _, line = location.rpartition(":")
            if line.isdigit():
                return str(Path(path)), int(line) - 1, self.name
        return "opreg-gradcheck", None, self.name
