"""Random crop with a category-ratio check, as sssegmentation's ``RandomCrop``.

The reference tries up to 10 random windows of ``min(crop, image)`` per side and keeps the first one that
holds more than one non-ignore label with the largest label below ``cat_max_ratio`` of the non-ignore
pixels; if none passes, the 10th window is kept. Quirk kept on purpose: if that final window has no
non-ignore pixel at all, the sample is returned *uncropped* (the later centred padding then centre-crops
it, see :class:`~isnet.data.transforms.padding.CenterPad`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import albumentations as A
import numpy as np

from isnet.utils.pairs import as_pair

__all__ = ["CatMaxRatioCrop", "crop_is_accepted", "select_crop"]

NUM_TRIES = 10


def _valid_counts(window: np.ndarray, ignore_index: int) -> np.ndarray:
    """Pixel count of every non-ignore label present in ``window`` (order irrelevant)."""
    flat = window.ravel()
    if flat.dtype == np.uint8 or (np.issubdtype(flat.dtype, np.integer) and flat.size and flat.min() >= 0):
        counts = np.bincount(flat)
        if ignore_index < counts.size:
            counts[ignore_index] = 0
        return counts[counts > 0]
    labels, counts = np.unique(flat, return_counts=True)
    return counts[labels != ignore_index]


def crop_is_accepted(counts: np.ndarray, cat_max_ratio: float) -> bool:
    """The reference's rule for the pixel ``counts`` of a window's non-ignore labels: > 1 label and
    ``max(count) / sum(count) < cat_max_ratio``."""
    return bool(counts.size > 1 and counts.max() / counts.sum() < cat_max_ratio)


def select_crop(
    mask: np.ndarray | None,
    image_hw: tuple[int, int],
    crop_hw: tuple[int, int],
    draw: Callable[[int], int],
    cat_max_ratio: float,
    ignore_index: int,
) -> tuple[int, int, int, int] | None:
    """Choose the crop window exactly as the reference's retry loop does.

    Args:
        mask: Label map (H, W), or ``None`` (then the first window is taken).
        image_hw, crop_hw: Image ``(H, W)`` and requested crop ``(h, w)``, clipped to the image per side.
        draw: ``draw(n)`` returns a uniform int in ``[0, n)``; called for top, then left, per try.
        cat_max_ratio: See :func:`crop_is_accepted`.
        ignore_index: Label that is not counted.

    Returns:
        ``(top, left, h, w)`` of the window, or ``None`` when the final window has no non-ignore pixel
        (the reference then leaves the sample uncropped).
    """
    height, width = image_hw
    out_h, out_w = min(crop_hw[0], height), min(crop_hw[1], width)
    for _ in range(NUM_TRIES):
        top = draw(height - out_h + 1)
        left = draw(width - out_w + 1)
        if mask is None:
            return top, left, out_h, out_w
        counts = _valid_counts(mask[top : top + out_h, left : left + out_w], ignore_index)
        if crop_is_accepted(counts, cat_max_ratio):
            break
    if counts.size == 0:
        return None
    return top, left, out_h, out_w


class CatMaxRatioCrop(A.DualTransform):
    """Random crop that avoids windows dominated by one category (reference ``RandomCrop``).

    Args:
        crop_size: Crop ``(h, w)``; an image smaller than it on a side keeps that side whole.
        cat_max_ratio: Largest allowed share of one label among non-ignore pixels (0.75 in all recipes).
        ignore_index: Label that is not counted (255 in this project).
        p: Probability of applying; the reference always applies it.
    """

    def __init__(
        self,
        crop_size: tuple[int, int] = (512, 512),
        cat_max_ratio: float = 0.75,
        ignore_index: int = 255,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.crop_size = as_pair(crop_size, "crop_size")
        self.cat_max_ratio = cat_max_ratio
        self.ignore_index = ignore_index

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """Run the retry loop on the mask; ``window=None`` means "leave uncropped"."""

        def draw(n: int) -> int:
            return int(self.random_generator.integers(0, n))

        window = select_crop(
            data.get("mask"), params["shape"][:2], self.crop_size, draw, self.cat_max_ratio, self.ignore_index
        )
        return {"window": window}

    def apply(self, img: np.ndarray, window: tuple[int, int, int, int] | None, **params: Any) -> np.ndarray:
        """Crop the image (and, through ``apply_to_mask``, the label) to the chosen window."""
        if window is None:
            return img
        top, left, h, w = window
        return img[top : top + h, left : left + w]

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("crop_size", "cat_max_ratio", "ignore_index")
