"""Whole-image inference within a pixel budget, with a sliding-window fallback, and peak-memory reporting.

The reference evaluates most datasets on the whole (test-resized) image; an unusually large input (an 8K photo
through ``scripts/predict.py``) would need activations for every pixel at once. :func:`auto_inference` keeps the
whole image up to a pixel budget and above it logs and switches to the reference's sliding window, whose memory
depends on the window, not the image. :func:`peak_memory` reports what a run used, for evaluation JSONs.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

import torch
from torch import Tensor

from isnet.inference.window import PredictFn, check_image, slide_inference, whole_inference
from isnet.utils.pairs import as_pair

try:  # POSIX only; on other systems the host peak is reported as None
    import resource
except ImportError:  # pragma: no cover
    resource = None  # type: ignore[assignment]

__all__ = [
    "ACTIVATION_BYTES_PER_PIXEL",
    "DEFAULT_MAX_PIXELS",
    "auto_inference",
    "choose_inference_mode",
    "estimate_whole_inference_bytes",
    "max_pixels_for_budget",
    "peak_memory",
    "reset_peak_memory",
]

logger = logging.getLogger(__name__)

# Peak activation memory of an ISNet (ResNet-50-D8, 150 classes) fp32 eval forward (`predict_logits`), per
# input pixel: measured as the rise of the peak RSS for 256x256 and 512x512 inputs on CPU (573 and 554 B/px),
# rounded up. Features live at 1/8 resolution with up to 2048 channels, so this does not depend on K.
ACTIVATION_BYTES_PER_PIXEL = 640

# 4.2 megapixels (e.g. 2048x2048, twice a full Cityscapes frame): about 2.5 GiB of activations.
DEFAULT_MAX_PIXELS = 2048 * 2048


def estimate_whole_inference_bytes(
    image_shape: Sequence[int],
    num_classes: int,
    out_size: Sequence[int] | None = None,
    activation_bytes_per_pixel: int = ACTIVATION_BYTES_PER_PIXEL,
    dtype_bytes: int = 4,
) -> int:
    """Rough peak bytes of one whole-image inference: network activations plus the resized scores.

    Args:
        image_shape: ``(N, C, H, W)`` of the input batch.
        num_classes: K, the number of score channels.
        out_size: ``(H_out, W_out)`` the scores are resized to; ``None`` means the input size.
        activation_bytes_per_pixel: activation bytes per input pixel (halve it for fp16 autocast).
        dtype_bytes: bytes per score element.
    """
    n, _, h, w = (int(v) for v in image_shape)
    h_out, w_out = (h, w) if out_size is None else (int(out_size[0]), int(out_size[1]))
    return n * (h * w * activation_bytes_per_pixel + num_classes * h_out * w_out * dtype_bytes)


def max_pixels_for_budget(
    budget_bytes: int, activation_bytes_per_pixel: int = ACTIVATION_BYTES_PER_PIXEL
) -> int:
    """The ``max_pixels`` (N x H x W) for :func:`auto_inference` whose activations fit in ``budget_bytes``
    (e.g. free GPU memory minus the weights); ValueError for a non-positive budget or bytes per pixel."""
    if budget_bytes <= 0 or activation_bytes_per_pixel <= 0:
        raise ValueError(
            f"budget_bytes and activation_bytes_per_pixel must be positive, got {budget_bytes!r} and "
            f"{activation_bytes_per_pixel!r}"
        )
    return int(budget_bytes) // int(activation_bytes_per_pixel)


def choose_inference_mode(image_shape: Sequence[int], max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    """``"whole"`` if the batch's pixel count ``N * H * W`` is within ``max_pixels``, else ``"slide"``.

    Raises:
        ValueError: ``max_pixels`` is not a positive int or ``image_shape`` is not ``(N, C, H, W)``.
    """
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive int (batch x height x width), got {max_pixels!r}")
    if len(image_shape) != 4:
        raise ValueError(f"image_shape must be (N, C, H, W), got {tuple(image_shape)}")
    n, _, h, w = (int(v) for v in image_shape)
    return "whole" if n * h * w <= max_pixels else "slide"


def auto_inference(
    predict_fn: PredictFn,
    image: Tensor,
    out_size: Sequence[int] | None,
    crop_size: int | Sequence[int],
    stride: int | Sequence[int],
    max_pixels: int = DEFAULT_MAX_PIXELS,
    use_probs: bool = False,
    window_batch: int = 1,
) -> Tensor:
    """Exactly :func:`whole_inference` within the pixel budget, else :func:`slide_inference` (with a warning:
    the two give slightly different scores near window borders).

    Args:
        predict_fn: maps images to logits at any resolution (e.g. ``ISNet.predict_logits``).
        image: normalised image batch.
        out_size: ``(H_out, W_out)`` of the scores; ``None`` keeps the network's (whole) or input (slide) size.
        crop_size: sliding-window size of the fallback.
        stride: sliding-window stride of the fallback.
        max_pixels: largest ``N * H * W`` run as one whole image (see :func:`max_pixels_for_budget`).
        use_probs: average soft-max probabilities (the reference's ``use_probs_before_resize``).
        window_batch: equally sized windows per network call in the fallback.

    Returns:
        Scores (logits, or probabilities if ``use_probs``).

    Shape:
        - image: ``(N, C, H, W)``
        - output: ``(N, K, H_out, W_out)``

    Raises:
        ValueError: a bad ``image``, ``max_pixels``, ``crop_size`` or ``stride`` (checked before any work).
    """
    check_image(image)
    crop = as_pair(crop_size, "crop_size")
    step = as_pair(stride, "stride")
    if choose_inference_mode(image.shape, max_pixels) == "whole":
        return whole_inference(predict_fn, image, out_size=out_size, use_probs=use_probs)
    n, _, h, w = image.shape
    gib = n * h * w * ACTIVATION_BYTES_PER_PIXEL / 2**30
    logger.warning(
        f"image batch {n}x{h}x{w} ({n * h * w} pixels) exceeds the whole-image inference budget "
        f"max_pixels={max_pixels} (about {gib:.1f} GiB of activations); falling back to sliding-window "
        f"inference with crop_size={crop}, stride={step}"
    )
    return slide_inference(predict_fn, image, crop, step, out_size, use_probs, window_batch)


def reset_peak_memory(device: torch.device | str | None = None) -> None:
    """Reset the CUDA peak-allocation counter of ``device`` (the process's peak RSS cannot be reset)."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device | str | None = None) -> dict[str, float | None]:
    """Peak memory of this process so far, in MiB, for evaluation reports.

    Returns:
        ``{"peak_rss_mib", "cuda_max_allocated_mib", "cuda_max_reserved_mib"}``: the host high-water mark since
        the process started (DataLoader workers not included), and ``device``'s CUDA peaks since the last
        :func:`reset_peak_memory` (``None`` without CUDA).
    """
    rss_mib = None
    if resource is not None:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # Linux reports kibibytes, macOS bytes.
        rss_mib = rss / 2**20 if sys.platform == "darwin" else rss / 2**10
    allocated = reserved = None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        allocated = torch.cuda.max_memory_allocated(device) / 2**20
        reserved = torch.cuda.max_memory_reserved(device) / 2**20
    return {"peak_rss_mib": rss_mib, "cuda_max_allocated_mib": allocated, "cuda_max_reserved_mib": reserved}
