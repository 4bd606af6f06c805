"""Tests for ``isnet.data.transforms`` (reference sssegmentation train/test pipelines)."""

from __future__ import annotations

import copy

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch.utils.data import DataLoader, Dataset

from isnet.data.transforms import (
    CatMaxRatioCrop,
    CenterPad,
    HorizontalFlipSwapPairs,
    PhotoMetricDistortion,
    RandomResizeRatio,
    RandomRotation,
    build_test_transforms,
    build_train_transforms,
    center_pad,
    crop_is_accepted,
    select_crop,
)
from isnet.data.transforms.photometric import convert
from isnet.meta import IMAGENET_MEAN_255, IMAGENET_STD_255, dataset_info
from isnet.meta.datasets import LIP_FLIP_PAIRS

ZOO_DATASETS = ("ade20k", "cocostuff10k", "cityscapes", "lip")
TRAIN_PIPELINES = {name: dataset_info(name).train_pipeline for name in ZOO_DATASETS}
TEST_PIPELINES = {name: dataset_info(name).test_pipeline for name in ZOO_DATASETS}
MEAN = np.array(IMAGENET_MEAN_255)
STD = np.array(IMAGENET_STD_255)
N_DRAWS = 4000


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _expected_keep_ratio_size(h: int, w: int, base: tuple[int, int], r: float) -> tuple[int, int]:
    target = (int(base[0] * r), int(base[1] * r))
    s = min(max(target) / max(h, w), min(target) / min(h, w))
    return int(h * s + 0.5), int(w * s + 0.5)


def _binomial_ok(k: int, n: int, p: float) -> bool:
    """Two-sided exact binomial test at 1%."""
    return stats.binomtest(k, n, p).pvalue > 0.01


# ------------------------------------------------------------------------------------------------
# resize


@pytest.mark.parametrize("hw", [(512, 683), (1024, 2048), (300, 200), (375, 500), (2000, 100), (7, 9)])
@pytest.mark.parametrize("base", [(2048, 512), (2048, 1024)])
@pytest.mark.parametrize("ratio", [0.5, 0.77, 1.0, 1.3333, 1.999])
def test_keep_ratio_resize_matches_formula(hw, base, ratio):
    h, w = hw
    t = RandomResizeRatio(base, ratio_range=(ratio, ratio), p=1.0)
    image = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    out = A.Compose([t])(image=image, mask=mask)
    expected = _expected_keep_ratio_size(h, w, base, ratio)
    assert out["image"].shape == (*expected, 3)
    assert out["mask"].shape == expected


@pytest.mark.parametrize(
    ("hw", "base", "expected"),
    [
        ((512, 683), (2048, 512), (512, 683)),  # ADE: short side already 512
        ((1024, 2048), (2048, 1024), (1024, 2048)),  # Cityscapes unchanged at r=1
        ((300, 200), (2048, 512), (768, 512)),  # s = min(2048/300, 512/200) = 2.56
        ((2000, 100), (2048, 512), (2048, 102)),  # long side caps: s = 1.024, 102.9 -> 102
    ],
)
def test_keep_ratio_resize_hand_values(hw, base, expected):
    t = RandomResizeRatio(base, ratio_range=None)
    out = A.Compose([t])(image=np.zeros((*hw, 3), np.uint8))
    assert out["image"].shape[:2] == expected


def test_resize_uses_linear_for_image_and_nearest_for_mask():
    image = _image(13, 17)
    mask = np.random.default_rng(1).choice(np.array([0, 4, 9, 255], np.uint8), size=(13, 17))
    out = A.Compose([RandomResizeRatio((40, 30), ratio_range=(1.0, 1.0))])(image=image, mask=mask)
    h, w = _expected_keep_ratio_size(13, 17, (40, 30), 1.0)
    np.testing.assert_array_equal(out["image"], cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR))
    np.testing.assert_array_equal(out["mask"], cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST))
    assert set(np.unique(out["mask"])) <= {0, 4, 9, 255}


@pytest.mark.parametrize(
    ("hw", "expected"), [((300, 200), (520, 400)), ((200, 300), (400, 520)), ((50, 50), (400, 520))]
)
def test_resize_without_keep_ratio_follows_image_orientation(hw, expected):
    t = RandomResizeRatio((520, 400), ratio_range=None, keep_ratio=False)
    out = A.Compose([t])(image=np.zeros((*hw, 3), np.uint8))
    assert out["image"].shape[:2] == expected


