"""Test-time inference: whole image, sliding window, multi-scale + flip, per-experiment settings."""

from __future__ import annotations

from isnet.inference.settings import EXPERIMENTS, SINGLE_SCALE, TEST_SETTINGS, InferenceConfig, test_settings
from isnet.inference.tta import ms_flip_inference, run_inference
from isnet.inference.window import PredictFn, slide_inference, slide_windows, whole_inference

__all__ = [
    "EXPERIMENTS",
    "SINGLE_SCALE",
    "TEST_SETTINGS",
    "InferenceConfig",
    "PredictFn",
    "ms_flip_inference",
    "run_inference",
    "slide_inference",
    "slide_windows",
    "test_settings",
    "whole_inference",
]
