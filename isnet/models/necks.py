"""A plain Vision Transformer as a four-level, stride-8 backbone for the ISNet head.

The ISNet head reads four feature maps: the bottleneck the last one, the FCN auxiliary head the third, the LIP
shortcut the first, and the head computes at the last one's stride (8 in every reference config). A CNN gives
these maps by dilating its last stages (``output_stride=8``); a plain ViT has one token map at the patch stride
(16) and cannot be dilated. :class:`ViTFeaturePyramid` takes the tokens of four evenly spaced blocks (blocks 3, 6,
9, 12 of 12, as DPT and SETR-MLA do) and resamples each with a 1x1 projection and a transposed convolution
(DPT's "reassemble"; the simple feature pyramid of ViTDet): the first to stride 4 with D/4 channels, the others to
stride 8 with D/2, D and D channels. Only the levels the caller reads are built (ISNet reads the first only with the
LIP shortcut and never the second), so every parameter gets a gradient, as DDP requires.
"""

from __future__ import annotations

import torch
from timm.models import FeatureInfo
from torch import nn

__all__ = ["ViTFeaturePyramid", "vit_block_indices"]


def vit_block_indices(depth: int, levels: int = 4) -> tuple[int, ...]:
    """Indices of ``levels`` evenly spaced blocks ending with the last: depth 12 -> (2, 5, 8, 11)."""
    if depth < levels:
        raise ValueError(f"a ViT with {depth} blocks cannot give {levels} feature levels")
    return tuple(depth * (i + 1) // levels - 1 for i in range(levels))


def _resample(in_channels: int, out_channels: int, factor: int) -> nn.Sequential:
    """1x1 projection, then a ``factor`` x ``factor`` transposed convolution with stride ``factor`` (if > 1)."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size=1)]
    if factor > 1:
        layers.append(nn.ConvTranspose2d(out_channels, out_channels, kernel_size=factor, stride=factor))
    return nn.Sequential(*layers)


class ViTFeaturePyramid(nn.Module):
    """Four stride-4/8/8/8 maps from a plain ViT's intermediate tokens.

    Args:
        vit: a timm ``features_only`` ViT (``FeatureGetterNet``) returning four (N, D, H/p, W/p) token maps of
            patch size p = 8 or 16.
        strides: output stride of each level; each must divide the patch size.
        levels: the levels to build and compute; the others are ``None`` in the output.

    Shape:
        images (N, 3, H, W) -> [(N, D/4, H/4, W/4), (N, D/2, H/8, W/8), (N, D, H/8, W/8), (N, D, H/8, W/8)]
        (sizes rounded up: the ViT pads the image to a multiple of p). ``feature_info.channels()`` and
        ``.reduction()`` describe them, as for a timm CNN.
    """

    def __init__(
        self, vit: nn.Module, strides: tuple[int, ...] = (4, 8, 8, 8), levels: tuple[int, ...] = (0, 1, 2, 3)
    ) -> None:
        super().__init__()
        dim, patch = vit.feature_info.channels()[-1], vit.feature_info.reduction()[-1]
        if len(vit.feature_info.channels()) != len(strides) or any(patch % s for s in strides):
            raise ValueError(f"ViTFeaturePyramid needs {len(strides)} token maps at a patch size divisible by "
                             f"the strides {strides}, got {vit.feature_info.reduction()}")  # fmt: skip
        channels = (dim // 4, dim // 2, dim, dim)
        self.vit = vit
        self.levels = nn.ModuleDict(
            {str(i): _resample(dim, channels[i], patch // strides[i]) for i in sorted(set(levels))}
        )
        self.feature_info = FeatureInfo(
            [
                dict(num_chs=c, reduction=s, module=f"levels.{i}")
                for i, (c, s) in enumerate(zip(channels, strides, strict=True))
            ],
            out_indices=tuple(range(len(strides))),
        )

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each transformer block in backward (timm's; a ViT has no BatchNorm whose statistics a
        recomputation would update twice). The resampling layers are cheap and stay as they are."""
        self.vit.model.set_grad_checkpointing(enable)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor | None]:
        tokens = self.vit(images)
        return [self.levels[str(i)](t) if str(i) in self.levels else None for i, t in enumerate(tokens)]
