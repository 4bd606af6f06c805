"""Facts of the package, importable with the standard library only: datasets (:mod:`.datasets`) and the 12
model-zoo recipes (:mod:`.recipes`). Nothing here imports torch, Lightning, albumentations or OpenCV."""

from isnet.meta.datasets import (
    DATASETS,
    IGNORE_INDEX,
    IMAGENET_MEAN_255,
    IMAGENET_STD_255,
    DatasetInfo,
    dataset_info,
    default_palette,
)
from isnet.meta.recipes import RECIPES, SINGLE_SCALE, InferenceConfig, Recipe, recipe, test_settings

__all__ = [
    "DATASETS",
    "IGNORE_INDEX",
    "IMAGENET_MEAN_255",
    "IMAGENET_STD_255",
    "RECIPES",
    "SINGLE_SCALE",
    "DatasetInfo",
    "InferenceConfig",
    "Recipe",
    "dataset_info",
    "default_palette",
    "recipe",
    "test_settings",
]
