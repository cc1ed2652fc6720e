"""The pluggy registry: built-ins arrive through the public hook, declarations are validated, lookups are cheap."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pluggy
import pytest

import opreg
from opreg import RegistrationError, plugin_manager, registry
from opreg.cli import main

BUILTIN_OPS = {
    "add", "sub", "mul", "div", "neg", "log", "exp", "relu", "sigmoid", "tanh", "matmul", "transpose",
    "softmax_cross_entropy", "mse",
}  # fmt: skip


def square(name: str = "squared", **overrides):
    """A valid declaration of x ** 2, with any keyword replaced."""
    return {
        "name": name,
        "inputs": ("x",),
        "forward": lambda x: x * x,
        "backward": lambda g, x: (2 * g * x,),
    } | overrides


def test_builtin_ops_are_registered_through_the_public_hook():
    pm = plugin_manager.get_plugin_manager()
    hook_plugins = [impl.plugin_name for impl in pm.hook.opreg_register_ops.get_hookimpls()]
    assert set(plugin_manager.BUILTIN_PLUGINS) <= set(hook_plugins)
    ops = opreg.get_registry()
    assert set(ops) >= BUILTIN_OPS
    for name in BUILTIN_OPS:
        assert ops[name].plugin in plugin_manager.BUILTIN_PLUGINS
        assert ops[name].name == name


def test_definitions_carry_inputs_differentiability_and_docs():
    ops = opreg.get_registry()
    assert ops["matmul"].inputs == ("a", "b")
    assert ops["softmax_cross_entropy"].inputs == ("logits", "labels")
    assert ops["softmax_cross_entropy"].differentiable == (True, False)
    assert ops["exp"].wants == {"output"} and ops["sum"].backward_attributes == ("axis", "keepdims")
    assert ops["sum"].attributes == {"axis": None, "keepdims": False}
    assert ops["mse"].doc.startswith("Mean over all elements")
    assert all(ops[name].doc for name in BUILTIN_OPS)
    positive = ops["log"].sample_inputs(np.random.default_rng(0))[0]
    assert (positive > 0).all()


def test_the_registry_is_read_only():
    ops = opreg.get_registry()
    with pytest.raises(TypeError):
        ops["add"] = ops["mul"]  # type: ignore[index]
    with pytest.raises(opreg.UnknownOpError, match="did you mean 'relu'"):
        ops["rleu"]


def test_a_plugin_registered_later_reaches_existing_engines(install_ops):
    engine = opreg.Autograd()
    install_ops(square(), name="squares")
    assert opreg.get_registry()["squared"].plugin == "squares"
    x = np.arange(3.0)
    engine.apply("squared", x)
    engine.backward(1.0)
    np.testing.assert_allclose(engine.gradient_buffer.get_param(x), 2 * x)


def test_unregistering_a_plugin_removes_its_ops(op_plugin):
    name = opreg.register_plugin(op_plugin(square()), name="temporary")
    assert "squared" in opreg.get_registry()
    opreg.unregister_plugin(name)
    assert "squared" not in opreg.get_registry()


def test_two_plugins_registering_one_name_is_an_error_naming_both(install_ops, op_plugin):
    install_ops(square(), name="first")
    before = dict(opreg.get_registry())
    with pytest.raises(RegistrationError, match="'squared' is registered by both plugin 'first' and plugin 'second'"):
        opreg.register_plugin(op_plugin(square()), name="second")
    assert dict(opreg.get_registry()) == before
    assert plugin_manager.get_plugin_manager().get_plugin("second") is None


def test_a_plugin_cannot_take_a_builtin_name(op_plugin):
    with pytest.raises(RegistrationError, match="'add' is registered by both plugin 'opreg_builtins.arithmetic'"):
        opreg.register_plugin(op_plugin(square("add")), name="sneaky")


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        (square("not an identifier"), "must be a Python identifier"),
        (square(inputs="x"), r"op 'squared' \(plugin 'bad'\): .*inputs"),
        (square(inputs=("x", "x")), "distinct identifiers"),
        (square(inputs=()), "distinct identifiers"),
        (square(forward=lambda x, y: x), r"forward\(x, y\) cannot be called with 1 positional"),
        (square(backward=lambda g: g), r"backward\(g\) cannot be called with 2 positional"),
        (square(backward_uses_output=True), "cannot be called with 2 positional arguments and output="),
        (square(forward=lambda x, *, axis: x), "keyword-only parameter 'axis' is an attribute and needs a default"),
        (square(differentiable=("y",)), r"differentiable names \['y'\]"),
        (square(forward="x * x"), r"op 'squared' \(plugin 'bad'\): .*forward"),
        (square(doc=3), r"op 'squared' \(plugin 'bad'\): .*doc"),
        (square(colour="red"), r"op 'squared' \(plugin 'bad'\): register\(\) got an unexpected keyword colour="),
        (square(sample=None), "unexpected keyword sample=; did you mean sample_inputs="),
    ],
)
def test_invalid_declarations_are_refused_naming_the_plugin(declaration, message, op_plugin):
    with pytest.raises(RegistrationError, match=message):
        opreg.register_plugin(op_plugin(declaration), name="bad")
    assert "squared" not in opreg.get_registry()


def test_the_hot_path_calls_neither_pluggy_nor_typeguard(monkeypatch):
    """After loading, recording and backward must not touch the plugin manager or the validated declarations."""
    opreg.get_registry()

    def forbidden(*args, **kwargs):
        raise AssertionError("called on the hot path")

    monkeypatch.setattr(pluggy.PluginManager, "_hookexec", forbidden)
    monkeypatch.setattr(pluggy.HookCaller, "get_hookimpls", forbidden)
    monkeypatch.setattr(registry, "define_op", forbidden)
    monkeypatch.setattr(registry, "_reload", forbidden)
    engine = opreg.Autograd()
    model = opreg.nn.MLP([3, 4, 2], engine)
    loss = opreg.nn.MSELoss(engine)(np.zeros((5, 2)), model(np.ones((5, 3))))
    engine.backward(1.0)
    assert np.isfinite(loss)


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"x": 1}, r"attribute names must be identifiers other than the inputs.*\['x'\]"),
        ({"output": 1}, r"\['output'\]"),
        ({"gradients_to_update": 1}, r"\['gradients_to_update'\]"),
    ],
)
def test_attribute_names_may_not_shadow_inputs_or_engine_keywords(attributes, message, op_plugin):
    with pytest.raises(RegistrationError, match=message):
        opreg.register_plugin(op_plugin(square(attributes=attributes)), name="bad")


def test_forward_and_backward_must_accept_the_declared_attributes(op_plugin):
    with pytest.raises(RegistrationError, match=r"forward\(x\) cannot be called with 1 positional arguments and axis="):
        opreg.register_plugin(op_plugin(square(attributes={"axis": None})), name="bad")


def test_a_plugin_object_registered_without_a_name_is_named_after_its_class(op_plugin):
    name = opreg.register_plugin(op_plugin(square()))
    try:
        assert name == "OpPlugin" and opreg.get_registry()["squared"].plugin == "OpPlugin"
    finally:
        opreg.unregister_plugin(name)


def test_an_op_replaces_a_builtin_only_when_it_says_so(install_ops, capsys):
    """overrides=True replaces the earlier op on purpose; opreg ops shows it."""
    install_ops(square("relu", overrides=True), name="my-relu")
    op = opreg.get_registry()["relu"]
    assert (op.plugin, op.overrides) == ("my-relu", "opreg_builtins.elementwise")
    assert main(["ops"]) == 0
    [row] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("relu ")]
    assert "my-relu (overrides opreg_builtins.elementwise)" in row


def test_overrides_without_an_earlier_op_is_an_error(op_plugin):
    with pytest.raises(RegistrationError, match=r"declares overrides=True, but no earlier plugin registered 'cube'"):
        opreg.register_plugin(op_plugin(square("cube", overrides=True)), name="bad")


def test_a_plugin_typed_at_a_prompt_registers():
    """Classes from ``python -c`` or an interactive prompt have no source file; inspect raises OSError for them."""
    code = textwrap.dedent(
        """
        import opreg

        class Cube:
            @opreg.hookimpl
            def opreg_register_ops(self, register):
                register(name="cube", inputs=("x",), forward=lambda x: x**3, backward=lambda g, x: (3 * g * x * x,))

        opreg.register_plugin(Cube())
        print(opreg.ops.cube(2.0).item())
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "8.0"


