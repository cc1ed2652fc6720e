"""The Tensor as a NumPy citizen (issue #12): NumPy's protocols, ndarray's methods, in-place changes and indexing.

The first tests are the silent wrong answers the issue lists: each failed (a wrong value, a graph quietly dropped)
before the change it tests, and now gives the right answer or a clear error.

Rules checked here, which README's Tensor section states:

- ``np.asarray(t)``, ``t.numpy()``: the values of a tensor that needs no gradient; an error naming ``.detach()``
  for one that does. A list holding Tensors, given to an op or to ``Tensor(...)``, is an error (not floats).
- Comparisons, logic, ``isnan``..., ``argmax``... (``opreg.nondifferentiable``) give plain NumPy arrays.
- ndarray's spellings only: PyTorch's (``dim=``, ``.view``, ``.size()``, ...) raise naming NumPy's.
- In place: ``t += x`` and ``t[i] = v`` on a leaf that requires gradients update it inside ``no_grad`` and raise
  outside; on a tensor in the graph they record (the tensor takes the result's graph, ops recorded earlier keep
  the old value); on anything else they write into the array, as NumPy does.
- Indexing: ``getitem`` accumulates repeated positions; ``t[i] = v`` keeps NumPy's last write, which alone gets
  the gradient.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import opreg
import opreg.numpy as onp
from opreg import ModifiedInPlaceError, OpUsageError, Tensor, ops
from opreg.registry import numpy_op
from opreg.testing import examples

from shape_attributes import index_for
from torch_reference import needs_torch, torch

# --- the silent wrong answers of issue #12 ---------------------------------------------------------------------------


def test_equality_is_elementwise_not_identity():
    """``t == 3`` was False and ``t == t`` True (identity): now arrays, elementwise, of the values."""
    t = Tensor(np.array([3.0, 1.0, np.nan]), requires_grad=True)
    np.testing.assert_array_equal(t == 3, [True, False, False])
    np.testing.assert_array_equal(t == t, [True, True, False])  # nan != nan, as NumPy says
    np.testing.assert_array_equal(t != 3, [False, True, True])
    assert type(t == t) is np.ndarray


def test_a_manual_sgd_step_under_no_grad_changes_the_parameter():
    """``w -= lr * w.grad`` under no_grad rebound the name to a new Tensor, so the model never changed: now the
    very tensor (and the array a module or optimizer holds) is updated."""
    w = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    memory = w.data
    (w * w).sum().backward()
    with opreg.no_grad():
        same = w
        w -= 0.1 * w.grad
        w += 1
    assert same is w and w.data is memory and w.is_leaf and w.requires_grad
    np.testing.assert_allclose(memory, [1.8, 2.6])
    assert w.version == 2


def test_changing_a_leaf_that_requires_gradients_outside_no_grad_raises():
    """PyTorch's rule: the value a graph starts from cannot change while recording."""
    w = Tensor(np.ones(2), requires_grad=True)
    for change in (lambda: w.__iadd__(1), lambda: w.__setitem__(0, 5.0)):
        with pytest.raises(OpUsageError, match=r"leaf tensor that requires gradients.*no_grad"):
            change()
    np.testing.assert_array_equal(w.data, [1.0, 1.0])


def test_asarray_of_a_tensor_is_its_values_or_an_error():
    """``np.asarray(t)`` was a 0-d object array: now the float array of a tensor that needs no gradient, and an
    error naming .detach() for one that does (the values would leave the graph)."""
    plain = Tensor(np.array([1.0, 2.0]))
    assert np.asarray(plain).dtype == np.float64 and np.asarray(plain) is plain.data
    assert np.array(plain, dtype=np.float32).dtype == np.float32
    w = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    with pytest.raises(OpUsageError, match=r"np.asarray\(t\).*requires gradients.*t.detach\(\)"):
        np.asarray(w)
    with pytest.raises(OpUsageError, match="requires gradients"):
        np.array([w.data, w])  # NumPy converting a Tensor in a list
    np.testing.assert_array_equal(np.asarray(w.detach()), [1.0, 2.0])
    with pytest.raises(OpUsageError, match="requires gradients"):
        np.asarray(w, dtype=np.float32)  # a floating cast would still drop the gradient


