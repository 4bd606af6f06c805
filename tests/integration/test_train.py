"""Training through the real composed configs: fast dev run, run folders, exact resume, NaN guard, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf, open_dict

import isnet
from isnet.cli import unique_dir
from isnet.cli.train import train
from isnet.cli.utils import RunFolderError
from isnet.lit import ISNetModule

from .conftest import tiny_config

REPO_ROOT = Path(__file__).resolve().parents[2]


class LossRecorder(pl.Callback):
    """Collects the training loss of every step."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


class StopAfterEpoch(pl.Callback):
    """Stops training at the end of epoch ``epoch`` (an interruption that keeps the schedule length)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            trainer.should_stop = True


class PoisonLossFrom(pl.Callback):
    """Makes the loss NaN from epoch ``epoch`` on."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            forward = pl_module.criterion.forward

            def poisoned(outputs, target):
                losses = forward(outputs, target)
                return {k: v * float("nan") for k, v in losses.items()}

            pl_module.criterion.forward = poisoned


def _callback(trainer: pl.Trainer, kind: type) -> pl.Callback:
    return next(cb for cb in trainer.callbacks if isinstance(cb, kind))


def _add_callback(cfg, name: str, target: str, **kwargs) -> None:
    with open_dict(cfg):
        cfg.callbacks[name] = {"_target_": target, **kwargs}


def test_fast_dev_run_train_and_test(tmp_path: Path) -> None:
    cfg = tiny_config("train", tmp_path / "run", ["debug=fdr", "test=true"])
    metrics, objects = train(cfg)
    assert objects["trainer"].global_step == 1
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))
    assert 0.0 <= metrics["test/mIoU"] <= 1.0
    assert set(metrics) >= {
        "train/loss",
        "train/loss_stage1",
        "train/loss_stage2",
        "train/loss_aux",
        "train/lr",
    }


def test_test_after_training_loads_the_best_checkpoint_safely(tmp_path: Path, monkeypatch) -> None:
    """``test=true`` reloads the best checkpoint through ``safe_torch_load`` (``weights_only=True``)."""
    import isnet.cli.utils as cli_utils

    loaded: list[str] = []
    real = cli_utils.safe_torch_load
    monkeypatch.setattr(cli_utils, "safe_torch_load", lambda path: loaded.append(path) or real(path))
    metrics, _ = train(tiny_config("train", tmp_path / "run", ["test=true"]))
    assert metrics["best_checkpoint"] and loaded == [metrics["best_checkpoint"]]
    assert metrics["test_checkpoint"] == metrics["best_checkpoint"] and 0.0 <= metrics["test/mIoU"] <= 1.0


def test_run_folder_contents(trained_run: Path) -> None:
    for name in ("run.json", "config.yaml", "metrics.json", "metrics_history.json", "curves.png",
                 "checkpoints/last.ckpt", "csv/version_0/metrics.csv"):  # fmt: skip
        assert (trained_run / name).is_file(), name
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert 0.0 <= metrics["val/mIoU"] <= 1.0 and metrics["last_checkpoint"].endswith("last.ckpt")
    run = json.loads((trained_run / "run.json").read_text())
    assert run["versions"]["torch"] == torch.__version__
    saved = OmegaConf.load(trained_run / "config.yaml")
    assert saved.model.model_config.backbone == "resnet18d" and saved.paths.output_dir == str(trained_run)
    history = json.loads((trained_run / "metrics_history.json").read_text())
    assert history["epoch"] == [0] and len(history["train_step_loss"]) == 2 and len(history["val_mIoU"]) == 1
    model = isnet.load_checkpoint(trained_run / "checkpoints" / "last.ckpt")
    assert model.num_classes == 4 and model.backbone_name == "resnet18d"
    module = ISNetModule.load_from_checkpoint(trained_run / "checkpoints" / "last.ckpt", weights_only=False)
    assert module.hparams.optimizer["lr"] == 0.01 and module.hparams.class_names[0] == "background"
    for key, value in model.state_dict().items():
        assert torch.equal(module.model.state_dict()[key], value), key
    hparams = OmegaConf.load(trained_run / "csv" / "version_0" / "hparams.yaml")
    assert hparams.model_config.feats_channels == 32 and list(hparams.inference.scales) == [1.0]


