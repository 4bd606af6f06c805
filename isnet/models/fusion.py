"""Inference-only rewrites that keep fp32 results within rounding of the plain model.

* Folding BatchNorm into the convolution that feeds it (eval-mode BN is an affine map per channel), which removes
  about a tenth of the CPU inference time.
* ``channels_last`` memory format, which oneDNN (CPU) and cuDNN (GPU) convolutions run faster.

The rules below cover the layouts in this package: ``nn.Sequential`` runs of (Conv2d, BatchNorm2d) (the head,
the reference-style stems and shortcuts) and timm's named pairs (``conv1``/``bn1`` ... in ResNet/ResNeSt blocks,
``conv``/``bn0`` and ``fc1``/``bn1`` in split attention, the deep stem's last conv with the top-level ``bn1``).
Each pair is folded only if the conv output feeds the BN directly in that module's forward.
"""

from __future__ import annotations

import copy
import types

import torch
from torch import nn

__all__ = ["fold_batchnorm_", "fold_conv_bn", "make_inference_copy"]

# (conv attribute, bn attribute) pairs of timm blocks in which the conv feeds the BN directly
_NAMED_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"), ("conv", "bn0"), ("fc1", "bn1"))


@torch.no_grad()
def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold eval-mode ``bn`` into ``conv`` in place: w' = w * g / s, b' = (b - mu) * g / s + beta."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (
        isinstance(conv, nn.Conv2d)
        and isinstance(bn, nn.BatchNorm2d)
        and bn.track_running_stats
        and bn.affine
        and conv.out_channels == bn.num_features
    )


def fold_batchnorm_(model: nn.Module) -> int:
    """Fold every (Conv2d -> BatchNorm2d) pair of ``model`` in place; the BNs become ``nn.Identity``.

    Returns:
        The number of BatchNorm layers folded.
    """
    folded = 0
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            children = list(module)
            for i in range(len(children) - 1):
                if _foldable(children[i], children[i + 1]):
                    fold_conv_bn(children[i], children[i + 1])
                    module[i + 1] = nn.Identity()
                    folded += 1
            continue
        for conv_name, bn_name in _NAMED_PAIRS:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Sequential) and len(conv) and conv_name == "conv1":
                conv = conv[-1]  # timm deep stem: conv1 = Sequential(..., conv) followed by the top-level bn1
            if conv is not None and bn is not None and _foldable(conv, bn):
                fold_conv_bn(conv, bn)
                setattr(module, bn_name, nn.Identity())
                folded += 1
    return folded


def make_inference_copy(
    model: nn.Module, channels_last: bool = True, dtype: torch.dtype | None = None
) -> nn.Module:
    """A deep copy in eval mode with BatchNorm folded, optionally ``channels_last`` and cast to ``dtype``.

    The folding is done in fp32 before any cast, so a bf16 copy carries the rounding of one cast only.
    Modules marked ``keep_fp32`` (the classifiers, :class:`isnet.models.layers.ClassifierConv2d`) keep their
    fp32 weights.
    """
    fast = copy.deepcopy(model).eval()
    fold_batchnorm_(fast)
    if dtype is not None:
        _cast_(fast, dtype)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    for param in fast.parameters():
        param.requires_grad_(False)
    return fast


def _cast_(model: nn.Module, dtype: torch.dtype) -> None:
    """Cast floating-point parameters and buffers to ``dtype`` in place, except in ``keep_fp32`` modules."""
    for module in model.modules():
        if getattr(module, "keep_fp32", False):
            continue
        for tensor in [*module.parameters(recurse=False), *module.buffers(recurse=False)]:
            if tensor.is_floating_point():
                tensor.data = tensor.data.to(dtype)


def use_winograd_(model: nn.Module, min_channels: int = 256) -> int:
    """Replace the 3x3 stride-1 convolutions with at least ``min_channels`` in and out channels by
    :class:`isnet.models.layers.winograd.WinogradConv2d` (fp32 CPU inference; 2.25x fewer multiplications).

    Below ~128 channels the Winograd transforms cost more than they save, so the stem and the first stages keep
    oneDNN's direct convolution. The replacements keep only their transformed weights (the copy is frozen).
    Returns the number of convolutions replaced.
    """
    from isnet.models.layers.winograd import WinogradConv2d, unsupported_setting

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


def accumulate_residuals_(model: nn.Module) -> int:
    """Let each folded timm ``Bottleneck`` add its last 1x1 convolution into the shortcut tensor in place.

    ``conv3(y) + shortcut`` becomes one GEMM with accumulation (``shortcut += y @ W3^T + b3``) on the
    ``channels_last`` buffers: the block no longer allocates a second output as large as the shortcut (268 MB per
    layer4 block at 1024x2048) and the widest 1x1 convolutions run ~30 % faster. Equal up to fp32 rounding (the
    additions happen in another order). Only for an eval copy whose BatchNorms are folded; the block input is
    overwritten only in blocks after the first of a stage (the first has a projection shortcut, or its input may
    be a returned feature). Returns the number of blocks changed.
    """
    from timm.models.resnet import Bottleneck

    changed = 0
    for stage in model.modules():
        if not isinstance(stage, nn.Sequential):
            continue
        for index, block in enumerate(stage):
            if type(block) is not Bottleneck or not _plain_folded_bottleneck(block):
                continue
            if block.downsample is None and index == 0:
                continue
            block.forward = types.MethodType(_bottleneck_accumulating_forward, block)
            changed += 1
    return changed


def _plain_folded_bottleneck(block: nn.Module) -> bool:
    conv3 = block.conv3
    return (
        all(
            isinstance(getattr(block, name), nn.Identity)
            for name in ("bn1", "bn2", "bn3", "drop_block", "aa")
        )
        and block.se is None
        and block.drop_path is None
        and type(conv3) is nn.Conv2d
        and conv3.kernel_size == (1, 1)
        and conv3.stride == (1, 1)
        and conv3.groups == 1
        and conv3.bias is not None
        and isinstance(block.act3, nn.ReLU)
    )


def _bottleneck_accumulating_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    shortcut = x if self.downsample is None else self.downsample(x)
    y = self.act2(self.conv2(self.act1(self.conv1(x))))
    channels_last = torch.channels_last
    if not (
        y.is_contiguous(memory_format=channels_last) and shortcut.is_contiguous(memory_format=channels_last)
    ):
        return self.act3(self.conv3(y) + shortcut)
    weight = self.conv3.weight.reshape(self.conv3.out_channels, self.conv3.in_channels)
    rows = shortcut.permute(0, 2, 3, 1).reshape(-1, shortcut.shape[1])  # a view of the shortcut
    rows.add_(self.conv3.bias).addmm_(y.permute(0, 2, 3, 1).reshape(-1, y.shape[1]), weight.t())
    return self.act3(shortcut)