def test_integer_and_boolean_conversions_of_a_tensor_in_the_graph_are_its_values():
    """``np.int64(t)`` and ``np.asarray(t, dtype=bool)`` ask for a cast that has derivative 0 wherever it has one
    (as ``t.astype(int)``, a constant): they give the values, as PyTorch's ``t.long()`` does, rather than an error
    (HIPS autograd's test_cast_to_int indexes with them)."""
    w = Tensor(np.array([2.7, 0.0, -1.5]), requires_grad=True)
    np.testing.assert_array_equal(np.int64(w), [2, 0, -1], strict=True)
    np.testing.assert_array_equal(np.asarray(w, dtype=bool), [True, False, True], strict=True)
    np.testing.assert_array_equal(np.array(w, dtype=np.uint8), np.array([2.7, 0.0, -1.5]).astype(np.uint8))


def test_numpy_of_a_tensor_that_requires_gradients_raises():
    """``t.numpy()`` handed out the memory the graph saved (writing to it changed the gradient): now an error, as
    PyTorch's, and ``t.detach().numpy()`` the way."""
    w = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    y = w * w
    with pytest.raises(OpUsageError, match=r"t.numpy\(\) on a Tensor that requires gradients.*detach"):
        y.numpy()
    assert y.detach().numpy() is y.data
    assert Tensor(np.ones(2)).numpy().dtype == np.float64


def test_a_list_holding_tensors_given_to_an_op_is_stacked_and_keeps_the_graph():
    """``opreg.ops.mean([x, x + 2])`` silently dropped the graph (gradient 0, not 1), and ``Tensor([s, s])`` built
    a Tensor of Tensors: both now go through the recorded stack op, nested lists too."""
    x = Tensor(np.array(1.0), requires_grad=True)
    (g,) = opreg.grad(ops.mean([x, x + 2]), [x])
    assert g.data == 1.0
    (g,) = opreg.grad(ops.add(1.0, [[x], [2.0]]).sum(), [x])
    assert g.data == 1.0
    (g,) = opreg.grad(Tensor([x, x * 3]).sum(), [x])
    assert g.data == 4.0
    assert ops.mean([1.0, 3.0]) == 2.0  # numbers in lists are NumPy's as ever


def test_requires_grad_false_on_a_non_leaf_raises():
    """Setting ``requires_grad = False`` on an op's result silently cut the graph: now an error naming detach."""
    x = Tensor(np.ones(2), requires_grad=True)
    y = x * 2
    with pytest.raises(OpUsageError, match=r"requires_grad = False on a tensor an op made.*detach"):
        y.requires_grad = False
    assert y.requires_grad
    x.requires_grad = False  # a leaf may
    assert not x.requires_grad


# --- functions with no derivative: plain arrays of the values --------------------------------------------------------


