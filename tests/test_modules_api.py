"""The Module API as PyTorch users expect it (issue #14), in both styles and against torch.nn where torch has it:
attribute registration, children/modules, parameters, buffers, state dicts with strict=, repr, Sequential's list
behaviour, manual_seed, the dtype rule, and saving the architecture (opreg.nn.load_model, opreg evaluate)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import opreg
from opreg.cli import main
from opreg.nn import (
    MLP,
    Identity,
    Linear,
    ModelFileError,
    Module,
    ModuleInitError,
    ModuleList,
    ReLU,
    Sequential,
    SoftmaxCrossEntropy,
    Tanh,
    load,
    load_model,
    save,
)
from opreg.nn.serialization import ARCHITECTURE_KEY, MODEL_CLASSES, register_model
from opreg.optim import SGD, Adam

from torch_reference import needs_torch, torch

TOL = {"rtol": 1e-10, "atol": 1e-12}
STYLES = ["tape", "tensor"]
style_params = pytest.mark.parametrize("style", STYLES)


def engine_for(style: str):
    return opreg.Autograd() if style == "tape" else None


def values(x) -> np.ndarray:
    return x.data if isinstance(x, opreg.Tensor) else np.asarray(x)


def torch_name(name: str) -> str:
    """opreg's parameter path in torch's spelling: ``fc1.W`` is ``fc1.weight``."""
    return re.sub(r"\bW$", "weight", re.sub(r"\bb$", "bias", name))


class Net(Module):
    """A user's model: layers assigned as attributes, children() not overridden."""

    def __init__(self, engine=None, rng=None):
        super().__init__(engine)
        self.fc1 = Linear(4, 6, engine, rng=rng)
        self.act = Tanh(engine)
        self.body = Sequential(Linear(6, 5, engine, rng=rng), ReLU(engine))
        self.fc2 = Linear(5, 3, engine, rng=rng)

    def forward(self, x):
        return self.fc2(self.body(self.act(self.fc1(x))))


def torch_net():
    nn = torch.nn

    class TorchNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(4, 6, dtype=torch.float64)
            self.act = nn.Tanh()
            self.body = nn.Sequential(nn.Linear(6, 5, dtype=torch.float64), nn.ReLU())
            self.fc2 = nn.Linear(5, 3, dtype=torch.float64)

        def forward(self, x):
            return self.fc2(self.body(self.act(self.fc1(x))))

    return TorchNet()


def copy_into_torch(model: Module, reference) -> None:
    with torch.no_grad():
        torch_parameters = dict(reference.named_parameters())
        for name, parameter in model.named_parameters():
            torch_parameters[torch_name(name)].copy_(torch.tensor(parameter.data))


def loss_and_backward(model: Module, x: np.ndarray, y: np.ndarray):
    engine = model.autograd_engine
    if isinstance(engine, opreg.Autograd):
        engine.zero_grad()
        loss = SoftmaxCrossEntropy(engine)(y, model(x))
        engine.backward(1.0)
    else:
        loss = SoftmaxCrossEntropy()(y, model(x))
        loss.backward()
    return float(loss)


# --- registration by attribute ---------------------------------------------------------------------------------


@needs_torch
@style_params
def test_a_users_module_registers_its_attributes_as_torch_does(style):
    rng = np.random.default_rng(0)
    model, reference = Net(engine_for(style), rng), torch_net()
    names = [name for name, _ in model.named_parameters()]
    assert [torch_name(n) for n in names] == [n for n, _ in reference.named_parameters()]
    assert [n for n, _ in model.named_children()] == [n for n, _ in reference.named_children()]
    assert [type(m).__name__ for m in model.children()] == [type(m).__name__ for m in reference.children()]
    assert [n for n, _ in model.named_modules()] == [n for n, _ in reference.named_modules()]
    assert len(list(model.modules())) == len(list(reference.modules())) == 7
    for prefix in ("net", "net."):
        assert [torch_name(n) for n, _ in model.named_parameters(prefix)] == [
            n for n, _ in reference.named_parameters(prefix.rstrip("."))
        ]
    assert [n for n, _ in model.named_parameters(recurse=False)] == []
    copy_into_torch(model, reference)
    x, classes = rng.standard_normal((7, 4)), rng.integers(0, 3, 7)
    y = np.eye(3)[classes]
    optimizer, t_optimizer = Adam(model.parameters(), lr=0.01), torch.optim.Adam(reference.parameters(), lr=0.01)
    for _ in range(3):
        optimizer.zero_grad()
        t_optimizer.zero_grad()
        loss = loss_and_backward(model, x, y)
        t_loss = torch.nn.functional.cross_entropy(reference(torch.tensor(x)), torch.tensor(classes))
        t_loss.backward()
        np.testing.assert_allclose(loss, t_loss.item(), **TOL)
        for name, parameter in model.named_parameters():
            t_parameter = dict(reference.named_parameters())[torch_name(name)]
            np.testing.assert_allclose(parameter.grad, t_parameter.grad.numpy(), err_msg=name, **TOL)
        optimizer.step()
        t_optimizer.step()
    for name, parameter in model.named_parameters():
        t_parameter = dict(reference.named_parameters())[torch_name(name)]
        np.testing.assert_allclose(parameter.data, t_parameter.detach().numpy(), err_msg=name, **TOL)


