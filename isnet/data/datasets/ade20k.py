"""ADE20k (MIT SceneParsing, ``ADEChallengeData2016``): 150 classes, reduce-zero-label.

Reproduces sssegmentation `ssseg/modules/datasets/ade20k.py` and
`configs/_base_/datasets/ade20k_512x512.py`: raw label 0 ("other") is ignored and v -> v - 1; train
resize (2048, 512) x U[0.5, 2.0), crop 512x512, cat_max_ratio 0.75; eval on the validation split resized
to (2048, 512) keeping the aspect ratio. Facts (classes, palette, label map, pipelines): ``isnet.meta``.
"""

from __future__ import annotations

from pathlib import Path

from isnet.data.datamodule import FileSegDataModule
from isnet.data.datasets.base import SegSample
from isnet.data.datasets.listing import list_pairs, read_id_list
from isnet.errors import ConfigError

__all__ = ["ADE20kDataModule", "find_ade20k_root"]

_SPLIT_DIRS = {"train": "training", "val": "validation", "test": "testing"}
_LAYOUT = (
    "ADEChallengeData2016/images/{training,validation}/<id>.jpg and "
    "ADEChallengeData2016/annotations/{training,validation}/<id>.png "
    "(optional id lists ADEChallengeData2016/{train,val}.txt), for the benchmark's test split the unlabelled "
    "ADEChallengeData2016/images/testing/ADE_test_<id>.jpg; root may be ADEChallengeData2016 itself "
    "or the folder that contains it"
)


def find_ade20k_root(root: str | Path) -> Path | None:
    """Return the ``ADEChallengeData2016`` folder for ``root`` (itself or its child), else ``None``."""
    root = Path(root).expanduser()
    for candidate in (root / "ADEChallengeData2016", root):
        if (candidate / "images").is_dir() and (candidate / "annotations").is_dir():
            return candidate
    return None


class ADE20kDataModule(FileSegDataModule, dataset="ade20k"):
    """ADE20k SceneParsing (150 classes; eval on ``val`` = the 2,000 validation images).

    Args:
        root: ``ADEChallengeData2016`` or the folder containing it.
        **kwargs: :class:`~isnet.data.datamodule.FileSegDataModule` / ``SegDataModule`` arguments.
    """

    layout = _LAYOUT
    prepare_script = "scripts/prepare_ade20k.py"

    def list_samples(self, split: str) -> list[SegSample]:
        """Pairs of ``split`` ("train", "val" or "test"), from ``<split>.txt`` if present, else the folder; the
        ``test`` split (``images/testing``, the challenge's ``release_test``) has no labels unless
        ``annotations/testing`` exists."""
        if split not in _SPLIT_DIRS:
            raise ConfigError(f"ADE20k split must be one of {sorted(_SPLIT_DIRS)}, got {split!r}.")
        base = find_ade20k_root(self.root) or self.root / "ADEChallengeData2016"
        image_dir = base / "images" / _SPLIT_DIRS[split]
        label_dir: Path | None = base / "annotations" / _SPLIT_DIRS[split]
        if split == "test" and not label_dir.is_dir():
            label_dir = None
        self.require(image_dir, *([label_dir] if label_dir else []), split=split)
        list_file = base / f"{split}.txt"
        ids = read_id_list(list_file)
        ids = None if ids is None else [i.removesuffix(".jpg") for i in ids]
        return list_pairs(image_dir, label_dir, ids=ids, list_file=list_file)
