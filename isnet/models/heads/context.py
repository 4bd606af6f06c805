"""Image-level (ILC) and semantic-level (SLC) context modules of ISNet.

Paper: Jin et al., "ISNet: Integrate Image-Level and Semantic-Level Context for Semantic Segmentation",
ICCV 2021 (https://arxiv.org/abs/2108.12382). Behaviour follows sssegmentation
``segmentors/isnet/{imagelevel,semanticlevel}.py``; the class-centre computation of the SLC is vectorised.
"""

from __future__ import annotations

import torch
from torch import nn

from isnet.models.layers import SelfAttentionBlock, conv_bn_act

__all__ = ["ImageLevelContext", "SemanticLevelContext", "class_centres", "semantic_class_centres"]


class ImageLevelContext(nn.Module):
    """Attention from every pixel to ``[global average, pixel features]``, fused with the input.

    Args:
        feats_channels: input/output channels (C=512).
        transform_channels: attention width (T=256).
        act: head activation.

    Shape:
        x (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, feats_channels: int = 512, transform_channels: int = 256, act: str = "relu") -> None:
        super().__init__()
        self.correlate_net = SelfAttentionBlock(
            key_in_channels=feats_channels * 2,
            query_in_channels=feats_channels,
            transform_channels=transform_channels,
            out_channels=feats_channels,
            act=act,
        )
        self.bottleneck = conv_bn_act(feats_channels * 2, feats_channels, kernel_size=3, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the reference bilinearly resizes the 1x1 average to HxW (an exact broadcast) and concatenates
        # [global, x]; the key/value projections take the parts separately, so the global half is projected once
        x_global = x.mean(dim=(2, 3), keepdim=True)
        context = self.correlate_net(x, [x_global, x])
        return self.bottleneck(torch.cat([x, context], dim=1))  # order [x, context]


def class_centres(
    feats: torch.Tensor, logits: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Soft centre of every class's argmax region, with each pixel's class and each class's pixel count.

    For image b and class k owning the pixels R_k = {i: argmax(logits_i) = k}, the weights are a softmax of the
    raw logit of class k over the pixels of R_k, and the centre is sum_{i in R_k} w_i f_i (sssegmentation
    ``semanticlevel.py``). Without any Python loop: every pixel belongs to exactly one region, so a segmented
    softmax over the pixels' maximum logits and one scatter-add of the weighted features give all centres in
    O(N*C), independent of the number of classes K. On CUDA with deterministic algorithms on (Lightning's
    ``deterministic=True``), where PyTorch has no deterministic multi-dimensional scatter-add, the same centres
    come from an atomics-free masked softmax and batched matmul (O(K*N*C), as much as the classifier).
    Gradients reach both ``feats`` and ``logits`` (the reference does not detach); argmax has none. Runs in
    at least fp32, even under autocast (sums of exponentials). Centres of absent classes are 0 and their count is 0.

    Shape:
        feats (B, C, H, W), logits (B, K, H, W) -> centres (B, C, K) in >= fp32, classes (B, 1, N), counts (B, K).
    """
    batch = feats.shape[0]
    if logits.shape[0] != batch or logits.shape[2:] != feats.shape[2:]:
        raise ValueError(
            f"feats {tuple(feats.shape)} and logits {tuple(logits.shape)} must share batch and HxW"
        )
    with torch.autocast(feats.device.type, enabled=False):
        dtype = torch.promote_types(feats.dtype, torch.float32)  # fp16/bf16 -> fp32; fp64 stays
        feats32 = feats.to(dtype).flatten(2)  # (B, C, N)
        logits32 = logits.to(dtype).flatten(2)  # (B, K, N)
        if feats.is_cuda and torch.are_deterministic_algorithms_enabled():
            return class_centres_dense(feats32, logits32)
        return _class_centres_segmented(feats32, logits32)


