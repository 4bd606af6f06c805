"""Whole / slide / multi-scale+flip inference against explicit loops, window grids and test settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from isnet.inference import (
    SINGLE_SCALE,
    InferenceConfig,
    ms_flip_inference,
    run_inference,
    slide_inference,
    slide_windows,
    test_settings,
    whole_inference,
)
from isnet.inference.tta import _swap_permutation
from isnet.inference.window import _group_windows
from isnet.meta import RECIPES

NUM_CLASSES = 5


@pytest.fixture(scope="module")
def model() -> nn.Module:
    """Tiny stride-8 network: logits at 1/8 of the input, like ISNet's ``predict_logits``."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, NUM_CLASSES, 3, stride=2, padding=1),
    )
    return net.eval()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 3, 37, 53)


def resize(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


# ---------------------------------------------------------------------------------------------------------
# Explicit reference loops, written the way sssegmentation's base.py / test.py spell them out.
# ---------------------------------------------------------------------------------------------------------
@torch.no_grad()
def loop_whole(net, img, use_probs):
    logits = net(img)
    return F.softmax(logits, dim=1) if use_probs else logits


@torch.no_grad()
def loop_slide(net, img, crop, stride, use_probs):
    n, _, h, w = img.shape
    canvas = torch.zeros(n, NUM_CLASSES, h, w)
    count = torch.zeros(n, 1, h, w)
    for hi in range(max(h - crop[0] + stride[0] - 1, 0) // stride[0] + 1):
        for wi in range(max(w - crop[1] + stride[1] - 1, 0) // stride[1] + 1):
            x1, y1 = wi * stride[1], hi * stride[0]
            x2, y2 = min(x1 + crop[1], w), min(y1 + crop[0], h)
            x1, y1 = max(x2 - crop[1], 0), max(y2 - crop[0], 0)
            window = img[:, :, y1:y2, x1:x2]
            out = resize(net(window), window.shape[2:])
            if use_probs:
                out = F.softmax(out, dim=1)
            canvas += F.pad(out, (x1, w - x2, y1, h - y2))
            count[:, :, y1:y2, x1:x2] += 1
    return canvas / count


@torch.no_grad()
def loop_ms_flip(net, img, out_size, scales, flip, mode, crop, stride, use_probs, pairs=()):
    def infer(x):
        return (
            loop_whole(net, x, use_probs) if mode == "whole" else loop_slide(net, x, crop, stride, use_probs)
        )

    outputs = []
    for s in scales:
        scaled = F.interpolate(img, scale_factor=s, mode="bilinear", align_corners=False)
        outputs.append(infer(scaled))
        if flip:
            out = infer(torch.from_numpy(np.flip(scaled.numpy(), axis=3).copy()))
            clone = out.clone()
            for a, b in pairs:
                out[:, a] = clone[:, b]
                out[:, b] = clone[:, a]
            outputs.append(torch.from_numpy(np.flip(out.numpy(), axis=3).copy()))
    resized = [resize(o, out_size) for o in outputs]
    return sum(resized) / len(resized)


# ---------------------------------------------------------------------------------------------------------
# Window grid
# ---------------------------------------------------------------------------------------------------------
def test_cityscapes_landscape_windows() -> None:
    boxes = slide_windows(1024, 2048, (512, 1024), (341, 341))
    ys = [(0, 512), (341, 853), (512, 1024)]
    xs = [(0, 1024), (341, 1365), (682, 1706), (1023, 2047), (1024, 2048)]
    assert boxes == [(y1, y2, x1, x2) for y1, y2 in ys for x1, x2 in xs]
    assert len(boxes) == 15


def test_cityscapes_portrait_windows() -> None:
    boxes = slide_windows(1024, 2048, (1024, 512), (341, 341))
    xs = [(0, 512), (341, 853), (682, 1194), (1023, 1535), (1364, 1876), (1536, 2048)]
    assert boxes == [(0, 1024, x1, x2) for x1, x2 in xs]


def test_image_smaller_than_window() -> None:
    assert slide_windows(5, 7, (8, 8), (4, 4)) == [(0, 5, 0, 7)]
    # Taller than the crop but narrower: windows shrink in width only.
    assert slide_windows(12, 3, 8, 4) == [(0, 8, 0, 3), (4, 12, 0, 3)]


@pytest.mark.parametrize(
    ("h", "w", "crop", "stride"),
    [(33, 47, (16, 20), (7, 9)), (17, 17, (17, 5), (3, 5)), (101, 11, (10, 11), (10, 1))],
)
def test_window_grid_properties(h, w, crop, stride) -> None:
    boxes = slide_windows(h, w, crop, stride)
    n_h = max(h - crop[0] + stride[0] - 1, 0) // stride[0] + 1
    n_w = max(w - crop[1] + stride[1] - 1, 0) // stride[1] + 1
    assert len(boxes) == n_h * n_w
    covered = np.zeros((h, w), dtype=int)
    for y1, y2, x1, x2 in boxes:
        assert 0 <= y1 < y2 <= h and 0 <= x1 < x2 <= w
        assert (y2 - y1, x2 - x1) == (min(crop[0], h), min(crop[1], w))
        covered[y1:y2, x1:x2] += 1
    assert covered.min() >= 1
    assert boxes[-1][1] == h and boxes[-1][3] == w


def test_window_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="crop_size"):
        slide_windows(10, 10, (0, 4), 2)
    with pytest.raises(ValueError, match="stride"):
        slide_windows(10, 10, 4, (2, 2, 2))


def test_group_windows_only_joins_equal_sizes() -> None:
    boxes = [(0, 4, 0, 4), (0, 4, 2, 6), (0, 4, 4, 8), (0, 3, 0, 4), (1, 4, 0, 3)]
    assert _group_windows(boxes, 2) == [boxes[0:2], boxes[2:3], boxes[3:4], boxes[4:5]]
    assert _group_windows(boxes, 8) == [boxes[0:3], boxes[3:4], boxes[4:5]]


# ---------------------------------------------------------------------------------------------------------
# whole / slide against the explicit loops
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("use_probs", [False, True])
def test_whole_matches_loop(model, image, use_probs) -> None:
    out = whole_inference(model, image, (41, 61), use_probs=use_probs)
    expected = resize(loop_whole(model, image, use_probs), (41, 61))
    assert out.shape == (2, NUM_CLASSES, 41, 61)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_whole_without_out_size_keeps_network_resolution(model, image) -> None:
    out = whole_inference(model, image)
    assert out.shape == (2, NUM_CLASSES, 5, 7)
    torch.testing.assert_close(out, model(image), rtol=0, atol=0)


@pytest.mark.parametrize("use_probs", [False, True])
@pytest.mark.parametrize(("crop", "stride"), [((16, 24), (11, 13)), ((24, 16), (8, 8)), ((40, 20), (9, 17))])
def test_slide_matches_loop(model, image, crop, stride, use_probs) -> None:
    out = slide_inference(model, image, crop, stride, use_probs=use_probs)
    torch.testing.assert_close(out, loop_slide(model, image, crop, stride, use_probs), rtol=0, atol=0)
    resized = slide_inference(model, image, crop, stride, out_size=(30, 60), use_probs=use_probs)
    torch.testing.assert_close(resized, resize(out, (30, 60)), rtol=0, atol=0)


def test_slide_with_large_crop_equals_whole(model, image) -> None:
    slide = slide_inference(model, image, (64, 64), (32, 32))
    whole = whole_inference(model, image, image.shape[2:])
    torch.testing.assert_close(slide, whole, rtol=0, atol=0)
    # With probabilities the two differ by design: whole soft-maxes before the resize, slide after it.
    slide_probs = slide_inference(model, image, (64, 64), (32, 32), use_probs=True)
    torch.testing.assert_close(slide_probs, F.softmax(whole, dim=1), rtol=0, atol=0)
    whole_probs = whole_inference(model, image, image.shape[2:], use_probs=True)
    assert not torch.allclose(slide_probs, whole_probs, atol=1e-4)


def test_slide_rejects_gapped_grid(model, image) -> None:
    with pytest.raises(ValueError, match="leave gaps along the image width"):
        slide_inference(model, image, (40, 20), (9, 30))


@pytest.mark.parametrize("window_batch", [2, 3, 100])
def test_window_batching_equals_one_by_one(model, image, window_batch) -> None:
    calls = []

    def per_sample_model(x):
        # Batch-invariant by construction, so any difference would come from the batching logic itself.
        calls.append(x.shape[0])
        return torch.cat([model(x[i : i + 1]) for i in range(x.shape[0])])

    one = slide_inference(per_sample_model, image, (16, 24), (11, 13), use_probs=True)
    assert calls == [2] * len(calls)
    calls.clear()
    batched = slide_inference(
        per_sample_model, image, (16, 24), (11, 13), use_probs=True, window_batch=window_batch
    )
    n_windows = len(slide_windows(37, 53, (16, 24), (11, 13)))
    assert sum(calls) == 2 * n_windows and max(calls) == 2 * min(window_batch, n_windows)
    torch.testing.assert_close(batched, one, rtol=0, atol=0)
    # With the real batched network, kernels may differ by batch size: allow float rounding only.
    direct = slide_inference(model, image, (16, 24), (11, 13), use_probs=True, window_batch=window_batch)
    reference = slide_inference(model, image, (16, 24), (11, 13), use_probs=True)
    torch.testing.assert_close(direct, reference, rtol=1e-6, atol=1e-6)


def test_probs_differ_from_logits_and_are_normalised(model, image) -> None:
    logits = whole_inference(model, image, (41, 61), use_probs=False)
    probs = whole_inference(model, image, (41, 61), use_probs=True)
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 41, 61))
    # Softmax is taken before the resize: not the same as softmax of the resized logits.
    assert not torch.allclose(probs, F.softmax(logits, dim=1), atol=1e-4)
    slide_probs = slide_inference(model, image, (16, 24), (11, 13), use_probs=True)
    torch.testing.assert_close(slide_probs.sum(1), torch.ones(2, 37, 53))