class Scaled(Module):
    """A parameter of one's own, made by new_parameter, in either style, without parameter_names."""

    def __init__(self, engine=None):
        super().__init__(engine)
        self.inner = Linear(3, 2, engine, rng=np.random.default_rng(1))
        self.scale, self.dscale = self.new_parameter(np.array([2.0, -0.5]))

    def forward(self, x):
        return self.autograd_engine.apply("mul", self.inner(x), self.scale, gradients_to_update=[None, self.dscale])


@needs_torch
@style_params
def test_a_parameter_of_ones_own_is_registered_in_both_styles(style):
    model = Scaled(engine_for(style))
    assert [n for n, _ in model.named_parameters()] == ["scale", "inner.W", "inner.b"]
    assert list(model.state_dict()) == ["scale", "inner.W", "inner.b"]
    x = np.random.default_rng(2).standard_normal((4, 3))
    out = model(x)
    if style == "tape":
        model.autograd_engine.backward(np.ones((4, 2)))
    else:
        out.sum().backward()
    t_scale = torch.tensor([2.0, -0.5], dtype=torch.float64, requires_grad=True)
    t_W, t_b = (torch.tensor(values(p.data), requires_grad=True) for p in model.parameters()[1:])
    (torch.nn.functional.linear(torch.tensor(x), t_W, t_b) * t_scale).sum().backward()
    np.testing.assert_allclose(model.parameters()[0].grad, t_scale.grad.numpy(), **TOL)
    np.testing.assert_allclose(model.parameters()[1].grad, t_W.grad.numpy(), **TOL)


def test_the_handouts_way_of_declaring_parameters_still_works():
    """parameter_names pairs of arrays assigned directly, on a tape, beside a sub-module assigned as an attribute."""
    engine = opreg.Autograd()

    class Affine(Module):
        parameter_names = (("W", "dW"),)

        def __init__(self):
            super().__init__(engine)
            self.W = np.eye(2)
            self.dW = np.zeros((2, 2))
            self.head = Linear(2, 1, engine, rng=np.random.default_rng(9))

        def forward(self, x):
            return self.head(engine.apply("matmul", x, self.W, gradients_to_update=[None, self.dW]))

    model = Affine()
    assert [n for n, _ in model.named_parameters()] == ["W", "head.W", "head.b"]
    model(np.ones((3, 2)))
    engine.backward(1.0)
    np.testing.assert_allclose(model.dW, np.full((2, 2), 3.0) * model.head.W.ravel(), **TOL)
    SGD(model.parameters(), lr=1.0).step()
    np.testing.assert_allclose(model.W, np.eye(2) - model.dW, **TOL)


def test_forgetting_super_init_is_a_clear_error():
    class Forgot(Module):
        def __init__(self):
            self.fc = Linear(2, 2)

    with pytest.raises(ModuleInitError, match=r"Forgot.__init__ must call super\(\).__init__\(\)"):
        Forgot()

    class ForgotEntirely(Module):
        def __init__(self):
            self.n = 3

        def forward(self, x):
            return x

    model = ForgotEntirely()
    for use in (model.parameters, model.state_dict, model.train, lambda: repr(model)):
        with pytest.raises(ModuleInitError, match="must call super"):
            use()
    with pytest.raises(ModuleInitError, match="must call super"):
        ForgotEntirely.__init__(model) or setattr(model, "w", opreg.Tensor(np.ones(2), requires_grad=True))
    assert isinstance(ModuleInitError("x"), TypeError)


