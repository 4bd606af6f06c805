"""Centred padding to the crop size, as sssegmentation's ``Padding`` (``data_type='tensor'``).

The reference pads *after* normalisation, so the image fill 0 is the mean colour; the label fill is the
ignore value. Padding is centred: ``top = (H - h) // 2`` and the rest at the bottom (same for left/right),
unlike mmseg, which pads bottom/right. Padding the normalised HWC array before ``ToTensorV2`` gives the
same tensor as padding after it.

Quirk reproduced: when the input is larger than the target (only possible through the crop's uncropped
fallback), the amounts are negative and ``F.pad`` in the reference removes rows/columns instead, i.e. a
centred crop with the same ``//2`` split. We do the same.

Deviation: the reference swaps the target ``(h, w)`` when the image is portrait and the target landscape
(or the reverse). With the reference recipes this never happens (square crops, and Cityscapes images are
always at least 512x1024 after the resize), and swapping would break batch collation, so the output here
is always exactly ``size``.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import numpy as np

from isnet.utils.pairs import as_pair

__all__ = ["CenterPad", "center_pad"]


def center_pad(arr: np.ndarray, size: tuple[int, int], value: float) -> np.ndarray:
    """Pad ``arr`` (H, W) or (H, W, C) with ``value`` (or crop it, for negative amounts) around its centre to
    the spatial size ``size`` (h, w)."""
    height, width = arr.shape[:2]
    top = (size[0] - height) // 2
    bottom = size[0] - height - top
    left = (size[1] - width) // 2
    right = size[1] - width - left
    if top < 0 or bottom < 0 or left < 0 or right < 0:
        arr = arr[max(-top, 0) : height - max(-bottom, 0), max(-left, 0) : width - max(-right, 0)]
    pads = ((max(top, 0), max(bottom, 0)), (max(left, 0), max(right, 0))) + ((0, 0),) * (arr.ndim - 2)
    if not any(a or b for a, b in pads):
        return arr
    return np.pad(arr, pads, mode="constant", constant_values=value)


class CenterPad(A.DualTransform):
    """Centre-pad the normalised image with 0 and the label with the ignore index to ``size``.

    Args:
        size: Target ``(h, w)`` (the crop size).
        image_fill: Image fill value (0 = mean colour after normalisation).
        ignore_index: Label fill value (255 in this project).
        p: Probability of applying; always 1 in the recipes.
    """

    def __init__(
        self, size: tuple[int, int], image_fill: float = 0.0, ignore_index: int = 255, p: float = 1.0
    ) -> None:
        super().__init__(p=p)
        self.size = as_pair(size, "size")
        self.image_fill = image_fill
        self.ignore_index = ignore_index

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return center_pad(img, self.size, self.image_fill)

    def apply_to_mask(self, mask: np.ndarray, **params: Any) -> np.ndarray:
        return center_pad(mask, self.size, self.ignore_index)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("size", "image_fill", "ignore_index")
