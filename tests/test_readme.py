"""The README's Python examples run as written, its walkthrough prints what the README says it prints, and the
before/after of "What changed for plugin authors" declares the same ops in the earlier and the current contract."""

from __future__ import annotations

import importlib.util
import re
import types
import warnings
from pathlib import Path

import numpy as np
import pytest

import opreg
from opreg import Tensor
from opreg.datasets import load_digits, one_hot

README = Path(__file__).resolve().parent.parent / "README.md"


#: Under OPREG_CHECK=1 a compiled step runs eagerly (checking mode watches every op call).
REPLAYS = not opreg.observe.active


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def run(block: str) -> dict:
    """Run one example on its own, as a reader pasting it would."""
    namespace: dict = {}
    exec(compile(block, str(README), "exec"), namespace)
    return namespace


def test_readme_examples_run_as_written(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples write files where they run
    tensors, numpy_code, transforms, from_pytorch, compiling, walkthrough, training, plugin = python_blocks()
    namespace = run(tensors)
    assert capsys.readouterr().out.startswith("(3, 2) [")
    assert namespace["b"].grad.shape == (2,) and not namespace["prediction"].requires_grad
    assert namespace["w"].grad.shape == (3, 2) and namespace["gw"].requires_grad  # the penalty reached w
    assert type(namespace["exps"]) is np.ndarray

    namespace = run(numpy_code)
    x = namespace["t"].data

    def y(v: np.ndarray) -> float:
        return float(np.sum(np.sin(v) ** 2 * np.exp(-v)) + np.max(v[1:] * v[:-1]))

    eps, eye = 1e-5, np.eye(x.size)
    numeric = np.array([(y(x + eps * e) - y(x - eps * e)) / (2 * eps) for e in eye])
    np.testing.assert_allclose(namespace["g"].data, numeric, rtol=1e-6)
    hessian_rows = [
        (y(x + eps * (e + f)) - y(x + eps * (e - f)) - y(x - eps * (e - f)) + y(x - eps * (e + f)))
        for e in eye
        for f in eye
    ]
    numeric_h = np.array(hessian_rows).reshape(x.size, x.size).sum(axis=1) / (4 * eps * eps)
    np.testing.assert_allclose(namespace["h"].data, numeric_h, rtol=1e-3, atol=1e-3)
    A = namespace["A"].data
    np.testing.assert_allclose(
        namespace["A"].grad, -np.linalg.inv(A).T @ np.ones((3, 1)) @ np.linalg.solve(A, np.ones(3))[None], rtol=1e-12
    )
    assert type(namespace["both"]) is Tensor and namespace["both"].shape == (7,)

    namespace = run(transforms)
    x = namespace["x"]
    np.testing.assert_allclose(namespace["g"], np.sin(x) + x * np.cos(x), rtol=1e-12)
    np.testing.assert_allclose(namespace["H"], np.diag(2 * np.cos(x) - x * np.sin(x)), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(namespace["J"], np.diag(1 - np.tanh(x) ** 2), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(namespace["slope"], np.sum(np.sin(x) + x * np.cos(x)), rtol=1e-12)
    params, xs, ys, per_example = (namespace[k] for k in ("params", "xs", "ys", "per_example"))
    assert {k: v.shape for k, v in per_example.items()} == {"W": (8, 4, 3), "b": (8, 3)}
    for i in range(len(xs)):  # each example's gradient, by its own backward pass
        leaves = {k: Tensor(v, requires_grad=True) for k, v in params.items()}
        grads = opreg.grad(namespace["loss"](leaves, xs[i], ys[i]), list(leaves.values()))
        for k, g in zip(leaves, grads, strict=True):
            np.testing.assert_allclose(per_example[k][i], g.data, rtol=1e-12, atol=1e-15)

    namespace = run(from_pytorch)
    losses = namespace["losses"]
    assert np.mean(losses[-10:]) < np.mean(losses[:10]) / 2  # it trains
    assert capsys.readouterr().out.startswith("Net(\n  (body): Sequential(")
    x = load_digits()[0][:5]
    np.testing.assert_array_equal(namespace["restored"](x).data, namespace["model"](x).data)

    namespace = run(compiling)
    step = namespace["step"]
    printed = capsys.readouterr().out
    assert printed.startswith(f"{float(namespace['loss'])} {26 if REPLAYS else 0} {2 if REPLAYS else 28}\n")
    if REPLAYS:
        assert "def replay(A):" in printed and step.code in printed

    run(walkthrough)
    assert capsys.readouterr().out.splitlines() == ["[[1. 2. 3.]] [[1. 1. 1.]]", "[[4. 5. 6.]]"]

    step = run(training)["step"]
    x, labels = load_digits()
    losses = [step(x[:64], one_hot(labels[:64], 10)) for _ in range(5)]
    assert losses[-1] < losses[0]

    [name] = re.findall(r'name="(\w+)"', plugin)
    try:
        x = np.linspace(-2, 2, 5)
        namespace = run(plugin)
        np.testing.assert_allclose(namespace["y"], np.where(x > 0, x, 0.5 * np.expm1(x)))
        np.testing.assert_array_equal(namespace["layer"](x), namespace["y"], strict=True)
        assert repr(namespace["model"].layers[1]) == f"OpModule({name!r}, alpha=0.5)"
        assert dict(opreg.get_registry()[name].attributes) == {"alpha": 1.0}
        assert type(getattr(opreg.ops, name)(x, alpha=0.5)) is np.ndarray  # arrays in, an array out
        opreg.check_op(name)  # second derivatives included: the README says its backward composes
        t = Tensor(x, requires_grad=True)
        opreg.grad(getattr(opreg.ops, name)(t), [t], np.ones(5), create_graph=True)
    finally:
        if name in opreg.get_registry():
            opreg.unregister_plugin(opreg.get_registry()[name].plugin)


# --- What changed for plugin authors ----------------------------------------------------------------------------------


def before_and_after() -> tuple[str, str]:
    """The section's diff as the two modules it contrasts: context and ``-`` lines, context and ``+`` lines."""
    section = README.read_text().split("## What changed for plugin authors", 1)[1].split("\n## ", 1)[0]
    [diff] = re.findall(r"```diff\n(.*?)```", section, flags=re.DOTALL)
    lines = diff.splitlines()
    before = [line[1:] for line in lines if not line.startswith("+")]
    after = [line[1:] for line in lines if not line.startswith("-")]
    return "\n".join(before) + "\n", "\n".join(after) + "\n"


def load(source: str, name: str) -> list[str]:
    """``source`` registered as plugin ``name``; the DeprecationWarnings its declarations gave (registering reloads
    every plugin, and other installed packages, contrib_ops in CI, may warn too)."""
    module = types.ModuleType(name)
    exec(compile(source, f"{README} ({name})", "exec"), module.__dict__)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opreg.register_plugin(module, name=name)
    return [
        str(w.message)
        for w in caught
        if issubclass(w.category, DeprecationWarning) and f"(plugin {name!r})" in str(w.message)
    ]


def results(name: str, attributes: dict) -> list[np.ndarray]:
    """Output and gradient through the tape engine, on a batch of rows."""
    x = np.random.default_rng(0).standard_normal((3, 4))
    engine = opreg.Autograd()
    out = engine.apply(name, x, **attributes)
    engine.backward(np.random.default_rng(1).standard_normal(out.shape))
    return [out, engine.gradient_buffer.get_param(x)]


CASES = [("scaled_exp", {}), ("scaled_exp", {"alpha": 2.5}), ("lse", {})]


def test_what_changed_before_and_after_declare_the_same_ops():
    before, after = before_and_after()
    names = re.findall(r'name="(\w+)"', after)
    assert sorted(names) == sorted({name for name, _ in CASES})
    found = {}
    for side, source in [("before", before), ("after", after)]:
        deprecated = load(source, f"readme-{side}")
        try:
            keywords = sorted(re.findall(r"register\((\w+)=\.\.\.\) is deprecated", " ".join(deprecated)))
            expected = ["attributes", "backward_uses_output", "differentiable_backward", "saves_for_backward"]
            assert keywords == (expected if side == "before" else []), deprecated
            for name in names:
                opreg.check_op(name)
            found[side] = [results(name, attributes) for name, attributes in CASES]
            if side == "after":  # both backwards compose: create_graph goes through them, saved=None for lse
                for name, attributes in CASES:
                    t = Tensor(np.random.default_rng(2).standard_normal((3, 4)), requires_grad=True)
                    out = getattr(opreg.ops, name)(t, **attributes)
                    (g,) = opreg.grad(out, [t], np.ones(out.shape), create_graph=True)
                    (g * g).sum().backward()
                    assert t.grad is not None and np.all(np.isfinite(t.grad))
        finally:
            opreg.unregister_plugin(f"readme-{side}")
    for (name, attributes), old, new in zip(CASES, found["before"], found["after"], strict=True):
        for a, b in zip(old, new, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, strict=True, err_msg=f"{name} {attributes}")


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is the reference: pip install '.[torch]'")
def test_what_changed_references_compute_the_same_functions():
    """The after side's ``reference=`` values give the ops' outputs in torch."""
    import torch

    _, after = before_and_after()
    load(after, "readme-after")
    try:
        registry = opreg.get_registry()
        for name, attributes in CASES:
            x = np.random.default_rng(0).standard_normal((3, 4))
            expected = registry[name].reference(torch)(torch.tensor(x), **attributes).numpy()
            np.testing.assert_allclose(getattr(opreg.ops, name)(x, **attributes), expected, rtol=1e-12, strict=True)
    finally:
        opreg.unregister_plugin("readme-after")
