"""Pictures of segmentation results: colour masks, overlays and training curves.

Palettes are lists of RGB triples indexed by class id (the datasets' ``palette`` attribute); the ignore value
(255) gets its own colour so that unlabelled pixels never look like a class.
"""

from __future__ import annotations

import colorsys
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "colorize",
    "default_palette",
    "denormalize",
    "overlay",
    "plot_curves",
    "save_image",
    "side_by_side",
]

#: Colour of ignored pixels (label 255) in colour masks.
IGNORE_COLOUR = (0, 0, 0)


def default_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """A deterministic palette with well separated hues, for data sets that define none.

    Args:
        num_classes: Number of colours K.

    Returns:
        K RGB triples in 0..255.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    golden = 0.618033988749895  # golden-ratio hue steps keep neighbouring ids far apart in colour
    colours = []
    for k in range(num_classes):
        hue = (k * golden) % 1.0
        value = 0.95 if k % 2 == 0 else 0.7
        r, g, b = colorsys.hsv_to_rgb(hue, 0.8, value)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours


def _palette_array(palette: Sequence[Sequence[int]]) -> np.ndarray:
    array = np.asarray(palette, dtype=np.int64)
    if array.ndim != 2 or array.shape[1] != 3 or array.shape[0] == 0:
        raise ValueError(f"palette must be a non-empty list of [r, g, b] triples, got shape {array.shape}")
    if array.min() < 0 or array.max() > 255:
        raise ValueError("palette colours must lie in 0..255")
    return array.astype(np.uint8)


def _to_numpy(array: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def colorize(
    mask: np.ndarray | torch.Tensor,
    palette: Sequence[Sequence[int]],
    ignore_index: int = 255,
    ignore_colour: Sequence[int] = IGNORE_COLOUR,
) -> np.ndarray:
    """Turn a class-id mask into an RGB image.

    Args:
        mask: Class ids in ``[0, K)`` or ``ignore_index``.
        palette: K RGB triples.
        ignore_index: Value drawn with ``ignore_colour``.
        ignore_colour: RGB of ignored pixels.

    Returns:
        uint8 RGB image.

    Shape:
        mask ``(H, W)`` -> output ``(H, W, 3)``.

    Raises:
        ValueError: A mask value is neither a class of the palette nor ``ignore_index``.
    """
    ids = _to_numpy(mask).astype(np.int64)
    if ids.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {ids.shape}")
    colours = _palette_array(palette)
    ignored = ids == ignore_index
    bad = ~ignored & ((ids < 0) | (ids >= len(colours)))
    if bad.any():
        values = np.unique(ids[bad])[:10].tolist()
        raise ValueError(f"mask values {values} have no colour in a palette of {len(colours)} classes")
    out = colours[np.where(ignored, 0, ids)]
    out[ignored] = np.asarray(ignore_colour, dtype=np.uint8)
    return out


def denormalize(
    image: torch.Tensor | np.ndarray,
    mean: Sequence[float] = (123.675, 116.28, 103.53),
    std: Sequence[float] = (58.395, 57.12, 57.375),
) -> np.ndarray:
    """Undo the ImageNet normalisation of a model input.

    Args:
        image: Normalised RGB image (channels first).
        mean: Mean in 0-255 units (RGB).
        std: Std in 0-255 units (RGB).

    Returns:
        uint8 RGB image.

    Shape:
        image ``(3, H, W)`` -> output ``(H, W, 3)``.
    """
    array = _to_numpy(image).astype(np.float64)
    if array.ndim != 3 or array.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W), got shape {array.shape}")
    array = array * np.asarray(std)[:, None, None] + np.asarray(mean)[:, None, None]
    return np.clip(np.rint(array), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def overlay(
    image: np.ndarray,
    mask: np.ndarray | torch.Tensor,
    palette: Sequence[Sequence[int]],
    alpha: float = 0.5,
    ignore_index: int = 255,
) -> np.ndarray:
    """Blend a colour mask over an RGB image; ignored pixels keep the image.

    Args:
        image: uint8 RGB image ``(H, W, 3)``.
        mask: Class ids ``(H, W)``.
        palette: K RGB triples.
        alpha: Weight of the mask colour (0 = image only, 1 = mask only).
        ignore_index: Pixels left uncoloured.

    Returns:
        uint8 RGB image ``(H, W, 3)``.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    image = np.asarray(image)
    ids = _to_numpy(mask)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[:2] != ids.shape:
        raise ValueError(f"image {image.shape} and mask {ids.shape} must be (H, W, 3) and (H, W)")
    colour = colorize(ids, palette, ignore_index).astype(np.float64)
    blended = (1.0 - alpha) * image.astype(np.float64) + alpha * colour
    blended[ids == ignore_index] = image[ids == ignore_index]
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def side_by_side(*images: np.ndarray, gap: int = 4) -> np.ndarray:
    """Concatenate RGB images of equal height horizontally with a white gap."""
    if not images:
        raise ValueError("side_by_side needs at least one image")
    height = images[0].shape[0]
    if any(img.shape[0] != height for img in images):
        raise ValueError(f"images must share their height, got {[img.shape for img in images]}")
    spacer = np.full((height, gap, 3), 255, dtype=np.uint8)
    parts: list[np.ndarray] = []
    for i, img in enumerate(images):
        if i:
            parts.append(spacer)
        parts.append(img.astype(np.uint8))
    return np.concatenate(parts, axis=1)


def save_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a uint8 RGB ``(H, W, 3)`` or grey ``(H, W)`` image as PNG (folders are created)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(path)
    return path


def plot_curves(history: Mapping[str, Any], path: str | os.PathLike, title: str | None = None) -> Path:
    """Plot the training loss and the validation mIoU over epochs into one PNG.

    Args:
        history: ``{"epoch": [...], "train_loss": [...], "val_epoch": [...], "val_mIoU": [...]}`` (mIoU in
            0..1); as written by :class:`isnet.lit.callbacks.MetricsHistory`. ``train_step``/``train_step_loss``
            add the per-step loss when present.
        path: Output PNG.
        title: Figure title.

    Returns:
        The written path.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax_loss, ax_miou) = plt.subplots(1, 2, figsize=(10, 3.8))
    if history.get("train_step"):
        ax_loss.plot(
            np.asarray(history["train_step"]) / max(history.get("steps_per_epoch", 1), 1),
            history["train_step_loss"],
            color="tab:blue",
            alpha=0.3,
            linewidth=0.8,
            label="per step",
        )
    if history.get("epoch"):
        ax_loss.plot(np.asarray(history["epoch"]) + 1, history["train_loss"], "o-", color="tab:blue",
                     label="epoch mean")  # fmt: skip
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("train loss")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend(loc="upper right")
    if history.get("val_epoch"):
        ax_miou.plot(np.asarray(history["val_epoch"]) + 1, 100 * np.asarray(history["val_mIoU"], dtype=float),
                     "o-", color="tab:green")  # fmt: skip
    ax_miou.set_xlabel("epoch")
    ax_miou.set_ylabel("val mIoU (%)")
    ax_miou.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