def test_lip_square_resize_sizes():
    t = RandomResizeRatio((520, 520), ratio_range=(0.75, 1.25), keep_ratio=False)
    t.set_random_seed(0)
    compose = A.Compose([t])
    compose.set_random_state(t.random_generator, t.py_random)
    for _ in range(20):
        out = compose(image=np.zeros((30, 20, 3), np.uint8), mask=np.zeros((30, 20), np.uint8))
        side = int(520 * t.params["ratio"])
        assert 390 <= side <= 649
        assert out["image"].shape[:2] == (side, side) == out["mask"].shape


def test_ratio_draws_are_uniform():
    t = RandomResizeRatio((2048, 512), ratio_range=(0.5, 2.0))
    t.set_random_seed(0)
    ratios = np.array([t.get_params()["ratio"] for _ in range(N_DRAWS)])
    assert ratios.min() >= 0.5 and ratios.max() < 2.0
    assert stats.kstest(ratios, stats.uniform(loc=0.5, scale=1.5).cdf).pvalue > 0.01
    # a wrong range is detected by the same test
    assert stats.kstest(ratios, stats.uniform(loc=0.5, scale=1.0).cdf).pvalue < 1e-6


def test_test_resize_leaves_mask_untouched():
    image = _image(30, 20)
    mask = np.random.default_rng(2).integers(0, 150, (30, 20)).astype(np.uint8)
    out = build_test_transforms(**TEST_PIPELINES["ade20k"])(image=image, mask=mask)
    assert tuple(out["image"].shape) == (3, 768, 512)
    assert out["mask"].dtype == torch.int64
    np.testing.assert_array_equal(out["mask"].numpy(), mask)


