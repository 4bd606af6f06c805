"""isnet.inside shows the network's own predictions and attention: the logits are the model's, the attention
rows sum to 1 and, weighted over the values, give back what the attention blocks computed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from isnet.data.datasets.base import normalize
from isnet.inside import as_model_input, inspect_isnet
from isnet.meta import IMAGENET_MEAN_255, IMAGENET_STD_255
from isnet.models import ISNet

IMAGE = torch.randn(3, 45, 52, generator=torch.Generator().manual_seed(1))


def _model(shortcut: bool = False) -> ISNet:
    torch.manual_seed(0)
    model = ISNet(
        backbone="resnet18d", num_classes=5, feats_channels=32, transform_channels=16, shortcut=shortcut
    ).eval()
    # spread the stage-1 classes over IMAGE, so that several class centres exist: random classifier weights,
    # and a bias that centres each class's logit over the image
    classifier = model.head.decoder_stage1[4]
    torch.nn.init.normal_(classifier.weight, std=3.0)
    torch.nn.init.zeros_(classifier.bias)
    with torch.no_grad():
        stage1 = model.head(model.backbone(IMAGE[None]))[0]
        classifier.bias.copy_(-stage1.mean(dim=(0, 2, 3)))
    return model


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return IMAGE


@pytest.mark.parametrize("shortcut", [False, True], ids=["plain", "lip_shortcut"])
@pytest.mark.parametrize("compress_keys", [True, False], ids=["grouped_keys", "full_keys"])
def test_predictions_and_attention_are_the_models(
    image: torch.Tensor, shortcut: bool, compress_keys: bool
) -> None:
    model = _model(shortcut)
    model.head.slc_net.compress_keys = compress_keys
    pixels = [(0, 0), (20, 30), (44, 51)]
    seen = inspect_isnet(model, image, pixels=pixels)

    with torch.no_grad():
        stage1, stage2 = model.head(model.backbone(image[None]))
        scores = model(image[None])
    assert torch.equal(seen.stage1_logits, stage1[0]) and torch.equal(seen.stage2_logits, stage2[0])
    assert torch.equal(seen.stage2, scores.argmax(1)[0]) and seen.stage1.shape == image.shape[1:]

    grid = stage1.shape[2:]
    num_classes = stage1.shape[1]
    assert int((seen.counts > 0).sum()) >= 2, "the case must hold several stage-1 classes"
    for trace in (seen.ilc, seen.slc):
        weights = trace.weights()
        assert torch.allclose(weights.sum(-1), torch.ones(weights.shape[0]), atol=1e-6)
        assert (weights @ trace.value - trace.attended).abs().max() <= 1e-5
    assert seen.ilc.key.shape[0] == grid[0] * grid[1]
    assert seen.slc.key.shape[0] == (num_classes if compress_keys else grid[0] * grid[1])

    assert seen.ilc_attention.shape == (len(pixels), *grid)
    assert seen.cells == ((0, 0), (20 * grid[0] // 45, 30 * grid[1] // 52), (grid[0] - 1, grid[1] - 1))
    rows = [r * grid[1] + c for r, c in seen.cells]
    assert torch.equal(seen.ilc_attention.flatten(1), seen.ilc.weights(rows))
    assert seen.slc_attention.shape == (num_classes, *grid)
    assert torch.allclose(seen.slc_attention.sum(0), torch.ones(grid), atol=1e-6)
    assert (seen.slc_attention[seen.counts == 0] == 0).all()  # no attention to an absent class
    assert seen.centres.shape == (num_classes, 32)
    assert torch.equal(seen.counts.sum(), torch.tensor(float(grid[0] * grid[1])))


def test_grouped_and_full_keys_give_the_same_class_attention(image: torch.Tensor) -> None:
    model = _model()
    grouped = inspect_isnet(model, image)
    model.head.slc_net.compress_keys = False
    full = inspect_isnet(model, image)
    assert (grouped.slc_attention - full.slc_attention).abs().max() <= 1e-5
    assert torch.equal(grouped.centres, full.centres)


def test_centres_are_what_the_key_projection_receives(image: torch.Tensor) -> None:
    model = _model()
    received = {}
    key_project = model.head.slc_net.correlate_net.key_project
    handle = key_project.register_forward_pre_hook(lambda m, inputs: received.update(x=inputs[0]))
    seen = inspect_isnet(model, image)
    handle.remove()
    assert torch.equal(received["x"][0, :, :, 0].T, seen.centres)  # (1, C, K, 1) in the grouped eval path


def test_mode_is_restored_and_hooks_removed(image: torch.Tensor) -> None:
    model = _model().train()
    inspect_isnet(model, image)
    assert model.training
    modules = list(model.modules())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in modules)


def test_array_and_pil_inputs_are_normalised_like_the_datasets() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    expected = normalize(rgb, IMAGENET_MEAN_255, IMAGENET_STD_255)[None]
    assert torch.equal(as_model_input(rgb), expected)
    assert torch.equal(as_model_input(Image.fromarray(rgb)), expected)
    seen = inspect_isnet(_model(), Image.fromarray(rgb))
    assert torch.equal(seen.image, expected[0])


def test_bad_inputs_are_refused(image: torch.Tensor) -> None:
    model = _model()
    with pytest.raises(ValueError, match="one image"):
        inspect_isnet(model, torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="uint8"):
        as_model_input(np.zeros((32, 32, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="outside the image"):
        inspect_isnet(model, image, pixels=[(45, 0)])
    with pytest.raises(TypeError, match="ISNet"):
        inspect_isnet(torch.nn.Conv2d(3, 3, 1), image)
