"""The released ISNet model zoo (sssegmentation): the 12 checkpoints and their experiment settings.

Numbers are the published single-scale and multi-scale + flip mIoU (LIP: flip only).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RELEASE_URL", "ZOO", "ZooEntry", "zoo_entry"]

RELEASE_URL = "https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_isnet/{name}.pth"


@dataclass(frozen=True)
class ZooEntry:
    """One released checkpoint and the setting it was trained with."""

    release_name: str  # file stem of the released .pth
    experiment: str  # our config name, conf/experiment/<experiment>.yaml
    backbone: str
    dataset: str
    num_classes: int
    crop_size: tuple[int, int]
    lr: float
    batch_size: int
    epochs: int
    miou: float
    miou_ms_flip: float

    @property
    def url(self) -> str:
        return RELEASE_URL.format(name=self.release_name)

    @property
    def lip_variant(self) -> bool:
        return self.dataset == "lip"


_BACKBONES = {"r50": "resnet50", "r101": "resnet101", "s101": "resnest101"}
_DATASETS = {"cocostuff10k": (182, (512, 512)), "ade20k": (150, (512, 512)), "cityscapes": (19, (512, 1024)),
             "lip": (20, (473, 473))}  # fmt: skip
# (short backbone, dataset): lr, global batch, epochs, mIoU, mIoU ms+flip  -- the model-zoo table
_TABLE = {
    ("r50", "cocostuff10k"): (0.001, 16, 110, 38.06, 40.16),
    ("r101", "cocostuff10k"): (0.001, 16, 110, 40.53, 41.60),
    ("s101", "cocostuff10k"): (0.001, 32, 150, 41.55, 42.08),
    ("r50", "ade20k"): (0.01, 16, 130, 44.22, 45.04),
    ("r101", "ade20k"): (0.01, 16, 130, 45.92, 47.31),
    ("s101", "ade20k"): (0.004, 16, 180, 46.65, 47.55),
    ("r50", "cityscapes"): (0.01, 16, 440, 79.32, 80.88),
    ("r101", "cityscapes"): (0.01, 16, 440, 80.56, 81.98),
    ("s101", "cityscapes"): (0.01, 16, 440, 78.78, 81.30),
    ("r50", "lip"): (0.01, 32, 150, 53.14, 53.41),
    ("r101", "lip"): (0.01, 32, 150, 54.96, 55.41),
    ("s101", "lip"): (0.007, 40, 150, 56.52, 56.81),
}


def _build() -> dict[str, ZooEntry]:
    entries = {}
    for (short, dataset), (lr, batch, epochs, miou, miou_ms) in _TABLE.items():
        num_classes, crop = _DATASETS[dataset]
        arch = _BACKBONES[short]
        entry = ZooEntry(
            release_name=f"isnet_{arch}os8_{dataset}",
            experiment=f"isnet_{short}_d8_{dataset}",
            backbone=f"{arch}_d8",
            dataset=dataset,
            num_classes=num_classes,
            crop_size=crop,
            lr=lr,
            batch_size=batch,
            epochs=epochs,
            miou=miou,
            miou_ms_flip=miou_ms,
        )
        entries[entry.experiment] = entry
    return entries


#: experiment name (``isnet_r50_d8_ade20k``) -> entry
ZOO: dict[str, ZooEntry] = _build()


def zoo_entry(name: str) -> ZooEntry:
    """Look up an entry by experiment name or released file name (with or without ``.pth``).

    Raises:
        KeyError: unknown name; the message lists the valid ones.
    """
    stem = name[:-4] if name.endswith(".pth") else name
    for entry in ZOO.values():
        if stem in (entry.experiment, entry.release_name):
            return entry
    raise KeyError(
        f"unknown model-zoo name {name!r}; choose one of {sorted(ZOO)} (or their released file names)"
    )
