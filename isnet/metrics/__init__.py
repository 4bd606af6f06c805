"""Evaluation metrics: dataset-level mIoU from a confusion matrix."""

from __future__ import annotations

from isnet.metrics.miou import SegmentationIoU, confusion_matrix, metrics_from_confusion_matrix

__all__ = ["SegmentationIoU", "confusion_matrix", "metrics_from_confusion_matrix"]
