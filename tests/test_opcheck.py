"""Every built-in op's backward against central finite differences, and the report when one is wrong."""

from __future__ import annotations

import pytest

import opreg
from opreg import GradcheckError
from opreg.opcheck import check_op
from opreg.plugin_manager import BUILTIN_PLUGINS

BUILTINS = sorted(name for name, op in opreg.get_registry().items() if op.plugin in BUILTIN_PLUGINS)


@pytest.mark.parametrize("name", BUILTINS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_builtin_backward_matches_finite_differences(name, seed):
    check_op(name, seed=seed)


def test_a_wrong_backward_is_reported_precisely(install_ops):
    install_ops(
        {"name": "cube", "inputs": ("x",), "forward": lambda x: x**3, "backward": lambda g, x: (2 * g * x**2,)},
        name="buggy-ops",
    )
    with pytest.raises(GradcheckError) as failure:
        check_op("cube")
    message = str(failure.value)
    for part in ("op 'cube'", "plugin 'buggy-ops'", "input 0 'x'", "max abs error", "max rel error", "worst at index"):
        assert part in message
    assert "analytic" in message and "numeric" in message


def test_non_differentiable_inputs_are_skipped(install_ops):
    """labels-like inputs get no gradient check, even though their 'gradient' would be wrong."""
    install_ops(
        {
            "name": "scaled",
            "inputs": ("x", "scale"),
            "forward": lambda x, scale: x * scale,
            "backward": lambda g, x, scale: (g * scale, None),
            "differentiable": ("x",),
        }
    )
    check_op("scaled")
