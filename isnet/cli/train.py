"""Train ISNet from a Hydra config (``conf/train.yaml``), then optionally test the best checkpoint.

Examples::

    python scripts/train.py experiment=isnet_r50_d8_ade20k data.root=/data/ADE20k
    python scripts/train.py experiment=demo                       # synthetic data, CPU, a few minutes
    python scripts/train.py -m experiment=isnet_r50_d8_ade20k,isnet_r101_d8_ade20k
    python scripts/train.py experiment=... hydra.run.dir=runs/train/<run> ckpt_path=last   # resume
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from isnet.cli import CONFIG_DIR, one_line_errors
from isnet.cli.utils import (
    RUN_MARKER,
    SafeCheckpointIO,
    build_training_module,
    claim_run_dir,
    instantiate_group,
    is_child_process,
    release_run_dir,
    resolve_ckpt_path,
)
from isnet.errors import ConfigError
from isnet.lit.module import newest_checkpoint
from isnet.utils.io import write_json

__all__ = ["main", "metric_value", "train"]

log = logging.getLogger(__name__)


def _scalar(value: Any) -> Any:
    is_tensor = isinstance(value, torch.Tensor)
    return (value.item() if value.numel() == 1 else value.tolist()) if is_tensor else value


def train(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit (and optionally test) a model as described by ``cfg``.

    Args:
        cfg: A composed ``train`` config (see :func:`isnet.cli.compose`).

    Returns:
        ``(metrics, objects)``: the final logged metrics (plain floats) and the ``datamodule``, ``model``,
        ``trainer`` and ``output_dir``.
    """
    start = time.time()
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), output_dir)
    if cfg.get("train", True):
        for key in ("schedule.epochs", "trainer.max_epochs"):
            epochs = OmegaConf.select(cfg, key)
            if epochs is not None and not (isinstance(epochs, int) and epochs >= 1):
                raise ConfigError(f"{key}={epochs}: training needs at least 1 epoch")
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    # The reference trains in full FP32: TF32 off for matmuls and convolutions (ssseg/train.py).
    allow_tf32 = bool(cfg.get("allow_tf32", False))
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow_tf32

    datamodule = hydra.utils.instantiate(cfg.data)
    model = build_training_module(cfg.model, datamodule, ckpt_path)
    callbacks, loggers = instantiate_group(cfg, "callbacks"), instantiate_group(cfg, "logger")
    plugins = [SafeCheckpointIO()]
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=plugins
    )

    claimed = not is_child_process() and not (output_dir / RUN_MARKER).is_file()
    if not is_child_process():
        claim_run_dir(output_dir, cfg, resuming=ckpt_path is not None)
    try:
        if cfg.get("train", True):
            trainer.fit(model=model, datamodule=datamodule, ckpt_path=ckpt_path)
    except BaseException:
        if claimed and not (output_dir / "checkpoints").is_dir():
            release_run_dir(output_dir)  # failed before the first checkpoint: not a run folder
        raise
    metrics = {k: _scalar(v) for k, v in trainer.callback_metrics.items()}

    best = _best_checkpoint(trainer)
    if cfg.get("test", False):
        # Test the best validated weights when a checkpoint tracked them, else the weights in memory.
        trainer.test(model=model, datamodule=datamodule, ckpt_path=best or None)
        metrics.update({k: _scalar(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
        if best:
            metrics["test_checkpoint"] = best

    metrics["best_checkpoint"] = best or None
    last = newest_checkpoint(trainer, monitored=False)  # the end-of-epoch checkpoint written last
    metrics["last_checkpoint"] = str(last) if last else None
    metrics["elapsed_s"] = round(time.time() - start, 1)
    if trainer.is_global_zero:
        write_json(output_dir / "metrics.json", metrics)
        _report(metrics, output_dir)
    return metrics, {"datamodule": datamodule, "model": model, "trainer": trainer, "output_dir": output_dir}


def _best_checkpoint(trainer: pl.Trainer) -> str:
    """Path of the best checkpoint of a monitoring ModelCheckpoint ('' when none was written)."""
    return next(
        (cb.best_model_path for cb in trainer.checkpoint_callbacks if cb.monitor and cb.best_model_path), ""
    )


def _report(metrics: dict[str, Any], output_dir: Path) -> None:
    from rich.console import Console

    console = Console()
    for key, value in sorted(metrics.items()):
        shown = key.split("/")[-1] in ("mIoU", "aAcc", "mIoU_best", "mIoU_ms_flip")
        if shown and isinstance(value, float) and math.isfinite(value):
            console.print(f"{key}: {100 * value:.2f}%")
    console.print(f"elapsed: {metrics['elapsed_s']:.0f} s")
    print(f"Run folder: {output_dir.resolve()}", flush=True)  # plain print: never wrapped, easy to copy


def metric_value(metrics: dict[str, Any], name: str | None) -> float | None:
    """The value of ``optimized_metric`` for Hydra sweepers (``None`` when not configured or not logged)."""
    if name and name not in metrics:
        log.warning("optimized_metric %r was not logged (logged: %s)", name, sorted(metrics))
    return float(metrics[name]) if name and name in metrics else None


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
@one_line_errors
def main(cfg: DictConfig) -> float | None:
    """Console entry point ``isnet-train`` / ``scripts/train.py``."""
    metrics, _ = train(cfg)
    return metric_value(metrics, cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
