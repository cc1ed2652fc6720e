"""Recording a training step as straight-line Python, for :func:`opreg.compile` to replay.

While a step runs under a :class:`Recorder`, the engine reports what it does, at the places where it does it:
each op's forward (:func:`forward`, from both front ends), the backward pass (:func:`seed`, :func:`seeded`,
:func:`backward`, :func:`total`, :func:`landings`, :func:`landed`, :func:`leaf`, from :mod:`opreg.backprop` and the
Tensor front end), Tensors the step makes or reads (:func:`made`, :func:`read`), and the library calls that change
state outside ops, such as an optimizer's step or gradient clipping (decorated :func:`replayed`). Every
array is named by identity as it appears: an argument of the step (``a0``), a value the step computed (``v3``), or
something that was there before it (``k2``: a parameter Tensor, a tape's ``dW``, an op, a constant). The result
is the source of a function that makes the same calls in the same order, on the same kinds of values, with none of
the per-op bookkeeping: no Tensors, no graph, no topological sort, no checks that the shapes already passed.

An op's forward and its out forms are written down as the NumPy calls they make (:mod:`opreg.tracing`), each
checked against the eager step's values. Then the program is tidied as a compiler would, on what is known of each
line's effects: a computation whose result nothing reads is left out (the loss of a step that returns none), and
one made twice from values nothing changed in between is made once (a loss's softmax, in its forward and backward),
and one made from Python numbers alone is made at recording, a read-only constant (a mean's seed divided by n).
A seed made from the caller's array (``backward(g)``) is made from it again in every replay (:func:`seeded`).

Whatever the engine cannot see, it cannot replay, so the recorder notes what would make a replay differ
(:attr:`Recorder.problem`): a value the step computed read into Python (``float(loss)``, ``if t > 0``), an array
edited in place outside an optimizer, a module attribute assigned, ``add_operation`` (its output was computed by the
caller). :mod:`opreg.compiled` then runs that step eagerly, always, and says why.

The hooks cost the eager path one module-flag test each (:data:`active`), as :mod:`opreg.observe`'s do.
"""

from __future__ import annotations

import bisect
import functools
import heapq
import operator
import re
import threading
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, TypeVar

import numpy as np

from opreg import tracing
from opreg.calls import backward_keywords, backward_out_keywords, input_gradients
from opreg.opdef import OpDef
from opreg.outforms import bit_differences

F = TypeVar("F", bound=Callable[..., Any])

#: Whether a step is being recorded in some thread: the one thing the hooks read on the eager path.
active = False

#: Bumped whenever state a recorded step may depend on changes outside ops: a module's attribute is assigned (a new
#: layer or array; not ``training``, which is read through :func:`mode`), a Tensor's ``.data`` is rebound, or its
#: ``requires_grad`` flips.
#: A recorded step remembers the value it was recorded at; any other value means: record again before replaying.
epoch = 0


def bump() -> None:
    global epoch
    epoch += 1
    recorder = _thread.recorder
    if recorder is not None and not recorder.suspended:
        recorder.refuse("it assigns module attributes or rebinds a Tensor's .data while it runs")


class _Thread(threading.local):
    recorder: Recorder | None = None


_thread = _Thread()
_count = 0  # recorders open in any thread
_lock = threading.Lock()


def recording() -> bool:
    """Whether a step is being recorded in this thread (a compiled function it calls is then part of it)."""
    return _thread.recorder is not None


def current() -> Recorder | None:
    """The recorder of this thread, unless it is inside a replayed call (whose inner workings are not recorded)."""
    recorder = _thread.recorder
    return recorder if recorder is not None and not recorder.suspended else None


