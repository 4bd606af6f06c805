"""Backbones beyond the reference: ConvNeXt (dilated by timm) and a plain ViT (through ViTFeaturePyramid)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from isnet import ISNet, ISNetLoss, optimize_for_inference
from isnet.models import build_backbone
from isnet.models.necks import ViTFeaturePyramid, vit_block_indices

CONF = Path(__file__).resolve().parents[2] / "conf" / "model" / "backbone"
#: config file -> expected type of the built backbone
NEW_CONFIGS = {
    "convnext_t": "FeatureListNet",
    "convnext_atto": "FeatureListNet",
    "vit_s16": "ViTFeaturePyramid",
}


def _config_backbone(config: str) -> str:
    return OmegaConf.load(CONF / f"{config}.yaml").backbone


@pytest.mark.parametrize("config", sorted(NEW_CONFIGS))
def test_config_backbone_builds_at_stride_8(config: str) -> None:
    backbone = build_backbone(_config_backbone(config), pretrained=False)  # random init: no download
    assert type(backbone).__name__ == NEW_CONFIGS[config]
    assert backbone.feature_info.reduction() == [4, 8, 8, 8]
    with torch.no_grad():
        feats = backbone(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape[2:]) for f in feats] == [(16, 24), (8, 12), (8, 12), (8, 12)]
    assert [f.shape[1] for f in feats] == backbone.feature_info.channels()


@pytest.mark.parametrize(("backbone", "shortcut"), [("convnext_atto", False), ("convnext_atto", True),
                                                    ("vit_tiny_patch16_224", False), ("vit_tiny_patch16_224", True)])  # fmt: skip
def test_isnet_trains_and_evaluates(backbone: str, shortcut: bool) -> None:
    torch.manual_seed(0)
    model = ISNet(
        backbone, num_classes=4, feats_channels=32, transform_channels=16, shortcut=shortcut
    ).train()
    images, labels = torch.randn(2, 3, 40, 56), torch.randint(0, 4, (2, 40, 56))
    out = model(images)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        k: (2, 4, 40, 56) for k in ("stage1", "stage2", "aux")
    }
    ISNetLoss()(out, labels)["loss"].backward()
    # every parameter is used (DDP needs it): a ViT builds only the pyramid levels the network reads
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(optimize_for_inference(model)(images), model(images), rtol=1e-4, atol=1e-4)


def test_vit_pyramid_levels() -> None:
    assert vit_block_indices(12) == (2, 5, 8, 11) and vit_block_indices(24) == (5, 11, 17, 23)
    full = build_backbone("vit_tiny_patch16_224")
    assert isinstance(full, ViTFeaturePyramid) and sorted(full.levels) == ["0", "1", "2", "3"]
    assert full.feature_info.channels() == [48, 96, 192, 192]  # D/4, D/2, D, D with D = 192
    head_only = build_backbone("vit_tiny_patch16_224", levels=(3,))
    with torch.no_grad():
        feats = head_only(torch.randn(1, 3, 33, 47))  # padded to 48x48 by the ViT
    assert feats[:3] == [None, None, None] and tuple(feats[3].shape) == (1, 192, 6, 6)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("convnext_tinyy", "unknown backbone 'convnext_tinyy'"),
        ("vit_small_patch16_224_d16", "output stride 8 through its feature pyramid only"),
    ],
)
def test_bad_names_give_a_clear_error(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ISNet(name, num_classes=3)
