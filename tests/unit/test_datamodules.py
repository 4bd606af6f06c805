"""Every DataModule end to end on tiny fixtures: setup, loaders, batches, batch splitting, seeding."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import hydra
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.data import SequentialSampler

from isnet.data import (
    DATAMODULES,
    DistributedEvalSampler,
    LIPDataModule,
    SegDataModule,
    SyntheticDataModule,
    TrainSampler,
    build_datamodule,
    seg_collate,
)
from isnet.meta import dataset_info
from tests import fixtures as fx

CONF = Path(__file__).resolve().parents[2] / "conf" / "data"


def _make(name: str, tmp_path: Path, **overrides) -> SegDataModule:
    if name == "synthetic":
        kwargs = {**{k: v for k, v in fx.SMALL.items() if k not in ("scale", "test_scale")}, **overrides}
        return build_datamodule(name, num_classes=4, image_size=[29, 35], num_train=6, num_val=3, **kwargs)
    return fx.datamodule(name, fx.WRITERS[name](tmp_path), **overrides)


@pytest.mark.parametrize("name", sorted(DATAMODULES))
def test_end_to_end(name, tmp_path):
    dm = _make(name, tmp_path)
    assert dm.name == name
    assert dm.num_classes == len(dm.class_names) == len(dm.palette)
    assert dm.ignore_index == 255
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    h, w = (29, 35) if name == "synthetic" else (24, 32)
    assert batch["image"].shape == (2, 3, h, w) and batch["image"].dtype == torch.float32
    assert batch["mask"].shape == (2, h, w) and batch["mask"].dtype == torch.int64
    values = set(batch["mask"].unique().tolist())
    assert values <= set(range(dm.num_classes)) | {255}
    assert len(values - {255}) >= 2
    assert len(batch["name"]) == 2
    val = next(iter(dm.val_dataloader()))
    raw_h, raw_w = (29, 35) if name == "synthetic" else fx.FIXTURE_SIZES[0]
    assert val["image"].dtype == torch.float32 and val["image"].shape[:2] == (1, 3)
    assert val["mask"].shape == (1, raw_h, raw_w) and val["mask"].dtype == torch.int64
    test = next(iter(dm.test_dataloader()))
    assert test["mask"].shape == (1, raw_h, raw_w)


@pytest.mark.parametrize("name", sorted(DATAMODULES))
def test_hydra_configs_instantiate(name, tmp_path):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    assert cfg._target_ == f"isnet.data.{DATAMODULES[name].__name__}"
    for key in ("crop_size", "batch_size", "num_workers"):
        assert key in cfg
    if name != "synthetic":
        cfg.root = str(fx.WRITERS[name](tmp_path))
    cfg.num_workers = 0
    dm = hydra.utils.instantiate(cfg)
    assert isinstance(dm, DATAMODULES[name])
    assert dm.crop_size == tuple(cfg.crop_size)
    assert dm.batch_size == cfg.batch_size


def test_reference_defaults():
    # conf/data leaves the pipelines to isnet.meta: the DataModules built from it hold the reference values
    ade, cs, lip = (
        hydra.utils.instantiate(OmegaConf.load(CONF / f"{n}.yaml")) for n in ("ade20k", "cityscapes", "lip")
    )
    assert (ade.scale, ade.crop_size, ade.batch_size, ade.test_scale) == (
        (2048, 512),
        (512, 512),
        16,
        (2048, 512),
    )
    assert (cs.scale, cs.crop_size, cs.test_scale) == ((2048, 1024), (512, 1024), (2048, 1024))
    assert (lip.scale, lip.ratio_range, lip.test_scale, lip.test_keep_ratio) == (
        (520, 520),
        (0.75, 1.25),
        (473, 473),
        False,
    )
    assert LIPDataModule.lip is True and LIPDataModule.flip_pairs == [(14, 15), (16, 17), (18, 19)]


def test_global_batch_is_split_over_ranks():
    dm = SyntheticDataModule(batch_size=8, num_train=20, num_val=2, image_size=16)
    dm.trainer = SimpleNamespace(world_size=4, global_rank=1)
    dm.setup("fit")
    assert dm.batch_size_per_device == 2
    loader = dm.train_dataloader()
    assert loader.batch_size == 2 and loader.drop_last is True
    assert isinstance(loader.sampler, TrainSampler)  # a DistributedSampler: Lightning keeps it under DDP
    # 20 samples over 4 ranks = 5 per rank, 2 per device: 2 full steps on each rank.
    assert len(loader) == 2
    val = dm.val_dataloader()
    assert val.batch_size == 1 and val.drop_last is False and isinstance(val.sampler, DistributedEvalSampler)
    assert list(val.sampler) == [1]  # 2 val images over 4 ranks: rank 1 gets image 1, no padding


@pytest.mark.parametrize("hook", ["val_dataloader", "test_dataloader"])
def test_eval_loaders_split_uneven_ranks_without_padding(hook):
    shards = []
    for rank in range(2):
        dm = SyntheticDataModule(batch_size=2, num_train=4, num_val=5, image_size=16)
        dm.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        loader = getattr(dm, hook)()
        assert isinstance(loader.sampler, DistributedEvalSampler)
        shards.append([name for batch in loader for name in batch["name"]])
    assert [len(s) for s in shards] == [3, 2]
    split = "val" if hook == "val_dataloader" else "test"
    assert sorted(shards[0] + shards[1]) == [f"synthetic_{split}_{i:06d}" for i in range(5)]
    single = SyntheticDataModule(batch_size=2, num_train=4, num_val=5, image_size=16)
    assert isinstance(getattr(single, hook)().sampler, SequentialSampler)


@pytest.mark.parametrize(("size", "world"), [(7, 2), (10, 3), (2, 4), (0, 2)])
def test_eval_sampler_partitions_without_padding(size: int, world: int) -> None:
    dataset = list(range(size))
    shards = [list(DistributedEvalSampler(dataset, num_replicas=world, rank=r)) for r in range(world)]
    assert sorted(i for shard in shards for i in shard) == dataset
    assert [len(DistributedEvalSampler(dataset, num_replicas=world, rank=r)) for r in range(world)] == [
        len(s) for s in shards
    ]
    assert max(map(len, shards)) - min(map(len, shards)) <= (1 if size else 0)


def test_eval_sampler_defaults_and_validation() -> None:
    sampler = DistributedEvalSampler(list(range(5)))
    assert list(sampler) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="rank"):
        DistributedEvalSampler(list(range(5)), num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas"):
        DistributedEvalSampler(list(range(5)), num_replicas=0, rank=0)


def test_batch_not_divisible_by_world_size():
    dm = SyntheticDataModule(batch_size=6, image_size=16)
    dm.trainer = SimpleNamespace(world_size=4, global_rank=0)
    with pytest.raises(ValueError, match=r"batch_size \(6\).*world_size = 4"):
        dm.setup("fit")


def test_loader_settings_with_workers():
    dm = SyntheticDataModule(batch_size=2, num_workers=2, image_size=16, num_train=4, num_val=2)
    dm.setup("fit")
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        assert loader.num_workers == 2 and loader.persistent_workers is True
        assert loader.worker_init_fn is not None
    assert SyntheticDataModule(num_workers=0).train_dataloader().persistent_workers is False


def test_val_collate_keeps_variable_sizes(tmp_path):
    dm = _make("ade20k", tmp_path, val_batch_size=2)
    batch = next(iter(dm.val_dataloader()))
    # Fixture images are 40x56 and 37x53: lists, not stacked tensors.
    assert isinstance(batch["image"], list) and isinstance(batch["mask"], list)
    assert [tuple(m.shape) for m in batch["mask"]] == [fx.FIXTURE_SIZES[0], fx.FIXTURE_SIZES[1]]
    same = seg_collate([{"image": torch.zeros(3, 4, 5), "mask": torch.zeros(4, 5), "name": "a"}] * 2)
    assert same["image"].shape == (2, 3, 4, 5) and same["name"] == ["a", "a"]


def _first_batches(dm, n=2):
    it = iter(dm.train_dataloader())
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_seeded_determinism(tmp_path, num_workers):
    root = fx.write_ade20k(tmp_path, n_train=4)
    kwargs = {**fx.SMALL, "num_workers": num_workers, "pin_memory": False}
    runs = []
    for seed in (7, 7, 8):
        dm = build_datamodule("ade20k", root=root, seed=seed, **kwargs)
        runs.append(_first_batches(dm))
    for a, b in zip(runs[0], runs[1]):
        assert a["name"] == b["name"]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
    differs = any(
        a["name"] != c["name"] or not torch.equal(a["image"], c["image"]) for a, c in zip(runs[0], runs[2])
    )
    assert differs


def test_synthetic_augment_uses_train_pipeline():
    dm = SyntheticDataModule(
        num_classes=3, image_size=[30, 40], crop_size=[20, 24], augment=True, batch_size=2, num_train=4
    )
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 20, 24) and batch["mask"].dtype == torch.int64


def _write_lip_pair_fixture(root: Path) -> Path:
    """LIP fixture whose labels hold only leftArm (14) on the left and leftLeg (16) on the right."""
    fx.write_lip(root, n_train=2, n_val=1)
    for path in (root / "TrainVal_parsing_annotations" / "train_segmentations").glob("*.png"):
        h, w = np.array(Image.open(path)).shape
        label = np.full((h, w), 14, dtype=np.uint8)
        label[:, w // 2 :] = 16
        Image.fromarray(label).save(path)
    return root


@pytest.mark.parametrize(("flip_prob", "expected"), [(1.0, {15, 17}), (0.0, {14, 16})])
def test_lip_flip_swaps_left_right(tmp_path, flip_prob, expected):
    root = _write_lip_pair_fixture(tmp_path)
    # Crop larger than any resized image: nothing is cropped away, only padding (255) is added.
    dm = LIPDataModule(
        root=root,
        crop_size=[64, 64],
        scale=[40, 40],
        flip_prob=flip_prob,
        batch_size=1,
        num_workers=0,
        pin_memory=False,
        seed=1,
    )
    loader = dm.train_dataloader()
    for _epoch in range(3):
        for batch in loader:
            assert set(batch["mask"].unique().tolist()) - {255} == expected


@pytest.mark.parametrize("name", ["ade20k", "cityscapes", "cocostuff10k", "lip"])
def test_defaults_match_transform_settings(name, tmp_path):
    # The DataModule defaults and the dataset's pipelines in isnet.meta must agree.
    info = dataset_info(name)
    train, test = info.train_pipeline, info.test_pipeline
    dm = DATAMODULES[name](root=tmp_path)
    assert dm.scale == tuple(train["scale"]) and dm.crop_size == tuple(train["crop_size"])
    assert dm.ratio_range == tuple(train.get("ratio_range", (0.5, 2.0)))
    assert dm.lip == train.get("lip", False)
    assert [tuple(p) for p in dm.flip_pairs] == [tuple(p) for p in info.flip_pairs]
    assert dm.test_scale == tuple(test["scale"]) and dm.test_keep_ratio == test["keep_ratio"]