class Recorder:
    """Names the values of one run of a step and writes down what the engine did with them.

    ``arguments`` are the step's arguments, flattened, with ``None`` for those that are not arrays or Tensors;
    argument ``i`` becomes ``a{i}``.
    """

    def __init__(self, arguments: Sequence[Any]) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}  # k-names of the generated function's namespace
        self.static: set[str] = set()  # constants compared by value between two recordings, not by identity
        self.names: dict[int, str] = {}  # id of an array (or Tensor) -> its name in the generated code
        self.alive: list[Any] = []  # every named object, so that no id is reused while recording
        self.problem: str | None = None
        self.seeds: dict[int, Any] = {}  # id -> a backward pass's starting gradient, not yet used
        self.allocations: dict[str, tuple[tuple[int, ...], np.dtype]] = {}  # values out forms write
        self.escaping: set[str] = set()
        self.views: list[tuple[str, str]] = []  # (a value, a value whose memory it may view), in the order made
        # land function (a name of its line's alone) -> its (target, gradient) pairs and zeroed arrays, by name
        self.land_calls: dict[str, tuple[list[tuple[str, str]], list[str]]] = {}
        # line -> (the names it assigns, the names whose values it may change), for lines known to change nothing
        # else (traced NumPy calls, forwards): what nothing reads is left out, what was computed already is reused
        self.effects: dict[int, tuple[AbstractSet[str], AbstractSet[str]]] = {}
        self.suspended = 0
        self.modes: dict[int, Any] = {}  # id -> a module whose training flag the step read
        self.made: set[int] = set()  # ids of the Tensors the step constructed (Tensor(x)), kept in alive
        self.guarded: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # id -> (array, its values): see guard()
        self.preamble: list[str] = []
        self.values = 0
        for position, x in enumerate(arguments):
            if x is None:  # not an array: part of the key, not of the program
                continue
            name = f"a{position}"
            self.preamble.append(f"{name} = A[{position}]._data" if _is_tensor(x) else f"{name} = A[{position}]")
            self._name(x._data if _is_tensor(x) else x, name)
            if _is_tensor(x):
                self._name(x, f"A[{position}]")

    # --- naming ------------------------------------------------------------------------------------------------

    def _name(self, x: Any, name: str) -> str:
        self.names[id(x)] = name
        self.alive.append(x)
        return name

    def constant(self, value: Any, static: bool = False) -> str:
        """A name for ``value`` in the generated function's namespace: compared between recordings by identity,
        or by value when ``static`` (what the step made from Python numbers: the same each time it runs)."""
        name = f"k{len(self.constants)}"
        self.constants[name] = value
        if static:
            self.static.add(name)
        self.alive.append(value)
        return name

    def value(self, x: Any) -> str:
        """The name of ``x``, computed by the step from here on."""
        name = f"v{self.values}"
        self.values += 1
        return self._name(x, name)

    def ref(self, x: Any, tensor: Any = None) -> str:
        """How the generated code reads array ``x`` (``tensor`` is the Tensor it came from, if any)."""
        name = self.names.get(id(x))
        if name is not None:
            if (
                tensor is not None
                and name[0] == "a"
                and not self.names.get(id(tensor), "").startswith("A[")  # an argument Tensor: A[i], its array a{i}
                and id(tensor) not in self.made  # Tensor(x) in the step wraps each call's argument
            ):
                self.refuse(
                    f"its argument {name[1:]} is the array of a Tensor the step also reaches otherwise (a "
                    f"parameter of shape {tensor.shape}): a replay would read the next call's argument for both; "
                    "pass a copy, or the Tensor itself"
                )
            return name
        if id(x) in self.seeds:  # a backward pass's seed: a fresh copy each run, as the eager pass makes one
            source = self.constant(np.array(self.seeds.pop(id(x)), copy=True), static=True)
            name = self.value(x)
            self.effects[len(self.lines)] = ({name}, {name})
            self.lines.append(f"{name} = {source}.copy()")
            return name
        if tensor is not None:  # a Tensor from before the step (a parameter): read its array when replaying
            owner = self.names.get(id(tensor)) or self._name(tensor, self.constant(tensor))
            name = f"{owner}._data"
            self.preamble.append(f"p{len(self.preamble)} = {name}")
            return self._name(x, f"p{len(self.preamble) - 1}")
        return self._name(x, self.constant(x))

    def guard(self, arrays: Iterable[np.ndarray] | None = None) -> None:
        """``arrays`` (those an earlier recording of the step used) must change only through what the recording
        sees: ops, the engine's landings, library calls. The step's own NumPy writing into one (the handout's
        ``dW.fill(0)``, ``stats[...] = x.mean(0)``) is seen by nobody, and a replay would not do it; their values
        are compared before each library call and landing, and at the end (:meth:`check_guarded`), and taken
        anew after (``None``: every guarded array's, after a library call, which may change any)."""
        for array in [array for array, _ in self.guarded.values()] if arrays is None else arrays:
            self.guarded[id(array)] = (array, array.copy())

    def check_guarded(self) -> None:
        """Refuse if a guarded array changed since the last library call or landing."""
        for array, values in self.guarded.values():
            if bit_differences(array, values).any():
                self.refuse(
                    f"it changes an array it uses or keeps ({array.dtype} {array.shape}) in place with NumPy "
                    "(dW.fill(0), stats[...] = ...), which no op records and a replay would not do: zero gradients "
                    "with optimizer.zero_grad() or backward(zero_grad=...); keep a statistic outside the step, or "
                    "compute it with ops and return it"
                )
                break

    def refuse(self, why: str) -> None:
        if self.problem is None:
            self.problem = why

    # --- the generated function --------------------------------------------------------------------------------

    def allocate(self, x: np.ndarray) -> str:
        """A name for a value an op's ``forward_out``/``backward_out`` will write, of ``x``'s shape and dtype:
        :meth:`source` gives it a buffer kept from one replay to the next where that is safe, else a new array."""
        name = self.value(x)
        self.allocations[name] = (x.shape, x.dtype)
        self.effects[len(self.lines)] = ({name}, {name})
        self.lines.append(f"{name} = <alloc>")
        return name

    def shared(self, *names: str) -> None:
        """``names`` are read by a call that may return them, or views of them (an op without an out form, a
        leaf's ``.grad`` taking its gradient): their memory must be new each replay, never a reused buffer."""
        self.escaping.update(names)

    def viewing(self, views: Sequence[tuple[str, str]]) -> None:
        """Each ``(view, base)`` of ``views``: the value ``view`` may view the memory of the value ``base`` (``g.T``
        in a traced form). The lines name every use of the view, so ``base``'s memory is kept for as long as the
        view is used; if the view escapes (:meth:`shared`), so does ``base``."""
        self.views.extend(views)

    def source(self, returns: str) -> tuple[str, dict[str, Any]]:
        """The step as a function of its flattened arguments ``A``, and the names its code reads besides the
        recorder's constants (the memory it writes into).

        Every value is dropped after its last use, so a replay holds no more memory than the eager step. The
        values out forms write are views (``b0``, ...) of one slab of bytes kept across replays, each at an offset
        planned by liveness (:func:`_plan`): values whose lives do not overlap share memory, whatever their shapes,
        and the slab is as large as the most the step has alive at once. A value that escapes (:meth:`shared`) gets
        a new array each replay (``empty``) instead.
        """
        lines = _common(self.lines, _live(self.lines, self.effects, returns), self.effects, self._folded)
        body = [*self.preamble, *lines, f"return {returns}"]
        last: dict[str, int] = {}
        for number, line in enumerate(body):
            for word in _words(line):
                last[word] = number
        escaping, ends = set(self.escaping), dict(last)  # ends: the last line that uses a value's memory
        for view, base in reversed(self.views):  # a view of a view comes after its base's view: read first
            if view in escaping:
                escaping.add(base)
            if view in ends:
                ends[base] = max(ends.get(base, -1), ends[view])
        landing = self._landing_in_place(body, last, escaping)
        lives = {}  # value -> (its <alloc> line, the last use of its memory, its bytes), for those in the slab
        for number, line in enumerate(body):
            if line.endswith(" = <alloc>"):
                name = line.split(" ", 1)[0]
                shape, dtype = self.allocations[name]
                if name not in escaping and name not in landing and not dtype.hasobject:  # (object arrays view
                    lives[name] = (number, ends[name], int(np.prod(shape)) * dtype.itemsize)  # no bytes)
        offsets, size = _plan(lives)
        slab = np.empty(size, np.uint8)
        namespace: dict[str, Any] = {}
        out = []
        for number, line in enumerate(body):
            if line.endswith(" = <alloc>"):
                name = line.split(" ", 1)[0]
                shape, dtype = self.allocations[name]
                if name in landing:
                    line = f"{name} = {landing[name]}"
                elif name in offsets:
                    namespace[f"b{len(namespace)}"] = np.ndarray(shape, dtype, slab, offsets[name])
                    line = f"{name} = b{len(namespace) - 1}"
                else:
                    namespace[f"s{len(namespace)}"] = (shape, dtype)
                    line = f"{name} = empty(*s{len(namespace) - 1})"
            if landing and line.split("(", 1)[0] in self.land_calls:
                out.extend(self._landed_in_place(line.split("(", 1)[0], landing))
            else:
                out.append(line)
            dead = sorted(n for n in _words(line) if last.get(n) == number and n[0] in "vp" and n[1:].isdigit())
            if dead and not line.startswith("return"):
                out.append(f"del {', '.join(dead)}")
        return "def replay(A):\n" + "".join(f"    {line}\n" for line in out), namespace

    def _folded(self, expression: str) -> str | None:
        """A constant holding ``expression``'s value, computed now, if it reads nothing but values made from Python
        numbers (the seed of a backward pass, a number an op was given, what was folded before): the same every
        replay, so computed once (``loss / n``'s backward divides the seed by n). Read-only, so that nothing can
        change it unseen; :func:`_common` folds only values nothing changes after they are made."""
        words = _words(expression)
        if any(_NAME.fullmatch(word) and word not in self.static for word in words):
            return None
        namespace = {"np": np, "asarray": np.asarray, **{w: self.constants[w] for w in words if w in self.static}}
        try:
            value = eval(expression, namespace)  # a line this module wrote: NumPy calls on constants
        except Exception:  # the replay would raise the same: leave it to the replay
            return None
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
        return self.constant(value, static=True)

    def _landed_in_place(self, function: str, landing: Mapping[str, str]) -> list[str]:
        """The lines of the land call made by ``function``, for gradients ``landing`` in place: those are in
        their arrays already, as the landing would have written them (:func:`opreg.landing.land`), so the call is
        left the other gradients and zeroed arrays, if any remain."""
        pairs, arrays = self.land_calls[function]
        written = {target for target, name in pairs if landing.get(name) == target}
        rest = [(target, name) for target, name in pairs if landing.get(name) != target]
        zeroed = [array for array in arrays if array not in written]
        return [_land_call(function, rest, zeroed)] if rest or zeroed else []

    def _landing_in_place(self, body: Sequence[str], last: Mapping[str, int], escaping: set[str]) -> dict[str, str]:
        """The values written straight into the zeroed array they land in (value -> the array's name), rather
        than into memory of their own that the landing then copies: the tape's ``dW``, ``db``
        (:meth:`_landed_in_place` writes what the landing then does).

        Only where nothing could tell the difference: the array is a whole one (no view) of the value's shape and
        dtype, the value (viewed by nothing) is used by nothing after its landing, and no line between its writing
        and its landing reads the array or anything that may share its memory."""
        arrays = {name: x for name, x in self.constants.items() if type(x) is np.ndarray}
        arrays.update((self.names[id(x)], x) for x in self.alive if type(x) is np.ndarray and id(x) in self.names)
        viewed = {base for _, base in self.views}
        lands = {word: number for number, line in enumerate(body) for word in _words(line) if word in self.land_calls}
        result = {}
        for name, target_name, function in self._first_landings():
            target = arrays.get(target_name)
            landing = lands.get(function, -1)
            if name not in self.allocations or name in escaping or name in viewed or last.get(name) != landing:
                continue
            shape, dtype = self.allocations[name]
            if not (
                type(target) is np.ndarray
                and target.base is None
                and target.flags.c_contiguous
                and target.flags.writeable
                and target.shape == shape
                and target.dtype == dtype
            ):
                continue
            if f"{name} = <alloc>" not in body:  # left out (nothing read it)
                continue
            made = body.index(f"{name} = <alloc>")
            between = {word for line in body[made + 1 : landing] for word in _words(line)} - {name}
            if not any(np.may_share_memory(arrays[word], target) for word in between if word in arrays):
                result[name] = target_name
        return result

    def _first_landings(self) -> Iterator[tuple[str, str, str]]:
        """``(gradient, zeroed array, land function)`` for the first gradient to land in each zeroed array of a
        landing (:func:`opreg.landing.land` writes it there rather than adding it): by name."""
        for function, (pairs, zeroed) in self.land_calls.items():
            pending = set(zeroed)
            for target, name in pairs:
                if target in pending:
                    pending.discard(target)
                    yield name, target, function


