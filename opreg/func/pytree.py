"""Pytrees: nested tuples, lists and dicts whose leaves are arrays, Tensors or numbers, as ``torch.func`` and JAX
take them for a transform's inputs, outputs, tangents and cotangents.

A tree is flattened to its leaves and a :class:`TreeSpec` that rebuilds it; two trees match when their specs are
equal. Dicts keep their insertion order (as ``torch.utils._pytree`` does); ``None`` is a leaf.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TreeSpec:
    """How a tree nests: ``kind`` is ``"leaf"``, ``"tuple"``, ``"list"`` or ``"dict"``; ``keys`` a dict's keys."""

    kind: str
    children: tuple[TreeSpec, ...] = ()
    keys: tuple[Any, ...] = ()

    @property
    def num_leaves(self) -> int:
        return 1 if self.kind == "leaf" else sum(child.num_leaves for child in self.children)

    def describe(self) -> str:
        """``(*, [*, *])``-like: the nesting, a ``*`` per leaf, for error messages."""
        if self.kind == "leaf":
            return "*"
        inner = ", ".join(
            f"{key!r}: {child.describe()}" if self.kind == "dict" else child.describe()
            for key, child in zip(self.keys or [None] * len(self.children), self.children, strict=True)
        )
        return {"tuple": f"({inner}{',' if len(self.children) == 1 else ''})", "list": f"[{inner}]"}.get(
            self.kind, f"{{{inner}}}"
        )


LEAF = TreeSpec("leaf")


def tree_flatten(tree: Any) -> tuple[list[Any], TreeSpec]:
    """The leaves of ``tree`` in order, and its spec."""
    leaves: list[Any] = []
    return leaves, _flatten(tree, leaves)


def _flatten(tree: Any, leaves: list[Any]) -> TreeSpec:
    if type(tree) is tuple or type(tree) is list:
        return TreeSpec(type(tree).__name__, tuple(_flatten(x, leaves) for x in tree))
    if type(tree) is dict:
        return TreeSpec("dict", tuple(_flatten(x, leaves) for x in tree.values()), tuple(tree))
    leaves.append(tree)
    return LEAF


def tree_unflatten(spec: TreeSpec, leaves: list[Any] | tuple[Any, ...]) -> Any:
    """The tree of ``spec`` with ``leaves`` in order."""
    it = iter(leaves)
    tree = _build(spec, it)
    return tree


def _build(spec: TreeSpec, leaves: Iterator[Any]) -> Any:
    if spec.kind == "leaf":
        return next(leaves)
    children = [_build(child, leaves) for child in spec.children]
    if spec.kind == "dict":
        return dict(zip(spec.keys, children, strict=True))
    return tuple(children) if spec.kind == "tuple" else children


def tree_map(function: Any, tree: Any) -> Any:
    """``tree`` with ``function`` applied to every leaf."""
    leaves, spec = tree_flatten(tree)
    return tree_unflatten(spec, [function(leaf) for leaf in leaves])
