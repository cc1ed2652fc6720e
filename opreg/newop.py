"""``opreg new-op NAME``: a new op package, ready to fill in, install and check.

It writes ``opreg-NAME/`` with four files: ``pyproject.toml`` (the ``opreg`` entry point), ``opreg_NAME.py`` (the op's
forward and backward, each raising ``NotImplementedError`` that says what to write, and its sample inputs),
``tests/test_NAME.py`` (a property test against a NumPy reference, with :mod:`opreg.testing`) and ``README.md``
(the commands). Until the functions are written, ``opreg check NAME`` fails naming them; once they are,
``pip install -e opreg-NAME`` and ``opreg check NAME`` pass.

The placeholders raise rather than compute something (an identity, say) so that nothing unfinished can pass a
check by accident. Nothing a user has is overwritten: the package's folder must not exist yet, and it is created
with ``os.mkdir``, which fails rather than reuse one that appeared meanwhile.
"""

from __future__ import annotations

import keyword
import os
import shutil
from importlib import metadata
from pathlib import Path
from string import Template

from opreg.errors import OpregError
from opreg.files import atomic_write

__all__ = ["NewOpError", "new_op", "package_files"]


class NewOpError(OpregError):
    """``opreg new-op`` refused: an invalid name, a name already installed, or a folder that already exists."""


PYPROJECT = """\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "The op $op for opreg"
dependencies = ["opreg"]

[project.optional-dependencies]
test = ["pytest", "hypothesis"]

[project.entry-points.opreg]
$op = "$module"

[tool.setuptools]
py-modules = ["$module"]
"""

MODULE = '''\
"""$dist: the op $op. Write its forward and backward below (the two TODOs), then `opreg check $op`."""

import opreg.numpy as onp
from opreg.plugin import Register, Sample, hookimpl


def $op(x):
    """$op(x): what it computes, in one line (`opreg ops` shows it)."""
    # TODO 1 of 2: compute the output from x with opreg.numpy (onp.exp, onp.tanh, onp.abs, ...) and operators,
    # e.g. `return x * onp.tanh(x)`. A keyword-only parameter with a default, `def $op(x, *, beta=1.0)`, is an
    # attribute of the op, set per call: `opreg.ops.$op(x, beta=2.0)`.
    raise NotImplementedError("write the forward of $op: the function $op in $module.py")


def ${op}_backward(g, x):
    # TODO 2 of 2: return a tuple of one gradient per input: g times the derivative of $op at x, written with
    # opreg.numpy and operators (never np.* on g or x), so that it has second derivatives too. For
    # `x * onp.tanh(x)`: `t = onp.tanh(x)` then `return (g * (t + x * (1 - t * t)),)`.
    raise NotImplementedError("write the backward of $op: the function ${op}_backward in $module.py")


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="$op",
        inputs=("x",),
        forward=$op,
        backward=${op}_backward,
        # the inputs `opreg check` differentiates at: add a Sample per shape or attribute value worth checking
        sample_inputs=lambda rng: [Sample(rng.standard_normal((3, 4))), Sample(rng.standard_normal(5))],
    )
'''

TEST = '''\
"""$op against a NumPy reference on inputs hypothesis draws: 0-d to 4-D arrays (some empty), float32 and float64,
values in [-10, 10]. The gradients are compared with the reference's finite differences."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from opreg import testing


def reference(x):
    """$op in plain NumPy, written apart from $module.py, e.g. `return x * np.tanh(x)`."""
    raise NotImplementedError("write $op with NumPy: the function reference in tests/test_$op.py")


CASES = st.sampled_from([np.float32, np.float64]).flatmap(testing.unary(testing.floats(-10.0, 10.0)))


@settings(max_examples=testing.examples(50), deadline=None)
@given(CASES)
def test_${op}_matches_numpy(case):
    inputs, attributes = case
    testing.check_against_numpy("$op", reference, inputs, attributes)
'''

