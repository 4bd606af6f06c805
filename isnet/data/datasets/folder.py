"""Custom datasets from a folder: ``images/`` + ``masks/`` (same stem) + ``classes.yaml``.

Layout::

    <root>/classes.yaml
    <root>/images/{train,val}/<stem>.<jpg|png|...>   <root>/masks/{train,val}/<stem>.png
    # or, without split folders (a seeded ``val_fraction`` of the stems becomes the val split):
    <root>/images/<stem>.<ext>                        <root>/masks/<stem>.png

``classes.yaml``::

    classes: [background, road, car]   # required: class names, index = train id
    palette: [[0, 0, 0], [128, 64, 128], [0, 0, 142]]   # optional RGB per class
    ignore_index: 255                  # optional: raw mask value meaning "ignore" (default 255)
    mapping: {0: 0, 7: 1, 26: 2}       # optional: raw value -> class index; unlisted values are errors

Masks are single-channel PNGs (8-bit grey or palette indices). Images are read like ``cv2.imread``,
which applies the EXIF orientation, so masks must match the image as displayed. The train/test pipelines
are the ADE20k ones unless overridden (scale, crop_size, test_scale, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from isnet.data.datamodule import FileSegDataModule
from isnet.data.datasets.base import SegSample, build_lut
from isnet.data.datasets.listing import IMAGE_SUFFIXES
from isnet.errors import ConfigError, DataError
from isnet.meta import IGNORE_INDEX, default_palette

__all__ = ["FolderDataModule", "load_classes_yaml"]

_LAYOUT = (
    "classes.yaml, images/{train,val}/<stem>.<jpg|png|...> + masks/{train,val}/<stem>.png, "
    "or images/<stem>.<ext> + masks/<stem>.png split by val_fraction (see isnet/data/datasets/folder.py)"
)


def load_classes_yaml(path: Path) -> dict[str, Any]:
    """Read and check ``classes.yaml`` (the errors name the key and the file).

    Returns:
        Dict with ``classes`` (list[str]), ``palette`` (list of RGB tuples), ``ignore_index`` (int) and
        ``lut`` (256-entry int16 table raw -> train id, 255 = ignore, -1 = invalid).
    """
    if not path.is_file():
        raise FileNotFoundError(f"Class file not found: {path}. Expected layout: {_LAYOUT}.")
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DataError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(content, dict):
        raise DataError(f"{path} must hold a mapping with a 'classes' key, got {type(content).__name__}.")
    classes = content.get("classes", content.get("names"))
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise DataError(f"{path}: 'classes' must be a non-empty list of class names, got {classes!r}.")
    k = len(classes)
    if k > 255:
        raise DataError(f"{path}: at most 255 classes are supported (255 is the ignore value), got {k}.")
    palette = content.get("palette")
    if palette is None:
        palette = default_palette(k)
    elif not (isinstance(palette, list) and len(palette) == k) or not all(
        isinstance(c, list | tuple) and len(c) == 3 and all(0 <= int(v) <= 255 for v in c) for c in palette
    ):
        raise DataError(
            f"{path}: 'palette' must be a list of {k} [r, g, b] triples in 0..255, got {palette!r}."
        )
    ignore = content.get("ignore_index", IGNORE_INDEX)
    if not isinstance(ignore, int) or not 0 <= ignore <= 255:
        raise DataError(f"{path}: 'ignore_index' must be an int in 0..255, got {ignore!r}.")
    mapping = content.get("mapping")
    if mapping is None and ignore < k:
        raise DataError(f"{path}: ignore_index {ignore} collides with class index {ignore}; add a 'mapping'.")
    if mapping is not None and not isinstance(mapping, dict):
        raise DataError(f"{path}: 'mapping' must be a dict raw value -> class index, got {mapping!r}.")
    for raw, train in (mapping or {}).items():
        if not (isinstance(raw, int) and 0 <= raw <= 255 and isinstance(train, int)):
            raise DataError(f"{path}: mapping entry {raw!r}: {train!r} must map 0..255 to a class index.")
        if not (0 <= train < k or train == IGNORE_INDEX):
            raise DataError(f"{path}: mapping {raw} -> {train} is outside [0, {k}) and not 255.")
    lut = build_lut({ignore: IGNORE_INDEX, **(mapping or {})}, identity=mapping is None)
    palette = [tuple(int(v) for v in c) for c in palette]
    return {"classes": list(classes), "palette": palette, "ignore_index": ignore, "lut": lut}


class FolderDataModule(FileSegDataModule, dataset="folder"):
    """Custom data in ``images/`` + ``masks/`` + ``classes.yaml`` (see the module docstring).

    Args:
        root: Dataset folder.
        val_fraction: Share of the stems used for ``val`` when there are no split folders.
        split_seed: Seed of that split (fixed, so the split never changes between runs).
        **kwargs: :class:`~isnet.data.datamodule.FileSegDataModule` / ``SegDataModule`` arguments.
    """

    layout = _LAYOUT

    def __init__(
        self, root: str | Path, val_fraction: float = 0.1, split_seed: int = 0, **kwargs: Any
    ) -> None:
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction!r}.")
        super().__init__(root=root, **kwargs)
        self.require()
        meta = load_classes_yaml(self.root / "classes.yaml")
        self.class_names = meta["classes"]
        self.palette = meta["palette"]
        self.raw_ignore_index = meta["ignore_index"]
        self.lut = meta["lut"]
        self.val_fraction = float(val_fraction)
        self.split_seed = int(split_seed)

    def _pairs(self, image_dir: Path, mask_dir: Path | None) -> list[SegSample]:
        samples = []
        for image in sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            mask = None if mask_dir is None else mask_dir / f"{image.stem}.png"
            if mask is not None and not mask.is_file():
                raise FileNotFoundError(f"Image {image} has no mask: expected {mask}.")
            samples.append(SegSample(image=image, label=mask, name=image.stem))
        return samples

    def list_samples(self, split: str) -> list[SegSample]:
        """Pairs of ``split`` from split folders (``images/<split>`` without ``masks/<split>``: unlabelled), or a
        seeded ``val_fraction`` split of the flat folder."""
        image_root, mask_root = self.root / "images", self.root / "masks"
        self.require(image_root, mask_root)
        if (image_root / "train").is_dir():
            image_dir, mask_dir = image_root / split, mask_root / split
            self.require(image_dir, split=split)
            # a split folder of images without its masks folder is unlabelled: it can only be predicted
            return self._pairs(image_dir, mask_dir if mask_dir.is_dir() else None)
        if split not in ("train", "val"):
            raise ConfigError(f"Without split folders only 'train' and 'val' exist, got split {split!r}.")
        samples = self._pairs(image_root, mask_root)
        order = np.random.default_rng(self.split_seed).permutation(len(samples))
        n_val = max(1, round(self.val_fraction * len(samples))) if len(samples) > 1 else 0
        chosen = order[:n_val] if split == "val" else order[n_val:]
        return [samples[i] for i in sorted(chosen)]
