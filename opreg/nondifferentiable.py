"""The NumPy functions whose results have no derivative, in one place: called on Tensors (``np.isnan(t)``,
``np.argmax(t)``, ``t > 0``, ``t.argmax()``), they run on the values and return what NumPy returns, plain arrays
of bools or integers, outside the graph. A mask or an index is a constant: nothing flows back through it, as in
PyTorch, where these give tensors that require no gradient.

Every other NumPy function on a Tensor runs the registered op that implements it, or raises
(:func:`opreg.tensor.numpy_call`): computing it on the values would drop its derivative with no error. A name
belongs here only if every result of the function is boolean, integer or a shape, whatever the inputs.
"""

from __future__ import annotations

#: NumPy function names (``func.__name__``; a ufunc's ``ufunc.__name__``) computed on a Tensor's values.
NON_DIFFERENTIABLE = frozenset(
    {
        # comparisons
        "equal",
        "not_equal",
        "less",
        "less_equal",
        "greater",
        "greater_equal",
        "isclose",
        "allclose",
        "array_equal",
        "array_equiv",
        # logic, on bool (and bitwise on integer) tensors
        "logical_and",
        "logical_or",
        "logical_xor",
        "logical_not",
        "bitwise_and",
        "bitwise_or",
        "bitwise_xor",
        "invert",
        "any",
        "all",
        # classification of values
        "isnan",
        "isfinite",
        "isinf",
        "isneginf",
        "isposinf",
        "signbit",
        "isreal",
        "iscomplex",
        "isrealobj",
        "iscomplexobj",
        # positions
        "argmax",
        "argmin",
        "argsort",
        "nonzero",
        "flatnonzero",
        "argwhere",
        "searchsorted",
        "count_nonzero",
        # shapes
        "shape",
        "ndim",
        "size",
    }
)
