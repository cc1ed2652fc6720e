"""A registered op as a layer (``OpModule``), in both styles, against torch; any unary op as the MLP's activation,
in ``MLP``, ``opreg train --activation``, the saved model file and ``opreg evaluate``."""

from __future__ import annotations

import functools
import shutil

import numpy as np
import pytest

import opreg
import opreg.numpy as onp
from opreg.cli import main
from opreg.errors import OpUsageError, UnknownOpError
from opreg.evaluation import evaluate
from opreg.nn import MLP, Identity, ModelFileError, NotUnaryOpError, OpModule, ReLU, Sigmoid, Tanh, read_metadata
from opreg.nn.op_module import format_spec, parse_spec
from opreg.train import ConfigError, TrainConfig, train

from torch_reference import needs_torch, torch

TOL = {"rtol": 1e-10, "atol": 1e-12}

#: A plugin's op with an attribute, registered in-process for these tests: PyTorch's leaky ReLU.
LEAKY = {
    "name": "leaky",
    "inputs": ("x",),
    "forward": lambda x, *, negative_slope=0.01: np.where(x > 0, x, negative_slope * x),
    "backward": lambda g, x, *, negative_slope: (g * onp.where(x > 0, 1.0, negative_slope),),
    "doc": "x where x > 0, else negative_slope * x",
}

#: An installed op package providing one activation, swish (x * sigmoid(x)).
SWISH = """
import numpy as np
import opreg
import opreg.numpy as onp

def backward(g, x):
    s = 1 / (1 + onp.exp(-x))
    return (g * (s + x * s * (1 - s)),)

@opreg.hookimpl
def opreg_register_ops(register):
    register(name="swish", inputs=("x",), forward=lambda x: x / (1 + np.exp(-x)), backward=backward)
"""


@pytest.fixture
def leaky(install_ops):
    return install_ops(LEAKY, name="layer-ops")


def values(x) -> np.ndarray:
    return x.data if isinstance(x, opreg.Tensor) else x


def run_both_styles(make_module, *inputs, g):
    """Output and input gradients of ``make_module(engine)(*inputs)`` on a tape and on Tensors."""
    engine = opreg.Autograd()
    tape_out = make_module(engine)(*inputs)
    engine.backward(g)
    tape_grads = [engine.gradient_buffer.get_param(x) for x in inputs]
    tensors = [opreg.Tensor(x, requires_grad=True) for x in inputs]
    tensor_out = make_module(None)(*tensors)
    tensor_out.backward(g)
    assert type(tape_out) is np.ndarray and isinstance(tensor_out, opreg.Tensor)
    np.testing.assert_array_equal(tape_out, tensor_out.data, strict=True)
    for a, t in zip(tape_grads, tensors, strict=True):
        np.testing.assert_array_equal(a, t.grad.data if isinstance(t.grad, opreg.Tensor) else t.grad, strict=True)
    return tape_out, tape_grads


# --- OpModule ----------------------------------------------------------------------------------------------------


@needs_torch
@pytest.mark.parametrize(
    ("op", "attributes", "reference", "arity"),
    [
        ("leaky", {"negative_slope": 0.2}, lambda: torch.nn.LeakyReLU(0.2), 1),
        ("leaky", {}, lambda: torch.nn.LeakyReLU(), 1),
        ("sum", {"axis": 1}, lambda: lambda t: t.sum(dim=1), 1),
        ("mul", {}, lambda: torch.mul, 2),
    ],
    ids=["plugin-op-with-attribute", "plugin-op-default", "builtin-sum-axis", "two-inputs"],
)
def test_op_module_in_both_styles_equals_torch(leaky, op, attributes, reference, arity):
    """Output and every input's gradient: the same on a tape and on Tensors, and equal to torch's."""
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal((4, 5)) for _ in range(arity)]
    inputs[0][0, :2] = 0.0
    expected_shape = np.asarray(reference()(*(torch.tensor(x) for x in inputs)).detach()).shape
    g = rng.standard_normal(expected_shape)
    out, grads = run_both_styles(lambda engine: OpModule(op, engine, **attributes), *inputs, g=g)
    t_inputs = [torch.tensor(x, requires_grad=True) for x in inputs]
    t_out = reference()(*t_inputs)
    t_out.backward(torch.tensor(g))
    np.testing.assert_allclose(out, t_out.detach().numpy(), strict=True, **TOL)
    for grad, t in zip(grads, t_inputs, strict=True):
        np.testing.assert_allclose(grad, t.grad.numpy(), strict=True, **TOL)


