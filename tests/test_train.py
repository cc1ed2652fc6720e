"""The main job: the bundled digits, training to the promised accuracy, reproducibility, and the command."""

from __future__ import annotations

import numpy as np
import pytest

from opreg.cli import main
from opreg.datasets import load_digits
from opreg.train import TrainConfig, train_digits


def test_the_bundled_digits_load():
    features, labels = load_digits()
    assert features.shape == (1797, 64) and labels.shape == (1797,)
    assert features.min() == 0 and features.max() == 1
    assert np.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_default_training_reaches_95_percent_on_held_out_digits():
    result = train_digits()
    assert result.test_accuracy >= 0.95
    assert result.epoch_losses[-1] < result.epoch_losses[0] / 10


def test_one_seed_gives_the_same_numbers_and_another_seed_different_ones():
    config = TrainConfig(epochs=3)
    first, second = train_digits(config), train_digits(config)
    assert first.epoch_losses == second.epoch_losses
    assert first.test_accuracy == second.test_accuracy
    assert train_digits(TrainConfig(epochs=3, seed=1)).epoch_losses != first.epoch_losses


def test_the_train_command_reports_the_test_accuracy(capsys):
    assert main(["train", "--epochs", "2", "--hidden", "32,16"]) == 0
    out, err = capsys.readouterr()
    assert "MLP 64-32-16-10" in out
    assert out.splitlines()[-1].startswith("test accuracy: ")
    assert "epoch 2/2" in err


def test_the_train_command_rejects_bad_layer_sizes(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--hidden", "12,x"])
    assert "comma-separated layer sizes" in capsys.readouterr().err