@pytest.mark.parametrize(
    ("name", "hw", "expected"),
    [
        ("ade20k", (512, 683), (512, 683)),
        ("cityscapes", (1024, 2048), (1024, 2048)),
        ("lip", (300, 200), (473, 473)),
    ],
)
def test_test_pipeline_values(name, hw, expected):
    image = _image(*hw)
    out = build_test_transforms(**TEST_PIPELINES[name])(image=image)
    resized = cv2.resize(image, (expected[1], expected[0]), interpolation=cv2.INTER_LINEAR)
    want = ((resized.astype(np.float64) - MEAN) / STD).transpose(2, 0, 1)
    assert out["image"].dtype == torch.float32
    assert tuple(out["image"].shape) == (3, *expected)
    np.testing.assert_allclose(out["image"].numpy(), want, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# crop


@pytest.mark.parametrize(
    ("counts", "accepted"),
    [
        ([3, 1], False),
        ([5, 3], True),
        ([4], False),
        ([], False),
        ([2, 1, 1], True),
        ([74, 26], True),
        ([75, 25], False),
    ],
)
def test_crop_acceptance_rule(counts, accepted):
    assert crop_is_accepted(np.array(counts, dtype=np.int64), 0.75) is accepted


class _Scripted:
    """``draw(n)`` that replays fixed values and records the bounds asked for."""

    def __init__(self, values):
        self.values = list(values)
        self.bounds = []

    def __call__(self, n):
        self.bounds.append(n)
        return self.values.pop(0)


def test_select_crop_takes_first_accepted_window():
    # 1x6 label row, crop 1x4: left 0 -> [1,1,1,2] (3/4, rejected), left 1 -> [1,1,2,255] (2/3, accepted)
    mask = np.array([[1, 1, 1, 2, 255, 3]], np.uint8)
    draw = _Scripted([0, 0, 0, 1, 0, 2])
    assert select_crop(mask, (1, 6), (1, 4), draw, 0.75, 255) == (0, 1, 1, 4)
    assert draw.bounds == [1, 3, 1, 3]  # top then left per try, over all valid offsets
    assert draw.values == [0, 2]  # stopped after the accepted try


def test_select_crop_keeps_tenth_window_when_none_accepted():
    mask = np.array([[1, 1, 1, 1, 1, 2]], np.uint8)  # every window has one label or a 3/4 share
    lefts = [0, 1, 2, 0, 1, 2, 0, 1, 2, 1]
    draw = _Scripted([v for left in lefts for v in (0, left)])
    assert select_crop(mask, (1, 6), (1, 4), draw, 0.75, 255) == (0, 1, 1, 4)
    assert draw.values == []  # exactly 10 tries


def test_select_crop_uncropped_when_last_window_is_all_ignore():
    mask = np.array([[255, 255, 255, 255, 1, 2]], np.uint8)
    assert select_crop(mask, (1, 6), (1, 4), _Scripted([0, 0] * 10), 0.75, 255) is None
    # same tries but the 10th window holds one valid label: rejected, yet it is kept
    draw = _Scripted([0, 0] * 9 + [0, 1])
    assert select_crop(mask, (1, 6), (1, 4), draw, 0.75, 255) == (0, 1, 1, 4)


def _independent_crop(mask, crop, rng):
    """The reference loop written out with np.unique; returns (window or None, outcome)."""
    h, w = mask.shape
    ch, cw = min(crop[0], h), min(crop[1], w)
    for _ in range(10):
        top = rng.integers(0, h - ch + 1)
        left = rng.integers(0, w - cw + 1)
        window = mask[top : top + ch, left : left + cw]
        labels, counts = np.unique(window, return_counts=True)
        counts = counts[labels != 255]
        if len(counts) > 1 and counts.max() / counts.sum() < 0.75:
            return (top, left, ch, cw), "accepted"
    if len(counts) == 0:
        return None, "uncropped"
    return (top, left, ch, cw), "tenth"


def test_crop_transform_matches_independent_loop():
    # Labels only in the top-left 8x8 block (1 left of 2): of the 17*23 windows, 24 are accepted
    # (top <= 7, left <= 2), 40 more see valid pixels but are rejected, the rest are all ignore.
    mask = np.full((24, 30), 255, np.uint8)
    mask[:8, :4] = 1
    mask[:8, 4:8] = 2
    image = _image(24, 30)
    t = CatMaxRatioCrop((8, 8), cat_max_ratio=0.75, ignore_index=255)
    outcomes = set()
    for seed in range(200):
        t.set_random_seed(seed)
        rng = copy.deepcopy(t.random_generator)
        out = t(image=image, mask=mask)
        window, outcome = _independent_crop(mask, (8, 8), rng)
        outcomes.add(outcome)
        if window is None:
            np.testing.assert_array_equal(out["mask"], mask)
            np.testing.assert_array_equal(out["image"], image)
            continue
        top, left, ch, cw = window
        np.testing.assert_array_equal(out["mask"], mask[top : top + ch, left : left + cw])
        np.testing.assert_array_equal(out["image"], image[top : top + ch, left : left + cw])
    assert outcomes == {"accepted", "tenth", "uncropped"}


def test_crop_all_ignore_returns_sample_uncropped():
    image, mask = _image(10, 12), np.full((10, 12), 255, np.uint8)
    out = CatMaxRatioCrop((4, 4))(image=image, mask=mask)
    np.testing.assert_array_equal(out["image"], image)
    np.testing.assert_array_equal(out["mask"], mask)


def test_crop_size_is_clipped_to_small_images():
    mask = np.tile(np.array([0, 1, 2, 3, 4], np.uint8), (3, 1))
    out = CatMaxRatioCrop((4, 4))(image=_image(3, 5), mask=mask)
    assert out["image"].shape == (3, 4, 3) and out["mask"].shape == (3, 4)


# ------------------------------------------------------------------------------------------------
# padding


@pytest.mark.parametrize("hw", [(2, 3), (5, 6), (7, 9), (3, 9), (8, 2), (4, 4)])
def test_center_pad_matches_torch_pad(hw):
    size = (5, 6)
    arr = np.arange(hw[0] * hw[1] * 2, dtype=np.float32).reshape(*hw, 2) + 1
    top = (size[0] - hw[0]) // 2
    left = (size[1] - hw[1]) // 2
    pads = (left, size[1] - hw[1] - left, top, size[0] - hw[0] - top)
    want = F.pad(torch.from_numpy(arr).permute(2, 0, 1), pads, value=-7.0).permute(1, 2, 0).numpy()
    got = center_pad(arr, size, -7.0)
    assert got.shape == (*size, 2)
    np.testing.assert_array_equal(got, want)


def test_center_pad_offsets_and_fill_values():
    image = np.ones((2, 3, 3), np.float32)
    mask = np.full((2, 3), 7, np.uint8)
    out = CenterPad((5, 6), ignore_index=255)(image=image, mask=mask)
    # top = (5 - 2) // 2 = 1, left = (6 - 3) // 2 = 1; the rest goes to the bottom/right
    inside = np.zeros((5, 6), bool)
    inside[1:3, 1:4] = True
    assert (out["image"][inside] == 1).all() and (out["image"][~inside] == 0).all()
    assert (out["mask"][inside] == 7).all() and (out["mask"][~inside] == 255).all()


def test_train_pipeline_pads_small_images_centred():
    image = _image(10, 12)
    mask = np.tile(np.arange(12, dtype=np.uint8) % 3, (10, 1))
    t = build_train_transforms(scale=(12, 10), crop_size=(16, 16), ratio_range=(1.0, 1.0), flip_prob=0.0)
    out = t(image=image, mask=mask)
    top, left = (16 - 10) // 2, (16 - 12) // 2
    inside = np.zeros((16, 16), bool)
    inside[top : top + 10, left : left + 12] = True
    m, img = out["mask"].numpy(), out["image"].numpy()
    np.testing.assert_array_equal(m[inside].reshape(10, 12), mask)
    assert (m[~inside] == 255).all()
    assert (img[:, ~inside] == 0).all()


def test_uncropped_fallback_is_centre_cropped_by_padding():
    image = _image(20, 30)
    mask = np.full((20, 30), 255, np.uint8)
    pipeline = A.Compose(
        [
            CatMaxRatioCrop((8, 8)),
            A.Normalize(mean=IMAGENET_MEAN_255, std=IMAGENET_STD_255, max_pixel_value=1.0),
            CenterPad((8, 8)),
        ]
    )
    out = pipeline(image=image, mask=mask)
    # negative padding: top = (8 - 20) // 2 = -6, left = (8 - 30) // 2 = -11
    want = (image[6:14, 11:19].astype(np.float64) - MEAN) / STD
    np.testing.assert_allclose(out["image"], want, atol=1e-5)
    assert (out["mask"] == 255).all() and out["mask"].shape == (8, 8)
    full = build_train_transforms(scale=(30, 20), crop_size=(8, 8), ratio_range=(1.0, 1.0))(
        image=image, mask=mask
    )
    assert tuple(full["image"].shape) == (3, 8, 8) and (full["mask"] == 255).all()


# ------------------------------------------------------------------------------------------------
# flip


def test_flip_swaps_label_pairs():
    mask = np.array([[14, 15, 0], [16, 17, 18], [19, 1, 255]], np.uint8)
    image = _image(3, 3)
    t = HorizontalFlipSwapPairs(LIP_FLIP_PAIRS, p=1.0)
    out = t(image=image, mask=mask)
    np.testing.assert_array_equal(out["mask"], np.array([[0, 14, 15], [19, 16, 17], [255, 1, 18]]))
    np.testing.assert_array_equal(out["image"], image[:, ::-1])
    back = t(image=out["image"], mask=out["mask"])
    np.testing.assert_array_equal(back["mask"], mask)
    np.testing.assert_array_equal(back["image"], image)


def test_flip_probability_is_half():
    for flip in (HorizontalFlipSwapPairs(LIP_FLIP_PAIRS, p=0.5), A.HorizontalFlip(p=0.5)):
        flip.set_random_seed(0)
        image = np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8)
        flips = sum(int(flip(image=image)["image"][0, 0, 0] == 255) for _ in range(N_DRAWS))
        assert _binomial_ok(flips, N_DRAWS, 0.5)


