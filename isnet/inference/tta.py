"""Multi-scale and flip test-time augmentation.

Reproduces ``BaseSegmentor.auginference`` of sssegmentation (``ssseg/modules/models/segmentors/base/base.py``)
together with the averaging in ``ssseg/test.py``. The order of operations, per scale ``s``:

1. ``image_s = F.interpolate(image, scale_factor=s, mode="bilinear", align_corners=False)``;
2. whole or slide inference on ``image_s``; the soft-max (if probabilities are averaged) is applied inside,
   before any resize to the output size;
3. with flip: the same on ``image_s`` flipped horizontally; the output's left/right pair channels are
   swapped (LIP) and the output is flipped back, still at the inference resolution;
4. every output is resized **directly** to the output (original label) size, and all outputs are averaged
   arithmetically (``sum(list) / len(list)``), in the order [s0, s0-flip, s1, s1-flip, ...].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from isnet.inference.window import PredictFn, check_image, slide_inference, whole_inference
from isnet.meta.recipes import InferenceConfig
from isnet.models.layers.resize import resize_bilinear

__all__ = ["ms_flip_inference", "run_inference"]

_MODES = ("whole", "slide")


def _swap_permutation(num_classes: int, flip_pairs: Sequence[Sequence[int]]) -> list[int]:
    """Channel order that swaps each ``(a, b)`` pair of a flipped output.

    Pairs are applied in order, each reading from the unswapped output, as the reference does with
    ``seg_logits_flip_clone`` (base.py ``auginference``).
    """
    order = list(range(num_classes))
    for pair in flip_pairs:
        a, b = (int(v) for v in pair)
        if not (0 <= a < num_classes and 0 <= b < num_classes):
            raise ValueError(f"flip_pairs entry {tuple(pair)} is outside [0, {num_classes}) classes")
        order[a], order[b] = b, a
    return order


@torch.inference_mode()
def ms_flip_inference(
    predict_fn: PredictFn,
    image: Tensor,
    out_size: Sequence[int],
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    mode: str = "whole",
    crop_size: int | Sequence[int] | None = None,
    stride: int | Sequence[int] | None = None,
    use_probs: bool = False,
    flip_pairs: Sequence[Sequence[int]] = (),
    window_batch: int = 1,
) -> Tensor:
    """Mean logits (or probabilities) over test scales and horizontal flips.

    Args:
        predict_fn: maps images to logits at any resolution.
        image: normalised, test-resized image batch.
        out_size: ``(H_out, W_out)``, the original label size every output is resized to.
        scales: rescale factors applied to ``image``.
        flip: also predict on the horizontally flipped image.
        mode: ``"whole"`` or ``"slide"`` (which needs ``crop_size`` and ``stride``, each ``(h, w)``).
        use_probs: average soft-max probabilities (taken before resizing) instead of raw logits.
        flip_pairs: class pairs ``(a, b)`` whose channels swap under a horizontal flip (LIP left/right parts).
        window_batch: equally sized slide windows per ``predict_fn`` call.

    Shape:
        - image: ``(N, C, H, W)``
        - output: ``(N, K, H_out, W_out)``
    """
    check_image(image)
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {list(_MODES)}, got {mode!r}")
    if mode == "slide" and (crop_size is None or stride is None):
        raise ValueError(
            f"mode='slide' needs crop_size and stride, got crop_size={crop_size!r}, stride={stride!r}"
        )
    scales = tuple(scales)
    if not scales or not all(
        isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0 for s in scales
    ):
        raise ValueError(f"scales must be a non-empty sequence of positive numbers, got {scales!r}")

    def infer(x: Tensor) -> Tensor:
        # Output at the inference resolution (base.py `inference`); resizing to out_size happens later.
        if mode == "whole":
            return whole_inference(predict_fn, x, None, use_probs=use_probs)
        return slide_inference(
            predict_fn, x, crop_size, stride, None, use_probs=use_probs, window_batch=window_batch
        )

    total: Tensor | None = None
    count = 0
    for scale in scales:
        # base.py `auginference`: F.interpolate(images, scale_factor=scale_factor, ...), always called.
        scaled = F.interpolate(image, scale_factor=scale, mode="bilinear", align_corners=False)
        outputs = [infer(scaled)]
        if flip:
            flipped = infer(scaled.flip(-1))
            if flip_pairs:
                order = _swap_permutation(flipped.shape[1], flip_pairs)
                flipped = flipped[:, order]
            # The reference flips back before the resize to the original size (base.py `auginference`,
            # then test.py resizes each list entry).
            outputs.append(flipped.flip(-1))
        for out in outputs:
            # test.py: each output is resized straight to (height, width) and the list is summed in order.
            resized = resize_bilinear(out, out_size)
            total = resized if total is None else total + resized
            count += 1
    assert total is not None  # scales is non-empty
    return total / count


def run_inference(
    predict_fn: PredictFn,
    image: Tensor,
    out_size: Sequence[int],
    config: InferenceConfig,
    flip_pairs: Sequence[Sequence[int]] = (),
) -> Tensor:
    """:func:`ms_flip_inference` with the settings of ``config`` (e.g. from :func:`isnet.inference.test_settings`)
    and the data module's ``flip_pairs``; returns the averaged ``(N, K, H_out, W_out)`` scores."""
    return ms_flip_inference(
        predict_fn,
        image,
        out_size,
        scales=config.scales,
        flip=config.flip,
        mode=config.mode,
        crop_size=config.crop_size,
        stride=config.stride,
        use_probs=config.use_probs,
        flip_pairs=flip_pairs,
        window_batch=config.window_batch,
    )
