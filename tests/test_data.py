"""opreg.data: TensorDataset and DataLoader over NumPy arrays, reproducible, and a training loop with them."""

from __future__ import annotations

import numpy as np
import pytest

import opreg
from opreg.data import DataLoader, TensorDataset, default_collate
from opreg.nn import MLP, Identity, SoftmaxCrossEntropy
from opreg.optim import Adam


def dataset(n=10):
    x = np.arange(n * 3, dtype=np.float64).reshape(n, 3)
    y = np.arange(n) % 4
    return x, y, TensorDataset(x, y)


def test_tensor_dataset_items_and_length():
    x, y, data = dataset()
    assert len(data) == 10
    item = data[3]
    assert isinstance(item, tuple) and len(item) == 2
    np.testing.assert_array_equal(item[0], x[3], strict=True)
    assert item[1] == y[3]


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ((np.ones((5, 2)), np.ones(4)), "array 0 has 5 rows but array 1 has 4"),
        ((np.ones(3), np.float64(1.0)), "array 1 is a single number"),
        ((), "at least one array"),
    ],
    ids=["lengths", "0-d", "none"],
)
def test_tensor_dataset_refuses_arrays_that_do_not_line_up(arrays, match):
    with pytest.raises(ValueError, match=match):
        TensorDataset(*arrays)


@pytest.mark.parametrize(
    ("batch_size", "drop_last", "sizes"),
    [(4, False, [4, 4, 2]), (4, True, [4, 4]), (10, False, [10]), (20, True, []), (1, False, [1] * 10)],
)
def test_batches_in_order(batch_size, drop_last, sizes):
    x, y, data = dataset()
    loader = DataLoader(data, batch_size=batch_size, drop_last=drop_last)
    batches = list(loader)
    assert len(loader) == len(batches) == len(sizes)
    assert [len(b[0]) for b in batches] == sizes
    if not drop_last:
        np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x, strict=True)
        np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y, strict=True)
    assert all(isinstance(b, tuple) and isinstance(b[0], np.ndarray) for b in batches)


def epochs(loader, n=3):
    return [[tuple(a.copy() for a in batch) for batch in loader] for _ in range(n)]


def test_shuffle_is_reproducible_with_a_seed_and_differs_between_epochs():
    x, y, data = dataset(50)
    first = epochs(DataLoader(data, batch_size=8, shuffle=True, seed=3))
    again = epochs(DataLoader(data, batch_size=8, shuffle=True, seed=3))
    generator = epochs(DataLoader(data, batch_size=8, shuffle=True, generator=np.random.default_rng(3)))
    other = epochs(DataLoader(data, batch_size=8, shuffle=True, seed=4))
    for a, b, c in zip(first, again, generator, strict=True):
        for (xa, ya), (xb, yb), (xc, _) in zip(a, b, c, strict=True):
            np.testing.assert_array_equal(xa, xb, strict=True)
            np.testing.assert_array_equal(xa, xc, strict=True)
            np.testing.assert_array_equal(ya, yb, strict=True)
    orders = [np.concatenate([xb[:, 0] for xb, _ in epoch]) for epoch in first]
    assert not np.array_equal(orders[0], orders[1]), "every epoch in the same order"
    assert not np.array_equal(orders[0], np.concatenate([xb[:, 0] for xb, _ in other[0]]))
    for order in orders:  # each epoch is a permutation: every item once
        np.testing.assert_array_equal(np.sort(order), x[:, 0], strict=True)
    for xb, yb in first[0]:  # rows stay together
        np.testing.assert_array_equal(yb, (xb[:, 0] // 3).astype(y.dtype) % 4, strict=True)


class Pairs:
    """A dataset that is not a TensorDataset: items are (array, label) tuples, collated item by item."""

    def __len__(self):
        return 5

    def __getitem__(self, i):
        return np.full(2, float(i)), i


def test_a_dataset_of_tuples_is_collated():
    batches = list(DataLoader(Pairs(), batch_size=2))
    assert len(batches) == 3
    features, labels = batches[0]
    np.testing.assert_array_equal(features, np.array([[0.0, 0.0], [1.0, 1.0]]), strict=True)
    np.testing.assert_array_equal(labels, np.array([0, 1]), strict=True)


def test_default_collate_dicts_and_refusals():
    batch = default_collate([{"x": np.ones(2), "y": 1}, {"x": np.zeros(2), "y": 0}])
    assert set(batch) == {"x", "y"} and batch["x"].shape == (2, 2)
    with pytest.raises(ValueError, match="different shapes"):
        default_collate([np.ones(2), np.ones(3)])


def test_collate_fn_is_used():
    batches = list(DataLoader(Pairs(), batch_size=5, collate_fn=len))
    assert batches == [5]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": True}, ValueError, "batch_size"),
        ({"seed": 1, "generator": np.random.default_rng(1)}, ValueError, "not both"),
    ],
)
def test_loader_refuses_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        DataLoader(dataset()[2], **kwargs)


@pytest.fixture
def without_typeguard(pytestconfig):
    if pytestconfig.getoption("typeguard_packages", default=None):
        pytest.skip("under typeguard, an argument of the wrong type is refused by typeguard first")


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((iter([1, 2]),), {}, TypeError, "len\\(\\) and \\[i\\]"),
        ((dataset()[2],), {"batch_size": 2.5}, ValueError, "batch_size"),
        ((dataset()[2],), {"generator": 1}, TypeError, "numpy.random.Generator"),
    ],
    ids=["not-a-dataset", "fractional-batch-size", "not-a-generator"],
)
def test_loader_refuses_arguments_of_the_wrong_type(without_typeguard, args, kwargs, error, match):
    with pytest.raises(error, match=match):
        DataLoader(*args, **kwargs)


@pytest.mark.parametrize("style", ["tape", "tensor"])
def test_training_with_a_loader_is_reproducible_in_both_styles(style):
    """An epoch of Adam over a seeded loader: the same seed gives bit-identical weights in both styles."""
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((40, 4)), rng.integers(0, 3, 40)
    results = []
    for run_style in (style, style, "tensor" if style == "tape" else "tape"):
        engine = opreg.Autograd() if run_style == "tape" else None
        model = MLP([4, 8, 3], engine, output_activation=Identity, rng=np.random.default_rng(1))
        optimizer = Adam(model.parameters(), lr=0.01)
        criterion = SoftmaxCrossEntropy(engine)
        for xb, yb in DataLoader(TensorDataset(x, np.eye(3)[labels]), batch_size=8, shuffle=True, seed=5):
            optimizer.zero_grad()
            if engine is not None:
                engine.zero_grad()
                criterion(yb, model(xb))
                engine.backward(1.0)
            else:
                criterion(yb, model(xb)).backward()
            optimizer.step()
        results.append([p.data.copy() for p in model.parameters()])
    for a, b, c in zip(*results, strict=True):
        np.testing.assert_array_equal(a, b, strict=True)
        np.testing.assert_array_equal(a, c, strict=True)


def test_the_bundled_digits_are_still_found():
    """opreg/data is a package now and still holds the digits."""
    from opreg.datasets import load_digits

    features, labels = load_digits()
    assert features.shape == (1797, 64) and labels.max() == 9