#: Each value's offset in the slab is a multiple of this: a cache line, at least the alignment malloc gives.
ALIGN = 64


def _plan(lives: Mapping[str, tuple[int, int, int]]) -> tuple[dict[str, int], int]:
    """Offsets in one slab for values alive from line ``first`` to line ``last`` (both included) of ``nbytes``
    each (``lives``: name -> ``(first, last, nbytes)``), such that no two values alive on one line overlap; and the
    slab's size.

    The values are placed in the order the lines make them, as an allocator would at run time, but one that knows
    when each is freed: a value takes the smallest free range that fits it (the lowest, of equal ones), or the top
    of the slab, grown. Freed ranges merge with free neighbours. A value is made on its ``<alloc>`` line, before
    the call that writes it, and freed after its last line: a call's inputs never share memory with its outputs.
    """
    free: list[tuple[int, int]] = []  # (offset, size), sorted by offset, none touching the next
    ending: list[tuple[int, int, int]] = []  # a heap of (last line, offset, size) of the values placed
    offsets: dict[str, int] = {}
    top = 0
    for name, (first, last, nbytes) in sorted(lives.items(), key=lambda item: item[1][0]):
        while ending and ending[0][0] < first:
            _, offset, size = heapq.heappop(ending)
            _release(free, offset, size)
        size = -(-nbytes // ALIGN) * ALIGN
        fits = [(length, offset) for offset, length in free if length >= size]
        if fits:
            length, offset = min(fits)
            free.remove((offset, length))
            if length > size:
                bisect.insort(free, (offset + size, length - size))
        elif free and sum(free[-1]) == top:  # the free range at the top, grown to fit
            offset = free.pop()[0]
            top = offset + size
        else:
            offset, top = top, top + size
        offsets[name] = offset
        heapq.heappush(ending, (last, offset, size))
    return offsets, max((offsets[name] + lives[name][2] for name in offsets), default=0)


def _release(free: list[tuple[int, int]], offset: int, size: int) -> None:
    """``[offset, offset + size)`` added to ``free``, merged with the free ranges it touches."""
    i = bisect.bisect(free, (offset, size))
    if i < len(free) and offset + size == free[i][0]:  # the next range
        size += free.pop(i)[1]
    if i and sum(free[i - 1]) == offset:  # the previous one
        offset, size = free[i - 1][0], free[i - 1][1] + size
        free.pop(i - 1)
        i -= 1
    free.insert(i, (offset, size))


Effects = Mapping[int, tuple[AbstractSet[str], AbstractSet[str]]]


def _live(lines: list[str], effects: Effects, returns: str) -> list[int]:
    """The numbers of ``lines`` to run: not those with known effects whose results nothing after them reads (or
    returns). An op's forward whose output only a backward's seed followed (the loss of a step that returns
    nothing) is not run again."""
    needed = _words(returns)
    kept = []
    for number in range(len(lines) - 1, -1, -1):
        line = lines[number]
        if number in effects:
            assigned, written = effects[number]
            if not written & needed:
                continue
            needed = needed - assigned | _words(line.split(" = ", 1)[1] if assigned else line)
        else:
            needed |= _words(line)
        kept.append(number)
    return kept[::-1]


def _common(lines: list[str], numbers: list[int], effects: Effects, folded: Callable[[str], str | None]) -> list[str]:
    """``lines[n]`` for each of ``numbers``, but a line that computes what an earlier one did, from values nothing
    changed in between, is left out and its name replaced by the earlier one's (a loss's forward and its backward
    both take the softmax of the logits); and one whose value ``folded`` can make a constant (it reads only
    constants) is left out, its name replaced by the constant's. Only for results nothing changes after they are
    made: a line of unknown effects (a library call, a landing) may change any value it names, and any array the
    step did not compute."""
    changed: set[str] = set()  # names whose values change after they are made
    for number in numbers:
        if number in effects:
            assigned, written = effects[number]
            changed |= written - assigned
        else:
            changed |= _words(lines[number])
    made: dict[str, str] = {}  # an expression -> the name of its value
    readers: dict[str, list[str]] = {}  # a name -> the expressions of made that read it
    renamed: dict[str, str] = {}
    kept = []
    for number in numbers:
        line = lines[number]
        if renamed:
            line = re.sub(r"\b[va]\d+\b", lambda m: renamed.get(m.group(), m.group()), line)
        if number not in effects:
            made.clear()
            readers.clear()
            kept.append(line)
            continue
        assigned, written = effects[number]
        for name in written:
            for expression in readers.pop(name, ()):
                made.pop(expression, None)
        if len(assigned) == 1 and assigned == written and not line.endswith("<alloc>"):
            (name,) = assigned
            expression = line.split(" = ", 1)[1]
            if name not in changed:
                earlier = made.get(expression) or folded(expression)
                if earlier is not None:
                    renamed[name] = earlier
                    continue
                made[expression] = name
                for word in _words(expression):
                    readers.setdefault(word, []).append(expression)
        kept.append(line)
    return kept


#: The names the generated code gives values: arguments, parameters' arrays, computed values, constants.
_NAME = re.compile(r"[apvk]\d+|A")


@functools.lru_cache(maxsize=1 << 16)
def _words(line: str) -> frozenset[str]:
    """The names a generated line mentions (each line is asked about many times while a program is planned)."""
    return frozenset(re.findall(r"\w+", line))


#: opreg.tensor's Tensor class and its function for a leaf's ``.grad``, given when opreg.tensor loads (it imports
#: this module, so this one cannot import it).
_tensor_class: type = type(None)
_leaf_gradient: Callable[[Any, Any], Any] = operator.add


def bind_tensor(tensor_class: type, leaf_gradient: Callable[[Any, Any], Any]) -> None:
    global _tensor_class, _leaf_gradient
    _tensor_class, _leaf_gradient = tensor_class, leaf_gradient


def _is_tensor(x: Any) -> bool:
    return isinstance(x, _tensor_class)


# --- recording ---------------------------------------------------------------------------------------------------


def start(recorder: Recorder) -> None:
    global active, _count
    with _lock:
        _thread.recorder = recorder
        _count += 1
        active = True


def stop() -> None:
    global active, _count
    with _lock:
        _thread.recorder = None
        _count -= 1
        active = _count > 0


def forward(
    op: OpDef,
    args: Sequence[Any],
    datas: Sequence[Any],
    attributes: Mapping[str, Any],
    output: Any,
    saved: Any,
) -> None:
    """``op``'s forward ran on ``datas`` (the arrays of ``args``, which may hold Tensors) and gave ``output``."""
    recorder = current()
    if recorder is None:
        return
    inputs = []
    for x, data in zip(args, datas, strict=True):
        if _is_tensor(x):
            inputs.append(recorder.ref(data, x))
        elif id(data) in recorder.names or type(x) is np.ndarray:
            inputs.append(recorder.ref(data))
        else:  # a Python number or list the op call converted: the same every run (named for backward too)
            inputs.append(recorder._name(data, recorder.constant(data, static=True)))
    # a forward that draws random numbers (``draws``) is called as it is, never traced (a trace runs it again,
    # drawing), and its lines get no effects: never left out nor shared, a replay draws as the eager step does
    out_form = op.forward_out
    if out_form is not None and type(output) is np.ndarray and not op.saves and not op.draws:
        name = recorder.allocate(output)
        scratch = np.empty(output.shape, output.dtype)
        arguments = [(scratch, name), *zip(datas, inputs, strict=True)]
        if _inline(recorder, out_form, arguments, attributes, [(scratch, output, f"{op.describe()}: forward_out")]):
            return
        function = functools.partial(out_form, **attributes) if attributes else out_form
        recorder.lines.append(f"{recorder.constant(function, static=True)}({name}, {', '.join(inputs)})")
        return
    if not (isinstance(output, tuple) or op.draws) and _inline_forward(
        recorder, op, datas, inputs, attributes, output, saved
    ):
        return
    recorder.shared(*inputs)
    function = functools.partial(op.forward, **attributes) if attributes else op.forward
    call = f"{recorder.constant(function, static=True)}({', '.join(inputs)})"
    # an op's forward changes nothing it is given: its lines are assignments, unless it draws (see above)
    emit = recorder.lines.append if op.draws else functools.partial(_assignment, recorder)
    if isinstance(output, tuple):  # several outputs: each an array of its own, as run_forward makes them
        names = [recorder.value(each) for each in output]
        if op.saves:
            emit(f"_o, {_saved(recorder, saved)} = {call}")
            call = "_o"
        several = recorder.constant(_several, static=True)
        emit(f"{', '.join(names)}{',' if len(names) == 1 else ''} = {several}({call})")
    else:
        name = recorder.value(output)
        if op.saves:
            emit(f"{name}, {_saved(recorder, saved)} = {call}")
        else:
            emit(f"{name} = {call}")
        if output.ndim == 0:  # a 0-d result may come back a NumPy scalar, which run_forward makes an array
            emit(f"{name} = asarray({name})")


def _inline_forward(
    recorder: Recorder,
    op: OpDef,
    datas: Sequence[Any],
    inputs: Sequence[str],
    attributes: Mapping[str, Any],
    output: np.ndarray,
    saved: Any,
) -> bool:
    """The NumPy calls of ``op``'s forward in place of a call to it (an op with no ``forward_out``, or whose forward
    also returns what backward saves), if it can be traced: each line's effects known, so that what only a loss
    nobody reads needed is left out. Its results must be the eager step's, bit for bit."""
    trace = tracing.Trace(recorder.value, functools.partial(recorder.constant, static=True))
    args = [trace.array(x, name) if type(x) is np.ndarray else x for x, name in zip(datas, inputs, strict=True)]
    try:
        result = trace.run(op.forward, args, attributes)
        if op.saves and not (isinstance(result, tuple) and len(result) == 2):
            return False
        value, kept = result if op.saves else (result, None)
        if not isinstance(value, tracing.Traced) or any(value is x for x in args):
            return False
        kept_text = trace.text(kept)
    except tracing.Untraceable:
        return False
    why = (
        f"{op.describe()}'s forward gave other numbers when traced than when it ran (read the values of its inputs "
        "in some way tracing cannot see?)"
    )
    _adopt(recorder, trace, ((np.asarray(x), y, why) for x, y in _arrays(value, output, kept, saved)))
    if output.ndim == 0:  # a 0-d result may come back a NumPy scalar, which run_forward makes an array
        _assignment(recorder, f"{recorder.value(output)} = asarray({value.name})")
    else:
        recorder._name(output, value.name)
    if saved is not None:
        _assignment(recorder, f"{recorder.value(saved)} = {kept_text}")
    return True


def _arrays(traced: Any, eager: Any, *more: Any) -> Iterator[tuple[Any, Any]]:
    """Pairs of (a traced result, the eager value in its place), through tuples and lists."""
    if isinstance(traced, tracing.Traced):
        yield traced.array, eager
    elif isinstance(traced, tuple | list) and isinstance(eager, tuple | list) and len(traced) == len(eager):
        for pair in zip(traced, eager, strict=True):
            yield from _arrays(*pair)
    if more:
        yield from _arrays(*more)


def _assignment(recorder: Recorder, line: str) -> None:
    """An assignment that changes nothing but its name."""
    assigned = _words(line.split(" = ", 1)[0])
    recorder.effects[len(recorder.lines)] = (assigned, assigned)
    recorder.lines.append(line)


def _saved(recorder: Recorder, saved: Any) -> str:
    return "_" if saved is None else recorder.value(saved)


def _several(outputs: Sequence[Any]) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(each) for each in outputs)


