"""Conv-BN-activation blocks laid out as ``nn.Sequential`` so state-dict keys match sssegmentation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ACTIVATIONS", "ClassifierConv2d", "build_activation", "conv_bn_act"]

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


class ClassifierConv2d(nn.Conv2d):
    """The 1x1 convolution that produces logits; it computes and returns at least fp32 even under autocast.

    Under bf16 autocast a convolution returns bf16, and logits rounded to 8 mantissa bits turn near-ties of the
    top two classes into argmax flips: on R-50-D8 with random weights at 512x512, 0.7 % of the pixels changed
    class against fp32, and 0.2 % with the classifiers in fp32 (docs/benchmarks.md). A classifier costs well
    under 1 % of the network's FLOPs. :func:`isnet.accel.optimize_for_inference` leaves its weights in fp32.
    Same parameters and state-dict keys as ``nn.Conv2d``.
    """

    keep_fp32 = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device = x.device.type
        if not torch.is_autocast_enabled(device) and x.dtype == self.weight.dtype:
            return super().forward(x)
        dtype = torch.promote_types(self.weight.dtype, torch.float32)
        bias = None if self.bias is None else self.bias.to(dtype)
        with torch.autocast(device, enabled=False):
            return F.conv2d(
                x.to(dtype),
                self.weight.to(dtype),
                bias,
                self.stride,
                self.padding,
                self.dilation,
                self.groups,
            )
