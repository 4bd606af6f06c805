"""ISNet decode head: bottleneck -> ILC -> stage-1 classifier -> SLC -> stage-2 classifier.

Follows sssegmentation ``segmentors/isnet/isnet.py``. Module names and ``nn.Sequential`` index slots are the
reference's (e.g. the stage-1 classifier is ``decoder_stage1.4``) so released checkpoints load by name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from isnet.models.checkpointing import checkpoint_module
from isnet.models.heads.context import ImageLevelContext, SemanticLevelContext
from isnet.models.layers import ClassifierConv2d, build_activation, conv_bn_act

__all__ = ["ISNetHead"]


def _classifier(in_channels: int, channels: int, num_classes: int, dropout: float, act: str) -> nn.Sequential:
    """1x1 conv-BN-act, Dropout2d, 1x1 conv with bias (slots .0 .1 .2 .3 .4 as in the reference)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, kernel_size=1, bias=False),
        nn.BatchNorm2d(channels),
        build_activation(act),
        nn.Dropout2d(dropout),
        ClassifierConv2d(channels, num_classes, kernel_size=1),
    )


class ISNetHead(nn.Module):
    """The ISNet head on the last backbone stage (plus layer1 for the LIP shortcut variant).

    Args:
        in_channels: channels of the last backbone stage (2048 for ResNet-50/101, ResNeSt-101).
        num_classes: number of classes K.
        feats_channels: bottleneck width C (512).
        transform_channels: attention width T (256).
        dropout: ``Dropout2d`` probability before the classifiers (0.1).
        act: ``relu``, or ``leaky_relu`` for the LIP configs.
        shortcut_in_channels: channels of layer1 when the LIP shortcut is on (256), else ``None``.
        shortcut_channels: width of the shortcut branch (48).

    Shape:
        features: list of backbone stages; returns (stage1, stage2) logits, stage1 at the last stage's size,
        stage2 at the same size or, with the shortcut, at layer1's size.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        feats_channels: int = 512,
        transform_channels: int = 256,
        dropout: float = 0.1,
        act: str = "relu",
        shortcut_in_channels: int | None = None,
        shortcut_channels: int = 48,
    ) -> None:
        super().__init__()
        self.bottleneck = conv_bn_act(in_channels, feats_channels, kernel_size=3, act=act)
        self.ilc_net = ImageLevelContext(feats_channels, transform_channels, act=act)
        self.slc_net = SemanticLevelContext(feats_channels, transform_channels, act=act)
        self.decoder_stage1 = _classifier(feats_channels, feats_channels, num_classes, dropout, act)
        if shortcut_in_channels is not None:
            # the reference leaves the bias on in this one conv (unlike every other conv before a BN)
            self.shortcut = nn.Sequential(
                nn.Conv2d(shortcut_in_channels, shortcut_channels, kernel_size=1),
                nn.BatchNorm2d(shortcut_channels),
                build_activation(act),
            )
            self.decoder_stage2 = _classifier(
                feats_channels + shortcut_channels, feats_channels, num_classes, dropout, act
            )
        else:
            self.shortcut = None
            self.decoder_stage2 = nn.Sequential(
                nn.Dropout2d(dropout), ClassifierConv2d(feats_channels, num_classes, 1)
            )
        #: recompute the bottleneck, ILC and SLC in backward instead of keeping their activations (set by
        #: :meth:`isnet.models.ISNet.set_grad_checkpointing`)
        self.grad_checkpointing = False

    def _run(self, module: nn.Module, *args: torch.Tensor) -> torch.Tensor:
        return checkpoint_module(module, *args) if self.grad_checkpointing else module(*args)

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self._run(self.bottleneck, features[-1])
        return self.decode(feats, features[0] if self.shortcut is not None else None)

    def decode(
        self, feats: torch.Tensor, low_level: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Everything after the bottleneck: a caller that drops the last backbone stage after the bottleneck
        (2048 channels, 268 MB at Cityscapes size) keeps it out of the head's peak memory.

        Shape:
            feats (B, C, H, W) bottleneck output, low_level (B, C1, H1, W1) layer1 (LIP shortcut only)
            -> (stage-1 logits, stage-2 logits).
        """
        feats_il = self._run(self.ilc_net, feats)
        # stage 1 reads the bottleneck output, not the ILC output (reference isnet.py)
        preds_stage1 = self.decoder_stage1(feats)
        feats_sl = self._run(self.slc_net, feats, preds_stage1, feats_il)
        if self.shortcut is not None:
            if low_level is None:
                raise ValueError("this head has the LIP shortcut and needs the layer1 features (low_level)")
            shortcut = self.shortcut(low_level)
            feats_sl = F.interpolate(feats_sl, size=shortcut.shape[2:], mode="bilinear", align_corners=False)
            feats_sl = torch.cat([feats_sl, shortcut], dim=1)
        return preds_stage1, self.decoder_stage2(feats_sl)