@style_params
def test_assigning_over_a_registration(style):
    engine = engine_for(style)
    model = Net(engine, np.random.default_rng(3))
    with pytest.raises(opreg.OpUsageError, match="Net.fc1 is a sub-module: assign a Module or None, not a int"):
        model.fc1 = 3
    model.fc1 = None  # as in PyTorch: the name stays, without a module
    assert [n for n, _ in model.named_children()] == ["act", "body", "fc2"]
    del model.fc2
    assert [n for n, _ in model.named_parameters()] == ["body.0.W", "body.0.b"]
    with pytest.raises(ValueError, match="same engine"):
        model.other = Linear(2, 2, opreg.Autograd() if style == "tensor" else None)


def test_a_tensor_parameter_is_not_silently_replaced_by_an_array():
    layer = Linear(3, 2, rng=np.random.default_rng(4))
    with pytest.raises(opreg.OpUsageError, match="Linear.W is a parameter: assign a Tensor with requires_grad=True"):
        layer.W = np.zeros((2, 3))
    layer.W = opreg.Tensor(np.zeros((2, 3)), requires_grad=True)
    assert layer.parameters()[0] is layer.W
    layer.cache = layer.W * 2  # requires gradients, but an op made it (not a leaf): a plain attribute
    layer.constant = opreg.Tensor(np.ones(2))  # a leaf that requires no gradient: a plain attribute
    assert [n for n, _ in layer.named_parameters()] == ["W", "b"]


@style_params
def test_modules_in_a_plain_list_are_refused_and_module_list_registers_them(style):
    engine = engine_for(style)

    class Listed(Module):
        def __init__(self, holder):
            super().__init__(engine)
            self.blocks = holder([Linear(2, 2, engine), Linear(2, 2, engine)])

    with pytest.raises(opreg.OpUsageError, match=r"Listed.blocks is a list holding a sub-module .*ModuleList"):
        Listed(list)
    model = Listed(ModuleList)
    assert [n for n, _ in model.named_parameters()] == ["blocks.0.W", "blocks.0.b", "blocks.1.W", "blocks.1.b"]
    assert len(model.blocks) == 2 and model.blocks[-1] is list(model.blocks)[1]
    assert isinstance(model.blocks[1:], ModuleList) and list(model.blocks[1:]) == [model.blocks[1]]
    assert repr(model.blocks).startswith("ModuleList(\n  (0): Linear(in_features=2, out_features=2)")
    with pytest.raises(NotImplementedError, match="a ModuleList has no forward"):
        model.blocks(np.ones((1, 2)))


@style_params
def test_an_override_of_children_returning_pairs_still_works(style):
    """The way sub-modules were declared before attributes were registered: children() returning (name, module)
    pairs, here of layers kept in a list, beside one assigned as an attribute (listed once)."""
    engine = engine_for(style)

    class Old(Module):
        def __init__(self):
            super().__init__(engine)
            self.stack = [Linear(2, 3, engine), Linear(3, 2, engine)]
            self.head = Linear(2, 1, engine)

        def children(self):
            return [(str(i), layer) for i, layer in enumerate(self.stack)] + [("head", self.head)]

    model = Old()
    assert [n for n, _ in model.named_parameters()] == ["0.W", "0.b", "1.W", "1.b", "head.W", "head.b"]
    assert list(model.state_dict()) == ["0.W", "0.b", "1.W", "1.b", "head.W", "head.b"]
    assert model.eval() is model and not any(m.training for m in model.modules())
    assert repr(model).splitlines()[1] == "  (0): Linear(in_features=2, out_features=3)"


@needs_torch
def test_a_module_used_twice_is_one_set_of_parameters_as_in_torch():
    shared = Linear(3, 3, rng=np.random.default_rng(5))
    model = Sequential(shared, ReLU(), shared)
    t_shared = torch.nn.Linear(3, 3)
    reference = torch.nn.Sequential(t_shared, torch.nn.ReLU(), t_shared)
    assert [torch_name(n) for n, _ in model.named_parameters()] == [n for n, _ in reference.named_parameters()]
    assert [torch_name(n) for n in model.state_dict()] == list(reference.state_dict())


