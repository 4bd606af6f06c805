"""isnet: ISNet (ICCV 2021) semantic segmentation with exact parity to the released sssegmentation models.

The public names below are imported on first use, so ``import isnet.meta`` stays free of torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ISNet": "isnet.models",
    "ISNetLoss": "isnet.models",
    "build_backbone": "isnet.models",
    "create_model": "isnet.hub",
    "export_model": "isnet.export",
    "from_pretrained": "isnet.hub",
    "from_sssegmentation": "isnet.convert",
    "list_models": "isnet.hub",
    "list_pretrained": "isnet.hub",
    "load_checkpoint": "isnet.checkpoint",
    "optimize_for_inference": "isnet.accel",
    "push_to_hub": "isnet.hf",
    "save_checkpoint": "isnet.checkpoint",
    "save_pretrained": "isnet.hf",
    "Segmenter": "isnet.segmenter",
    "RECIPES": "isnet.meta",
    "recipe": "isnet.meta",
    "dataset_info": "isnet.meta",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'isnet' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
