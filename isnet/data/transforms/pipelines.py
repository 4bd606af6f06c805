"""Train and test pipelines of the sssegmentation ISNet dataset configs (``configs/_base_/datasets``).

Per-dataset arguments: ``isnet.meta.dataset_info(name).train_pipeline`` / ``.test_pipeline``.
Train (ADE20k, COCOStuff-10k, Cityscapes): random-ratio keep-ratio resize, category-ratio crop,
horizontal flip, photometric distortion, normalise, centred pad to the crop size, to tensor.
Train (LIP): square resize ``int(520 * r)``, ``r ~ U[0.75, 1.25)``, crop 473, flip with left/right label
swap, rotation (p 0.6, -30..29 degrees), photometric distortion, normalise, pad, to tensor. The
reference's ``EdgeExtractor`` output is unused by ISNet and is left out.
Test: deterministic resize of the image only (keep-ratio, or 473x473 for LIP), normalise, to tensor; the
label keeps its original resolution because evaluation resizes predictions back to it.

Inputs are RGB uint8 images (the reference reads BGR and converts to RGB inside ``Normalize``; every
step before it is colour-order independent except the photometric HSV steps, handled in
:mod:`.photometric`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import albumentations as A
from albumentations.pytorch import ToTensorV2

from isnet.errors import ConfigError
from isnet.meta.datasets import IMAGENET_MEAN_255, IMAGENET_STD_255

from .cast import MaskToInt64
from .checks import check_mean_std, check_probability
from .compose import TorchSeededCompose
from .crop import CatMaxRatioCrop
from .flip import HorizontalFlipSwapPairs, check_flip_pairs
from .padding import CenterPad
from .photometric import PhotoMetricDistortion
from .resize import RandomResizeRatio
from .rotate import RandomRotation

__all__ = ["build_test_transforms", "build_train_transforms"]

LIP_ROTATE_PROB = 0.6
LIP_MAX_ANGLE = 30


def build_train_transforms(
    scale: tuple[int, int] = (2048, 512),
    crop_size: tuple[int, int] = (512, 512),
    ratio_range: tuple[float, float] = (0.5, 2.0),
    cat_max_ratio: float = 0.75,
    flip_prob: float = 0.5,
    flip_pairs: Iterable[Sequence[int]] = (),
    lip: bool = False,
    ignore_index: int = 255,
    mean: Sequence[float] = IMAGENET_MEAN_255,
    std: Sequence[float] = IMAGENET_STD_255,
) -> A.Compose:
    """Build the reference's training pipeline.

    Call the result with ``image=`` (H, W, 3) uint8 RGB and ``mask=`` (H, W) integer labels (255 =
    ignore). It returns ``image`` float32 (3, h, w) normalised and ``mask`` int64 (h, w), both at
    ``crop_size``.

    Args:
        scale: Base resize size ``(A, B)``: (2048, 512) ADE20k/COCOStuff, (2048, 1024) Cityscapes,
            (520, 520) LIP.
        crop_size: Crop and padding size ``(h, w)``: (512, 512), (512, 1024), (473, 473).
        ratio_range: Resize jitter ``(low, high)``: (0.5, 2.0), LIP (0.75, 1.25).
        cat_max_ratio: Largest share of one label in an accepted crop.
        flip_prob: Horizontal flip probability.
        flip_pairs: Label pairs swapped on flip (LIP: ``isnet.meta.datasets.LIP_FLIP_PAIRS``).
        lip: LIP recipe: resize without keeping the aspect ratio and rotate (p 0.6, -30..29 degrees)
            after the flip.
        ignore_index: Ignore label, used by the crop check, rotation border and padding.
        mean: RGB mean in 0-255 units.
        std: RGB std in 0-255 units.

    Returns:
        A :class:`~isnet.data.transforms.compose.TorchSeededCompose` (an ``A.Compose``).
    """
    # scale, crop_size, ratio_range, cat_max_ratio and ignore_index are checked by the transforms built below
    flip_prob = check_probability("flip_prob", flip_prob)
    pairs = check_flip_pairs(flip_pairs)
    mean, std = check_mean_std(mean, std)
    if not isinstance(lip, bool):
        raise ConfigError(f"lip must be True or False, got {lip!r}")
    if ignore_index in {label for pair in pairs for label in pair}:
        raise ConfigError(f"flip_pairs must not contain ignore_index={ignore_index}, got {pairs!r}")

    flip = HorizontalFlipSwapPairs(pairs, p=flip_prob) if pairs else A.HorizontalFlip(p=flip_prob)
    transforms: list[Any] = [
        RandomResizeRatio(scale, ratio_range, keep_ratio=not lip),
        CatMaxRatioCrop(crop_size, cat_max_ratio=cat_max_ratio, ignore_index=ignore_index),
        flip,
    ]
    if lip:
        transforms.append(
            RandomRotation(LIP_MAX_ANGLE, image_fill=0.0, ignore_index=ignore_index, p=LIP_ROTATE_PROB)
        )
    transforms += [
        PhotoMetricDistortion(),
        A.Normalize(mean=mean, std=std, max_pixel_value=1.0, p=1.0),
        CenterPad(crop_size, image_fill=0.0, ignore_index=ignore_index),
        MaskToInt64(),
        ToTensorV2(),
    ]
    return TorchSeededCompose(transforms)


def build_test_transforms(
    scale: tuple[int, int] = (2048, 512),
    keep_ratio: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN_255,
    std: Sequence[float] = IMAGENET_STD_255,
) -> A.Compose:
    """Build the reference's test pipeline (no randomness).

    Call the result with ``image=`` (H, W, 3) uint8 RGB and optionally ``mask=``. It returns ``image``
    float32 (3, h', w') resized and normalised and, if given, ``mask`` int64 (H, W) *unresized*.

    Args:
        scale: Resize size: (2048, 512) ADE20k/COCOStuff (short side 512 unless the long side would
            exceed 2048), (2048, 1024) Cityscapes, (473, 473) LIP.
        keep_ratio: Keep the aspect ratio (``False`` for LIP: exactly ``scale``).
        mean: RGB mean in 0-255 units.
        std: RGB std in 0-255 units.

    Returns:
        An ``A.Compose``.
    """
    mean, std = check_mean_std(mean, std)
    if not isinstance(keep_ratio, bool):
        raise ConfigError(f"keep_ratio must be True or False, got {keep_ratio!r}")
    return A.Compose(
        [
            RandomResizeRatio(scale, ratio_range=None, keep_ratio=keep_ratio, resize_mask=False),
            A.Normalize(mean=mean, std=std, max_pixel_value=1.0, p=1.0),
            MaskToInt64(),
            ToTensorV2(),
        ]
    )
