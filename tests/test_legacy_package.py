"""An op package written for the earlier op contract still works: tests/legacy_package/.

That package is CONTRIBUTING.md's tutorial as it stood at commit 3540a37 (``opreg_silu``), plus an op declared in
the earlier style (``scaled_exp``: ``attributes={"alpha": 1.0}``, ``backward_uses_output=True``). Installed as a
distribution on ``sys.path`` (the ``site`` fixture, as tests/test_contributing.py installs the current tutorial),
it must load, its earlier keywords must each warn saying what to write instead, ``check_op`` must pass for its
ops, and its gradients must be those of the same ops written in the current contract.
"""

from __future__ import annotations

import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest

import opreg
import opreg.numpy as onp
from opreg import Tensor, plugin_manager
from opreg.plugin import hookimpl

pytestmark = pytest.mark.filterwarnings(r"ignore:op '\w+' \(plugin 'silu'\).*:DeprecationWarning")

PACKAGE = Path(__file__).resolve().parent / "legacy_package"
PROJECT = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]
[(PLUGIN, MODULE)] = PROJECT["entry-points"]["opreg"].items()

#: What each keyword of the earlier contract that the package uses must tell its author to write instead.
EXPECTED_WARNINGS = {
    "attributes": "declare each attribute as a keyword-only parameter of forward with its default",
    "backward_uses_output": "name `output` as a keyword-only parameter of backward",
}


def _sigmoid(x):
    return 0.5 * (1 + onp.tanh(x / 2))


class CurrentContract:
    """The package's two ops written in the current contract, under other names: attributes declared once, as
    forward's keyword-only parameters, and backward asking for ``output`` by naming it."""

    @hookimpl
    def opreg_register_ops(self, register):
        register(
            name="silu_now",
            inputs=("x",),
            forward=lambda x: x * _sigmoid(x),
            backward=lambda g, x: (g * _sigmoid(x) * (1 + x * (1 - _sigmoid(x))),),
        )
        register(
            name="scaled_exp_now",
            inputs=("x",),
            forward=lambda x, *, alpha=1.0: alpha * np.exp(x),
            backward=lambda g, x, *, output: (g * output,),
        )


@pytest.fixture
def legacy(site):
    """The legacy package installed and loaded; the DeprecationWarnings loading it gave about its plugin."""
    site.install(
        PROJECT["name"], MODULE, (PACKAGE / f"{MODULE}.py").read_text(), entry_point=PLUGIN, version=PROJECT["version"]
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opreg.reload_plugins()
        opreg.get_registry()
    # Other installed packages (contrib_ops in CI) may warn too: only this plugin's warnings are the test's.
    return [
        str(w.message)
        for w in caught
        if issubclass(w.category, DeprecationWarning) and f"(plugin {PLUGIN!r})" in str(w.message)
    ]


@pytest.fixture
def current(legacy):
    """The same ops in the current contract, registered in-process after the legacy package loaded."""
    opreg.register_plugin(CurrentContract(), name="current-contract")
    yield
    opreg.unregister_plugin("current-contract")


def test_the_legacy_package_loads(legacy):
    [info] = [i for i in plugin_manager.plugin_infos() if i.name == PLUGIN]
    assert (info.status, info.distribution, info.version) == ("loaded", PROJECT["name"], PROJECT["version"])
    registry = opreg.get_registry()
    for name in ("silu", "scaled_exp"):
        assert registry[name].plugin == PLUGIN
        assert registry[name].distribution == f"{PROJECT['name']} {PROJECT['version']}"
    assert dict(registry["scaled_exp"].attributes) == {"alpha": 1.0}
    assert registry["scaled_exp"].wants == {"output"}
    assert registry["silu"].attributes == {} and registry["silu"].wants == set()


def test_each_earlier_keyword_warns_saying_what_to_write_instead(legacy):
    assert len(legacy) == len(EXPECTED_WARNINGS), legacy
    for keyword, instead in EXPECTED_WARNINGS.items():
        [message] = [m for m in legacy if f"register({keyword}=...)" in m]
        assert message.startswith(f"op 'scaled_exp' (plugin {PLUGIN!r}"), message
        assert "is deprecated" in message and instead in message, message


@pytest.mark.parametrize("name", ["silu", "scaled_exp"])
def test_check_op_passes_for_the_legacy_ops(legacy, name):
    opreg.check_op(name)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    ("name", "attributes"),
    [("silu", {}), ("scaled_exp", {}), ("scaled_exp", {"alpha": 0.5}), ("scaled_exp", {"alpha": -3.0})],
    ids=["silu", "scaled_exp", "scaled_exp-alpha0.5", "scaled_exp-alpha-3"],
)
def test_gradients_equal_those_of_the_current_contract(current, name, attributes, dtype):
    """The tape engine, Tensors and second derivatives: the legacy op and its current-contract twin agree.

    Second derivatives too: both legacy backwards compose, ``g * output`` with operators, and silu's ``np.tanh``
    because NumPy hands a Tensor to the op that declares ``numpy="tanh"``."""
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(dtype)
    g = np.random.default_rng(1).standard_normal((3, 4)).astype(dtype)

    def tape(op):
        engine = opreg.Autograd()
        out = engine.apply(op, x, **attributes)
        engine.backward(g)
        return out, engine.gradient_buffer.get_param(x)

    def tensors(op):
        t = Tensor(x, requires_grad=True)
        out = getattr(opreg.ops, op)(t, **attributes)
        out.backward(g)
        return out.data, t.grad

    def second(op):
        t = Tensor(x, requires_grad=True)
        (first,) = opreg.grad(getattr(opreg.ops, op)(t, **attributes), [t], g, create_graph=True)
        (first * first).sum().backward()
        return first.data, t.grad

    for run in (tape, tensors):
        for legacy_result, current_result in zip(run(name), run(f"{name}_now"), strict=True):
            np.testing.assert_array_equal(legacy_result, current_result, strict=True, err_msg=f"{run.__name__}")
    for legacy_result, current_result in zip(second(name), second(f"{name}_now"), strict=True):
        np.testing.assert_allclose(legacy_result, current_result, strict=True, rtol=1e-6, err_msg="second order")
