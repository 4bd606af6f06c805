"""The CPU demo with a ConvNeXt backbone (``experiment=demo model/backbone=convnext_atto``) composes and trains,
also with activation checkpointing and gradient accumulation switched on from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from isnet.cli.train import train

from .conftest import tiny_config


@pytest.mark.parametrize(
    "extra",
    [[], ["model.grad_checkpointing=true", "trainer.accumulate_grad_batches=2"]],
    ids=["plain", "memory"],
)
def test_demo_with_convnext_runs(tmp_path: Path, extra: list[str]) -> None:
    overrides = [
        "experiment=demo",
        "model/backbone=convnext_atto",
        "debug=fdr",
        "data.batch_size=2",
        "data.image_size=[32,32]",
        *extra,
    ]
    cfg = tiny_config("train", tmp_path / "run", overrides, tiny=False)
    assert cfg.model.model_config.backbone == "convnext_atto" and cfg.model.model_config.pretrained is False
    metrics, objects = train(cfg)
    model = objects["model"].model
    assert (
        type(model.backbone).__name__ == "FeatureListNet" and model.backbone.feature_info.reduction()[-1] == 8
    )
    assert model.grad_checkpointing == ("model.grad_checkpointing=true" in extra)
    assert objects["trainer"].global_step == 1 and torch.isfinite(torch.tensor(metrics["train/loss"]))
    assert 0.0 <= metrics["test/mIoU"] <= 1.0
