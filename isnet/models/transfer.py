"""Loading a trained ISNet's weights into a network with another number of classes (fine-tuning).

The classifiers are the 1x1 convolutions that produce logits (:class:`isnet.models.layers.ClassifierConv2d`):
``head.decoder_stage1.4``, ``head.decoder_stage2.1`` (``.4`` with the LIP shortcut) and
``auxiliary_decoder.4``. When the source was trained for another number of classes, their weights and biases keep
the target network's fresh initialisation; every other tensor loads strictly, and any other missing, unexpected
or mis-shaped tensor is an error. With the same number of classes everything loads, classifiers included.
"""

from __future__ import annotations

import dataclasses
import logging

import torch
from torch import nn

from isnet.errors import CheckpointError
from isnet.models.layers import ClassifierConv2d
from isnet.utils.state_dict import mismatch_report, plain_state_dict

__all__ = ["TransferReport", "classifier_keys", "load_transfer"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TransferReport:
    """What :func:`load_transfer` did.

    Attributes:
        source: where the weights came from (a name or a path, for messages).
        source_classes: number of classes of the source's classifiers.
        num_classes: number of classes of the target network.
        loaded: state-dict keys loaded from the source, in the target's order.
        reinitialized: classifier keys that kept the target's initialisation (empty when the class counts agree).
    """

    source: str
    source_classes: int
    num_classes: int
    loaded: tuple[str, ...]
    reinitialized: tuple[str, ...]

    def summary(self) -> dict[str, object]:
        """Plain values for a model's ``meta`` or a log: source, class counts, loaded count, re-initialised keys."""
        return {
            "source": self.source,
            "source_classes": self.source_classes,
            "num_classes": self.num_classes,
            "loaded": len(self.loaded),
            "reinitialized": list(self.reinitialized),
        }

    def __str__(self) -> str:
        if not self.reinitialized:
            return f"{self.source}: loaded all {len(self.loaded)} tensors ({self.num_classes} classes)"
        return (
            f"{self.source}: loaded {len(self.loaded)} tensors; {len(self.reinitialized)} classifier tensors "
            f"re-initialised for {self.num_classes} classes (the source has {self.source_classes}): "
            + ", ".join(self.reinitialized)
        )


def classifier_keys(model: nn.Module) -> list[str]:
    """State-dict keys of the model's classifiers (every :class:`ClassifierConv2d`), in module order."""
    return [
        f"{name}.{key}"
        for name, module in model.named_modules()
        if isinstance(module, ClassifierConv2d)
        for key in module.state_dict()
    ]


def load_transfer(
    model: nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint"
) -> TransferReport:
    """Load ``state`` (in the model's own keys) into ``model``, keeping the classifiers when the class count differs.

    Args:
        model: the target network (e.g. :class:`isnet.models.ISNet` with the new ``num_classes``); its
            classifiers are left untouched when the source has another number of classes.
        state: the source's state dict in ISNet keys (``ISNet.state_dict()`` of the trained model; a ``module.``
            prefix is removed).
        source: name of the source in messages and in the report.

    Returns:
        The :class:`TransferReport` (also logged at INFO level).

    Raises:
        CheckpointError: a tensor other than a classifier's is missing, unexpected or mis-shaped, or a classifier
            differs in more than its number of classes; the message lists the keys.
    """
    state = plain_state_dict(state, source, CheckpointError)
    target = model.state_dict()
    classifiers = classifier_keys(model)
    present = [k for k in classifiers if k in state and state[k].ndim > 0]
    source_counts = {int(state[k].shape[0]) for k in present}
    if len(source_counts) > 1:
        shapes = {k: tuple(state[k].shape) for k in present}
        raise CheckpointError(f"{source}: the classifiers disagree on the number of classes: {shapes}")
    num_classes = int(target[classifiers[0]].shape[0]) if classifiers else 0
    source_classes = source_counts.pop() if source_counts else num_classes
    reinitialized = []
    if source_classes != num_classes:
        # only the class dimension may differ; a classifier that differs otherwise stays in the strict check
        reinitialized = [k for k in present if state[k].shape[1:] == target[k].shape[1:]]
    kept = set(reinitialized)
    loaded = {k: v for k, v in state.items() if k not in kept}
    report = mismatch_report(loaded, [], {k: v for k, v in target.items() if k not in kept}, source, "model")
    if report:
        raise CheckpointError(
            f"{source} does not match the network (only the classifiers may differ):\n{report}"
        )
    result = model.load_state_dict(loaded, strict=False)
    assert sorted(result.missing_keys) == sorted(kept) and not result.unexpected_keys  # checked above
    transfer = TransferReport(
        source=source,
        source_classes=source_classes,
        num_classes=num_classes,
        loaded=tuple(k for k in target if k not in kept),
        reinitialized=tuple(reinitialized),
    )
    log.info("%s", transfer)
    return transfer
