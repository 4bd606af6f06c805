"""Fixtures: the real composed configs, shrunk to a tiny CPU model on synthetic data (template practice)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig, open_dict

import isnet
from isnet.cli import compose
from isnet.data import SyntheticDataModule

#: Overrides that turn any config into a seconds-long CPU run: ResNet-18-D at output stride 8 with a
#: 32/16-channel head on 32x32 synthetic scenes of 4 classes.
TINY = [
    "data=synthetic",
    "model/backbone=resnet18d",
    "trainer=cpu",
    "model.model_config.feats_channels=32",
    "model.model_config.transform_channels=16",
    "data.num_classes=4",
    "data.image_size=[32,32]",
    "data.num_train=8",
    "data.num_val=3",
    "data.batch_size=4",
    "schedule.epochs=1",
    "schedule.lr=0.01",
]


def tiny_config(
    config_name: str, output_dir: Path, overrides: Sequence[str] = (), tiny: bool = True
) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with ``TINY`` + ``overrides`` and shrink the trainer."""
    cfg = compose(config_name, [*(TINY if tiny else []), *overrides], output_dir=str(output_dir))
    with open_dict(cfg):
        cfg.trainer.enable_progress_bar = False
        if cfg.get("callbacks"):
            cfg.callbacks.pop("progress_bar", None)
        cfg.trainer.enable_model_summary = False
        cfg.trainer.num_sanity_val_steps = 0
        cfg.trainer.check_val_every_n_epoch = 1
        cfg.trainer.log_every_n_steps = 1
    return cfg


def independent_confmat(ckpt: Path) -> np.ndarray:
    """Counts of (label, prediction) pairs over the ``TINY`` test split, computed without the metric class."""
    model = isnet.load_checkpoint(ckpt)
    datamodule = SyntheticDataModule(num_classes=4, image_size=32, num_train=8, num_val=3, batch_size=4)
    datamodule.setup("test")
    k = 4
    confmat = np.zeros((k, k), dtype=np.int64)
    with torch.inference_mode():
        for sample in datamodule.test_dataset:
            pred = model(sample["image"][None]).argmax(1)[0].numpy()  # eval mode: resized to the label size
            target = sample["mask"].numpy()
            keep = target != 255
            confmat += np.bincount(target[keep] * k + pred[keep], minlength=k * k).reshape(k, k)
    return confmat


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny training run (1 epoch = 2 steps) shared by the eval/predict/run-folder tests."""
    from isnet.cli.train import train

    output_dir = tmp_path_factory.mktemp("trained") / "run"
    train(tiny_config("train", output_dir))
    return output_dir
