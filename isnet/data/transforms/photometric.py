"""mmseg-style photometric distortion with sssegmentation's parameters and step order.

Steps (each one is applied with probability 0.5 and ends with clip to [0, 255] and a cast to uint8,
which truncates):

1. brightness: ``x + U[-32, 32)``;
2. mode ``randint(2)``: if 1, contrast ``x * U[0.5, 1.5)`` here;
3. saturation: ``S * U[0.5, 1.5)`` in OpenCV 8-bit HSV;
4. hue: ``H = (H + randint(-18, 18)) mod 180`` (deltas -18..17);
5. if mode 0, contrast here.

Colour order. The reference holds BGR images and converts them with ``cv2.COLOR_RGB2HSV``, so its HSV
values are those of the channel-swapped colour. Our images are RGB; converting them with
``cv2.COLOR_BGR2HSV`` / ``COLOR_HSV2BGR`` computes exactly the same HSV values from the same picture
(the two swaps cancel). The result is therefore bit-identical to the reference applied to the BGR copy
of the image for the same drawn parameters, and the distribution of outputs is the same. Saturation is
symmetric in the channels, so it is the true saturation change; the hue step shifts the *true* hue by
``-delta`` (the reference's quirk, kept on purpose).
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np

__all__ = ["PhotoMetricDistortion", "convert"]


def convert(img: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
    """``clip(x * alpha + beta, 0, 255)`` in float32, cast (truncated) to uint8, as the reference.

    The result depends only on each uint8 value, so it is computed once for the 256 values and applied
    as a lookup table (same float32 arithmetic, several times faster on large images).
    """
    table = np.clip(np.arange(256, dtype=np.float32) * alpha + beta, 0, 255).astype(np.uint8)
    return cv2.LUT(np.ascontiguousarray(img, dtype=np.uint8), table)


class PhotoMetricDistortion(A.ImageOnlyTransform):
    """Random brightness, contrast, saturation and hue, in the reference's order (image only).

    Args:
        brightness_delta: Brightness offset bound (32).
        contrast_range: Contrast factor range (0.5, 1.5).
        saturation_range: Saturation factor range (0.5, 1.5).
        hue_delta: Hue offset bound in OpenCV units (18, i.e. 36 degrees).
        p: Probability of running the whole block (the reference always runs it).
    """

    def __init__(
        self,
        brightness_delta: int = 32,
        contrast_range: tuple[float, float] = (0.5, 1.5),
        saturation_range: tuple[float, float] = (0.5, 1.5),
        hue_delta: int = 18,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        self.brightness_delta = brightness_delta
        self.contrast_range = contrast_range
        self.saturation_range = saturation_range
        self.hue_delta = hue_delta

    def get_params(self) -> dict[str, Any]:
        """Draw every step's on/off flag and value, in the reference's order; ``None`` skips the step."""
        rng = self.random_generator

        def coin() -> bool:  # np.random.randint(2) in the reference: apply when it draws 1
            return bool(rng.integers(2))

        delta = self.brightness_delta
        params: dict[str, Any] = {"brightness": float(rng.uniform(-delta, delta)) if coin() else None}
        params["contrast_first"] = coin()
        params["contrast"] = float(rng.uniform(*self.contrast_range)) if coin() else None
        params["saturation"] = float(rng.uniform(*self.saturation_range)) if coin() else None
        params["hue"] = int(rng.integers(-self.hue_delta, self.hue_delta)) if coin() else None
        return params

    def apply(
        self,
        img: np.ndarray,
        brightness: float | None,
        contrast_first: bool,
        contrast: float | None,
        saturation: float | None,
        hue: int | None,
        **params: Any,
    ) -> np.ndarray:
        """Distort an RGB uint8 image (H, W, 3) with the drawn parameters."""
        if brightness is not None:
            img = convert(img, beta=brightness)
        if contrast_first and contrast is not None:
            img = convert(img, alpha=contrast)
        if saturation is not None:
            # BGR2HSV on RGB data = the reference's RGB2HSV on BGR data (see module docstring).
            hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
            hsv[..., 1] = convert(hsv[..., 1], alpha=saturation)
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        if hue is not None:
            hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
            hsv[..., 0] = (hsv[..., 0].astype(np.int64) + hue) % 180
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
        if not contrast_first and contrast is not None:
            img = convert(img, alpha=contrast)
        return img

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("brightness_delta", "contrast_range", "saturation_range", "hue_delta")
