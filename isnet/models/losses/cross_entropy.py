"""Cross-entropy over the labelled pixels, optionally class-weighted.

sssegmentation's ``crossentropy`` (``losses/crossentropyloss.py``) multiplies each pixel's loss by the weight of
its label and divides by the sum of those weights (``avg_factor``): the same as
``F.cross_entropy(weight=class_weight)`` with mean reduction, which is what this computes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CrossEntropyLoss", "check_class_weight"]


def check_class_weight(class_weight: Sequence[float] | None) -> torch.Tensor | None:
    """``class_weight`` as a float tensor, or ``None``; a ValueError names a bad value."""
    if class_weight is None:
        return None
    values = (
        list(class_weight)
        if isinstance(class_weight, Sequence) and not isinstance(class_weight, str)
        else None
    )
    if not values or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0 for v in values
    ):
        raise ValueError(f"class_weight must be a list of K finite numbers >= 0, got {class_weight!r}")
    if not any(values):
        raise ValueError("class_weight must have at least one weight > 0")
    return torch.tensor([float(v) for v in values])


def weight_for(class_weight: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor | None:
    """The class weights in the logits' dtype, after checking that there is one per class."""
    if class_weight is None:
        return None
    if class_weight.numel() != logits.shape[1]:
        raise ValueError(
            f"class_weight has {class_weight.numel()} values but the logits have {logits.shape[1]} classes"
        )
    return class_weight.to(logits.dtype)


class CrossEntropyLoss(nn.Module):
    """Mean cross-entropy over the pixels whose label is not ``ignore_index``.

    Args:
        ignore_index: Label value that takes no part in the loss.
        class_weight: ``K`` weights, one per class (the mean is then weighted); ``None``: all 1 (the reference's
            ISNet).

    Shape:
        ``logits`` ``(N, K, H, W)`` (or ``(P, K)``), ``target`` ``(N, H, W)`` (or ``(P,)``); returns a scalar.
    """

    def __init__(self, ignore_index: int = 255, class_weight: Sequence[float] | None = None) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        # a buffer follows the module to its device; not persistent: the weights are part of the recipe (hparams)
        self.register_buffer("class_weight", check_class_weight(class_weight), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = weight_for(self.class_weight, logits)
        return F.cross_entropy(logits, target, weight=weight, ignore_index=self.ignore_index)