# --- buffers and state dicts -----------------------------------------------------------------------------------


class Normalise(Module):
    """A module with a buffer, as BatchNorm's running statistics."""

    buffer_names = ("running_mean",)

    def __init__(self, engine=None):
        super().__init__(engine)
        self.W, self.dW = self.new_parameter(np.ones(3))
        self.running_mean = np.zeros(3)
        self.register_buffer("count", np.zeros((), dtype=np.int64))


@needs_torch
@style_params
def test_buffers_are_in_the_state_dict_as_in_torch(style):
    engine = engine_for(style)
    model = Sequential(Linear(3, 3, engine), Normalise(engine))
    nn = torch.nn

    class TorchNormalise(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(3))
            self.register_buffer("running_mean", torch.zeros(3))
            self.register_buffer("count", torch.zeros((), dtype=torch.int64))

    reference = nn.Sequential(nn.Linear(3, 3), TorchNormalise())
    assert [torch_name(n) for n in model.state_dict()] == list(reference.state_dict())
    assert [n for n, _ in model.named_buffers()] == [n for n, _ in reference.named_buffers()]
    assert [n for n, _ in model.named_parameters()] == ["0.W", "0.b", "1.W"]
    state = model.state_dict()
    state["1.running_mean"] = np.array([1.0, 2.0, 3.0])
    state["1.count"] = np.array(7)
    buffer = model[1].running_mean
    model.load_state_dict(state)
    assert model[1].running_mean is buffer, "loaded in place"
    np.testing.assert_array_equal(model[1].running_mean, [1.0, 2.0, 3.0])
    assert model[1].count == 7


@needs_torch
@style_params
def test_load_state_dict_strict_false_returns_what_torch_returns(style):
    model = MLP([3, 4, 2], engine_for(style), rng=np.random.default_rng(6))
    reference = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    state = model.state_dict()
    del state["2.b"]
    state["extra"] = np.zeros(1)
    t_state = {torch_name(k): torch.tensor(v) for k, v in state.items()}
    expected = reference.load_state_dict(t_state, strict=False)
    result = model.load_state_dict(state, strict=False)
    assert [torch_name(n) for n in result.missing_keys] == expected.missing_keys == ["2.bias"]
    assert result.unexpected_keys == expected.unexpected_keys == ["extra"]
    assert model.load_state_dict(model.state_dict()) == ([], [])
    with pytest.raises(ModelFileError, match="has no entry for '2.b'"):
        model.load_state_dict(state)
    before = model.state_dict()
    state["0.W"] = np.zeros((5, 3))  # a size mismatch is an error even when not strict, as in torch
    with pytest.raises(ModelFileError, match="'0.W' is float64 \\(5, 3\\)"):
        model.load_state_dict(state, strict=False)
    with pytest.raises(RuntimeError, match="size mismatch"):
        reference.load_state_dict({torch_name(k): torch.tensor(v) for k, v in state.items()}, strict=False)
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(array, before[name])


# --- repr and Sequential ---------------------------------------------------------------------------------------


@needs_torch
def test_repr_is_torchs():
    model = Net(rng=np.random.default_rng(7))
    assert repr(model) == repr(torch_net()).replace(", bias=True", "").replace("TorchNet(", "Net(")
    assert repr(Sequential()) == repr(torch.nn.Sequential()) == "Sequential()"
    assert repr(Identity()) == "Identity()"