def test_outputs_are_inference_tensors(model, image) -> None:
    assert whole_inference(model, image, (8, 8)).is_inference()
    assert slide_inference(model, image, 16, 8).is_inference()
    assert ms_flip_inference(model, image, (8, 8), flip=True).is_inference()


def test_bad_image_and_predict_fn_output_are_rejected(model) -> None:
    with pytest.raises(ValueError, match=r"\(N, C, H, W\).*\(3, 8, 8\)"):
        whole_inference(model, torch.zeros(3, 8, 8), (8, 8))
    with pytest.raises(ValueError, match="predict_fn must return"):
        whole_inference(lambda x: x[:, 0], torch.zeros(1, 3, 8, 8), (8, 8))


# ---------------------------------------------------------------------------------------------------------
# multi-scale + flip
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("use_probs", [False, True])
@pytest.mark.parametrize(
    ("mode", "crop", "stride"),
    [("whole", None, None), ("slide", (24, 32), (11, 13)), ("slide", (32, 24), (17, 17))],
)
def test_ms_flip_matches_loop(model, image, mode, crop, stride, use_probs) -> None:
    scales = (0.5, 0.75, 1.0, 1.25)
    out = ms_flip_inference(
        model,
        image,
        (41, 61),
        scales=scales,
        flip=True,
        mode=mode,
        crop_size=crop,
        stride=stride,
        use_probs=use_probs,
    )
    expected = loop_ms_flip(model, image, (41, 61), scales, True, mode, crop, stride, use_probs)
    assert out.shape == (2, NUM_CLASSES, 41, 61)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_ms_flip_single_scale_no_flip_equals_whole(model, image) -> None:
    out = ms_flip_inference(model, image, (41, 61))
    torch.testing.assert_close(out, whole_inference(model, image, (41, 61)), rtol=0, atol=0)


