"""The two module styles (tape and Tensor) against each other and against torch; state dicts, save/load, flags.

One code path serves both styles, so the same MLP built from the same seed must give bit-identical outputs, losses,
gradients and training trajectories whichever style it is in, and both must equal torch.nn.Sequential with copied
weights.
"""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

import opreg
from opreg.nn import (
    MLP,
    BoundParameter,
    Identity,
    Linear,
    ModelFileError,
    MSELoss,
    ReLU,
    Sequential,
    Sigmoid,
    SoftmaxCrossEntropy,
    Tanh,
    load,
    save,
)
from opreg.optim import SGD

from torch_reference import needs_torch, torch

nn = None if torch is None else torch.nn

TOL = {"rtol": 1e-10, "atol": 1e-12}
NAMES = ["0.W", "0.b", "2.W", "2.b"]


def xent_case(rng):
    x = rng.standard_normal((12, 4))
    classes = rng.integers(0, 3, size=12)
    return {
        "sizes": [4, 8, 3],
        "kwargs": {"output_activation": Identity},
        "torch_activations": [nn.ReLU, nn.Identity],
        "criterion": SoftmaxCrossEntropy,
        "x": x,
        "y": np.eye(3)[classes],
        "torch_loss": lambda out: nn.CrossEntropyLoss()(out, torch.from_numpy(classes)),
    }


def mse_case(rng):
    x = rng.standard_normal((12, 4))
    y = rng.uniform(0, 1, size=(12, 3))
    return {
        "sizes": [4, 8, 3],
        "kwargs": {},  # the handout's Sigmoid output
        "torch_activations": [nn.ReLU, nn.Sigmoid],
        "criterion": MSELoss,
        "x": x,
        "y": y,
        "torch_loss": lambda out: nn.MSELoss()(out, torch.tensor(y)),
    }


def deep_mse_case(rng):
    x = rng.standard_normal((9, 5))
    y = rng.standard_normal((9, 2))
    return {
        "sizes": [5, 7, 6, 2],
        "kwargs": {"activation": Tanh, "output_activation": Identity},
        "torch_activations": [nn.Tanh, nn.Tanh, nn.Identity],
        "criterion": MSELoss,
        "x": x,
        "y": y,
        "torch_loss": lambda out: nn.MSELoss()(out, torch.tensor(y)),
    }


CASES = {"xent-4-8-3": xent_case, "mse-4-8-3-sigmoid": mse_case, "mse-5-7-6-2-tanh": deep_mse_case}
case_params = pytest.mark.parametrize("make_case", CASES.values(), ids=CASES.keys())


def linears(model: MLP) -> list[Linear]:
    return [layer for layer in model.layers if isinstance(layer, Linear)]


def values(x) -> np.ndarray:
    """The array behind a Tensor, or the array itself."""
    return x.data if isinstance(x, opreg.Tensor) else x


def build_styles(case, seed: int = 0):
    """The same MLP (same seed) on a tape and on Tensors, and a torch nn.Sequential holding copies of its weights."""
    engine = opreg.Autograd()
    tape = MLP(case["sizes"], engine, rng=np.random.default_rng(seed), **case["kwargs"])
    tensors = MLP(case["sizes"], rng=np.random.default_rng(seed), **case["kwargs"])
    layers = []
    for linear, activation in zip(linears(tape), case["torch_activations"], strict=True):
        t_linear = nn.Linear(linear.W.shape[1], linear.W.shape[0], dtype=torch.float64)
        with torch.no_grad():
            t_linear.weight.copy_(torch.tensor(linear.W))
            t_linear.bias.copy_(torch.tensor(linear.b))
        layers += [t_linear, activation()]
    return engine, tape, tensors, nn.Sequential(*layers)


def assert_same(a, b, what: str) -> None:
    np.testing.assert_array_equal(values(a), values(b), err_msg=what, strict=True)


def assert_close_to_torch(a, t, what: str) -> None:
    np.testing.assert_allclose(values(a), t.detach().numpy(), err_msg=what, strict=True, **TOL)


# --- tape style == Tensor style == torch -----------------------------------------------------------------------