@needs_torch
@style_params
def test_sequential_behaves_as_a_list_as_torchs(style):
    engine = engine_for(style)
    rng = np.random.default_rng(8)
    layers = [Linear(2, 3, engine, rng=rng), Tanh(engine), Linear(3, 4, engine, rng=rng), ReLU(engine)]
    model = Sequential(layers)
    reference = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 4), torch.nn.ReLU())
    assert len(model) == len(reference) == 4
    assert list(model) == layers and model.layers == layers
    assert model[0] is layers[0] and model[-1] is layers[-1] and model[-4] is layers[0]
    for index in (4, -5):
        with pytest.raises(IndexError):
            model[index]
        with pytest.raises(IndexError):
            reference[index]
    for part in (slice(1, None), slice(None, None, 2), slice(-2, None)):
        piece, t_piece = model[part], reference[part]
        assert isinstance(piece, Sequential) and piece.layers == layers[part]
        assert [torch_name(n) for n in piece.state_dict()] == list(t_piece.state_dict())  # names kept
    assert model.append(Linear(4, 1, engine, rng=rng)) is model
    assert [n for n, _ in model.named_parameters()][-2:] == ["4.W", "4.b"]
    x = rng.standard_normal((5, 2))
    np.testing.assert_allclose(values(model(x)), values(model[4](model[:4](x))), **TOL)
    named = Sequential({"fc": Linear(2, 2, engine, rng=rng), "act": ReLU(engine)})
    assert [n for n, _ in named.named_parameters()] == ["fc.W", "fc.b"]
    empty = Sequential()
    empty.append(Linear(2, 2, engine, rng=rng))
    assert empty.autograd_engine is empty[0].autograd_engine
    with pytest.raises(opreg.OpUsageError, match="Sequential takes modules"):
        Sequential([Linear(2, 2, engine), "relu"])


# --- manual_seed -----------------------------------------------------------------------------------------------


@style_params
def test_manual_seed_makes_default_initialisation_reproducible(style):
    def build():
        return MLP([4, 8, 3], engine_for(style)), Linear(3, 2, engine_for(style))

    opreg.manual_seed(11)
    first = [p.data.copy() for model in build() for p in model.parameters()]
    opreg.manual_seed(11)
    again = [p.data.copy() for model in build() for p in model.parameters()]
    opreg.manual_seed(12)
    other = [p.data.copy() for model in build() for p in model.parameters()]
    for a, b, c in zip(first, again, other, strict=True):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


def test_rng_wins_over_manual_seed_and_leaves_it_alone():
    opreg.manual_seed(13)
    expected = Linear(3, 2).W.data.copy()
    opreg.manual_seed(13)
    given = Linear(3, 2, rng=np.random.default_rng(0)).W.data
    np.testing.assert_array_equal(given, Linear(3, 2, rng=np.random.default_rng(0)).W.data)
    np.testing.assert_array_equal(Linear(3, 2).W.data, expected)  # the explicit rng drew nothing from the default
    assert opreg.random.generator() is opreg.random.default_generator()
    with pytest.raises(opreg.OpUsageError, match="manual_seed takes a whole number of at least 0, got -1"):
        opreg.manual_seed(-1)
    assert isinstance(opreg.manual_seed(np.int64(3)), np.random.Generator)


# --- the dtype rule --------------------------------------------------------------------------------------------


@style_params
def test_a_float32_model_computes_in_float32_given_float64_input(style):
    engine = engine_for(style)
    model = MLP([4, 5, 3], engine, rng=np.random.default_rng(14), dtype=np.float32)
    x = np.random.default_rng(15).standard_normal((6, 4))
    out = model(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(values(out), values(model(x.astype(np.float32))))
    np.testing.assert_array_equal(values(model(np.ones((2, 4), dtype=np.int64))), values(model(np.ones((2, 4)))))
    with pytest.raises(opreg.OpUsageError, match="Linear computes in float32 and takes real numbers, not a complex"):
        model(x.astype(complex))


def test_the_gradient_reaches_a_float64_input_in_float64():
    model = MLP([4, 5, 3], rng=np.random.default_rng(16), dtype=np.float32)
    x = opreg.Tensor(np.random.default_rng(17).standard_normal((6, 4)), requires_grad=True)
    model(x).sum().backward()
    x32 = opreg.Tensor(x.data.astype(np.float32), requires_grad=True)
    model(x32).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad, x32.grad.astype(np.float64))
    engine = opreg.Autograd()
    tape = MLP([4, 5, 3], engine, rng=np.random.default_rng(16), dtype=np.float32)
    hidden = engine.apply("mul", x.data, 1.0)  # an array on the tape: the cast must keep the chain
    tape(hidden)
    engine.backward(np.ones((6, 3), dtype=np.float32))
    np.testing.assert_allclose(engine.gradient_buffer.get_param(x.data), x.grad, rtol=1e-6)


# --- optimizers ------------------------------------------------------------------------------------------------