def test_functions_without_derivatives_give_plain_arrays():
    t = Tensor(np.array([[3.0, -1.0, np.inf], [0.5, np.nan, 2.0]]), requires_grad=True)
    v = t.data
    with np.errstate(invalid="ignore"):
        cases = {
            "isnan": (np.isnan(t), np.isnan(v)),
            "isfinite": (np.isfinite(t), np.isfinite(v)),
            "isinf": (np.isinf(t), np.isinf(v)),
            "argmax": (np.argmax(t, axis=1), np.argmax(v, axis=1)),
            "argmin": (np.argmin(t), np.argmin(v)),
            "argsort": (np.argsort(t, axis=0), np.argsort(v, axis=0)),
            "nonzero": (np.nonzero(t), np.nonzero(v)),
            "searchsorted": (np.searchsorted(Tensor(np.arange(4.0)), t[0]), np.searchsorted(np.arange(4.0), v[0])),
            "logical_and": (np.logical_and(t > 0, True), np.logical_and(v > 0, True)),
            "logical_not": (np.logical_not(t > 0), np.logical_not(v > 0)),
            "less": (np.less(t, 1.0), np.less(v, 1.0)),
            "method argmax": (t.argmax(axis=0), v.argmax(axis=0)),
            "method argmin": (t.argmin(), v.argmin()),
            "method any": (t.any(), v.any()),
            "shape": (np.shape(t), v.shape),
        }
    for what, (mine, numpys) in cases.items():
        assert not isinstance(mine, Tensor), what
        if isinstance(numpys, tuple):
            for a, b in zip(mine, numpys, strict=True):
                np.testing.assert_array_equal(a, b, err_msg=what)
        else:
            np.testing.assert_array_equal(mine, numpys, err_msg=what, strict=True)


def test_masks_combine_and_index():
    x = Tensor(np.array([-1.0, 2.0, 3.0]), requires_grad=True)
    mask = (x > 0) & ~(x == 3.0) | (x < -3.0)
    np.testing.assert_array_equal(mask, [False, True, False])
    x[mask].sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 1.0, 0.0])


def test_a_numpy_function_with_no_op_raises_naming_it():
    t = Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(OpUsageError, match=r"numpy.fft.fft|numpy.fft"):
        np.fft.fft(t)
    with pytest.raises(OpUsageError, match=r"numpy.add.accumulate was called on a Tensor"):
        np.add.accumulate(t)


def test_opreg_numpy_serves_a_whole_numpy_program():
    """``import opreg.numpy as np`` works as ``autograd.numpy`` does: NumPy's constants, dtypes, constructors and
    random numbers are NumPy's own, a function no op implements is NumPy's and refuses a Tensor (no silent
    derivative), and ``array``/``asarray`` of lists nesting Tensors record a stack (NumPy's ``np.array`` cannot)."""
    assert onp.pi == np.pi and onp.float64 is np.float64 and onp.random is np.random and onp.newaxis is None
    assert onp.__version__ == np.__version__
    np.testing.assert_array_equal(onp.ones((2, 2)), np.ones((2, 2)))
    x = Tensor(np.array(3.0), requires_grad=True)
    with pytest.raises(OpUsageError, match=r"numpy.heaviside was called on a Tensor"):
        onp.heaviside(x, 0.5)
    a = onp.array([[x, x * 2.0, 1.0], [x**2, x, x / 2.0]])
    assert isinstance(a, Tensor) and a.shape == (2, 3) and a.requires_grad
    (g,) = opreg.grad(onp.sum(a), [x])
    assert float(g.data) == 1 + 2 + 2 * 3 + 1 + 0.5
    assert onp.array(x, ndmin=2).shape == (1, 1) and onp.array([x, x], dtype=np.float32).dtype == np.float32
    assert onp.asarray(x) is x and onp.array(x) is not x
    plain = np.arange(3.0)
    assert onp.asarray(plain) is plain and onp.array(plain) is not plain
    with pytest.raises(OpUsageError, match="requires gradients"):
        np.array([x, x])  # NumPy's own: not reachable by its protocols, so it refuses rather than drop the graph


def test_a_complex_result_from_a_tensor_is_refused_saying_so():
    """``t * 1j`` computed a complex Tensor whose gradient would drop the imaginary part: complex numbers are out
    of scope for now, so any recorded op with a complex result raises, through both front ends and several
    outputs alike. Without recording (no_grad, plain arrays) NumPy's complex values are computed as NumPy's."""
    t = Tensor(np.array([1.0, 4.0]), requires_grad=True)
    for make in (lambda: t * 1j, lambda: np.sqrt(t + 0j), lambda: onp.exp(t * (1 + 0j))):
        with pytest.raises(OpUsageError, match=r"complex result: .*complex numbers are not supported yet"):
            make()
    with pytest.raises(OpUsageError, match=r"op 'mul' .*complex result"):
        opreg.Autograd().apply("mul", np.ones(2), np.ones(2) * 1j)
    with opreg.no_grad():
        np.testing.assert_array_equal((t * 1j).data, [1j, 4j])
    np.testing.assert_array_equal(onp.multiply(np.ones(2), 1j), [1j, 1j])