@needs_torch
@case_params
def test_styles_build_the_same_parameters(make_case):
    """Same seed, same initial weights; tape parameters are BoundParameters over W/dW, Tensor ones are Tensors."""
    _, tape, tensors, _ = build_styles(make_case(np.random.default_rng(0)))
    tape_named, tensor_named = tape.named_parameters(), tensors.named_parameters()
    assert [n for n, _ in tape_named] == [n for n, _ in tensor_named]
    assert [n for n, _ in tape_named][:4] == NAMES
    for (name, p), (_, q) in zip(tape_named, tensor_named, strict=True):
        assert isinstance(p, BoundParameter) and isinstance(q, opreg.Tensor), name
        assert q.requires_grad and q.grad is None, name
        assert_same(p.data, q.data, name)
    for linear in linears(tape):
        p_W, p_b = (p for p in tape.parameters() if p.module is linear)
        assert p_W.data is linear.W and p_W.grad is linear.dW
        assert p_b.data is linear.b and p_b.grad is linear.db
    for linear in linears(tensors):
        assert linear.dW is None and linear.db is None


@needs_torch
@case_params
def test_styles_give_identical_outputs_losses_and_gradients(make_case):
    case = make_case(np.random.default_rng(1))
    engine, tape, tensors, t_model = build_styles(case)
    tape_out = tape(case["x"])
    tape_loss = case["criterion"](engine)(case["y"], tape_out)
    engine.backward(1.0)
    tensor_out = tensors(case["x"])
    tensor_loss = case["criterion"]()(case["y"], tensor_out)
    tensor_loss.backward()
    t_out = t_model(torch.tensor(case["x"]))
    t_loss = case["torch_loss"](t_out)
    t_loss.backward()

    assert type(tape_out) is np.ndarray and isinstance(tensor_out, opreg.Tensor)
    assert_same(tape_out, tensor_out, "output")
    assert_same(tape_loss, tensor_loss, "loss")
    assert_close_to_torch(tape_out, t_out, "output vs torch")
    assert_close_to_torch(tape_loss, t_loss, "loss vs torch")
    t_linears = [m for m in t_model if isinstance(m, nn.Linear)]
    for i, (a, b, t) in enumerate(zip(linears(tape), linears(tensors), t_linears, strict=True)):
        assert_same(a.dW, b.W.grad, f"layer {i}: dW vs W.grad")
        assert_same(a.db, b.b.grad, f"layer {i}: db vs b.grad")
        assert_close_to_torch(a.dW, t.weight.grad, f"layer {i} dW vs torch")
        assert_close_to_torch(a.db, t.bias.grad, f"layer {i} db vs torch")
    for (name, p), (_, q) in zip(tape.named_parameters(), tensors.named_parameters(), strict=True):
        assert_same(p.grad, q.grad, f"{name}: .grad through parameters()")


@needs_torch
@case_params
def test_gradients_accumulate_alike_without_zero_grad(make_case):
    """Three backward passes on different batches with no zero_grad of the parameters in between: dW/db and .grad
    hold the same sums in both styles (the tape is cleared with engine.zero_grad each time), as torch's do."""
    case = make_case(np.random.default_rng(5))
    engine, tape, tensors, t_model = build_styles(case)
    rng = np.random.default_rng(6)
    for _ in range(3):
        x = case["x"] + 0.5 * rng.standard_normal(case["x"].shape)
        engine.zero_grad()
        case["criterion"](engine)(case["y"], tape(x))
        engine.backward(1.0)
        case["criterion"]()(case["y"], tensors(x)).backward()
        case["torch_loss"](t_model(torch.tensor(x))).backward()
    t_params = list(t_model.parameters())
    for (name, p), (_, q), t_p in zip(tape.named_parameters(), tensors.named_parameters(), t_params, strict=True):
        assert_same(p.grad, q.grad, f"{name}: accumulated gradient")
        assert_close_to_torch(p.grad, t_p.grad, f"{name}: accumulated gradient vs torch")


