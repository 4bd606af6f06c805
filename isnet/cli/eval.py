"""Evaluate a checkpoint on a dataset's evaluation split and report per-class IoU and mIoU.

Examples::

    python scripts/eval.py experiment=isnet_r50_d8_ade20k ckpt=isnet_resnet50os8_ade20k.pth
    python scripts/eval.py experiment=isnet_r50_d8_ade20k ckpt=model.pth ms_flip=true trainer=ddp
    python scripts/eval.py experiment=demo ckpt=runs/demo/<run>/checkpoints/last.ckpt
    python scripts/eval.py experiment=isnet_r50_d8_cityscapes ckpt=model.pth +data.test_split=test format_only=true

``ckpt`` may be our checkpoint, a Lightning ``.ckpt`` of this project, a released sssegmentation ``.pth`` or a
model-zoo name. Evaluation uses the data's test split (the reference's evaluation split) and, with
``ms_flip=true``, the experiment's multi-scale + flip settings. With ``plots=true`` a per-class IoU bar chart
and the row-normalised confusion matrix are written next to the JSON (or into ``plots_dir``).

With ``format_only=true`` nothing is scored: the same test-time inference predicts every image of the split
(labelled or not) and :mod:`isnet.cli.submission` writes one PNG per image into ``format_dir`` in the
benchmark server's format (Cityscapes labelIds, ADE20k class id + 1, else class indices).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

import isnet
import isnet.hub
from isnet.cli import CONFIG_DIR, one_line_errors
from isnet.cli.submission import SubmissionWriter, prepare_submission_dir, submission_format, submission_lut
from isnet.cli.utils import build_module, is_child_process
from isnet.errors import ConfigError, DataError
from isnet.inference import InferenceConfig, test_settings
from isnet.inference.auto import peak_memory
from isnet.utils.io import write_json
from isnet.viz import confusion_matrix_figure, per_class_iou_figure, save_figure

__all__ = ["evaluate", "inference_settings", "main", "print_results", "write_plots", "write_submission"]


def inference_settings(cfg: DictConfig) -> InferenceConfig:
    """The test-time settings that ``inference`` / ``ms_flip`` / ``experiment_name`` select (eval, predict)."""
    explicit = cfg.get("inference")
    if explicit:
        return InferenceConfig(**OmegaConf.to_container(explicit, resolve=True))
    if cfg.get("ms_flip", False):
        name = cfg.get("experiment_name")
        if not name:
            raise ConfigError(
                "ms_flip=true needs the recipe's test settings: pass experiment=<model-zoo experiment> "
                "or give inference={mode: ..., scales: [...], flip: ...} explicitly"
            )
        return test_settings(name, ms_flip=True)
    return InferenceConfig(**OmegaConf.to_container(cfg.model.inference, resolve=True))


def compile_setting(cfg: DictConfig) -> bool | dict[str, Any]:
    """The ``compile`` setting as ``torch.compile`` arguments for :func:`isnet.accel.optimize_for_inference`."""
    value = cfg.get("compile", False)
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig) else bool(value)


def check_compatible(model: Any, cfg: DictConfig, datamodule: Any, ckpt: str, backbone: bool = True) -> None:
    """Refuse a checkpoint whose class count (or, with an experiment and ``backbone``, backbone) differs from
    the config (eval and predict): a ConfigError naming both values."""
    data_name = getattr(datamodule, "name", type(datamodule).__name__)
    if model.num_classes != datamodule.num_classes:
        raise ConfigError(
            f"checkpoint {ckpt} predicts {model.num_classes} classes (backbone {model.backbone_name}) but the "
            f"data config '{data_name}' has {datamodule.num_classes} classes; pick the matching experiment/data"
        )
    expected = cfg.model.model_config.get("backbone")
    if backbone and cfg.get("experiment_name") and expected and expected != model.backbone_name:
        raise ConfigError(
            f"checkpoint {ckpt} has backbone {model.backbone_name} but experiment "
            f"'{cfg.experiment_name}' uses {expected}; pick the matching experiment"
        )


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Run the evaluation described by ``cfg`` (an ``eval`` config) and write its JSON.

    Returns:
        ``{"mIoU", "aAcc", "IoU": {class: value}, "inference", "checkpoint", "dataset", "split", ...}``, with
        the paths of the ``"plots"`` when ``plots=true``.
    """
    start = time.time()
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed)
    allow_tf32 = bool(cfg.get("allow_tf32", False))
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow_tf32

    # a file, or one of the 12 model-zoo names (downloaded once into torch's hub cache)
    ckpt = str(isnet.hub.resolve_checkpoint(str(cfg.ckpt)))
    network = isnet.load_checkpoint(ckpt, ema=bool(cfg.get("ema", False)))
    datamodule = hydra.utils.instantiate(cfg.data)
    check_compatible(network, cfg, datamodule, ckpt)
    module = build_module(
        OmegaConf.create({"_target_": "isnet.lit.ISNetModule"}),
        datamodule,
        model_config={**network.architecture, "pretrained": False},
        inference=OmegaConf.to_container(cfg.model.inference, resolve=True),
        test_inference=inference_settings(cfg),
        experiment=cfg.get("experiment_name"),
        compile=compile_setting(cfg),
    )
    module.model.load_state_dict(network.state_dict(), strict=True)
    if cfg.get("format_only", False):
        return write_submission(cfg, module, datamodule, ckpt, start)
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, logger=False, callbacks=[], enable_checkpointing=False
    )
    try:
        trainer.test(module, datamodule=datamodule, verbose=False)
    except ValueError as err:
        if "cannot be evaluated" not in str(err):
            raise
        where = f" under {datamodule.root}" if getattr(datamodule, "root", None) else ""
        split = f"{getattr(datamodule, 'name', 'data')} split '{getattr(datamodule, 'test_split', '?')}'"
        raise DataError(f"{split}{where}: {err}") from err

    suffix, logged = module.test_suffix, trainer.callback_metrics
    # test_results: this process ran the test loop (float64); else spawned workers did: the logged float32 values
    scores = module.test_results or {
        "mIoU": float(logged[f"test/mIoU{suffix}"]),
        "aAcc": float(logged[f"test/aAcc{suffix}"]),
        "IoU": {name: float(logged[f"test/IoU{suffix}/{name}"]) for name in module.class_names},
    }
    result: dict[str, Any] = {
        **{k: scores[k] for k in ("mIoU", "aAcc", "IoU")},
        "checkpoint": str(Path(ckpt).resolve()),
        "ema": bool(cfg.get("ema", False)),  # the checkpoint's weight average instead of its trained weights
        "experiment": cfg.get("experiment_name"),
        "dataset": getattr(datamodule, "name", None),
        "split": getattr(datamodule, "test_split", None),
        "inference": module.hparams.test_inference,
        "ms_flip": bool(suffix),
        "elapsed_s": round(time.time() - start, 1),
        # peak host RSS of this process (and CUDA peaks on a GPU), so a run's memory needs are on record
        "memory": peak_memory(),
    }
    if trainer.is_global_zero:
        print_results(result)
        if cfg.get("plots", True):
            folder = Path(cfg.get("plots_dir") or Path(str(cfg.output_json)).parent)
            plots = write_plots(folder, result["IoU"], module.test_results.get("confmat"), module.class_names)
            result["plots"] = {key: str(path) for key, path in plots.items()}
            for path in plots.values():
                print(f"Wrote {path}")
        out = write_json(cfg.output_json, result)
        print(f"Wrote {out}")
    return result


