"""Whole-image and sliding-window inference.

Reproduces ``BaseSegmentor.inference`` of sssegmentation (``ssseg/modules/models/segmentors/base/base.py``),
whose slide grid is the same as mmsegmentation's ``EncoderDecoder.slide_inference``:

* whole: the network runs on the full image; its low-resolution logits (1/8, LIP ~1/4) are soft-maxed there
  when probabilities are averaged, and only then resized;
* slide: ``n = max(H - crop + stride - 1, 0) // stride + 1`` windows per axis, the last one clamped to the
  border (no padding; windows shrink to the image when it is smaller than the crop). Each window's logits are
  resized to the window, soft-maxed there if requested, summed into a canvas and divided by the per-pixel
  window count.

``predict_fn`` is any callable mapping a normalised image batch ``(N, 3, H, W)`` to logits ``(N, K, h, w)`` at
any resolution (e.g. ``ISNet.predict_logits``); all resizing is bilinear with ``align_corners=False``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from isnet.models.layers.resize import resize_bilinear
from isnet.utils.pairs import as_pair

__all__ = ["PredictFn", "check_image", "slide_inference", "slide_windows", "whole_inference"]

PredictFn = Callable[[Tensor], Tensor]


def check_image(image: Tensor) -> None:
    """Raise ValueError unless ``image`` is a (N, C, H, W) tensor."""
    if not isinstance(image, Tensor) or image.ndim != 4:
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"image must be a (N, C, H, W) tensor, got {shape}")


def _predict(predict_fn: PredictFn, image: Tensor) -> Tensor:
    logits = predict_fn(image)
    if not isinstance(logits, Tensor) or logits.ndim != 4 or logits.shape[0] != image.shape[0]:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(
            f"predict_fn must return (N, K, h, w) logits for an input of shape {tuple(image.shape)}, got {shape}"
        )
    return logits


@torch.inference_mode()
def whole_inference(
    predict_fn: PredictFn,
    image: Tensor,
    out_size: Sequence[int] | None = None,
    use_probs: bool = False,
) -> Tensor:
    """Run the network once on the whole image; returns logits, or probabilities if ``use_probs``.

    Args:
        predict_fn: maps images to logits at any resolution.
        image: normalised image batch.
        out_size: ``(H_out, W_out)`` to resize to directly; ``None`` keeps the network's resolution.
        use_probs: soft-max at the network's resolution, before resizing (``use_probs_before_resize``).

    Shape:
        - image: ``(N, C, H, W)``
        - output: ``(N, K, H_out, W_out)``, or ``(N, K, h, w)`` if ``out_size`` is None
    """
    check_image(image)
    logits = _predict(predict_fn, image)
    if use_probs:
        # base.py `inference`, whole branch: softmax on the raw (low-resolution) logits.
        logits = F.softmax(logits, dim=1)
    if out_size is not None:
        logits = resize_bilinear(logits, out_size)
    return logits


def slide_windows(
    height: int, width: int, crop_size: int | Sequence[int], stride: int | Sequence[int]
) -> list[tuple[int, int, int, int]]:
    """``(y1, y2, x1, x2)`` of every window of the sliding-window grid (see the module docstring), row-major.

    Args:
        height: image height ``H``.
        width: image width ``W``.
        crop_size: window size ``(ch, cw)`` (or one int for both).
        stride: window stride ``(sh, sw)`` (or one int for both).
    """
    crop_h, crop_w = as_pair(crop_size, "crop_size")
    stride_h, stride_w = as_pair(stride, "stride")
    # Same grid as base.py `inference`, slide branch (num_grids_h / num_grids_w and the clamping).
    num_h = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
    num_w = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
    boxes = []
    for h_idx in range(num_h):
        for w_idx in range(num_w):
            y2 = min(h_idx * stride_h + crop_h, height)
            x2 = min(w_idx * stride_w + crop_w, width)
            boxes.append((max(y2 - crop_h, 0), y2, max(x2 - crop_w, 0), x2))
    return boxes


def _group_windows(
    boxes: list[tuple[int, int, int, int]], window_batch: int
) -> list[list[tuple[int, int, int, int]]]:
    """Cut the window list into runs of consecutive, equally sized windows (at most ``window_batch`` each)."""
    groups: list[list[tuple[int, int, int, int]]] = []
    for box in boxes:
        size = (box[1] - box[0], box[3] - box[2])
        if groups and len(groups[-1]) < window_batch:
            last = groups[-1][0]
            if (last[1] - last[0], last[3] - last[2]) == size:
                groups[-1].append(box)
                continue
        groups.append([box])
    return groups


@torch.inference_mode()
def slide_inference(
    predict_fn: PredictFn,
    image: Tensor,
    crop_size: int | Sequence[int],
    stride: int | Sequence[int],
    out_size: Sequence[int] | None = None,
    use_probs: bool = False,
    window_batch: int = 1,
) -> Tensor:
    """Average overlapping window predictions over the image; returns logits, or probabilities if ``use_probs``.

    Args:
        predict_fn: maps images to logits at any resolution.
        image: normalised image batch.
        crop_size: window size ``(ch, cw)``; windows shrink to the image when it is smaller (no padding).
        stride: window stride ``(sh, sw)``.
        out_size: ``(H_out, W_out)`` to resize the averaged canvas to; ``None`` keeps ``(H, W)``.
        use_probs: soft-max each window's output after resizing it to the window.
        window_batch: equally sized windows per ``predict_fn`` call; they are still summed in grid order.

    Shape:
        - image: ``(N, C, H, W)``
        - output: ``(N, K, H_out, W_out)``, or ``(N, K, H, W)`` if ``out_size`` is None
    """
    check_image(image)
    if isinstance(window_batch, bool) or not isinstance(window_batch, int) or window_batch < 1:
        raise ValueError(f"window_batch must be a positive int, got {window_batch!r}")
    batch, _, height, width = image.shape
    boxes = slide_windows(height, width, crop_size, stride)
    count = torch.zeros((1, 1, height, width), dtype=torch.long, device=image.device)
    for y1, y2, x1, x2 in boxes:
        count[:, :, y1:y2, x1:x2] += 1
    # a stride larger than the crop leaves pixels uncovered (the reference asserts this too)
    for axis, covered in (("height", count.amax(3)), ("width", count.amax(2))):
        if not covered.all():
            raise ValueError(
                f"slide windows with crop_size={crop_size!r} and stride={stride!r} leave gaps along the image "
                f"{axis} ({covered.numel()} pixels); use a stride no larger than the crop size"
            )
    canvas: Tensor | None = None
    for group in _group_windows(boxes, window_batch):
        y1, y2, x1, x2 = group[0]
        if len(group) == 1:
            crops = image[:, :, y1:y2, x1:x2]  # a view: no copy when windows go one at a time
        else:
            crops = torch.cat([image[:, :, a:b, c:d] for a, b, c, d in group], dim=0)
        logits = _predict(predict_fn, crops)
        # base.py slide branch: resize each window to its own size, then softmax there.
        logits = resize_bilinear(logits, (y2 - y1, x2 - x1))
        if use_probs:
            logits = F.softmax(logits, dim=1)
        if canvas is None:
            canvas = logits.new_zeros((batch, logits.shape[1], height, width))
        for i, (a, b, c, d) in enumerate(group):
            canvas[:, :, a:b, c:d] += logits[i * batch : (i + 1) * batch]
    assert canvas is not None  # slide_windows always returns at least one window
    canvas = canvas / count.to(canvas.dtype)
    if out_size is not None:
        canvas = resize_bilinear(canvas, out_size)
    return canvas
