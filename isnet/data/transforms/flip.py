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

__all__ = ["HorizontalFlipSwapPairs"]


class HorizontalFlipSwapPairs(A.HorizontalFlip):
    """``A.HorizontalFlip`` that swaps the labels of ``flip_pairs`` in the flipped mask.

    Args:
        flip_pairs: Disjoint ``(a, b)`` label pairs to exchange, e.g. LIP ``((14, 15), (16, 17), (18, 19))``.
        p: Flip probability (0.5 in all recipes).
    """

    def __init__(self, flip_pairs: Iterable[Sequence[int]] = (), p: float = 0.5) -> None:
        super().__init__(p=p)
        self.flip_pairs = tuple((int(a), int(b)) for a, b in flip_pairs)

    def apply_to_mask(self, mask: np.ndarray, **params: Any) -> np.ndarray:
        flipped = super().apply_to_mask(mask, **params)
        out = flipped.copy()
        for a, b in self.flip_pairs:
            out[flipped == a] = b
            out[flipped == b] = a
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("flip_pairs",)
