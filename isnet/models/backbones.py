"""Dilated (output stride 8) backbones built with timm.

The model-zoo backbones are the ones sssegmentation builds for ISNet (``backbones/{resnet,resnest}.py``):
``resnet50_d8`` / ``resnet101_d8`` are ResNet "v1c" (deep 3x3 stem 32-32-64, strided 1x1 shortcut; timm
``resnet50c`` / ``resnet101c``), ``resnest101_d8`` is ResNeSt-101 (deep stem 64-64-128, ``avg_down``, radix 2;
timm ``resnest101e``).

timm's ``output_stride=8`` already dilates layer3/layer4 by 2/4 with the first block of each dilated stage
keeping the previous dilation (mmseg/sssegmentation ``contract_dilation=True``). Any other timm model that
supports ``features_only`` and ``output_stride`` can be used by its timm name (e.g. ``resnet18d``, or
``convnext_tiny``, whose last two stages timm dilates the same way); the last four feature maps feed the head.
A plain ViT (timm ``vision_transformer``, e.g. ``vit_small_patch16_224``) cannot be dilated: its intermediate
tokens are resampled to strides 4/8/8/8 by :class:`isnet.models.necks.ViTFeaturePyramid`.
"""

from __future__ import annotations

import re

import timm
from timm.models import is_model_in_modules
from timm.models._features import FeatureGetterNet
from torch import nn

from isnet.models.necks import ViTFeaturePyramid, vit_block_indices
from isnet.models.pretrained import PretrainedSpec, load_pretrained, resolve_pretrained

__all__ = ["SEED_BACKBONES", "build_backbone", "parse_backbone_name", "patch_dilated_avg_down"]

#: Our names of the reference backbones -> (timm architecture, default ImageNet tag in timm).
SEED_BACKBONES: dict[str, tuple[str, str]] = {
    "resnet50": ("resnet50c", "resnet50c.gluon_in1k"),
    "resnet101": ("resnet101c", "resnet101c.gluon_in1k"),
    "resnest101": ("resnest101e", "resnest101e.in1k"),
}

_SUFFIX = re.compile(r"^(?P<arch>.+)_d(?P<os>8|16|32)$")