def test_an_optimizer_given_no_parameters_says_why_that_may_be():
    class Empty(Module):
        pass

    with pytest.raises(ValueError, match=r"SGD got an empty parameter list: does the model register its layers\?"):
        SGD(Empty().parameters(), lr=0.1)


# --- saving the architecture -----------------------------------------------------------------------------------


@style_params
@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"activation": "nan_to_num(posinf=5.0)", "output_activation": None},  # a built-in: contrib_ops may be absent
        {"activation": Tanh, "output_activation": Identity, "dtype": np.float32},
    ],
    ids=["handout", "op-with-attributes", "float32"],
)
def test_load_model_rebuilds_a_saved_mlp(style, kwargs, tmp_path):
    model = MLP([4, 6, 5, 3], engine_for(style), rng=np.random.default_rng(18), **kwargs)
    path = tmp_path / "model.npz"
    save(model, path)
    engine = engine_for(style)
    rebuilt = load_model(path, engine)
    assert type(rebuilt) is MLP and repr(rebuilt) == repr(model) == repr(load(path))
    assert rebuilt.autograd_engine is (engine or opreg.tensor.tensor_engine)
    x = np.random.default_rng(19).standard_normal((3, 4))
    np.testing.assert_array_equal(values(rebuilt(x)), values(model(x)), strict=True)
    with np.load(path, allow_pickle=False) as archive:
        assert json.loads(str(archive[ARCHITECTURE_KEY]))["class"] == "MLP"


def test_a_registered_class_of_ones_own_is_rebuilt(tmp_path):
    class Wide(Module):
        def __init__(self, width, autograd_engine=None):
            super().__init__(autograd_engine)
            self.width = width
            self.fc = Linear(2, width, autograd_engine, rng=np.random.default_rng(20))

        def config(self):
            return {"width": self.width}

        def forward(self, x):
            return self.fc(x)

    register_model(Wide)
    try:
        save(Wide(7), tmp_path / "wide.npz")
        rebuilt = load_model(tmp_path / "wide.npz")
        assert type(rebuilt) is Wide and rebuilt.width == 7
        np.testing.assert_array_equal(rebuilt.fc.W.data, Wide(7).fc.W.data)
    finally:
        del MODEL_CLASSES["Wide"]
    with pytest.raises(ModelFileError, match="'Wide', which is not a model class registered here"):
        load_model(tmp_path / "wide.npz")


def crafted(path: Path, architecture: object, **arrays: np.ndarray) -> Path:
    entry = architecture if isinstance(architecture, str) else json.dumps(architecture)
    np.savez(path, **{ARCHITECTURE_KEY: np.array(entry)}, **arrays)
    return path


def test_a_crafted_model_file_never_runs_code(tmp_path, monkeypatch):
    """The class is looked up among registered ones, the config is JSON given as keyword arguments, activations
    are parsed as literals: every attempt below is a ModelFileError and no file appears."""
    marker = tmp_path / "ran"
    command = f"touch {marker}"
    attempts = {
        "class-path": {"class": "os.system", "config": {"command": command}},
        "builtin": {"class": "eval", "config": {}},
        "activation-call": {
            "class": "MLP",
            "config": {"layer_sizes": [2, 2], "activation": f"__import__('os').system({command!r})"},
        },
        "activation-attribute": {
            "class": "MLP",
            "config": {"layer_sizes": [2, 2], "output_activation": f"relu(x=__import__('os').system({command!r}))"},
        },
        "engine-injected": {"class": "MLP", "config": {"layer_sizes": [2, 2], "autograd_engine": "os"}},
        "rng-injected": {"class": "MLP", "config": {"layer_sizes": [2, 2], "rng": 5}},
        "sizes-strings": {"class": "MLP", "config": {"layer_sizes": ["2", "2"]}},
        "dtype-object": {"class": "MLP", "config": {"layer_sizes": [2, 2], "dtype": "object"}},
        "activation-number": {"class": "MLP", "config": {"layer_sizes": [2, 2], "activation": 3}},
        "config-not-object": {"class": "MLP", "config": [1, 2]},
        "not-json": "{'class': 'MLP'}",
        "deep-json": "[" * 100000 + "]" * 100000,
    }
    for name, architecture in attempts.items():
        with pytest.raises(ModelFileError):
            load_model(crafted(tmp_path / f"{name}.npz", architecture))
        assert not marker.exists(), name
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **{ARCHITECTURE_KEY: np.array([object()], dtype=object)})
    with pytest.raises(ModelFileError, match="pickle"):
        load_model(pickled)