def write_submission(
    cfg: DictConfig, module: Any, datamodule: Any, ckpt: str, start: float
) -> dict[str, Any]:
    """``format_only=true``: predict the test split with the evaluation's test-time settings and write the
    benchmark-server PNGs into ``format_dir`` (refused if it holds files, unless ``format_overwrite=true``).

    Returns:
        ``{"format_dir", "files", "format", "checkpoint", "dataset", "split", "inference", ...}``; no scores.
    """
    dataset = getattr(datamodule, "name", "segmentation")
    lut = submission_lut(dataset, datamodule.num_classes)
    overwrite = bool(cfg.get("format_overwrite", False))
    folder = Path(str(cfg.format_dir))
    if not is_child_process():  # checked once, before the long run (DDP ranks start after this)
        prepare_submission_dir(folder, overwrite)
    writer = SubmissionWriter(folder, lut, overwrite=overwrite)
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, logger=False, callbacks=[writer], enable_checkpointing=False
    )
    trainer.predict(module, datamodule=datamodule, return_predictions=False)
    trainer.strategy.barrier()  # every rank has written its images
    split = getattr(datamodule, "test_split", None)
    result: dict[str, Any] = {
        "format_dir": str(folder.resolve()),
        # this process's files; under DDP rank 0 counts the folder's PNGs (every rank has written its share)
        "files": len(writer.written) if trainer.world_size == 1 else len(list(folder.glob("*.png"))),
        "format": submission_format(dataset),
        "checkpoint": str(Path(ckpt).resolve()),
        "ema": bool(cfg.get("ema", False)),
        "experiment": cfg.get("experiment_name"),
        "dataset": dataset,
        "split": split,
        "inference": module.hparams.test_inference,
        "ms_flip": bool(module.test_suffix),
        "elapsed_s": round(time.time() - start, 1),
    }
    if trainer.is_global_zero:
        print(
            f"Wrote {result['files']} PNGs ({result['format']}) of {dataset} split '{split}' to {folder.resolve()}"
        )
        if dataset == "cityscapes":
            print(f"For the server: cd {folder.resolve()} && zip -q ../{folder.name}.zip *.png")
    return result


