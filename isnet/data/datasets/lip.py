"""LIP (Look Into Person): 20 human-parsing classes, raw labels, left/right pairs swapped on flip.

Reproduces sssegmentation `ssseg/modules/datasets/lip.py` and `configs/_base_/datasets/lip_473x473.py`:
labels are used as stored (0 = background is a real class), train resize to a square of side
int(520 r) with r ~ U[0.75, 1.25), crop 473x473, flip with the (14, 15), (16, 17), (18, 19) pairs swapped,
rotation; eval on ``val`` (10,000 images) resized to 473x473 ignoring the aspect ratio. Both the layout of
the official zips (``TrainVal_images/``, ``TrainVal_parsing_annotations/``) and the reference's flattened
layout (``{train,val}_images``, ``{train,val}_segmentations``, ``{train,val}_id.txt``) are read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from isnet.data.datamodule import FileSegDataModule
from isnet.data.datasets.base import SegSample
from isnet.data.datasets.listing import list_pairs, read_id_list
from isnet.errors import ConfigError

__all__ = ["LIPDataModule", "find_lip_dirs"]

_LAYOUTS = ("auto", "official", "flat")
_LAYOUT = (
    "official: TrainVal_images/{train,val}_images/<id>.jpg + "
    "TrainVal_parsing_annotations/{train,val}_segmentations/<id>.png (optional "
    "TrainVal_images/{train,val}_id.txt); or flat: {train,val}_images/, {train,val}_segmentations/, "
    "{train,val}_id.txt"
)


def find_lip_dirs(root: Path, split: str, layout: str = "auto") -> tuple[Path, Path, Path | None] | None:
    """Locate ``(image_dir, label_dir, id list or None)`` of ``split`` ("train" or "val") in ``layout``
    ("official", "flat" or "auto": official first, then flat); ``None`` if not found."""
    official, annotations = root / "TrainVal_images", root / "TrainVal_parsing_annotations"
    candidates = []
    if layout in ("auto", "official"):
        candidates += [(official, annotations), (official, annotations / annotations.name)]
    if layout in ("auto", "flat"):
        candidates.append((root, root))
    for image_root, label_root in candidates:
        image_dir, label_dir = image_root / f"{split}_images", label_root / f"{split}_segmentations"
        if image_dir.is_dir() and label_dir.is_dir():
            lists = [p for p in (image_root / f"{split}_id.txt", root / f"{split}_id.txt") if p.is_file()]
            return image_dir, label_dir, lists[0] if lists else None
    return None


class LIPDataModule(FileSegDataModule, dataset="lip"):
    """LIP single-person parsing (20 classes; eval on ``val``).

    Args:
        root: Folder with the official or the flat layout.
        layout: "auto", "official" or "flat".
        **kwargs: :class:`~isnet.data.datamodule.FileSegDataModule` / ``SegDataModule`` arguments.
    """

    layout = _LAYOUT
    prepare_script = "scripts/prepare_lip.py"

    def __init__(self, root: str | Path, layout: str = "auto", **kwargs: Any) -> None:
        if layout not in _LAYOUTS:
            raise ConfigError(f"layout must be one of {list(_LAYOUTS)}, got {layout!r}.")
        super().__init__(root=root, **kwargs)
        self.layout_kind = layout

    def list_samples(self, split: str) -> list[SegSample]:
        """Pairs of ``split`` from its id list if present, else the image folder."""
        self.require()
        found = find_lip_dirs(self.root, split, self.layout_kind)
        if found is None:
            raise self.missing(f"split {split!r} ({self.layout_kind} layout)")
        image_dir, label_dir, list_file = found
        ids = read_id_list(list_file) if list_file is not None else None
        return list_pairs(image_dir, label_dir, ids=ids, list_file=list_file)
