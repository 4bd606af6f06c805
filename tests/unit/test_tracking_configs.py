"""logger=wandb / logger=mlflow / callbacks=early_stopping compose, and the logger builders keep runs local."""

from __future__ import annotations

import os

import pytest

from isnet.cli import compose
from isnet.errors import ConfigError
from isnet.lit.loggers import build_mlflow_logger, build_wandb_logger


def test_wandb_config_is_offline_in_the_run_folder() -> None:
    cfg = compose("train", ["experiment=demo", "logger=wandb"], output_dir="/runs/x")
    assert list(cfg.logger) == ["wandb"]
    wandb = cfg.logger.wandb
    assert wandb._target_ == "isnet.lit.loggers.build_wandb_logger"
    assert wandb.mode == "offline" and wandb.save_dir == "/runs/x" and not wandb.log_model
    assert wandb.group == "demo"


def test_mlflow_config_is_a_folder_store_in_the_run_folder() -> None:
    cfg = compose("train", ["experiment=demo", "logger=[csv,mlflow]"], output_dir="/runs/x")
    assert list(cfg.logger) == ["csv", "mlflow"]
    assert cfg.logger.mlflow.tracking_uri == "file:/runs/x/mlruns"
    assert cfg.logger.mlflow.experiment_name == "demo"


def test_early_stopping_adds_to_the_default_callbacks() -> None:
    default = compose("train", ["callbacks=default"])
    cfg = compose("train", ["callbacks=early_stopping"])
    assert list(cfg.callbacks) == [*default.callbacks, "early_stopping"]
    stop = cfg.callbacks.early_stopping
    assert stop._target_ == "pytorch_lightning.callbacks.EarlyStopping"
    assert (stop.monitor, stop.mode, stop.check_on_train_epoch_end) == ("val/mIoU", "max", False)
    assert stop.monitor == cfg.callbacks.model_checkpoint.monitor  # stops on what the best checkpoint tracks
    with_demo = compose("train", ["experiment=demo", "callbacks=[demo,early_stopping]"])
    assert {"prediction_overlays", "early_stopping", "model_checkpoint"} <= set(with_demo.callbacks)


@pytest.mark.parametrize(
    ("build", "kwargs", "message"),
    [
        (
            build_wandb_logger,
            {"mode": "dryrun"},
            "logger.wandb.mode must be one of offline, online, disabled",
        ),
        (build_wandb_logger, {"mode": "offline", "log_model": True}, "logger.wandb.log_model needs"),
        (build_mlflow_logger, {"tracking_uri": ""}, "logger.mlflow.tracking_uri must be set"),
    ],
)
def test_builders_refuse_bad_settings(build, kwargs, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build(**kwargs)


def test_mlflow_builder_turns_telemetry_off_but_keeps_the_users_choice(tmp_path, monkeypatch) -> None:
    pytest.importorskip("mlflow")
    from mlflow.exceptions import MlflowException

    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "false")  # the user's value wins: MLflow refuses the folder
    with pytest.raises(MlflowException, match="MLFLOW_ALLOW_FILE_STORE"):
        build_mlflow_logger(f"file:{tmp_path}/mlruns", experiment_name="e")
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    logger = build_mlflow_logger(f"file:{tmp_path}/mlruns", experiment_name="e")
    assert os.environ["MLFLOW_ALLOW_FILE_STORE"] == "true"
    assert logger.save_dir == f"{tmp_path}/mlruns"


def test_wandb_builder_is_offline_without_crash_reports(tmp_path, monkeypatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_ERROR_REPORTING", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    logger = build_wandb_logger(save_dir=str(tmp_path), project="p")
    assert os.environ["WANDB_ERROR_REPORTING"] == "false"
    assert logger._wandb_init["mode"] == "offline" and logger._wandb_init["dir"] == str(tmp_path)
