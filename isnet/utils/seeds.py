"""The one way a seed is derived from several integers (a run seed, an epoch, a rank, a sample index)."""

from __future__ import annotations

import numpy as np

__all__ = ["derive_seed"]


def derive_seed(*parts: int) -> int:
    """A 32-bit seed that is a fixed function of ``parts`` (``numpy.random.SeedSequence`` mixing: nearby tuples
    give unrelated seeds). Negative parts are taken modulo ``2**64``."""
    return int(np.random.SeedSequence([int(p) % 2**64 for p in parts]).generate_state(1)[0])
