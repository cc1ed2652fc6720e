"""The pytest plugin: ``pytest --opreg-gradcheck`` adds one gradient-check test per registered op.

Installed with opreg (entry point ``pytest11``), so an op package gets a test per op with no test code:
``pytest --opreg-gradcheck`` checks every op of every loaded plugin, ``--opreg-gradcheck=my-ops`` only those of
the plugins (or distributions, or ops) named. Each test runs :func:`opreg.check_op`.
"""

from __future__ import annotations

from typing import Any

import pytest

from opreg.errors import GradcheckError
from opreg.opcheck import check_op, select_ops


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("opreg").addoption(
        "--opreg-gradcheck",
        nargs="?",
        const="",
        default=None,
        metavar="PLUGIN[,PLUGIN]",
        help="add a gradient-check test for every registered op, or for the ops of the plugins named",
    )


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    selection = config.getoption("opreg_gradcheck")
    if selection is None:
        return
    for op in select_ops([part for part in selection.split(",") if part]):
        items.append(GradcheckItem.from_parent(session, name=f"gradcheck[{op.plugin}:{op.name}]", op_name=op.name))


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
