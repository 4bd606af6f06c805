"""Per-experiment test-time settings of the ISNet model zoo.

Reproduces the ``SEGMENTOR_CFG['inference']`` blocks of ``ssseg/configs/isnet/isnet_*.py``: every config
evaluates single-scale by default (the ``_base_/segmentors/isnet.py`` block: whole image, scale 1, no flip,
logits averaged), and carries a commented multi-scale + flip block that produced the second mIoU column of
the model zoo. Those blocks were tuned per checkpoint, hence the exceptions (portrait windows and logits for
Cityscapes R-101, probabilities for COCO-Stuff S-101, flip only for LIP).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["EXPERIMENTS", "SINGLE_SCALE", "TEST_SETTINGS", "InferenceConfig", "test_settings"]

_MODES = ("whole", "slide")


def _optional_pair(name: str, value: int | Sequence[int] | None) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    try:
        pair = tuple(value)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
        raise ValueError(
            f"InferenceConfig.{name} must be None or a pair (h, w) of positive ints, got {value!r}"
        )
    return pair  # type: ignore[return-value]


@dataclass(frozen=True)
class InferenceConfig:
    """How to turn an image into class scores at test time.

    Hydra can build it from ``conf/inference/*.yaml`` (lists are turned into tuples).

    Args:
        mode: ``"whole"`` (one forward on the full image) or ``"slide"`` (sliding windows).
        scales: Test scales applied to the (already test-resized) image; ``(1.0,)`` is single-scale.
        flip: Also run on the horizontally flipped image and average.
        crop_size: Window ``(h, w)``; required for ``"slide"``.
        stride: Window stride ``(h, w)``; required for ``"slide"``.
        use_probs: Average soft-max probabilities (taken before any resize) instead of raw logits
            (the reference's ``use_probs_before_resize``).
        window_batch: Equally sized slide windows per network call (speed only).
    """

    mode: str = "whole"
    scales: tuple[float, ...] = field(default=(1.0,))
    flip: bool = False
    crop_size: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    use_probs: bool = False
    window_batch: int = 1

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(f"InferenceConfig.mode must be one of {list(_MODES)}, got {self.mode!r}")
        try:
            scales = tuple(float(s) for s in self.scales)
        except (TypeError, ValueError):
            scales = ()
        if not scales or not all(s > 0 for s in scales):
            raise ValueError(
                f"InferenceConfig.scales must be a non-empty list of positive numbers, got {self.scales!r}"
            )
        crop_size = _optional_pair("crop_size", self.crop_size)
        stride = _optional_pair("stride", self.stride)
        if self.mode == "slide" and (crop_size is None or stride is None):
            raise ValueError(
                f"InferenceConfig with mode='slide' needs crop_size and stride, got crop_size={self.crop_size!r}, "
                f"stride={self.stride!r}"
            )
        if (
            isinstance(self.window_batch, bool)
            or not isinstance(self.window_batch, int)
            or self.window_batch < 1
        ):
            raise ValueError(
                f"InferenceConfig.window_batch must be a positive int, got {self.window_batch!r}"
            )
        object.__setattr__(self, "scales", scales)
        object.__setattr__(self, "crop_size", crop_size)
        object.__setattr__(self, "stride", stride)
        object.__setattr__(self, "flip", bool(self.flip))
        object.__setattr__(self, "use_probs", bool(self.use_probs))


# _base_/segmentors/isnet.py: whole, multiscale [1], no flip, use_probs_before_resize False. Also used for
# validation during training.
SINGLE_SCALE = InferenceConfig(mode="whole", scales=(1.0,), flip=False, use_probs=False)

_SCALES_6 = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
_SCALES_5 = (0.5, 0.75, 1.0, 1.25, 1.5)

# Multi-scale + flip blocks, one per config file isnet_{resnet50,resnet101,resnest101}os8_<dataset>.py.
TEST_SETTINGS: dict[str, InferenceConfig] = {
    # ADE20k: whole, 6 scales, flip, probabilities (all three backbones).
    **{
        f"isnet_{b}_d8_ade20k": InferenceConfig(mode="whole", scales=_SCALES_6, flip=True, use_probs=True)
        for b in ("r50", "r101", "s101")
    },
    # COCO-Stuff-10k: whole, 5 scales, flip; logits for, probabilities for S-101.
    "isnet_r50_d8_cocostuff10k": InferenceConfig(mode="whole", scales=_SCALES_5, flip=True, use_probs=False),
    "isnet_r101_d8_cocostuff10k": InferenceConfig(mode="whole", scales=_SCALES_5, flip=True, use_probs=False),
    "isnet_s101_d8_cocostuff10k": InferenceConfig(mode="whole", scales=_SCALES_5, flip=True, use_probs=True),
    # Cityscapes: slide, stride 341, 6 scales, flip; landscape windows + probabilities for R-50/S-101,
    # portrait windows (1024, 512) + logits for R-101 (isnet_resnet101os8_cityscapes.py).
    "isnet_r50_d8_cityscapes": InferenceConfig(
        mode="slide", scales=_SCALES_6, flip=True, crop_size=(512, 1024), stride=(341, 341), use_probs=True
    ),
    "isnet_r101_d8_cityscapes": InferenceConfig(
        mode="slide", scales=_SCALES_6, flip=True, crop_size=(1024, 512), stride=(341, 341), use_probs=False
    ),
    "isnet_s101_d8_cityscapes": InferenceConfig(
        mode="slide", scales=_SCALES_6, flip=True, crop_size=(512, 1024), stride=(341, 341), use_probs=True
    ),
    # LIP: single scale with flip (left/right part channels swapped), logits (all three backbones).
    **{
        f"isnet_{b}_d8_lip": InferenceConfig(mode="whole", scales=(1.0,), flip=True, use_probs=False)
        for b in ("r50", "r101", "s101")
    },
}

EXPERIMENTS: tuple[str, ...] = tuple(sorted(TEST_SETTINGS))


def test_settings(experiment: str, ms_flip: bool) -> InferenceConfig:
    """Test-time settings of one model-zoo experiment.

    Args:
        experiment: ``isnet_{r50,r101,s101}_d8_{ade20k,cocostuff10k,cityscapes,lip}``.
        ms_flip: ``True`` for the multi-scale + flip setting (LIP: flip only), ``False`` for the
            single-scale default.

    Returns:
        The matching :class:`InferenceConfig`.

    Raises:
        ValueError: If ``experiment`` is not one of the twelve names.
    """
    if experiment not in TEST_SETTINGS:
        raise ValueError(f"Unknown experiment {experiment!r}; valid names: {', '.join(EXPERIMENTS)}")
    return TEST_SETTINGS[experiment] if ms_flip else SINGLE_SCALE


# Keep pytest from collecting this function when a test module imports it by name.
test_settings.__test__ = False  # type: ignore[attr-defined]
