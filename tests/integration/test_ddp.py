"""Two CPU processes (ddp_spawn, gloo): validation on an odd number of images counts each image once."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from isnet.cli.train import train
from isnet.data import SyntheticDataModule

from .conftest import tiny_config

NUM_VAL = 5  # odd: a padding DistributedSampler would evaluate one image twice


@pytest.mark.ddp
@pytest.mark.timeout(240)
def test_ddp_validation_equals_single_process(tmp_path: Path) -> None:
    cfg = tiny_config("train", tmp_path / "ddp", ["trainer=ddp_sim", f"data.num_val={NUM_VAL}", "logger=csv"])
    metrics, objects = train(cfg)
    trainer, model = objects["trainer"], objects["model"]
    assert trainer.world_size == 2
    state = torch.load(tmp_path / "ddp" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["global_step"] == 2  # 8 images, global batch 4 = 2 per rank: 2 steps per epoch
    ddp_miou, ddp_aacc = metrics["val/mIoU"], metrics["val/aAcc"]

    # the weights the spawned processes ended with, evaluated by one process on the whole split
    single = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)  # fmt: skip
    datamodule = SyntheticDataModule(num_classes=4, image_size=32, num_train=8, num_val=NUM_VAL, batch_size=4)
    (result,) = single.validate(model, datamodule=datamodule, verbose=False)
    assert result["val/mIoU"] == ddp_miou
    assert result["val/aAcc"] == ddp_aacc
