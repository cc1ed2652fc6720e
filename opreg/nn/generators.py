"""Where the layers that draw random numbers (Dropout's masks, Embedding's initial weights) get their generator."""

from __future__ import annotations

import numpy as np


def generator(rng: np.random.Generator | None = None) -> np.random.Generator:
    """``rng`` itself when given (an explicit ``rng=`` always wins), else the default generator.

    For now the default is a fresh ``np.random.default_rng()``; this one function is the place to point at a
    library-wide seeded generator (``opreg.manual_seed``)."""
    return np.random.default_rng() if rng is None else rng
