"""The main job: data, training to the promised accuracy in both styles, reproducibility, saving, evaluating,
plotting, and the commands."""

from __future__ import annotations

import numpy as np
import pytest

from opreg.cli import main
from opreg.datasets import DataFileError, load_data, load_digits
from opreg.evaluation import evaluate
from opreg.train import ConfigError, TrainConfig, train

from blobs import blobs

QUICK = TrainConfig(epochs=3)


def test_the_bundled_digits_load():
    features, labels = load_digits()
    assert features.shape == (1797, 64) and labels.shape == (1797,)
    assert features.min() == 0 and features.max() == 1
    assert np.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_default_training_reaches_97_percent_on_held_out_digits():
    result = train()
    assert result.final.test_accuracy >= 0.97
    assert result.final.loss < result.history[0].loss / 10
    assert len(result.history) == TrainConfig().epochs


def test_one_seed_gives_the_same_numbers_and_another_seed_different_ones():
    first, second = train(QUICK), train(QUICK)
    assert first.history == second.history
    assert train(TrainConfig(epochs=3, seed=1)).history != first.history


def test_the_tape_engine_and_tensors_train_to_the_same_numbers():
    """One model class, two front ends, one set of derivatives: the runs agree to rounding."""
    tape = train(TrainConfig(epochs=3, optimizer="adam"))
    tensors = train(TrainConfig(epochs=3, optimizer="adam", engine="tensor"))
    np.testing.assert_allclose([s.loss for s in tape.history], [s.loss for s in tensors.history], rtol=1e-12)
    assert [s.test_accuracy for s in tape.history] == [s.test_accuracy for s in tensors.history]


@pytest.mark.parametrize("engine", ["tape", "tensor"])
def test_a_compiled_training_run_gives_the_eager_runs_numbers(engine):
    """opreg train replays its step by default (opreg.compile): bit for bit the eager run, most steps replayed."""
    compiled = train(TrainConfig(epochs=3, optimizer="adam", engine=engine))
    eager = train(TrainConfig(epochs=3, optimizer="adam", engine=engine, compile=False))
    assert compiled.history == eager.history
    for a, b in zip(compiled.model.parameters(), eager.model.parameters(), strict=True):
        assert np.array_equal(a.data, b.data)
    assert compiled.steps == eager.steps == 3 * 45  # 1437 training rows in batches of 32


def test_invalid_settings_are_refused():
    with pytest.raises(ConfigError, match="optimizer must be one of sgd, adam, got 'lbfgs'"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(ConfigError, match="epochs must be a whole number of at least 1, got 0"):
        TrainConfig(epochs=0)


def test_the_train_command_prints_a_summary_and_ends_with_the_test_accuracy(capsys):
    assert main(["train", "--epochs", "2", "--hidden", "32,16", "--activation", "tanh", "--optimizer", "adam"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == "MLP 64-32-16-10 (tanh), adam, tape engine, 2 epochs"
    assert lines[1].split() == ["final", "loss", "train", "accuracy", "test", "accuracy", "time", "steps/s"]
    assert float(lines[2].split()[-1].replace(",", "")) > 0
    assert lines[-1].startswith("test accuracy: ")
    assert "epoch 2/2" in err


def test_the_train_command_rejects_bad_layer_sizes(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--hidden", "12,x"])
    assert "comma-separated layer sizes" in capsys.readouterr().err


def test_save_and_evaluate_round_trip(tmp_path, capsys):
    model = tmp_path / "model.npz"
    assert main(["train", "--quiet", "--epochs", "3", "--engine", "tensor", "--save", str(model)]) == 0
    trained = capsys.readouterr().out.splitlines()[-1]
    result = evaluate(model)
    assert f"test accuracy: {result.accuracy:.1%}" == trained
    assert result.confusion.sum() == result.n_examples == 359
    assert np.trace(result.confusion) == round(result.accuracy * result.n_examples)
    assert main(["evaluate", str(model)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"accuracy: {result.accuracy:.1%} on 359 examples (the held-out 20% of the bundled")
    assert out[2].split() == [str(c) for c in range(10)]


def test_a_model_file_of_another_architecture_is_refused(tmp_path, capsys):
    small, large = tmp_path / "small.npz", tmp_path / "large.npz"
    main(["train", "--quiet", "--epochs", "1", "--hidden", "16", "--save", str(small)])
    main(["train", "--quiet", "--epochs", "1", "--hidden", "32", "--save", str(large)])
    capsys.readouterr()
    archive = dict(np.load(large, allow_pickle=False))
    archive["__opreg_metadata__"] = np.load(small, allow_pickle=False)["__opreg_metadata__"]
    mixed = tmp_path / "mixed.npz"
    np.savez(mixed, **archive)
    assert main(["evaluate", str(mixed)]) == 2
    assert "parameter '0.W' is float64 (32, 64) in the state but float64 (16, 64)" in capsys.readouterr().err
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file")
    assert main(["evaluate", str(tmp_path / "garbage.npz")]) == 2
    assert "is not a model file written by opreg" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".csv", ".npz"])
def test_training_and_evaluating_on_the_users_own_data(tmp_path, capsys, suffix):
    features, labels = blobs()
    data = tmp_path / f"blobs{suffix}"
    if suffix == ".csv":
        np.savetxt(data, np.column_stack([features, labels]), delimiter=",")
    else:
        np.savez(data, x=features, y=labels)
    loaded_features, loaded_labels = load_data(data)
    np.testing.assert_array_equal(loaded_labels, labels)
    np.testing.assert_array_equal(loaded_features, features)
    model = tmp_path / "blobs-model.npz"
    assert main(["train", "--quiet", "--data", str(data), "--hidden", "8", "--epochs", "20", "--save", str(model)]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("MLP 2-8-3 ")
    assert evaluate(model, str(data), held_out=True).accuracy >= 0.95
    assert evaluate(model, str(data)).n_examples == 300


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("1,2,0\n3,4,x\n", "cannot read"),
        ("1,2,0.5\n3,4,1\n", "labels must be whole numbers"),
        ("1,2,-1\n3,4,1\n", "labels must be 0 or more"),
        ("1,nan,0\n3,4,1\n", "NaN or infinite"),
    ],
)
def test_bad_data_files_are_refused_clearly(tmp_path, capsys, content, message):
    data = tmp_path / "bad.csv"
    data.write_text(content)
    with pytest.raises(DataFileError, match=message):
        load_data(data)
    assert main(["train", "--quiet", "--data", str(data)]) == 2
    assert message in capsys.readouterr().err


def test_plotting_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    curves = tmp_path / "curves.png"
    assert main(["train", "--quiet", "--epochs", "2", "--plot", str(curves)]) == 0
    assert curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
