"""The hooks an opreg plugin can implement.

Built-in ops and third-party op packages implement exactly these hooks; nothing else reaches the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import pluggy

from opreg.opdef import Domain, Reference, SampleInputs

PROJECT_NAME = "opreg"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class Register(Protocol):
    """The ``register`` callable handed to :func:`opreg_register_ops`: one call declares one op.

    Typed, so that mypy and an editor check a plugin's declarations; at load time an unknown keyword is an error
    naming the op and the keyword meant.
    """

    def __call__(
        self,
        *,
        name: str,
        inputs: tuple[str, ...] | list[str],
        forward: Callable[..., Any],
        backward: Callable[..., Any],
        differentiable: tuple[str, ...] | list[str] | None = None,
        sample_inputs: SampleInputs | None = None,
        doc: str | None = None,
        numpy: str | tuple[str, ...] | None = None,
        numpy_call: Callable[..., Any] | None = None,
        reference: Reference | None = None,
        domain: Domain | None = None,
        tolerances: dict[str, float] | None = None,
        overrides: bool = False,
        outputs: tuple[str, ...] | list[str] | None = None,
        differentiable_outputs: tuple[str, ...] | list[str] | None = None,
        jvp: Callable[..., Any] | None = None,
        batch: str | Callable[..., Any] | None = None,
        forward_out: Callable[..., Any] | None = None,
        backward_out: Callable[..., Any] | None = None,
        draws: bool = False,
    ) -> None:
        """Declare op ``name``.

        - ``inputs``: the input names, in the order forward takes them. The last may be starred,
          ``("*arrays",)`` or ``("condlist", "*choices")``: it takes any number of arrays, passed to forward
          positionally (``def forward(*arrays, axis=0)``), and backward returns one gradient per array given.
        - ``forward(*inputs, *, attribute=default, ...)``: the output array. Its keyword-only parameters with
          defaults are the op's attributes (``axis=None``), set by users as ``apply("sum", x, axis=1)``.
        - ``backward(grad_output, *inputs, *, ...)``: one gradient per input (``None`` for none), in the broadcast
          or the input's shape. It names as keyword-only parameters what it needs besides: ``output``, ``saved``
          (forward then returns ``(output, saved)``), ``needs_grad`` (one bool per input), any attribute.
          Written with ``opreg.numpy`` and operators, it can be differentiated again, to any order.
        - ``jvp(tangents, *inputs, *, ...)``: forward mode, optional. ``tangents`` holds one entry per input: an
          array of the input's shape (zeros where the input carries no tangent), ``None`` for an input the op
          declares not differentiable. It returns the output's tangent (a tuple, one per output, for several
          outputs; ``None`` for one that takes no gradient), and may name ``output`` and attributes as
          keyword-only parameters. Without it, forward mode is derived from backward (a VJP of the VJP), which
          costs a small backward pass per op. Written with ``opreg.numpy``, it composes (``jacfwd(jacrev(f))``).
        - ``differentiable``: the inputs that get gradients (default: all; a loss's labels do not).
        - ``sample_inputs(rng)``: valid inputs for gradient checks, or a list of :class:`opreg.plugin.Sample`.
        - ``doc``: one line for listings (default: forward's docstring).
        - ``numpy``: the NumPy function(s) this op implements, for ``opreg.numpy`` and ``np.f(tensor)``.
        - ``numpy_call(call, *args, **kwargs)``: the NumPy function ``numpy`` names, where one of its calls is
          not one call of this op: given NumPy's arguments as the caller wrote them, it returns NumPy's result,
          calling ``call`` (this op, its arguments in NumPy's spelling) once or more (einsum's interleaved form,
          gradient over several axes). Default: every call of the NumPy function is one call of the op.
        - ``reference``: the PyTorch function the tests compare with (``"torch.add"``), resolved only in tests.
        - ``domain``: ``(low, high)`` the inputs' values lie in (or per input name), for property tests.
        - ``tolerances``: ``eps``, ``atol``, ``rtol`` for the gradient check where the defaults cannot hold.
        - ``overrides``: replace, on purpose, the op of this name an earlier plugin registered.
        - ``outputs``: the names of several outputs (``("sign", "logabsdet")``); forward then returns a tuple of
          that many arrays, backward's ``g`` is a tuple with one gradient per output (zeros for one no gradient
          reached) and ``output`` is the tuple. Default: one output.
        - ``differentiable_outputs``: the outputs that take gradients (default: all); the others (``sign``) get
          ``None`` in ``g`` and never require gradients.
        - ``batch``: how ``opreg.func.vmap`` batches the op. ``"elementwise"`` for an op that broadcasts its
          inputs as NumPy's ufuncs do (no axis attributes): vmap aligns the batched inputs and calls it once. Or a
          rule ``rule(call, batched, *inputs, **attributes)``: ``call`` runs this op, ``batched`` holds one bool
          per input, a batched input has the batch on its axis 0, and the rule returns the output (a tuple for
          several) with the batch on axis 0, calling ops (``call``, ``opreg.numpy``) so that it composes with
          ``grad`` and nested ``vmap``; :mod:`opreg.batch_rules` has the common ones. Default: a loop over the
          batch, one call per example (correct, and slow).
        - ``forward_out(out, *inputs, **attributes)``: optional, for an op with one output and no ``saved``; writes
          what forward returns into ``out`` (an array of the output's shape and dtype, aliasing no input) and
          returns None. A captured step's replay runs it into buffers it reuses every step.
        - ``backward_out(outs, g, *inputs, **keywords)``: optional, for an op with one output; ``outs`` has one
          entry per input, an array of the input's shape and gradient dtype or ``None`` where that gradient is not
          wanted (aliasing no input, ``g`` nor ``output``), and each array gets backward's gradient fitted to the
          input (``opreg.plugin.fit_into``), zeros where backward returns ``None``. It is given the keywords
          backward asks for, except ``saved``; plain NumPy will do, it is never differentiated.
          Both must give forward's and backward's values bit for bit (the same NumPy calls in the same order, with
          ``out=``): ``opreg check`` compares them exactly (:mod:`opreg.outforms`).
        - ``draws``: True for an op whose forward draws random numbers (``dropout_mask``), so that each call gives
          new values: a compiled step's replay calls it exactly as often as the eager step did, never tracing it
          (a trace runs forward again), leaving a call out or reusing one call's result for another.
        """


@hookspec
def opreg_register_ops(register: Register) -> None:
    """Register this plugin's ops by calling ``register(name=..., inputs=..., forward=..., backward=...)``.

    Call ``register`` once per op. The keywords are those of :func:`opreg.registry.define_op`. The hook runs once,
    when the registry is first used, never per recorded operation.
    """
