"""Backbones: stage shapes, reductions and dilations at output stride 8, and the ResNeSt pool patch."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from isnet.models import build_backbone
from isnet.models.backbones import parse_backbone_name, patch_dilated_avg_down


def _dilations(stage: nn.Module) -> list[int]:
    dils = []
    for block in stage:
        conv = block.conv2.conv if hasattr(block.conv2, "conv") else block.conv2
        dils.append(conv.dilation[0])
    return dils


@pytest.mark.parametrize("name", ["resnet50_d8", "resnest101_d8", "resnet18d"])
def test_stage_shapes_and_reductions(name: str) -> None:
    model = build_backbone(name).eval()
    assert model.feature_info.reduction() == [4, 8, 8, 8]
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 97, 129))
    # stem stride 2 -> ceil, maxpool s2 p1 -> ceil, layer2 s2 -> ceil: 97 -> 49 -> 25 -> 13
    assert [tuple(f.shape[2:]) for f in feats] == [(25, 33), (13, 17), (13, 17), (13, 17)]
    assert [f.shape[1] for f in feats] == model.feature_info.channels()


def test_resnet50_d8_matches_reference_layout() -> None:
    model = build_backbone("resnet50_d8")
    # contract_dilation: first block of a dilated stage keeps the previous dilation (reference resnet.py)
    assert _dilations(model.layer3) == [1] + [2] * 5
    assert _dilations(model.layer4) == [2] + [4] * 2
    assert _dilations(model.layer2) == [1] * 4
    assert [m.out_channels for m in model.conv1 if isinstance(m, nn.Conv2d)] == [32, 32, 64]  # deep stem v1c
    assert isinstance(model.layer2[0].downsample[0], nn.Conv2d)  # strided 1x1 shortcut, no avg_down


def test_parse_backbone_name() -> None:
    assert parse_backbone_name("resnet50_d8") == ("resnet50c", 8, True)
    assert parse_backbone_name("resnest101_d16") == ("resnest101e", 16, True)
    assert parse_backbone_name("resnet18d") == ("resnet18d", 8, False)


def test_unknown_backbone_lists_choices() -> None:
    with pytest.raises(ValueError, match="unknown backbone 'resnet51_d8'.*resnet50_d8"):
        build_backbone("resnet51_d8")


def test_resnest_dilated_shortcut_pool_is_identity() -> None:
    """timm puts AvgPool2dSame(2, stride=1) before dilated avg_down shortcuts; the reference has none."""
    torch.manual_seed(0)
    timm_model = timm.create_model(
        "resnest101e", features_only=True, output_stride=8, out_indices=(1, 2, 3, 4)
    )
    assert type(timm_model.layer3[0].downsample[0]).__name__ == "AvgPool2dSame"
    ours = build_backbone("resnest101_d8")
    ours.load_state_dict(timm_model.state_dict())
    for stage in (ours.layer3, ours.layer4):
        assert isinstance(stage[0].downsample[0], nn.Identity)
    # the strided pool of layer2 (kernel 2 = stride 2) is kept, as in the reference
    assert type(ours.layer2[0].downsample[0]).__name__ == "AvgPool2d"

    for model in (timm_model, ours):
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
    timm_model.eval()
    ours.eval()
    ours.load_state_dict(timm_model.state_dict())
    x = torch.randn(1, 3, 65, 81)
    with torch.no_grad():
        ref_feats = timm_model(x)
        our_feats = ours(x)
        # the patched shortcut is exactly conv1x1 -> BN of the block input (the reference's k=1 pool = identity)
        block_in = ours.layer3[0]
        x3_in = ours.layer2(ours.layer1(ours.maxpool(ours.act1(ours.bn1(ours.conv1(x))))))
        expected = block_in.downsample[2](block_in.downsample[1](x3_in))
        torch.testing.assert_close(block_in.downsample(x3_in), expected, rtol=0, atol=0)
    assert torch.equal(ref_feats[0], our_feats[0]) and torch.equal(ref_feats[1], our_feats[1])
    assert (ref_feats[2] - our_feats[2]).abs().max() > 1e-3
    assert (ref_feats[3] - our_feats[3]).abs().max() > 1e-3


def test_patch_only_touches_stride_one_pools() -> None:
    model = timm.create_model("resnest14d", features_only=True, output_stride=8)
    assert patch_dilated_avg_down(model) == 2
    assert patch_dilated_avg_down(model) == 0
