"""Lightning glue: the training/evaluation module, its poly schedule and callbacks."""

from isnet.lit.callbacks import EMAWeights, EpochSeed, MetricsHistory, PredictionOverlays
from isnet.lit.module import ISNetModule
from isnet.lit.schedule import PolyLR, poly_lr, steps_per_epoch

__all__ = [
    "EMAWeights",
    "EpochSeed",
    "ISNetModule",
    "MetricsHistory",
    "PolyLR",
    "PredictionOverlays",
    "poly_lr",
    "steps_per_epoch",
]