# ------------------------------------------------------------------------------------------------
# rotation


def _rotate(t: RandomRotation, image, mask, angle):
    matrix = t.get_params_dependent_on_data({"angle": angle, "shape": image.shape}, {})["matrix"]
    return t.apply(image, matrix=matrix), t.apply_to_mask(mask, matrix=matrix)


def test_rotation_fill_values():
    t = RandomRotation(ignore_index=255)
    image, mask = np.full((11, 11, 3), 200, np.uint8), np.full((11, 11), 5, np.uint8)
    img_r, mask_r = _rotate(t, image, mask, 29)
    assert (img_r[0, 0] == 0).all() and mask_r[0, 0] == 255 and mask_r[-1, -1] == 255
    assert (img_r[5, 5] == 200).all() and mask_r[5, 5] == 5
    assert set(np.unique(mask_r)) == {5, 255}
    img_0, mask_0 = _rotate(t, image, mask, 0)
    np.testing.assert_array_equal(img_0, image)
    np.testing.assert_array_equal(mask_0, mask)


def test_rotation_is_about_w_half_h_half():
    # 90 degrees about (5, 5) on a 10x10 grid: dst[y, x] = src[x, 10 - y], row 0 comes from outside.
    t = RandomRotation(ignore_index=255)
    mask = np.arange(100, dtype=np.uint8).reshape(10, 10)
    _, rotated = _rotate(t, np.zeros((10, 10, 3), np.uint8), mask, 90)
    want = np.full((10, 10), 255, np.uint8)
    for y in range(1, 10):
        for x in range(10):
            want[y, x] = mask[x, 10 - y]
    np.testing.assert_array_equal(rotated, want)


