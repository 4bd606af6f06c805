"""ISNet decode head and the auxiliary FCN head."""

from isnet.models.heads.context import ImageLevelContext, SemanticLevelContext, semantic_class_centres
from isnet.models.heads.fcn_aux import build_auxiliary_decoder
from isnet.models.heads.isnet_head import ISNetHead

__all__ = [
    "ISNetHead",
    "ImageLevelContext",
    "SemanticLevelContext",
    "build_auxiliary_decoder",
    "semantic_class_centres",
]