def refuse(why: str) -> None:
    """Note that the step does something a replay would not do (``why`` completes "the step cannot be
    replayed because ...")."""
    recorder = current()
    if recorder is not None:
        recorder.refuse(why)


def read(x: Any, how: str) -> None:
    """A Tensor's values were read into Python (``how``: ``float()``, ``.item()``, ...): unless they were made from
    Python numbers (the same every run), a replay would keep the values of its recording."""
    recorder = current()
    if recorder is None:
        return
    name = recorder.names.get(id(x._data), "")
    if name.startswith("v"):  # a value the step computed
        recorder.refuse(
            f"it reads a value it computed into Python ({how} on a {x.dtype} Tensor of shape {x.shape}), and a "
            "replay runs no Python of the step: return the Tensor and read it after the call"
        )
    elif name not in recorder.static:  # an argument, a parameter the step updates, any array from outside
        recorder.refuse(
            f"it reads a value into Python from a Tensor it did not compute ({how} on a {x.dtype} Tensor of shape "
            f"{x.shape}: an argument, or a parameter), and a replay would keep the value of its recording: compute "
            "with the Tensor itself, or pass the number as an argument"
        )


def made(tensor: Any) -> None:
    """The step constructed ``tensor`` (``Tensor(x)``): a new object each run, so its array may be an argument's."""
    recorder = current()
    if recorder is not None:
        recorder.made.add(id(tensor))
        recorder.alive.append(tensor)


