"""Helpers shared by the entry points: building objects from configs, run folders, run metadata."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.plugins import TorchCheckpointIO

from isnet.checkpoint import load_checkpoint
from isnet.errors import ConfigError
from isnet.hub import resolve_checkpoint
from isnet.utils.io import atomic_write, safe_torch_load, write_json

__all__ = [
    "RUN_MARKER",
    "RunFolderError",
    "SafeCheckpointIO",
    "build_module",
    "build_training_module",
    "claim_run_dir",
    "instantiate_group",
    "is_child_process",
    "release_run_dir",
    "resolve_ckpt_path",
    "run_metadata",
]

#: File that marks a folder as holding a run (written when the run starts).
RUN_MARKER = "run.json"
#: ISNet arguments that a network fine-tuned from ``model.init_from`` takes from its source (its tensors fix them;
#: ``num_classes`` comes from the data, ``dropout`` from the config)
INHERITED_ARCHITECTURE = ("backbone", "feats_channels", "transform_channels", "shortcut", "act", "aux")

log = logging.getLogger(__name__)


class RunFolderError(FileExistsError):
    """The output folder already holds a run and would be overwritten."""


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint reader (resume, test of the best checkpoint) through :func:`safe_torch_load`."""

    def load_checkpoint(
        self, path: Any, map_location: Any = None, weights_only: Any = None
    ) -> dict[str, Any]:
        return safe_torch_load(path)


def is_child_process() -> bool:
    """True in the extra processes Lightning's DDP launcher starts (they share the parent's run folder)."""
    return os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0"


def instantiate_group(cfg: DictConfig, group: str) -> list[Any]:
    """Build every ``_target_`` entry of the config group ``cfg.<group>`` (``callbacks``, ``logger``)."""
    objects = []
    for name, conf in (cfg.get(group) or {}).items():
        if isinstance(conf, DictConfig) and "_target_" in conf:
            objects.append(hydra.utils.instantiate(conf))
        elif conf is not None and not isinstance(conf, DictConfig):
            raise ConfigError(f"{group}.{name} must be a config with _target_, got {conf!r}")
    return objects


def build_module(model_cfg: DictConfig, datamodule: Any, **overrides: Any) -> Any:
    """Instantiate the ``model`` config with the class count, names and flip pairs of ``datamodule`` (a
    ``model.num_classes`` that differs from the data's is a ConfigError)."""
    num_classes = model_cfg.get("num_classes")
    data_classes = int(datamodule.num_classes)
    if num_classes is not None and int(num_classes) != data_classes:
        raise ConfigError(
            f"model.num_classes={num_classes} but the data ({getattr(datamodule, 'name', type(datamodule).__name__)}) "
            f"has {data_classes} classes; fix the experiment or pass model.num_classes={data_classes}"
        )
    kwargs: dict[str, Any] = dict(
        num_classes=data_classes,
        class_names=[str(c) for c in datamodule.class_names],
        flip_pairs=[list(p) for p in getattr(datamodule, "flip_pairs", [])],
    )
    return hydra.utils.instantiate(model_cfg, **{**kwargs, **overrides}, _convert_="all")


def build_training_module(model_cfg: DictConfig, datamodule: Any, ckpt_path: str | None = None) -> Any:
    """:func:`build_module` for training, applying ``model.init_from`` when it is set.

    The network takes its architecture (:data:`INHERITED_ARCHITECTURE`) from the ``init_from`` source and every
    tensor but the classifiers, which are re-initialised when the data has another number of classes
    (:meth:`isnet.lit.ISNetModule.load_initial_weights`). When resuming (``ckpt_path``), the source is not read:
    the architecture comes from the checkpoint's hyper-parameters, and Lightning restores its weights.
    """
    init_from = OmegaConf.select(model_cfg, "init_from", throw_on_missing=True)  # `???`: a one-line error
    if not init_from:
        module = build_module(model_cfg, datamodule)
        if ckpt_path:
            module.weights_loaded = True  # trainer.fit restores them: no backbone ImageNet weights to read
        return module
    source = None
    if ckpt_path:
        network = safe_torch_load(ckpt_path).get("hyper_parameters", {}).get("model_config") or {}
    else:
        source = load_checkpoint(resolve_checkpoint(str(init_from)))
        network = source.architecture
    config = OmegaConf.to_container(model_cfg.model_config, resolve=True)
    inherited = {k: network[k] for k in INHERITED_ARCHITECTURE if k in network}
    if changed := [
        f"{k}={v!r} (config: {config.get(k)!r})" for k, v in inherited.items() if config.get(k) != v
    ]:
        log.info("model.init_from=%s: the network is the source's: %s", init_from, ", ".join(changed))
    # the weights come from init_from: no backbone ImageNet download
    model_config = {**config, **inherited, "pretrained": False}
    module = build_module(model_cfg, datamodule, model_config=model_config)
    if source is not None:
        module.load_initial_weights(source.state_dict())
    return module


