"""Callbacks: per-epoch reseeding, metric history, overlay pictures, atomic JSON."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from isnet.data import SyntheticDataModule
from isnet.lit import EpochSeed, ISNetModule, MetricsHistory, PredictionOverlays


def _order(loader: DataLoader) -> list[int]:
    return [int(i) for batch in loader for i in batch]


def test_epoch_seed_makes_the_order_a_function_of_the_epoch() -> None:
    callback = EpochSeed(seed=3)
    orders = {}
    for warmup in (0, 2):  # a loader that already produced `warmup` epochs (a different generator state)
        loader = DataLoader(
            list(range(10)), batch_size=3, shuffle=True, generator=torch.Generator().manual_seed(9)
        )
        for _ in range(warmup):
            _order(loader)
        iterator = iter(loader)  # Lightning creates the first iterator before on_train_epoch_start
        callback.on_train_epoch_start(
            SimpleNamespace(current_epoch=4, global_rank=0, train_dataloader=loader), None
        )
        first_dropout = torch.rand(3)
        orders[warmup] = ([int(i) for batch in iterator for i in batch], first_dropout)
    assert orders[0][0] == orders[2][0] and sorted(orders[0][0]) == list(range(10))
    assert torch.equal(orders[0][1], orders[2][1])
    assert callback.epoch_seed(4, 0) != callback.epoch_seed(5, 0) != callback.epoch_seed(4, 1)


def test_metrics_history_state_and_files(tmp_path: Path) -> None:
    history = MetricsHistory(dirpath=str(tmp_path))
    trainer = SimpleNamespace(global_step=0, current_epoch=0, sanity_checking=False, default_root_dir=str(tmp_path),
                              callback_metrics={})  # fmt: skip
    for step, loss in enumerate([2.0, 1.0]):
        trainer.global_step = step
        history.on_train_batch_end(trainer, None, {"loss": torch.tensor(loss)}, None, step)
    history.on_train_epoch_end(trainer, None)
    trainer.callback_metrics = {"val/mIoU": torch.tensor(0.25), "val/aAcc": torch.tensor(0.5)}
    history.on_validation_end(trainer, None)
    written = json.loads((tmp_path / "metrics_history.json").read_text())
    assert (
        written["train_loss"] == [1.5] and written["val_mIoU"] == [0.25] and written["steps_per_epoch"] == 2
    )
    assert (tmp_path / "curves.png").is_file()
    restored = MetricsHistory()
    restored.load_state_dict(history.state_dict())
    assert restored.history == history.history


def test_prediction_overlays(tmp_path: Path) -> None:
    datamodule = SyntheticDataModule(num_classes=3, image_size=(24, 40), num_val=3)
    datamodule.setup("test")
    module = ISNetModule(model_config={"backbone": "resnet18d", "feats_channels": 16, "transform_channels": 8},
                         num_classes=3)  # fmt: skip
    trainer = SimpleNamespace(datamodule=datamodule, default_root_dir=str(tmp_path))
    callback = PredictionOverlays(num_images=2, min_height=100, palette="generated")
    callback.draw(trainer, module, "test_dataset")
    assert [p.name for p in callback.written] == [
        "00_synthetic_test_000000.png",
        "01_synthetic_test_000001.png",
    ]
    with Image.open(callback.written[0]) as img:
        assert (
            img.mode == "RGB" and img.size[1] >= 100 and img.size[0] > 3 * 100 * 40 / 24
        )  # three panels >= min_height
    assert module.training  # the module's mode is restored


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"stage": "val"}, "stage must be 'test' or 'fit'"), ({"num_images": 0}, "num_images must be a positive int"),
     ({"palette": "rainbow"}, "palette must be 'data', 'generated' or a list")],
)  # fmt: skip
def test_prediction_overlays_rejects_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PredictionOverlays(**kwargs)
