"""Segmentation data: one LightningDataModule per dataset, built on :class:`SegDataModule`.

Datasets and their reference settings follow sssegmentation (`ssseg/modules/datasets/`,
`configs/_base_/datasets/`). Use the classes directly, through Hydra (`conf/data/<name>.yaml`), or with
:func:`build_datamodule`.
"""

from __future__ import annotations

from typing import Any

from isnet.data.datamodule import (
    DistributedEvalSampler,
    FileSegDataModule,
    SegDataModule,
    TrainSampler,
    seed_worker,
    seg_collate,
)
from isnet.data.datasets.ade20k import ADE20kDataModule
from isnet.data.datasets.cityscapes import CityscapesDataModule
from isnet.data.datasets.cocostuff10k import COCOStuff10kDataModule
from isnet.data.datasets.folder import FolderDataModule
from isnet.data.datasets.lip import LIPDataModule
from isnet.data.datasets.synthetic import SyntheticDataModule, write_folder_dataset

__all__ = [
    "ADE20kDataModule",
    "COCOStuff10kDataModule",
    "CityscapesDataModule",
    "DATAMODULES",
    "DistributedEvalSampler",
    "FileSegDataModule",
    "FolderDataModule",
    "LIPDataModule",
    "SegDataModule",
    "SyntheticDataModule",
    "TrainSampler",
    "build_datamodule",
    "seed_worker",
    "seg_collate",
    "write_folder_dataset",
]

_ON_DISK = (ADE20kDataModule, CityscapesDataModule, COCOStuff10kDataModule, FolderDataModule, LIPDataModule)
DATAMODULES: dict[str, type[SegDataModule]] = {cls.name: cls for cls in (*_ON_DISK, SyntheticDataModule)}


def build_datamodule(name: str, **kwargs: Any) -> SegDataModule:
    """Build the DataModule of dataset ``name`` (a key of :data:`DATAMODULES`) with ``kwargs``.

    Raises:
        ValueError: Unknown ``name`` (the message lists the choices).
    """
    key = str(name).lower()
    if key not in DATAMODULES:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {sorted(DATAMODULES)}.")
    return DATAMODULES[key](**kwargs)