def test_the_builtin_activations_are_op_modules_with_their_op_fixed():
    engine = opreg.Autograd()
    for cls, op in [(ReLU, "relu"), (Sigmoid, "sigmoid"), (Tanh, "tanh")]:
        module = cls(engine)
        assert isinstance(module, OpModule) and module.op == op and module.attributes == {}
        assert module.autograd_engine is engine and cls().autograd_engine is opreg.tensor.tensor_engine
        assert repr(module) == f"{cls.__name__}()" and module.spec == op
        x = np.linspace(-2, 2, 6).reshape(2, 3)
        np.testing.assert_array_equal(module(x), OpModule(op, engine)(x), strict=True)
    assert repr(Identity()) == "Identity()"


def test_repr_and_spec_read_back(leaky):
    module = OpModule("leaky", negative_slope=0.1)
    assert repr(module) == "OpModule('leaky', negative_slope=0.1)"
    assert module.spec == "leaky(negative_slope=0.1)"
    assert parse_spec(module.spec) == ("leaky", {"negative_slope": 0.1})
    again = eval(repr(module), {"OpModule": OpModule})
    assert (again.op, again.attributes) == (module.op, module.attributes)
    assert repr(OpModule("sum", axis=(0, 1), keepdims=True)) == "OpModule('sum', axis=(0, 1), keepdims=True)"
    assert parse_spec(OpModule("sum", axis=(0, 1)).spec) == ("sum", {"axis": (0, 1)})
    assert format_spec("relu", {}) == "relu" and OpModule("relu").parameters() == []


def test_an_unknown_op_or_attribute_is_refused_when_the_module_is_built(leaky):
    with pytest.raises(UnknownOpError, match="no op named 'leakyy' is registered; did you mean 'leaky'"):
        OpModule("leakyy")
    with pytest.raises(OpUsageError) as info:
        OpModule("leaky", slope=0.1)
    assert str(info.value) == (
        "OpModule('leaky', slope=0.1): op 'leaky' (plugin 'layer-ops') has no attribute slope (did you mean "
        "'negative_slope'?); its attributes: negative_slope=0.01"
    )
    with pytest.raises(OpUsageError, match="op 'relu' .* has no attribute alpha; its attributes: none"):
        ReLU.__mro__[1]("relu", alpha=1.0)


@pytest.mark.parametrize(
    "spec", ["relu(", "relu(0.1)", "leaky(negative_slope=__import__('os'))", "a.b", "relu(**d)", "1", ""]
)
def test_a_spec_that_is_not_a_name_with_literal_attributes_is_refused(spec):
    with pytest.raises(OpUsageError, match="is not an op name, nor NAME\\(attribute=value, ...\\)"):
        parse_spec(spec)


# --- any unary op as the MLP's activation -----------------------------------------------------------------------


@needs_torch
@pytest.mark.parametrize("style", ["tape", "tensor"])
def test_an_mlp_with_a_plugin_activation_equals_torch(leaky, style):
    """MLP([4, 8, 3], activation="leaky(negative_slope=0.2)") against torch's Linear-LeakyReLU-Linear-Identity:
    the loss and every parameter's gradient."""
    engine = opreg.Autograd() if style == "tape" else None
    model = MLP(
        [4, 8, 3],
        engine,
        activation="leaky(negative_slope=0.2)",
        output_activation=Identity,
        rng=np.random.default_rng(1),
    )
    assert repr(model.layers[1]) == "OpModule('leaky', negative_slope=0.2)"
    x = np.random.default_rng(2).standard_normal((6, 4))
    classes = np.array([0, 1, 2, 0, 1, 2])
    loss = opreg.nn.SoftmaxCrossEntropy(engine)(np.eye(3)[classes], model(x))
    engine.backward(1.0) if engine else loss.backward()
    linears = model.layers[0::2]
    t_layers = []
    for linear in linears:
        t = torch.nn.Linear(*values(linear.W).shape[::-1], dtype=torch.float64)
        with torch.no_grad():
            t.weight.copy_(torch.tensor(values(linear.W)))
            t.bias.copy_(torch.tensor(values(linear.b)))
        t_layers.append(t)
    t_model = torch.nn.Sequential(t_layers[0], torch.nn.LeakyReLU(0.2), t_layers[1])
    t_loss = torch.nn.CrossEntropyLoss()(t_model(torch.tensor(x)), torch.tensor(classes))
    t_loss.backward()
    np.testing.assert_allclose(float(loss), t_loss.item(), **TOL)
    t_grads = [p.grad.numpy() for p in t_model.parameters()]
    for p, t_grad in zip(model.parameters(), t_grads, strict=True):
        np.testing.assert_allclose(values(p.grad), t_grad, strict=True, **TOL)