def test_an_architecture_beyond_memory_is_refused_before_building(tmp_path, monkeypatch):
    monkeypatch.setattr(opreg.memory, "available_bytes", lambda: 8 * 2**30)
    path = crafted(tmp_path / "huge.npz", {"class": "MLP", "config": {"layer_sizes": [2, 10**6, 10**6, 3]}})
    with pytest.raises(opreg.memory.TooLargeError, match="MLP 2-1000000-1000000-3 would take about"):
        load_model(path)


def test_a_model_that_cannot_record_its_architecture_saves_its_weights(tmp_path):
    class Square(Module):
        def forward(self, x):
            return x * x

    model = MLP([2, 3, 2], activation=lambda engine: Square(engine))
    save(model, tmp_path / "square.npz")
    with pytest.raises(ModelFileError, match="its activation Square\\(\\) is a Square, which a file cannot record"):
        load_model(tmp_path / "square.npz")
    load(MLP([2, 3, 2], activation=lambda engine: Square(engine)), tmp_path / "square.npz")


# --- opreg evaluate on opreg.nn.save's files -------------------------------------------------------------------


def test_evaluate_scores_a_model_saved_by_opreg_nn_save(tmp_path, capsys, data_file):
    opreg.manual_seed(21)
    path = tmp_path / "digits.npz"
    save(MLP([64, 16, 10], output_activation=None), path)
    assert main(["evaluate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "on 1797 examples (every bundled digit (the file records no split" in out
    small = tmp_path / "small.npz"
    save(MLP([2, 4, 3], opreg.Autograd()), small)
    assert main(["evaluate", str(small), "--data", data_file()]) == 0
    assert "on 30 examples" in capsys.readouterr().out
    assert main(["evaluate", str(small), "--data", data_file(), "--held-out"]) == 2
    assert "records no split to hold out" in capsys.readouterr().err


def test_evaluate_still_reads_a_train_file_written_before_architectures(tmp_path, capsys):
    path = tmp_path / "model.npz"
    assert main(["train", "--quiet", "--epochs", "1", "--hidden", "8", "--save", str(path)]) == 0
    trained = capsys.readouterr().out.splitlines()[-1]
    archive = dict(np.load(path, allow_pickle=False))
    assert ARCHITECTURE_KEY in archive
    del archive[ARCHITECTURE_KEY]
    old = tmp_path / "old.npz"
    np.savez(old, **archive)
    assert main(["evaluate", str(old)]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith(f"accuracy: {trained.split(': ')[1]}")
    assert type(load_model(path)) is MLP


@pytest.mark.parametrize("compressed", [False, True], ids=["savez", "savez_compressed"])
def test_evaluate_refuses_any_other_file_with_one_line(tmp_path, capsys, compressed):
    """Not an npz, a state dict without architecture, and the file truncated at many points: exit status 2 and
    a line naming what is wrong, never a traceback."""
    good = tmp_path / "good.npz"
    model = MLP([64, 8, 10], rng=np.random.default_rng(22))
    save(model, good)
    arrays = dict(np.load(good, allow_pickle=False))
    (np.savez_compressed if compressed else np.savez)(good, **arrays)
    content = good.read_bytes()
    weights_only = tmp_path / "weights.npz"
    np.savez(weights_only, **model.state_dict())
    cases = {"text": b"hello", "npy": None, "weights": weights_only.read_bytes()}
    for cut in np.linspace(1, len(content) - 1, 12, dtype=int):
        cases[f"cut-{cut}"] = content[:cut]
    for name, data in cases.items():
        path = tmp_path / f"{name}.npz"
        if data is None:
            np.save(tmp_path / "array.npy", np.zeros(3))
            path = tmp_path / "array.npy"
        else:
            path.write_bytes(data)
        assert main(["evaluate", str(path)]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("opreg evaluate: ") and len(err.splitlines()) == 1 and "Traceback" not in err, name
    assert main(["evaluate", str(weights_only)]) == 2
    assert "holds weights but no architecture" in capsys.readouterr().err