def mode(module: Any) -> None:
    """The step read ``module.training``: a replay needs the same flag (:class:`opreg.compiled.CompiledStep` keys
    its programs by it), so that ``train()`` and ``eval()`` between steps need no new recording."""
    recorder = current()
    if recorder is not None:
        recorder.modes[id(module)] = module


def seed(grads: Mapping[int, Any]) -> None:
    """A backward pass starts from the gradients in ``grads`` (the seed: ones, or the caller's gradient): each is
    written as a copy of its value where it is first used (:meth:`Recorder.ref`)."""
    recorder = current()
    if recorder is None:
        return
    for array in grads.values():
        if array is not None and id(array) not in recorder.names:
            recorder.seeds[id(array)] = array
            recorder.alive.append(array)


def seeded(value: np.ndarray, gradient: np.ndarray, remake: Callable[[np.ndarray], Any]) -> None:
    """A backward pass's seed ``value`` was made by ``remake`` from the caller's array ``gradient``
    (``backward(g)``), which may hold other numbers at the next step: made from it again in every replay. (A seed
    made from a Python number is the same every run: a constant, :meth:`Recorder.ref`.)"""
    recorder = current()
    if recorder is None:
        return
    function = recorder.constant(remake, static=True)
    _assignment(recorder, f"{recorder.value(value)} = {function}({recorder.ref(gradient)})")