def write_plots(
    folder: str | Path, iou: dict[str, float], confmat: torch.Tensor | None, class_names: list[str]
) -> dict[str, Path]:
    """Write ``per_class_iou.png`` and ``confusion_matrix.png`` into ``folder``; return their paths by name.

    ``confmat`` (``(K, K)`` counts, rows = label) is ``None`` when the test loop ran in spawned workers, which
    return only the logged scalars: the matrix is then skipped.
    """
    folder = Path(folder)
    written = {"per_class_iou": save_figure(per_class_iou_figure(iou), folder / "per_class_iou.png")}
    if confmat is not None:
        figure, _ = confusion_matrix_figure(confmat, class_names)
        written["confusion_matrix"] = save_figure(figure, folder / "confusion_matrix.png")
    else:
        print("No confusion matrix in this process (spawned test workers): confusion_matrix.png skipped")
    return written


def print_results(result: dict[str, Any]) -> None:
    """Print the per-class IoU table and the summary with rich."""
    from rich.console import Console
    from rich.table import Table

    def pct(value: float | None) -> str:
        return "n/a" if value is None or not math.isfinite(value) else f"{100 * value:.2f}"

    title = f"{result.get('dataset')} / {result.get('split')}: per-class IoU (%)"
    table = Table("#", "class", "IoU", title=title)
    table.columns[0].justify = table.columns[2].justify = "right"
    for index, (name, value) in enumerate(result["IoU"].items()):
        table.add_row(str(index), name, pct(value))
    console = Console()
    console.print(table)
    mode = "ms+flip" if result.get("ms_flip") else "single-scale"
    console.print(f"mIoU ({mode}): {pct(result['mIoU'])}   aAcc: {pct(result['aAcc'])}")


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="eval")
@one_line_errors
def main(cfg: DictConfig) -> float:
    """Console entry point ``isnet-eval`` / ``scripts/eval.py``; returns the mIoU (``None`` with format_only)."""
    return evaluate(cfg).get("mIoU")


if __name__ == "__main__":
    main()