def test_a_tensor_given_as_a_sequence_of_arrays_is_its_rows():
    """``np.vstack(x)`` with an array x joins x's rows, as NumPy iterates it; on a Tensor it was an error."""
    x = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    for function in (np.vstack, np.hstack, np.column_stack, np.dstack, np.stack, np.concatenate):
        np.testing.assert_array_equal(function(x).data, function(x.data), strict=True)
    np.vstack(x).sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones((2, 3)))


# --- ndarray's methods, NumPy's spellings -----------------------------------------------------------------------------


def test_methods_run_the_ops_numpy_would():
    """t.sum(axis=...), t.mean(keepdims=...), t.squeeze(), t.T of a matrix, len, iteration, item, tolist."""
    x = Tensor(np.arange(6.0).reshape(2, 3, 1), requires_grad=True)
    total = x.sum(axis=0, keepdims=True) + x.mean(axis=(0, 1))
    assert total.shape == (1, 3, 1)
    np.testing.assert_allclose(x.squeeze().data, np.arange(6.0).reshape(2, 3))
    np.testing.assert_allclose(x.squeeze(axis=-1).T.data, np.arange(6.0).reshape(2, 3).T)
    assert len(x) == 2 and [row.shape for row in x] == [(3, 1), (3, 1)]
    sum(row.sum() for row in x).backward()
    np.testing.assert_array_equal(x.grad, np.ones((2, 3, 1)))
    assert x.sum().item() == 15.0 and x[0, 1, 0].item() == 1.0
    assert x.tolist() == np.arange(6.0).reshape(2, 3, 1).tolist()
    assert x.size == 6 and x.ndim == 3 and x.dtype == np.float64
    with pytest.raises(TypeError, match="0-d"):
        iter(x.sum())
    assert 4.0 in x and 7.0 not in x


def test_T_reverses_every_axis_as_numpys():
    """``t.T`` is ``np.transpose(t)``: every axis reversed (it swapped the last two before); ``t.mT`` swaps the
    last two. Beyond 2-D T needs the op implementing numpy.transpose, and says so where none is registered."""
    data = np.arange(24.0).reshape(2, 3, 4)
    x = Tensor(data, requires_grad=True)
    np.testing.assert_array_equal(x.mT.data, np.swapaxes(data, -1, -2))
    if numpy_op("transpose") is None:
        with pytest.raises(OpUsageError, match="numpy.transpose"):
            _ = x.T
        return
    assert x.T.shape == (4, 3, 2)
    np.testing.assert_array_equal(x.T.data, data.T)
    (x.T * Tensor(data.T)).sum().backward()
    np.testing.assert_array_equal(x.grad, data)


@pytest.mark.parametrize(
    ("use", "message"),
    [
        (lambda t: t.sum(dim=0), "axis= rather than PyTorch's dim="),
        (lambda t: t.mean(keepdim=True), "keepdims= rather than PyTorch's keepdim="),
        (lambda t: t.view(3, 2), r"instead of t.view, use t.reshape"),
        (lambda t: t.permute(1, 0), r"instead of t.permute, use t.transpose"),
        (lambda t: t.unsqueeze(0), r"instead of t.unsqueeze, use onp.expand_dims"),
        (lambda t: t.dim(), r"instead of t.dim, use t.ndim"),
        (lambda t: t.size(), r"t.size is the number of elements.*t.shape"),
        (lambda t: t.clone(), r"instead of t.clone, use t.copy\(\)"),
    ],
)
def test_pytorch_spellings_raise_naming_numpys(use, message):
    t = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises((OpUsageError, AttributeError), match=message):
        use(t)