def backward(
    op: OpDef,
    grad_output: Any,
    datas: Sequence[Any],
    output: Any,
    attributes: Mapping[str, Any],
    sources: Sequence[Any],
    saved: Any,
    grads_in: Sequence[Any],
) -> None:
    """:func:`opreg.calls.input_gradients` ran for ``op`` and gave ``grads_in``."""
    recorder = current()
    if recorder is None:
        return
    if isinstance(grad_output, tuple) or isinstance(output, tuple):
        recorder.refuse(f"the backward pass goes through {op.describe()}, which has several outputs (not yet replayed)")
        return
    # the inputs named before the results: a backward may return its grad_output itself (add's does)
    g_name, names, out_name = recorder.ref(grad_output), [recorder.ref(x) for x in datas], recorder.ref(output)
    if op.backward_out is not None:
        _backward_out(
            recorder,
            op,
            (grad_output, g_name),
            list(zip(datas, names, strict=True)),
            output,
            out_name,
            attributes,
            grads_in,
        )
        return
    saved_name = "None" if saved is None else recorder.ref(saved)
    recorder.shared(g_name, *names, out_name)
    results = [recorder.value(g) if g is not None else "_" for g in grads_in]
    targets = f"{', '.join(results)}{',' if len(results) == 1 else ''}"
    direct = _direct_backward(recorder, op, grad_output, datas, output, attributes, sources, saved, grads_in)
    if direct is not None:
        function, dynamic = direct
        more = "".join(f", {key}={out_name if key == 'output' else saved_name}" for key in dynamic)
        recorder.lines.append(f"{targets} = {function}({g_name}, {', '.join(names)}{more})")
        return
    needed = recorder.constant(tuple(None if s is None else True for s in sources), static=True)
    function = recorder.constant(functools.partial(_input_gradients, op), static=True)
    attrs = recorder.constant(attributes, static=True)
    inputs = f"{', '.join(names)}{',' if len(names) == 1 else ''}"
    recorder.lines.append(f"{targets} = {function}({g_name}, ({inputs}), {out_name}, {attrs}, {needed}, {saved_name})")


def _input_gradients(
    op: OpDef, grad_output: Any, inputs: Any, output: Any, attributes: Any, needed: Any, saved: Any
) -> list[Any]:
    return input_gradients(op, grad_output, inputs, output, attributes, needed, saved)


def _backward_out(
    recorder: Recorder,
    op: OpDef,
    g: tuple[Any, str],
    inputs: list[tuple[Any, str]],
    output: Any,
    out_name: str,
    attributes: Mapping[str, Any],
    grads_in: Sequence[Any],
) -> None:
    """``op.backward_out`` writing each wanted gradient into an array of its input's shape and dtype (``g`` and the
    ``inputs`` are given as ``(array, its name)``)."""
    keywords = backward_out_keywords(op, attributes, output, grads_in)
    more = f", output={out_name}" if keywords.pop("output", None) is not None else ""
    out_form = op.backward_out
    assert out_form is not None  # the caller's condition
    outs = [recorder.allocate(grad) if grad is not None else "None" for grad in grads_in]
    scratch = tuple(
        None if grad is None else (np.empty(grad.shape, grad.dtype), name)
        for grad, name in zip(grads_in, outs, strict=True)
    )
    arguments = [scratch, g, *inputs]
    if more:
        keywords["output"] = (output, out_name)
    written = [
        (pair[0], grad, f"{op.describe()}: backward_out, for {op.describe_input(i)},")
        for i, (pair, grad) in enumerate(zip(scratch, grads_in, strict=True))
        if pair is not None
    ]
    if _inline(recorder, out_form, arguments, keywords, written):
        return
    keywords.pop("output", None)
    function = recorder.constant(functools.partial(out_form, **keywords) if keywords else out_form, static=True)
    names = ", ".join(name for _, name in inputs)
    recorder.lines.append(f"{function}(({', '.join(outs)},), {g[1]}, {names}{more})")


