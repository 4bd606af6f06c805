"""The 12 ISNet model-zoo recipes (sssegmentation ``configs/isnet/isnet_*.py``) and their test-time settings.

Each :class:`Recipe` is one released checkpoint: the training setting (backbone, dataset, crop, LR, global batch,
epochs, weight decay, min LR), the released file, the published mIoU (single scale, and multi-scale + flip; LIP:
flip only) and the two :class:`InferenceConfig` of that checkpoint. Every reference config evaluates
single-scale by default (``_base_/segmentors/isnet.py``: whole image, scale 1, no flip, logits), and carries a
commented multi-scale + flip block that produced the second mIoU column; those blocks were tuned per checkpoint,
hence the exceptions (portrait windows and logits for Cityscapes R-101, probabilities for COCO-Stuff S-101, flip
only for LIP). The zoo tables of README.md and docs/model_zoo.md are generated from here::

    python -m isnet.meta --markdown readme   # or: docs
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from isnet.meta.datasets import dataset_info

__all__ = ["CITATION", "LICENSE", "PARITY_ATOL", "RECIPES", "RELEASE_URL", "SINGLE_SCALE", "InferenceConfig", "Recipe",
           "markdown_table", "recipe", "test_settings"]  # fmt: skip

RELEASE_URL = "https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_isnet/{name}.pth"
#: license of the reference implementation and its released weights (SPDX id, lower case as the Hub spells it)
LICENSE = "apache-2.0"
#: max abs difference allowed between our plain fp32 eval logits and the reference's (tests/parity, docs/parity.md)
PARITY_ATOL = 1e-4
#: the paper, as README.md cites it (a test compares)
CITATION = """\
@inproceedings{jin2021isnet,
  title={ISNet: Integrate Image-Level and Semantic-Level Context for Semantic Segmentation},
  author={Jin, Zhenchao and Liu, Bin and Chu, Qi and Yu, Nenghai},
  booktitle={Proceedings of the IEEE/CVF International Conference on Computer Vision},
  pages={7189--7198},
  year={2021}
}
"""
_MODES = ("whole", "slide")


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _optional_pair(name: str, value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    pair = tuple(value) if isinstance(value, Sequence) else (value, value)
    if len(pair) != 2 or not all(map(_is_count, pair)):
        raise ValueError(
            f"InferenceConfig.{name} must be None or a pair (h, w) of positive ints, got {value!r}"
        )
    return pair  # type: ignore[return-value]


@dataclass(frozen=True)
class InferenceConfig:
    """How to turn an image into class scores at test time.

    Hydra builds it from ``model.inference`` (lists are turned into tuples).

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
        try:
            scales = tuple(float(v) for v in self.scales)
        except (TypeError, ValueError):
            scales = ()
        rules = {
            "mode": (self.mode in _MODES, f"one of {list(_MODES)}"),
            "scales": (scales and min(scales) > 0, "a non-empty list of positive numbers"),
            "window_batch": (_is_count(self.window_batch), "a positive int"),
        }
        for name, (ok, what) in rules.items():
            if not ok:
                raise ValueError(f"InferenceConfig.{name} must be {what}, got {getattr(self, name)!r}")
        crop_size, stride = _optional_pair("crop_size", self.crop_size), _optional_pair("stride", self.stride)
        if self.mode == "slide" and (crop_size is None or stride is None):
            raise ValueError(
                f"InferenceConfig with mode='slide' needs crop_size and stride, got {crop_size}, {stride}"
            )
        for name, value in (("scales", scales), ("crop_size", crop_size), ("stride", stride),
                            ("flip", bool(self.flip)), ("use_probs", bool(self.use_probs))):  # fmt: skip
            object.__setattr__(self, name, value)


#: ``_base_/segmentors/isnet.py``: whole image, scale 1, no flip, logits. Also used for validation in training.
SINGLE_SCALE = InferenceConfig()