def test_an_op_name_gives_the_same_model_as_the_module_class():
    x = np.random.default_rng(3).standard_normal((5, 4))
    by_class = MLP([4, 6, 2], activation=Tanh, rng=np.random.default_rng(4))
    by_name = MLP([4, 6, 2], activation="tanh", output_activation="sigmoid", rng=np.random.default_rng(4))
    np.testing.assert_array_equal(by_class(x).data, by_name(x).data, strict=True)


@pytest.mark.parametrize(
    ("activation", "problem"),
    [
        ("sum", "it returns a float64 array of shape () for a float64 array of shape (2, 3)"),
        ("transpose", "it returns a float64 array of shape (3, 2) for a float64 array of shape (2, 3)"),
        ("matmul", "it takes 2 inputs (a, b)"),
        ("inv", "its forward raised LinAlgError on a float64 array of shape (2, 3)"),
        ("tile(reps=2)", "it returns a float64 array of shape (2, 6)"),
        ("astype(dtype='float32')", "it returns a float32 array of shape (2, 3)"),
        (functools.partial(OpModule, "sum"), "it returns a float64 array of shape ()"),
    ],
    ids=["reduction", "transpose", "two-inputs", "square-only", "attribute-changes-shape", "dtype", "op-module"],
)
def test_an_op_that_is_not_unary_is_refused_naming_it_and_some_that_are(activation, problem):
    with pytest.raises(NotUnaryOpError) as info:
        MLP([3, 4, 2], activation=activation)
    message = str(info.value)
    assert "is not a unary op, so it cannot be an activation: " + problem in message
    assert message.endswith("such as relu, sigmoid, tanh: opreg.nn.unary_ops() lists every one installed")
    with pytest.raises(NotUnaryOpError):
        MLP([3, 4, 2], output_activation=activation)


def test_unary_ops_lists_the_activations_first_and_no_op_that_is_not_unary():
    names = opreg.nn.unary_ops()
    assert names[:3] == ["relu", "sigmoid", "tanh"]
    assert {"exp", "sin", "softmax" if "softmax" in opreg.get_registry() else "exp"} <= set(names)
    assert not {"sum", "matmul", "transpose", "inv", "add", "reshape"} & set(names)


# --- opreg train --activation, the model file, opreg evaluate ----------------------------------------------------


def test_train_accepts_a_plugin_activation_with_attributes_and_evaluate_rebuilds_it(leaky, data_file, tmp_path):
    data = data_file()
    config = TrainConfig(activation="leaky( negative_slope = 0.2 )", hidden=(8,), epochs=2, batch_size=8, data=data)
    assert config.activation == "leaky(negative_slope=0.2)"
    result = train(config)
    assert repr(result.model.layers[1]) == "OpModule('leaky', negative_slope=0.2)"
    path = tmp_path / "model.npz"
    result.save(path)
    metadata = read_metadata(path)
    assert metadata["activation"] == "leaky(negative_slope=0.2)"
    assert metadata["activation_op"] == {"name": "leaky", "plugin": "layer-ops", "distribution": None}
    assert evaluate(path, data, held_out=True).accuracy == result.final.test_accuracy
    tensors = train(TrainConfig(**{**config.__dict__, "engine": "tensor"}))
    np.testing.assert_allclose([s.loss for s in tensors.history], [s.loss for s in result.history], rtol=1e-12)

    opreg.unregister_plugin(leaky)
    with pytest.raises(ModelFileError) as info:
        evaluate(path, data, held_out=True)
    assert str(info.value) == (
        f"{str(path)!r} was trained with the activation op 'leaky', which is not registered here: it came from "
        "plugin 'layer-ops', which the program that trained the model registered itself (opreg.register_plugin), "
        "not from an installed package: register that plugin before loading"
    )


