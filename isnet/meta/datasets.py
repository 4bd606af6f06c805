"""Dataset facts, one entry per dataset: classes, palette, label map, normalisation, flip pairs, pipelines, splits.

Everything here is plain Python (no torch, numpy, Lightning, albumentations or OpenCV), so the model zoo, the
command lines and the docs read the facts without importing the data stack. The DataModules
(:mod:`isnet.data`) and the transforms (:mod:`isnet.data.transforms`) take their defaults from here.
Pipelines follow sssegmentation ``configs/_base_/datasets/*``.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field
from typing import Any

from isnet.meta.classes import (
    ADE20K_CLASSES,
    ADE20K_PALETTE,
    CITYSCAPES_LABELS,
    COCOSTUFF_CLASSES,
    COCOSTUFF_PALETTE,
    LIP_CLASSES,
    LIP_PALETTE,
)

__all__ = [
    "DATASETS",
    "IGNORE_INDEX",
    "IMAGENET_MEAN_255",
    "IMAGENET_STD_255",
    "LIP_FLIP_PAIRS",
    "DatasetInfo",
    "dataset_info",
    "default_palette",
]

IGNORE_INDEX = 255  # the label value that is not evaluated and carries no loss
# ImageNet RGB mean and std in 0-255 units (the reference's ``Normalize``).
IMAGENET_MEAN_255: tuple[float, float, float] = (123.675, 116.28, 103.53)
IMAGENET_STD_255: tuple[float, float, float] = (58.395, 57.12, 57.375)
# LIP left/right pairs swapped by a horizontal flip: arms, legs, shoes (0-based labels).
LIP_FLIP_PAIRS: tuple[tuple[int, int], ...] = ((14, 15), (16, 17), (18, 19))


@dataclass(frozen=True)
class DatasetInfo:
    """The facts of one dataset.

    Attributes:
        name: Key (``ade20k``), also the Hydra ``data=`` name.
        title: Display name (``ADE20k``).
        class_names: K names (empty when read from the data, e.g. ``folder``).
        palette: K RGB triples.
        label_map: Raw label value -> train id (``IGNORE_INDEX`` = ignored, unlisted values are invalid);
            ``None``: labels are used as stored.
        train_pipeline: Keyword arguments of ``isnet.data.transforms.build_train_transforms`` besides the
            normalisation (``scale``, ``crop_size``, ``ratio_range``, ``flip_pairs``, ``lip``).
        test_pipeline: Keyword arguments of ``build_test_transforms`` (``scale``: ``None`` = no resize,
            ``keep_ratio``).
        batch_size: The reference's GLOBAL train batch (R-50/R-101 recipes).
        splits: ``(train, val, test)`` split names; test is the split the model zoo reports.
    """

    name: str
    title: str
    class_names: tuple[str, ...] = ()
    palette: tuple[tuple[int, int, int], ...] = ()
    label_map: dict[int, int] | None = None
    train_pipeline: dict[str, Any] = field(default_factory=dict)
    test_pipeline: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 16
    splits: tuple[str, str, str] = ("train", "val", "val")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def flip_pairs(self) -> tuple[tuple[int, int], ...]:
        """Label pairs swapped by a horizontal flip (LIP's left/right parts)."""
        return self.train_pipeline.get("flip_pairs", ())

    @property
    def eval_split(self) -> str:
        return self.splits[2]


def _train(scale: tuple[int, int], crop_size: tuple[int, int], **extra: Any) -> dict[str, Any]:
    return {
        "scale": scale,
        "crop_size": crop_size,
        "ratio_range": (0.5, 2.0),
        "flip_pairs": (),
        "lip": False,
        **extra,
    }


def _shift_down(num_classes: int) -> dict[int, int]:
    """Raw 0 and 255 ignored, raw v in 1..K -> v - 1 (mmseg ``reduce_zero_label``); other values invalid."""
    return {0: IGNORE_INDEX, IGNORE_INDEX: IGNORE_INDEX, **{v: v - 1 for v in range(1, num_classes + 1)}}


_CS_TRAIN = sorted((row for row in CITYSCAPES_LABELS if 0 <= row[2] < 255), key=lambda row: row[2])
_ADE_PIPELINES = {"train_pipeline": _train((2048, 512), (512, 512)),
                  "test_pipeline": {"scale": (2048, 512), "keep_ratio": True}}  # fmt: skip

DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo("ade20k", "ADE20k", ADE20K_CLASSES, ADE20K_PALETTE, _shift_down(150), **_ADE_PIPELINES),
        DatasetInfo(
            "cocostuff10k",
            "COCO-Stuff-10k",
            COCOSTUFF_CLASSES,
            COCOSTUFF_PALETTE,
            _shift_down(182),
            splits=("train", "test", "test"),
            **_ADE_PIPELINES,
        ),
        DatasetInfo(
            "cityscapes",
            "Cityscapes",
            tuple(row[0] for row in _CS_TRAIN),
            tuple(row[3] for row in _CS_TRAIN),
            # labelId -> trainId; the license plate's id -1 is stored as 255 in uint8 PNGs.
            {row[1] % 256: row[2] if 0 <= row[2] < 255 else IGNORE_INDEX for row in CITYSCAPES_LABELS},
            train_pipeline=_train((2048, 1024), (512, 1024)),
            test_pipeline={"scale": (2048, 1024), "keep_ratio": True},
        ),
        DatasetInfo(
            "lip",
            "LIP",
            LIP_CLASSES,
            LIP_PALETTE,
            None,
            # square resize int(520 r), r ~ U[0.75, 1.25), crop, flip with pair swap, rotation
            train_pipeline=_train(
                (520, 520), (473, 473), ratio_range=(0.75, 1.25), flip_pairs=LIP_FLIP_PAIRS, lip=True
            ),
            test_pipeline={"scale": (473, 473), "keep_ratio": False},
            batch_size=32,
        ),
        # Custom data: classes from classes.yaml, the ADE20k pipelines unless overridden.
        DatasetInfo("folder", "folder", **_ADE_PIPELINES),
        # Procedural scenes: classes from num_classes, train scale from the image size, evaluated as generated.
        DatasetInfo(
            "synthetic",
            "synthetic",
            test_pipeline={"scale": None, "keep_ratio": True},
            batch_size=8,
            splits=("train", "val", "test"),
        ),
    )
}


def dataset_info(name: str) -> DatasetInfo:
    """The facts of dataset ``name``.

    Raises:
        KeyError: unknown name; the message lists the known ones.
    """
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}") from None


def default_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """A deterministic palette of ``num_classes`` RGB triples with well separated hues (data without one)."""
    golden = 0.618033988749895  # golden-ratio hue steps keep neighbouring ids far apart in colour
    colours = []
    for k in range(num_classes):
        hue = (k * golden) % 1.0
        value = 0.95 if k % 2 == 0 else 0.7
        r, g, b = colorsys.hsv_to_rgb(hue, 0.8, value)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours
