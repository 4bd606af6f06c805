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
:mod:`.photometric`). The builders check their arguments; the transforms they build trust them.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import albumentations as A
import numpy as np
from albumentations.pytorch import ToTensorV2

from isnet.errors import ConfigError
from isnet.meta.datasets import IMAGENET_MEAN_255, IMAGENET_STD_255

from .compose import TorchSeededCompose
from .crop import CatMaxRatioCrop
from .flip import HorizontalFlipSwapPairs
from .padding import CenterPad
from .photometric import PhotoMetricDistortion
from .resize import RandomResizeRatio
from .rotate import RandomRotation

__all__ = ["MaskToInt64", "build_test_transforms", "build_train_transforms"]

LIP_ROTATE_PROB = 0.6
LIP_MAX_ANGLE = 30


class MaskToInt64(A.DualTransform):
    """Cast the mask to ``int64``, the dtype of the loss targets and the metrics (place it before ``ToTensorV2``)."""

    def __init__(self, p: float = 1.0) -> None:
        super().__init__(p=p)

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return img

    def apply_to_mask(self, mask: np.ndarray, **params: Any) -> np.ndarray:
        return mask.astype(np.int64, copy=False)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ()


def _require(ok: bool, name: str, what: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{name} must be {what}, got {value!r}")


def _real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _numbers(value: Any, length: int, low: float = float("-inf")) -> tuple[float, ...] | None:
    """``value`` as ``length`` floats, each a real number (not a bool) > ``low``; else ``None``."""
    try:
        items = () if isinstance(value, str | bytes) else tuple(value)
    except TypeError:
        return None
    ok = len(items) == length and all(map(_real, items))
    return tuple(float(v) for v in items) if ok and all(v > low for v in items) else None


def _mean_std(mean: Any, std: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """RGB normalisation statistics in 0-255 units as two tuples of three floats (std > 0)."""
    mean_, std_ = _numbers(mean, 3), _numbers(std, 3, low=0.0)
    _require(mean_ is not None, "mean", "three numbers (R, G, B) in 0-255 units", mean)
    _require(std_ is not None, "std", "three positive numbers (R, G, B) in 0-255 units", std)
    return mean_, std_  # type: ignore[return-value]


def _flip_pairs(flip_pairs: Iterable[Sequence[int]], ignore_index: int) -> tuple[tuple[int, int], ...]:
    """Pairs of two different non-negative int labels, each label in one pair only, none the ignore index."""
    try:
        pairs = [tuple(pair) for pair in flip_pairs]
    except TypeError:
        pairs = [()]
    labels = [v for pair in pairs for v in pair]
    ok = all(len(p) == 2 and p[0] != p[1] for p in pairs) and all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0 for v in labels
    )
    _require(ok, "flip_pairs", "(a, b) pairs of two different non-negative int labels", flip_pairs)
    _require(len(set(labels)) == len(labels), "each label", "in one flip pair only", flip_pairs)
    _require(ignore_index not in labels, "flip_pairs", f"free of ignore_index={ignore_index}", flip_pairs)
    return tuple((int(a), int(b)) for a, b in pairs)


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

    Args (per-dataset values: ``isnet.meta.dataset_info(name).train_pipeline``):
        scale: Base resize size ``(A, B)``.
        crop_size: Crop and padding size ``(h, w)``.
        ratio_range: Resize jitter ``(low, high)``.
        cat_max_ratio: Largest share of one label in an accepted crop, in (0, 1].
        flip_prob: Horizontal flip probability.
        flip_pairs: Label pairs swapped on flip (LIP's left/right parts).
        lip: LIP recipe: resize without keeping the aspect ratio, rotate after the flip.
        ignore_index: Ignore label (0..255), used by the crop check, rotation border and padding.
        mean: RGB mean in 0-255 units.
        std: RGB std in 0-255 units.

    Returns:
        A :class:`~isnet.data.transforms.compose.TorchSeededCompose` (an ``A.Compose``).

    Raises:
        ConfigError: A setting is invalid; the message names it.
    """
    # scale and crop_size are checked by as_pair in the transforms built below
    ratio = _numbers(ratio_range, 2, low=0.0)
    ok = ratio is not None and ratio[0] <= ratio[1]
    _require(ok, "ratio_range", "a (low, high) pair with 0 < low <= high", ratio_range)
    _require(
        _real(cat_max_ratio) and 0 < cat_max_ratio <= 1, "cat_max_ratio", "a number in (0, 1]", cat_max_ratio
    )
    _require(_real(flip_prob) and 0 <= flip_prob <= 1, "flip_prob", "a probability in [0, 1]", flip_prob)
    _require(isinstance(lip, bool), "lip", "True or False", lip)
    ok = isinstance(ignore_index, numbers.Integral) and not isinstance(ignore_index, bool)
    _require(ok and 0 <= ignore_index <= 255, "ignore_index", "an int in [0, 255]", ignore_index)
    pairs = _flip_pairs(flip_pairs, ignore_index)
    mean, std = _mean_std(mean, std)
    flip_prob, ignore_index = float(flip_prob), int(ignore_index)

    flip = HorizontalFlipSwapPairs(pairs, p=flip_prob) if pairs else A.HorizontalFlip(p=flip_prob)
    transforms: list[Any] = [
        RandomResizeRatio(scale, ratio, keep_ratio=not lip),
        CatMaxRatioCrop(crop_size, cat_max_ratio=float(cat_max_ratio), ignore_index=ignore_index),
        flip,
    ]
    if lip:
        transforms.append(RandomRotation(LIP_MAX_ANGLE, ignore_index=ignore_index, p=LIP_ROTATE_PROB))
    transforms += [
        PhotoMetricDistortion(),
        A.Normalize(mean=mean, std=std, max_pixel_value=1.0, p=1.0),
        CenterPad(crop_size, ignore_index=ignore_index),
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

    Args (per-dataset values: ``isnet.meta.dataset_info(name).test_pipeline``):
        scale: Resize size; with ``keep_ratio`` the short side goes to ``min(scale)`` unless the long side
            would exceed ``max(scale)``.
        keep_ratio: Keep the aspect ratio (``False`` for LIP: exactly ``scale``).
        mean: RGB mean in 0-255 units.
        std: RGB std in 0-255 units.

    Returns:
        An ``A.Compose``.
    """
    mean, std = _mean_std(mean, std)
    _require(isinstance(keep_ratio, bool), "keep_ratio", "True or False", keep_ratio)
    return A.Compose(
        [
            RandomResizeRatio(scale, ratio_range=None, keep_ratio=keep_ratio, resize_mask=False),
            A.Normalize(mean=mean, std=std, max_pixel_value=1.0, p=1.0),
            MaskToInt64(),
            ToTensorV2(),
        ]
    )
