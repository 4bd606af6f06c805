"""Conv-BN-activation blocks laid out as ``nn.Sequential`` so state-dict keys match sssegmentation."""

from __future__ import annotations

from torch import nn

__all__ = ["ACTIVATIONS", "build_activation", "conv_bn_act"]

#: Head activations the reference configs use: ReLU everywhere, LeakyReLU(0.01) in the LIP configs.
ACTIVATIONS = ("relu", "leaky_relu")


def build_activation(act: str) -> nn.Module:
    """Return the head activation module (in-place, as the reference builds it)."""
    if act == "relu":
        return nn.ReLU(inplace=True)
    if act == "leaky_relu":
        return nn.LeakyReLU(negative_slope=0.01, inplace=True)
    raise ValueError(f"act must be one of {ACTIVATIONS}, got {act!r}")


def conv_bn_act(
    in_channels: int, out_channels: int, kernel_size: int = 1, act: str = "relu"
) -> nn.Sequential:
    """Conv (no bias) -> BatchNorm2d -> activation, keys ``.0`` conv, ``.1`` BN (the reference's CBA).

    Plain ``BatchNorm2d`` is used on purpose: Lightning's ``sync_batchnorm=True`` converts it to SyncBN for
    multi-device runs, which is what the reference trains with.
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        build_activation(act),
    )
