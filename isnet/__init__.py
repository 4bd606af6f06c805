"""isnet: ISNet (ICCV 2021) semantic segmentation with exact parity to the released sssegmentation models."""

from isnet.checkpoint import load_checkpoint, save_checkpoint
from isnet.convert import from_sssegmentation
from isnet.models import ISNet, ISNetLoss, build_backbone
from isnet.zoo import ZOO, zoo_entry

__version__ = "0.1.0"

__all__ = [
    "ZOO",
    "ISNet",
    "ISNetLoss",
    "__version__",
    "build_backbone",
    "from_sssegmentation",
    "load_checkpoint",
    "save_checkpoint",
    "zoo_entry",
]
