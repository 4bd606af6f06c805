"""Load checkpoints released by sssegmentation (``{'model': state_dict, 'optimizer': ..., ...}``).

Key mapping (reference -> isnet), one rule per component, each key matched by exactly one rule:

* backbone: ``backbone_net.stem.{0,1,3,4,6}`` -> ``backbone.conv1.{0,1,3,4,6}``; ``backbone_net.stem.7`` ->
  ``backbone.bn1``; ``backbone_net.layerN.*`` -> ``backbone.layerN.*`` (timm uses the same block names);
* head: ``bottleneck``, ``ilc_net``, ``slc_net``, ``decoder_stage{1,2}``, ``shortcut`` -> ``head.<same>``;
* auxiliary head: ``auxiliary_decoder.*`` unchanged.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from isnet.errors import CheckpointError
from isnet.meta.recipes import recipe
from isnet.models import ISNet
from isnet.utils.io import safe_torch_load
from isnet.utils.state_dict import mismatch_report, plain_state_dict

__all__ = ["KEY_RULES", "ConversionError", "from_sssegmentation", "infer_config", "sssegmentation_to_isnet"]


class ConversionError(CheckpointError):
    """The checkpoint does not map onto ISNet; the message lists the offending keys."""


#: (reference regex, isnet replacement); every reference key must match exactly one rule.
KEY_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^backbone_net\.stem\.([01346])\.(.+)$"), r"backbone.conv1.\1.\2"),
    (re.compile(r"^backbone_net\.stem\.7\.(.+)$"), r"backbone.bn1.\1"),
    (re.compile(r"^backbone_net\.(layer[1-4]\..+)$"), r"backbone.\1"),
    (
        re.compile(r"^((?:bottleneck|ilc_net|slc_net|decoder_stage1|decoder_stage2|shortcut)\..+)$"),
        r"head.\1",
    ),
    (re.compile(r"^(auxiliary_decoder\..+)$"), r"\1"),
]


def _unwrap(checkpoint: Any, source: str) -> dict[str, torch.Tensor]:
    """Take the state dict out of a released file, a bare state dict, or a DDP (``module.``) state dict."""
    if not isinstance(checkpoint, dict):
        raise ConversionError(
            f"{source}: expected a state dict or {{'model': state_dict}}, got {type(checkpoint).__name__}"
        )
    state = checkpoint.get("model", checkpoint)
    if not isinstance(state, dict) or not state:
        raise ConversionError(f"{source}: 'model' holds no state dict")
    return plain_state_dict(state, source, ConversionError)


def infer_config(state: dict[str, torch.Tensor], source: str = "state dict") -> dict[str, Any]:
    """Infer ISNet constructor arguments from reference tensors.

    Backbone from the block structure (ResNeSt split-attention keys, number of layer3 blocks), classes from the
    stage-2 classifier, the LIP variant from the presence of the ``shortcut`` branch.
    """
    layer3_blocks = {int(m[1]) for k in state if (m := re.match(r"^backbone_net\.layer3\.(\d+)\.", k))}
    is_resnest = any(".conv2.fc1." in k for k in state)
    depth = {6: 50, 23: 101}.get(len(layer3_blocks))
    if depth is None or (is_resnest and depth != 101):
        raise ConversionError(
            f"{source}: cannot identify the backbone (layer3 has {len(layer3_blocks)} blocks, "
            f"ResNeSt keys: {is_resnest}); supported: ResNet-50/101 v1c and ResNeSt-101 at output stride 8"
        )
    shortcut = any(k.startswith("shortcut.") for k in state)
    classifier = "decoder_stage2.4.weight" if shortcut else "decoder_stage2.1.weight"
    for key in (classifier, "bottleneck.0.weight", "ilc_net.correlate_net.query_project.0.0.weight"):
        if key not in state:
            raise ConversionError(f"{source}: missing key {key!r}: not an ISNet checkpoint of sssegmentation")
    return dict(
        backbone=f"{'resnest' if is_resnest else 'resnet'}{depth}_d8",
        num_classes=int(state[classifier].shape[0]),
        feats_channels=int(state["bottleneck.0.weight"].shape[0]),
        transform_channels=int(state["ilc_net.correlate_net.query_project.0.0.weight"].shape[0]),
        shortcut=shortcut,
        # the LIP configs (the only ones with the shortcut) use LeakyReLU in the head; not visible in tensors
        act="leaky_relu" if shortcut else "relu",
        aux=any(k.startswith("auxiliary_decoder.") for k in state),
    )


def sssegmentation_to_isnet(
    state: dict[str, torch.Tensor], target: dict[str, torch.Tensor], source: str = "state dict"
) -> dict[str, torch.Tensor]:
    """Rename reference keys onto ``target``'s and check that the two sets and all shapes agree exactly.

    Raises:
        ConversionError: listing unmapped, missing, unexpected and mis-shaped keys.
    """
    # the rules do not overlap (tests/unit/test_convert.py checks that every key matches exactly one)
    renamed = {
        key: next((rule.sub(repl, key) for rule, repl in KEY_RULES if rule.match(key)), None) for key in state
    }
    converted = {new: state[key] for key, new in renamed.items() if new is not None}
    unmapped = [key for key, new in renamed.items() if new is None]
    report = mismatch_report(converted, unmapped, target)
    if report:
        raise ConversionError(f"{source} does not match ISNet:\n{report}")
    return converted


def from_sssegmentation(
    checkpoint: str | os.PathLike | dict[str, Any], act: str | None = None, **overrides: Any
) -> ISNet:
    """Build ISNet from a released sssegmentation checkpoint and load it strictly.

    Args:
        checkpoint: path to a ``.pth`` (read with ``weights_only=True``: nothing in it is executed), a released
            dict ``{'model': state_dict, ...}`` or a bare state dict (a ``module.`` prefix is removed).
        act: head activation override; inferred as ``leaky_relu`` for the LIP variant, else ``relu``.
        **overrides: further ISNet arguments (e.g. ``dropout``) that tensors cannot tell.

    Returns:
        The model in eval mode. If the file name is one of the 12 released names, the model carries its dataset's
        ``class_names`` and ``palette`` and ``meta["recipe"]`` (the inferred settings are checked against it).

    Raises:
        ConversionError: the tensors do not map exactly onto ISNet (lists the keys).
        CheckpointError: the file is missing, unreadable or unsafe to unpickle.
    """
    source = str(checkpoint) if isinstance(checkpoint, str | os.PathLike) else "state dict"
    raw = safe_torch_load(checkpoint) if isinstance(checkpoint, str | os.PathLike) else checkpoint
    state = _unwrap(raw, source)
    config = infer_config(state, source)
    config.update(overrides, **({} if act is None else {"act": act}))
    try:  # a released file name: check against its recipe and carry its classes
        entry = recipe(Path(source).name) if source != "state dict" else None
    except KeyError:
        entry = None
    if entry is not None:
        if (entry.backbone, entry.num_classes) != (config["backbone"], config["num_classes"]):
            raise ConversionError(
                f"{source} is named like the released {entry.release_name} ({entry.backbone}, "
                f"{entry.num_classes} classes) but holds {config['backbone']} with {config['num_classes']} classes"
            )
        config = {**entry.model_kwargs(), **config}
    model = ISNet(**config)
    converted = sssegmentation_to_isnet(state, model.state_dict(), source)
    model.load_state_dict(converted, strict=True)
    return model.eval()