def test_existing_run_folder_is_never_overwritten(trained_run: Path) -> None:
    last = trained_run / "checkpoints" / "last.ckpt"
    before = (last.stat().st_mtime_ns, (trained_run / "run.json").read_text())
    with pytest.raises(RunFolderError, match="already holds a run; refusing to overwrite it"):
        train(tiny_config("train", trained_run))
    assert (last.stat().st_mtime_ns, (trained_run / "run.json").read_text()) == before


def test_unique_dir_picks_a_free_name(tmp_path: Path) -> None:
    base = tmp_path / "runs" / "2024-01-01_00-00-00"
    base.mkdir(parents=True)
    (tmp_path / "runs" / "2024-01-01_00-00-00_1").mkdir()
    chosen = unique_dir(str(base))
    assert chosen == f"{base}_2"
    Path(chosen).mkdir()
    assert unique_dir(str(base)) == chosen  # remembered: later resolutions in this process agree
    fresh = tmp_path / "runs" / "new"
    assert unique_dir(str(fresh)) == str(fresh)


def test_ckpt_last_needs_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"ckpt_path=last: .*last.ckpt does not exist"):
        train(tiny_config("train", tmp_path / "fresh", ["ckpt_path=last"]))


def test_resume_continues_exactly(tmp_path: Path) -> None:
    """N steps, stop, resume to 2N: the losses equal those of an uninterrupted 2N-step run."""
    overrides = [
        "schedule.epochs=4",
        "trainer.limit_val_batches=0",
        "trainer.deterministic=true",
        "logger=csv",
    ]
    recorder = "tests.integration.test_train.LossRecorder"

    full = tiny_config("train", tmp_path / "full", overrides)
    _add_callback(full, "recorder", recorder)
    _, objects = train(full)
    reference = _callback(objects["trainer"], LossRecorder).losses
    assert len(reference) == 8  # 4 epochs x 2 steps

    first = tiny_config("train", tmp_path / "resumed", overrides)
    _add_callback(first, "recorder", recorder)
    _add_callback(first, "stop", "tests.integration.test_train.StopAfterEpoch", epoch=1)
    _, objects = train(first)
    part1 = _callback(objects["trainer"], LossRecorder).losses
    assert objects["trainer"].global_step == 4

    second = tiny_config("train", tmp_path / "resumed", [*overrides, "ckpt_path=last"])
    _add_callback(second, "recorder", recorder)
    _, objects = train(second)
    part2 = _callback(objects["trainer"], LossRecorder).losses
    assert objects["trainer"].global_step == 8
    assert part1 + part2 == reference
    run = json.loads((tmp_path / "resumed" / "run.json").read_text())
    assert len(run["resumed"]) == 1


def test_nonfinite_loss_stops_and_keeps_last_checkpoint(tmp_path: Path) -> None:
    cfg = tiny_config("train", tmp_path / "run", ["schedule.epochs=3", "trainer.limit_val_batches=0"])
    _add_callback(cfg, "poison", "tests.integration.test_train.PoisonLossFrom", epoch=1)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    with pytest.raises(FloatingPointError) as info:
        train(cfg)
    message = str(info.value)
    assert "non-finite training loss at global step 2 (epoch 1, batch 0)" in message
    assert f"the last good checkpoint is {last}" in message
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["epoch"] == 0 and state["global_step"] == 2
    weights = {
        k: v for k, v in state["state_dict"].items() if k.startswith("model.") and v.is_floating_point()
    }
    assert weights and all(torch.isfinite(v).all() for v in weights.values())


def _run_script(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip


def test_train_script_prints_run_folder_and_refuses_reuse(tmp_path: Path) -> None:
    from .conftest import TINY

    run_dir = tmp_path / "cli_run"
    args = ["scripts/train.py", *TINY, "debug=fdr", f"hydra.run.dir={run_dir}"]
    done = _run_script(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Run folder: {run_dir.resolve()}" in done.stdout
    assert (run_dir / "run.json").is_file() and (run_dir / "metrics.json").is_file()
    again = _run_script(*args)
    assert again.returncode != 0
    assert "already holds a run; refusing to overwrite it" in again.stderr