_SCALES_6 = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
_SCALES_5 = (0.5, 0.75, 1.0, 1.25, 1.5)
# ADE20k: whole, 6 scales, flip, probabilities (all three backbones).
_ADE_MS = InferenceConfig(scales=_SCALES_6, flip=True, use_probs=True)
# COCO-Stuff-10k: whole, 5 scales, flip; logits for, probabilities for S-101.
_COCO_MS = InferenceConfig(scales=_SCALES_5, flip=True)
# Cityscapes: slide, stride 341, 6 scales, flip; landscape windows + probabilities for R-50/S-101, portrait
# windows (1024, 512) + logits for R-101 (isnet_resnet101os8_cityscapes.py).
_CS_MS = InferenceConfig("slide", _SCALES_6, True, crop_size=(512, 1024), stride=(341, 341), use_probs=True)
# LIP: single scale with flip (left/right part channels swapped), logits (all three backbones).
_LIP_MS = InferenceConfig(flip=True)

_BACKBONES = {
    "r50": ("resnet50", "R-50-D8"),
    "r101": ("resnet101", "R-101-D8"),
    "s101": ("resnest101", "S-101-D8"),
}


@dataclass(frozen=True)
class Recipe:
    """One released checkpoint and the setting it was trained and evaluated with."""

    short: str  # r50 | r101 | s101
    dataset: str
    lr: float
    batch_size: int  # GLOBAL batch (8 GPUs in the reference)
    epochs: int
    weight_decay: float
    min_lr: float
    miou: float  # published, single scale
    miou_ms_flip: float  # published, multi-scale + flip (LIP: flip only)
    params_m: float  # inference parameters (millions), scripts/model_info.py
    gflops: float  # one image at the crop size, inference path, scripts/model_info.py
    ms_flip: InferenceConfig
    single_scale: InferenceConfig = SINGLE_SCALE

    @property
    def experiment(self) -> str:
        """Experiment name, ``conf/experiment/<name>.yaml`` (``isnet_r50_d8_ade20k``)."""
        return f"isnet_{self.short}_d8_{self.dataset}"

    @property
    def backbone(self) -> str:
        return f"{_BACKBONES[self.short][0]}_d8"

    @property
    def backbone_title(self) -> str:
        return _BACKBONES[self.short][1]

    @property
    def release_name(self) -> str:
        """File stem of the released ``.pth``."""
        return f"isnet_{_BACKBONES[self.short][0]}os8_{self.dataset}"

    @property
    def url(self) -> str:
        return RELEASE_URL.format(name=self.release_name)

    @property
    def num_classes(self) -> int:
        return dataset_info(self.dataset).num_classes

    @property
    def crop_size(self) -> tuple[int, int]:
        return dataset_info(self.dataset).train_pipeline["crop_size"]

    @property
    def lip_variant(self) -> bool:
        """LIP variant: layer1 shortcut, LeakyReLU head, logits at 1/4."""
        return self.dataset == "lip"

    def model_kwargs(self) -> dict[str, Any]:
        """``isnet.models.ISNet`` arguments of this recipe's network (no weights)."""
        info = dataset_info(self.dataset)
        return dict(backbone=self.backbone, num_classes=info.num_classes, shortcut=self.lip_variant,
                    act="leaky_relu" if self.lip_variant else "relu", class_names=list(info.class_names),
                    palette=[list(c) for c in info.palette], meta={"recipe": self.experiment})  # fmt: skip