def test_two_ops_declaring_one_numpy_name_is_an_error_naming_both(op_plugin):
    """A plugin whose op declares numpy="exp" must not silently take np.exp(tensor) and opreg.numpy.exp from the
    built-in exp: as for a taken op name, registering it is an error naming both plugins (it used to register, and
    np.exp(tensor) computed 2 * exp(x))."""
    doubled = square("doubled_exp", forward=lambda x: 2 * np.exp(x), backward=lambda g, x: (2 * g * np.exp(x),))
    try:
        with pytest.raises(RegistrationError) as refused:
            opreg.register_plugin(op_plugin(doubled | {"numpy": "exp"}), name="doubling")
        assert all(name in str(refused.value) for name in ("exp", "opreg_builtins.elementwise", "doubling"))
    finally:
        hijacked = np.exp(opreg.Tensor(np.zeros(1))).data  # [2.] while the plugin is registered
        if plugin_manager.get_plugin_manager().get_plugin("doubling") is not None:
            opreg.unregister_plugin("doubling")
    np.testing.assert_array_equal(hijacked, [1.0])


def test_an_unknown_name_among_ten_thousand_ops_is_answered_in_one_line(monkeypatch):
    """Not every registered name: the close matches if there are any, else how to list them all."""
    mul = opreg.get_registry()["mul"]
    for i in range(10_000):
        monkeypatch.setitem(registry.TABLE, f"generated_{i:05d}", mul)
    engine = opreg.Autograd()
    with pytest.raises(opreg.UnknownOpError) as raised:
        engine.apply("histogram", np.ones(3))
    assert str(raised.value) == (
        "no op named 'histogram' is registered, nor one with a similar name; `opreg ops` lists every registered op, "
        "as does sorted(opreg.get_registry())"
    )
    with pytest.raises(AttributeError) as raised:  # opreg.ops.<name>: an AttributeError, so that hasattr works
        opreg.ops.generated_100000  # noqa: B018  # the attribute access is what raises
    assert len(str(raised.value)) < 200 and "did you mean 'generated_" in str(raised.value)