@needs_torch
@case_params
def test_sgd_training_in_both_styles(make_case):
    """Twenty SGD steps (momentum 0.9) on the same batches: identical weights in both styles at every step, equal to
    torch's at the end, and the loss went down."""
    case = make_case(np.random.default_rng(2))
    engine, tape, tensors, t_model = build_styles(case, seed=3)
    tape_opt = SGD(tape.parameters(), lr=0.1, momentum=0.9)
    tensor_opt = SGD(tensors.parameters(), lr=0.1, momentum=0.9)
    t_opt = torch.optim.SGD(t_model.parameters(), lr=0.1, momentum=0.9)
    tape_criterion, tensor_criterion = case["criterion"](engine), case["criterion"]()
    losses = []
    for step in range(20):
        tape_opt.zero_grad()
        engine.zero_grad()
        loss = tape_criterion(case["y"], tape(case["x"]))
        engine.backward(1.0)
        tape_opt.step()
        tensor_opt.zero_grad()
        tensor_loss = tensor_criterion(case["y"], tensors(case["x"]))
        tensor_loss.backward()
        tensor_opt.step()
        t_opt.zero_grad()
        case["torch_loss"](t_model(torch.tensor(case["x"]))).backward()
        t_opt.step()
        assert_same(loss, tensor_loss, f"loss at step {step}")
        for (name, p), (_, q) in zip(tape.named_parameters(), tensors.named_parameters(), strict=True):
            assert_same(p.data, q.data, f"{name} after step {step + 1}")
        losses.append(float(loss))
    for (name, p), t_p in zip(tape.named_parameters(), t_model.parameters(), strict=True):
        assert_close_to_torch(p.data, t_p, f"{name} vs torch after 20 steps")
    assert losses[-1] < losses[0]


# --- tape style: the user may replace W -------------------------------------------------------------------------


def test_replaced_weight_is_seen_by_parameters_and_optimizer():
    """Tape style: assigning a new array to linear.W (after the optimizer was made) is what parameters(),
    state_dict(), forward and the optimizer use; the old array is left alone."""
    engine = opreg.Autograd()
    model = MLP([4, 8, 3], engine, output_activation=Identity, rng=np.random.default_rng(4))
    optimizer = SGD(model.parameters(), lr=0.5)
    first = model.layers[0]
    old_W = first.W
    old_copy = old_W.copy()
    new_W = np.random.default_rng(5).standard_normal(old_W.shape)
    first.W = new_W
    assert model.parameters()[0].data is new_W
    assert dict(model.named_parameters())["0.W"].data is new_W
    assert optimizer.parameters[0].data is new_W
    np.testing.assert_array_equal(model.state_dict()["0.W"], new_W, strict=True)

    x, y = np.random.default_rng(6).standard_normal((5, 4)), np.eye(3)[[0, 1, 2, 0, 1]]
    hidden = np.maximum(x @ new_W.T + first.b, 0)
    out = model(x)
    np.testing.assert_allclose(out, hidden @ model.layers[2].W.T + model.layers[2].b, **TOL)

    SoftmaxCrossEntropy(engine)(y, out)
    engine.backward(1.0)
    expected = new_W - 0.5 * first.dW
    before_step = new_W.copy()
    optimizer.step()
    assert first.W is new_W, "the optimizer must update the user's array in place"
    np.testing.assert_allclose(new_W, expected, **TOL)
    assert not np.array_equal(new_W, before_step)
    np.testing.assert_array_equal(old_W, old_copy, strict=True)


def test_replaced_gradient_array_is_seen_by_optimizer():
    """Tape style: a new dW array assigned by the user receives the gradient and is what the optimizer reads."""
    engine = opreg.Autograd()
    layer = Linear(3, 2, engine, rng=np.random.default_rng(7))
    optimizer = SGD(layer.parameters(), lr=1.0)
    old_dW = layer.dW
    layer.dW = np.zeros_like(layer.W)
    W_before = layer.W.copy()
    x = np.random.default_rng(8).standard_normal((4, 3))
    layer(x)
    engine.backward(1.0)
    np.testing.assert_allclose(layer.dW, np.ones((4, 2)).T @ x, **TOL)
    assert not np.any(old_dW)
    optimizer.step()
    np.testing.assert_allclose(layer.W, W_before - layer.dW, **TOL)
    optimizer.zero_grad()
    assert not np.any(layer.dW)


