"""ISNet segmentor: a timm dilated backbone, the ISNet head and the FCN auxiliary head.

Paper: Jin et al., "ISNet: Integrate Image-Level and Semantic-Level Context for Semantic Segmentation",
ICCV 2021. Reproduces sssegmentation ``segmentors/isnet/isnet.py`` (forward order, resizing, losses inputs).
The fast inference copy is built explicitly by :func:`isnet.accel.optimize_for_inference`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from isnet.meta import default_palette
from isnet.models.backbones import build_backbone
from isnet.models.checkpointing import checkpoint_module, checkpointed_features
from isnet.models.heads import ISNetHead, build_auxiliary_decoder
from isnet.models.layers.conv import ACTIVATIONS
from isnet.models.layers.resize import resize_bilinear
from isnet.models.necks import ViTFeaturePyramid

__all__ = ["ISNet", "check_images"]

#: inference switches that configs of earlier versions carried (now :mod:`isnet.accel`); ignored on loading
OBSOLETE_KEYS = ("fast_inference", "winograd", "compile")


def check_images(images: Any) -> None:
    """Refuse what the network cannot segment: not (N, 3, H >= 8, W >= 8) floats, or non-finite values
    (the count is in the message). Skipped while tracing or compiling (the eager entry points check)."""
    skip = torch.jit.is_tracing() or torch.compiler.is_compiling()
    if skip or isinstance(images, torch._subclasses.FakeTensor):
        return
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"ISNet expects a torch.Tensor of shape (N, 3, H, W), got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"ISNet expects images of shape (N, 3, H, W), got {tuple(images.shape)}")
    if images.shape[2] < 8 or images.shape[3] < 8:
        raise ValueError(f"images must be at least 8x8 pixels, got {tuple(images.shape[2:])}")
    if not images.is_floating_point():
        raise TypeError(f"ISNet expects normalised floating-point images, got dtype {images.dtype}; convert "
                        "with (image.float() - mean) / std")  # fmt: skip
    # the sum screens cheaply (torch.isfinite over the image costs ~10x more); counted only when it is not finite
    if not torch.isfinite(images.sum()) and (bad := int(images.numel() - torch.isfinite(images).sum())):
        raise ValueError(f"images hold {bad} non-finite value(s) (NaN or inf) of {images.numel()}")


class ISNet(nn.Module):
    """ISNet for semantic segmentation.

    Args:
        backbone: ``resnet50_d8``, ``resnet101_d8``, ``resnest101_d8`` (the model zoo's) or any timm model name
            supporting ``features_only`` + ``output_stride`` (e.g. ``resnet18d`` for quick CPU runs).
        num_classes: number of classes K.
        pretrained: backbone ImageNet weights (``False``, ``True``, a timm tag or a file; see ``build_backbone``).
        feats_channels: head width C (512 in all reference configs).
        transform_channels: attention width T (256).
        dropout: ``Dropout2d`` probability before each classifier (0.1).
        shortcut: LIP variant: add the 48-channel layer1 shortcut; logits come out at 1/4 instead of 1/8.
        act: head activation, ``relu`` or ``leaky_relu`` (LIP). The backbone always uses ReLU.
        aux: build the FCN auxiliary head on layer3 (used only by the training loss).
        class_names: K names (default ``class_0 ...``); palette: K RGB triples (default
            :func:`isnet.meta.default_palette`); meta: free-form dict (e.g. the training hyper-parameters).
            All three are part of :attr:`config`, so checkpoints carry them.

    Shape:
        images (N, 3, H, W) normalised float. Train mode returns ``{"stage1", "stage2", "aux"}`` logits
        (N, K, H, W); eval mode returns the stage-2 logits (N, K, H, W). Both bilinearly resized to the input
        size with ``align_corners=False``. :meth:`predict_logits` returns stage-2 logits at feature resolution.
    """

    def __init__(
        self,
        backbone: str = "resnet50_d8",
        num_classes: int = 150,
        pretrained: bool | str = False,
        feats_channels: int = 512,
        transform_channels: int = 256,
        dropout: float = 0.1,
        shortcut: bool = False,
        act: str = "relu",
        aux: bool = True,
        class_names: Sequence[str] | None = None,
        palette: Sequence[Sequence[int]] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if act not in ACTIVATIONS:
            raise ValueError(f"act must be one of {ACTIVATIONS}, got {act!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        for name, value in (("class_names", class_names), ("palette", palette)):
            if value is not None and len(value) != num_classes:
                raise ValueError(f"{name} has {len(value)} entries but num_classes is {num_classes}")
        self.architecture: dict[str, Any] = dict(
            backbone=backbone, num_classes=num_classes, feats_channels=feats_channels,
            transform_channels=transform_channels, dropout=dropout, shortcut=shortcut, act=act, aux=aux,
        )  # fmt: skip
        self.backbone_name, self.num_classes = backbone, num_classes
        self.class_names = [str(c) for c in class_names or (f"class_{k}" for k in range(num_classes))]
        self.palette = [tuple(int(c) for c in rgb) for rgb in (palette or default_palette(num_classes))]
        self.meta = dict(meta or {})
        # the maps this network reads: the head the last, the auxiliary head the third, the shortcut the first
        self.feature_levels = (3,) + ((2,) if aux else ()) + ((0,) if shortcut else ())
        self.backbone = build_backbone(backbone, pretrained=pretrained, levels=self.feature_levels)
        channels = self.backbone.feature_info.channels()
        self.head = ISNetHead(
            channels[-1], num_classes, feats_channels, transform_channels, dropout, act,
            shortcut_in_channels=channels[0] if shortcut else None,
        )  # fmt: skip
        self.auxiliary_decoder = (
            build_auxiliary_decoder(channels[2], num_classes, feats_channels, dropout, act) if aux else None
        )
        self.grad_checkpointing = False

    def load_pretrained_backbone(self, pretrained: bool | str) -> ISNet:
        """Load ImageNet weights into the backbone, exactly as ``ISNet(..., pretrained=pretrained)`` does when it
        builds the network (``True``, ``"openmmlab"``, a timm tag or a file; see ``build_backbone``). For a
        network built without them, e.g. by :class:`isnet.lit.ISNetModule`, which loads them when a fit starts.
        Returns ``self``."""
        if pretrained:
            source = build_backbone(self.backbone_name, pretrained=pretrained, levels=self.feature_levels)
            self.backbone.load_state_dict(source.state_dict())
        return self

    def set_grad_checkpointing(self, enable: bool = True) -> ISNet:
        """Trade compute for memory in training: keep only the inputs of the backbone stages, of the head's
        bottleneck, ILC and SLC and of the auxiliary head, and recompute their activations in backward (one more
        forward of those parts). Gradients, dropout masks and BatchNorm statistics are those of the plain model
        (:mod:`isnet.models.checkpointing`). Not part of :attr:`config`: it changes no result. Returns ``self``.
        """
        self.grad_checkpointing = self.head.grad_checkpointing = bool(enable)
        if isinstance(self.backbone, ViTFeaturePyramid):
            self.backbone.set_grad_checkpointing(self.grad_checkpointing)  # timm's, per transformer block
        return self

    def _features(self, images: torch.Tensor) -> list[torch.Tensor]:
        if self.grad_checkpointing and not isinstance(self.backbone, ViTFeaturePyramid):
            return checkpointed_features(self.backbone, images)  # a timm CNN: ours, per stage
        return self.backbone(images)

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments (without ``pretrained``): ``ISNet(**model.config)`` rebuilds the model."""
        extra = {"class_names": list(self.class_names), "palette": [list(c) for c in self.palette]}
        return {**self.architecture, **extra, "meta": self.meta}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ISNet:
        """``ISNet(**config)`` for configs of any version: drops :data:`OBSOLETE_KEYS` and ``pretrained``."""
        return cls(**{k: v for k, v in config.items() if k not in (*OBSOLETE_KEYS, "pretrained")})

    def predict_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Stage-2 logits at feature resolution (1/8; ~1/4 with the shortcut), exactly what the reference's
        test mode returns, for inference code that resizes once to the original image size."""
        check_images(images)
        return self.head(self.backbone(self._as_weight_dtype(images)))[1]

    def forward(self, images: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        check_images(images)
        size = images.shape[2:]
        features = self._features(self._as_weight_dtype(images))
        preds_stage1, preds_stage2 = self.head(features)
        if not self.training:
            return resize_bilinear(preds_stage2, size)
        outputs = {"stage2": preds_stage2, "stage1": preds_stage1}
        if self.auxiliary_decoder is not None:
            aux, layer3 = self.auxiliary_decoder, features[2]
            outputs["aux"] = checkpoint_module(aux, layer3) if self.grad_checkpointing else aux(layer3)
        # the reference computes every loss on logits upsampled to the crop size; the backward of this resize
        # runs as two matmuls (isnet.models.layers.resize)
        return {k: resize_bilinear(v, size) for k, v in outputs.items()}

    def _as_weight_dtype(self, images: torch.Tensor) -> torch.Tensor:
        # e.g. float64 or float16 input to an fp32 model computes in fp32 (autocast picks its own dtypes)
        dtype = self.head.bottleneck[0].weight.dtype
        keep = images.dtype == dtype or torch.is_autocast_enabled(images.device.type)
        return images if keep else images.to(dtype)