@pytest.mark.parametrize(
    ("name", "overrides"), [("squared", {}), ("add", {"overrides": True})], ids=["new", "override"]
)
def test_one_plugin_registering_a_name_twice_is_an_error(op_plugin, name, overrides):
    """The later of two register() calls of one name in one plugin would silently replace the earlier op; so would
    a second overrides=True of one built-in."""
    first, second = square(name, **overrides), square(name, forward=lambda x: x + x, **overrides)
    with pytest.raises(RegistrationError, match=rf"op '{name}' \(plugin 'twice'\) is registered twice by that plugin"):
        opreg.register_plugin(op_plugin(first, second), name="twice")
    assert name not in opreg.get_registry() or opreg.get_registry()[name].plugin == "opreg_builtins.arithmetic"


def test_a_misspelt_hook_is_refused_naming_the_hook_meant():
    """A plugin whose only hook is misspelt registered nothing, silently (pluggy ignores an unknown hook unless
    asked): register_plugin now refuses it, with the hook meant and where the misspelt one is."""

    class Typo:
        @opreg.hookimpl
        def opreg_register_op(self, register):  # opreg_register_ops
            register(name="cube", inputs=("x",), forward=lambda x: x**3, backward=lambda g, x: (3 * g * x * x,))

    with pytest.raises(opreg.RegistrationError) as refused:
        opreg.register_plugin(Typo(), name="typo-ops")
    message = str(refused.value)
    assert message.startswith("plugin 'typo-ops': unknown hook 'opreg_register_op' (at ")
    assert f"{__file__}:" in message and message.endswith("did you mean 'opreg_register_ops'?")
    assert "typo-ops" not in [name for name, _ in opreg.plugin_manager.get_plugin_manager().list_name_plugin()]


def test_a_misspelt_required_keyword_is_named_not_reported_missing():
    """``input=`` for ``inputs=`` was reported as Python's "missing 1 required keyword-only argument: 'inputs'",
    which names neither the slip nor the fix."""

    class Cube:
        @opreg.hookimpl
        def opreg_register_ops(self, register):
            register(name="cube", input=("x",), forward=lambda x: x**3, backward=lambda g, x: (3 * g * x * x,))

    with pytest.raises(RegistrationError, match=r"got an unexpected keyword input=; did you mean inputs=\?$"):
        opreg.register_plugin(Cube(), name="misspelt")
