"""Cityscapes (fine annotations): 19 train ids from the official labelId table.

Reproduces sssegmentation `ssseg/modules/datasets/cityscapes.py` and
`configs/_base_/datasets/cityscapes_512x1024.py`: ``*_gtFine_labelIds.png`` mapped to the 19 train ids
(every other id ignored), train resize (2048, 1024) x U[0.5, 2.0), crop 512x1024, eval on ``val`` resized
to (2048, 1024) keeping the ratio (1024x2048 images are unchanged). The id -> train-id table, the class
names and the colours are the official ``cityscapesscripts.helpers.labels`` table (in ``isnet.meta``).
``*_gtFine_labelTrainIds.png`` files (written by ``scripts/prepare_cityscapes.py`` or the official
``createTrainIdLabelImgs``) are read directly when present.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from isnet.data.datamodule import FileSegDataModule
from isnet.data.datasets.base import SegSample, build_lut
from isnet.data.datasets.listing import list_pairs, read_id_list
from isnet.errors import ConfigError
from isnet.meta import IGNORE_INDEX

__all__ = ["CityscapesDataModule", "labelids_to_trainids"]

_TRAINID_LUT = build_lut({**{t: t for t in range(19)}, IGNORE_INDEX: IGNORE_INDEX}, identity=False)

_LABEL_TYPES = ("auto", "labelIds", "labelTrainIds")
_LAYOUT = (
    "leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png and "
    "gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png "
    "(or _gtFine_labelTrainIds.png); optional id lists <split>.txt with <city>/<id>_leftImg8bit"
)


def labelids_to_trainids(label_ids: np.ndarray) -> np.ndarray:
    """Map a labelIds image to train ids (uint8, 255 = ignore) with the official table."""
    lut = CityscapesDataModule.lut.copy()
    lut[lut < 0] = IGNORE_INDEX
    return lut[label_ids.astype(np.uint8)].astype(np.uint8)


class CityscapesDataModule(FileSegDataModule, dataset="cityscapes"):
    """Cityscapes fine (19 classes; eval on ``val``, 500 images).

    Args:
        root: Folder holding ``leftImg8bit/`` and ``gtFine/``.
        label_type: "labelTrainIds", "labelIds", or "auto" (train ids when every image of the split has
            them, else label ids).
        **kwargs: :class:`~isnet.data.datamodule.FileSegDataModule` / ``SegDataModule`` arguments.
    """

    layout = _LAYOUT
    prepare_script = "scripts/prepare_cityscapes.py"

    def __init__(self, root: str | Path, label_type: str = "auto", **kwargs: Any) -> None:
        if label_type not in _LABEL_TYPES:
            raise ConfigError(f"label_type must be one of {list(_LABEL_TYPES)}, got {label_type!r}.")
        super().__init__(root=root, **kwargs)
        self.label_type = label_type

    def label_lut(self, samples: list[SegSample]) -> np.ndarray:
        """Train-id files pass through; labelIds files go through the official table (``lut``)."""
        if (
            samples
            and samples[0].label is not None
            and samples[0].label.name.endswith("_gtFine_labelTrainIds.png")
        ):
            return _TRAINID_LUT
        return self.lut

    def list_samples(self, split: str) -> list[SegSample]:
        """Pairs of ``split``, choosing labelTrainIds or labelIds files (and the matching table); the ``test``
        split may come without ``gtFine/test`` (images only, for ``scripts/eval.py format_only=true``)."""
        image_dir = self.root / "leftImg8bit" / split
        label_dir = self.root / "gtFine" / split
        self.require(image_dir, *([label_dir] if split != "test" else []), split=split)
        list_file: Path | None = self.root / f"{split}.txt"
        ids = read_id_list(list_file)
        if ids is None:
            list_file, found = None, image_dir.glob("*/*_leftImg8bit.png")
            ids = sorted(str(p.relative_to(image_dir)).removesuffix(".png") for p in found)
        ids = [i.removesuffix(".png") for i in ids]
        if (
            not label_dir.is_dir()
        ):  # the test split without gtFine/test: images only, for the benchmark server
            return list_pairs(image_dir, None, ids=ids, image_suffix=".png", list_file=list_file)
        label_type = self.label_type
        if label_type == "auto":
            has_train_ids = all(
                (label_dir / f"{i.replace('_leftImg8bit', '_gtFine_labelTrainIds')}.png").is_file()
                for i in ids
            )
            label_type = "labelTrainIds" if ids and has_train_ids else "labelIds"
        suffix = f"_gtFine_{label_type}"
        return list_pairs(
            image_dir,
            label_dir,
            ids=ids,
            image_suffix=".png",
            label_suffix=".png",
            label_name=lambda i: i.replace("_leftImg8bit", suffix),
            list_file=list_file,
        )
