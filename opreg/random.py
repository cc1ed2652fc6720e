"""The random numbers of default initialisations: ``opreg.manual_seed(n)`` makes them reproducible.

Every layer that draws randomness without being given a generator (``Linear`` and ``MLP`` without ``rng=``, and
any later layer: dropout masks, convolution and embedding weights) draws from one process-wide
:class:`numpy.random.Generator`, through :func:`generator`. Without :func:`manual_seed` it is seeded from the
operating system, so two runs differ; after ``manual_seed(n)`` the same program draws the same numbers, as after
``torch.manual_seed(n)``. A generator passed explicitly (``rng=``) always wins and leaves this one alone.

The generator is shared state, like PyTorch's default generator: two threads drawing from it at once make the
order of their draws, and so their numbers, depend on timing. Pass each thread an ``rng=`` of its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from opreg import capture
from opreg.errors import OpUsageError

_default: np.random.Generator | None = None


@capture.replayed
def manual_seed(seed: int | np.integer[Any]) -> np.random.Generator:
    """Seed the generator that every default initialisation draws from (see :func:`generator`); returns it.

    ``seed`` is a whole number of at least 0 (as NumPy's seeds). NumPy's own global ``np.random`` state is left
    alone, as PyTorch leaves it. Called in a compiled step, it is called again in every replay."""
    global _default
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
        raise OpUsageError(f"manual_seed takes a whole number of at least 0, got {seed!r}")
    _default = np.random.default_rng(int(seed))
    return _default


def default_generator() -> np.random.Generator:
    """The process-wide generator: seeded by the last :func:`manual_seed`, or from the operating system."""
    global _default
    if _default is None:
        _default = np.random.default_rng()
    return _default


def generator(rng: np.random.Generator | None = None) -> np.random.Generator:
    """``rng`` if one is given, else :func:`default_generator`: what a layer calls to draw its initial weights
    or its masks, ``rng = opreg.random.generator(rng)``, so that ``opreg.manual_seed`` makes it reproducible and an
    explicit ``rng=`` still wins."""
    return default_generator() if rng is None else rng
