"""The project's own model checkpoint: the constructor config plus the weights, loadable without Hydra.

Format (a plain dict, safe to read with ``weights_only=True``)::

    {"format": "isnet", "version": 1, "config": {...ISNet kwargs...}, "state_dict": {...}, "meta": {...}}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from isnet.errors import CheckpointError
from isnet.hf import is_hub_folder, load_pretrained
from isnet.models import ISNet
from isnet.utils.io import atomic_torch_save, safe_torch_load
from isnet.utils.state_dict import EMA_STATE_KEY

__all__ = ["load_checkpoint", "save_checkpoint"]

FORMAT_VERSION = 1


def save_checkpoint(
    model: ISNet, path: str | os.PathLike, meta: dict[str, Any] | None = None, overwrite: bool = False
) -> Path:
    """Write ``model`` (config + weights + ``meta``) atomically; refuses to replace a file unless ``overwrite``."""
    payload = {
        "format": "isnet",
        "version": FORMAT_VERSION,
        "config": dict(model.config),
        "state_dict": model.state_dict(),
        "meta": dict(meta or {}),
    }
    return atomic_torch_save(payload, path, overwrite=overwrite)


def load_checkpoint(path: str | os.PathLike, ema: bool = False) -> ISNet:
    """Load a checkpoint written by :func:`save_checkpoint` and return the model in eval mode.

    Also accepts a Lightning checkpoint of ``isnet`` training (``hyper_parameters`` + ``state_dict`` with a
    ``model.`` prefix), a released sssegmentation file and a folder in the Hugging Face Hub format
    (:func:`isnet.hf.load_pretrained`). ``ema=True`` loads the exponential moving average
    of a Lightning checkpoint trained with ``isnet.lit.EMAWeights`` instead of its trained weights (a
    ``CheckpointError`` for any other file).
    """
    if is_hub_folder(path):
        if ema:
            raise CheckpointError(f"{path}: ema=True needs a Lightning checkpoint, not a Hub-format folder")
        return load_pretrained(path)
    data = safe_torch_load(path)
    if ema:
        state = data.get("callbacks", {}).get(EMA_STATE_KEY) if isinstance(data, dict) else None
        if not isinstance(state, dict) or not isinstance(state.get("weights"), dict):
            raise CheckpointError(
                f"{path}: ema=True needs a Lightning checkpoint trained with callbacks=[default,ema]"
            )
        data = {**data, "state_dict": {f"model.{key}": value for key, value in state["weights"].items()}}
    if isinstance(data, dict) and data.get("format") == "isnet":
        model = ISNet.from_config(data["config"])
        model.load_state_dict(data["state_dict"], strict=True)
        model.meta = {**model.meta, **data.get("meta", {})}
        return model.eval()
    if isinstance(data, dict) and "state_dict" in data and "hyper_parameters" in data:
        hparams = data["hyper_parameters"]
        config = hparams.get("model_config") or hparams.get("model")
        if not isinstance(config, dict):
            raise CheckpointError(
                f"{path}: Lightning checkpoint without an ISNet 'model_config' hyper-parameter"
            )
        model = ISNet.from_config(config)
        state = {k[len("model.") :]: v for k, v in data["state_dict"].items() if k.startswith("model.")}
        model.load_state_dict(state, strict=True)
        model.meta = {"hyper_parameters": hparams}
        return model.eval()
    if isinstance(data, dict) and ("model" in data or any(k.startswith("backbone_net.") for k in data)):
        from isnet.convert.sssegmentation import from_sssegmentation

        return from_sssegmentation(data)
    raise CheckpointError(f"{path}: not an isnet, Lightning or sssegmentation checkpoint")
