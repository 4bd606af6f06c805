"""Pictures of segmentation results: colour masks, overlays, labelled panels, training curves and metric plots.

Palettes are lists of RGB triples indexed by class id. Figures are matplotlib ``Figure`` objects drawn without
pyplot state, so callbacks and worker processes can draw safely.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from isnet.meta import IMAGENET_MEAN_255, IMAGENET_STD_255, default_palette
from isnet.utils.io import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "colorize",
    "confusion_matrix_figure",
    "default_palette",
    "denormalize",
    "overlay",
    "per_class_iou_figure",
    "plot_curves",
    "plot_run_curves",
    "prediction_panel",
    "save_figure",
    "save_image",
]


def _palette_array(palette: Sequence[Sequence[int]]) -> np.ndarray:
    array = np.asarray(palette, dtype=np.int64)
    if array.ndim != 2 or array.shape[1] != 3 or not array.size or array.min() < 0 or array.max() > 255:
        raise ValueError(f"palette must be a non-empty list of [r, g, b] triples in 0..255, got {palette!r}")
    return array.astype(np.uint8)


def _to_numpy(array: np.ndarray | torch.Tensor) -> np.ndarray:
    return array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)


def colorize(
    mask: np.ndarray | torch.Tensor,
    palette: Sequence[Sequence[int]],
    ignore_index: int = 255,
    ignore_colour: Sequence[int] = (0, 0, 0),
) -> np.ndarray:
    """Turn a class-id mask ``(H, W)`` (ids in ``[0, K)`` or ``ignore_index``) into uint8 RGB ``(H, W, 3)``.

    Args:
        mask: Class ids.
        palette: K RGB triples.
        ignore_index: Value drawn with ``ignore_colour``.
        ignore_colour: RGB of ignored pixels.

    Raises:
        ValueError: A mask value is neither a class of the palette nor ``ignore_index``.
    """
    ids = _to_numpy(mask).astype(np.int64)
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
    mean: Sequence[float] = IMAGENET_MEAN_255,
    std: Sequence[float] = IMAGENET_STD_255,
) -> np.ndarray:
    """Undo the normalisation (``mean``/``std`` in 0-255 units) of a model input ``(3, H, W)``.

    Returns: uint8 RGB ``(H, W, 3)``.
    """
    array = _to_numpy(image).astype(np.float64)
    array = array * np.asarray(std)[:, None, None] + np.asarray(mean)[:, None, None]
    return np.clip(np.rint(array), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def overlay(
    image: np.ndarray,
    mask: np.ndarray | torch.Tensor,
    palette: Sequence[Sequence[int]],
    alpha: float = 0.5,
    ignore_index: int = 255,
) -> np.ndarray:
    """Blend the colour mask of ``mask`` ``(H, W)`` over a uint8 RGB ``image`` ``(H, W, 3)``.

    ``alpha`` is the weight of the mask colour (0 = image only, 1 = mask only); ignored pixels keep the image.
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


def save_image(path: str | os.PathLike, image: np.ndarray, overwrite: bool = True) -> Path:
    """Write a uint8 RGB ``(H, W, 3)`` or grey ``(H, W)`` image as PNG atomically (folders are created);
    ``overwrite=False``: a FileExistsError instead of replacing an existing file."""
    from PIL import Image

    with atomic_path(path, overwrite) as tmp:
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(tmp)
    return Path(path)


