"""The inference copy (isnet.accel.optimize_for_inference: BatchNorm folded, channels_last, Winograd, residual
accumulation) equals the plain fp32 path, says when it is stale, and is made of explicit modules."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from isnet import ISNet
from isnet.accel import StaleSnapshotError, optimize_for_inference
from isnet.accel.fusion import AccumulatingBottleneck, accumulate_residuals_, fold_batchnorm_


def _randomise(model: nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) * 0.5 + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=gen) * 0.4 - 0.2)


@pytest.mark.parametrize("backbone", ["resnet18d", "resnest14d"])
def test_every_batchnorm_is_folded_and_logits_agree(backbone: str) -> None:
    model = ISNet(
        backbone, 7, feats_channels=32, transform_channels=16, shortcut=backbone == "resnet18d"
    ).eval()
    _randomise(model)
    fast = optimize_for_inference(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the source is not changed
    x = torch.randn(2, 3, 45, 61)
    with torch.inference_mode():
        fused = fast.predict_logits(x)
        plain = model.predict_logits(x)
    assert (fused - plain).abs().max() <= 1e-4 * max(1.0, plain.abs().max().item())


def test_snapshot_refuses_to_run_after_the_source_changed() -> None:
    model = ISNet("resnet18d", 3, feats_channels=16, transform_channels=8).eval()
    x = torch.randn(1, 3, 40, 40)
    fast = optimize_for_inference(model)
    with torch.inference_mode():
        before = fast(x)
    other = ISNet("resnet18d", 3, feats_channels=16, transform_channels=8).eval()
    _randomise(other, seed=3)
    model.load_state_dict(other.state_dict())  # bumps every parameter's version
    with pytest.raises(StaleSnapshotError, match="optimize_for_inference"):
        fast(x)
    fast = optimize_for_inference(model)  # rebuilt explicitly: follows the new weights
    with torch.inference_mode():
        after, expected = fast(x), model(x)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected, rtol=1e-4, atol=1e-5)
    # an optimiser step, a BN statistics update in training and a dtype change make it stale too
    model.train()
    model(torch.randn(2, 3, 40, 40))  # training forward updates the running statistics
    with pytest.raises(StaleSnapshotError):
        fast.predict_logits(x)
    fast = optimize_for_inference(model.eval())
    model.double()
    with pytest.raises(StaleSnapshotError):
        fast(x)
    # the plain model in eval mode keeps autograd: gradients reach the weights
    model.float()
    model(x).sum().backward()
    assert model.head.bottleneck[0].weight.grad is not None


def test_fold_counts_pairs_once() -> None:
    seq = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
    )
    _randomise(seq)
    seq.eval()
    x = torch.randn(1, 3, 9, 9)
    expected = seq(x)
    assert fold_batchnorm_(seq) == 2 and fold_batchnorm_(seq) == 0
    torch.testing.assert_close(seq(x), expected, rtol=1e-5, atol=1e-6)


def test_bf16_autocast_uses_a_bf16_copy_and_agrees_with_fp32() -> None:
    model = ISNet("resnet18d", 5, feats_channels=32, transform_channels=16).eval()
    _randomise(model)
    x = torch.randn(1, 3, 96, 128)
    fast = optimize_for_inference(model, dtype=torch.bfloat16)
    with torch.inference_mode():
        fp32 = model.predict_logits(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = fast.predict_logits(x)
    assert fast.head.bottleneck[0].weight.dtype == torch.bfloat16
    assert bf16.shape == fp32.shape
    # bf16 keeps ~3 significant digits; the class decision should almost never change
    assert (bf16.float().argmax(1) == fp32.argmax(1)).float().mean() >= 0.97
    assert (bf16.float() - fp32).abs().max() <= 0.05 * fp32.abs().max()


def test_classifiers_stay_fp32_under_bf16_autocast() -> None:
    """Logits come out of fp32 classifiers (fp32 weights in the bf16 copy too); every other conv is bf16."""
    from isnet.models.layers import ClassifierConv2d

    model = ISNet("resnet18d", 5, feats_channels=32, transform_channels=16).eval()
    _randomise(model)
    classifiers = [name for name, m in model.named_modules() if isinstance(m, ClassifierConv2d)]
    assert classifiers == ["head.decoder_stage1.4", "head.decoder_stage2.1", "auxiliary_decoder.4"]
    x = torch.randn(1, 3, 64, 96)
    fast = optimize_for_inference(model, dtype=torch.bfloat16)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        fast_logits = fast.predict_logits(x)
        plain_logits = model.predict_logits(x)
    assert fast_logits.dtype == plain_logits.dtype == torch.float32
    dtypes = {name: m.weight.dtype for name, m in fast.named_modules() if isinstance(m, nn.Conv2d)}
    kept = {name for name, dtype in dtypes.items() if dtype == torch.float32}
    assert kept == {"head.decoder_stage1.4", "head.decoder_stage2.1"}  # the copy has no auxiliary head
    assert set(dtypes.values()) == {torch.float32, torch.bfloat16}


def test_classifier_conv_equals_conv2d_in_fp32_and_computes_fp32_under_autocast() -> None:
    from isnet.models.layers import ClassifierConv2d

    torch.manual_seed(0)
    conv = nn.Conv2d(8, 3, 1)
    classifier = ClassifierConv2d(8, 3, 1)
    classifier.load_state_dict(conv.state_dict())
    x = torch.randn(2, 8, 5, 7)
    torch.testing.assert_close(classifier(x), conv(x), rtol=0, atol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, high = conv(x), classifier(x)
        high_from_bf16_input = classifier(x.bfloat16())
    assert low.dtype == torch.bfloat16 and high.dtype == torch.float32
    torch.testing.assert_close(high, conv(x), rtol=0, atol=0)  # autocast did not touch it
    torch.testing.assert_close(high_from_bf16_input, conv(x.bfloat16().float()), rtol=1e-6, atol=1e-6)


def test_fp32_cpu_fast_path_uses_winograd_for_wide_3x3_convs() -> None:
    from isnet.accel import WinogradConv2d

    model = ISNet("resnet18d", 5, feats_channels=256, transform_channels=16).eval()
    _randomise(model)
    x = torch.randn(1, 3, 72, 88)
    copy_fp32 = optimize_for_inference(model)
    swapped = {n for n, m in copy_fp32.named_modules() if isinstance(m, WinogradConv2d)}
    copy_bf16 = optimize_for_inference(model, dtype=torch.bfloat16)  # bf16 runs on the matrix units
    assert not any(isinstance(m, WinogradConv2d) for m in copy_bf16.modules())
    direct_copy = copy.deepcopy(model)  # BatchNorm folded, oneDNN's direct convolutions
    fold_batchnorm_(direct_copy)
    with torch.inference_mode():
        fast = copy_fp32.predict_logits(x)
        direct = direct_copy.predict_logits(x)
        plain = model.predict_logits(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            copy_bf16.predict_logits(x)
    # the >= 256-channel 3x3 stride-1 convs: layer3/layer4 conv2 (and layer4 conv1), the head's 3x3 convs
    assert {"backbone.layer3.0.conv2", "backbone.layer4.1.conv1", "head.bottleneck.0"} <= swapped
    assert not any(
        name.startswith(("backbone.conv1", "backbone.layer1", "backbone.layer2")) for name in swapped
    )
    assert "backbone.layer3.0.conv1" not in swapped  # 128 -> 256: below the 256-channel threshold
    scale = max(1.0, plain.abs().max().item())
    assert (fast - plain).abs().max() <= 1e-4 * scale
    assert (direct - plain).abs().max() <= 1e-4 * scale


def test_bottlenecks_accumulate_into_the_shortcut_with_the_same_result() -> None:
    import timm

    torch.manual_seed(0)
    backbone = timm.create_model("resnet26", features_only=True, output_stride=8, pretrained=False).eval()
    _randomise(backbone)
    folded = copy.deepcopy(backbone).to(memory_format=torch.channels_last)
    fold_batchnorm_(folded)
    accumulating = copy.deepcopy(folded)
    assert accumulate_residuals_(accumulating) == 8  # every Bottleneck of resnet26 (2 per stage)
    blocks = [m for m in accumulating.modules() if isinstance(m, AccumulatingBottleneck)]
    assert len(blocks) == 8  # explicit modules: no instance has a patched forward
    assert all(type(m).forward is m.forward.__func__ for m in accumulating.modules())
    x = torch.randn(2, 3, 64, 80).contiguous(memory_format=torch.channels_last)
    x_before = x.clone()
    with torch.inference_mode():
        expected = folded(x)
        got = accumulating(x)
        plain = backbone(x)
    assert torch.equal(x, x_before)  # the input is never written
    for e, g, p in zip(expected, got, plain, strict=True):
        scale = max(1.0, p.abs().max().item())
        assert (g - e).abs().max() <= 1e-5 * scale and (g - p).abs().max() <= 1e-4 * scale
    # a stage whose first block has no projection shortcut must not overwrite that block's input
    stage = nn.Sequential(copy.deepcopy(folded.layer2[1]), copy.deepcopy(folded.layer2[1]))
    assert accumulate_residuals_(stage) == 1 and isinstance(stage[1], AccumulatingBottleneck)
    y = torch.randn(1, 512, 8, 8).contiguous(memory_format=torch.channels_last)
    y_before = y.clone()
    with torch.inference_mode():
        stage(y)
    assert torch.equal(y, y_before)


def test_lip_head_decode_needs_the_low_level_features() -> None:
    model = ISNet("resnet18d", 5, feats_channels=16, transform_channels=8, shortcut=True).eval()
    feats = torch.randn(1, 16, 8, 8)
    with pytest.raises(ValueError, match="needs the layer1 features"):
        model.head.decode(feats)


def test_inference_copy_patches_no_forward_and_carries_the_metadata() -> None:
    model = ISNet(
        "resnet18d", 3, feats_channels=256, transform_channels=16, class_names=["a", "b", "c"]
    ).eval()
    fast = optimize_for_inference(model)
    assert all(type(m).forward is m.forward.__func__ for m in fast.modules())
    assert (fast.num_classes, fast.class_names, fast.palette) == (3, ["a", "b", "c"], model.palette)
    assert fast.config == model.config
    assert not any(p.requires_grad for p in fast.parameters())


def test_inference_copy_refuses_non_finite_input_with_the_count() -> None:
    model = ISNet("resnet18d", 3, feats_channels=16, transform_channels=8).eval()
    x = torch.randn(1, 3, 16, 16)
    x[0, 1, 2, :3] = float("nan")
    x[0, 2, 0, 0] = float("inf")
    for entry in (
        model,
        model.predict_logits,
        optimize_for_inference(model),
        optimize_for_inference(model).predict_logits,
    ):
        with pytest.raises(ValueError, match=r"\b4\b"):
            entry(x)