_R = Recipe
#: experiment name -> recipe, in the model zoo's order. Columns: backbone, dataset, lr, global batch, epochs,
#: weight decay, min_lr, mIoU, mIoU ms+flip, params (M), GFLOPs, ms+flip inference.
RECIPES: dict[str, Recipe] = {r.experiment: r for r in (
    _R("r50", "cocostuff10k", 0.001, 16, 110, 1e-4, 1e-5, 38.06, 40.16, 44.43, 408.1, _COCO_MS),
    _R("r101", "cocostuff10k", 0.001, 16, 110, 1e-4, 1e-5, 40.53, 41.60, 63.43, 563.3, _COCO_MS),
    _R("s101", "cocostuff10k", 0.001, 32, 150, 1e-4, 1e-4, 41.55, 42.08, 67.13, 578.6,
       InferenceConfig(scales=_SCALES_5, flip=True, use_probs=True)),
    _R("r50", "ade20k", 0.01, 16, 130, 5e-4, 1e-4, 44.22, 45.04, 44.40, 407.7, _ADE_MS),
    _R("r101", "ade20k", 0.01, 16, 130, 5e-4, 1e-4, 45.92, 47.31, 63.39, 562.9, _ADE_MS),
    _R("s101", "ade20k", 0.004, 16, 180, 5e-4, 1e-4, 46.65, 47.55, 67.10, 578.2, _ADE_MS),
    _R("r50", "cityscapes", 0.01, 16, 440, 5e-4, 1e-4, 79.32, 80.88, 44.27, 880.9, _CS_MS),
    _R("r101", "cityscapes", 0.01, 16, 440, 5e-4, 1e-4, 80.56, 81.98, 63.26, 1191.2,
       InferenceConfig("slide", _SCALES_6, True, crop_size=(1024, 512), stride=(341, 341))),
    _R("s101", "cityscapes", 0.01, 16, 440, 5e-4, 1e-4, 78.78, 81.30, 66.97, 1221.8, _CS_MS),
    _R("r50", "lip", 0.01, 32, 150, 5e-4, 1e-4, 53.14, 53.41, 44.57, 361.8, _LIP_MS),
    _R("r101", "lip", 0.01, 32, 150, 5e-4, 1e-4, 54.96, 55.41, 63.56, 498.1, _LIP_MS),
    _R("s101", "lip", 0.007, 40, 150, 5e-4, 7e-5, 56.52, 56.81, 67.27, 511.2, _LIP_MS),
)}  # fmt: skip


def recipe(name: str) -> Recipe:
    """The recipe of an experiment name or released file name (``.pth`` and the older ``_train`` optional).

    Raises:
        KeyError: unknown name; the message lists the valid ones.
    """
    stem = name.rsplit("/", 1)[-1].removesuffix(".pth").removesuffix("_train")
    for entry in RECIPES.values():
        if stem in (entry.experiment, entry.release_name):
            return entry
    raise KeyError(
        f"unknown model-zoo name {name!r}; choose an experiment name {sorted(RECIPES)} "
        f"or a released file name {sorted(r.release_name for r in RECIPES.values())}"
    )


def test_settings(experiment: str, ms_flip: bool) -> InferenceConfig:
    """Test-time inference of a model-zoo checkpoint: multi-scale + flip (LIP: flip only) or single scale.

    Raises:
        ValueError: ``experiment`` is not one of the 12 names.
    """
    if experiment not in RECIPES:
        raise ValueError(f"Unknown experiment {experiment!r}; valid names: {', '.join(sorted(RECIPES))}")
    return RECIPES[experiment].ms_flip if ms_flip else RECIPES[experiment].single_scale


# Keep pytest from collecting this function when a test module imports it by name.
test_settings.__test__ = False  # type: ignore[attr-defined]


def markdown_table(kind: str = "readme") -> str:
    """The model-zoo table of README.md (``readme``) or docs/model_zoo.md (``docs``), one line per recipe."""
    docs = kind == "docs"
    head = ["Experiment config", "Backbone", "Dataset (eval split)", "Crop", "LR / policy / BS / epochs"]
    head += (
        ["mIoU", "mIoU ms+flip", "Params (M)", "GFLOPs", "Download"]
        if docs
        else ["mIoU / ms+flip", "Released file"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in RECIPES.values():
        info = dataset_info(r.dataset)
        row = [f"`{r.experiment}`", r.backbone_title, f"{info.title} ({info.eval_split})", "x".join(map(str, r.crop_size)),
               f"{r.lr:g} / poly / {r.batch_size} / {r.epochs}"]  # fmt: skip
        if docs:
            row += [f"{r.miou:.2f}", f"{r.miou_ms_flip:.2f}", f"{r.params_m:.2f}", f"{r.gflops:.1f}",
                    f"[{r.release_name}.pth]({r.url})"]  # fmt: skip
        else:
            row += [f"{r.miou:.2f} / {r.miou_ms_flip:.2f}", f"`{r.release_name}`"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
