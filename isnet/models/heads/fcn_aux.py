"""FCN auxiliary head on layer3, as sssegmentation's ``setauxiliarydecoder`` builds it for ISNet."""

from __future__ import annotations

from torch import nn

from isnet.models.layers import ClassifierConv2d, build_activation

__all__ = ["build_auxiliary_decoder"]


def build_auxiliary_decoder(
    in_channels: int, num_classes: int, channels: int = 512, dropout: float = 0.1, act: str = "relu"
) -> nn.Sequential:
    """3x3 conv-BN-act, Dropout2d, 1x1 classifier (slots ``.0``-``.4``); used only for the training loss."""
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(channels),
        build_activation(act),
        nn.Dropout2d(dropout),
        ClassifierConv2d(channels, num_classes, kernel_size=1),
    )
