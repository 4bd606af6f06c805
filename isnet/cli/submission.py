"""Predictions in the formats of the benchmark servers (``scripts/eval.py format_only=true``).

One 8-bit single-channel PNG per image, in one flat folder, named after the image:

* ``cityscapes``: ``<city>_<seq>_<frame>_leftImg8bit.png`` holding Cityscapes **labelIds** (trainId -> labelId,
  the inverse of the dataset's label map in ``isnet.meta``, which is ``cityscapesscripts.helpers.labels``), as the
  Cityscapes server and its ``evalPixelLevelSemanticLabeling.py`` expect (a prediction is found by the
  ``<city>_<seq>_<frame>`` of its file name); zip the PNGs and upload the archive.
* ``ade20k``: ``ADE_test_<id>.png`` holding class id + 1 (1..150; 0 is "other", the ignored label), as the
  MIT Scene Parsing benchmark expects.
* every other dataset: ``<image stem>.png`` holding the predicted class index 0..K-1 (the train id; for
  COCO-Stuff-10k the raw annotation id is this + 1).

Every pixel gets a class: the network never predicts the ignore value, so no pixel is written as ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.callbacks import BasePredictionWriter

from isnet.errors import ConfigError
from isnet.meta import IGNORE_INDEX, dataset_info
from isnet.viz import save_image

__all__ = ["SubmissionWriter", "prepare_submission_dir", "submission_format", "submission_lut"]

_FORMATS = {
    "cityscapes": "Cityscapes labelIds",
    "ade20k": "ADE20k class id + 1 (0 = other)",
}


def submission_format(dataset: str) -> str:
    """What the PNGs of ``dataset`` hold, in words (printed and recorded in the JSON)."""
    return _FORMATS.get(dataset, "class index 0..K-1")


def submission_lut(dataset: str, num_classes: int) -> np.ndarray:
    """The uint8 table predicted class index -> value written for ``dataset`` (see the module docstring).

    Raises:
        ConfigError: the values do not fit an 8-bit PNG (more than 256 classes; ADE20k with more than 255).
    """
    if dataset == "cityscapes":
        # the inverse of the dataset's labelId -> trainId map (one labelId per trainId 0..18)
        label_map = dataset_info("cityscapes").label_map or {}
        train_to_label = {
            train_id: label_id for label_id, train_id in label_map.items() if train_id != IGNORE_INDEX
        }
        if sorted(train_to_label) != list(range(num_classes)):
            raise ConfigError(
                f"cityscapes predictions have {num_classes} classes, the label table has 19 train ids"
            )
        return np.array([train_to_label[k] for k in range(num_classes)], dtype=np.uint8)
    offset = 1 if dataset == "ade20k" else 0
    if num_classes + offset > 256:
        raise ConfigError(f"{num_classes} classes do not fit the 8-bit PNGs of format_only ({dataset})")
    return np.arange(offset, num_classes + offset, dtype=np.uint8)


def prepare_submission_dir(folder: str | Path, overwrite: bool = False) -> Path:
    """Create ``folder``, refusing one that exists and is not empty unless ``overwrite`` (then files with the
    names written are replaced, other files are left as they are)."""
    folder = Path(folder)
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise FileExistsError(
            f"format_dir {folder} already exists and is not empty; refusing to write into it. "
            "Choose another format_dir or pass format_overwrite=true"
        )
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"format_dir {folder} is a file, not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class SubmissionWriter(BasePredictionWriter):
    """Write each image's prediction (``ISNetModule.predict_step``) as ``<folder>/<name>.png`` through
    ``lut`` (:func:`submission_lut`), batch by batch, so nothing is kept in memory; under DDP each rank writes
    its own images. ``written`` lists this process's files. Two images with the same name are an error, never
    one file written over the other."""

    def __init__(self, folder: str | Path, lut: np.ndarray, overwrite: bool = False) -> None:
        super().__init__(write_interval="batch")
        self.folder, self.lut, self.overwrite = Path(folder), lut, overwrite
        self.written: list[Path] = []
        self._names: set[str] = set()

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: dict[str, Any],
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        for name, pred in zip(prediction["name"], prediction["pred"], strict=True):
            path = self.folder / f"{name}.png"
            if name in self._names:
                raise FileExistsError(f"two images are named {name}: {path} would be written twice")
            self._names.add(name)
            self.written.append(save_image(path, self.lut[pred.cpu().numpy()], self.overwrite))  # 2-D: mode L
