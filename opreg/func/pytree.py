"""Pytrees: nested tuples, named tuples, lists and dicts whose leaves are arrays, Tensors or numbers, as
``torch.func`` and JAX take them for a transform's inputs, outputs, tangents and cotangents.

A tree is flattened to its leaves and a :class:`TreeSpec` that rebuilds it; two trees match when their specs are
equal. Dicts keep their insertion order (as ``torch.utils._pytree`` does); ``None`` is a leaf, and so is any other
object (a transform then says that it is not an array). Only these exact container types nest: a subclass of dict
(``OrderedDict``, ``defaultdict``) or of list is a leaf, so that nothing is rebuilt as another type than given.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple


class _Spec(NamedTuple):
    kind: str
    children: tuple[TreeSpec, ...]
    keys: tuple[Any, ...]
    node_type: type | None
    num_leaves: int


class TreeSpec(_Spec):
    """How a tree nests: ``kind`` is ``"leaf"``, ``"tuple"``, ``"namedtuple"``, ``"list"`` or ``"dict"``;
    ``keys`` a dict's keys or a named tuple's fields, ``node_type`` a named tuple's class, ``num_leaves`` how many
    leaves it holds (counted from the children when not given). A named tuple, not a dataclass: every transform
    call flattens its arguments, and :func:`tree_flatten` makes it several times faster (``_make``, knowing the
    count)."""

    __slots__ = ()

    def __new__(
        cls,
        kind: str,
        children: tuple[TreeSpec, ...] = (),
        keys: tuple[Any, ...] = (),
        node_type: type | None = None,
        num_leaves: int | None = None,
    ) -> TreeSpec:
        if num_leaves is None:
            num_leaves = 1 if kind == "leaf" else sum(child.num_leaves for child in children)
        return super().__new__(cls, kind, children, keys, node_type, num_leaves)

    def describe(self) -> str:
        """``(*, [*, *])``-like: the nesting, a ``*`` per leaf, for error messages."""
        if self.kind == "leaf":
            return "*"
        if self.kind == "namedtuple":
            fields = ", ".join(f"{key}={child.describe()}" for key, child in zip(self.keys, self.children, strict=True))
            return f"{getattr(self.node_type, '__name__', 'namedtuple')}({fields})"
        if self.kind == "dict":
            items = ", ".join(
                f"{key!r}: {child.describe()}" for key, child in zip(self.keys, self.children, strict=True)
            )
            return f"{{{items}}}"
        inner = ", ".join(child.describe() for child in self.children)
        return f"[{inner}]" if self.kind == "list" else f"({inner}{',' if len(self.children) == 1 else ''})"

    def paths(self) -> list[str]:
        """Where each leaf sits, in order, as Python would index it (``['W1']``, ``[0][1]``, ``.mean``; ``''`` for
        a tree that is one leaf): error messages name a leaf so."""
        if self.kind == "leaf":
            return [""]
        if self.kind == "namedtuple":
            steps = [f".{key}" for key in self.keys]
        elif self.kind == "dict":
            steps = [f"[{key!r}]" for key in self.keys]
        else:
            steps = [f"[{i}]" for i in range(len(self.children))]
        return [step + rest for step, child in zip(steps, self.children, strict=True) for rest in child.paths()]


LEAF = TreeSpec("leaf")


def tree_flatten(tree: Any) -> tuple[list[Any], TreeSpec]:
    """The leaves of ``tree`` in order, and its spec."""
    leaves: list[Any] = []
    return leaves, _flatten(tree, leaves)


def _flatten(tree: Any, leaves: list[Any]) -> TreeSpec:
    kind = type(tree)
    if kind is dict:
        start = len(leaves)
        children = tuple([_flatten(x, leaves) for x in tree.values()])
        return TreeSpec._make(("dict", children, tuple(tree), None, len(leaves) - start))
    if kind is tuple or kind is list or (isinstance(tree, tuple) and hasattr(kind, "_fields")):
        start = len(leaves)
        children = tuple([_flatten(x, leaves) for x in tree])
        if kind is tuple or kind is list:
            return TreeSpec._make((kind.__name__, children, (), None, len(leaves) - start))
        return TreeSpec._make(("namedtuple", children, kind._fields, kind, len(leaves) - start))  # its own class
    leaves.append(tree)
    return LEAF


def tree_unflatten(spec: TreeSpec, leaves: Sequence[Any]) -> Any:
    """The tree of ``spec`` with ``leaves`` in order; a ``ValueError`` if their number is not the spec's."""
    if len(leaves) != spec.num_leaves:
        raise ValueError(
            f"tree_unflatten: {spec.describe()} holds {spec.num_leaves} leaves, and {len(leaves)} were given"
        )
    if spec.kind != "leaf" and all(child.kind == "leaf" for child in spec.children):  # one level: a params dict
        if spec.kind == "dict":
            return dict(zip(spec.keys, leaves, strict=True))
        if spec.kind == "namedtuple":
            assert spec.node_type is not None
            return spec.node_type(*leaves)
        return tuple(leaves) if spec.kind == "tuple" else list(leaves)
    return _build(spec, iter(leaves))


def _build(spec: TreeSpec, leaves: Iterator[Any]) -> Any:
    if spec.kind == "leaf":
        return next(leaves)
    children = [_build(child, leaves) for child in spec.children]
    if spec.kind == "dict":
        return dict(zip(spec.keys, children, strict=True))
    if spec.kind == "namedtuple":
        assert spec.node_type is not None
        return spec.node_type(*children)
    return tuple(children) if spec.kind == "tuple" else children


def tree_map(function: Any, tree: Any) -> Any:
    """``tree`` with ``function`` applied to every leaf."""
    leaves, spec = tree_flatten(tree)
    return tree_unflatten(spec, [function(leaf) for leaf in leaves])
