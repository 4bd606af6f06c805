"""ISNet head and segmentor: shapes at odd sizes, the forward order, SDPA attention, train/eval outputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from isnet import ISNet
from isnet.models.heads import ISNetHead
from isnet.models.layers import SelfAttentionBlock
from isnet.models.layers.attention import attention_reference


def _randomise_bn(module: torch.nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)


@pytest.mark.parametrize("size", [(45, 45), (97, 129)])
@pytest.mark.parametrize("shortcut", [False, True])
def test_head_shapes_at_odd_sizes(size: tuple[int, int], shortcut: bool) -> None:
    head = ISNetHead(64, 7, feats_channels=16, transform_channels=8,
                     shortcut_in_channels=24 if shortcut else None).eval()  # fmt: skip
    low = (size[0] // 8 + 1, size[1] // 8 + 1)
    features = [torch.randn(2, 24, size[0] // 4 + 1, size[1] // 4 + 1)] + [torch.randn(2, 64, *low)] * 3
    stage1, stage2 = head(features)
    assert stage1.shape == (2, 7, *low)
    assert stage2.shape == ((2, 7, *features[0].shape[2:]) if shortcut else (2, 7, *low))


def test_sdpa_equals_explicit_attention() -> None:
    q, k, v = torch.randn(2, 300, 32), torch.randn(2, 300, 32), torch.randn(2, 300, 32)
    explicit = attention_reference(q, k, v)
    manual = torch.softmax(q @ k.transpose(1, 2) / 32**0.5, dim=-1) @ v
    torch.testing.assert_close(explicit, manual)
    block = SelfAttentionBlock(16, 8, 32, 8).eval()
    _randomise_bn(block)
    query, key = torch.randn(2, 8, 7, 9), torch.randn(2, 16, 7, 9)
    with torch.no_grad():
        fused = block(query, key)
        block.use_sdpa = False
        plain = block(query, key)
    assert (fused - plain).abs().max() <= 1e-5


def test_isnet_forward_order_matches_reference_definition() -> None:
    """Recompute the head by hand from the spec's forward order and compare."""
    torch.manual_seed(0)
    model = ISNet("resnet18d", num_classes=5, feats_channels=16, transform_channels=8).eval()
    _randomise_bn(model)
    x = torch.randn(2, 3, 45, 45)
    head = model.head
    with torch.no_grad():
        feats = head.bottleneck(model.backbone(x)[-1])
        g = F.adaptive_avg_pool2d(feats, 1)
        g = F.interpolate(g, size=feats.shape[2:], mode="bilinear", align_corners=False)
        il = head.ilc_net.bottleneck(
            torch.cat([feats, head.ilc_net.correlate_net(feats, torch.cat([g, feats], 1))], 1)
        )
        s1 = head.decoder_stage1(feats)
        from tests.unit.test_slc import loop_class_centres

        sl = loop_class_centres(feats, s1)
        sl = head.slc_net.bottleneck(torch.cat([il, head.slc_net.correlate_net(feats, sl)], 1))
        expected = head.decoder_stage2(sl)
        got = model.predict_logits(x)
        full = model(x)
    assert (got - expected).abs().max() <= 1e-5
    torch.testing.assert_close(full, F.interpolate(got, size=(45, 45), mode="bilinear", align_corners=False))


def test_train_mode_returns_all_logits_at_input_size() -> None:
    model = ISNet("resnet18d", num_classes=4, feats_channels=16, transform_channels=8).train()
    out = model(torch.randn(2, 3, 33, 47))
    assert set(out) == {"stage1", "stage2", "aux"}
    assert all(v.shape == (2, 4, 33, 47) for v in out.values())
    assert ISNet("resnet18d", 4, feats_channels=16, transform_channels=8, aux=False).train()(
        torch.randn(2, 3, 33, 47)
    ).keys() == {"stage1", "stage2"}


def test_lip_variant_outputs_quarter_resolution() -> None:
    model = ISNet(
        "resnet18d", 20, feats_channels=16, transform_channels=8, shortcut=True, act="leaky_relu"
    ).eval()
    with torch.no_grad():
        assert model.predict_logits(torch.randn(1, 3, 473, 473)).shape == (1, 20, 119, 119)
    assert isinstance(model.head.decoder_stage1[2], torch.nn.LeakyReLU)
    assert model.head.shortcut[0].bias is not None  # the reference keeps the bias here
    assert isinstance(model.backbone.act1, torch.nn.ReLU)  # backbone stays ReLU


