"""Cast the label to int64, the dtype the loss and the metrics index with."""

from __future__ import annotations

from typing import Any

import albumentations as A
import numpy as np

__all__ = ["MaskToInt64"]


class MaskToInt64(A.DualTransform):
    """Leave the image alone and cast the mask to ``int64`` (place it before ``ToTensorV2``).

    cv2 steps return uint8/int32 labels; ``torch.nn.CrossEntropyLoss`` needs int64 targets.
    """

    def __init__(self, p: float = 1.0) -> None:
        super().__init__(p=p)

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return img

    def apply_to_mask(self, mask: np.ndarray, **params: Any) -> np.ndarray:
        return mask.astype(np.int64, copy=False)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ()
