"""isnet: ISNet (ICCV 2021) semantic segmentation with exact parity to the released sssegmentation models."""

from isnet.accel import optimize_for_inference
from isnet.checkpoint import load_checkpoint, save_checkpoint
from isnet.convert import from_sssegmentation
from isnet.export import export_model
from isnet.hub import from_pretrained, list_pretrained
from isnet.models import ISNet, ISNetLoss, build_backbone
from isnet.zoo import ZOO, zoo_entry

__version__ = "0.1.0"

__all__ = [
    "ZOO",
    "ISNet",
    "ISNetLoss",
    "__version__",
    "build_backbone",
    "export_model",
    "from_pretrained",
    "from_sssegmentation",
    "list_pretrained",
    "load_checkpoint",
    "optimize_for_inference",
    "save_checkpoint",
    "zoo_entry",
]
