"""Self-attention block of ISNet's image- and semantic-level context modules.

Reproduces sssegmentation ``segmentors/base/selfattention.py`` as ISNet configures it (two 1x1 CBA for
query/key, one for value and output, ``matmul_norm=True``). The attention itself goes through
``F.scaled_dot_product_attention``: its default scale ``1/sqrt(transform_channels)`` is exactly the reference's
``matmul_norm``, and the fused kernels never materialise the (HW x HW) similarity matrix, which at
Cityscapes resolution (128x256 positions) would be 4 GiB per image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from isnet.models.layers.conv import conv_bn_act

__all__ = ["SelfAttentionBlock", "attention_reference", "project_concatenation"]


def attention_reference(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Explicit ``softmax(QK^T / sqrt(d)) V`` as the reference computes it (used by tests and ``use_sdpa=False``).

    Shape:
        query (B, N, d), key (B, M, d), value (B, M, d) -> (B, N, d).
    """
    sim = torch.matmul(query, key.transpose(1, 2)) * (query.shape[-1] ** -0.5)
    return torch.matmul(F.softmax(sim, dim=-1), value)


def project_concatenation(block: nn.Sequential, parts: list[torch.Tensor]) -> torch.Tensor:
    """``block(torch.cat(parts, dim=1))`` for a 1x1 conv-BN-act block, without building the concatenation.

    A 1x1 convolution of a channel concatenation is the sum of the convolutions of the parts with the matching
    slices of the weight. A part may be spatially 1x1 (the image-level context's global average): it is then
    projected once and broadcast, instead of being expanded to HxW first. Equal to the concatenated form up to
    fp32 rounding (the summation order changes), with the 1x1 part's share of the FLOPs and memory saved.

    Shape:
        parts [(B, C_i, H_i, W_i)] broadcastable to (B, ., H, W), sum C_i = in_channels -> (B, out, H, W).
    """
    conv = block[0]
    total, start = None, 0
    for part in parts:
        weight = conv.weight[:, start : start + part.shape[1]]
        start += part.shape[1]
        projected = F.conv2d(part, weight)
        total = projected if total is None else total + projected
    if conv.bias is not None:
        total = total + conv.bias.view(1, -1, 1, 1)
    return block[1:](total)


class SelfAttentionBlock(nn.Module):
    """Attention from query features to key/value features at the same spatial size.

    Args:
        key_in_channels: channels of the key/value input.
        query_in_channels: channels of the query input.
        transform_channels: width of the query/key/value projections (T=256 in ISNet).
        out_channels: channels of the output projection.
        act: head activation (``relu`` or ``leaky_relu``).

    Shape:
        query_feats (B, Cq, H, W), key_feats (B, Ck, H, W) -> (B, out_channels, H, W).
    """

    def __init__(
        self,
        key_in_channels: int,
        query_in_channels: int,
        transform_channels: int,
        out_channels: int,
        act: str = "relu",
    ) -> None:
        super().__init__()
        # module creation order and nesting follow the reference so state-dict keys are identical
        self.key_project = nn.Sequential(
            conv_bn_act(key_in_channels, transform_channels, act=act),
            conv_bn_act(transform_channels, transform_channels, act=act),
        )
        self.query_project = nn.Sequential(
            conv_bn_act(query_in_channels, transform_channels, act=act),
            conv_bn_act(transform_channels, transform_channels, act=act),
        )
        self.value_project = conv_bn_act(key_in_channels, transform_channels, act=act)
        self.out_project = conv_bn_act(transform_channels, out_channels, act=act)
        self.transform_channels = transform_channels
        #: ``False`` switches to the explicit matmul-softmax-matmul of the reference (for comparisons).
        self.use_sdpa = True

    def forward(
        self, query_feats: torch.Tensor, key_feats: torch.Tensor | list[torch.Tensor]
    ) -> torch.Tensor:
        """``key_feats`` may be a list of parts that the reference concatenates along channels (see
        :func:`project_concatenation`); the first projections then never build the concatenation."""
        batch, _, height, width = query_feats.shape
        query = self.query_project(query_feats).flatten(2).transpose(1, 2)  # (B, HW, T)
        if isinstance(key_feats, list | tuple):
            key = self.key_project[1:](project_concatenation(self.key_project[0], key_feats))
            value = project_concatenation(self.value_project, key_feats)
        else:
            key, value = self.key_project(key_feats), self.value_project(key_feats)
        key = key.flatten(2).transpose(1, 2)  # (B, HW, T)
        value = value.flatten(2).transpose(1, 2)  # (B, HW, T)
        if self.use_sdpa:
            # one head of width T; SDPA's default scale 1/sqrt(T) is the reference's matmul_norm. Its fused
            # (flash) kernels, which accumulate in fp32, need a contiguous last dim (else the HW x HW math path)
            query, key, value = (t.contiguous().unsqueeze(1) for t in (query, key, value))
            context = F.scaled_dot_product_attention(query, key, value).squeeze(1)
        else:
            context = attention_reference(query, key, value)
        context = context.transpose(1, 2).reshape(batch, self.transform_channels, height, width)
        return self.out_project(context)

    def forward_grouped(
        self, query_feats: torch.Tensor, key_centres: torch.Tensor, counts: torch.Tensor
    ) -> torch.Tensor:
        """Attention to keys/values that repeat: ``key_centres[:, :, k]`` stands for ``counts[:, k]`` positions.

        Equal to :meth:`forward` with a key map in which each centre is repeated ``counts`` times, provided the
        key/value projections act per position (true in eval mode). Centres with count 0 are excluded.

        Shape:
            query_feats (B, Cq, H, W), key_centres (B, Ck, K), counts (B, K) -> (B, out_channels, H, W).
        """
        batch, _, height, width = query_feats.shape
        query = self.query_project(query_feats).flatten(2).transpose(1, 2)  # (B, HW, T)
        centres = key_centres.unsqueeze(-1)  # (B, Ck, K, 1): a 1-pixel-wide "image" for the 1x1 projections
        key = self.key_project(centres).flatten(2)  # (B, T, K)
        value = self.value_project(centres).flatten(2).transpose(1, 2)  # (B, K, T)
        with torch.autocast(query.device.type, enabled=False):
            dtype = torch.promote_types(query.dtype, torch.float32)  # fp16/bf16 -> fp32; fp64 stays
            scores = torch.bmm(query.to(dtype), key.to(dtype)) * (self.transform_channels**-0.5)
            scores = scores + counts.to(dtype).log().unsqueeze(1)  # log n_k; -inf for absent centres
            context = torch.bmm(torch.softmax(scores, dim=-1), value.to(dtype))  # (B, HW, T)
        context = (
            context.to(query.dtype).transpose(1, 2).reshape(batch, self.transform_channels, height, width)
        )
        return self.out_project(context)