def test_rotation_angle_and_probability():
    t = RandomRotation(30, p=0.6)
    t.set_random_seed(0)
    angles = np.array([t.get_params()["angle"] for _ in range(N_DRAWS)])
    assert set(angles.tolist()) == set(range(-30, 30))
    assert stats.chisquare(np.bincount(angles + 30)).pvalue > 0.01
    t.set_random_seed(1)
    tiny = np.zeros((2, 2, 3), np.uint8)
    applied = 0
    for _ in range(N_DRAWS):
        t(image=tiny)
        applied += bool(t.params)
    assert _binomial_ok(applied, N_DRAWS, 0.6)


# ------------------------------------------------------------------------------------------------
# photometric distortion


def _reference_photometric(bgr, brightness, contrast_first, contrast, saturation, hue):
    """The reference's maths on a BGR image (cv2 RGB<->HSV applied to BGR data, as it does)."""

    def conv(x, alpha=1, beta=0):
        return np.clip(x.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    img = bgr.copy()
    if brightness is not None:
        img = conv(img, beta=brightness)
    if contrast_first and contrast is not None:
        img = conv(img, alpha=contrast)
    if saturation is not None:
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[..., 1] = conv(hsv[..., 1], alpha=saturation)
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if hue is not None:
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = (hsv[..., 0].astype(int) + hue) % 180
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if not contrast_first and contrast is not None:
        img = conv(img, alpha=contrast)
    return img


@pytest.mark.parametrize(
    "params",
    [
        {"brightness": 17.3, "contrast_first": True, "contrast": 1.31, "saturation": 0.62, "hue": -18},
        {"brightness": -31.9, "contrast_first": False, "contrast": 0.55, "saturation": 1.45, "hue": 17},
        {"brightness": None, "contrast_first": False, "contrast": None, "saturation": None, "hue": 9},
        {"brightness": None, "contrast_first": True, "contrast": None, "saturation": 1.2, "hue": None},
        {"brightness": 3.5, "contrast_first": True, "contrast": None, "saturation": None, "hue": None},
    ],
)
def test_photometric_bit_identical_to_reference_on_bgr(params):
    rgb = _image(23, 19, seed=5)
    ours = PhotoMetricDistortion().apply(rgb.copy(), **params)
    ref = _reference_photometric(rgb[..., ::-1].copy(), **params)[..., ::-1]
    np.testing.assert_array_equal(ours, ref)


def test_photometric_hue_shift_direction_matches_reference_quirk():
    # pure red; the reference's BGR->"RGB2HSV" sees it as blue, so +delta moves the true hue down
    red = np.zeros((1, 1, 3), np.uint8)
    red[..., 0] = 255
    out = PhotoMetricDistortion().apply(red, None, False, None, None, 10)
    true_hue = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)[0, 0, 0]
    assert true_hue == 170


def test_convert_truncates_and_clips():
    x = np.array([[100, 250, 5]], np.uint8)
    np.testing.assert_array_equal(convert(x, beta=0.7), [[100, 250, 5]])
    np.testing.assert_array_equal(convert(x, beta=-0.5), [[99, 249, 4]])
    np.testing.assert_array_equal(convert(x, beta=10.0), [[110, 255, 15]])
    np.testing.assert_array_equal(convert(x, alpha=0.5), [[50, 125, 2]])