# --- state dicts -----------------------------------------------------------------------------------------------


def make_model(style: str, seed: int, sizes=(4, 8, 3)):
    engine = opreg.Autograd() if style == "tape" else None
    return MLP(list(sizes), engine, output_activation=Identity, rng=np.random.default_rng(seed))


STYLES = ["tape", "tensor"]
style_params = pytest.mark.parametrize("style", STYLES)


def outputs(model, x) -> np.ndarray:
    return np.array(values(model(x)), copy=True)


def parameter_arrays(model) -> list[np.ndarray]:
    return [p.data for p in model.parameters()]


def assert_state_equal(model, state: dict, what: str = "") -> None:
    current = model.state_dict()
    assert list(current) == list(state), what
    for name in state:
        np.testing.assert_array_equal(current[name], state[name], err_msg=f"{what}: {name}", strict=True)


@style_params
def test_state_dict_is_a_copy_by_name(style):
    model = make_model(style, 9)
    state = model.state_dict()
    assert list(state) == NAMES
    for name, p in model.named_parameters():
        np.testing.assert_array_equal(state[name], p.data, strict=True)
        assert not np.shares_memory(state[name], p.data), f"{name} shares memory with the model"
    state["0.W"][...] = 0.0
    assert np.any(model.state_dict()["0.W"])


@pytest.mark.parametrize("source", STYLES)
@pytest.mark.parametrize("target", STYLES)
def test_state_dict_round_trip(source, target):
    """load_state_dict copies values in place into a fresh model (of either style): same outputs after."""
    x = np.random.default_rng(10).standard_normal((6, 4))
    original, fresh = make_model(source, 11), make_model(target, 12)
    assert not np.array_equal(outputs(original, x), outputs(fresh, x))
    arrays = parameter_arrays(fresh)
    fresh.load_state_dict(original.state_dict())
    assert_state_equal(fresh, original.state_dict())
    np.testing.assert_array_equal(outputs(fresh, x), outputs(original, x), strict=True)
    assert all(a is b for a, b in zip(parameter_arrays(fresh), arrays, strict=True)), "arrays replaced, not filled"


def bad_states():
    """(description, make bad state from a good one, expected name in the error)."""

    def missing(state):
        del state["2.b"]
        return state

    def unknown(state):
        state["4.W"] = np.zeros((3, 3))
        return state

    def bad_shape(state):
        state["2.W"] = np.zeros((3, 7))
        return state

    def bad_dtype(state):
        state["2.b"] = state["2.b"].astype(np.float32)
        return state

    return {
        "missing": (missing, "'2.b'"),
        "unknown": (unknown, "'4.W'"),
        "shape": (bad_shape, "'2.W'"),
        "dtype": (bad_dtype, "'2.b'"),
    }


@style_params
@pytest.mark.parametrize("problem", bad_states().keys())
def test_load_state_dict_rejects_and_changes_nothing(style, problem):
    """A state with a missing, unknown, misshapen or wrongly typed entry is a ModelFileError naming it; the entries
    before it (which would fit) are not copied either."""
    make_bad, name = bad_states()[problem]
    model = make_model(style, 13)
    before = model.state_dict()
    state = make_bad(make_model(style, 14).state_dict())
    with pytest.raises(ModelFileError, match=name) as info:
        model.load_state_dict(state)
    assert isinstance(info.value, ValueError) and isinstance(info.value, opreg.OpregError)
    assert_state_equal(model, before, "after a rejected load_state_dict")


# --- save / load -----------------------------------------------------------------------------------------------


