"""COCO-Stuff-10k (official 10k release): 182 classes = raw id - 1, raw 0 and 255 ignored.

Reproduces sssegmentation `ssseg/modules/datasets/coco.py` (``COCOStuff10kDataset``) and
`configs/_base_/datasets/cocostuff10k_512x512.py`: labels ``annotations/<id>.mat`` (variable ``S``),
lists ``imageLists/{train,test}.txt``, train resize (2048, 512) x U[0.5, 2.0), crop 512x512, eval on the
``test`` split (1,000 images) resized to (2048, 512) keeping the ratio. There is no 182 -> 171 remapping:
the 11 COCO thing slots that are never annotated stay as classes and drop out of mIoU through the
NaN-mean (names and palette: ``isnet.meta``). PNG labels of raw ids in ``annotations_png/<id>.png`` (written
by ``scripts/prepare_cocostuff10k.py``) are preferred when present because they load much faster than ``.mat``.
"""

from __future__ import annotations

from pathlib import Path

from isnet.data.datamodule import FileSegDataModule
from isnet.data.datasets.base import SegSample
from isnet.data.datasets.listing import list_pairs, read_id_list

__all__ = ["COCOStuff10kDataModule"]

_LAYOUT = (
    "images/<id>.jpg, annotations/<id>.mat (variable S) or annotations_png/<id>.png, "
    "imageLists/{train,test}.txt (the official cocostuff-10k-v1.1 release)"
)


class COCOStuff10kDataModule(FileSegDataModule, dataset="cocostuff10k"):
    """COCO-Stuff-10k (182 classes; train on ``train`` 9k, eval on ``test`` 1k).

    Args:
        root: Folder holding ``images/``, ``annotations/`` and ``imageLists/``.
        **kwargs: :class:`~isnet.data.datamodule.FileSegDataModule` / ``SegDataModule`` arguments.
    """

    layout = _LAYOUT
    prepare_script = "scripts/prepare_cocostuff10k.py"

    def list_samples(self, split: str) -> list[SegSample]:
        """Pairs of ``split`` from ``imageLists/<split>.txt``, preferring PNG labels."""
        image_dir = self.root / "images"
        list_file = self.root / "imageLists" / f"{split}.txt"
        self.require(image_dir)
        ids = read_id_list(list_file)
        if ids is None:
            raise self.missing(f"split list {list_file}")
        ids = [Path(i).stem if i.endswith(".jpg") else i for i in ids]
        png_dir, mat_dir = self.root / "annotations_png", self.root / "annotations"
        if png_dir.is_dir() and all((png_dir / f"{i}.png").is_file() for i in ids):
            label_dir, label_suffix = png_dir, ".png"
        else:
            self.require(mat_dir)
            label_dir, label_suffix = mat_dir, ".mat"
        return list_pairs(image_dir, label_dir, ids=ids, label_suffix=label_suffix, list_file=list_file)
