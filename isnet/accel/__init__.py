"""Inference speed: an explicit fast copy of ISNet (:func:`optimize_for_inference`) and its CPU kernels."""

from isnet.accel.optimize import InferenceModel, StaleSnapshotError, compile_options, optimize_for_inference
from isnet.accel.winograd import WinogradConv2d

__all__ = [
    "InferenceModel",
    "StaleSnapshotError",
    "WinogradConv2d",
    "compile_options",
    "optimize_for_inference",
]