@style_params
@pytest.mark.parametrize("as_str", [False, True], ids=["Path", "str"])
def test_save_load_round_trip(style, as_str, tmp_path):
    """A trained model saved to .npz and loaded into a fresh one (other seed) gives identical outputs."""
    x, y = np.random.default_rng(15).standard_normal((8, 4)), np.eye(3)[[0, 1, 2, 0, 1, 2, 0, 1]]
    model = make_model(style, 16)
    engine = model.autograd_engine
    optimizer = SGD(model.parameters(), lr=0.2)
    for _ in range(3):
        optimizer.zero_grad()
        if style == "tape":
            engine.zero_grad()
            SoftmaxCrossEntropy(engine)(y, model(x))
            engine.backward(1.0)
        else:
            SoftmaxCrossEntropy()(y, model(x)).backward()
        optimizer.step()
    path = tmp_path / "model.npz"
    save(model, str(path) if as_str else path)
    assert path.exists()
    with np.load(path, allow_pickle=False) as archive:
        for name, p in model.named_parameters():
            np.testing.assert_array_equal(archive[name], p.data, strict=True)

    fresh = make_model(style, 17)
    assert not np.array_equal(outputs(fresh, x), outputs(model, x))
    assert load(fresh, str(path) if as_str else path) is fresh
    np.testing.assert_array_equal(outputs(fresh, x), outputs(model, x), strict=True)
    assert_state_equal(fresh, model.state_dict())


@style_params
@pytest.mark.parametrize(
    ("saved_sizes", "name"),
    [((4, 6, 3), "'0.W'"), ((4, 8, 5), "'2.W'"), ((4, 8, 3, 2), "'4.W'"), ((4, 8), "'2.W'")],
    ids=["hidden-width", "output-width", "extra-layer", "missing-layer"],
)
def test_load_rejects_wrong_architecture(style, saved_sizes, name, tmp_path):
    """A file of another architecture is a ModelFileError naming the first mismatched parameter; nothing changes,
    not even the parameters that come before it and would fit."""
    path = tmp_path / "other.npz"
    save(make_model(style, 18, saved_sizes), path)
    model = make_model(style, 19)
    before = model.state_dict()
    x = np.random.default_rng(20).standard_normal((3, 4))
    out_before = outputs(model, x)
    with pytest.raises(ModelFileError, match=name):
        load(model, path)
    assert_state_equal(model, before, "after a rejected load")
    np.testing.assert_array_equal(outputs(model, x), out_before, strict=True)


