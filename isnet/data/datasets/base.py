"""Shared reading, label mapping and checking for file-based segmentation datasets.

Reproduces the sample reading of sssegmentation (`ssseg/modules/datasets/base.py`): images are decoded
with OpenCV (BGR, EXIF orientation applied, exactly as ``cv2.imread`` does) and returned as RGB, labels are
single-channel PNGs (or COCO-Stuff ``.mat`` files), and a per-dataset id -> train-id table is applied before
the value check. The project's ignore value is 255 (the reference uses -100 internally).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from isnet.data.transforms import IMAGENET_MEAN_255, IMAGENET_STD_255
from isnet.errors import DataError

__all__ = [
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SegSample",
    "SegFileDataset",
    "read_image",
    "read_label",
    "build_lut",
    "apply_lut",
    "check_label_values",
    "to_normalized_tensor",
    "make_palette",
    "reseed_transform",
]

IGNORE_INDEX = 255
# ImageNet statistics in 0-255 units, RGB order (sssegmentation `Normalize` after BGR->RGB).
IMAGENET_MEAN = IMAGENET_MEAN_255
IMAGENET_STD = IMAGENET_STD_255

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND"


@dataclass(frozen=True)
class SegSample:
    """One image/label pair on disk.

    Args:
        image: Path of the image file.
        label: Path of the label file.
        name: Sample id used in logs and for de-duplication (e.g. ``ADE_val_00000001``).
    """

    image: Path
    label: Path
    name: str


def _check_not_truncated(path: Path, data: bytes) -> None:
    """Raise if a JPEG/PNG byte stream misses its end marker.

    OpenCV decodes a truncated JPEG into a partly grey image with only a warning on stderr, so a cut-off
    download would silently train on garbage. Checking the end marker costs nothing.
    """
    if data[:2] == _JPEG_SOI:
        # Some encoders append padding after EOI; look in the tail rather than at the last two bytes.
        if _JPEG_EOI not in data[-4096:]:
            raise OSError(f"Cannot read image {path}: the JPEG file is truncated (no end-of-image marker).")
    elif data[:8] == _PNG_SIGNATURE:
        if _PNG_IEND not in data[-64:]:
            raise OSError(f"Cannot read image {path}: the PNG file is truncated (no IEND chunk).")


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as RGB uint8 exactly as ``cv2.imread`` decodes it.

    ``cv2.imdecode`` with ``IMREAD_COLOR`` applies the EXIF orientation like ``cv2.imread`` (the
    reference's reader), so pixels match the reference; reading the bytes ourselves lets us detect
    truncated files and non-ASCII paths.

    Args:
        path: Image file.

    Returns:
        Array of shape (H, W, 3), dtype uint8, RGB.

    Raises:
        FileNotFoundError: The file does not exist.
        OSError: The file is empty, truncated or not a decodable image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Image file not found: {path}")
    data = path.read_bytes()
    if not data:
        raise OSError(f"Cannot read image {path}: the file is empty.")
    _check_not_truncated(path, data)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"Cannot read image {path}: OpenCV could not decode it (corrupt or not an image).")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_label(path: str | Path, mat_key: str = "S") -> np.ndarray:
    """Read a label map as a 2-D integer array of raw ids.

    PNGs are read with PIL so palette ("P" mode) PNGs give their indices (OpenCV would expand them to
    colours); for the single-channel 8-bit PNGs of the official datasets this equals the reference's
    ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)``. ``.mat`` files (COCO-Stuff-10k) are read with
    ``scipy.io.loadmat(path)[mat_key]``.

    Args:
        path: Label file (``.png`` or ``.mat``).
        mat_key: Variable name inside a ``.mat`` file.

    Returns:
        Integer array of shape (H, W).

    Raises:
        FileNotFoundError: The file does not exist.
        OSError: The file cannot be decoded.
        ValueError: The label is not single-channel or the ``.mat`` key is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Label file not found: {path}")
    if path.suffix.lower() == ".mat":
        import scipy.io

        try:
            content = scipy.io.loadmat(str(path))
        except Exception as exc:  # scipy raises several types for corrupt files
            raise OSError(f"Cannot read label {path}: {exc}") from exc
        if mat_key not in content:
            keys = sorted(k for k in content if not k.startswith("__"))
            raise DataError(f"Label {path} has no variable {mat_key!r}; found {keys}.")
        label = np.asarray(content[mat_key])
    else:
        data = path.read_bytes() if path.stat().st_size else b""
        if not data:
            raise OSError(f"Cannot read label {path}: the file is empty.")
        _check_not_truncated(path, data)
        try:
            with Image.open(path) as img:
                if img.mode not in ("L", "P", "I", "I;16", "1"):
                    raise DataError(
                        f"Label {path} must be a single-channel image (mode L or P), got mode {img.mode!r}."
                    )
                label = np.array(img)
        except (OSError, SyntaxError) as exc:
            raise OSError(f"Cannot read label {path}: {exc}") from exc
    if label.ndim != 2:
        raise DataError(f"Label {path} must be 2-D (H, W), got shape {label.shape}.")
    if label.dtype == bool:
        label = label.astype(np.uint8)
    return label