def plot_curves(history: Mapping[str, Any], path: str | os.PathLike, title: str | None = None) -> Path:
    """Plot the training loss and the validation mIoU over epochs into one PNG (written atomically).

    Args:
        history: ``{"epoch", "train_loss", "val_epoch", "val_mIoU" (0..1)}`` lists, with optional per-step
            ``train_step``/``train_step_loss``, as written by :class:`isnet.lit.callbacks.MetricsHistory`.
        path: Output PNG.
        title: Figure title.
    """
    fig = _new_figure(10, 3.8)
    ax_loss, ax_miou = fig.subplots(1, 2)
    if history.get("train_step"):
        steps = np.asarray(history["train_step"]) / max(history.get("steps_per_epoch", 1), 1)
        ax_loss.plot(
            steps, history["train_step_loss"], color="tab:blue", alpha=0.3, linewidth=0.8, label="per step"
        )
    if history.get("epoch"):
        epochs = np.asarray(history["epoch"]) + 1
        ax_loss.plot(epochs, history["train_loss"], "o-", color="tab:blue", label="epoch mean")
    ax_loss.legend(loc="upper right")
    if history.get("val_epoch"):
        miou = 100 * np.asarray(history["val_mIoU"], dtype=float)
        ax_miou.plot(np.asarray(history["val_epoch"]) + 1, miou, "o-", color="tab:green")
    for ax, label in ((ax_loss, "train loss"), (ax_miou, "val mIoU (%)")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_run_curves(
    histories: Mapping[str, Mapping[str, Any]], path: str | os.PathLike, title: str | None = None
) -> Path:
    """Overlay the training loss and validation mIoU curves of several runs in one PNG (written atomically).

    Args:
        histories: Run label -> history as :func:`plot_curves` takes it (per-epoch ``epoch``/``train_loss`` and
            ``val_epoch``/``val_mIoU``; per-step values are left out to keep the lines readable).
        path: Output PNG.
        title: Figure title.
    """
    from matplotlib.ticker import MaxNLocator

    fig = _new_figure(11, 4.2)
    ax_loss, ax_miou = fig.subplots(1, 2)
    colours = [f"C{i % 10}" for i in range(len(histories))]
    for colour, (label, history) in zip(colours, histories.items()):
        if history.get("epoch"):
            epochs = np.asarray(history["epoch"]) + 1
            ax_loss.plot(epochs, history["train_loss"], "o-", color=colour, markersize=3, label=label)
        if history.get("val_epoch"):
            miou = 100 * np.asarray(history["val_mIoU"], dtype=float)
            epochs = np.asarray(history["val_epoch"]) + 1
            ax_miou.plot(epochs, miou, "o-", color=colour, markersize=3, label=label)
    for ax, label in ((ax_loss, "train loss (epoch mean)"), (ax_miou, "val mIoU (%)")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def prediction_panel(
    image: np.ndarray | torch.Tensor,
    label: np.ndarray | torch.Tensor | None,
    pred: np.ndarray | torch.Tensor,
    class_names: Sequence[str],
    palette: Sequence[Sequence[int]],
    ignore_index: int = 255,
    title: str | None = None,
    alpha: float = 0.5,
    panel_height: int = 256,
) -> np.ndarray:
    """Draw ``image | ground truth | prediction`` with titles and a legend of the classes shown.

    The legend lists only the classes present in the label or the prediction, so a picture of a 150-class data
    set stays readable; its patches carry the exact palette colours, the masks are blended with ``alpha``.

    Args:
        image: uint8 RGB image ``(H, W, 3)`` (e.g. from :func:`denormalize`).
        label: Ground-truth class ids ``(H, W)``, or ``None`` to draw ``image | prediction`` only.
        pred: Predicted class ids ``(H, W)``.
        class_names: K names, indexed by class id.
        palette: K RGB triples.
        ignore_index: Label value left uncoloured (the image shows through).
        title: Figure title (e.g. the sample name).
        alpha: Mask opacity in ``[0, 1]``.
        panel_height: Height in pixels at which each panel is drawn (aspect ratio kept).

    Returns:
        uint8 RGB array ``(H', W', 3)`` of the whole figure.
    """
    rgb = _to_numpy(image).astype(np.uint8)
    prediction = _to_numpy(pred).astype(np.int64)
    truth = None if label is None else _to_numpy(label).astype(np.int64)
    colours = _palette_array(palette)
    if len(class_names) != len(colours):
        raise ValueError(f"class_names has {len(class_names)} entries but palette has {len(colours)} colours")
    if isinstance(panel_height, bool) or not isinstance(panel_height, int) or panel_height < 16:
        raise ValueError(f"panel_height must be an int >= 16, got {panel_height!r}")

    masks = ([("ground truth", truth)] if truth is not None else []) + [("prediction", prediction)]
    panels = [("image", rgb)] + [(name, overlay(rgb, m, colours, alpha, ignore_index)) for name, m in masks]
    present_ids = sorted(set().union(*(np.unique(m[m != ignore_index]).tolist() for _, m in masks)))

    from matplotlib.patches import Patch
    from PIL import Image

    height, width = rgb.shape[:2]
    panel_w = panel_height * width / height / 100.0
    panel_h = panel_height / 100.0
    # legend entries in as many columns as the figure width holds (patch + name at fontsize 8: ~0.07 in/char)
    entry_w = 0.45 + 0.07 * max((len(str(class_names[k])) for k in present_ids), default=1)
    columns = max(1, min(len(present_ids), int(len(panels) * (panel_w + 0.1) / entry_w)))
    legend_h = 0.25 * math.ceil(len(present_ids) / columns) + 0.2
    total_h = panel_h + legend_h + 0.35 + (0.3 if title else 0.0)  # panels, legend, titles
    fig = _new_figure(len(panels) * (panel_w + 0.1) + 0.1, total_h)
    for i, (name, array) in enumerate(panels):
        left = (0.1 + i * (panel_w + 0.1)) / fig.get_figwidth()
        ax = fig.add_axes((left, legend_h / total_h, panel_w / fig.get_figwidth(), panel_h / total_h))
        ax.imshow(array, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=11, y=1.0 - 0.05 / total_h, va="top")
    handles = [
        Patch(facecolor=colours[k] / 255.0, edgecolor="black", linewidth=0.5, label=str(class_names[k]))
        for k in present_ids
    ]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=columns, fontsize=8, frameon=False,
                   handlelength=1.6, handleheight=1.1, columnspacing=1.0, borderaxespad=0.1)  # fmt: skip
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, facecolor="white")
    fig.clear()
    with Image.open(buffer) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def per_class_iou_figure(iou: Mapping[str, float], title: str | None = None) -> Figure:
    """Horizontal bar chart of per-class IoU, best class on top (save it with :func:`save_figure`).

    A class with NaN IoU never occurred in the labels nor the predictions of the split: it has no bar and its
    label reads ``(absent)``, so it cannot be mistaken for a class scored 0.

    Args:
        iou: ``{class name: IoU in 0..1 or NaN}`` (the eval JSON's ``IoU``).
        title: Axes title; ``None`` writes the mIoU over the present classes.
    """
    values = {str(name): float("nan") if v is None else float(v) for name, v in iou.items()}
    present = sorted(((n, v) for n, v in values.items() if math.isfinite(v)), key=lambda item: -item[1])
    absent = [n for n, v in values.items() if not math.isfinite(v)]
    names = [n for n, _ in present] + [f"{n} (absent)" for n in absent]
    widths = [100.0 * v for _, v in present] + [0.0] * len(absent)
    fig = _new_figure(7.0, 0.22 * len(names) + 1.2)
    ax = fig.add_subplot()
    positions = np.arange(len(names))[::-1]  # first entry at the top
    bars = ax.barh(positions[: len(present)], widths[: len(present)], color="tab:blue", height=0.8)
    ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    ax.set_yticks(positions, names, fontsize=7)
    for tick in ax.get_yticklabels()[len(present) :]:
        tick.set_color("grey")
    ax.set_xlim(0, 105)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_xlabel("IoU (%)")
    ax.grid(axis="x", alpha=0.3)
    miou = 100.0 * float(np.mean([v for _, v in present])) if present else float("nan")
    ax.set_title(title if title is not None else f"per-class IoU (mIoU {miou:.2f} over {len(present)} classes)",
                 fontsize=10)  # fmt: skip
    fig.tight_layout()
    return fig


