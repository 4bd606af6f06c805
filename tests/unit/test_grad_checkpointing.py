"""Activation checkpointing (``model.grad_checkpointing``): same gradients, dropout masks and BatchNorm
statistics as the plain network, and far fewer tensors kept for backward."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.checkpoint import checkpoint as torch_checkpoint

from isnet import ISNet, ISNetLoss
from isnet.models import checkpointing

TINY = dict(num_classes=5, feats_channels=32, transform_channels=16, dropout=0.5)


def _train_step(model: ISNet, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """One forward/backward in train mode with a fixed dropout seed; returns every parameter's gradient."""
    torch.manual_seed(1)
    ISNetLoss()(model(images), labels)["loss"].backward()
    return {name: p.grad for name, p in model.named_parameters()}


def _pair(backbone: str, **kwargs) -> tuple[ISNet, ISNet, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    plain = ISNet(backbone, **{**TINY, **kwargs}).train()
    checkpointed = copy.deepcopy(plain).set_grad_checkpointing(True)
    images, labels = torch.randn(2, 3, 48, 48), torch.randint(0, 5, (2, 48, 48))
    return plain, checkpointed, images, labels


@pytest.mark.parametrize(
    ("backbone", "shortcut"), [("resnet18d", False), ("resnet18d", True), ("vit_tiny_patch16_224", False)]
)
def test_gradients_and_batchnorm_statistics_equal_the_plain_run(backbone: str, shortcut: bool) -> None:
    plain, checkpointed, images, labels = _pair(backbone, shortcut=shortcut)
    expected, got = _train_step(plain, images, labels), _train_step(checkpointed, images, labels)
    assert all(g is not None for g in expected.values())
    for name, grad in expected.items():
        torch.testing.assert_close(got[name], grad, rtol=0, atol=1e-6, msg=name)
    # the recomputation in backward does not update BatchNorm's running statistics a second time
    for (name, buffer), other in zip(plain.named_buffers(), checkpointed.buffers(), strict=True):
        assert torch.equal(buffer, other), name


def test_dropout_is_replayed_in_the_recomputation(monkeypatch: pytest.MonkeyPatch) -> None:
    """The equality above depends on the RNG state being restored: without it the dropout masks differ."""
    plain, checkpointed, images, labels = _pair("resnet18d")
    expected = _train_step(plain, images, labels)

    def no_rng(*args, **kwargs):
        return torch_checkpoint(*args, **{**kwargs, "preserve_rng_state": False})

    monkeypatch.setattr(checkpointing, "checkpoint", no_rng)
    got = _train_step(checkpointed, images, labels)
    assert max((got[n] - g).abs().max().item() for n, g in expected.items()) > 1e-4


def _saved_bytes(model: ISNet, images: torch.Tensor) -> int:
    saved = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(images)
    return sum(saved)


def test_checkpointing_keeps_far_fewer_tensors_for_backward() -> None:
    plain, checkpointed, images, _ = _pair("resnet18d")
    full, kept = _saved_bytes(plain, images), _saved_bytes(checkpointed, images)
    assert kept < 0.35 * full, (kept, full)
    assert _saved_bytes(checkpointed.set_grad_checkpointing(False), images) == full


def test_inference_and_the_module_flag() -> None:
    from isnet.accel import optimize_for_inference
    from isnet.lit import ISNetModule

    plain, checkpointed, images, _ = _pair("resnet18d")
    with torch.no_grad():  # eval: nothing to recompute, same logits
        torch.testing.assert_close(checkpointed.eval()(images), plain.eval()(images), rtol=0, atol=0)
        torch.testing.assert_close(
            optimize_for_inference(checkpointed)(images), plain(images), rtol=1e-4, atol=1e-4
        )
    config = {k: v for k, v in TINY.items() if k != "num_classes"} | {"backbone": "resnet18d"}
    module = ISNetModule(config, num_classes=5, grad_checkpointing=True)
    assert module.model.grad_checkpointing and module.model.head.grad_checkpointing
    assert module.hparams.grad_checkpointing is True
    assert not ISNetModule(config, num_classes=5).model.grad_checkpointing


@pytest.mark.slow
def test_checkpointing_under_torch_compile() -> None:
    """``model.compile=true`` with checkpointing: dynamo traces the checkpointed blocks (no custom context there)
    and updates BatchNorm's statistics once, in the forward graph."""
    plain, checkpointed, images, labels = _pair("resnet18d", dropout=0.0)
    expected = _train_step(plain, images, labels)
    _train_step(torch.compile(checkpointed, backend="aot_eager"), images, labels)
    got = {name: p.grad for name, p in checkpointed.named_parameters()}
    for name, grad in expected.items():
        torch.testing.assert_close(got[name], grad, rtol=0, atol=1e-6, msg=name)
    for (name, buffer), other in zip(plain.named_buffers(), checkpointed.buffers(), strict=True):
        torch.testing.assert_close(other, buffer, rtol=0, atol=1e-6, msg=name)
