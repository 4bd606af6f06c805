"""Dataset-level mean IoU from a global confusion matrix.

Reproduces the evaluation of sssegmentation (``ssseg/modules/datasets/pipelines/evaluation.py``,
``Evaluation.totalintersectandunion`` / ``totalareatometrics``) and, equivalently, chainercv's
``eval_semantic_segmentation``: intersection, prediction area and label area are accumulated per class over
the **whole split** (not averaged per image), ``IoU_k = I_k / U_k`` with ``U_k = P_k + L_k - I_k``, and the
mean IoU is a NaN-mean, so a class absent from both predictions and labels over the split is skipped.

All three areas are read off one ``K x K`` confusion matrix (rows: label, columns: prediction), kept as
``int64`` so the counts are exact on any split size and sum exactly across processes under DDP.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["SegmentationIoU", "confusion_matrix", "metrics_from_confusion_matrix"]


def confusion_matrix(preds: Tensor, target: Tensor, num_classes: int, ignore_index: int = 255) -> Tensor:
    """``int64`` ``(K, K)`` matrix ``M[t, p]`` = number of valid pixels labelled ``t`` and predicted ``p``.

    ``preds`` (class ids in ``[0, K)``) and ``target`` have the same shape. A pixel is valid when its label
    lies in ``[0, K)`` and is not ``ignore_index``; every other pixel is dropped with its prediction, as the
    reference does after mapping such labels to -1.
    """
    preds = preds.reshape(-1).long()
    target = target.reshape(-1).long()
    valid = (target >= 0) & (target < num_classes) & (target != ignore_index)
    # One bincount over the flattened pair index K*t+p is the cheapest exact way to fill the matrix.
    pair = target[valid] * num_classes + preds[valid]
    return torch.bincount(pair, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def metrics_from_confusion_matrix(confmat: Tensor) -> dict[str, Tensor]:
    """The reference's IoU / accuracy numbers of a ``(K, K)`` confusion matrix (rows = label), as float64:
    ``"mIoU"`` (NaN-mean of ``IoU``), ``"aAcc"`` (the reference's ``all_accuracy``), ``"IoU"`` (``(K,)``,
    NaN where the union is 0), ``"Acc"`` (``(K,)``, NaN where the label area is 0), ``"mAcc"`` (NaN-mean).
    """
    confmat = confmat.double()
    intersect, area_label, area_pred = torch.diagonal(confmat), confmat.sum(dim=1), confmat.sum(dim=0)
    # 0/0 gives NaN exactly where the reference's division gives NaN (class absent from both / from GT).
    iou = intersect / (area_pred + area_label - intersect)
    acc = intersect / area_label
    aacc = intersect.sum() / area_label.sum()
    return {"mIoU": torch.nanmean(iou), "aAcc": aacc, "IoU": iou, "Acc": acc, "mAcc": torch.nanmean(acc)}


class SegmentationIoU(Metric):
    """Mean IoU over a whole evaluation split, accumulated as a global confusion matrix.

    The state is one ``(K, K)`` int64 matrix summed across processes (``dist_reduce_fx="sum"``). Under DDP
    every image must therefore be seen by exactly one process: give the evaluation DataLoader a
    :class:`isnet.data.DistributedEvalSampler` (no padding, ranks may get uneven counts) instead of the
    padding ``DistributedSampler`` that Lightning would otherwise inject. Lightning keeps any sampler that
    subclasses ``DistributedSampler``, so ``use_distributed_sampler=True`` can stay on.

    Args:
        num_classes: Number of classes ``K``.
        ignore_index: Label value that is not evaluated (255 in this project). Labels outside ``[0, K)`` are
            ignored as well, as in the reference.
        **kwargs: Passed to :class:`torchmetrics.Metric` (e.g. ``sync_on_compute``).

    Example:
        >>> metric = SegmentationIoU(num_classes=3)
        >>> metric.update(torch.tensor([[0, 1], [2, 2]]), torch.tensor([[0, 1], [2, 255]]))
        >>> float(metric.compute()["mIoU"])
        1.0
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    confmat: Tensor

    def __init__(self, num_classes: int, ignore_index: int = 255, **kwargs) -> None:
        super().__init__(**kwargs)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.add_state(
            "confmat", default=torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum"
        )

    def update(self, preds: Tensor, target: Tensor) -> None:
        """Add one batch: ``preds`` are ``(N, H, W)`` integer class ids or ``(N, K, H, W)`` scores (argmax
        is taken), ``target`` ``(N, H, W)`` label ids (``ignore_index`` and ids outside ``[0, K)`` skipped).

        Raises:
            ValueError: the shapes do not match, ids are not integers or lie outside ``[0, K)``.
        """
        shape, ids = tuple(preds.shape), preds.ndim == target.ndim
        if not ids and preds.ndim == target.ndim + 1 and preds.shape[1:2] == (self.num_classes,):
            preds = preds.argmax(dim=1)  # scores
        if preds.shape != target.shape:
            expected = (target.shape[0], self.num_classes, *target.shape[1:]) if target.ndim else "?"
            raise ValueError(
                f"SegmentationIoU.update: preds of shape {shape} do not fit a target of shape {tuple(target.shape)}:"
                f" expected class ids of the target's shape or scores of shape {expected}"
            )
        if ids and (preds.is_floating_point() or preds.is_complex()):
            raise ValueError(
                f"SegmentationIoU.update: preds with the target's shape must be integer class ids, got dtype "
                f"{preds.dtype}; pass (N, K, H, W) scores to use argmax"
            )
        if ids and preds.numel() and (int(preds.min()) < 0 or int(preds.max()) >= self.num_classes):
            raise ValueError(
                f"SegmentationIoU.update: predicted class ids must lie in [0, {self.num_classes}), got values in "
                f"[{int(preds.min())}, {int(preds.max())}]"
            )
        if target.is_floating_point():
            raise ValueError(f"SegmentationIoU.update: target must hold integer labels, got {target.dtype}")
        self.confmat += confusion_matrix(preds, target, self.num_classes, self.ignore_index)

    def compute(self) -> dict[str, Tensor]:
        """Metrics over everything seen since the last reset (:func:`metrics_from_confusion_matrix`)."""
        return metrics_from_confusion_matrix(self.confmat)