def test_photometric_parameter_distributions():
    t = PhotoMetricDistortion()
    t.set_random_seed(0)
    draws = [t.get_params() for _ in range(N_DRAWS)]

    def values(key):
        return np.array([d[key] for d in draws if d[key] is not None])

    for key in ("brightness", "contrast", "saturation", "hue"):
        assert _binomial_ok(len(values(key)), N_DRAWS, 0.5), key
    assert _binomial_ok(sum(d["contrast_first"] for d in draws), N_DRAWS, 0.5)
    brightness = values("brightness")
    assert -32 <= brightness.min() and brightness.max() < 32
    assert stats.kstest(brightness, stats.uniform(loc=-32, scale=64).cdf).pvalue > 0.01
    for key in ("contrast", "saturation"):
        v = values(key)
        assert 0.5 <= v.min() and v.max() < 1.5
        assert stats.kstest(v, stats.uniform(loc=0.5, scale=1.0).cdf).pvalue > 0.01, key
    hue = values("hue")
    assert set(hue.tolist()) == set(range(-18, 18))
    assert stats.chisquare(np.bincount(hue + 18)).pvalue > 0.01


# ------------------------------------------------------------------------------------------------
# end to end + seeding


@pytest.mark.parametrize(
    ("kwargs", "hw", "labels"),
    [
        ({"scale": (128, 32), "crop_size": (32, 32)}, (24, 40), (0, 3, 7)),  # ADE-like
        ({"scale": (128, 64), "crop_size": (16, 32)}, (32, 64), (0, 5, 18)),  # Cityscapes-like
        (
            {
                "scale": (40, 40),
                "crop_size": (36, 36),
                "ratio_range": (0.75, 1.25),
                "flip_pairs": LIP_FLIP_PAIRS,
                "lip": True,
            },
            (30, 20),
            (0, 14, 17, 19),
        ),
    ],
)
def test_train_pipeline_outputs(kwargs, hw, labels):
    rng = np.random.default_rng(3)
    mask = rng.choice(np.array([*labels, 255], np.uint8), size=hw)
    allowed = set(labels) | {255}
    if kwargs.get("lip"):
        allowed |= {b for a, b in LIP_FLIP_PAIRS if a in labels} | {
            a for a, b in LIP_FLIP_PAIRS if b in labels
        }
    t = build_train_transforms(**kwargs)
    t.set_random_seed(0)
    for _ in range(15):
        out = t(image=_image(*hw), mask=mask.astype(np.int64))
        assert out["image"].dtype == torch.float32 and out["mask"].dtype == torch.int64
        assert tuple(out["image"].shape) == (3, *kwargs["crop_size"])
        assert tuple(out["mask"].shape) == kwargs["crop_size"]
        assert set(out["mask"].unique().tolist()) <= allowed


def test_presets_build():
    for name, kwargs in TRAIN_PIPELINES.items():
        assert isinstance(build_train_transforms(**kwargs), A.Compose), name
    for name, kwargs in TEST_PIPELINES.items():
        assert isinstance(build_test_transforms(**kwargs), A.Compose), name


def test_same_seed_same_output_and_shared_generator():
    t = build_train_transforms(**TRAIN_PIPELINES["lip"])
    image, mask = _image(30, 20), np.random.default_rng(0).integers(0, 20, (30, 20)).astype(np.uint8)
    t.set_random_seed(7)
    first = [t(image=image, mask=mask)["mask"] for _ in range(3)]
    t.set_random_seed(7)
    second = [t(image=image, mask=mask)["mask"] for _ in range(3)]
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    generators = {id(tr.random_generator) for tr in t.transforms}
    assert len(generators) == 1  # one stream: the flip and rotation coins are not copies of each other


