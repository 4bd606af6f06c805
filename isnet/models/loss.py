"""ISNet training loss: L(stage2) x 1.0 + L(stage1) x 0.4 + L(aux) x 0.4, L a pixel loss (cross-entropy).

By default matches sssegmentation's ``CrossEntropyLoss`` as the ISNet base config sets it up (mean over
non-ignored pixels, no class weights, no label smoothing, no pixel sampler), with the ignore value 255 instead
of the reference's internal -100 (our datasets, padding and rotation fill use 255 consistently). Another pixel
loss of :mod:`isnet.models.losses` (OHEM, Lovász-softmax, Dice) replaces ``L`` for all three terms, as the
reference's pixel sampler and loss configs apply to every prediction.
"""

from __future__ import annotations

import torch
from torch import nn

from isnet.models.losses import CrossEntropyLoss

__all__ = ["ISNetLoss"]


class ISNetLoss(nn.Module):
    """Weighted sum of the three pixel-loss terms.

    Args:
        ignore_index: label value excluded from the loss (255).
        stage2_weight: weight of the final (stage-2) loss, 1.0 in the reference.
        stage1_weight: weight of the stage-1 loss, 0.4.
        aux_weight: weight of the auxiliary FCN loss, 0.4.
        check_labels: raise a clear error when a label is outside ``[0, K) ∪ {ignore_index}`` (one cheap pass).
        pixel_loss: the loss of each output, ``(logits, target) -> scalar`` with the same ``ignore_index``;
            ``None``: :class:`isnet.models.losses.CrossEntropyLoss` (the reference's).

    Returns:
        ``{"loss", "loss_stage2", "loss_stage1", "loss_aux"}``; each term is already multiplied by its weight,
        as the reference logs them, and ``loss`` is their sum.

    Note:
        A batch without any valid pixel gives a loss of 0 (with a gradient of 0); the reference would give NaN.
    """

    def __init__(
        self,
        ignore_index: int = 255,
        stage2_weight: float = 1.0,
        stage1_weight: float = 0.4,
        aux_weight: float = 0.4,
        check_labels: bool = True,
        pixel_loss: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if pixel_loss is not None and getattr(pixel_loss, "ignore_index", ignore_index) != ignore_index:
            raise ValueError(
                f"pixel_loss ignores label {pixel_loss.ignore_index} but the loss ignores {ignore_index}"
            )
        self.ignore_index = ignore_index
        self.weights = {"stage2": stage2_weight, "stage1": stage1_weight, "aux": aux_weight}
        self.check_labels = check_labels
        self.pixel_loss = pixel_loss if pixel_loss is not None else CrossEntropyLoss(ignore_index)

    def _term(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = target != self.ignore_index
        if not bool(valid.any()):
            return logits.sum() * 0.0
        # computed in fp32: under autocast the logits may be bf16/fp16
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # fp16/bf16 -> fp32; fp64 stays
        return self.pixel_loss(logits, target)

    def forward(self, outputs: dict[str, torch.Tensor], target: torch.Tensor) -> dict[str, torch.Tensor]:
        target = target.long()  # no copy when it already is
        num_classes = outputs["stage2"].shape[1]
        if target.shape != outputs["stage2"].shape[:1] + outputs["stage2"].shape[2:]:
            raise ValueError(
                f"target shape {tuple(target.shape)} does not match logits {tuple(outputs['stage2'].shape)} "
                "(expected (N, H, W) at the logits' size)"
            )
        if self.check_labels:
            bad = (target != self.ignore_index) & ((target < 0) | (target >= num_classes))
            if bool(bad.any()):
                values = torch.unique(target[bad]).tolist()[:10]
                raise ValueError(
                    f"labels {values} are outside [0, {num_classes}) and are not the ignore value "
                    f"{self.ignore_index}; check the dataset's label mapping"
                )
        losses: dict[str, torch.Tensor] = {}
        for name, weight in self.weights.items():
            if name in outputs:
                losses[f"loss_{name}"] = weight * self._term(outputs[name], target)
        losses["loss"] = sum(losses.values())
        return losses