@pytest.mark.parametrize(
    ("images", "error", "match"),
    [
        (torch.randn(3, 40, 40), ValueError, r"\(N, 3, H, W\), got \(3, 40, 40\)"),
        (torch.randn(1, 4, 40, 40), ValueError, r"got \(1, 4, 40, 40\)"),
        (torch.zeros(1, 3, 40, 40, dtype=torch.uint8), TypeError, "floating-point"),
        (torch.randn(1, 3, 4, 40), ValueError, "at least 8x8"),
        ([1, 2, 3], TypeError, "torch.Tensor"),
    ],
)
def test_bad_inputs_are_rejected_clearly(images: object, error: type, match: str) -> None:
    model = ISNet("resnet18d", 3, feats_channels=16, transform_channels=8).eval()
    with pytest.raises(error, match=match):
        model(images)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 1}, "num_classes"),
        ({"act": "gelu"}, "act must be one of"),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_bad_constructor_arguments(kwargs: dict, match: str) -> None:
    args = {"backbone": "resnet18d", "num_classes": 3} | kwargs
    with pytest.raises(ValueError, match=match):
        ISNet(**args)


def test_channels_last_and_noncontiguous_inputs_give_same_logits() -> None:
    model = ISNet("resnet18d", 3, feats_channels=16, transform_channels=8).eval()
    x = torch.randn(1, 3, 40, 48)
    with torch.no_grad():
        base = model(x)
        cl = model(x.contiguous(memory_format=torch.channels_last))
        nc = model(torch.randn(1, 3, 48, 40).transpose(2, 3).copy_(x))
    assert (base - cl).abs().max() <= 1e-5
    assert (base - nc).abs().max() <= 1e-5


def test_models_package_does_not_import_accel() -> None:
    """isnet.models holds the plain network: no module of it imports the inference machinery."""
    import ast
    from pathlib import Path

    import isnet.models

    for path in Path(isnet.models.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.startswith("isnet.accel") for n in names), path


def test_declared_metadata_and_old_configs() -> None:
    model = ISNet("resnet18d", 3, feats_channels=16, transform_channels=8)
    assert model.class_names == ["class_0", "class_1", "class_2"] and len(model.palette) == 3
    assert model.meta == {}
    named = ISNet(
        **{**model.config, "class_names": ["a", "b", "c"], "palette": [[1, 2, 3]] * 3, "meta": {"x": 1}}
    )
    assert (named.class_names, named.palette, named.meta) == (["a", "b", "c"], [(1, 2, 3)] * 3, {"x": 1})
    assert named.config["class_names"] == ["a", "b", "c"] and named.config["meta"] == {"x": 1}
    # configs written before isnet.accel carried the inference switches
    old = {
        **model.architecture,
        "fast_inference": True,
        "winograd": False,
        "compile": False,
        "pretrained": False,
    }
    assert ISNet.from_config(old).config == model.config
    with pytest.raises(ValueError, match="class_names"):
        ISNet("resnet18d", 3, class_names=["a", "b"])


def test_non_finite_input_is_refused_with_the_count() -> None:
    model = ISNet("resnet18d", 3, feats_channels=16, transform_channels=8)
    x = torch.randn(2, 3, 16, 16)
    x[1, 0, :2, :3] = float("nan")
    for entry in (model.train(), model.eval(), model.predict_logits):
        with pytest.raises(ValueError, match=r"\b6\b"):
            entry(x)
    # not inside a trace: the check belongs to the eager entry points
    traced = torch.jit.trace(model.eval(), torch.randn(1, 3, 16, 16), check_trace=False)
    assert torch.isnan(traced(x)).any()


def test_checkpoint_carries_class_names_palette_and_meta(tmp_path) -> None:
    import isnet

    model = ISNet("resnet18d", 3, feats_channels=16, transform_channels=8, class_names=["a", "b", "c"],
                  palette=[(1, 2, 3), (4, 5, 6), (7, 8, 9)], meta={"run": "x"})  # fmt: skip
    loaded = isnet.load_checkpoint(isnet.save_checkpoint(model, tmp_path / "m.pt"))
    assert (loaded.class_names, loaded.palette, loaded.meta) == (
        model.class_names,
        model.palette,
        {"run": "x"},
    )
