"""Module rewrites of an inference copy that keep fp32 results within rounding of the plain model.

* :func:`fold_batchnorm_`: BatchNorm folded into the convolution that feeds it (about a tenth of the CPU
  inference time), for ``nn.Sequential`` runs of (Conv2d, BatchNorm2d) and timm's named pairs (``conv1``/``bn1``
  ..., ``conv``/``bn0`` and ``fc1``/``bn1`` in split attention, the deep stem's last conv with ``bn1``).
* :func:`use_winograd_`: wide 3x3 convolutions computed by :class:`isnet.accel.winograd.WinogradConv2d`.
* :class:`AccumulatingBottleneck`: a folded timm ``Bottleneck`` whose last 1x1 convolution adds into the shortcut.
"""

from __future__ import annotations

import torch
from torch import nn

from isnet.accel.winograd import WinogradConv2d, unsupported_setting

__all__ = ["AccumulatingBottleneck", "accumulate_residuals_", "fold_batchnorm_", "use_winograd_"]

# (conv attribute, bn attribute) pairs of timm blocks in which the conv feeds the BN directly
_NAMED_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"), ("conv", "bn0"), ("fc1", "bn1"))


def _fold(conv: nn.Module, bn: nn.Module) -> bool:
    """Fold eval-mode ``bn`` into ``conv`` in place if it is a foldable pair; True if folded."""
    if not (
        isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats and bn.affine
        and conv.out_channels == bn.num_features
    ):  # fmt: skip
        return False
    # w' = w * g / s, b' = (b - mu) * g / s + beta. Not torch.nn.utils.fusion.fuse_conv_bn_weights: its rsqrt
    # rounds differently and moves the copy 1.2-1.9x further from the reference (docs/parity.md)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
    return True


@torch.no_grad()
def fold_batchnorm_(model: nn.Module) -> int:
    """Fold every (Conv2d -> BatchNorm2d) pair of ``model`` in place; the BNs become ``nn.Identity``.

    Returns:
        The number of BatchNorm layers folded.
    """
    folded = 0
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                if _fold(module[i], module[i + 1]):
                    module[i + 1] = nn.Identity()
                    folded += 1
            continue
        for conv_name, bn_name in _NAMED_PAIRS:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Sequential) and len(conv) and conv_name == "conv1":
                conv = conv[-1]  # timm deep stem: conv1 = Sequential(..., conv) followed by the top-level bn1
            if conv is not None and bn is not None and _fold(conv, bn):
                setattr(module, bn_name, nn.Identity())
                folded += 1
    return folded


def use_winograd_(model: nn.Module, min_channels: int = 256) -> int:
    """Replace the 3x3 stride-1 convolutions with at least ``min_channels`` in and out channels by
    :class:`WinogradConv2d` (fp32 CPU inference; 2.25x fewer multiplications).

    Below ~128 channels the Winograd transforms cost more than they save, so the stem and the first stages keep
    oneDNN's direct convolution. The replacements keep only their transformed weights (the copy is frozen).
    Returns the number of convolutions replaced.
    """
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if (
                type(child) is nn.Conv2d
                and unsupported_setting(child) is None
                and min(child.in_channels, child.out_channels) >= min_channels
            ):
                setattr(parent, name, WinogradConv2d(child).release_weight())
                replaced += 1
    return replaced


class AccumulatingBottleneck(nn.Module):
    """A timm ``Bottleneck`` with folded BatchNorms whose last 1x1 convolution adds into the shortcut in place.

    ``conv3(y) + shortcut`` becomes one GEMM with accumulation (``shortcut += y @ W3^T + b3``) on the
    ``channels_last`` buffers: the block no longer allocates a second output as large as the shortcut (268 MB per
    layer4 block at 1024x2048) and the widest 1x1 convolutions run ~30 % faster. Equal up to fp32 rounding (the
    additions happen in another order). It overwrites its input when there is no projection shortcut, so
    :func:`accumulate_residuals_` uses it only for blocks after the first of a stage.
    """

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.conv1, self.act1, self.conv2, self.act2 = block.conv1, block.act1, block.conv2, block.act2
        self.conv3, self.act3, self.downsample = block.conv3, block.act3, block.downsample

    @staticmethod
    def accepts(block: nn.Module) -> bool:
        """Whether ``block`` is a plain timm ``Bottleneck`` with folded BNs and a biased 1x1 ``conv3``."""
        from timm.models.resnet import Bottleneck

        conv3 = block.conv3 if type(block) is Bottleneck else None
        return (
            conv3 is not None
            and all(isinstance(getattr(block, n), nn.Identity) for n in ("bn1", "bn2", "bn3", "drop_block", "aa"))
            and block.se is None and block.drop_path is None and isinstance(block.act3, nn.ReLU)
            and type(conv3) is nn.Conv2d and conv3.kernel_size == (1, 1) and conv3.stride == (1, 1)
            and conv3.groups == 1 and conv3.bias is not None
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.act2(self.conv2(self.act1(self.conv1(x))))
        channels_last = torch.channels_last
        if not (
            y.is_contiguous(memory_format=channels_last)
            and shortcut.is_contiguous(memory_format=channels_last)
        ):
            return self.act3(self.conv3(y) + shortcut)
        weight = self.conv3.weight.reshape(self.conv3.out_channels, self.conv3.in_channels)
        rows = shortcut.permute(0, 2, 3, 1).reshape(-1, shortcut.shape[1])  # a view of the shortcut
        rows.add_(self.conv3.bias).addmm_(y.permute(0, 2, 3, 1).reshape(-1, y.shape[1]), weight.t())
        return self.act3(shortcut)


def accumulate_residuals_(model: nn.Module) -> int:
    """Replace the folded timm ``Bottleneck`` blocks of ``model`` by :class:`AccumulatingBottleneck`, except the
    first block of a stage without projection (its input may be a returned feature). Returns how many."""
    changed = 0
    for stage in list(model.modules()):
        if not isinstance(stage, nn.Sequential):
            continue
        for index, block in enumerate(stage):
            if AccumulatingBottleneck.accepts(block) and (block.downsample is not None or index > 0):
                stage[index] = AccumulatingBottleneck(block)
                changed += 1
    return changed