def _class_centres_segmented(
    feats: torch.Tensor, logits: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """O(N*C) centres: segmented softmax of each pixel's winning logit, then one scatter-add over pixels.

    Works in the memory layout it is given: with ``channels_last`` inputs (the eval fast path) the channels are
    the fastest axis and the reductions and scatter run over (B, N, C) views, which is ~20x faster there than
    striding across channels.

    Shape:
        feats (B, C, N), logits (B, K, N), both >= fp32 -> centres (B, C, K), classes (B, 1, N), counts (B, K).
    """
    batch, channels, _ = feats.shape
    num_classes = logits.shape[1]
    pixels_inner = feats.stride(1) == 1 and logits.stride(1) == 1 and feats.shape[2] > 1
    class_dim = 2 if pixels_inner else 1
    if pixels_inner:
        feats, logits = feats.transpose(1, 2), logits.transpose(1, 2)  # (B, N, C), (B, N, K), contiguous
    # the pixel's own class logit is its maximum; ties go to the first index, as torch.argmax in the reference
    score, classes = logits.max(dim=class_dim)  # (B, N)
    empty = score.new_full((batch, num_classes), float("-inf"))
    region_max = empty.scatter_reduce(1, classes, score.detach(), "amax")  # softmax shift, no gradient needed
    exp = torch.exp(score - region_max.gather(1, classes))
    region_sum = score.new_zeros(batch, num_classes).scatter_add(1, classes, exp)
    weights = exp / region_sum.gather(1, classes)  # (B, N): softmax within each pixel's region
    weighted = feats * weights.unsqueeze(class_dim)
    index = classes.unsqueeze(class_dim)
    if pixels_inner:
        centres = feats.new_zeros(batch, num_classes, channels).scatter_add(
            1, index.expand(-1, -1, channels), weighted
        )
        centres = centres.transpose(1, 2)  # (B, C, K)
    else:
        centres = feats.new_zeros(batch, channels, num_classes).scatter_add(
            2, index.expand(-1, channels, -1), weighted
        )
    counts = score.new_zeros(batch, num_classes).scatter_add(1, classes, torch.ones_like(score))
    return centres, classes.unsqueeze(1), counts


def class_centres_dense(
    feats: torch.Tensor, logits: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Atomics-free centres: a (B, K, N) masked softmax over pixels and one batched matmul.

    Shape:
        feats (B, C, N), logits (B, K, N), both >= fp32 -> centres (B, C, K), classes (B, 1, N), counts (B, K).
    """
    classes = logits.argmax(dim=1, keepdim=True)  # (B, 1, N); ties -> first index, as in the reference
    member = torch.zeros_like(logits).scatter_(1, classes, 1.0)  # one-hot region masks
    # outside its region a class's logit is the dtype minimum (not -inf, which gives NaN for absent classes)
    masked = logits.masked_fill(member == 0, torch.finfo(logits.dtype).min)
    weights = torch.softmax(masked, dim=2) * member  # (B, K, N), zero outside each region and for absent k
    centres = torch.bmm(feats, weights.transpose(1, 2))  # (B, C, K)
    return centres, classes, member.sum(dim=2)


def semantic_class_centres(feats: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Every pixel's class centre ("feats_sl"): :func:`class_centres` gathered back to the pixels.

    Equal to the reference's loop over images and classes.

    Shape:
        feats (B, C, H, W), logits (B, K, H, W) -> (B, C, H, W).
    """
    batch, channels, height, width = feats.shape
    centres, classes, _ = class_centres(feats, logits)
    feats_sl = centres.gather(2, classes.expand(batch, channels, -1))  # (B, C, N)
    return feats_sl.reshape(batch, channels, height, width).to(feats.dtype)


class SemanticLevelContext(nn.Module):
    """Attention from every pixel to the soft centre of its predicted class, fused with the ILC output.

    Args:
        feats_channels: input/output channels (C=512).
        transform_channels: attention width (T=256).
        act: head activation.

    Shape:
        x (B, C, H, W), preds (B, K, H, W) stage-1 logits, feats_il (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, feats_channels: int = 512, transform_channels: int = 256, act: str = "relu") -> None:
        super().__init__()
        self.correlate_net = SelfAttentionBlock(
            key_in_channels=feats_channels,
            query_in_channels=feats_channels,
            transform_channels=transform_channels,
            out_channels=feats_channels,
            act=act,
        )
        self.bottleneck = conv_bn_act(feats_channels * 2, feats_channels, kernel_size=3, act=act)
        #: in eval mode attend to the <= K distinct class centres instead of all HW pixels (exact, see forward)
        self.compress_keys = True

    def forward(self, x: torch.Tensor, preds: torch.Tensor, feats_il: torch.Tensor) -> torch.Tensor:
        if self.training or not self.compress_keys:
            feats_sl = semantic_class_centres(x, preds)
            context = self.correlate_net(x, feats_sl)
        else:
            # Every pixel's key/value input is its class centre and the key/value projections are pointwise
            # (1x1 conv, eval-mode BN, activation), so the HW keys take at most K distinct values. Attention over
            # the HW pixels equals attention over the K centres with log(pixel count) added to the scores:
            # sum_j exp(q.k_j) v_j = sum_k n_k exp(q.k_k) v_k. Exact, and O(HW*K) instead of O(HW^2). In training
            # BN normalises with batch statistics over all pixels, so the full form runs there.
            centres, _, counts = class_centres(x, preds)
            context = self.correlate_net.forward_grouped(x, centres.to(x.dtype), counts)
        return self.bottleneck(torch.cat([feats_il, context], dim=1))  # order [feats_il, context]
