"""Bilinear resizing (``align_corners=False``) whose backward runs as two small matrix products.

ISNet computes its three training losses on logits upsampled 8x to the crop (sssegmentation ``isnet.py``).
PyTorch's CPU backward of ``upsample_bilinear2d`` walks the (B, K, H, W) gradient pixel by pixel and took ~45 ms
per 150-class 256x256 logit map of batch 2; bilinear resizing is separable, ``y = A_h x A_w^T``, so its gradient
is ``A_h^T g A_w``, two matmuls that take ~7 ms. The forward stays ``F.interpolate`` itself, so the logits and the
losses are bit-identical to the plain path; the gradient differs by summation order only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["interpolation_matrix", "resize_bilinear"]


def interpolation_matrix(
    size_in: int, size_out: int, dtype: torch.dtype = torch.float32, device: torch.device | None = None
) -> torch.Tensor:
    """The (size_out, size_in) matrix of 1-D linear interpolation with ``align_corners=False``.

    Source positions and weights follow PyTorch's ``area_pixel_compute_source_index``, in the precision its CPU
    kernel uses for ``dtype`` (fp64 for fp64, fp32 otherwise): ``src = (dst + 0.5) * in / out - 0.5`` clamped at
    0; taps ``floor(src)`` and the next index (clamped to the edge).
    """
    dtype = torch.promote_types(dtype, torch.float32)
    dst = torch.arange(size_out, dtype=dtype, device=device)
    src = ((dst + 0.5) * (size_in / size_out) - 0.5).clamp_min(0.0)
    low = src.floor().long().clamp(max=size_in - 1)
    high = (low + 1).clamp(max=size_in - 1)
    frac = src - low.to(dtype)
    rows = torch.arange(size_out, device=device)
    matrix = torch.zeros(size_out, size_in, dtype=dtype, device=device)
    matrix.index_put_((rows, low), 1.0 - frac, accumulate=True)
    matrix.index_put_((rows, high), frac, accumulate=True)
    return matrix


class _ResizeBilinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        ctx.in_size = x.shape[2:]
        return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (h, w), (height, width) = ctx.in_size, grad.shape[2:]
        a_h = interpolation_matrix(h, height, grad.dtype, grad.device).to(grad.dtype)  # (H, h)
        a_w = interpolation_matrix(w, width, grad.dtype, grad.device).to(grad.dtype)  # (W, w)
        return a_h.t() @ (grad @ a_w), None, None


def resize_bilinear(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """``F.interpolate(x, size, mode="bilinear", align_corners=False)`` with the matmul backward.

    Shape:
        x (B, C, h, w) -> (B, C, H, W).
    """
    height, width = int(size[0]), int(size[1])
    if not (torch.is_grad_enabled() and x.requires_grad):
        return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    return _ResizeBilinear.apply(x, height, width)