def build_lut(mapping: dict[int, int] | None, identity: bool = True) -> np.ndarray:
    """Build a 256-entry id -> train-id lookup table.

    Args:
        mapping: Raw id -> train id (255 = ignore). Ids not in ``mapping`` keep their value when
            ``identity`` is true, otherwise they map to -1 (reported as invalid by the check).
        identity: Whether unmapped ids keep their raw value (the reference leaves them unchanged and then
            its range assertion fires for the out-of-range ones).

    Returns:
        int16 array of shape (256,).
    """
    lut = np.arange(256, dtype=np.int16) if identity else np.full(256, -1, dtype=np.int16)
    for raw, train_id in (mapping or {}).items():
        lut[int(raw)] = int(train_id)
    return lut


def apply_lut(label: np.ndarray, lut: np.ndarray | None, path: Path | str) -> np.ndarray:
    """Map raw ids through ``lut``.

    Args:
        label: Raw label, any integer dtype.
        lut: Table from :func:`build_lut`, or ``None`` for no mapping.
        path: Label path, for error messages.

    Returns:
        Mapped label; int16 when a table is applied (so invalid -1 entries survive), otherwise as read.
    """
    if lut is None:
        return label
    if label.dtype != np.uint8:
        lo, hi = int(label.min()), int(label.max())
        if lo < 0 or hi > 255:
            raise DataError(f"Label {path} has raw values outside 0..255 (min {lo}, max {hi}).")
        label = label.astype(np.uint8)
    return lut[label]


