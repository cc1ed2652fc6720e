"""What ``opreg train`` and ``opreg evaluate`` refuse, and how: a short message on stderr naming what is wrong and
what to do instead, and exit status 2; never a traceback, never an allocation the machine cannot hold, never a
file read because a model file names it. A refusal comes before any training."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import opreg
from opreg.cli import main
from opreg.progress import EpochProgress
from opreg.train import DivergedError, TrainConfig, train

GIB = 2**30


def refused(capsys: pytest.CaptureFixture[str], argv: list[str], *fragments: str) -> str:
    """Run the command; it must exit 2 with a message of a few lines holding every fragment."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in err
    assert err.startswith(f"opreg {argv[0]}: ") and len(err.splitlines()) <= 3
    return err


@pytest.fixture
def little_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """8 GiB of memory available, whatever the machine has: the refusals do not depend on where tests run."""
    import opreg.memory

    monkeypatch.setattr(opreg.memory, "available_bytes", lambda: 8 * GIB)


# --- settings -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--epochs", "0"], "epochs must be a whole number of at least 1, got 0"),
        (["--batch-size", "0"], "batch_size must be a whole number of at least 1, got 0"),
        (["--lr", "-1"], "lr must be a finite number above 0, got -1.0"),
        (["--lr", "nan"], "lr must be a finite number above 0, got nan"),
        (["--momentum", "-1"], "momentum must be at least 0 and below 1, got -1.0"),
        (["--seed", "-1"], "seed must be a whole number of at least 0, got -1"),
    ],
)
def test_settings_out_of_range_are_refused(capsys, no_training, option, message):
    refused(capsys, ["train", "--quiet", *option], message)


def test_a_network_too_large_for_memory_is_refused_before_it_is_allocated(capsys, little_memory):
    refused(
        capsys,
        ["train", "--quiet", "--hidden", "100000,100000"],
        "MLP 64-100000-100000-10 would take about 151 GiB, more than the 8.0 GiB of memory available",
        "use smaller hidden layers",
    )


# --- data files -----------------------------------------------------------------------------------------------


def _npz_claiming_8_tb(tmp_path: Path) -> str:
    """An ``.npz`` whose array ``x`` has a header claiming 10**12 float64s, over 1 kB of data."""
    header, labels = io.BytesIO(), io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
    np.save(labels, np.zeros(2, dtype=np.int64))
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", header.getvalue() + bytes(1024))
        archive.writestr("y.npy", labels.getvalue())
    return str(path)


def _text_named_npz(tmp_path: Path) -> str:
    path = tmp_path / "text.npz"
    path.write_text("1,2,0\n3,4,1\n5,6,2\n")
    return str(path)


def _npy(tmp_path: Path) -> str:
    path = tmp_path / "x.npy"
    np.save(path, np.ones((30, 3)))
    return str(path)


#: What each bad data file is refused with; each case writes its file: ``case(data_file, tmp_path) -> path``.
DATA: dict[str, tuple[Callable[[Callable[..., str], Path], str], list[str]]] = {
    "complex features": (
        lambda files, tmp: files("c.npz", features=np.ones((30, 2)) * (1 + 2j)),
        ["'x' holds complex128 numbers", "separate columns"],
    ),
    "complex labels": (
        lambda files, tmp: files("c.npz", labels=np.zeros(30) + 1j),
        ["'y' holds complex128 numbers", "class numbers 0, 1, 2"],
    ),
    "string features": (
        lambda files, tmp: files("s.npz", features=np.full((30, 2), "a")),
        ["'x' holds <U1 values, not numbers"],
    ),
    "one column": (lambda files, tmp: files("one.csv", features=np.empty((30, 0))), ["no feature columns"]),
    "two rows": (
        lambda files, tmp: files("two.csv", features=np.ones((2, 2)), labels=np.array([0, 1])),
        ["2 rows are too few", "at least 3"],
    ),
    "a label of 1e9": (
        lambda files, tmp: files("big.csv", labels=np.r_[np.zeros(29), 1e9]),
        ["MLP 2-128-1000000001 would take about", "labels", "0, 1, 2"],
    ),
    "an .npz claiming 8 TB": (
        lambda files, tmp: _npz_claiming_8_tb(tmp),
        [
            "its arrays (the largest: 'x', float64 (1000000, 1000000)) would take 7.3 TiB",
            "more than the 8.0 GiB of memory available",
        ],
    ),
    "text named .npz": (lambda files, tmp: _text_named_npz(tmp), ["it is not an .npz (zip) archive"]),
    "an .npy file": (lambda files, tmp: _npy(tmp), ["a single NumPy array", "np.savez"]),
}


@pytest.mark.parametrize("case", DATA)
def test_data_that_cannot_be_trained_on_is_refused(capsys, tmp_path, data_file, little_memory, no_training, case):
    make, fragments = DATA[case]
    refused(capsys, ["train", "--quiet", "--data", make(data_file, tmp_path)], *fragments)


# --- a training run that diverges ------------------------------------------------------------------------------


def _diverging(data_file: Callable[..., str]) -> str:
    """Features of 1e200: the first step overflows the weights, and the second batch's loss is NaN."""
    from blobs import blobs

    features, labels = blobs(30)
    return data_file("huge.csv", features=features * 1e200, labels=labels)


