"""Cross-entropy over the hard pixels only: online hard example mining (OHEM).

Follows sssegmentation's ``OHEMPixelSampler`` (``samplers/ohempixelsampler.py``) in its threshold mode, as the
segmentor applies it to every prediction before the loss (``losses/functions.py: calculatelosses``):

1. ``p`` = softmax probability of the true class at each labelled pixel (no gradient);
2. with ``n = min_kept_per_image * N`` and the labelled pixels' ``p`` sorted ascending, the threshold is
   ``max(p_sorted[min(n, count - 1)], thresh)``;
3. the loss is the (class-weighted) mean cross-entropy over the labelled pixels with ``p < threshold``.

So at least the ``n`` least confident pixels are kept (all of them when there are fewer), and every pixel
predicted with less than ``thresh`` confidence.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from isnet.models.losses.cross_entropy import check_class_weight, weight_for

__all__ = ["OHEMCrossEntropyLoss"]


class OHEMCrossEntropyLoss(nn.Module):
    """Cross-entropy over the pixels the reference's ``OHEMPixelSampler`` keeps.

    Args:
        ignore_index: Label value that takes no part in the loss.
        thresh: Probability threshold: pixels whose true class has a lower probability are hard (0.7 in the
            mmsegmentation/sssegmentation configs that use OHEM).
        min_kept_per_image: At least this many pixels per image are kept (the reference's default, 100000).
        class_weight: ``K`` weights for the cross-entropy of the kept pixels; ``None``: all 1.

    Note:
        When no pixel is kept (no labelled pixel, or every probability at the threshold) the loss is 0 with a
        zero gradient; the reference would give NaN.
    """

    def __init__(
        self,
        ignore_index: int = 255,
        thresh: float = 0.7,
        min_kept_per_image: int = 100000,
        class_weight: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(thresh, bool) or not isinstance(thresh, int | float) or not 0 < thresh <= 1:
            raise ValueError(f"thresh must be a probability in (0, 1], got {thresh!r}")
        if (
            isinstance(min_kept_per_image, bool)
            or not isinstance(min_kept_per_image, int)
            or min_kept_per_image < 2
        ):
            raise ValueError(
                f"min_kept_per_image must be an int > 1 (as the reference asserts), got {min_kept_per_image!r}"
            )
        self.ignore_index = ignore_index
        self.thresh = float(thresh)
        self.min_kept_per_image = min_kept_per_image
        self.register_buffer("class_weight", check_class_weight(class_weight), persistent=False)

    @torch.no_grad()
    def select(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The hard pixels: a boolean ``(N, H, W)`` mask (``ohempixelsampler.py: sample``, ``thresh`` branch)."""
        valid = target != self.ignore_index
        true_class = target.masked_fill(~valid, 0).unsqueeze(1)
        probs = logits.softmax(dim=1).gather(1, true_class).squeeze(1)
        sorted_probs = probs[valid].sort().values
        if sorted_probs.numel() == 0:
            return valid
        kept = self.min_kept_per_image * target.shape[0]
        # max(p_sorted[k], thresh), compared in the probabilities' dtype as the reference compares
        threshold = sorted_probs[min(kept, sorted_probs.numel() - 1)].clamp(min=self.thresh)
        return valid & (probs < threshold)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        keep = self.select(logits, target)
        if not bool(keep.any()):
            return logits.sum() * 0.0
        points = logits.permute(0, 2, 3, 1)[keep]  # (P, K): the kept pixels' logits, with their gradient
        return F.cross_entropy(points, target[keep], weight=weight_for(self.class_weight, logits))
