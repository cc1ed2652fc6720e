"""The contrib_ops package is written to the current op contract, as a model to copy from: it registers without a
DeprecationWarning, imports only the plugin API, declares a reference for every op, and each NumPy name it
declares is that NumPy function exactly (a wrong ``numpy=`` would make ``np.<name>(tensor)`` silently compute
something else)."""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import opreg_contrib_ops
import pytest

import opreg
from opreg import Tensor
from opreg.opdef import LEGACY_KEYWORDS

from contrib_torch_reference import CONTRIB_OPS, PLUGIN, REGISTRY

PACKAGE = Path(opreg_contrib_ops.__file__).parent


def _declarations() -> list[dict[str, Any]]:
    """What the package's hook passes to ``register``, keyword by keyword."""
    declarations: list[dict[str, Any]] = []
    opreg_contrib_ops.opreg_register_ops(register=lambda **declaration: declarations.append(declaration))
    return declarations


def test_the_package_registers_without_deprecation_warnings():
    """Loading the plugins again, nothing warns about contrib_ops's ops, and every one of them is registered."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opreg.reload_plugins()
    ours = [str(w.message) for w in caught if f"plugin {PLUGIN!r}" in str(w.message) or str(PACKAGE) in w.filename]
    assert ours == []
    assert sorted(n for n, op in opreg.get_registry().items() if op.plugin == PLUGIN) == CONTRIB_OPS


def test_no_declaration_uses_a_keyword_of_the_earlier_contract():
    """No attributes=, backward_uses_output=, saves_for_backward=, ...: attributes are forward's keyword-only
    parameters, and backward names what it needs. Every op declares its torch reference."""
    declarations = _declarations()
    assert sorted(d["name"] for d in declarations) == CONTRIB_OPS
    for declaration in declarations:
        assert set(declaration) & set(LEGACY_KEYWORDS) == set(), declaration["name"]
        assert declaration.get("reference") is not None, f"{declaration['name']} declares no reference="


def _imports(path: Path) -> set[str]:
    """Every opreg module ``path`` imports (``from opreg.plugin import x`` counts as opreg.plugin)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {module for module in found if module.split(".")[0] == "opreg"}


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_the_package_imports_only_the_plugin_api(path):
    """As opreg's built-in plugins: opreg.plugin and opreg.numpy, and opreg.ops for ops without a NumPy name."""
    assert _imports(path) <= {"opreg.plugin", "opreg.numpy", "opreg.ops"}


NUMPY_NAMES = sorted((alias, name) for name in CONTRIB_OPS for alias in REGISTRY[name].numpy)


def test_the_declared_numpy_names():
    """What the package claims of NumPy: nothing (what it once claimed, opreg's built-ins implement now)."""
    assert NUMPY_NAMES == []


@pytest.mark.parametrize(("alias", "name"), NUMPY_NAMES, ids=[f"np.{a}" for a, _ in NUMPY_NAMES])
def test_a_declared_numpy_name_is_that_numpy_function(alias, name):
    """On every sample, with its attributes as NumPy's keywords: NumPy's own function gives the op's output, and
    called on a Tensor it runs the op, recorded, to the same values."""
    function = getattr(np, alias)
    for sample in REGISTRY[name].samples(np.random.default_rng(0)):
        expected = REGISTRY[name].output_of(*sample.inputs, **sample.attributes)
        plain = function(*sample.inputs, **sample.attributes)
        np.testing.assert_array_equal(plain, expected, strict=True)
        x = Tensor(sample.inputs[0], requires_grad=True)
        recorded = function(x, **sample.attributes)
        assert isinstance(recorded, Tensor) and recorded.requires_grad
        np.testing.assert_array_equal(recorded.data, expected, strict=True)
        np.testing.assert_array_equal(getattr(opreg.numpy, alias)(*sample.inputs, **sample.attributes), expected)


README = PACKAGE.parent / "README.md"


def test_the_readme_examples_run_without_deprecation_warnings():
    """The package README's code, as written: engine, Tensors, create_graph through its ops, NumPy's names."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert blocks
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for block in blocks:
            namespace: dict[str, Any] = {}
            exec(compile(block, str(README), "exec"), namespace)
    assert namespace["w"].grad.shape == (4, 3)