def _inline(
    recorder: Recorder,
    form: Callable[..., Any],
    arguments: Sequence[Any],
    keywords: Mapping[str, Any],
    written: Sequence[tuple[np.ndarray, np.ndarray, str]],
) -> bool:
    """Write the NumPy calls ``form`` makes in place of a call to it (:mod:`opreg.tracing`), if it can be traced.

    ``arguments`` and ``keywords`` are the form's, with each array given as ``(array, its name)``; the arrays a form
    writes into are scratch arrays of their shape and dtype (the recording's own values are left alone). Each
    ``(scratch, eager, what)`` of ``written`` must then hold the eager step's values bit for bit, as the out-form
    contract says: a form that gives other numbers on this step's arrays makes the step run eagerly, never a
    replay with other numbers."""
    trace = tracing.Trace(recorder.value, functools.partial(recorder.constant, static=True))

    def stand_in(x: Any) -> Any:
        if isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], str):
            return trace.array(*x) if isinstance(x[0], np.ndarray) else x[0]
        if isinstance(x, tuple):
            return tuple(stand_in(each) for each in x)
        return x

    try:
        trace.run(form, [stand_in(x) for x in arguments], {key: stand_in(x) for key, x in keywords.items()})
    except tracing.Untraceable:
        return False
    _adopt(recorder, trace, [(scratch, eager, f"{what} {_DIFFERS}") for scratch, eager, what in written])
    return True


_DIFFERS = (
    "does not give the eager step's numbers bit for bit on this step's arrays (opreg check tests it on the op's "
    "samples; CONTRIBUTING.md, 'Forms that write into given arrays')"
)


def _adopt(recorder: Recorder, trace: tracing.Trace, results: Iterable[tuple[Any, Any, str]]) -> None:
    """A trace's lines into the program, their effects and views noted. Each ``(traced, eager, why)`` of
    ``results`` must be the same bits, or the step is refused for ``why``: never a replay with other numbers."""
    for traced, eager, why in results:
        if not _same_bits(traced, eager):
            recorder.refuse(why)
    first = len(recorder.lines)
    recorder.lines.extend(trace.lines)
    recorder.effects.update(zip(range(first, len(recorder.lines)), trace.effects, strict=True))
    recorder.viewing(trace.views)


def _same_bits(a: np.ndarray, b: Any) -> bool:
    """Whether ``b`` is ``a``'s values exactly: NaN where it has NaN, zeros of the same sign."""
    b = np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and not bit_differences(a, b).any()


def _direct_backward(
    recorder: Recorder,
    op: OpDef,
    grad_output: Any,
    datas: Sequence[Any],
    output: Any,
    attributes: Mapping[str, Any],
    sources: Sequence[Any],
    saved: Any,
    grads_in: Sequence[Any],
) -> tuple[str, list[str]] | None:
    """``op.backward`` with its keywords bound, and the keywords that change per run (``output``, ``saved``),
    when what it returns needs no fitting to the inputs (:func:`opreg.calls.input_gradients` checked and fitted
    it while recording): then the replay calls it directly, as the eager pass's fast path does. ``None`` where a
    gradient was fitted (broadcast, a NumPy scalar): the replay then fits it as the eager pass does."""
    keywords = backward_keywords(op, attributes, output, sources, saved)
    recorder.suspended += 1
    try:
        raw = op.backward(grad_output, *datas, **keywords)
    finally:
        recorder.suspended -= 1
    for grad, fitted, x in zip(raw, grads_in, datas, strict=True):
        if fitted is not None and not (type(grad) is np.ndarray and grad.shape == x.shape and grad.dtype == x.dtype):
            return None
    dynamic: list[str] = [key for key in ("output", "saved") if key in keywords]
    bound = {key: value for key, value in keywords.items() if key not in dynamic}
    function = functools.partial(op.backward, **bound) if bound else op.backward
    return recorder.constant(function, static=True), dynamic


def total(add: Callable[[Any, Any], Any], result: Any, current_grad: Any, grad: Any) -> None:
    """Two gradients of one value were added by ``add`` (:func:`opreg.backprop.total`) into ``result``."""
    recorder = current()
    if recorder is None:
        return
    function = recorder.constant(add, static=True)
    a, b = recorder.ref(current_grad), recorder.ref(grad)
    recorder.lines.append(f"{recorder.value(result)} = {function}({a}, {b})")


def landings(
    land: Callable[[Any, Any], None], landings: Sequence[tuple[np.ndarray, Any]], zeroed: Sequence[np.ndarray]
) -> None:
    """The backward pass's gradients were landed in the caller's arrays (the tape's ``dW``) by ``land``
    (:func:`opreg.landing.land`): the same call is made with the replay's gradients, the arrays named by identity."""
    recorder = current()
    if recorder is None or not (landings or zeroed):
        return
    pairs = [(recorder.ref(target), recorder.ref(grad)) for target, grad in landings]
    arrays = [recorder.ref(array) for array in zeroed]
    function = recorder.constant(land, static=True)  # a name of this line's alone
    if recorder.guarded:  # what the step did to them before the landing, seen now
        recorder.check_guarded()
    recorder.land_calls[function] = (pairs, arrays)  # a first gradient may be written in place (Recorder.source)
    recorder.lines.append(_land_call(function, pairs, arrays))


