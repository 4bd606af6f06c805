"""The vectorised semantic-level class centres equal the reference's per-image, per-class loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from isnet.models.heads import semantic_class_centres


def loop_class_centres(feats: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Naive version: loop over images and classes, softmax of the class logit over its argmax region."""
    batch, channels, height, width = feats.shape
    num_classes = logits.shape[1]
    out = torch.zeros(batch, height * width, channels, dtype=feats.dtype)
    for b in range(batch):
        f = feats[b].reshape(channels, -1).t()
        p = logits[b].reshape(num_classes, -1).t()
        argmax = p.argmax(1)
        for k in range(num_classes):
            mask = argmax == k
            if mask.sum() == 0:
                continue
            weight = F.softmax(p[:, k][mask], dim=0)
            out[b][mask] = (f[mask] * weight.unsqueeze(-1)).sum(0)
    return out.reshape(batch, height, width, channels).permute(0, 3, 1, 2)


def _case(name: str, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(num_classes)
    feats = torch.randn(2, 16, 9, 11, generator=gen)
    logits = torch.randn(2, num_classes, 9, 11, generator=gen) * 3
    if name == "absent_classes":  # only 3 classes can win; the rest are absent
        logits[:, 3:] -= 100.0
    elif name == "single_pixel":  # class 1 owns exactly one pixel in image 0
        logits[:, 1] = -100.0
        logits[0, 1, 4, 5] = 100.0
    elif name == "one_class":  # every pixel belongs to class 0 in both images
        logits[:, 0] += 1000.0
    elif name == "ties":  # equal logits: argmax picks the first index, as torch.argmax in the reference
        logits[:, :2] = 5.0
        logits[:, 2:] = 0.0
    return feats, logits


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("num_classes", [19, 150, 182])
@pytest.mark.parametrize("name", ["random", "absent_classes", "single_pixel", "one_class", "ties"])
def test_vectorised_equals_loop_forward_and_grads(name: str, num_classes: int, layout: str) -> None:
    feats, logits = _case(name, num_classes)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    feats_a = feats.clone().contiguous(memory_format=fmt).requires_grad_()
    logits_a = logits.clone().contiguous(memory_format=fmt).requires_grad_()
    feats_b, logits_b = feats.clone().requires_grad_(), logits.clone().requires_grad_()
    ours = semantic_class_centres(feats_a, logits_a)
    ref = loop_class_centres(feats_b, logits_b)
    assert (ours - ref).abs().max().item() <= 1e-5
    weight = torch.randn_like(ref)
    (ours * weight).sum().backward()
    (ref * weight).sum().backward()
    assert (feats_a.grad - feats_b.grad).abs().max().item() <= 1e-5
    assert (logits_a.grad - logits_b.grad).abs().max().item() <= 1e-5
    assert logits_a.grad.abs().sum() > 0 or name == "one_class" or name == "single_pixel"


def test_single_pixel_class_gets_its_own_feature() -> None:
    feats, logits = _case("single_pixel", 19)
    out = semantic_class_centres(feats, logits)
    torch.testing.assert_close(out[0, :, 4, 5], feats[0, :, 4, 5])


def test_large_logits_are_stable() -> None:
    feats = torch.randn(1, 8, 6, 6)
    logits = torch.randn(1, 5, 6, 6) * 1e4
    out = semantic_class_centres(feats, logits)
    assert torch.isfinite(out).all()
    assert (out - loop_class_centres(feats, logits)).abs().max() <= 1e-5


def test_bfloat16_autocast_keeps_fp32_sums() -> None:
    feats, logits = _case("random", 19)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = semantic_class_centres(feats, logits)
    assert out.dtype == feats.dtype
    assert (out - loop_class_centres(feats, logits)).abs().max() <= 1e-5


def test_shape_mismatch_is_reported() -> None:
    with pytest.raises(ValueError, match="must share batch"):
        semantic_class_centres(torch.randn(1, 4, 5, 5), torch.randn(1, 3, 6, 5))


@pytest.mark.parametrize("num_classes", [19, 150])
def test_eval_slc_attention_over_class_centres_equals_attention_over_pixels(num_classes: int) -> None:
    """In eval, attending to the K class centres weighted by pixel count equals attending to all HW pixels."""
    from isnet.models.heads import SemanticLevelContext

    torch.manual_seed(num_classes)
    module = SemanticLevelContext(32, 16).eval()
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    x, feats_il = torch.randn(2, 32, 9, 13), torch.randn(2, 32, 9, 13)
    preds = torch.randn(2, num_classes, 9, 13) * 3
    preds[1, 5:] -= 100  # image 1: only 5 classes present, the rest absent (count 0, excluded)
    x_a, p_a = x.clone().requires_grad_(), preds.clone().requires_grad_()
    x_b, p_b = x.clone().requires_grad_(), preds.clone().requires_grad_()
    grouped = module(x_a, p_a, feats_il)
    module.compress_keys = False
    full = module(x_b, p_b, feats_il)
    assert (grouped - full).abs().max() <= 1e-5
    weight = torch.randn_like(full)
    (grouped * weight).sum().backward()
    (full * weight).sum().backward()
    assert (x_a.grad - x_b.grad).abs().max() <= 1e-5 and (p_a.grad - p_b.grad).abs().max() <= 1e-5
    module.train()  # training must use the full form: BN statistics run over all pixels
    module.compress_keys = True
    calls = []
    module.correlate_net.forward_grouped = lambda *a: calls.append(
        a
    )  # would be called by the compressed path
    module(x, preds, feats_il)
    assert calls == []


@pytest.mark.parametrize("name", ["random", "absent_classes", "single_pixel", "ties"])
def test_dense_route_equals_segmented_route(name: str) -> None:
    """The atomics-free route (CUDA with deterministic algorithms) gives the same centres, counts and grads."""
    from isnet.models.heads.context import _class_centres_segmented, class_centres_dense

    feats, logits = _case(name, 19)
    grads = []
    outputs = []
    for route in (_class_centres_segmented, class_centres_dense):
        f, p = feats.flatten(2).clone().requires_grad_(), logits.flatten(2).clone().requires_grad_()
        centres, classes, counts = route(f, p)
        (centres * torch.linspace(-1, 1, centres.numel()).view_as(centres)).sum().backward()
        outputs.append((centres.detach(), classes, counts))
        grads.append((f.grad, p.grad))
    (c_seg, k_seg, n_seg), (c_dense, k_dense, n_dense) = outputs
    assert torch.equal(k_seg, k_dense) and torch.equal(n_seg, n_dense)
    assert n_seg.sum().item() == feats.shape[0] * feats.shape[2] * feats.shape[3]  # every pixel counted once
    assert (c_seg - c_dense).abs().max().item() <= 1e-5
    for g_seg, g_dense in zip(*grads):
        assert (g_seg - g_dense).abs().max().item() <= 1e-5


def test_dense_route_is_chosen_for_deterministic_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    from isnet.models.heads import context

    feats, logits = _case("random", 19)
    used = []
    monkeypatch.setattr(context, "class_centres_dense", lambda f, p: used.append("dense") or (f, p, None))
    monkeypatch.setattr(context, "_class_centres_segmented", lambda f, p: used.append("seg") or (f, p, None))
    context.class_centres(feats, logits)
    monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
    context.class_centres(feats, logits)  # CUDA but deterministic algorithms off: still the scatter route
    monkeypatch.setattr(torch, "are_deterministic_algorithms_enabled", lambda: True)
    context.class_centres(feats, logits)
    assert used == ["seg", "seg", "dense"]
