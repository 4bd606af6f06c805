"""Procedural segmentation scenes: a textured background with textured shapes of K classes.

No files and no downloads: sample ``i`` of a split is generated from ``(seed, split, i)``, so every run,
worker and rank sees the same data. Each class has its own colour and texture (flat, stripes, checker,
rings, ...), so a small ISNet learns the task on a CPU in minutes, while occlusion, shape boundaries,
per-image colour jitter and pixel noise keep it from being trivial.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from torch.utils.data import Dataset

from isnet.data.datamodule import SegDataModule
from isnet.data.datasets.base import SegDataset
from isnet.errors import ConfigError
from isnet.meta import IGNORE_INDEX, IMAGENET_MEAN_255, IMAGENET_STD_255
from isnet.utils.pairs import as_pair

__all__ = [
    "SyntheticDataModule",
    "SyntheticSegDataset",
    "synthetic_class_colours",
    "synthetic_class_names",
    "write_folder_dataset",
]

_SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
_N_PATTERNS = 5


def synthetic_class_colours(num_classes: int) -> np.ndarray:
    """Base RGB colour of every class, float32 (K, 3) in 0-255: hues spread evenly, background (0) grey-ish."""
    colours = np.zeros((num_classes, 3), dtype=np.float32)
    colours[0] = (118, 112, 104)
    for k in range(1, num_classes):
        hue = (k - 1) / max(num_classes - 1, 1)
        value = 0.85 if k % 2 else 0.6
        colours[k] = np.array(colorsys.hsv_to_rgb(hue, 0.75, value), dtype=np.float32) * 255.0
    return colours


def synthetic_class_names(num_classes: int) -> list[str]:
    """``background`` (class 0) and ``shape_1 ... shape_{K-1}``."""
    return ["background"] + [f"shape_{k}" for k in range(1, num_classes)]


def _pattern(
    kind: int, yy: np.ndarray, xx: np.ndarray, freq: float, angle: float, phase: float
) -> np.ndarray:
    """Texture in [-1, 1] of one of ``_N_PATTERNS`` kinds over the pixel grid."""
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    if kind == 0:  # smooth blotches
        return 0.5 * np.sin(u * freq * 0.5 + phase) * np.cos(v * freq * 0.5 - phase)
    if kind == 1:  # stripes
        return np.sign(np.sin(u * freq + phase))
    if kind == 2:  # checker
        return np.sign(np.sin(u * freq + phase) * np.sin(v * freq + phase))
    if kind == 3:  # rings
        return np.sin(np.sqrt(u * u + v * v) * freq + phase)
    return np.sin(u * freq + phase) * 0.8  # soft waves


@dataclass(eq=False, repr=False)
class SyntheticSegDataset(SegDataset):
    """``length`` deterministic scenes of ``image_size`` (h, w) with ``num_classes`` classes (0 = background).

    ``split`` ("train", "val" or "test") and ``seed`` select independent random streams; the other fields are
    those of :class:`SyntheticDataModule` and :class:`~isnet.data.datasets.base.SegDataset`.
    """

    num_classes: int
    image_size: tuple[int, int]
    length: int
    split: str = "train"
    seed: int = 0
    train: bool = True
    transform: Any = None
    boundary_ignore: int = 0
    noise_std: float = 8.0
    mean: Sequence[float] = IMAGENET_MEAN_255
    std: Sequence[float] = IMAGENET_STD_255

    def __post_init__(self) -> None:
        self.colours = synthetic_class_colours(self.num_classes)
        # Per-class texture: (pattern kind, frequency, angle), fixed by K only.
        rng = np.random.default_rng([self.num_classes, 7919])
        self.textures = [
            (k % _N_PATTERNS, float(rng.uniform(0.35, 1.1)), float(rng.uniform(0, np.pi)))
            for k in range(self.num_classes)
        ]

    def __len__(self) -> int:
        return self.length

    def _draw_label(self, rng: np.random.Generator) -> np.ndarray:
        h, w = self.image_size
        label = np.zeros((h, w), dtype=np.uint8)
        side = min(h, w)
        for _ in range(int(rng.integers(1, 6))):
            cls = int(rng.integers(1, self.num_classes))
            cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
            size = max(2, int(side * rng.uniform(0.12, 0.4)))
            kind = int(rng.integers(0, 4))
            if kind == 0:
                cv2.circle(label, (cx, cy), size, cls, thickness=-1)
            elif kind == 1:
                ry = max(2, int(size * rng.uniform(0.4, 1.0)))
                angle = float(rng.uniform(0, 180))
                cv2.ellipse(label, (cx, cy), (size, ry), angle, 0, 360, cls, thickness=-1)
            elif kind == 2:
                dy, dx = int(size * rng.uniform(0.5, 1.2)), int(size * rng.uniform(0.5, 1.2))
                cv2.rectangle(label, (cx - dx, cy - dy), (cx + dx, cy + dy), cls, thickness=-1)
            else:
                pts = rng.integers(-size, size + 1, size=(3, 2)) + np.array([cx, cy])
                cv2.fillPoly(label, [pts.astype(np.int32)], cls)
        return label

    def sample_name(self, index: int) -> str:
        return f"synthetic_{self.split}_{index:06d}"

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Render sample ``index``: (h, w, 3) uint8 RGB and (h, w) uint8 labels in [0, K) or 255."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} synthetic samples.")
        rng = np.random.default_rng([self.seed, _SPLIT_CODES[self.split], index])
        label = self._draw_label(rng)
        h, w = self.image_size
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        image = np.zeros((h, w, 3), dtype=np.float32)
        for k in np.unique(label):
            kind, freq, angle = self.textures[k]
            tex = _pattern(kind, yy, xx, freq, angle, float(rng.uniform(0, 2 * np.pi)))
            region = label == k
            image[region] = self.colours[k] * (0.78 + 0.22 * tex[region, None])
        # Per-image illumination and colour cast, then sensor noise.
        image = image * rng.uniform(0.8, 1.2) + rng.uniform(-12, 12, size=3)
        image += rng.normal(0.0, self.noise_std, size=image.shape)
        image = np.clip(image, 0, 255).astype(np.uint8)
        if self.boundary_ignore > 0:
            k = 2 * self.boundary_ignore + 1
            kernel = np.ones((k, k), np.uint8)
            edge = cv2.dilate(label, kernel) != cv2.erode(label, kernel)
            label[edge] = IGNORE_INDEX
        return image, label


class SyntheticDataModule(SegDataModule, dataset="synthetic"):
    """Procedural dataset for fast CPU tests and smoke runs (no files).

    Args:
        num_classes: K >= 2, including the background class 0.
        image_size: Side or (h, w) of every image (odd sizes are fine).
        num_train: Number of train samples.
        num_val: Number of val (and test) samples.
        augment: Apply the full reference train pipeline (resize jitter, crop, flip, photometric) instead
            of using the scenes as they are.
        boundary_ignore: Width of an ignore band (255) along shape borders, 0 = none.
        noise_std: Pixel noise std (0-255 units).
        crop_size: Train crop when ``augment`` is true; defaults to ``image_size``.
        **kwargs: :class:`SegDataModule` arguments (batch_size, seed, ...).
    """

    def __init__(
        self,
        num_classes: int = 5,
        image_size: int | Sequence[int] = 64,
        num_train: int = 256,
        num_val: int = 32,
        augment: bool = False,
        boundary_ignore: int = 0,
        noise_std: float = 8.0,
        crop_size: int | Sequence[int] | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        **kwargs: Any,
    ) -> None:
        if not isinstance(num_classes, int) or not 2 <= num_classes <= 255:
            raise ConfigError(f"num_classes must be an int in [2, 255], got {num_classes!r}.")
        size = as_pair(image_size, "image_size")
        if min(size) < 8:
            raise ConfigError(f"image_size must be at least 8 pixels per side, got {list(size)}.")
        for setting, value in (("num_train", num_train), ("num_val", num_val)):
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{setting} must be a positive int, got {value!r}.")
        if boundary_ignore < 0:
            raise ConfigError(f"boundary_ignore must be >= 0, got {boundary_ignore!r}.")
        if noise_std < 0:
            raise ConfigError(f"noise_std must be >= 0, got {noise_std!r}.")
        kwargs.setdefault("scale", (4 * max(size), min(size)))
        crop_size = size if crop_size is None else crop_size
        super().__init__(crop_size=crop_size, num_workers=num_workers, pin_memory=pin_memory, **kwargs)
        self.image_size = size
        self.num_train = num_train
        self.num_val = num_val
        self.augment = bool(augment)
        self.boundary_ignore = int(boundary_ignore)
        self.noise_std = float(noise_std)
        self.class_names = synthetic_class_names(num_classes)
        self.palette = [tuple(int(c) for c in row) for row in synthetic_class_colours(num_classes)]

    def make_dataset(self, split: str, train: bool) -> Dataset:
        transform = self.build_train_transform() if (train and self.augment) else None
        return SyntheticSegDataset(
            num_classes=self.num_classes,
            image_size=self.image_size,
            length=self.num_train if split == "train" else self.num_val,
            split=split,
            seed=self.seed,
            train=train,
            transform=transform,
            boundary_ignore=self.boundary_ignore,
            noise_std=self.noise_std,
            mean=self.mean,
            std=self.std,
        )


def write_folder_dataset(
    root: str | Path,
    num_classes: int = 3,
    num_train: int = 64,
    num_val: int = 16,
    image_size: int | Sequence[int] = 64,
    seed: int = 1,
) -> Path:
    """Write synthetic scenes as a ``folder`` dataset (``data=folder``): ``images/{train,val}/*.png``,
    ``masks/{train,val}/*.png`` and ``classes.yaml``, e.g. to try fine-tuning without data of one's own.

    Refuses a ``root`` that exists and is not empty. Returns ``root``.
    """
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{root} exists and is not an empty folder; choose a new one")
    size = as_pair(image_size, "image_size")
    for split, length in (("train", num_train), ("val", num_val)):
        dataset = SyntheticSegDataset(num_classes, size, length, split=split, seed=seed)
        for folder in ("images", "masks"):
            (root / folder / split).mkdir(parents=True, exist_ok=True)
        for index in range(length):
            image, label = dataset.load(index)
            stem = dataset.sample_name(index)
            cv2.imwrite(str(root / "images" / split / f"{stem}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(root / "masks" / split / f"{stem}.png"), label)
    palette = [[int(c) for c in row] for row in synthetic_class_colours(num_classes)]
    classes = {
        "classes": synthetic_class_names(num_classes),
        "palette": palette,
        "ignore_index": IGNORE_INDEX,
    }
    (root / "classes.yaml").write_text(yaml.safe_dump(classes, sort_keys=False, default_flow_style=None))
    return root
