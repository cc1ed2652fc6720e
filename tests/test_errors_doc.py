"""docs/errors.md, the error matrix: each section's code raises exactly the error the page shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import opreg
from opreg import plugin_manager

PAGE = Path(__file__).resolve().parent.parent / "docs" / "errors.md"
TEXT = PAGE.read_text()
PRELUDE = re.search(r"```python\n(.*?)```", TEXT.split("\n## ", 1)[0], flags=re.DOTALL).group(1)
SECTIONS = [
    (title.strip(), code, error, message.strip())
    for title, code, error, message in re.findall(
        r"^## (.+?)\n\n```python\n(.*?)```\n\n> (\w+): (.*?)$", TEXT, flags=re.DOTALL | re.MULTILINE
    )
]


def test_the_page_has_its_sections():
    assert len(SECTIONS) == TEXT.count("\n## ") >= 25


@pytest.mark.parametrize(("title", "code", "error", "message"), SECTIONS, ids=[s[0] for s in SECTIONS])
def test_the_code_raises_what_the_page_says(title, code, error, message):
    namespace: dict = {}
    exec(compile(PRELUDE, str(PAGE), "exec"), namespace)
    try:
        with pytest.raises(Exception) as raised:
            exec(compile(code, f"{PAGE}: {title}", "exec"), namespace)
    finally:
        if plugin_manager.get_plugin_manager().get_plugin("my-ops") is not None:
            opreg.unregister_plugin("my-ops")
    assert type(raised.value).__name__ == error
    assert str(raised.value).strip() == message
