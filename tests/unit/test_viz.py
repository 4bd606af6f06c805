"""Colour masks, overlays, de-normalisation, labelled prediction panels, curve and metric plots."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from isnet.viz import (
    colorize,
    confusion_matrix_figure,
    default_palette,
    denormalize,
    overlay,
    per_class_iou_figure,
    plot_curves,
    prediction_panel,
    save_figure,
    save_image,
)

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


def test_save_image(tmp_path) -> None:
    image = np.zeros((4, 7, 3), np.uint8)
    image[:, 3:5] = 255
    path = save_image(tmp_path / "sub" / "x.png", image)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), image)


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


NAMES = ["road", "car", "sky", "tree"]
PANEL_PALETTE = [(200, 10, 10), (10, 200, 10), (10, 10, 200), (250, 250, 0)]


def _pixels_of(image: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int((image == np.asarray(colour, dtype=np.uint8)).all(axis=-1).sum())


def test_prediction_panel_shape_and_legend_of_present_classes() -> None:
    # A grey image and a half-transparent overlay: the exact palette colours can only come from legend patches.
    image = np.full((24, 32, 3), 128, dtype=np.uint8)
    label = np.zeros((24, 32), dtype=np.int64)
    label[:, 16:] = 1
    label[:3] = 255
    pred = np.zeros((24, 32), dtype=np.int64)
    pred[:, 20:] = 2
    panel = prediction_panel(
        image, label, pred, NAMES, PANEL_PALETTE, title="sample", alpha=0.5, panel_height=64
    )
    assert panel.dtype == np.uint8 and panel.ndim == 3 and panel.shape[2] == 3
    for present in (0, 1, 2):  # 1 only in the label, 2 only in the prediction
        assert _pixels_of(panel, PANEL_PALETTE[present]) >= 20, NAMES[present]
    assert _pixels_of(panel, PANEL_PALETTE[3]) == 0  # "tree" is in neither: no legend entry

    without_label = prediction_panel(image, None, pred, NAMES, PANEL_PALETTE, alpha=0.5, panel_height=64)
    assert without_label.dtype == np.uint8 and without_label.shape[0] < panel.shape[0] + 1
    assert without_label.shape[1] < panel.shape[1]  # two panels instead of three
    assert _pixels_of(without_label, PANEL_PALETTE[1]) == 0  # "car" was only in the label
    assert _pixels_of(without_label, PANEL_PALETTE[2]) >= 20


def test_prediction_panel_shows_the_masks() -> None:
    image = np.zeros((16, 16, 3), dtype=np.uint8)
    pred = np.full((16, 16), 3, dtype=np.int64)
    opaque = prediction_panel(image, None, pred, NAMES, PANEL_PALETTE, alpha=1.0, panel_height=64)
    # opaque masks: the 64x64 prediction panel itself carries the colour, far more than a legend patch
    assert _pixels_of(opaque, PANEL_PALETTE[3]) >= 64 * 64
    torch_input = prediction_panel(torch.from_numpy(image), None, torch.from_numpy(pred), NAMES, PANEL_PALETTE,
                                   alpha=1.0, panel_height=64)  # fmt: skip
    np.testing.assert_array_equal(torch_input, opaque)


def test_prediction_panel_rejects_bad_input() -> None:
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    mask = np.zeros((8, 8), dtype=np.int64)
    with pytest.raises(ValueError, match=r"\(8, 8, 3\).*\(8, 7\)"):  # the image's and the prediction's shapes
        prediction_panel(image, mask, mask[:, :7], NAMES, PANEL_PALETTE)
    with pytest.raises(ValueError, match="class_names has 3 entries but palette has 4 colours"):
        prediction_panel(image, mask, mask, NAMES[:3], PANEL_PALETTE)
    with pytest.raises(ValueError, match=r"mask values \[7\] have no colour"):
        prediction_panel(image, mask, np.full((8, 8), 7), NAMES, PANEL_PALETTE)
    with pytest.raises(ValueError, match="panel_height must be an int >= 16"):
        prediction_panel(image, mask, mask, NAMES, PANEL_PALETTE, panel_height=4)


def test_per_class_iou_figure_sorts_and_marks_absent_classes(tmp_path) -> None:
    iou = {"road": 0.5, "car": float("nan"), "sky": 0.9, "tree": 0.0, "wall": None}
    fig = per_class_iou_figure(iou)
    ax = fig.axes[0]
    bars = sorted(ax.patches, key=lambda bar: -bar.get_y())  # top to bottom
    assert [bar.get_width() for bar in bars] == pytest.approx([90.0, 50.0, 0.0])
    labels = sorted(ax.get_yticklabels(), key=lambda t: -t.get_position()[1])
    assert [t.get_text() for t in labels] == ["sky", "road", "tree", "car (absent)", "wall (absent)"]
    assert "mIoU 46.67 over 3 classes" in ax.get_title()
    path = save_figure(fig, tmp_path / "iou.png")
    with Image.open(path) as img:
        assert img.format == "PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["iou.png"]  # the temporary file was renamed


def test_confusion_matrix_figure_is_row_normalised() -> None:
    counts = torch.tensor([[6, 2, 0], [0, 0, 0], [1, 1, 8]])
    fig, normalised = confusion_matrix_figure(counts, ["a", "b", "c"])
    expected = [[0.75, 0.25, 0.0], [math.nan] * 3, [0.1, 0.1, 0.8]]
    np.testing.assert_allclose(normalised, expected, rtol=1e-12)  # the label-free row is NaN (drawn blank)
    ax = fig.axes[0]
    drawn = ax.images[0].get_array()
    np.testing.assert_allclose(drawn.filled(np.nan), expected, rtol=1e-12)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]

    many = np.eye(41, dtype=np.int64) * 3
    fig, normalised = confusion_matrix_figure(many, [f"c{k}" for k in range(41)])
    np.testing.assert_array_equal(normalised, np.eye(41))
    assert list(fig.axes[0].get_xticks()) == [] and list(fig.axes[0].get_yticks()) == []