README = """\
# $dist

The op `$op` for opreg, as `opreg new-op $op` wrote it.

1. Write the two functions marked TODO in `$module.py`: `$op` (the forward) and `${op}_backward`, with
   `opreg.numpy` and operators; and the same function in plain NumPy, `reference` in `tests/test_$op.py`.
2. In the environment where opreg is installed:

```bash
pip install -e ".[test]"   # the op is registered: `opreg ops` lists it
opreg check $op            # contract, finite differences, second derivatives; exit 1 on failure
pytest                     # the property test against NumPy
```

`opreg check` names the sample, the worst element and the file and line of the backward when a derivative is
wrong. opreg's CONTRIBUTING.md (Your own op package) says what else an op can declare: attributes, several
inputs, `numpy=`, `domain=`, `differentiable=`.
"""


def package_files(name: str) -> dict[str, str]:
    """The files of op ``name``'s package, by path inside its folder."""
    names = {"op": name, "module": f"opreg_{name}", "dist": f"opreg-{name}"}
    templates = {
        "pyproject.toml": PYPROJECT,
        f"opreg_{name}.py": MODULE,
        f"tests/test_{name}.py": TEST,
        "README.md": README,
    }
    return {path: Template(text).substitute(names) for path, text in templates.items()}


def check_name(name: str) -> None:
    """Raise :class:`NewOpError` unless ``name`` can be a new op: an identifier that is not a keyword, and no op,
    plugin or ``opreg-NAME`` distribution of that name is installed."""
    if not name.isidentifier() or keyword.iskeyword(name):
        suggestion = name.replace("-", "_").replace(".", "_").replace(" ", "_")
        hint = f", such as {suggestion!r}" if suggestion.isidentifier() and not keyword.iskeyword(suggestion) else ""
        if keyword.iskeyword(name):
            raise NewOpError(f"{name!r} cannot be an op's name: it is a Python keyword, and names the op's functions")
        raise NewOpError(
            f"{name!r} cannot be an op's name: an op's name is a Python identifier (letters, digits and "
            f"underscores, not starting with a digit){hint}, since it names the op's functions and opreg.ops.<name>"
        )
    from opreg import plugin_manager
    from opreg.registry import get_registry

    registry = get_registry()
    if name in registry:
        op = registry[name]
        raise NewOpError(
            f"an op named {name!r} is already installed (plugin {op.plugin!r}); choose another name "
            f"(two ops of one name cannot both load)"
        )
    if name in plugin_manager.plugin_infos_by_name():
        raise NewOpError(
            f"a plugin named {name!r} is already installed (`opreg plugins` lists it); choose another name"
        )
    try:
        found = metadata.distribution(f"opreg-{name}")
    except metadata.PackageNotFoundError:
        return
    raise NewOpError(
        f"a distribution opreg-{name} {found.version} is already installed; choose another name, or "
        f"`pip uninstall opreg-{name}` first"
    )


def new_op(name: str, directory: str | os.PathLike[str] = ".") -> Path:
    """Write op ``name``'s package into ``directory/opreg-NAME`` and return that folder; raise
    :class:`NewOpError` for a name :func:`check_name` refuses or a folder that exists (never overwritten)."""
    check_name(name)
    parent = Path(directory)
    if not parent.is_dir():
        reason = "does not exist; create it first" if not parent.exists() else "is a file, not a folder"
        raise NewOpError(f"cannot write the package into {str(parent)!r}: it {reason}")
    folder = parent / f"opreg-{name}"
    try:
        folder.mkdir()
    except FileExistsError:
        raise NewOpError(
            f"{str(folder)!r} already exists; new-op never overwrites: remove it, or choose another name or --dir"
        ) from None
    except OSError as exc:
        raise NewOpError(f"cannot create {str(folder)!r}: {exc.strerror or exc}") from exc
    try:
        for path, text in package_files(name).items():
            target = folder / path
            target.parent.mkdir(exist_ok=True)
            with atomic_write(target) as file:
                file.write(text.encode())
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # the folder is ours, created above: no half-written package
        raise
    return folder
