"""Fine-tuning through scripts/train.py's path: model.init_from from a served model-zoo file, frozen backbone,
resume and load_from_checkpoint without reading the source again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from isnet.checkpoint import save_checkpoint
from isnet.cli.train import train
from isnet.data.datasets.synthetic import write_folder_dataset
from isnet.lit import ISNetModule
from isnet.models import ISNet
from tests.unit.conftest import FileServer

from .conftest import tiny_config
from .test_train import LossRecorder, _add_callback, _callback

ZOO_NAME, RELEASE_FILE = "isnet_r50_d8_ade20k", "isnet_resnet50os8_ade20k.pth"
SOURCE = {"backbone": "resnet18d", "feats_channels": 32, "transform_channels": 16}


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FileServer, ISNet]]:
    """A 5-class ResNet-18-D ISNet served at the model-zoo URL of ``ZOO_NAME`` (downloaded into a private hub
    cache). ``init_from`` reads any checkpoint format, so a small network keeps the run within seconds."""
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    root = tmp_path / "served"
    root.mkdir()
    torch.manual_seed(5)
    source = ISNet(num_classes=5, **SOURCE)
    save_checkpoint(source, root / RELEASE_FILE)
    with FileServer(root) as server:
        monkeypatch.setenv("ISNET_ZOO_URL", server.url + "/{file}")
        yield server, source


def finetune_config(tmp_path: Path, run: str, overrides: list[str]):
    data = tmp_path / "data"
    if not data.exists():
        write_folder_dataset(data, num_classes=3, num_train=8, num_val=2, image_size=32)
    cfg = tiny_config("train", tmp_path / run, [
        "experiment=finetune_folder", f"data.root={data}", f"model.init_from={ZOO_NAME}", "trainer=cpu",
        "data.crop_size=[32,32]", "data.scale=[32,32]", "+data.ratio_range=[1.0,1.0]", "data.test_scale=[32,32]",
        "data.batch_size=4", "data.num_workers=0", "data.pin_memory=false", "schedule.lr=0.05",
        "trainer.limit_val_batches=0",
        *overrides,
    ], tiny=False)  # fmt: skip
    _add_callback(cfg, "recorder", "tests.integration.test_train.LossRecorder")
    return cfg


def test_finetune_from_a_served_zoo_file(tmp_path: Path, served) -> None:
    server, source = served
    cfg = finetune_config(tmp_path, "frozen", ["schedule.epochs=10", "model.freeze_backbone=true"])
    _, objects = train(cfg)
    module = objects["model"]
    assert server.requests == [f"/{RELEASE_FILE}"]

    # the network is the source's (the config's R-50 is replaced), with the folder's 3 classes
    assert module.hparams.model_config["backbone"] == "resnet18d" and module.model.num_classes == 3
    assert module.hparams.model_config["pretrained"] is False and module.hparams.init_from == ZOO_NAME
    # the frozen backbone is still exactly the source's: loaded, then neither trained nor BN-updated
    trained, original = module.model.backbone.state_dict(), source.backbone.state_dict()
    assert all(torch.equal(trained[k], original[k]) for k in original)
    assert not torch.equal(module.model.head.bottleneck[0].weight, source.head.bottleneck[0].weight)
    losses = _callback(objects["trainer"], LossRecorder).losses
    assert len(losses) == 20
    # each epoch sees the same 8 images (2 steps; crops are whole images): the epoch loss falls
    per_epoch = [losses[i] + losses[i + 1] for i in range(0, len(losses), 2)]
    assert per_epoch[-1] < 0.7 * per_epoch[0], per_epoch


class WeightsAtStart(pl.Callback):
    """The network's weights when training starts (after any checkpoint was restored)."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.state = {k: v.clone() for k, v in pl_module.model.state_dict().items()}


def test_resume_and_load_from_checkpoint_do_not_read_the_source(tmp_path: Path, served) -> None:
    server, _ = served
    first = finetune_config(tmp_path, "run", ["schedule.epochs=2"])
    _add_callback(first, "stop", "tests.integration.test_train.StopAfterEpoch", epoch=0)
    _, objects = train(first)
    assert objects["trainer"].global_step == 2 and server.requests == [f"/{RELEASE_FILE}"]
    after_first = {k: v.clone() for k, v in objects["model"].model.state_dict().items()}

    # the source disappears (served file and cached copy): resuming takes the network from the run's
    # checkpoint hyper-parameters and the weights from the checkpoint, without reading init_from
    for path in [*(tmp_path / "served").iterdir(), *(tmp_path / "torch_home").rglob("*.pth")]:
        path.unlink()
    second = finetune_config(tmp_path, "run", ["schedule.epochs=2", "ckpt_path=last"])
    _add_callback(second, "start", "tests.integration.test_finetune.WeightsAtStart")
    _, objects = train(second)
    assert objects["trainer"].global_step == 4 and server.requests == [f"/{RELEASE_FILE}"]
    at_start = _callback(objects["trainer"], WeightsAtStart).state
    assert all(torch.equal(at_start[k], v) for k, v in after_first.items())

    loaded = ISNetModule.load_from_checkpoint(
        tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu"
    )
    assert loaded.hparams.init_from == ZOO_NAME and loaded.weights_loaded
    assert (loaded.model.num_classes, loaded.model.backbone_name) == (3, "resnet18d")
    final = objects["model"].model.state_dict()
    assert all(torch.equal(v, final[k]) for k, v in loaded.model.state_dict().items())
    assert server.requests == [f"/{RELEASE_FILE}"]