def check_label_values(
    raw: np.ndarray,
    num_classes: int,
    path: Path | str,
    lut: np.ndarray | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> None:
    """Raise if ``raw`` holds ids that map outside [0, K) and are not ``ignore_index``.

    Cheap: a bincount (uint8) or unique (other dtypes) of the raw label, then the 256-entry table on the
    distinct values only; no image decoding.

    Args:
        raw: Label as read (raw ids).
        num_classes: K.
        path: Label file, named in the error.
        lut: Raw id -> train id table (:func:`build_lut`), or ``None`` when raw ids are train ids.
        ignore_index: The ignore value after mapping.

    Raises:
        ValueError: Naming the file, the offending raw values and what they map to.
    """
    if raw.dtype == np.uint8:
        values = np.flatnonzero(np.bincount(raw.ravel(), minlength=256))
    else:
        values = np.unique(raw).astype(np.int64)
    if lut is not None:
        in_table = (values >= 0) & (values < lut.shape[0])
        mapped = np.where(in_table, lut[np.clip(values, 0, lut.shape[0] - 1)], -1)
    else:
        mapped = values
    bad = ((mapped < 0) | (mapped >= num_classes)) & (mapped != ignore_index)
    if bad.any():
        shown = ", ".join(
            f"{int(v)}" if lut is None else f"{int(v)}->{'invalid' if m < 0 else int(m)}"
            for v, m in zip(values[bad][:20], mapped[bad][:20])
        )
        raise DataError(
            f"Label {path} has values outside [0, {num_classes}) and not the ignore value {ignore_index} "
            f"after mapping: {shown}. Check that the dataset and its label format match "
            f"(e.g. Cityscapes labelIds vs labelTrainIds)."
        )


def to_normalized_tensor(
    image: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """Normalise an RGB uint8 image into a float32 (3, H, W) tensor.

    Args:
        image: (H, W, 3) uint8 RGB.
        mean: Per-channel mean, 0-255 units.
        std: Per-channel std, 0-255 units.

    Returns:
        Tensor of shape (3, H, W), float32: ``(image - mean) / std``.
    """
    x = (image.astype(np.float32) - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


def reseed_transform(transform: Any, seed: int) -> None:
    """Seed an albumentations pipeline: ``reseed`` of ``TorchSeededCompose``, else ``set_random_seed``."""
    if callable(getattr(transform, "reseed", None)):
        transform.reseed(seed)
    elif callable(getattr(transform, "set_random_seed", None)):
        transform.set_random_seed(seed)


def make_palette(num_classes: int, seed: int = 0) -> list[tuple[int, int, int]]:
    """Deterministic, well-spread RGB palette for datasets without an official one."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, size=(num_classes, 3))
    return [tuple(int(c) for c in row) for row in colours]


class SegFileDataset(Dataset):
    """Image/label pairs read from disk, mapped, checked and transformed.

    Train samples are transformed jointly (``train_transform(image=, mask=)``); eval samples transform the
    image only and keep the label at the original resolution, because evaluation resizes predictions
    back to the original size (sssegmentation `test.py`).

    Args:
        samples: The pairs to read.
        num_classes: K; mapped labels must lie in [0, K) or equal ``ignore_index``.
        lut: Raw id -> train id table from :func:`build_lut`, or ``None`` (raw labels are train ids).
        transform: Albumentations ``Compose`` (or any callable taking ``image=``, ``mask=`` and returning a
            dict with ``image`` (3,h,w) float tensor and ``mask``).
        train: Whether the transform is a joint train transform (else applied to the image only).
        check_labels: Whether to run :func:`check_label_values` on each label.
        ignore_index: Ignore value (255).
        label_reader: Function reading a label path into raw ids (defaults to :func:`read_label`).
    """

    def __init__(
        self,
        samples: Sequence[SegSample],
        num_classes: int,
        lut: np.ndarray | None = None,
        transform: Callable[..., dict[str, Any]] | None = None,
        train: bool = True,
        check_labels: bool = True,
        ignore_index: int = IGNORE_INDEX,
        label_reader: Callable[[Path], np.ndarray] = read_label,
    ) -> None:
        self.samples = list(samples)
        self.num_classes = num_classes
        self.lut = lut
        self.transform = transform
        self.train = train
        self.check_labels = check_labels
        self.ignore_index = ignore_index
        self.label_reader = label_reader

    def __len__(self) -> int:
        return len(self.samples)

    def reseed(self, seed: int) -> None:
        """Re-seed the transform's random state (albumentations keeps its own, separate from numpy)."""
        reseed_transform(self.transform, seed)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Read, map and check one sample without transforming it.

        Returns:
            ``(image, label)``: (H, W, 3) uint8 RGB and (H, W) uint8 train ids with 255 = ignore.
        """
        sample = self.samples[index]
        image = read_image(sample.image)
        raw = self.label_reader(sample.label)
        if raw.shape != image.shape[:2]:
            raise DataError(
                f"Image and label sizes differ for {sample.name}: image {sample.image} is "
                f"{image.shape[0]}x{image.shape[1]} (HxW), label {sample.label} is {raw.shape[0]}x{raw.shape[1]}."
            )
        if self.check_labels:
            check_label_values(raw, self.num_classes, sample.label, self.lut, self.ignore_index)
        label = apply_lut(raw, self.lut, sample.label)
        if label.dtype != np.uint8:
            # Only reachable unchecked: ids without a train id become ignore instead of wrapping around.
            label = np.where((label < 0) | (label > 255), self.ignore_index, label)
        return image, label.astype(np.uint8, copy=False)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, label = self.load(index)
        name = self.samples[index].name
        if self.train:
            if self.transform is None:
                return {
                    "image": to_normalized_tensor(image),
                    "mask": torch.from_numpy(label.astype(np.int64)),
                    "name": name,
                }
            out = self.transform(image=image, mask=label)
            return {"image": out["image"], "mask": torch.as_tensor(out["mask"]).long(), "name": name}
        tensor = (
            self.transform(image=image)["image"]
            if self.transform is not None
            else to_normalized_tensor(image)
        )
        return {"image": tensor, "mask": torch.from_numpy(label.astype(np.int64)), "name": name}
