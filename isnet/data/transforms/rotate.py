"""Random rotation of sssegmentation's ``RandomRotation`` (LIP recipe: ``prob=0.6, angle_upper=30``).

With probability ``p`` the sample is rotated by an integer angle drawn like ``np.random.randint(-30, 30)``
(so -30..29 degrees) about ``(w/2, h/2)`` with ``cv2.getRotationMatrix2D`` at scale 1, keeping the size.
The image uses bicubic interpolation and a black border; the label uses nearest neighbour and the ignore
value as border, so the corners brought in by the rotation are not trained on.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np

__all__ = ["RandomRotation"]


class RandomRotation(A.DualTransform):
    """Rotate about the centre by a random integer angle in ``[-max_angle, max_angle)``.

    Args:
        max_angle: Angle bound in degrees (30 for LIP); the upper bound is excluded as in the reference.
        image_fill: Border value for the image (0 = black in raw pixels).
        ignore_index: Border value for the label (255 in this project).
        p: Probability of rotating (0.6 for LIP).
    """

    def __init__(self, max_angle: int = 30, image_fill: float = 0.0, ignore_index: int = 255, p: float = 0.6):
        super().__init__(p=p)
        self.max_angle = max_angle
        self.image_fill = image_fill
        self.ignore_index = ignore_index

    def get_params(self) -> dict[str, Any]:
        return {"angle": int(self.random_generator.integers(-self.max_angle, self.max_angle))}

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        matrix = cv2.getRotationMatrix2D(center=(width / 2, height / 2), angle=params["angle"], scale=1)
        return {"matrix": matrix}

    def apply(self, img: np.ndarray, matrix: np.ndarray, **params: Any) -> np.ndarray:
        height, width = img.shape[:2]
        return cv2.warpAffine(
            img, matrix, (width, height), flags=cv2.INTER_CUBIC, borderValue=(self.image_fill,) * 4
        )

    def apply_to_mask(self, mask: np.ndarray, matrix: np.ndarray, **params: Any) -> np.ndarray:
        height, width = mask.shape[:2]
        return cv2.warpAffine(
            mask, matrix, (width, height), flags=cv2.INTER_NEAREST, borderValue=float(self.ignore_index)
        )

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("max_angle", "image_fill", "ignore_index")