def resolve_ckpt_path(ckpt_path: str | None, output_dir: Path) -> str | None:
    """Turn the ``ckpt_path`` setting into a checkpoint file for ``trainer.fit``.

    ``last`` means ``<output_dir>/checkpoints/last.ckpt`` (resume a run in its own folder, selected with
    ``hydra.run.dir=<run folder>``); a run folder means its ``checkpoints/last.ckpt``; a file is used as is.
    A missing checkpoint is a FileNotFoundError listing recent runs that can be resumed.
    """
    if ckpt_path in (None, "", "null"):
        return None
    if ckpt_path == "last":
        path = output_dir / "checkpoints" / "last.ckpt"
        if not path.is_file():
            raise FileNotFoundError(
                f"ckpt_path=last: {path} does not exist. Resume a run in its own folder with "
                f"hydra.run.dir=<run folder> ckpt_path=last, or pass ckpt_path=<run folder or .ckpt file>."
                + _recent_runs_hint(output_dir.parent)
            )
        return str(path)
    path = Path(ckpt_path).expanduser()
    if path.is_dir():
        path = path / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={ckpt_path}: checkpoint {path} not found")
    return str(path)


def _recent_runs_hint(parent: Path, limit: int = 5) -> str:
    runs = sorted(
        (p.parents[1] for p in parent.glob("*/checkpoints/last.ckpt")), key=lambda p: p.stat().st_mtime
    )
    return (" Recent runs with a last.ckpt: " + ", ".join(str(p) for p in runs[::-1][:limit])) if runs else ""


def _git_describe() -> str | None:
    command = ["git", "describe", "--always", "--dirty", "--tags"]
    try:
        out = subprocess.run(command, cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def run_metadata() -> dict[str, Any]:
    """Versions, git state and command line of this process, saved next to the checkpoints."""
    import timm

    versions = {"python": platform.python_version(), **{m.__name__: m.__version__ for m in (torch, timm, pl)}}
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
        "started": _dt.datetime.now().isoformat(timespec="seconds"),
        "command": [sys.executable, *sys.argv],
        "git": _git_describe(),
        "versions": {**versions, "cuda": torch.version.cuda, "cudnn": cudnn},
        "host": platform.node(),
    }


def claim_run_dir(output_dir: Path, cfg: DictConfig, resuming: bool) -> None:
    """Mark ``output_dir`` as this run's folder: write ``run.json`` (metadata) and ``config.yaml`` (resolved
    config); a resume in the same folder appends a ``resumed`` entry and a ``config.resumed-<time>.yaml``.

    Raises:
        RunFolderError: ``output_dir`` already holds a run (``run.json`` or ``checkpoints/``) and this is not
            a resume.
    """
    marker = output_dir / RUN_MARKER
    if (marker.is_file() or (output_dir / "checkpoints").is_dir()) and not resuming:
        raise RunFolderError(
            f"output folder {output_dir} already holds a run; refusing to overwrite it. Choose a new folder "
            f"(hydra.run.dir=... or paths.output_dir=...) or resume it with ckpt_path=last"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    meta = run_metadata()
    if marker.is_file():
        previous = json.loads(marker.read_text())
        previous.setdefault("resumed", []).append(meta)
        write_json(marker, previous)
        name = f"config.resumed-{meta['started'].replace(':', '-')}.yaml"
    else:
        write_json(marker, meta)
        name = "config.yaml"
    try:
        text = OmegaConf.to_yaml(cfg, resolve=True)
    except Exception:  # an interpolation that only resolves inside Hydra's runtime
        text = OmegaConf.to_yaml(cfg, resolve=False)
    atomic_write(output_dir / name, text)


def release_run_dir(output_dir: Path) -> None:
    """Undo :func:`claim_run_dir` for a run that failed before its first checkpoint (the folder is reusable)."""
    for path in (output_dir / RUN_MARKER, output_dir / "config.yaml"):
        path.unlink(missing_ok=True)
