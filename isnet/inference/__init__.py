"""Test-time inference: whole image, sliding window, multi-scale + flip, per-experiment settings."""

from __future__ import annotations

from isnet.inference.auto import (
    DEFAULT_MAX_PIXELS,
    auto_inference,
    choose_inference_mode,
    estimate_whole_inference_bytes,
    max_pixels_for_budget,
    peak_memory,
    reset_peak_memory,
)
from isnet.inference.tta import ms_flip_inference, run_inference
from isnet.inference.window import PredictFn, slide_inference, slide_windows, whole_inference
from isnet.meta.recipes import SINGLE_SCALE, InferenceConfig, test_settings  # home: isnet.meta

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "SINGLE_SCALE",
    "InferenceConfig",
    "PredictFn",
    "auto_inference",
    "choose_inference_mode",
    "estimate_whole_inference_bytes",
    "max_pixels_for_budget",
    "ms_flip_inference",
    "peak_memory",
    "reset_peak_memory",
    "run_inference",
    "slide_inference",
    "slide_windows",
    "test_settings",
    "whole_inference",
]
