"""Lovász-softmax loss: a convex surrogate of the per-class Jaccard loss (1 - IoU).

Berman et al., "The Lovász-Softmax loss: A tractable surrogate for the optimization of the
intersection-over-union measure in neural networks", CVPR 2018. Follows sssegmentation's ``softmaxlovaszloss``
(``losses/lovaszloss.py``): softmax over the classes, the labelled pixels of the whole batch (or of each image
with ``per_image``) taken together, one Lovász extension per class, the mean over the classes (weighted by
``class_weight`` when given).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from isnet.models.losses.cross_entropy import check_class_weight, weight_for

__all__ = ["LovaszSoftmaxLoss", "lovasz_grad"]


def lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss at errors sorted in decreasing order.

    Args:
        gt_sorted: ``(P,)`` 0/1 foreground indicator of the pixels, in the order of their decreasing errors.

    Returns:
        ``(P,)``: ``J(1..i) - J(1..i-1)``, the Jaccard loss of the first ``i`` pixels minus that of the first
        ``i - 1``.
    """
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if gt_sorted.numel() > 1:
        jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


class LovaszSoftmaxLoss(nn.Module):
    """Lovász-softmax over the labelled pixels.

    Args:
        ignore_index: Label value that takes no part in the loss.
        classes: ``"present"``: average over the classes present in the labels (the reference's default);
            ``"all"``: over all ``K`` classes.
        per_image: Compute the loss per image and average over the images (images without a labelled pixel are
            left out); ``False``: all labelled pixels of the batch at once (the reference's default).
        class_weight: ``K`` weights for the mean over the classes; ``None``: a plain mean.

    Shape:
        ``logits`` ``(N, K, H, W)``, ``target`` ``(N, H, W)``; returns a scalar.
    """

    def __init__(
        self,
        ignore_index: int = 255,
        classes: str = "present",
        per_image: bool = False,
        class_weight: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if classes not in ("present", "all"):
            raise ValueError(f"classes must be 'present' or 'all', got {classes!r}")
        self.ignore_index = ignore_index
        self.classes = classes
        self.per_image = bool(per_image)
        self.register_buffer("class_weight", check_class_weight(class_weight), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs = logits.softmax(dim=1)
        if not self.per_image:
            return self._flat_loss(probs, target)
        losses = [self._flat_loss(p[None], t[None]) for p, t in zip(probs, target, strict=True)]
        losses = [
            loss for loss, t in zip(losses, target, strict=True) if bool((t != self.ignore_index).any())
        ]
        return torch.stack(losses).mean() if losses else logits.sum() * 0.0

    def _flat_loss(self, probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        num_classes = probs.shape[1]
        weight = weight_for(self.class_weight, probs)
        probs = probs.permute(0, 2, 3, 1).reshape(-1, num_classes)  # (P, K): one row per pixel
        target = target.reshape(-1)
        valid = target != self.ignore_index
        probs, target = probs[valid], target[valid]
        losses, weights = [], []
        for c in range(num_classes):
            fg = (target == c).to(probs.dtype)
            if self.classes == "present" and not bool(fg.any()):
                continue
            errors = (fg - probs[:, c]).abs()
            errors_sorted, order = errors.sort(descending=True)
            losses.append(torch.dot(errors_sorted, lovasz_grad(fg[order])))
            weights.append(1.0 if weight is None else weight[c])
        if not losses:
            return probs.sum() * 0.0
        losses = torch.stack(losses)
        if weight is None:
            return losses.mean()
        weights = torch.stack(weights)
        return (losses * weights).sum() / weights.sum()
