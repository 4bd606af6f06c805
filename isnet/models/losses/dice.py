"""Dice loss over all classes and pixels of each image, as sssegmentation's ``diceloss`` (``losses/diceloss.py``).

For image ``n``, with ``x`` its class scores (sigmoid, as the reference's default, or softmax) and ``y`` its
one-hot labels, both zero at unlabelled pixels and flattened over classes and pixels together:

* default: ``d = 2 * sum(x * y) / ((sum(x * x) + eps) + (sum(y * y) + eps))``;
* ``naive_dice``: ``d = (2 * sum(x * y) + eps) / (sum(x) + sum(y) + eps)``;

and the loss is the mean of ``1 - d`` over the images. (This is one Dice coefficient per image over all classes,
not a mean of per-class Dice coefficients.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DiceLoss"]


class DiceLoss(nn.Module):
    """The reference's Dice loss on label maps.

    Args:
        ignore_index: Label value that takes no part in the loss.
        use_sigmoid: Class scores by a sigmoid per class (the reference's default); ``False``: softmax over classes.
        naive_dice: The ``(2|X∩Y| + eps) / (|X| + |Y| + eps)`` form; ``False``: squared sums in the denominator.
        eps: Smoothing term (1e-3).

    Shape:
        ``logits`` ``(N, K, H, W)``, ``target`` ``(N, H, W)``; returns a scalar.
    """

    def __init__(
        self, ignore_index: int = 255, use_sigmoid: bool = True, naive_dice: bool = False, eps: float = 1e-3
    ) -> None:
        super().__init__()
        if isinstance(eps, bool) or not isinstance(eps, int | float) or eps < 0:
            raise ValueError(f"eps must be a number >= 0, got {eps!r}")
        self.ignore_index = ignore_index
        self.use_sigmoid = bool(use_sigmoid)
        self.naive_dice = bool(naive_dice)
        self.eps = float(eps)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        num_classes = logits.shape[1]
        scores = logits.sigmoid() if self.use_sigmoid else logits.softmax(dim=1)
        valid = (target != self.ignore_index).unsqueeze(1).to(scores.dtype)  # (N, 1, H, W)
        # the ignore value maps to an extra class that is dropped, so unlabelled pixels have an all-zero one-hot
        onehot = F.one_hot(target.clamp(0, num_classes), num_classes + 1)[..., :num_classes]
        onehot = onehot.permute(0, 3, 1, 2).to(scores.dtype)
        x = (scores * valid).flatten(1)
        y = (onehot * valid).flatten(1)
        overlap = (x * y).sum(1)
        if self.naive_dice:
            dice = (2 * overlap + self.eps) / (x.sum(1) + y.sum(1) + self.eps)
        else:
            dice = 2 * overlap / ((x * x).sum(1) + self.eps + (y * y).sum(1) + self.eps)
        return (1 - dice).mean()