def test_copy_and_astype():
    x = Tensor(np.array([-0.0, 1.5, np.inf]), requires_grad=True)
    y = x.copy()
    assert y.requires_grad and y.data is not x.data and np.signbit(y.data[0])
    (y * 2).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 2.0, 2.0])
    index = Tensor(np.array([2.7, 0.2])).astype(np.int64)
    assert index.dtype == np.int64 and not index.requires_grad
    assert x[1:2].astype(np.int32).dtype == np.int32  # an integer result is a constant, as torch's .long()


def test_abs_and_mod_call_the_ops_numpy_would():
    """``abs(t)`` and ``t % m`` are np.absolute and np.remainder on the tensor: their ops where registered, else
    an error naming the NumPy function."""
    t = Tensor(np.array([-1.5, 2.0]), requires_grad=True)
    for use, name in ((abs, "absolute"), (lambda t: t % 1.0, "remainder")):
        if numpy_op(name) is None:
            with pytest.raises(OpUsageError, match=f"numpy.{name} was called on a Tensor"):
                use(t)
        else:
            np.testing.assert_allclose(use(t).data, use(t.data))


# --- in place -----------------------------------------------------------------------------------------------------


def test_in_place_on_a_tensor_in_the_graph_records():
    """``h *= x`` on an op's result: h takes the product's graph; y, recorded before from the old h, keeps
    reading the old value and sends its gradient to the old graph. d/dx of sum(3 * 2x) + sum(2x * x) = 6 + 4x."""
    x = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    h = x * 2
    y = h * 3
    h *= x
    np.testing.assert_array_equal(h.data, [2.0, 8.0])
    (y.sum() + h.sum()).backward()
    np.testing.assert_allclose(x.grad, 6 + 4 * x.data)


def test_in_place_through_an_index_on_a_tensor_in_the_graph():
    """``h[0] += x`` reads h[0] (recorded before h changes), adds, and writes back: each step recorded."""
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    h = x * x
    h[0] += x[1]
    h[1] = h[0] * 10
    np.testing.assert_array_equal(h.data, [3.0, 30.0])
    h.sum().backward()  # sum = 11 * (x0^2 + x1)
    np.testing.assert_allclose(x.grad, [22.0, 11.0])


