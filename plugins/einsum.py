"""``einsum``: Einstein summation over any number of operands, its subscripts an attribute
(``onp.einsum("ij,jk->ik", a, b)`` and ``np.einsum`` on Tensors spell it as NumPy does, the interleaved form
``np.einsum(a, [0, 1], b, [1, 2], [0, 2])`` too).

Each operand's gradient is itself an einsum: of ``g`` with the other operands, onto that operand's subscripts, so
the backward composes to any order. Ellipses (``"...ij,...jk"``) and the implicit output (no ``->``: the letters
that appear once, in alphabetical order, after the ellipsis' axes) are NumPy's. A letter that only one operand
has and the output lacks (summed away, as in ``"ij->i"``) comes back by broadcasting. A letter repeated within one
operand (a diagonal or a trace, ``"ii->i"``, ``"ijk,lji,lli->lki"``) reads that operand's diagonal: its gradient is
the einsum onto the operand's letters taken once, then placed on the diagonal by an einsum with a constant
identity (``"li,lL->lLi"``, a fresh letter for each repeat), zero off it; an einsum too, so it composes.

The interleaved form is NumPy's: integers 0 to 51 stand for letters (0 to 25 for ``A`` to ``Z``, 26 to 51 for
``a`` to ``z``, so that the implicit output's alphabetical order is the integers' order), ``Ellipsis`` for
``...``, the last sublist, when there is one more sublist than operands, for the output. It is rewritten as the
string before the op runs (``numpy_call``), so the op and its derivative see subscripts alone.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Register, Sample, hookimpl


def _parse(subscripts: Any, ndims: list[int]) -> tuple[list[str], str]:
    """Each operand's letters and the output's, ellipses spelled out in letters no subscript uses."""
    if not isinstance(subscripts, str) or (not subscripts and len(ndims) > 1):
        raise ValueError(
            f"einsum needs its subscripts as a string, as in einsum('ij,jk->ik', a, b), got {subscripts!r} (the "
            "interleaved form np.einsum(a, [0, 1], b, [1, 2]) is NumPy's spelling, read by np.einsum and "
            "opreg.numpy.einsum, not by the op)"
        )
    text = subscripts.replace(" ", "")
    lhs, arrow, out = text.partition("->")
    specs = lhs.split(",")
    if len(specs) != len(ndims):
        raise ValueError(f"einsum subscripts {subscripts!r} name {len(specs)} operands, but {len(ndims)} were given")
    unused = [c for c in string.ascii_letters if c not in text]
    widths = [n - (len(s) - 3) for s, n in zip(specs, ndims, strict=True) if "..." in s]
    width = max(widths, default=0)
    ellipsis = "".join(unused[:width])
    expanded = [
        s.replace("...", ellipsis[width - (n - (len(s) - 3)) :]) if "..." in s else s
        for s, n in zip(specs, ndims, strict=True)
    ]
    if arrow:
        output = out.replace("...", ellipsis)
    else:
        letters = "".join(expanded)
        output = ellipsis + "".join(sorted(c for c in set(letters) if letters.count(c) == 1 and c not in ellipsis))
    return expanded, output


def _einsum(*operands: np.ndarray, subscripts: str = "", optimize: Any = False) -> np.ndarray:
    """Einstein summation of the operands, as np.einsum(subscripts, *operands, optimize=optimize).

    ``optimize`` chooses the order of the contractions (NumPy's True, "greedy", "optimal" or a path; the
    gradients' einsums take True for any of them); it changes no value beyond rounding."""
    _parse(subscripts, [np.ndim(x) for x in operands])  # the same errors whether or not backward follows
    return np.asarray(np.einsum(subscripts, *operands, optimize=optimize))


#: The letters NumPy's interleaved form numbers 0 to 51: uppercase first, as NumPy's own parser maps them.
_SUBLIST_LETTERS = string.ascii_uppercase + string.ascii_lowercase


def _sublist_letters(sublist: Any) -> str:
    """One operand's (or the output's) sublist of the interleaved form as subscripts: ``[Ellipsis, 0, 1]`` is
    ``"...AB"``."""
    if isinstance(sublist, str) or not isinstance(sublist, Sequence | np.ndarray):
        raise ValueError(
            f"einsum's interleaved form takes a list of integers (and Ellipsis) after each operand, got {sublist!r}"
        )
    letters = []
    for item in sublist:
        if item is Ellipsis:
            letters.append("...")
        elif isinstance(item, int | np.integer) and not isinstance(item, bool) and 0 <= item < len(_SUBLIST_LETTERS):
            letters.append(_SUBLIST_LETTERS[int(item)])
        else:
            raise ValueError(
                f"einsum's sublists hold integers from 0 to {len(_SUBLIST_LETTERS) - 1} and Ellipsis, got {item!r} "
                f"in {sublist!r}"
            )
    return "".join(letters)


def _numpy_einsum(call: Callable[..., Any], *operands: Any, **kwargs: Any) -> Any:
    """np.einsum as NumPy takes it: the subscripts first, or interleaved, ``(a, [0, 1], b, [1, 2], [0, 2])``
    (each operand followed by its sublist, then the output's, optional), rewritten as the subscripts string."""
    if not operands or isinstance(operands[0], str):
        return call(*operands, **kwargs)
    pairs, output = (operands[:-1], operands[-1]) if len(operands) % 2 else (operands, None)
    arrays, sublists = pairs[0::2], pairs[1::2]
    lhs = ",".join(_sublist_letters(s) for s in sublists)
    subscripts = lhs if output is None else f"{lhs}->{_sublist_letters(output)}"
    return call(subscripts, *arrays, **kwargs)


def _on_diagonal(grad: Any, spec: str, x: Any) -> Any:
    """``grad``, over ``spec``'s letters taken once (in order of first appearance), placed on the diagonal that
    ``spec`` reads of ``x`` (``"ii"``: grad[i] at [i, i], 0 elsewhere): an einsum with one constant identity per
    repeat, which composes."""
    fresh = iter(c for c in string.ascii_letters if c not in spec)
    target, pairs, identities = [], [], []
    for axis, c in enumerate(spec):
        if c in spec[:axis]:
            new = next(fresh)
            target.append(new)
            pairs.append(c + new)
            identities.append(np.eye(x.shape[axis], dtype=grad.dtype))
        else:
            target.append(c)
    unique = "".join(dict.fromkeys(spec))
    return onp.einsum(f"{','.join([unique, *pairs])}->{''.join(target)}", grad, *identities)


def _einsum_backward(
    g: Any, *operands: Any, subscripts: str, optimize: Any, needs_grad: Sequence[bool]
) -> tuple[Any, ...]:
    specs, output = _parse(subscripts, [x.ndim for x in operands])
    grads: list[Any] = []
    for i, (spec, x) in enumerate(zip(specs, operands, strict=True)):
        if i < len(needs_grad) and not needs_grad[i]:  # a constant operand (an identity placing a diagonal)
            grads.append(None)
            continue
        others = [(s, y) for j, (s, y) in enumerate(zip(specs, operands, strict=True)) if j != i]
        unique = "".join(dict.fromkeys(spec))  # a repeated letter once: the diagonal it reads
        available = set(output).union(*(s for s, _ in others))
        kept = "".join(c for c in unique if c in available)
        expression = ",".join([output, *(s for s, _ in others)]) + "->" + kept
        grad = onp.einsum(expression, g, *(y for _, y in others), optimize=bool(optimize))
        missing = tuple(axis for axis, c in enumerate(unique) if c not in available)
        if missing:  # summed away in this operand alone: its gradient is the same along those axes
            grad = onp.expand_dims(grad, missing)
            # x's length along those axes; along the others the gradient's own (an ellipsis axis of length 1 in x
            # but not in the others: the engine sums it back)
            lengths = [x.shape[spec.index(c)] for c in unique]
            grad = onp.broadcast_to(grad, tuple(lengths[a] if a in missing else n for a, n in enumerate(grad.shape)))
        if len(unique) < len(spec):
            grad = _on_diagonal(grad, spec, x)
        grads.append(grad)
    return tuple(grads)


def _samples(rng: np.random.Generator) -> list[Sample]:
    n = rng.standard_normal
    return [
        Sample(n((2, 3)), n((3, 4)), subscripts="ij,jk->ik"),
        Sample(n(3), n(3), subscripts="i,i->"),
        Sample(n((2, 3)), subscripts="ij->i"),
        Sample(n((2, 3)), subscripts="ij->ji"),
        Sample(n((2, 2, 3)), n((3, 2)), subscripts="...ij,jk"),
        Sample(n((2, 3)), n((3, 4)), n((4, 2)), subscripts="ij,jk,kl->il"),
        Sample(n((2, 3)), n((3, 4)), n((4, 2)), n(2), subscripts="ij,jk,kl,l->i", optimize="greedy"),
        Sample(n(2), n(3), subscripts="i,j->ij"),
        Sample(n((2, 3)), n((1, 3)), subscripts="...j,...j->..."),
        Sample(n((3, 3)), subscripts="ii->i"),
        Sample(n((3, 3)), subscripts="ii"),
        Sample(n((2, 2, 2)), subscripts="iii->i"),
        Sample(n((2, 3, 3)), n((3, 3, 2)), n((3, 3, 2)), subscripts="ijk,lji,lli->lki"),
        Sample(n((2, 2, 3)), n(3), subscripts="iij,j->"),
        Sample(n((2, 3, 3)), subscripts="...ii->...i"),
    ]


def _batch_einsum(
    call: Callable[..., Any], batched: Sequence[bool], *operands: Any, subscripts: str = "", optimize: Any = False
) -> Any:
    """vmap of einsum: one more letter, which no subscript uses, for the batch axis of each batched operand and
    of the output (the subscripts spelled out first, ellipses and an implicit output included)."""
    specs, output = _parse(subscripts, [np.ndim(x) - b for x, b in zip(operands, batched, strict=True)])
    letter = next(c for c in string.ascii_letters if c not in "".join(specs) + output)
    lhs = ",".join(letter + spec if b else spec for spec, b in zip(specs, batched, strict=True))
    return call(*operands, subscripts=f"{lhs}->{letter}{output}", optimize=optimize)


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="einsum",
        inputs=("*operands",),
        forward=_einsum,
        backward=_einsum_backward,
        sample_inputs=_samples,
        numpy="einsum",
        numpy_call=_numpy_einsum,
        reference=lambda torch: lambda *operands, subscripts="", optimize=False: torch.einsum(subscripts, *operands),
        batch=_batch_einsum,
    )
