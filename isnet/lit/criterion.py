"""The loss of :class:`ISNetModule`: a pixel loss of :mod:`isnet.models.losses` from its config, in ISNetLoss.

The config (``conf/loss/*.yaml``) names the pixel loss and its arguments; the module adds ``ignore_index`` and
the stage weights (``loss_weights``). Default: :class:`isnet.models.losses.CrossEntropyLoss` without class
weights, the reference's ISNet loss.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any

from torch import nn

from isnet.errors import ConfigError
from isnet.lit.specs import as_spec, resolve_target
from isnet.models import ISNetLoss, losses

__all__ = ["DEFAULT_LOSS", "build_criterion", "loss_spec"]

#: The reference's ISNet pixel loss.
DEFAULT_LOSS: dict[str, Any] = {"_target_": "isnet.models.losses.CrossEntropyLoss", "_partial_": True}


def loss_spec(loss: Mapping[str, Any] | functools.partial | None, num_classes: int) -> dict[str, Any]:
    """The loss config as a checked plain dict (``None``: :data:`DEFAULT_LOSS`)."""
    spec = dict(DEFAULT_LOSS) if loss is None else as_spec(loss, "loss")
    spec["_target_"], cls = resolve_target(spec, "loss", losses, nn.Module)
    accepted = [p for p in inspect.signature(cls).parameters if p != "ignore_index"]
    if "ignore_index" in spec:
        raise ConfigError(
            "loss.ignore_index is the module's ignore_index (model.ignore_index); do not set it twice"
        )
    if unknown := sorted(k for k in spec if not k.startswith("_") and k not in accepted):
        raise ConfigError(f"loss.{unknown[0]} is not an argument of {spec['_target_']}; it takes {accepted}")
    weights = spec.get("class_weight")
    if weights is not None and (not isinstance(weights, list) or len(weights) != num_classes):
        raise ConfigError(
            f"loss.class_weight must be a list of num_classes={num_classes} numbers, got {weights!r}"
        )
    return spec


def build_criterion(
    spec: Mapping[str, Any], ignore_index: int, loss_weights: Mapping[str, float]
) -> ISNetLoss:
    """:class:`isnet.models.ISNetLoss` with the pixel loss of ``spec`` (:func:`loss_spec`) for every term."""
    _, cls = resolve_target(spec, "loss", losses, nn.Module)
    kwargs = {k: v for k, v in spec.items() if not k.startswith("_")}
    try:
        pixel_loss = cls(ignore_index=ignore_index, **kwargs)
    except ValueError as err:
        raise ConfigError(f"loss ({spec['_target_']}): {err}") from err
    return ISNetLoss(
        ignore_index, **{f"{k}_weight": w for k, w in loss_weights.items()}, pixel_loss=pixel_loss
    )
