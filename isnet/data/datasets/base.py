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

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from isnet.errors import DataError
from isnet.meta import IGNORE_INDEX, IMAGENET_MEAN_255, IMAGENET_STD_255
from isnet.utils.image import check_not_truncated, normalize, read_image  # home: isnet.utils.image

__all__ = [
    "SegSample",
    "SegDataset",
    "SegFileDataset",
    "read_image",
    "read_label",
    "build_lut",
    "check_label_values",
    "normalize",
]


@dataclass(frozen=True)
class SegSample:
    """One image/label pair on disk; ``name`` is the sample id in logs (e.g. ``ADE_val_00000001``); ``label`` is
    ``None`` for an image of an unlabelled split (the test splits of Cityscapes and ADE20k)."""

    image: Path
    label: Path | None
    name: str


def read_label(path: str | Path, mat_key: str = "S") -> np.ndarray:
    """Read a label map as an (H, W) integer array of raw ids.

    PNGs are read with PIL so palette ("P" mode) PNGs give their indices (OpenCV would expand them to
    colours); for the single-channel 8-bit PNGs of the official datasets this equals the reference's
    ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)``. ``.mat`` files (COCO-Stuff-10k) are read with
    ``scipy.io.loadmat(path)[mat_key]``. Raises ``FileNotFoundError``, ``OSError`` (cannot be decoded) or
    ``DataError`` (not single-channel, no ``mat_key``).
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
        data = path.read_bytes()
        if not data:
            raise OSError(f"Cannot read label {path}: the file is empty.")
        check_not_truncated(path, data)
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
    """Build a 256-entry int16 id -> train-id table from ``mapping`` (255 = ignore).

    Unmapped ids keep their value when ``identity`` is true (the reference leaves them unchanged, then its
    range assertion fires for the out-of-range ones), else map to -1 (reported as invalid by the check).
    """
    lut = np.arange(256, dtype=np.int16) if identity else np.full(256, -1, dtype=np.int16)
    for raw, train_id in (mapping or {}).items():
        lut[int(raw)] = int(train_id)
    return lut


def check_label_values(
    raw: np.ndarray,
    num_classes: int,
    path: Path | str,
    lut: np.ndarray | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> None:
    """Raise if ``raw`` holds ids that map outside [0, K) and are not ``ignore_index``.

    Cheap: a bincount (uint8) or unique (other dtypes) of the raw label, then the table (:func:`build_lut`,
    ``None`` when raw ids are train ids) on the distinct values only. The error names ``path``, the offending
    raw values and what they map to.
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


class SegDataset(Dataset):
    """Base of the datasets: turns the ``(image, label)`` pair of :meth:`load` into a sample dict.

    Train samples are transformed jointly (``transform(image=, mask=)``); eval samples transform the image
    only and keep the label at the original resolution, because evaluation resizes predictions back to the
    original size (sssegmentation `test.py`). Without a ``transform`` (an albumentations ``Compose``) the
    image is only normalised with ``mean``/``std`` (RGB, 0-255 units). Subclasses set these attributes and
    implement :meth:`load` and :meth:`sample_name`.
    """

    transform: Callable[..., dict[str, Any]] | None = None
    train: bool = True
    mean: Sequence[float] = IMAGENET_MEAN_255
    std: Sequence[float] = IMAGENET_STD_255

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Sample ``index`` untransformed: (H, W, 3) uint8 RGB and (H, W) uint8 train ids, 255 = ignore
        (``None`` for an image without a label)."""
        raise NotImplementedError

    def sample_name(self, index: int) -> str:
        """Id of sample ``index`` in logs and prediction file names."""
        raise NotImplementedError

    def reseed(self, seed: int) -> None:
        """Re-seed the transform's random state (albumentations keeps its own, separate from numpy)."""
        if callable(getattr(self.transform, "set_random_seed", None)):
            self.transform.set_random_seed(seed)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        """Sample ``key``: an index, or ``(index, seed)`` as the train sampler yields
        (:class:`isnet.data.TrainSampler`): the train transform is then seeded with ``seed`` first, so the
        augmentation is a function of the key alone, whichever process or worker draws it. With a bare index
        the transform continues its own random stream.

        An evaluation sample also holds ``size``, the original ``(H, W)`` that predictions are resized to; an
        image without a label (:meth:`load` returned ``None``) has no ``mask`` and can only be predicted.
        """
        index, seed = key if isinstance(key, tuple) else (key, None)
        image, mask = self.load(index)
        name, size = self.sample_name(index), torch.tensor(image.shape[:2])
        if mask is None and self.train:
            raise DataError(f"sample {name} has no label and cannot be trained on")
        if self.transform is None:
            image = normalize(image, self.mean, self.std)
        elif self.train:
            if seed is not None:
                self.reseed(seed)
            out = self.transform(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        else:
            image = self.transform(image=image)["image"]
        sample = {"image": image, "name": name} if mask is None else {
            "image": image, "mask": torch.as_tensor(mask).long(), "name": name
        }  # fmt: skip
        return sample if self.train else {**sample, "size": size}


@dataclass(eq=False, repr=False)
class SegFileDataset(SegDataset):
    """Image/label pairs read from disk, mapped, checked and transformed (see :class:`SegDataset`).

    Args:
        samples: The pairs to read.
        num_classes: K; mapped labels must lie in [0, K) or equal ``ignore_index``.
        lut: Raw id -> train id table from :func:`build_lut`, or ``None`` (raw labels are train ids).
        transform: See :class:`SegDataset`; ``train``: whether it is a joint train transform.
        check_labels: Whether to run :func:`check_label_values` on each label.
        label_reader: Function reading a label path into raw ids.
    """

    samples: Sequence[SegSample]
    num_classes: int
    lut: np.ndarray | None = None
    transform: Callable[..., dict[str, Any]] | None = None
    train: bool = True
    check_labels: bool = True
    ignore_index: int = IGNORE_INDEX
    label_reader: Callable[[Path], np.ndarray] = read_label

    def __len__(self) -> int:
        return len(self.samples)

    def sample_name(self, index: int) -> str:
        return self.samples[index].name

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Read, map and check one sample without transforming it (the label is ``None`` if it has none)."""
        sample = self.samples[index]
        image = read_image(sample.image)
        if sample.label is None:
            return image, None
        raw = self.label_reader(sample.label)
        if raw.shape != image.shape[:2]:
            raise DataError(
                f"Image and label sizes differ for {sample.name}: image {sample.image} is "
                f"{image.shape[0]}x{image.shape[1]} (HxW), label {sample.label} is {raw.shape[0]}x{raw.shape[1]}."
            )
        if self.check_labels:
            check_label_values(raw, self.num_classes, sample.label, self.lut, self.ignore_index)
        label = raw
        if self.lut is not None:
            if raw.dtype != np.uint8 and (raw.min() < 0 or raw.max() > 255):
                raise DataError(
                    f"Label {sample.label} has raw values outside 0..255 (min {raw.min()}, max {raw.max()})."
                )
            label = self.lut[raw.astype(np.uint8)]  # int16, so invalid (-1) entries survive
        if label.dtype != np.uint8:
            # Only reachable unchecked: ids without a train id become ignore instead of wrapping around.
            label = np.where((label < 0) | (label > 255), self.ignore_index, label)
        return image, label.astype(np.uint8, copy=False)