def garbage_files(good: bytes) -> dict[str, bytes]:
    return {
        "empty": b"",
        "text": b"this is not a model\n",
        "random": np.random.default_rng(21).bytes(2000),
        "zip-magic-only": b"PK\x03\x04" + b"\x00" * 20,
        "truncated-10": good[:10],
        "truncated-half": good[: len(good) // 2],
        "truncated-end": good[:-40],
    }


@style_params
@pytest.mark.parametrize("kind", garbage_files(b"").keys())
def test_load_rejects_malformed_files(style, kind, tmp_path):
    model = make_model(style, 22)
    good_path = tmp_path / "good.npz"
    save(make_model(style, 23), good_path)
    path = tmp_path / "bad.npz"
    path.write_bytes(garbage_files(good_path.read_bytes())[kind])
    before = model.state_dict()
    with pytest.raises(ModelFileError):
        load(model, path)
    assert_state_equal(model, before, "after a rejected load")


def test_load_rejects_a_missing_file(tmp_path):
    with pytest.raises(ModelFileError):
        load(make_model("tape", 24), tmp_path / "nothing.npz")


def test_load_rejects_an_npy_file(tmp_path):
    path = tmp_path / "array.npy"
    np.save(path, np.zeros((8, 4)))
    with pytest.raises(ModelFileError):
        load(make_model("tape", 25), path)


def test_load_rejects_a_zip_of_other_files(tmp_path):
    path = tmp_path / "other.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ModelFileError):
        load(make_model("tape", 26), path)


UNPICKLED: list[str] = []


def _record_unpickling() -> str:
    UNPICKLED.append("called")
    return "unpickled"


class Payload:
    """Unpickling this calls _record_unpickling: evidence that a loader ran pickle."""

    def __reduce__(self):
        return (_record_unpickling, ())


def test_load_never_unpickles(tmp_path, monkeypatch):
    """np.load is called with allow_pickle=False, so an .npz holding an object array is refused (a ModelFileError,
    the model unchanged) without running the pickle inside it."""
    model = make_model("tape", 27)
    state = model.state_dict()
    state["0.W"] = np.array([Payload()] * 32, dtype=object).reshape(8, 4)
    path = tmp_path / "pickled.npz"
    np.savez(path, **state)
    with np.load(path, allow_pickle=True) as archive:  # the premise: loading it with pickle runs the payload
        archive["0.W"]
    assert UNPICKLED == ["called"]
    UNPICKLED.clear()

    calls = []
    real_load = np.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(np, "load", spy)
    before = model.state_dict()
    with pytest.raises(ModelFileError, match="pickle"):
        load(model, path)
    assert calls and all(kwargs.get("allow_pickle") is False for kwargs in calls)
    assert UNPICKLED == []
    assert_state_equal(model, before, "after refusing a pickled file")


# --- train / eval ----------------------------------------------------------------------------------------------


def all_modules(module):
    yield module
    for child in module.children():
        yield from all_modules(child)


@style_params
def test_train_and_eval_set_flags_recursively(style):
    engine = opreg.Autograd() if style == "tape" else None
    inner = make_model(style, 28) if style == "tensor" else MLP([4, 8, 3], engine, rng=np.random.default_rng(28))
    model = Sequential(inner, Linear(3, 2, engine, rng=np.random.default_rng(29)), ReLU(engine))
    modules = list(all_modules(model))
    assert len(modules) == 1 + 1 + 4 + 2
    assert all(m.training for m in modules)
    assert model.eval() is model
    assert not any(m.training for m in modules)
    assert model.train() is model
    assert all(m.training for m in modules)
    assert model.train(False) is model
    assert not any(m.training for m in modules)
    inner.train()
    assert [m.training for m in modules] == [False, True, True, True, True, True, False, False]


# --- Sequential and engines ------------------------------------------------------------------------------------


def test_sequential_rejects_modules_on_different_engines():
    first, second = opreg.Autograd(), opreg.Autograd()
    rng = np.random.default_rng(30)
    with pytest.raises(ValueError, match="same engine"):
        Sequential(Linear(2, 3, first, rng=rng), Linear(3, 2, second, rng=rng))
    with pytest.raises(ValueError, match="same engine"):
        Sequential(Linear(2, 3, first, rng=rng), ReLU())  # a tape and Tensors
    with pytest.raises(ValueError, match="same engine"):
        Sequential(Linear(2, 3, rng=rng), Sigmoid(first))
    with pytest.raises(ValueError, match="same engine"):
        Sequential(MLP([2, 3], first, rng=rng), MLP([3, 2], second, rng=rng))


@pytest.mark.parametrize("style", STYLES)
def test_sequential_of_modules_on_one_engine(style):
    engine = opreg.Autograd() if style == "tape" else None
    rng = np.random.default_rng(31)
    model = Sequential(Linear(2, 3, engine, rng=rng), Tanh(engine), Linear(3, 2, engine, rng=rng))
    if style == "tape":
        assert model.autograd_engine is engine
    else:
        assert model.autograd_engine is model.layers[0].autograd_engine
    assert [name for name, _ in model.named_parameters()] == ["0.W", "0.b", "2.W", "2.b"]
    x = rng.standard_normal((4, 2))
    first, last = model.layers[0], model.layers[2]
    W1, b1, W2, b2 = (values(a) for a in (first.W, first.b, last.W, last.b))
    np.testing.assert_allclose(values(model(x)), np.tanh(x @ W1.T + b1) @ W2.T + b2, **TOL)


def test_save_writes_exactly_the_path_it_is_given(tmp_path):
    """np.savez alone would write model.bin.npz for model.bin, and load(model.bin) would then fail."""
    model = make_model("tensor", 27)
    path = tmp_path / "model.bin"
    save(model, path)
    assert path.exists() and not (tmp_path / "model.bin.npz").exists()
    fresh = make_model("tensor", 28)
    load(fresh, path)
    for (_, a), (_, b) in zip(model.named_parameters(), fresh.named_parameters(), strict=True):
        np.testing.assert_array_equal(a.data, b.data)