def confusion_matrix_figure(
    confmat: np.ndarray | torch.Tensor, class_names: Sequence[str], title: str | None = None
) -> tuple[Figure, np.ndarray]:
    """Row-normalised confusion matrix: entry ``(i, j)`` is the share of class-``i`` pixels predicted as ``j``.

    Rows sum to 1, so rare and frequent classes are equally readable; a class without labelled pixels has a NaN
    row, drawn blank. Class names label the axes up to 40 classes, percentages the cells up to 12.

    Args:
        confmat: ``(K, K)`` pixel counts, rows = label, columns = prediction (the metric's ``confmat`` state).
        class_names: K names.
        title: Axes title.

    Returns:
        ``(figure, normalised)`` with ``normalised`` the float64 ``(K, K)`` array that is drawn.
    """
    counts = _to_numpy(confmat).astype(np.float64)
    num_classes = len(counts)
    rows = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = np.where(rows > 0, counts / rows, np.nan)

    labelled = num_classes <= 40  # more names would be unreadable
    side = max(4.0, 0.22 * num_classes + 2.5) if labelled else 9.0
    fig = _new_figure(side + 1.0, side)
    ax = fig.add_subplot()
    image = ax.imshow(
        np.ma.masked_invalid(normalised), cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest"
    )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the label's pixels")
    ticks, names = (np.arange(num_classes), [str(n) for n in class_names]) if labelled else ([], [])
    ax.set_xticks(ticks, names, rotation=90, fontsize=7)
    ax.set_yticks(ticks, names, fontsize=7)
    if num_classes <= 12:
        for (i, j), value in np.ndenumerate(normalised):
            if math.isfinite(value):
                ax.text(j, i, f"{100 * value:.0f}", ha="center", va="center", fontsize=6,
                        color="white" if value > 0.5 else "black")  # fmt: skip
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title(title or f"confusion matrix (row-normalised, {num_classes} classes)", fontsize=10)
    fig.tight_layout()
    return fig, normalised


def save_figure(fig: Figure, path: str | os.PathLike) -> Path:
    """Write a figure as PNG atomically (a reader never sees a half-written picture), then clear it."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100, facecolor="white")
    finally:
        fig.clear()
    return Path(path)