def parse_backbone_name(name: str) -> tuple[str, int, bool]:
    """Split a backbone name into (timm architecture, output stride, is_reference_backbone).

    ``resnet50_d8`` -> (``resnet50c``, 8, True); ``resnet18d`` -> (``resnet18d``, 8, False);
    ``resnet18d_d16`` -> (``resnet18d``, 16, False).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"backbone must be a non-empty string, got {name!r}")
    match = _SUFFIX.match(name)
    arch, output_stride = (match["arch"], int(match["os"])) if match else (name, 8)
    if arch in SEED_BACKBONES:
        return SEED_BACKBONES[arch][0], output_stride, True
    return arch, output_stride, False


def patch_dilated_avg_down(model: nn.Module) -> int:
    """Replace the stride-1 average pool that timm puts in front of dilated ``avg_down`` shortcuts.

    Why: for a stage with stride 1 (dilated), timm's ``downsample_avg`` inserts ``AvgPool2dSame(2, stride=1)``,
    which blurs the shortcut. The reference ResNeSt uses ``AvgPool2d(kernel=stride, stride=stride)``, i.e. an
    identity for stride 1 (sssegmentation ``resnest.py``). Without this patch layer3/layer4 outputs differ
    (max abs diff 0.75 / 3.1 on random weights); with it they are equal.

    Returns:
        The number of pools replaced.
    """
    replaced = 0
    for stage_name in ("layer1", "layer2", "layer3", "layer4"):
        stage = getattr(model, stage_name, None)
        if stage is None:
            continue
        for block in stage:
            downsample = getattr(block, "downsample", None)
            if not isinstance(downsample, nn.Sequential) or len(downsample) == 0:
                continue
            pool = downsample[0]
            if "AvgPool" in type(pool).__name__:
                stride = pool.stride if isinstance(pool.stride, int) else max(pool.stride)
                if stride == 1:
                    downsample[0] = nn.Identity()
                    replaced += 1
    return replaced


def build_backbone(
    name: str = "resnet50_d8",
    pretrained: bool | str = False,
    out_indices: tuple[int, ...] = (-4, -3, -2, -1),
    levels: tuple[int, ...] = (0, 1, 2, 3),
) -> nn.Module:
    """Build a timm feature extractor returning the four stage features.

    Args:
        name: ``resnet50_d8``, ``resnet101_d8``, ``resnest101_d8`` (the reference backbones), any of them with
            ``_d16``, or any timm model name supporting ``features_only`` and ``output_stride`` (optionally with
            a ``_d8``/``_d16`` suffix).
        pretrained: ``False`` (random init, no download), ``True`` (timm's ImageNet tag, e.g.
            ``resnet50c.gluon_in1k``), ``"openmmlab"`` (the reference's ImageNet checkpoint), a timm tag, a URL
            or a local file, loaded strictly; see :func:`isnet.models.pretrained.resolve_pretrained`.
        out_indices: timm feature indices of a CNN; the last four by default (layer1..layer4 of a ResNet,
            the four stages of a ConvNeXt). A ViT always gives four evenly spaced blocks.
        levels: which of the four maps the caller reads. A CNN computes every stage anyway; a ViT's pyramid
            builds only these (the others are ``None``), so no parameter is left without a gradient.

    Returns:
        A ``timm`` ``FeatureListNet`` (a ViT: a :class:`ViTFeaturePyramid`); ``model(x)`` returns a list of 4
        tensors and ``model.feature_info.channels()`` / ``.reduction()`` describe them.
    """
    arch, output_stride, is_reference = parse_backbone_name(name)
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output stride must be 8, 16 or 32, got {output_stride} (backbone={name!r})")
    known = set(timm.list_models()) | set(timm.list_pretrained())
    # the reference backbones default to their ImageNet tag; other timm names to timm's default tag
    default_tag = next((tag for timm_arch, tag in SEED_BACKBONES.values() if timm_arch == arch), arch)
    spec = resolve_pretrained(name, arch, pretrained, default_tag=default_tag)
    model_name, use_timm_weights = spec.timm_name, spec.timm_weights
    if arch not in known:
        close = [m for m in timm.list_models(f"*{arch.split('_')[0][:6]}*")][:8]
        raise ValueError(
            f"unknown backbone {name!r}: not a reference backbone ({', '.join(f'{k}_d8' for k in SEED_BACKBONES)}) "
            f"nor a timm model. Similar timm names: {close}"
        )
    if is_model_in_modules(arch, ["vision_transformer"]):
        return _build_vit(name, output_stride, spec, levels)
    try:
        model = timm.create_model(
            model_name,
            pretrained=use_timm_weights,
            features_only=True,
            output_stride=output_stride,
            out_indices=out_indices,
        )
    except (RuntimeError, TypeError, AssertionError) as err:
        raise ValueError(
            f"timm model {arch!r} cannot be built with features_only=True, output_stride={output_stride}: {err}"
        ) from err
    if model.feature_info.reduction()[-1] != output_stride:
        raise ValueError(f"timm model {arch!r} ignored output_stride={output_stride}: its feature strides are "
                         f"{model.feature_info.reduction()}")  # fmt: skip
    if is_reference:
        patch_dilated_avg_down(model)
    # files and URLs load after the (avg_down-patched) model exists: strict, classifier dropped
    load_pretrained(model, spec)
    return model


def _build_vit(name: str, output_stride: int, spec: PretrainedSpec, levels: tuple[int, ...]) -> nn.Module:
    """A timm ViT's tokens of four evenly spaced blocks, resampled to strides 4/8/8/8 (any input size: the
    position embedding is interpolated and the image padded to a multiple of the patch size)."""
    if output_stride != 8:
        raise ValueError(f"backbone {name!r}: a ViT gives output stride 8 through its feature pyramid only")
    vit = timm.create_model(
        spec.timm_name, pretrained=spec.timm_weights, dynamic_img_size=True, dynamic_img_pad=True
    )
    load_pretrained(vit, spec)  # a file or URL holds the whole ViT's keys
    # timm's features_only wrapper; the blocks after the last one taken, the final norm and the classifier go
    features = FeatureGetterNet(vit, out_indices=vit_block_indices(len(vit.blocks)))
    return ViTFeaturePyramid(features, levels=levels)