class _Repeat(Dataset):
    def __init__(self, n: int):
        self.n = n
        self.transform = build_train_transforms(scale=(64, 16), crop_size=(16, 16))
        self.image = _image(16, 24)
        self.mask = np.tile(np.arange(24, dtype=np.uint8) // 8, (16, 1))

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        return self.transform(image=self.image, mask=self.mask)["image"]


@pytest.mark.timeout(120)
def test_dataloader_workers_and_epochs_draw_different_augmentations():
    torch.manual_seed(0)
    loader = DataLoader(_Repeat(4), batch_size=1, num_workers=2)
    epoch1 = [b[0] for b in loader]
    epoch2 = [b[0] for b in loader]
    # samples 0 and 1 are the first items of worker 0 and worker 1
    assert not torch.equal(epoch1[0], epoch1[1])
    assert not torch.equal(epoch1[0], epoch2[0])


# ------------------------------------------------------------------------------------------------
# argument checks


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"crop_size": (512,)}, "crop_size"),
        ({"crop_size": (512, 0)}, "crop_size"),
        ({"scale": "2048"}, "scale"),
        ({"ratio_range": (2.0, 0.5)}, "ratio_range"),
        ({"cat_max_ratio": 0.0}, "cat_max_ratio"),
        ({"flip_prob": 1.5}, "flip_prob"),
        ({"flip_pairs": ((1, 1),)}, "flip_pairs"),
        ({"flip_pairs": ((1, 2), (2, 3))}, "flip pair"),
        ({"flip_pairs": ((1, 255),)}, "ignore_index"),
        ({"ignore_index": 300}, "ignore_index"),
        ({"mean": (1.0, 2.0)}, "mean"),
        ({"std": (0.0, 1.0, 1.0)}, "std"),
        ({"lip": "yes"}, "lip"),
    ],
)
def test_train_builder_rejects_bad_settings(kwargs, setting):
    with pytest.raises(ValueError, match=setting):
        build_train_transforms(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [({"scale": (473, -1)}, "scale"), ({"keep_ratio": 1}, "keep_ratio"), ({"std": [1, 2]}, "std")],
)
def test_test_builder_rejects_bad_settings(kwargs, setting):
    with pytest.raises(ValueError, match=setting):
        build_test_transforms(**kwargs)


def test_builders_accept_lists():
    t = build_train_transforms(
        scale=[64, 16], crop_size=[16, 16], ratio_range=[0.5, 2.0], flip_pairs=[[1, 2]]
    )
    out = t(image=_image(16, 24), mask=np.zeros((16, 24), np.uint8))
    assert tuple(out["image"].shape) == (3, 16, 16)


# ------------------------------------------------------------------------------------------------
# parity with the reference implementation (needs ISNET_REFERENCE_SRC = folder containing ssseg/)


def _load_reference_transforms():
    """Load ``ssseg/modules/datasets/pipelines/transforms.py`` alone, stubbing its two package imports."""
    import os
    import types
    from pathlib import Path

    root = Path(os.environ["ISNET_REFERENCE_SRC"]) / "ssseg" / "modules" / "datasets" / "pipelines"
    misc = types.ModuleType("isnet_ref_pipelines_misc")
    exec(compile((root / "misc.py").read_text(), str(root / "misc.py"), "exec"), misc.__dict__)
    source = (root / "transforms.py").read_text()
    source = source.replace("from ...utils import BaseModuleBuilder", "BaseModuleBuilder = object")
    source = "\n".join(
        "from isnet_ref_pipelines_misc import *" if line.startswith("from .misc import") else line
        for line in source.splitlines()
    )
    module = types.ModuleType("isnet_ref_pipelines_transforms")
    import sys

    sys.modules["isnet_ref_pipelines_misc"] = misc
    exec(compile(source, str(root / "transforms.py"), "exec"), module.__dict__)
    return module


def _has_reference() -> bool:
    import os

    return bool(os.environ.get("ISNET_REFERENCE_SRC"))


parity = pytest.mark.skipif(
    not _has_reference(), reason="set ISNET_REFERENCE_SRC to a sssegmentation checkout"
)


@pytest.fixture(scope="module")
def ref():
    return _load_reference_transforms()


def _to_ref_label(mask: np.ndarray) -> np.ndarray:
    out = mask.astype(np.float32)
    out[mask == 255] = -100
    return out


def _from_ref_label(label) -> np.ndarray:
    label = np.asarray(label).copy()
    label[label == -100] = 255
    return label.astype(np.int64)


@pytest.mark.parity
@parity
@pytest.mark.parametrize("hw", [(512, 683), (300, 200), (97, 129)])
def test_parity_resize(ref, hw):
    rng = np.random.default_rng(0)
    for base, keep in [((2048, 512), True), ((2048, 1024), True), ((520, 520), False)]:
        for r in rng.uniform(0.5, 2.0, 3):
            img, mask = _image(*hw), rng.integers(0, 20, hw).astype(np.uint8)
            target = (int(base[0] * r), int(base[1] * r))
            sample = {"image": img[..., ::-1].copy(), "seg_target": mask.astype(np.float32)}
            want = ref.Resize(target, keep_ratio=keep, scale_range=None)(sample)
            got = A.Compose([RandomResizeRatio(base, (r, r), keep_ratio=keep)])(image=img, mask=mask)
            np.testing.assert_array_equal(got["image"], want["image"][..., ::-1])
            np.testing.assert_array_equal(got["mask"], want["seg_target"])