def test_a_model_whose_activation_package_is_not_installed_names_the_package(site, data_file, tmp_path, capsys):
    site.install("opreg-swish", "opreg_swish", SWISH)
    opreg.reload_plugins()
    data, path = data_file(), tmp_path / "swish.npz"
    argv = ["train", "--quiet", "--data", data, "--hidden", "8", "--epochs", "2", "--activation", "swish"]
    assert main([*argv, "--save", str(path)]) == 0
    assert capsys.readouterr().out.startswith("MLP 2-8-3 (swish), sgd, tape engine, 2 epochs")
    assert main(["evaluate", str(path), "--data", data, "--held-out"]) == 0
    capsys.readouterr()

    shutil.rmtree(site.root / "opreg_swish-1.0.dist-info")  # uninstalled
    opreg.reload_plugins()
    assert "swish" not in opreg.get_registry()
    assert main(["evaluate", str(path), "--data", data, "--held-out"]) == 2
    assert capsys.readouterr().err == (
        f"opreg evaluate: {str(path)!r} was trained with the activation op 'swish', which is not registered here: it "
        "came from plugin 'opreg-swish' of opreg-swish 1.0: install opreg-swish (pip install opreg-swish), or if it "
        "is installed, `opreg plugins` says why it was skipped\n"
    )


def test_a_model_file_naming_an_unknown_activation_without_a_record_says_so(tmp_path):
    path = tmp_path / "edited.npz"
    opreg.nn.save(MLP([2, 4, 3]), path, metadata={"layer_sizes": [2, 4, 3], "activation": "mish"})
    with pytest.raises(ModelFileError, match="activation op 'mish', which is not registered here: the file does not"):
        evaluate(path)


@pytest.mark.parametrize(
    ("activation", "message"),
    [
        ("sum", "opreg train: activation 'sum': op 'sum' (plugin 'opreg_builtins.reductions') is not a unary op"),
        ("relu_", "opreg train: activation 'relu_': no op named 'relu_' is registered; did you mean 'relu'"),
        (
            "tanh(alpha=1)",
            "opreg train: activation 'tanh(alpha=1)': op 'tanh' (plugin 'opreg_builtins.elementwise') has",
        ),
        ("relu(", "opreg train: activation 'relu(' is not an op name, nor NAME(attribute=value, ...)"),
    ],
)
def test_the_train_command_refuses_an_activation_before_training(activation, message, capsys, no_training):
    assert main(["train", "--quiet", "--activation", activation]) == 2
    assert capsys.readouterr().err.startswith(message)
    with pytest.raises(ConfigError):
        TrainConfig(activation=activation)


def test_contributings_tutorial_op_is_a_layer_and_an_activation(site):
    """What CONTRIBUTING.md says of its tutorial op (swish, attribute beta): an OpModule in both styles, and an
    MLP's activation with its attribute."""
    from test_contributing import tutorial_names, tutorial_section_block

    op, plugin, module_name, dist, version = tutorial_names()
    site.install(dist, module_name, tutorial_section_block("python"), entry_point=plugin, version=version)
    opreg.reload_plugins()
    x = np.linspace(-2, 2, 6).reshape(2, 3)
    out, _ = run_both_styles(lambda engine: OpModule(op, engine, beta=2.0), x, g=np.ones((2, 3)))
    np.testing.assert_allclose(out, x / (1 + np.exp(-2.0 * x)), rtol=1e-12)
    assert op in opreg.nn.unary_ops()
    model = MLP([3, 4, 2], activation=f"{op}(beta=2.0)")
    assert repr(model.layers[1]) == f"OpModule({op!r}, beta=2.0)"
    assert TrainConfig(activation=op).activation == op