def test_training_stops_at_the_first_nonfinite_loss(capsys, tmp_path, data_file):
    model = tmp_path / "model.npz"
    argv = ["train", "--quiet", "--data", _diverging(data_file), "--batch-size", "8", "--save", str(model)]
    refused(capsys, argv, "the training loss is nan at epoch 1, batch 2", "--allow-nonfinite", "--lr")
    assert not model.exists()


def test_allow_nonfinite_trains_on_and_evaluate_refuses_the_result(capsys, tmp_path, data_file):
    model = tmp_path / "model.npz"
    data = _diverging(data_file)
    argv = ["train", "--quiet", "--allow-nonfinite", "--data", data, "--batch-size", "8", "--epochs", "1"]
    assert main([*argv, "--save", str(model)]) == 0
    capsys.readouterr()
    refused(capsys, ["evaluate", str(model), "--data", data], "parameter '0.W' holds NaN or infinite values")


def test_a_run_stopped_mid_epoch_ends_the_progress_bar_line_before_the_message(capsys, monkeypatch, data_file):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(opreg.cli, "EpochProgress", lambda epochs: EpochProgress(epochs, stream=terminal))
    refused(capsys, ["train", "--data", _diverging(data_file), "--batch-size", "8"], "the training loss is nan")
    assert terminal.getvalue().startswith("\repoch  1/50 [#######") and terminal.getvalue().endswith("\n")


def test_the_training_function_raises_the_same_error(data_file):
    config = TrainConfig(data=_diverging(data_file), batch_size=8, epochs=1)
    with pytest.raises(DivergedError, match="allow_nonfinite=True"):
        train(config)


# --- model files ----------------------------------------------------------------------------------------------


@pytest.fixture
def model_file(tmp_path, data_file, capsys) -> Path:
    """A model trained for one epoch on 30 rows of blobs."""
    path = tmp_path / "model.npz"
    assert main(["train", "--quiet", "--epochs", "1", "--hidden", "4", "--data", data_file(), "--save", str(path)]) == 0
    capsys.readouterr()
    return path


def _with_metadata(model: Path, metadata: object) -> str:
    """A copy of ``model`` whose metadata is ``metadata``: JSON text if a string, else dumped as JSON; or none."""
    archive = dict(np.load(model, allow_pickle=False))
    del archive[opreg.nn.serialization.METADATA_KEY]
    if metadata is not None:
        text = metadata if isinstance(metadata, str) else json.dumps(metadata)
        archive[opreg.nn.serialization.METADATA_KEY] = np.array(text)
    path = model.with_name("edited.npz")
    np.savez(path, **archive)
    return str(path)


def _fields(model: Path, **changes: object) -> dict[str, object]:
    metadata = json.loads(str(np.load(model, allow_pickle=False)[opreg.nn.serialization.METADATA_KEY]))
    return {**metadata, **changes}


METADATA = {
    "none": (lambda model: None, ["holds a model that takes 2 features, not the bundled digits' 64: pass --data FILE"]),
    "not JSON": (lambda model: "{not json", ["its metadata is not JSON"]),
    "not an object": (lambda model: "[1, 2]", ["its metadata is not a JSON object"]),
    "epochs a string": (lambda model: _fields(model, epochs="x"), ["epochs must be a whole number", "got 'x'"]),
    "hidden a number": (lambda model: _fields(model, hidden=5), ["hidden must be a list of whole numbers"]),
    "data a number": (lambda model: _fields(model, data=5), ["data must be a file name or None, got 5"]),
    "layer_sizes a string": (lambda model: _fields(model, layer_sizes="2-4-3"), ["layer_sizes must be a list"]),
    "no layer_sizes": (lambda model: _fields(model, layer_sizes=None), ["layer_sizes must be a list"]),
    "layer_sizes of 1e6": (
        lambda model: _fields(model, layer_sizes=[2, 10**6, 10**6, 3]),
        ["MLP 2-1000000-1000000-3 would take about 7.3 TiB"],
    ),
}


@pytest.mark.parametrize("case", METADATA)
def test_model_files_with_bad_metadata_are_refused(capsys, model_file, little_memory, case):
    make, fragments = METADATA[case]
    refused(capsys, ["evaluate", _with_metadata(model_file, make(model_file))], *fragments)


def test_a_model_file_never_makes_opreg_read_another_file(capsys, tmp_path, model_file):
    secret = tmp_path / "secret.csv"
    secret.write_text("1,2,0\n3,4,1\n5,6,2\n7,8,0\n9,10,1\n")
    edited = _with_metadata(model_file, _fields(model_file, data=str(secret)))
    err = refused(capsys, ["evaluate", edited], f"pass --data {secret} --held-out")
    assert "1,2,0" not in err


def test_evaluate_scores_the_held_out_rows_of_the_file_given(capsys, model_file, data_file):
    assert main(["evaluate", str(model_file), "--data", data_file(), "--held-out"]) == 0
    assert "on 6 examples (the held-out 20% of " in capsys.readouterr().out


@pytest.mark.parametrize(
    ("features", "labels", "message"),
    [
        (np.ones((5, 3)), np.zeros(5), "3 feature columns, but the model takes 2"),
        (np.ones((5, 2)), np.r_[np.zeros(4), 1e9], "label 1000000000, but the model has outputs for classes 0..2"),
    ],
)
def test_evaluating_on_data_that_does_not_fit_the_model_is_refused(
    capsys, model_file, data_file, features, labels, message
):
    refused(capsys, ["evaluate", str(model_file), "--data", data_file("other.csv", features, labels)], message)
