"""Tiny datasets in each official on-disk layout, for the tests.

Every writer creates a few small images of odd sizes (e.g. 37x53) with blocky labels whose raw values
cover the dataset's id range (ignore ids included), in exactly the folder layout, file names and formats
of the official release. Each returns the folder to pass as ``root=`` to the matching DataModule.
Content is deterministic given ``seed``.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from PIL import Image

__all__ = [
    "FIXTURE_SIZES",
    "SMALL",
    "WRITERS",
    "blocky_label",
    "datamodule",
    "write_ade20k",
    "write_cityscapes",
    "write_cocostuff10k",
    "write_folder",
    "write_lip",
    "write_image",
    "zip_folder",
]

# DataModule settings sized for the fixture images: small resize and crop, batch 2, no workers.
SMALL = {
    "crop_size": [24, 32],
    "scale": [64, 32],
    "test_scale": [64, 32],
    "batch_size": 2,
    "num_workers": 0,
    "pin_memory": False,
}

# (h, w) of the fixture images, cycled; odd sizes catch off-by-one resize/pad bugs.
FIXTURE_SIZES: tuple[tuple[int, int], ...] = ((40, 56), (37, 53), (45, 61), (52, 39), (41, 41))


def blocky_label(
    shape: tuple[int, int], values: Sequence[int], rng: np.random.Generator, block: int = 8
) -> np.ndarray:
    """Random label of ``block``-sized patches drawing from ``values`` (each value appears if it fits).

    Args:
        shape: (h, w).
        values: Raw ids to use; the first ``min(len(values), n_blocks)`` are each placed at least once.
        rng: Random generator.
        block: Patch side in pixels.

    Returns:
        uint16 array (h, w) of raw ids.
    """
    h, w = shape
    gh, gw = -(-h // block), -(-w // block)
    grid = rng.choice(np.asarray(values), size=gh * gw)
    # Make sure the fixture covers the value range (the first cells get every value once).
    n = min(len(values), grid.size)
    grid[rng.permutation(grid.size)[:n]] = np.asarray(values)[rng.permutation(len(values))[:n]]
    grid = grid.reshape(gh, gw)
    return np.kron(grid, np.ones((block, block), dtype=grid.dtype))[:h, :w].astype(np.uint16)


def _random_image(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Smooth-ish random RGB uint8 image (compresses well, survives JPEG)."""
    h, w = shape
    small = rng.integers(0, 256, size=(max(h // 4, 2), max(w // 4, 2), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def write_image(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image with OpenCV (JPEG quality 95 or PNG by extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok = cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise OSError(f"Could not write {path}")


def _write_png_label(path: Path, label: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(label.astype(np.uint8)).save(path)


def _write_sample(
    image: Path, label: Path | None, i: int, values: Sequence[int], rng: np.random.Generator
) -> np.ndarray:
    """Write sample ``i``'s image (its size cycled from FIXTURE_SIZES) and its PNG label unless ``None``.

    Returns:
        The raw label drawn from ``values``.
    """
    shape = FIXTURE_SIZES[i % len(FIXTURE_SIZES)]
    write_image(image, _random_image(shape, rng))
    mask = blocky_label(shape, values, rng)
    if label is not None:
        _write_png_label(label, mask)
    return mask


def _write_list(path: Path, ids: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(ids) + "\n")


def write_ade20k(
    root: str | Path,
    n_train: int = 3,
    n_val: int = 2,
    with_lists: bool = True,
    seed: int = 0,
    n_test: int = 0,
) -> Path:
    """Write ``<root>/ADEChallengeData2016`` (images/annotations training/validation, id lists); ``n_test``
    unlabelled ``images/testing/ADE_test_<id>.jpg`` as in the challenge's ``release_test``.

    Labels use raw ids 0..150 (0 = "other", ignored after reduce-zero-label).

    Returns:
        ``root`` (the folder containing ``ADEChallengeData2016``).
    """
    root = Path(root)
    base = root / "ADEChallengeData2016"
    rng = np.random.default_rng(seed)
    values = [0, 1, 2, 75, 149, 150]
    for split, folder, prefix, n in (
        ("train", "training", "ADE_train", n_train),
        ("val", "validation", "ADE_val", n_val),
    ):
        ids = []
        for i in range(n):
            sample_id = f"{prefix}_{i + 1:08d}"
            image = base / "images" / folder / f"{sample_id}.jpg"
            _write_sample(image, base / "annotations" / folder / f"{sample_id}.png", i, values, rng)
            ids.append(sample_id)
        if with_lists:
            _write_list(base / f"{split}.txt", ids)
    for i in range(n_test):
        _write_sample(base / "images" / "testing" / f"ADE_test_{i + 1:08d}.jpg", None, i, values, rng)
    return root


def write_cityscapes(
    root: str | Path,
    n_train: int = 3,
    n_val: int = 2,
    label_ids: bool = True,
    train_ids: bool = False,
    seed: int = 0,
    n_test: int = 0,
) -> Path:
    """Write ``leftImg8bit/{train,val}/<city>/*_leftImg8bit.png`` and ``gtFine/...`` labels, and ``n_test``
    unlabelled ``leftImg8bit/test/<city>/*_leftImg8bit.png`` (no ``gtFine/test``).

    Labels cover every Cityscapes label id 0..33 (19 of them are train ids); ``train_ids`` also writes
    ``*_gtFine_labelTrainIds.png`` computed with the official table.

    Returns:
        ``root``.
    """
    from cityscapesscripts.helpers.labels import id2label

    root = Path(root)
    rng = np.random.default_rng(seed)
    values = list(range(34))
    cities = {"train": ["aachen", "bochum"], "val": ["frankfurt"], "test": ["berlin", "bielefeld"]}
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            city = cities[split][i % len(cities[split])]
            stem = f"{city}_{i:06d}_{19 + i:06d}"
            image = root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png"
            label = _write_sample(image, None, i, values, rng)
            if label_ids:
                _write_png_label(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", label)
            if train_ids:
                lut = np.full(256, 255, dtype=np.uint8)
                for raw in values:
                    train_id = id2label[raw].trainId
                    lut[raw] = train_id if 0 <= train_id < 255 else 255
                _write_png_label(
                    root / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png", lut[label]
                )
    for i in range(n_test):
        city = cities["test"][i % 2]
        image = root / "leftImg8bit" / "test" / city / f"{city}_{i:06d}_{19 + i:06d}_leftImg8bit.png"
        _write_sample(image, None, i, values, rng)
    return root


def write_cocostuff10k(
    root: str | Path, n_train: int = 3, n_test: int = 2, png: bool = False, seed: int = 0
) -> Path:
    """Write the official COCO-Stuff-10k layout: ``images/*.jpg``, ``annotations/*.mat`` (``S``), lists.

    Labels use raw ids 0 (unlabeled), 1..182 and 255; ``png`` also writes ``annotations_png/<id>.png``.

    Returns:
        ``root``.
    """
    import scipy.io

    root = Path(root)
    rng = np.random.default_rng(seed)
    values = [0, 1, 12, 92, 181, 182, 255]
    for split, prefix, n in (("train", "COCO_train2014", n_train), ("test", "COCO_val2014", n_test)):
        ids = []
        for i in range(n):
            sample_id = f"{prefix}_{100 * i + 7 + (split == 'test'):012d}"
            label = _write_sample(root / "images" / f"{sample_id}.jpg", None, i, values, rng)
            (root / "annotations").mkdir(parents=True, exist_ok=True)
            scipy.io.savemat(str(root / "annotations" / f"{sample_id}.mat"), {"S": label.astype(np.uint16)})
            if png:
                _write_png_label(root / "annotations_png" / f"{sample_id}.png", label)
            ids.append(sample_id)
        _write_list(root / "imageLists" / f"{split}.txt", ids)
    return root


def write_lip(
    root: str | Path, layout: str = "official", n_train: int = 3, n_val: int = 2, seed: int = 0
) -> Path:
    """Write LIP in the ``official`` (unzipped TrainVal_*) or the ``flat`` (reference) layout.

    Labels use raw ids 0..19.

    Returns:
        ``root``.
    """
    if layout not in ("official", "flat"):
        raise ValueError(f"layout must be 'official' or 'flat', got {layout!r}.")
    root = Path(root)
    rng = np.random.default_rng(seed)
    values = list(range(20))
    for split, n in (("train", n_train), ("val", n_val)):
        if layout == "official":
            image_dir = root / "TrainVal_images" / f"{split}_images"
            label_dir = root / "TrainVal_parsing_annotations" / f"{split}_segmentations"
            list_file = root / "TrainVal_images" / f"{split}_id.txt"
        else:
            image_dir, label_dir = root / f"{split}_images", root / f"{split}_segmentations"
            list_file = root / f"{split}_id.txt"
        ids = []
        for i in range(n):
            sample_id = f"{1000 * (split == 'val') + 77 + i}_{i + 1}"
            _write_sample(image_dir / f"{sample_id}.jpg", label_dir / f"{sample_id}.png", i, values, rng)
            ids.append(sample_id)
        _write_list(list_file, ids)
    return root


def write_folder(
    root: str | Path,
    n_train: int = 3,
    n_val: int = 2,
    split_folders: bool = True,
    classes: Sequence[str] = ("background", "road", "car"),
    raw_ignore: int = 255,
    seed: int = 0,
) -> Path:
    """Write a custom ``images/`` + ``masks/`` + ``classes.yaml`` dataset (PNG images, grey masks).

    Masks use values 0..K-1 and ``raw_ignore``.

    Returns:
        ``root``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    values = [*range(len(classes)), raw_ignore]
    for split, n in (("train", n_train), ("val", n_val)):
        sub = split if split_folders else ""
        for i in range(n):
            stem = f"{split}_{i:03d}"
            _write_sample(
                root / "images" / sub / f"{stem}.png", root / "masks" / sub / f"{stem}.png", i, values, rng
            )
    content = {"classes": list(classes), "ignore_index": raw_ignore}
    (root / "classes.yaml").write_text(yaml.safe_dump(content, sort_keys=False))
    return root


def zip_folder(src: str | Path, zip_path: str | Path, arc_prefix: str = "") -> Path:
    """Zip every file under ``src`` (names relative to ``src``, prefixed by ``arc_prefix``)."""
    src, zip_path = Path(src), Path(zip_path)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as zf:
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            zf.write(path, arcname=str(Path(arc_prefix) / path.relative_to(src)))
    return zip_path


def datamodule(name: str, root: str | Path, **overrides: Any) -> Any:
    """The DataModule ``name`` over ``root`` with the :data:`SMALL` settings (``overrides`` win)."""
    from isnet.data import build_datamodule

    return build_datamodule(name, root=root, **{**SMALL, **overrides})


# The writer of each file dataset, by DataModule name.
WRITERS = {
    "ade20k": write_ade20k,
    "cityscapes": write_cityscapes,
    "cocostuff10k": write_cocostuff10k,
    "folder": write_folder,
    "lip": write_lip,
}
