"""Experiment trackers that stay on this machine unless asked: Weights & Biases offline, MLflow in a folder.

Both packages reach the network by default: W&B syncs every run and its service sends crash reports; MLflow
(>= 3) starts a usage-telemetry thread when it is imported. The builders here switch that off before the package
is loaded, then return Lightning's own loggers (``conf/logger/wandb.yaml``, ``conf/logger/mlflow.yaml``).
An environment variable the user has set is never changed. Both packages are optional (the ``tracking`` extra).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from isnet.errors import ConfigError

if TYPE_CHECKING:
    from pytorch_lightning.loggers import MLFlowLogger, WandbLogger

__all__ = ["WANDB_MODES", "build_mlflow_logger", "build_wandb_logger"]

#: ``wandb.init`` modes: ``offline`` writes ``<save_dir>/wandb/offline-run-*`` (``wandb sync`` uploads it
#: later), ``online`` syncs to the W&B server (needs ``wandb login``), ``disabled`` logs nothing.
WANDB_MODES = ("offline", "online", "disabled")


def build_wandb_logger(mode: str = "offline", **kwargs: Any) -> WandbLogger:
    """A ``pytorch_lightning.loggers.WandbLogger`` that is offline unless ``mode="online"``.

    A W&B run still open in this process (the previous job of a Hydra multirun) is finished first: Lightning
    would otherwise log the new run into it.

    Args:
        mode: One of :data:`WANDB_MODES`.
        **kwargs: ``WandbLogger`` arguments (``save_dir``, ``project``, ``name``, ``log_model``, ...) and
            ``wandb.init`` arguments (``group``, ``tags``, ...).

    Raises:
        ConfigError: An unknown ``mode``, or ``log_model`` without ``mode="online"``.
    """
    if mode not in WANDB_MODES:
        raise ConfigError(f"logger.wandb.mode must be one of {', '.join(WANDB_MODES)}, got {mode!r}")
    if kwargs.get("log_model") and mode != "online":
        raise ConfigError(
            f"logger.wandb.log_model needs logger.wandb.mode=online (checkpoints are uploaded), got {mode!r}"
        )
    if mode != "online":
        os.environ.setdefault("WANDB_ERROR_REPORTING", "false")  # the service's crash reports go online
    import wandb
    from pytorch_lightning.loggers import WandbLogger

    if wandb.run is not None:
        wandb.finish()
    return WandbLogger(offline=mode == "offline", mode=mode, **kwargs)


def build_mlflow_logger(tracking_uri: str, **kwargs: Any) -> MLFlowLogger:
    """A ``pytorch_lightning.loggers.MLFlowLogger`` with MLflow's usage telemetry off.

    Args:
        tracking_uri: Where runs are stored: ``file:<folder>`` (the default config: ``<run>/mlruns``, no server),
            ``sqlite:///<file>`` or a tracking server ``http(s)://...``.
        **kwargs: ``MLFlowLogger`` arguments (``experiment_name``, ``run_name``, ``tags``, ...).

    Raises:
        ConfigError: An empty ``tracking_uri``.
    """
    if not tracking_uri:
        raise ConfigError("logger.mlflow.tracking_uri must be set, e.g. file:<folder> or sqlite:///<file>")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # read when mlflow is first imported
    if str(tracking_uri).startswith("file:"):
        # MLflow >= 3.7 refuses its folder store unless asked; it is the store that needs no database or server
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from pytorch_lightning.loggers import MLFlowLogger

    return MLFlowLogger(tracking_uri=str(tracking_uri), **kwargs)
