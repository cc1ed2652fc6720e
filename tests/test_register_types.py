"""``register`` is typed: mypy checks a plugin's declarations, and names a misspelled keyword before it runs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

mypy_api = pytest.importorskip("mypy.api")

PLUGIN = """
    import numpy as np

    from opreg.plugin import Register, hookimpl


    @hookimpl
    def opreg_register_ops(register: Register) -> None:
        register(
            name="cube",
            inputs=("x",),
            forward=lambda x: x * x * x,
            backward=lambda g, x: (3 * g * x * x,),
            {extra}
        )
"""


def _mypy(tmp_path: Path, extra: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, int]:
    """mypy on a plugin in a folder of its own, so opreg is found as installed (its py.typed marker), not as a
    folder beside the test."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "cube_ops.py"
    path.write_text(textwrap.dedent(PLUGIN.format(extra=extra)))
    cache = tmp_path / ".mypy_cache"
    stdout, _, status = mypy_api.run(["--strict", "--cache-dir", str(cache), "--no-error-summary", str(path)])
    return stdout, status


def test_a_misspelled_register_keyword_fails_the_type_check(tmp_path, monkeypatch):
    stdout, status = _mypy(tmp_path, 'sample_input=None, doc="x cubed",', monkeypatch)
    assert status == 1 and 'Unexpected keyword argument "sample_input"' in stdout, stdout


def test_a_correct_declaration_passes_the_type_check(tmp_path, monkeypatch):
    stdout, status = _mypy(tmp_path, 'doc="x cubed", numpy="cube",', monkeypatch)
    assert status == 0, stdout