@needs_torch
def test_in_place_chains_match_torch():
    """A chain of in-place changes on results, t += t included, equal torch's values and gradients."""
    data = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])

    def run(lib_tensor, grad_of):
        x = lib_tensor(data)
        h = x * 1.5
        first = h.sum()
        h += h
        h[0] = h[1] + x[0]  # torch refuses a product here: it saved h[1], a view h's later changes overwrite
        h[:, 1:] *= 3.0
        h -= 1
        h /= 2
        loss = (h * h).sum() + first
        return loss, grad_of(loss, x)

    mine, mine_grad = run(lambda d: Tensor(d.copy(), requires_grad=True), lambda loss, x: opreg.grad(loss, [x])[0].data)
    theirs, theirs_grad = run(
        lambda d: torch.tensor(d.copy(), requires_grad=True),
        lambda loss, x: torch.autograd.grad(loss, [x])[0].numpy(),
    )
    np.testing.assert_allclose(mine.data, theirs.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(mine_grad, theirs_grad, rtol=1e-12)


def test_in_place_to_second_order():
    """The graph an in-place change records is differentiated again like any other."""
    x = Tensor(np.array([0.5, -1.5]), requires_grad=True)
    h = x * x
    h *= x  # x^3
    (g,) = opreg.grad(h.sum(), [x], create_graph=True)
    (gg,) = opreg.grad(g.sum(), [x])
    np.testing.assert_allclose(g.data, 3 * x.data**2)
    np.testing.assert_allclose(gg.data, 6 * x.data)


def test_stepping_a_parameter_under_no_grad_before_backward_raises_naming_the_op():
    w = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    loss = (w * w).sum()
    with opreg.no_grad():
        w -= 0.1
    with pytest.raises(ModifiedInPlaceError, match=r"op 'mul'.*modified in place"):
        loss.backward()


def test_in_place_on_a_plain_tensor_writes_its_array_as_numpy_does():
    """Nothing to record: the array itself changes, and views of it (an index's result) see it, as in NumPy."""
    base = np.zeros((2, 3))
    t = Tensor(base)
    t += 1
    t[0, 1:] = np.array([5.0, 6.0])
    row = t[1]
    row *= 3  # a view of t's array, as NumPy's basic indexing gives
    np.testing.assert_array_equal(base, [[1.0, 5.0, 6.0], [3.0, 3.0, 3.0]])
    counts = Tensor(np.zeros(3, dtype=np.int64))
    counts += 2
    with pytest.raises(TypeError):  # NumPy's casting rule: an int array cannot take floats in place
        counts += 0.5


def test_in_place_keeps_the_shape_and_the_dtype():
    x = Tensor(np.ones(3), requires_grad=True)
    h = x * 2
    with pytest.raises(OpUsageError, match=r"keeps the tensor's shape \(3,\)"):
        h += np.ones((2, 3))
    with pytest.raises(OpUsageError, match="float32 tensor gives float64"):
        h32 = Tensor(np.ones(3, np.float32), requires_grad=True) * 2
        h32 += Tensor(np.ones(3), requires_grad=True)


def test_a_constant_that_takes_a_value_requiring_gradients_joins_the_graph():
    w = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    total = Tensor(np.zeros(2))
    before = total * 5  # recorded as a constant 0: stays 0
    total += w * w
    assert total.requires_grad and not total.is_leaf
    (total.sum() + before.sum()).backward()
    np.testing.assert_array_equal(w.grad, [2.0, 4.0])


def test_requires_grad_retain_grad_and_detach_in_place():
    x = Tensor(np.array([1.0, 2.0])).requires_grad_()
    assert x.requires_grad
    h = x * 3
    h.retain_grad()
    y = h * h
    y.sum().backward()
    np.testing.assert_array_equal(h.grad, 2 * h.data)
    np.testing.assert_array_equal(x.grad, 18 * x.data)
    x.grad = None
    h = x * 3
    z = h * 2  # recorded before detach_: still reaches x
    h.detach_()
    assert h.is_leaf and not h.requires_grad
    (z.sum() + (h * x).sum()).backward()
    np.testing.assert_array_equal(x.grad, 6 + h.data)


# --- indexing ------------------------------------------------------------------------------------------------------


def test_an_element_read_twice_gets_both_gradients():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    x[[0, 0, 2]].sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 0.0, 1.0])


def test_indices_may_be_tensors():
    x = Tensor(np.arange(5.0), requires_grad=True)
    where = Tensor(np.array([4, 4, 1]))
    x[where].sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 1.0, 0.0, 0.0, 2.0])


def test_repeated_writes_keep_the_last_and_only_it_gets_the_gradient():
    """``x[[1, 1, 3]] = v``: NumPy leaves v[1] at position 1; v[0] is overwritten and gets no gradient."""
    x = Tensor(np.arange(4.0), requires_grad=True)
    v = Tensor(np.array([10.0, 20.0, 30.0]), requires_grad=True)
    y = ops.setitem(x, v, index=[1, 1, 3])
    expected = np.arange(4.0)
    expected[[1, 1, 3]] = [10.0, 20.0, 30.0]
    np.testing.assert_array_equal(y.data, expected)
    y.backward(np.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_array_equal(x.grad, [1.0, 0.0, 3.0, 0.0])
    np.testing.assert_array_equal(v.grad, [0.0, 2.0, 4.0])
    assert opreg.gradcheck(lambda x, v: ops.setitem(x * x, v * v, index=[1, 1, 3]), x, v)


def _as_add_at_index(index):
    """``index`` as np.add.at takes it: a list as an array (an empty one of integers, as indexing reads ``[]``)."""
    if not isinstance(index, list):
        return index
    array = np.asarray(index)
    return (array.astype(np.intp) if array.dtype.kind == "f" else array,)


SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)