def landed(landings: Sequence[tuple[np.ndarray, Any]], zeroed: Iterable[np.ndarray]) -> None:
    """The gradients were landed: the arrays they changed have their new values (:meth:`Recorder.guard`)."""
    recorder = current()
    if recorder is not None and recorder.guarded:
        arrays = [target for target, _ in landings] + list(zeroed)
        recorder.guard(array for array in arrays if id(array) in recorder.guarded)


def _land_call(function: str, pairs: Sequence[tuple[str, str]], arrays: Sequence[str]) -> str:
    """The line that lands ``(target, gradient)`` ``pairs`` and zeroes ``arrays`` with the land ``function``."""
    landings = ", ".join(f"({target}, {grad})" for target, grad in pairs)
    return f"{function}([{landings}], ({', '.join(arrays)}{',' if len(arrays) == 1 else ''}))"


def leaf(lock: Callable[[Any], Any], tensor: Any, arrived: Any) -> None:
    """A gradient reached a leaf Tensor's ``.grad``: written as the Tensor front end writes it, under the leaf's
    lock, so that its test of whether ``arrived`` needs copying counts the same references."""
    recorder = current()
    if recorder is None:
        return
    lock_name = recorder.constant(lock(tensor))  # the tensor's own lock: the same object while the tensor lives
    function = recorder.constant(_leaf_gradient, static=True)
    owner = recorder.names.get(id(tensor)) or recorder._name(tensor, recorder.constant(tensor))
    recorder.shared(recorder.ref(arrived))
    recorder.lines.append(f"with {lock_name}:")
    recorder.lines.append(f"    {owner}._grad = {function}({owner}._grad, {recorder.ref(arrived)})")


def assigned_grad(tensor: Any, value: np.ndarray | None) -> None:
    """``tensor.grad = value`` (``p.grad = None`` before a backward, as many a training loop writes): written down,
    so that a replay starts each gradient where the eager step does."""
    recorder = current()
    if recorder is None:
        return
    owner = recorder.names.get(id(tensor)) or recorder._name(tensor, recorder.constant(tensor))
    if value is None:
        recorder.lines.append(f"{owner}._grad = None")
        return
    name = recorder.ref(value)
    recorder.shared(name)
    recorder.lines.append(f"{owner}._grad = {name}")


def replayed(method: F) -> F:
    """A library method that changes state outside ops (an optimizer's step, ``zero_grad``; or a function, its
    first argument taking the place of ``self``: gradient clipping): recorded as one call,
    to be made again in every replay, with what happens inside it left unrecorded. The arrays the step computed
    that it is given escape (:meth:`Recorder.shared`): it may keep them, and a later replay must not write over
    them."""
    return _replayed(method, keeps=True)


def replayed_reading(method: F) -> F:
    """:func:`replayed`, for a method that keeps none of the arrays it is given (a check of its arguments): they
    may stay in memory that later replays write into."""
    return _replayed(method, keeps=False)


def _replayed(method: F, keeps: bool) -> F:
    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        recorder = current() if active else None
        if recorder is None:
            return method(self, *args, **kwargs)
        call = _host_call(recorder, method, self, args, kwargs, keeps)
        if call is not None:
            recorder.lines.append(call)
        if recorder.guarded:
            recorder.check_guarded()
        recorder.suspended += 1
        try:
            return method(self, *args, **kwargs)
        finally:
            recorder.suspended -= 1
            if recorder.guarded:
                recorder.guard()

    return wrapper  # type: ignore[return-value]


def _host_call(
    recorder: Recorder, method: Callable[..., Any], owner: Any, args: Any, kwargs: Any, keeps: bool
) -> str | None:
    parts = []
    for x in (owner, *args):
        parts.append(_argument(recorder, x, keeps))
    for key, x in kwargs.items():
        parts.append(f"{key}={_argument(recorder, x, keeps)}")
    if recorder.problem is not None:
        return None
    return f"{recorder.constant(method, static=True)}({', '.join(parts)})"


def _argument(recorder: Recorder, x: Any, keeps: bool) -> str:
    if type(x) in (tuple, list):  # named item by item: a new tuple each run of the same objects is the same
        inner = ", ".join(_argument(recorder, each, keeps) for each in x)
        return f"({inner}{',' if len(x) == 1 else ''})" if type(x) is tuple else f"[{inner}]"
    if _is_tensor(x):
        return recorder.names.get(id(x)) or _tensor_of(recorder, x, keeps)
    if type(x) is np.ndarray:
        name = recorder.ref(x)
        if keeps:  # the call may keep it: memory of its own each replay, never the slab's
            recorder.shared(name)
        return name
    if x is None or type(x) in (bool, int, float, str):
        return recorder.constant(x, static=True)
    if isinstance(x, types.FunctionType | types.MethodType | types.BuiltinFunctionType | functools.partial):
        recorder.refuse(f"it passes a function ({x!r}) to a library call, which a replay could not run again")
        return "None"
    return recorder.constant(x)


def _tensor_of(recorder: Recorder, x: Any, keeps: bool) -> str:
    """A Tensor given to a replayed call: rebuilt around its array when the step computed it."""
    name = recorder.names.get(id(x._data))
    if name is None:
        return recorder._name(x, recorder.constant(x))
    if keeps:  # the call may keep it: memory of its own each replay, never the slab's
        recorder.shared(name)
    wrap = recorder.constant(_wrap, static=True)
    return f"{wrap}({name}, {recorder.constant(x.requires_grad, static=True)})"


def _wrap(data: np.ndarray, requires_grad: bool) -> Any:
    result: Any = object.__new__(_tensor_class)
    result._data, result._grad, result._node = data, None, None
    result._requires_grad = requires_grad
    return result
