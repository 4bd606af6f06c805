"""Evaluation metrics: dataset-level mIoU and a non-padding distributed evaluation sampler."""

from __future__ import annotations

from isnet.metrics.miou import SegmentationIoU, confusion_matrix, metrics_from_confusion_matrix
from isnet.metrics.sampler import DistributedEvalSampler

__all__ = ["DistributedEvalSampler", "SegmentationIoU", "confusion_matrix", "metrics_from_confusion_matrix"]