# --- opreg.nn.save / load keep the op layers -------------------------------------------------------------------


@pytest.mark.parametrize("style", ["tape", "tensor"])
def test_a_saved_model_loads_only_into_one_with_the_same_op_layers(leaky, style, tmp_path):
    engine = opreg.Autograd() if style == "tape" else None
    rng = np.random.default_rng

    def model(activation="leaky(negative_slope=0.2)", output_activation=Identity, seed=5):
        return MLP([3, 4, 2], engine, activation=activation, output_activation=output_activation, rng=rng(seed))

    path = tmp_path / "model.npz"
    saved = model()
    opreg.nn.save(saved, path)
    assert opreg.nn.serialization.op_layers(saved) == {"1": "leaky(negative_slope=0.2)", "3": "Identity()"}
    x = rng(6).standard_normal((5, 3))
    same = opreg.nn.load(model(seed=7), path)
    np.testing.assert_array_equal(values(same(x)), values(saved(x)), strict=True)
    mismatches = {
        "attribute": (model("leaky(negative_slope=0.3)"), "layer '1' is op leaky(negative_slope=0.2) in"),
        "default": (model("leaky"), "layer '1' is op leaky(negative_slope=0.2) in"),
        "op": (model(ReLU), "but op relu in this MLP"),
        "output": (model(output_activation=Sigmoid), "layer '3' is Identity in"),
    }
    for what, (other, message) in mismatches.items():
        before = other.state_dict()
        with pytest.raises(ModelFileError, match=message.replace("(", "\\(").replace(")", "\\)")):
            opreg.nn.load(other, path)
        for name, array in other.state_dict().items():
            np.testing.assert_array_equal(array, before[name], err_msg=f"{what}: {name} changed")


def test_layer_records_cover_nested_and_custom_modules_and_old_files_load(tmp_path):
    class Scale(opreg.nn.Module):  # a module of one's own: compared by its parameters alone
        def forward(self, x):
            return x * 2

    inner = MLP([2, 3, 2], rng=np.random.default_rng(8))
    nested = opreg.nn.Sequential(inner, Tanh(), Scale())
    assert opreg.nn.serialization.op_layers(nested) == {"0.1": "relu", "0.3": "sigmoid", "1": "tanh"}
    path = tmp_path / "nested.npz"
    opreg.nn.save(nested, path)
    with pytest.raises(ModelFileError, match="layer '1' is op tanh in .* but no op in this Sequential"):
        opreg.nn.load(opreg.nn.Sequential(MLP([2, 3, 2]), Scale(), Scale()), path)
    old = tmp_path / "old.npz"  # written before op layers were recorded: its parameters alone are compared
    np.savez(old, **nested.state_dict())
    opreg.nn.load(opreg.nn.Sequential(MLP([2, 3, 2], activation="tanh"), Scale(), Scale()), old)
    broken = tmp_path / "broken.npz"
    np.savez(broken, **nested.state_dict(), __opreg_layers__=np.array("[1, 2]"))
    with pytest.raises(ModelFileError, match="is not a model file written by opreg: its record of op layers is not"):
        opreg.nn.load(nested, broken)


def test_a_model_shows_its_layers_as_pytorch_does(leaky):
    model = opreg.nn.Sequential(MLP([4, 8, 3], activation="leaky(negative_slope=0.2)"), Tanh())
    assert repr(model) == "\n".join(
        [
            "Sequential(",
            "  (0): MLP(",
            "    (0): Linear(in_features=4, out_features=8)",
            "    (1): OpModule('leaky', negative_slope=0.2)",
            "    (2): Linear(in_features=8, out_features=3)",
            "    (3): Sigmoid()",
            "  )",
            "  (1): Tanh()",
            ")",
        ]
    )


def test_a_module_instance_given_as_activation_is_refused_saying_what_to_pass(leaky):
    with pytest.raises(OpUsageError) as info:
        MLP([3, 4, 2], activation=OpModule("leaky", negative_slope=0.1))
    assert str(info.value).endswith('pass activation="leaky(negative_slope=0.1)"')
    with pytest.raises(OpUsageError, match="pass a function that makes one given the engine"):
        MLP([3, 4, 2], output_activation=Identity())