@settings(max_examples=examples(60), deadline=None)
@given(data=st.data(), shape=SHAPES)
def test_getitem_gradient_is_numpys_add_at(data, shape):
    """For any index (negative steps, None, Ellipsis, integer lists with repeats, masks), the gradient of
    x[index] is np.add.at of g into zeros at the same index: NumPy's own accumulation, an independent reference;
    and the second derivative (g -> scatter -> read back) is g read at the index."""
    index = data.draw(index_for(shape), label="index")
    x = Tensor(np.random.default_rng(0).standard_normal(shape), requires_grad=True)
    out = x[index]
    np.testing.assert_array_equal(out.data, x.data[index])
    g = Tensor(np.random.default_rng(1).standard_normal(out.shape), requires_grad=True)
    (grad,) = opreg.grad(out, [x], g, create_graph=True)
    expected = np.zeros(shape)
    np.add.at(expected, _as_add_at_index(index), g.data)
    np.testing.assert_allclose(grad.data, expected, rtol=1e-12, atol=0)
    direction = np.random.default_rng(2).standard_normal(shape)
    (second,) = opreg.grad(onp.sum(grad * direction), [g])
    np.testing.assert_allclose(second.data, direction[index], rtol=1e-12, atol=0)


@settings(max_examples=examples(40), deadline=None)
@given(data=st.data(), shape=SHAPES)
def test_setitem_matches_numpy_and_finite_differences(data, shape):
    """x with x[index] = v, repeats included: values as NumPy's assignment, derivatives of both inputs by
    opreg.gradcheck."""
    index = data.draw(index_for(shape), label="index")
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape)
    target = x[index].shape
    v = rng.standard_normal(target[data.draw(st.integers(0, len(target)), label="dropped") :])
    expected = x.copy()
    expected[index] = v
    tx, tv = Tensor(x, requires_grad=True), Tensor(v, requires_grad=True)
    np.testing.assert_array_equal(ops.setitem(tx, tv, index=index).data, expected)
    assert opreg.gradcheck(lambda a, b: ops.setitem(a * a, b * b, index=index), tx, tv)


def test_take_and_take_along_axis_accumulate_repeats():
    """np.take and np.take_along_axis on Tensors run their ops; an element taken twice gets both gradients, and
    the modes of np.take (wrap, clip) pick the elements NumPy picks."""
    x = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    taken = np.take(x, [0, -1, 0], axis=1)
    np.testing.assert_array_equal(taken.data, np.take(x.data, [0, -1, 0], axis=1))
    wrapped = onp.take(x, [7, -8], mode="wrap")
    np.testing.assert_array_equal(wrapped.data, np.take(x.data, [7, -8], mode="wrap"))
    order = np.argsort(-x, axis=1)  # argsort on a Tensor: a plain array of positions
    ranked = np.take_along_axis(x, order[:, :2], axis=1)
    np.testing.assert_array_equal(ranked.data, [[2.0, 1.0], [5.0, 4.0]])
    (taken.sum() + wrapped.sum() + ranked.sum()).backward()
    # column 0 taken twice per row; flat 1 and 4 wrapped; columns 2 and 1 ranked first in each row
    np.testing.assert_array_equal(x.grad, [[2.0, 1.0 + 1.0, 1.0 + 1.0], [2.0, 1.0 + 1.0, 1.0 + 1.0]])
