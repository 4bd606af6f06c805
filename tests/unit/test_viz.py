"""Colour masks, overlays, de-normalisation and curve plots."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from isnet.viz import colorize, default_palette, denormalize, overlay, plot_curves, save_image, side_by_side

PALETTE = [(10, 20, 30), (200, 0, 0), (0, 255, 0)]


def test_colorize_maps_ids_and_ignore() -> None:
    mask = torch.tensor([[0, 1], [2, 255]])
    out = colorize(mask, PALETTE, ignore_colour=(1, 2, 3))
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    assert out[0, 0].tolist() == [10, 20, 30]
    assert out[0, 1].tolist() == [200, 0, 0]
    assert out[1, 0].tolist() == [0, 255, 0]
    assert out[1, 1].tolist() == [1, 2, 3]


def test_colorize_rejects_ids_without_colour() -> None:
    with pytest.raises(ValueError, match=r"mask values \[3, 7\] have no colour in a palette of 3 classes"):
        colorize(np.array([[0, 3], [7, 1]]), PALETTE)
    with pytest.raises(ValueError, match="palette must be"):
        colorize(np.zeros((2, 2), int), [(1, 2)])


def test_overlay_blends_and_keeps_ignored_pixels() -> None:
    image = np.full((2, 3, 3), 100, dtype=np.uint8)
    mask = np.array([[1, 1, 255], [0, 2, 2]])
    out = overlay(image, mask, PALETTE, alpha=0.25)
    # 0.75 * 100 + 0.25 * colour, rounded
    assert out[0, 0].tolist() == [125, 75, 75]
    assert out[1, 0].tolist() == [78, 80, 82]
    assert out[0, 2].tolist() == [100, 100, 100]
    assert overlay(image, mask, PALETTE, alpha=1.0)[1, 1].tolist() == [0, 255, 0]
    with pytest.raises(ValueError, match="alpha must be in"):
        overlay(image, mask, PALETTE, alpha=1.5)
    with pytest.raises(ValueError, match="must be"):
        overlay(image, mask[:, :2], PALETTE)


def test_denormalize_inverts_the_input_normalisation() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3)).astype(np.uint8)
    mean = np.array([123.675, 116.28, 103.53])
    std = np.array([58.395, 57.12, 57.375])
    normalised = torch.from_numpy(((rgb - mean) / std).transpose(2, 0, 1)).float()
    np.testing.assert_array_equal(denormalize(normalised), rgb)


def test_default_palette_is_distinct_and_deterministic() -> None:
    palette = default_palette(40)
    assert len(palette) == 40 and len(set(palette)) == 40
    assert palette == default_palette(40)
    assert all(0 <= c <= 255 for colour in palette for c in colour)
    with pytest.raises(ValueError, match="num_classes"):
        default_palette(0)


def test_side_by_side_and_save(tmp_path) -> None:
    a = np.zeros((4, 3, 3), np.uint8)
    b = np.full((4, 2, 3), 9, np.uint8)
    joined = side_by_side(a, b, gap=2)
    assert joined.shape == (4, 7, 3)
    assert joined[:, 3:5].min() == 255 and joined[:, 5:].max() == 9
    path = save_image(tmp_path / "sub" / "x.png", joined)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), joined)
    with pytest.raises(ValueError, match="share their height"):
        side_by_side(a, np.zeros((5, 2, 3), np.uint8))


def test_plot_curves_writes_png(tmp_path) -> None:
    history = {
        "train_step": [0, 1, 2, 3],
        "train_step_loss": [2.0, 1.5, 1.2, 1.0],
        "epoch": [0, 1],
        "train_loss": [1.75, 1.1],
        "val_epoch": [1],
        "val_mIoU": [0.4],
        "steps_per_epoch": 2,
    }
    path = plot_curves(history, tmp_path / "curves.png", title="demo")
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] > 300
