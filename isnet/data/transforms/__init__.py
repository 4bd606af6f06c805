"""Data transforms reproducing sssegmentation's ISNet pipelines, as albumentations 2.0 transforms.

Public entry points are :func:`build_train_transforms` and :func:`build_test_transforms`, which check their
arguments; the single transforms are exported for reuse and testing.
"""

from __future__ import annotations

from .compose import TorchSeededCompose
from .crop import CatMaxRatioCrop, crop_is_accepted, select_crop
from .flip import HorizontalFlipSwapPairs
from .padding import CenterPad, center_pad
from .photometric import PhotoMetricDistortion
from .pipelines import MaskToInt64, build_test_transforms, build_train_transforms
from .resize import RandomResizeRatio
from .rotate import RandomRotation

__all__ = [
    "CatMaxRatioCrop",
    "CenterPad",
    "HorizontalFlipSwapPairs",
    "MaskToInt64",
    "PhotoMetricDistortion",
    "RandomResizeRatio",
    "RandomRotation",
    "TorchSeededCompose",
    "build_test_transforms",
    "build_train_transforms",
    "center_pad",
    "crop_is_accepted",
    "select_crop",
]
