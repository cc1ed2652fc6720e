"""HIPS autograd's own NumPy tests, run on opreg twice: once on NumPy itself (``np`` is ``numpy``: Tensors reach
opreg through NumPy's protocols, as in a user's NumPy code) and once on ``opreg.numpy`` (``np`` is ``opreg.numpy``,
which mirrors NumPy as ``autograd.numpy`` does, for code that prefers explicit calls).

The vendored files (``hips_test_*.py``, MIT licensed, see LICENSE-HIPS-autograd) differ from HIPS autograd's only in
their imports: ``np`` and the checking helpers come from :mod:`hips_adapter`. Each file is imported once per
flavour, with ``hips_adapter.np`` set to that flavour's module first; the tests read it as their module's ``np``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy
import pytest

#: What NumPy's protocols cannot reach: these functions convert their arguments before any dispatch (``np.array``
#: of a list of Tensors, ``np.mean`` of such a list, the index tricks), so a Tensor that requires gradients meets
#: ``__array__``, which refuses it with an error saying what to write instead (``opreg.numpy.array``,
#: ``np.stack``). Never a silent wrong answer; ``opreg.numpy`` runs every one of these tests.
PROTOCOL_LIMITS = {
    "test_mean_list_of_boxes": "np.mean([x, x + 2]) converts the list before dispatching",
    "test_std_list_of_boxes": "np.std([x, x + 2]) converts the list before dispatching",
    "test_var_list_of_boxes": "np.var([x, x + 2]) converts the list before dispatching",
    "test_simple_append_list_2D": "np.append of nested lists converts them before dispatching",
    "test_1d_array": "np.array([x, ...]) is not dispatched (NEP 18 does not cover np.array)",
    "test_2d_array": "np.array([[x, ...]]) is not dispatched",
    "test_1d_array_fanout": "np.array([x, ...]) is not dispatched",
    "test_2d_array_fanout": "np.array([[x, ...]]) is not dispatched",
    "test_array_from_scalar": "np.array(x) is not dispatched",
    "test_array_from_arrays": "np.array([x, x]) is not dispatched",
    "test_array_from_arrays_2": "np.array([[2 * x, x + 1], [x, x]]) is not dispatched",
    "test_r_basic": "np.r_ converts its items before dispatching",
    "test_r_double": "np.r_ converts its items before dispatching",
    "test_r_node_and_const": "np.r_ converts its items before dispatching",
    "test_r_mixed": "np.r_ converts its items before dispatching",
    "test_r_slicing": "np.r_ converts its items before dispatching",
    "test_c_": "np.c_ converts its items before dispatching",
    "test_c_mixed": "np.c_ converts its items before dispatching",
    "test_max_equal_values": "np.array([x, x]) is not dispatched",
    "test_max_equal_values_2d": "np.array([[x, x], [x, 0.5]]) is not dispatched",
    "test_min_3_way_equality": "np.array([[x, x, x], ...]) is not dispatched",
    "test_maximum_equal_values_2d": "np.array([x, x, 0.5]) is not dispatched",
    "test_norm_list_of_boxes": "np.linalg.norm([x, x + 2]) converts the list before dispatching",
}

#: What opreg does not do yet, in both flavours: strict, so that each entry goes when its test passes.
NOT_YET = {
    "test_eig_real": "np.linalg.eig (complex eigenvalues in general: complex numbers are not supported yet)",
}

#: Tests of autograd's own API rather than NumPy's: not run.
NOT_NUMPY = {
    "test_make_diagonal": "autograd.numpy.make_diagonal is not a NumPy function",
    "test_diagonal": "builds its input with autograd.numpy.make_diagonal, not a NumPy function",
    "test_pinv": "calls autograd.numpy.linalg._dot and .T (tests/test_linalg_decompositions.py runs its cases)",
}


def _flavours() -> dict[str, ModuleType]:
    import opreg.numpy

    return {"numpy": numpy, "opreg.numpy": opreg.numpy}


class HipsModule(pytest.Module):
    """A vendored test file imported under its own name for one flavour of ``np``."""

    flavour: str

    def _getobj(self) -> Any:
        import hips_adapter

        hips_adapter.np = _flavours()[self.flavour]
        name = f"{self.path.stem}__{self.flavour.replace('.', '_')}"
        spec = importlib.util.spec_from_file_location(name, self.path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module


class HipsFile(pytest.File):
    """A vendored test file: one :class:`HipsModule` per flavour of ``np``."""

    def collect(self) -> list[HipsModule]:
        modules = []
        for flavour in ("numpy", "opreg.numpy"):
            name = f"np={flavour}"
            module = HipsModule.from_parent(self, path=self.path, name=name, nodeid=f"{self.nodeid}::{name}")
            module.flavour = flavour
            modules.append(module)
        return modules


def _vendored(path: Path) -> bool:
    return path.name.startswith("hips_test_") and path.suffix == ".py"


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> HipsFile | None:
    """The vendored files in a folder being collected (their names do not match ``test_*.py``)."""
    if _vendored(file_path) and not parent.session.isinitpath(file_path):
        return HipsFile.from_parent(parent, path=file_path)
    return None


def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> HipsFile | None:
    """A vendored file named on the command line, which pytest collects as a module whatever its name."""
    if _vendored(module_path):
        return HipsFile.from_parent(parent, path=module_path)
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    import opreg

    for item in items:
        module = item.getparent(HipsModule)
        if module is None:
            continue
        name = item.name if item.name in NOT_YET else getattr(item, "originalname", item.name)
        if name in NOT_NUMPY:
            item.add_marker(pytest.mark.skip(reason=NOT_NUMPY[name]))
        elif name in NOT_YET:
            item.add_marker(pytest.mark.xfail(reason=NOT_YET[name], strict=True))
        elif module.flavour == "numpy" and name in PROTOCOL_LIMITS:
            item.add_marker(pytest.mark.xfail(reason=PROTOCOL_LIMITS[name], raises=opreg.OpUsageError, strict=True))


@pytest.fixture(autouse=True)
def random_seed() -> None:
    """HIPS autograd's conftest: every test starts from the same random state."""
    numpy.random.seed(42)
