"""Random-ratio rescale of sssegmentation's ``Resize`` (``pipelines/transforms.py``).

The reference draws ``r ~ U[low, high)`` and scales a base size ``(A, B)`` to ``(int(A*r), int(B*r))``.
With ``keep_ratio`` the image is rescaled by ``s = min(max(target)/max(h, w), min(target)/min(h, w))``
to ``(int(w*s + 0.5), int(h*s + 0.5))`` (cv2 ``(width, height)`` order); without it the image becomes the
target itself, long side along the image's long side (a square for LIP). The same class with
``ratio_range=None`` is the deterministic test-time resize.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np

from isnet.utils.image import rescaled_size
from isnet.utils.pairs import as_pair

__all__ = ["RandomResizeRatio"]


class RandomResizeRatio(A.DualTransform):
    """Rescale by a random ratio of a base size, as the reference ``Resize`` does.

    Args:
        scale: Base size ``(A, B)``, e.g. ``(2048, 512)`` for ADE20k, ``(520, 520)`` for LIP.
        ratio_range: ``(low, high)`` for ``r ~ U[low, high)``; ``None`` for no jitter (test time).
        keep_ratio: Keep the aspect ratio (see module docstring); ``False`` for LIP.
        resize_mask: Also resize the mask (nearest). ``False`` at test time, where the label stays at
            its original resolution for evaluation.
        p: Probability of applying; the reference always applies it.
    """

    def __init__(
        self,
        scale: tuple[int, int] = (2048, 512),
        ratio_range: tuple[float, float] | None = (0.5, 2.0),
        keep_ratio: bool = True,
        resize_mask: bool = True,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.scale = as_pair(scale, "scale")
        self.ratio_range = ratio_range
        self.keep_ratio = keep_ratio
        self.resize_mask = resize_mask

    def get_params(self) -> dict[str, Any]:
        if self.ratio_range is None:
            return {"ratio": 1.0}
        low, high = self.ratio_range
        # Same draw as np.random.random_sample() * (high - low) + low in the reference: U[low, high).
        return {"ratio": float(self.random_generator.random() * (high - low) + low)}

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """Turn the ratio into the output ``(h, w)`` of this image (see the module docstring)."""
        height, width = params["shape"][:2]
        target = (int(self.scale[0] * params["ratio"]), int(self.scale[1] * params["ratio"]))
        return {"out_hw": rescaled_size(height, width, target, self.keep_ratio)}

    def apply(self, img: np.ndarray, out_hw: tuple[int, int], **params: Any) -> np.ndarray:
        return cv2.resize(img, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_LINEAR)

    def apply_to_mask(self, mask: np.ndarray, out_hw: tuple[int, int], **params: Any) -> np.ndarray:
        """Resize the label with nearest neighbour, or leave it untouched (``resize_mask=False``)."""
        if not self.resize_mask:
            return mask
        return cv2.resize(mask, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_NEAREST)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("scale", "ratio_range", "keep_ratio", "resize_mask")
