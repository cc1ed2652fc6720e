"""The files opreg writes: every output path is checked before training, so that a run never ends in a write
that cannot happen; and a write that fails midway (a full disk) leaves the previous file as it was, with no
temporary file behind."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import opreg
from opreg.cli import main


def _unwritable(tmp_path: Path, kind: str, suffix: str) -> tuple[str, str]:
    """A path opreg cannot write, and what the message must say about it."""
    if kind == "missing folder":
        return str(tmp_path / "missing" / f"out{suffix}"), f"the folder {str(tmp_path / 'missing')!r} does not exist"
    if kind == "a folder":
        (tmp_path / f"out{suffix}").mkdir()
        return str(tmp_path / f"out{suffix}"), "it is a folder"
    (tmp_path / "file").write_text("")
    return str(tmp_path / "file" / f"out{suffix}"), f"{str(tmp_path / 'file')!r} is a file, not a folder"


@pytest.mark.parametrize("option", ["--save", "--plot"])
@pytest.mark.parametrize("kind", ["missing folder", "a folder", "inside a file"])
def test_an_output_path_that_cannot_be_written_is_refused_before_training(capsys, tmp_path, no_training, option, kind):
    if option == "--plot":
        pytest.importorskip("matplotlib")
    path, reason = _unwritable(tmp_path, kind, ".npz" if option == "--save" else ".png")
    assert main(["train", "--quiet", option, path]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"opreg train: cannot write {path!r}: ") and reason in err
    assert len(err.splitlines()) == 1


def test_a_plot_format_matplotlib_cannot_write_is_refused_before_training(capsys, tmp_path, no_training):
    pytest.importorskip("matplotlib")
    assert main(["train", "--quiet", "--plot", str(tmp_path / "curves.xyz")]) == 2
    err = capsys.readouterr().err
    assert "matplotlib cannot write .xyz files" in err and "png" in err


def test_plotting_without_matplotlib_is_refused_before_training(capsys, tmp_path, monkeypatch, no_training):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    assert main(["train", "--quiet", "--plot", str(tmp_path / "curves.png")]) == 2
    assert "pip install 'opreg[plot]'" in capsys.readouterr().err


def _disk_full_after(some_bytes: bytes):
    """A writer that writes ``some_bytes`` to the file it is given (open, or a name), then fails as a full disk
    does."""

    def write(file, *args: object, **kwargs: object) -> None:
        if isinstance(file, str | os.PathLike):
            with open(file, "wb") as opened:
                write(opened)
        file.write(some_bytes)
        file.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    return write


def test_a_save_that_fails_midway_leaves_the_previous_model_intact(capsys, tmp_path, monkeypatch):
    model = tmp_path / "model.npz"
    opreg.nn.save(opreg.nn.MLP([2, 3, 2]), model)
    before = model.read_bytes()
    monkeypatch.setattr(np, "savez", _disk_full_after(b"PK\x03\x04 half an archive"))
    with pytest.raises(OSError, match="No space left on device"):
        opreg.nn.save(opreg.nn.MLP([2, 3, 2]), model)
    assert model.read_bytes() == before and os.listdir(tmp_path) == ["model.npz"]

    assert main(["train", "--quiet", "--epochs", "1", "--save", str(model)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {str(model)!r}: No space left on device; the file already there is unchanged" in err
    assert model.read_bytes() == before and os.listdir(tmp_path) == ["model.npz"]


def test_a_plot_that_fails_midway_leaves_the_previous_plot_intact(capsys, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    curves = tmp_path / "curves.png"
    curves.write_bytes(b"the previous plot")
    monkeypatch.setattr(Figure, "savefig", lambda self, file, **kwargs: _disk_full_after(b"\x89PNG half")(file))
    assert main(["train", "--quiet", "--epochs", "1", "--plot", str(curves)]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert curves.read_bytes() == b"the previous plot" and os.listdir(tmp_path) == ["curves.png"]


def test_an_interrupted_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    """Not only OSError: whatever stops the writer (Ctrl-C here) removes the temporary file and changes nothing."""
    model = tmp_path / "model.npz"

    def interrupted(file, *args: object, **kwargs: object) -> None:
        file.write(b"PK")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        opreg.nn.save(opreg.nn.MLP([2, 3, 2]), model)
    assert os.listdir(tmp_path) == []


def test_a_saved_file_gets_the_permissions_a_new_file_gets(tmp_path):
    """The temporary file becomes the model: it must not keep a temporary file's owner-only permissions."""
    model = tmp_path / "model.npz"
    opreg.nn.save(opreg.nn.MLP([2, 3, 2]), model)
    reference = tmp_path / "reference"
    reference.write_bytes(b"")
    assert model.stat().st_mode == reference.stat().st_mode