@pytest.mark.parity
@parity
def test_parity_crop(ref):
    for seed in range(100):
        q = np.random.default_rng(seed)
        mask = np.full((60, 70), 255, np.uint8)
        for _ in range(int(q.integers(0, 5))):
            y, x = q.integers(0, 60), q.integers(0, 70)
            mask[y : y + q.integers(5, 40), x : x + q.integers(5, 40)] = q.integers(0, 4)
        np.random.seed(seed)
        want = ref.RandomCrop((32, 48), ignore_index=-100)(
            {"image": _image(60, 70), "seg_target": _to_ref_label(mask)}
        )
        replay = np.random.RandomState(seed)
        window = select_crop(mask, (60, 70), (32, 48), lambda n, rs=replay: rs.randint(0, n), 0.75, 255)
        got = (
            mask
            if window is None
            else mask[window[0] : window[0] + window[2], window[1] : window[1] + window[3]]
        )
        np.testing.assert_array_equal(got, _from_ref_label(want["seg_target"]))


@pytest.mark.parity
@parity
def test_parity_photometric(ref, monkeypatch):
    for seed in range(100):
        img = _image(20, 24, seed=seed)
        log = []
        randint, uniform = np.random.randint, np.random.uniform

        def logged(fn, log=log):
            def wrapper(*args, **kwargs):
                value = fn(*args, **kwargs)
                log.append(value)
                return value

            return wrapper

        np.random.seed(seed)
        monkeypatch.setattr(np.random, "randint", logged(randint))
        monkeypatch.setattr(np.random, "uniform", logged(uniform))
        want = ref.PhotoMetricDistortion()({"image": img[..., ::-1].copy()})["image"][..., ::-1]
        monkeypatch.undo()
        # replay the reference's draws (its call order) as our parameters
        draws = iter(log)
        params = {"brightness": None, "contrast": None, "saturation": None, "hue": None}
        if next(draws):
            params["brightness"] = next(draws)
        mode = next(draws)
        params["contrast_first"] = mode == 1
        if mode == 1 and next(draws):
            params["contrast"] = next(draws)
        if next(draws):
            params["saturation"] = next(draws)
        if next(draws):
            params["hue"] = int(next(draws))
        if mode == 0 and next(draws):
            params["contrast"] = next(draws)
        np.testing.assert_array_equal(PhotoMetricDistortion().apply(img, **params), want)


@pytest.mark.parity
@parity
def test_parity_rotation(ref):
    t = RandomRotation()
    for seed in range(30):
        img, mask = (
            _image(33, 40, seed=seed),
            np.random.default_rng(seed).integers(0, 20, (33, 40)).astype(np.uint8),
        )
        np.random.seed(seed)
        want = ref.RandomRotation(prob=1.0, angle_upper=30)(
            {"image": img[..., ::-1].copy(), "seg_target": mask.astype(np.float32)}
        )
        np.random.seed(seed)
        np.random.rand()
        angle = np.random.randint(-30, 30)
        got_img, got_mask = _rotate(t, img, mask, angle)
        np.testing.assert_array_equal(got_img, want["image"][..., ::-1])
        np.testing.assert_array_equal(got_mask, _from_ref_label(want["seg_target"]))


@pytest.mark.parity
@parity
@pytest.mark.parametrize("hw", [(10, 12), (20, 30), (7, 40), (16, 16)])
def test_parity_normalize_and_padding(ref, hw):
    img, mask = _image(*hw), np.random.default_rng(1).integers(0, 20, hw).astype(np.uint8)
    sample = {"image": img[..., ::-1].copy(), "seg_target": mask.astype(np.float32)}
    sample = ref.Normalize(list(IMAGENET_MEAN_255), list(IMAGENET_STD_255))(sample)
    sample = ref.Padding((16, 16), data_type="tensor")(ref.ToTensor()(sample))
    pipeline = A.Compose(
        [
            A.Normalize(mean=IMAGENET_MEAN_255, std=IMAGENET_STD_255, max_pixel_value=1.0),
            CenterPad((16, 16)),
        ]
    )
    got = pipeline(image=img, mask=mask)
    np.testing.assert_allclose(got["image"].transpose(2, 0, 1), sample["image"].numpy(), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(got["mask"], _from_ref_label(sample["seg_target"].numpy()))
