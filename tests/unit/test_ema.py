"""EMAWeights: the reference's update rule, evaluation with the average, checkpoints, exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from isnet import load_checkpoint
from isnet.accel import optimize_for_inference
from isnet.cli import compose
from isnet.data import SyntheticDataModule
from isnet.errors import CheckpointError, ConfigError
from isnet.lit import EMAWeights, EpochSeed, ISNetModule
from isnet.utils.io import safe_torch_load

TINY = {
    "backbone": "resnet18d",
    "pretrained": False,
    "feats_channels": 16,
    "transform_channels": 8,
    "dropout": 0.1,
}
MOMENTUM = 0.3  # large, so that the average differs clearly from the weights after a few steps


def test_update_rule_against_a_hand_computation() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = EMAWeights(momentum=MOMENTUM)
    ema.update(model)  # the first update starts from a copy: ema = w0
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()(torch.randn(5, 3))  # moves the running statistics and num_batches_tracked
        ema.update(model)
        for key, value in model.state_dict().items():
            if value.is_floating_point():  # the reference's expression, op for op
                expected[key] = expected[key] * (1.0 - MOMENTUM) + MOMENTUM * value
            else:
                expected[key] = value.clone()
    assert ema.updates == 4 and list(ema.weights) == list(expected)
    for key, value in expected.items():
        assert torch.equal(ema.weights[key], value), key
    assert int(ema.weights["1.num_batches_tracked"]) == 3  # copied, not averaged
    assert not torch.equal(ema.weights["0.weight"], model.state_dict()["0.weight"])


@pytest.mark.parametrize("momentum", [0, -0.1, 1.5, True, "0.1"])
def test_momentum_is_checked(momentum: object) -> None:
    with pytest.raises(ConfigError, match="EMAWeights.momentum"):
        EMAWeights(momentum=momentum)


def test_the_config_group_adds_it() -> None:
    cfg = compose(
        "train", ["callbacks=[default,ema]", "callbacks.ema.momentum=0.01"], output_dir="/tmp/unused"
    )
    assert cfg.callbacks.ema._target_ == "isnet.lit.EMAWeights" and cfg.callbacks.ema.momentum == 0.01
    assert "model_checkpoint" in cfg.callbacks and "ema" not in compose("train", [], "/tmp/unused").callbacks


class Probe(pl.Callback):
    """Records the trained weights before evaluation starts and checks the evaluation copy on the first batch."""

    def __init__(self, ema: EMAWeights) -> None:
        self.ema = ema
        self.checked = 0
        self.trained: dict[str, torch.Tensor] = {}

    def on_validation_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.trained = {k: v.clone() for k, v in module.model.state_dict().items()}  # runs before the swap

    def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx or trainer.sanity_checking:
            return
        # the fast copy the module evaluated is the one of the averaged weights, not of the trained ones
        averaged = load_network(self.ema.weights)
        trained = load_network(self.trained)
        image = batch["image"][0][None]
        got = module.eval_model().predict_logits(image)
        assert torch.equal(got, optimize_for_inference(averaged).predict_logits(image))
        assert not torch.allclose(got, optimize_for_inference(trained).predict_logits(image), atol=1e-4)
        self.checked += 1


def load_network(state: dict[str, torch.Tensor]) -> nn.Module:
    module = ISNetModule(model_config=dict(TINY), num_classes=3)
    module.model.load_state_dict(state)
    return module.model.eval()


def fit(root: Path, epochs: int, ckpt_path: str | None = None, callbacks: list | None = None):
    """Train the tiny model on 8 synthetic images (2 steps per epoch), a checkpoint per epoch in ``root``."""
    pl.seed_everything(0)
    data = SyntheticDataModule(
        num_classes=3, image_size=32, num_train=8, num_val=2, batch_size=4, augment=True
    )
    module = ISNetModule(model_config=dict(TINY), num_classes=3, lr=0.05)
    callbacks = callbacks or [EMAWeights(momentum=MOMENTUM)]
    checkpoints = pl.callbacks.ModelCheckpoint(
        dirpath=root, filename="{epoch}", save_top_k=-1, save_on_train_epoch_end=True
    )
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, logger=False, deterministic=True,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         callbacks=[*callbacks, EpochSeed(seed=0), checkpoints])  # fmt: skip
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    ema = next(c for c in trainer.callbacks if isinstance(c, EMAWeights))
    return trainer, module, ema, data


def test_validation_uses_the_average_and_restores_the_weights(tmp_path: Path) -> None:
    ema = EMAWeights(momentum=MOMENTUM)
    probe = Probe(ema)  # before ema in the list: its on_validation_start sees the trained weights
    trainer, module, _, data = fit(tmp_path, epochs=1, callbacks=[probe, ema])
    assert probe.checked == 1
    trained = module.model.state_dict()
    assert all(torch.equal(trained[k], v) for k, v in probe.trained.items())  # restored bit for bit
    assert not all(torch.equal(trained[k], v) for k, v in ema.weights.items())

    # the logged metric is the one of the averaged weights: make the average predict class 0 everywhere
    ema.weights["head.decoder_stage2.1.bias"] += torch.tensor([1e4, 0.0, 0.0])
    result = trainer.validate(module, datamodule=data, verbose=False)[0]
    assert all(torch.equal(module.model.state_dict()[k], v) for k, v in probe.trained.items())
    plain = ISNetModule(model_config=dict(TINY), num_classes=3)
    bare = pl.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_checkpointing=False
    )
    results = {}
    for name, state in (("average", ema.weights), ("trained", probe.trained)):
        plain.model.load_state_dict(state)
        results[name] = bare.validate(plain, datamodule=data, verbose=False)[0]
    assert result == results["average"] != results["trained"]


class StopAfterFirstEpoch(pl.Callback):
    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        trainer.should_stop = True


def test_resume_is_exact_and_checkpoints_carry_the_average(tmp_path: Path) -> None:
    _, straight, ema_straight, _ = fit(tmp_path / "straight", epochs=2)
    # the same run (same poly schedule length), stopped after its first epoch, then resumed
    fit(tmp_path / "interrupted", epochs=2, callbacks=[EMAWeights(momentum=MOMENTUM), StopAfterFirstEpoch()])
    assert not (tmp_path / "interrupted" / "epoch=1.ckpt").exists()
    first = tmp_path / "interrupted" / "epoch=0.ckpt"
    _, resumed, ema_resumed, _ = fit(tmp_path / "interrupted", epochs=2, ckpt_path=str(first))
    assert ema_resumed.updates == ema_straight.updates == 4
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
        assert torch.equal(ema_resumed.weights[key], ema_straight.weights[key]), key

    # the checkpoint: trained weights in state_dict, the average under callbacks; load_checkpoint reads either
    saved = tmp_path / "straight" / "epoch=1.ckpt"
    raw = safe_torch_load(saved)
    for key, value in ema_straight.weights.items():
        assert torch.equal(raw["callbacks"]["EMAWeights"]["weights"][key], value)
        assert torch.equal(raw["state_dict"][f"model.{key}"], straight.model.state_dict()[key])
    for ema, expected in ((True, ema_straight.weights), (False, straight.model.state_dict())):
        network = load_checkpoint(saved, ema=ema).state_dict()
        assert all(torch.equal(network[k], v) for k, v in expected.items())
    with pytest.raises(CheckpointError, match=r"callbacks=\[default,ema\]"):
        load_checkpoint(_without_ema(raw, tmp_path), ema=True)

    # testing a checkpoint evaluates the average stored in that file (not the callback's current one), also
    # for the end hooks of callbacks listed after it (e.g. PredictionOverlays)
    fresh, seen = EMAWeights(momentum=MOMENTUM), SeenAtTestEnd()
    tester = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        callbacks=[fresh, seen],
    )
    module = ISNetModule(model_config=dict(TINY), num_classes=3)
    data = SyntheticDataModule(num_classes=3, image_size=32, num_val=2)
    tester.test(module, datamodule=data, ckpt_path=str(saved), verbose=False)
    assert all(torch.equal(fresh.weights[k], v) for k, v in ema_straight.weights.items())
    assert all(torch.equal(seen.state[k], v) for k, v in ema_straight.weights.items())
    assert all(torch.equal(module.model.state_dict()[k], v) for k, v in straight.model.state_dict().items())


class SeenAtTestEnd(pl.Callback):
    def on_test_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.state = {k: v.clone() for k, v in module.model.state_dict().items()}


def _without_ema(raw: dict, folder: Path) -> Path:
    path = folder / "no_ema.ckpt"
    torch.save({**raw, "callbacks": {}}, path)
    return path
