"""The hand-written mutants that ``tools/mutation.py`` runs: one plausible bug each, in the core and the built-ins.

``before`` must occur exactly once in ``path``; ``tests`` are run first (the ones most likely to fail), then the
whole suite. ``equivalent`` says why a mutant cannot change any result, for the few that cannot.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    before: str
    after: str
    why: str  # the bug it stands for
    tests: tuple[str, ...] = ()
    equivalent: str = ""


MUTANTS = [
    # The backward pass
    Mutant(
        "accumulate-overwrites",
        "opreg/backprop.py",
        "grads[id(source)] = grad if current is None else total(current, grad)",
        "grads[id(source)] = grad",
        "a second gradient reaching one value replaces the first instead of adding to it",
        ("tests/test_engine.py", "tests/test_tensor.py"),
    ),
    Mutant(
        "target-overwrites",
        "opreg/backprop.py",
        "            target += grad\n",
        "            target[...] = grad\n",
        "a gradient landing in the caller's dW replaces what was there",
        ("tests/test_engine.py",),
    ),
    Mutant(
        "keep-nothing",
        "opreg/backprop.py",
        "grad_output = grads.get(key) if keep_all or key in kept else grads.pop(key, None)",
        "grad_output = grads.pop(key, None)",
        "kept gradients (GradientBuffer, opreg.grad's inputs) dropped after use",
        ("tests/test_engine.py", "tests/test_tensor.py"),
    ),
    Mutant(
        "seed-ignores-scalar",
        "opreg/backprop.py",
        "        return np.full(output.shape, value, dtype=dtype)",
        "        return np.ones(output.shape, dtype=dtype)",
        "backward(2.0) treated as backward(1.0)",
        ("tests/test_engine.py",),
    ),
    Mutant(
        "seed-no-copy",
        "opreg/backprop.py",
        "    value = np.array(gradient, dtype=dtype)",
        "    value = np.asarray(gradient, dtype=dtype)",
        "the caller's seed array becomes a leaf's .grad, shared with the caller",
        ("tests/test_tensor.py",),
    ),
    Mutant(
        "total-in-place",
        "opreg/backprop.py",
        "    result = current + grad\n",
        "    current += grad\n    result = current\n",
        "accumulation in place, into an array another value's gradient may share",
        ("tests/test_tensor.py", "tests/test_engine.py"),
    ),
    # Fitting a gradient to its input
    Mutant(
        "fit-no-broadcast-sum",
        "opreg/fit.py",
        "        grad = grad.sum(axis=stretched, keepdims=True)",
        "        grad = grad[tuple(slice(0, 1) if a in stretched else slice(None) for a in range(grad.ndim))]",
        "a broadcast input's gradient takes one slice instead of the sum",
        ("tests/test_engine.py", "tests/test_tensor.py"),
    ),
    Mutant(
        "fit-no-cast",
        "opreg/fit.py",
        "    return fitted if fitted.dtype == dtype else fitted.astype(dtype)",
        "    return fitted",
        "a float32 input's gradient left in float64",
        ("tests/test_engine.py", "tests/test_tensor.py"),
    ),
    Mutant(
        "gradient-dtype-int",
        "opreg/fit.py",
        'return x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)',
        "return x.dtype",
        "an integer input's gradient truncated to integers",
        ("tests/test_engine.py", "tests/test_tensor.py"),
    ),
    # Calling backward
    Mutant(
        "nondifferentiable-kept",
        "opreg/calls.py",
        "        if not differentiable[position] or (needed is not None and needed[position] is None):",
        "        if needed is not None and needed[position] is None:",
        "a gradient a backward returns for an input declared non-differentiable is used",
        ("tests/test_engine.py", "tests/test_tensor.py", "tests/test_checkmode.py"),
    ),
    # Leaves and the tape
    Mutant(
        "leaf-never-copies",
        "opreg/tensor.py",
        "    if isinstance(arrived, np.ndarray) and arrived.base is None and sys.getrefcount(arrived) <= 3:",
        "    if isinstance(arrived, np.ndarray):",
        "two leaves' .grad share one array when one gradient reaches both",
        ("tests/test_tensor.py",),
    ),
    Mutant(
        "zero-grad-keeps-tape",
        "opreg/engine.py",
        "        self.operation_list = []\n",
        "",
        "zero_grad forgets the gradients but keeps the last step's tape",
        ("tests/test_engine.py",),
    ),
    # The built-ins' derivatives
    Mutant(
        "mean-no-scale",
        "plugins/reductions.py",
        "(divide_by_count(_spread(g, x, axis, keepdims), _count(x, axis)),)",
        "(_spread(g, x, axis, keepdims),)",
        "mean's gradient not divided by the count",
        ("tests/test_ops_reference.py",),
    ),
    Mutant(
        "prod-divides-by-x",
        "plugins/reductions.py",
        "    if not divides_exactly(constant(output)):\n",
        "    if False:\n",
        "prod's gradient always output / x: nan or 0 where x has zeros",
        ("tests/test_reductions.py",),
    ),
    Mutant(
        "max-ties-all-get-g",
        "plugins/reductions.py",
        "divide_by_count(restore_axes(g, x, axis, keepdims), count)",
        "restore_axes(g, x, axis, keepdims)",
        "tied maxima each get the whole gradient instead of an even share",
        ("tests/test_reductions.py",),
    ),
    Mutant(
        "mse-no-two",
        "plugins/losses.py",
        "    grad = divide_by_count(g * 2 * (prediction - target), prediction.size)",
        "    grad = divide_by_count(g * (prediction - target), prediction.size)",
        "mse's gradient missing the factor 2",
        ("tests/test_ops_reference.py",),
    ),
    Mutant(
        "sce-ignores-g",
        "plugins/losses.py",
        "    grad *= divide_by_count(g, batch)",
        "    grad = divide_by_count(grad, batch)",
        "softmax cross-entropy's gradient ignores the incoming gradient",
        ("tests/test_ops_reference.py", "tests/test_engine.py"),
    ),
    Mutant(
        "relu-at-zero",
        "plugins/elementwise.py",
        "backward=lambda g, x: (g * (x > 0),),",
        "backward=lambda g, x: (g * (x >= 0),),",
        "relu's gradient at exactly 0 is 1, where PyTorch's is 0",
        ("tests/test_ops_reference.py", "tests/test_properties.py"),
    ),
    Mutant(
        "abs-at-zero",
        "plugins/piecewise.py",
        "return (g * (x > 0) - g * (x < 0),)",
        "return (g * (x >= 0) - g * (x < 0),)",
        "abs's gradient at exactly 0 is 1, where PyTorch's is 0",
        ("tests/test_elementwise_edges.py",),
    ),
    Mutant(
        "maximum-tie-whole",
        "plugins/piecewise.py",
        "    half = g * 0.5\n    return onp.where(a < b,",
        "    half = g\n    return onp.where(a < b,",
        "a tie in maximum gives each input all of g, where PyTorch splits it in half",
        ("tests/test_elementwise_edges.py", "tests/test_properties.py"),
    ),
    Mutant(
        "fmax-nan-chosen",
        "plugins/piecewise.py",
        "first = (a >= b) | np.isnan(b)",
        "first = a >= b",
        "fmax sends the gradient to the NaN it did not choose",
        ("tests/test_elementwise_edges.py",),
    ),
    Mutant(
        "clip-bounds-exclusive",
        "plugins/piecewise.py",
        "grad_x = onp.where((values >= low) & (values <= high), g, 0.0)",
        "grad_x = onp.where((values > low) & (values < high), g, 0.0)",
        "x at a bound of clip gets no gradient, where PyTorch's clamp passes it",
        ("tests/test_elementwise_edges.py", "tests/test_properties.py"),
    ),
    Mutant(
        "mod-truncates",
        "plugins/rounding.py",
        "quotient = np.floor_divide(constant(a), constant(b))",
        "quotient = np.trunc(constant(a) / constant(b))",
        "mod's divisor gradient with fmod's quotient (wrong where a / b is negative)",
        ("tests/test_elementwise_edges.py", "tests/test_ops_reference.py"),
    ),
    Mutant(
        "step-gradient-times-zero",
        "plugins/rounding.py",
        "return (onp.where(np.zeros(x.shape, dtype=bool), g, 0.0),)",
        "return (g * 0.0,)",
        "a step function's zero gradient as g * 0: NaN where g is infinite, where PyTorch's is 0",
        ("tests/test_elementwise_edges.py",),
    ),
    Mutant(
        "sigmoid-derivative",
        "plugins/elementwise.py",
        "(g * output * (1 - output),)",
        "(g * output,)",
        "sigmoid's derivative taken as exp's",
        ("tests/test_ops_reference.py",),
    ),
    Mutant(
        "matmul-swapped",
        "plugins/linalg.py",
        "        grad_b = onp.matrix_transpose(a2) @ g2",
        "        grad_b = onp.matrix_transpose(g2 @ onp.matrix_transpose(a2))[..., : b2.shape[-2], :]",
        "matmul's second gradient from the wrong product",
        ("tests/test_ops_reference.py",),
    ),
    Mutant(
        "linear-bias-mean",
        "plugins/linalg.py",
        "    grad_bias = g.sum(axis=batch_axes) if bias.ndim == 1 else g",
        "    grad_bias = g.mean(axis=batch_axes) if bias.ndim == 1 else g",
        "linear's bias gradient averaged over the batch instead of summed",
        ("tests/test_ops_reference.py", "tests/test_modules_reference.py"),
    ),
    # Optimizers
    Mutant(
        "sgd-ascends",
        "opreg/optim.py",
        "            data -= self.lr * grad",
        "            data += self.lr * grad",
        "SGD steps uphill",
        ("tests/test_optim.py",),
    ),
    Mutant(
        "sgd-dampening-ignored",
        "opreg/optim.py",
        "                    buffer += (1 - self.dampening) * grad",
        "                    buffer += grad",
        "SGD's momentum ignores dampening",
        ("tests/test_optim.py",),
    ),
    Mutant(
        "adam-no-bias-correction",
        "opreg/optim.py",
        "            denominator = np.sqrt(exp_avg_sq) / math.sqrt(bias_correction2) + self.eps",
        "            denominator = np.sqrt(exp_avg_sq) + self.eps",
        "Adam without the second moment's bias correction",
        ("tests/test_optim.py",),
    ),
    # Reliability (issue #11): in-place edits, shared gradients, registration, float16
    Mutant(
        "version-check-skipped",
        "opreg/versions.py",
        "        edited_since = last_edit > record.number",
        "        edited_since = False",
        "an array edited through opreg after it was recorded goes unnoticed: a silent wrong gradient",
        ("tests/test_inplace.py",),
    ),
    Mutant(
        "checksum-ignored",
        "opreg/versions.py",
        "                if _checksum(x) != recorded:",
        "                if False:",
        "checking mode no longer compares what backward reads with what was recorded",
        ("tests/test_inplace.py",),
    ),
    Mutant(
        "landing-unlocked",
        "opreg/backprop.py",
        "        with array_lock(target):  # another thread's backward may land in the same dW\n"
        "            target += grad",
        "        target += grad",
        "two threads adding into one dW lose updates",
        ("tests/test_threads.py",),
    ),
    Mutant(
        "view-locked-apart",
        "opreg/landing.py",
        "    return _LOCKS[id(array if array.base is None else owner(array)) % 251]",
        "    return _LOCKS[id(array) % 251]",
        "a view of dW gets a lock of its own: two threads landing in dW and dW[::-1] lose updates",
        ("tests/test_threads.py",),
    ),
    Mutant(
        "landing-before-success",
        "opreg/backprop.py",
        "                landings.append((target, grad))\n                continue",
        "                target += grad\n                continue",
        "a backward that raises midway leaves the step half applied",
        ("tests/test_threads.py", "tests/test_engine.py"),
    ),
    Mutant(
        "registered-twice-allowed",
        "opreg/registry.py",
        "        if op.name in ops:  # checked first",
        "        if False:  # checked first",
        "one plugin registering a name twice: the later silently wins",
        ("tests/test_registry.py",),
    ),
    Mutant(
        "float16-count-in-float16",
        "opreg/axes.py",
        "    quotient = values / np.asarray(count, dtype=np.promote_types(dtype, np.float32))",
        "    quotient = values / np.asarray(count, dtype=dtype)",
        "a float16 mean over more than 65,504 elements gets all-zero gradients",
        ("tests/test_properties.py", "tests/test_ops_reference.py"),
    ),
    Mutant(
        "plugin-exit-propagates",
        "opreg/plugin_manager.py",
        "    if isinstance(value, Exception):\n        raise value",
        "    if isinstance(value, BaseException):\n        raise value",
        "a plugin calling sys.exit() ends every opreg command",
        ("tests/test_entry_points.py",),
    ),
    # The shape, rearrangement and selection ops (issue #12)
    Mutant(
        "scatter-assigns",
        "plugins/selection.py",
        "    np.add.at(out, tuple(grid), src)",
        "    out[tuple(grid)] = src",
        "an element taken twice (take(x, [0, 0]), repeat, tile, pad's edge) gets one copy's gradient, not both",
        ("tests/test_shape_ops.py", "tests/test_ops_reference.py"),
    ),
    Mutant(
        "sort-unstable",
        "plugins/selection.py",
        'axis=-1 if axis is None else axis, kind="stable")',
        "axis=-1 if axis is None else axis)",
        "tied values get their gradients in whatever order an unstable sort leaves them, not torch's stable order",
        ("tests/test_shape_ops.py",),
    ),
    Mutant(
        "diff-backward-sign",
        "plugins/differences.py",
        "        g = -onp.diff(onp.pad(g, widths), 1, axis)",
        "        g = onp.diff(onp.pad(g, widths), 1, axis)",
        "diff's transpose without its minus sign: every gradient negated (right for even n only)",
        ("tests/test_ops_reference.py",),
    ),
    Mutant(
        "pad-crop-offset",
        "plugins/rearrange.py",
        'g = op("take")(g, indices=np.arange(before, before + length), axis=axis)',
        'g = op("take")(g, indices=np.arange(length), axis=axis)',
        "pad's gradient cut from the padded gradient's start instead of where x lies in it",
        ("tests/test_ops_reference.py",),
    ),
    # The gradient checker
    Mutant(
        "numeric-one-sided",
        "opreg/opcheck.py",
        "        gradient[index] = (plus - minus) / (2 * eps)",
        "        gradient[index] = (plus - minus) / eps",
        "finite differences off by a factor 2: the checker would accept wrong gradients and refuse right ones",
        ("tests/test_opcheck.py",),
    ),
    Mutant(
        "compare-never-fails",
        "opreg/opcheck.py",
        "    if not excess.size or excess.max() <= 0:\n        return",
        "    if True:\n        return",
        "the checker compares nothing",
        ("tests/test_opcheck.py",),
    ),
    # Indexing and in place (issue #12)
    Mutant(
        "scatter-assigns",
        "plugins/indexing.py",
        "    np.add.at(out.reshape(-1), positions.reshape(-1), np.broadcast_to(g, positions.shape).reshape(-1))",
        "    out.reshape(-1)[positions.reshape(-1)] = np.broadcast_to(g, positions.shape).reshape(-1)",
        "an element read twice (x[[0, 0]]) gets one gradient instead of both",
        ("tests/test_protocols.py",),
    ),
    Mutant(
        "setitem-first-write",
        "plugins/indexing.py",
        "    return np.asarray(flat.size - 1 - first_of_reversed, dtype=np.intp)",
        "    return np.asarray(np.unique(flat, return_index=True)[1], dtype=np.intp)",
        "x[[1, 1]] = v keeps the first write's gradient while NumPy keeps the last write's value",
        ("tests/test_protocols.py",),
    ),
    Mutant(
        "in-place-no-reroute",
        "opreg/tensor.py",
        "        if _rebound:\n            _recorded_inputs(node)\n",
        "",
        "ops recorded before an in-place change send their gradients through the new graph",
        ("tests/test_protocols.py",),
    ),
    # svd, qr and the matrix norms of singular values (issue #12)
    Mutant(
        "svd-coinciding-by-value",
        "plugins/decompositions.py",
        "    if np.any(coincide & (reached[..., :, None] | reached[..., None, :])):\n",
        "    if np.any(coincide & (constant(numerator) != 0)):\n",
        "coinciding singular values are let through where their term happens to be 0 at this matrix, whose limit "
        "is not 0: a wrong second derivative with no error",
        ("tests/test_linalg_decompositions.py",),
    ),
    Mutant(
        "spectral-norm-tie-unshared",
        "plugins/numpy_linalg.py",
        "    chosen = (np.abs(values - extreme) <= tolerance) & nonzero",
        "    chosen = (values == extreme) & nonzero",
        "a tie of the largest singular value, not exact in floating point, gives LAPACK's u_1 v_1^T",
        ("tests/test_linalg_decompositions.py",),
    ),
    Mutant(
        "qr-complete-completion-ignored",
        "plugins/decompositions.py",
        "        if np.any(constant(gq)[..., :, n:] != 0):",
        "        if False:",
        "a gradient on the arbitrary columns of a complete Q is dropped instead of refused",
        ("tests/test_linalg_decompositions.py",),
    ),
]
