"""Horizontal flip that also swaps left/right labels (sssegmentation ``RandomFlip`` with
``fixed_seg_target_pairs``, used for LIP human parsing).

When a person is mirrored, their left arm becomes a right arm, so the labels of each pair ``(a, b)``
(LIP: ``(14, 15)``, ``(16, 17)``, ``(18, 19)``) are exchanged after the pixels are flipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import albumentations as A
import numpy as np

from isnet.errors import ConfigError

__all__ = ["HorizontalFlipSwapPairs", "check_flip_pairs", "swap_label_pairs"]


def check_flip_pairs(flip_pairs: Iterable[Sequence[int]]) -> tuple[tuple[int, int], ...]:
    """Check ``flip_pairs``: pairs of two different non-negative int labels, each label used once.

    Returns:
        The pairs as a tuple of int tuples.
    """
    try:
        pairs = tuple(tuple(pair) for pair in flip_pairs)
    except TypeError as err:
        raise ConfigError(f"flip_pairs must be a sequence of (a, b) label pairs, got {flip_pairs!r}") from err
    seen: set[int] = set()
    for pair in pairs:
        if len(pair) != 2 or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair
        ):
            raise ConfigError(
                f"flip_pairs must hold (a, b) pairs of int labels, got {pair!r} in {flip_pairs!r}"
            )
        a, b = int(pair[0]), int(pair[1])
        if a < 0 or b < 0 or a == b:
            raise ConfigError(f"flip_pairs must hold two different non-negative labels, got {pair!r}")
        if a in seen or b in seen:
            raise ConfigError(f"each label may appear in only one flip pair, got {flip_pairs!r}")
        seen.update((a, b))
    return tuple((int(a), int(b)) for a, b in pairs)


def swap_label_pairs(mask: np.ndarray, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """Return a copy of ``mask`` with the labels of every pair exchanged.

    Args:
        mask: Label map (H, W).
        pairs: ``(a, b)`` label pairs; disjoint.
    """
    out = mask.copy()
    for a, b in pairs:
        out[mask == a] = b
        out[mask == b] = a
    return out


class HorizontalFlipSwapPairs(A.HorizontalFlip):
    """``A.HorizontalFlip`` that swaps the labels of ``flip_pairs`` in the flipped mask.

    Args:
        flip_pairs: ``(a, b)`` label pairs to exchange, e.g. LIP ``((14, 15), (16, 17), (18, 19))``.
        p: Flip probability (0.5 in all recipes).
    """

    def __init__(self, flip_pairs: Iterable[Sequence[int]] = (), p: float = 0.5) -> None:
        super().__init__(p=p)
        self.flip_pairs = check_flip_pairs(flip_pairs)

    def apply_to_mask(self, mask: np.ndarray, **params: Any) -> np.ndarray:
        """Flip the mask, then exchange the paired labels."""
        return swap_label_pairs(super().apply_to_mask(mask, **params), self.flip_pairs)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("flip_pairs",)