def test_flip_equivariant_predict_fn_gives_same_result_with_flip(image) -> None:
    torch.manual_seed(2)
    pointwise = nn.Conv2d(3, NUM_CLASSES, 1).eval()

    def predict_fn(x):  # per-pixel, hence equivariant to a horizontal flip
        return pointwise(x)

    kwargs = dict(scales=(0.5, 1.0, 1.5), use_probs=True)
    plain = ms_flip_inference(predict_fn, image, (37, 53), flip=False, **kwargs)
    flipped = ms_flip_inference(predict_fn, image, (37, 53), flip=True, **kwargs)
    torch.testing.assert_close(flipped, plain, rtol=1e-5, atol=1e-6)


def position_predict_fn(x: torch.Tensor) -> torch.Tensor:
    """Channel 1 fires on the left half of the frame, channel 2 on the right half (a left/right part pair)."""
    n, _, h, w = x.shape
    left = (torch.arange(w) < w // 2).to(x.dtype).expand(n, 1, h, w)
    content = x[:, :1]
    return torch.cat([content, left, 1 - left, 0.5 * content], dim=1)


def test_lip_pair_swap_restores_left_right_channels() -> None:
    image = torch.randn(1, 3, 6, 10)
    plain = ms_flip_inference(position_predict_fn, image, (6, 10), flip=False)
    swapped = ms_flip_inference(position_predict_fn, image, (6, 10), flip=True, flip_pairs=[(1, 2)])
    unswapped = ms_flip_inference(position_predict_fn, image, (6, 10), flip=True)
    torch.testing.assert_close(swapped, plain, rtol=0, atol=0)
    # Without the swap the flipped pass says "left" on the right: both channels average to 0.5.
    torch.testing.assert_close(unswapped[:, 1:3], torch.full((1, 2, 6, 10), 0.5), rtol=0, atol=0)
    expected = loop_ms_flip(
        position_predict_fn, image, (6, 10), (1.0,), True, "whole", None, None, False, [(1, 2)]
    )
    torch.testing.assert_close(swapped, expected, rtol=0, atol=0)


def test_swap_permutation_follows_reference_semantics() -> None:
    order = _swap_permutation(20, [(14, 15), (16, 17), (18, 19)])
    assert order == list(range(14)) + [15, 14, 17, 16, 19, 18]
    with pytest.raises(ValueError, match="flip_pairs"):
        _swap_permutation(4, [(1, 4)])


def test_ms_flip_argument_checks(model, image) -> None:
    with pytest.raises(ValueError, match="mode"):
        ms_flip_inference(model, image, (8, 8), mode="tile")
    with pytest.raises(ValueError, match="crop_size"):
        ms_flip_inference(model, image, (8, 8), mode="slide")
    with pytest.raises(ValueError, match="scales"):
        ms_flip_inference(model, image, (8, 8), scales=())


def test_run_inference_uses_config(model, image) -> None:
    config = InferenceConfig(mode="slide", scales=[0.75, 1.0], flip=True, crop_size=[24, 32], stride=[11, 13])
    out = run_inference(model, image, (41, 61), config)
    expected = ms_flip_inference(
        model,
        image,
        (41, 61),
        scales=(0.75, 1.0),
        flip=True,
        mode="slide",
        crop_size=(24, 32),
        stride=(11, 13),
    )
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------------------------------------
SIX = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
FIVE = (0.5, 0.75, 1.0, 1.25, 1.5)


@pytest.mark.parametrize(
    ("experiment", "mode", "scales", "crop", "use_probs"),
    [
        ("isnet_r50_d8_ade20k", "whole", SIX, None, True),
        ("isnet_r101_d8_ade20k", "whole", SIX, None, True),
        ("isnet_s101_d8_ade20k", "whole", SIX, None, True),
        ("isnet_r50_d8_cocostuff10k", "whole", FIVE, None, False),
        ("isnet_r101_d8_cocostuff10k", "whole", FIVE, None, False),
        ("isnet_s101_d8_cocostuff10k", "whole", FIVE, None, True),
        ("isnet_r50_d8_cityscapes", "slide", SIX, (512, 1024), True),
        ("isnet_r101_d8_cityscapes", "slide", SIX, (1024, 512), False),
        ("isnet_s101_d8_cityscapes", "slide", SIX, (512, 1024), True),
        ("isnet_r50_d8_lip", "whole", (1.0,), None, False),
        ("isnet_r101_d8_lip", "whole", (1.0,), None, False),
        ("isnet_s101_d8_lip", "whole", (1.0,), None, False),
    ],
)
def test_ms_flip_settings_follow_the_model_zoo(experiment, mode, scales, crop, use_probs) -> None:
    config = test_settings(experiment, ms_flip=True)
    assert (config.mode, config.scales, config.flip, config.crop_size, config.use_probs) == (
        mode,
        scales,
        True,
        crop,
        use_probs,
    )
    assert config.stride == ((341, 341) if mode == "slide" else None)
    assert test_settings(experiment, ms_flip=False) == InferenceConfig()


def test_single_scale_default() -> None:
    assert (SINGLE_SCALE.mode, SINGLE_SCALE.scales, SINGLE_SCALE.flip, SINGLE_SCALE.use_probs) == (
        "whole",
        (1.0,),
        False,
        False,
    )
    assert len(RECIPES) == 12


def test_unknown_experiment_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"isnet_r50_d8_voc.*isnet_r101_d8_ade20k"):
        test_settings("isnet_r50_d8_voc", ms_flip=True)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(mode="tile"), "mode"),
        (dict(scales=[]), "scales"),
        (dict(scales=[1.0, -0.5]), "scales"),
        (dict(mode="slide", crop_size=(512, 512)), "crop_size and stride"),
        (dict(crop_size=(512, 0)), "crop_size"),
        (dict(window_batch=0), "window_batch"),
    ],
)
def test_inference_config_validation(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        InferenceConfig(**kwargs)
