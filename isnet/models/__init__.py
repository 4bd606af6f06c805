"""Models: backbones, the ISNet head, the segmentor and its loss. Imports torch and timm only."""

from isnet.models.backbones import SEED_BACKBONES, build_backbone
from isnet.models.heads import ISNetHead
from isnet.models.loss import ISNetLoss
from isnet.models.segmentor import ISNet
from isnet.models.transfer import TransferReport, classifier_keys, load_transfer

__all__ = [
    "SEED_BACKBONES",
    "ISNet",
    "ISNetHead",
    "ISNetLoss",
    "TransferReport",
    "build_backbone",
    "classifier_keys",
    "load_transfer",
]
