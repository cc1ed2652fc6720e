"""``einsum``: Einstein summation over any number of operands, its subscripts an attribute
(``onp.einsum("ij,jk->ik", a, b)`` and ``np.einsum`` on Tensors spell it as NumPy does).

Each operand's gradient is itself an einsum: of ``g`` with the other operands, onto that operand's subscripts, so
the backward composes to any order. Ellipses (``"...ij,...jk"``) and the implicit output (no ``->``: the letters
that appear once, in alphabetical order, after the ellipsis' axes) are NumPy's. A letter that only one operand
has and the output lacks (summed away, as in ``"ij->i"``) comes back by broadcasting. A letter repeated within one
operand (a diagonal or a trace, ``"ii->i"``) is computed, but its derivative is not written: backward raises,
naming it, rather than return a wrong gradient. The interleaved form ``einsum(a, [0, 1], b, [1, 2])`` is an
error: the subscripts must be a string.
"""

from __future__ import annotations

import string
from typing import Any

import numpy as np

import opreg.numpy as onp
from opreg.plugin import Register, Sample, hookimpl


def _parse(subscripts: Any, ndims: list[int]) -> tuple[list[str], str]:
    """Each operand's letters and the output's, ellipses spelled out in letters no subscript uses."""
    if not isinstance(subscripts, str) or (not subscripts and len(ndims) > 1):
        raise ValueError(
            f"einsum needs its subscripts as a string, as in einsum('ij,jk->ik', a, b), got {subscripts!r} (the "
            "interleaved form einsum(a, [0, 1], b, [1, 2]) is not supported)"
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


def _einsum(*operands: np.ndarray, subscripts: str = "") -> np.ndarray:
    """Einstein summation of the operands, as np.einsum(subscripts, *operands)."""
    _parse(subscripts, [np.ndim(x) for x in operands])  # the same errors whether or not backward follows
    return np.asarray(np.einsum(subscripts, *operands))


def _einsum_backward(g: Any, *operands: Any, subscripts: str) -> tuple[Any, ...]:
    specs, output = _parse(subscripts, [x.ndim for x in operands])
    grads = []
    for i, (spec, x) in enumerate(zip(specs, operands, strict=True)):
        repeated = sorted({c for c in spec if spec.count(c) > 1})
        if repeated:
            raise ValueError(
                f"einsum's derivative is not written for a subscript repeated within one operand ({subscripts!r}: "
                f"{', '.join(repeated)} in operand {i}); take the diagonal with its own op first"
            )
        others = [(s, y) for j, (s, y) in enumerate(zip(specs, operands, strict=True)) if j != i]
        available = set(output).union(*(s for s, _ in others))
        kept = "".join(c for c in spec if c in available)
        expression = ",".join([output, *(s for s, _ in others)]) + "->" + kept
        grad = onp.einsum(expression, g, *(y for _, y in others))
        missing = tuple(axis for axis, c in enumerate(spec) if c not in available)
        if missing:  # summed away in this operand alone: its gradient is the same along those axes
            grad = onp.expand_dims(grad, missing)
            # x's length along those axes; along the others the gradient's own (an ellipsis axis of length 1 in x
            # but not in the others: the engine sums it back)
            grad = onp.broadcast_to(grad, tuple(x.shape[a] if a in missing else n for a, n in enumerate(grad.shape)))
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
        Sample(n(2), n(3), subscripts="i,j->ij"),
        Sample(n((2, 3)), n((1, 3)), subscripts="...j,...j->..."),
    ]


@hookimpl
def opreg_register_ops(register: Register) -> None:
    register(
        name="einsum",
        inputs=("*operands",),
        forward=_einsum,
        backward=_einsum_backward,
        sample_inputs=_samples,
        numpy="einsum",
        reference=lambda torch: lambda *operands, subscripts="": torch.einsum(subscripts, *operands),
    )
